//! A minimal DER reader, written alongside [`crate::der_writer`] and likewise independent of
//! the `der` crate the gateway uses, so that checks on generated and real certificates do
//! not go through the code under test.
//!
//! It knows just enough X.509 to find the extensions and names of a certificate.

use std::fmt;

use crate::der_writer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DER read error: {}", self.0)
    }
}

impl std::error::Error for ReadError {}

fn fail<T>(msg: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError(msg.into()))
}

/// One decoded TLV borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    /// The whole TLV, header included.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// The children of a constructed value.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, ReadError> {
        if self.tag & 0x20 == 0 {
            return fail(format!("tag {:02X} is primitive", self.tag));
        }
        read_all(self.contents)
    }

    pub fn expect_tag(self, tag: u8) -> Result<Self, ReadError> {
        if self.tag != tag {
            return fail(format!("expected tag {tag:02X}, found {:02X}", self.tag));
        }
        Ok(self)
    }
}

/// Reads one TLV from the front of `input`, returning it and the rest. Only the DER
/// (minimal, definite) length forms are accepted.
pub fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), ReadError> {
    let (&tag, rest) = input.split_first().ok_or(ReadError("empty input".into()))?;
    if tag & 0x1F == 0x1F {
        return fail("multi-byte tags are not supported");
    }
    let (&first_len, mut rest) = rest
        .split_first()
        .ok_or(ReadError("missing length".into()))?;
    let len = if first_len < 0x80 {
        first_len as usize
    } else {
        let count = (first_len & 0x7F) as usize;
        if count == 0 || count > std::mem::size_of::<usize>() {
            return fail(format!("unsupported length octet {first_len:02X}"));
        }
        if rest.len() < count {
            return fail("truncated length");
        }
        let (len_bytes, after) = rest.split_at(count);
        rest = after;
        if len_bytes[0] == 0 {
            return fail("non-minimal long length");
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        if len < 0x80 {
            return fail("long form used for a short length");
        }
        len
    };
    if rest.len() < len {
        return fail(format!(
            "length {len} exceeds the {} bytes left",
            rest.len()
        ));
    }
    let header_len = input.len() - rest.len();
    let (contents, rest) = rest.split_at(len);
    let raw = &input[..header_len + len];
    Ok((Tlv { tag, contents, raw }, rest))
}

/// Reads exactly one TLV spanning all of `input`.
pub fn read_single(input: &[u8]) -> Result<Tlv<'_>, ReadError> {
    let (tlv, rest) = read_tlv(input)?;
    if !rest.is_empty() {
        return fail(format!("{} trailing bytes", rest.len()));
    }
    Ok(tlv)
}

/// Reads a run of consecutive TLVs filling `input`.
pub fn read_all(mut input: &[u8]) -> Result<Vec<Tlv<'_>>, ReadError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = read_tlv(input)?;
        out.push(tlv);
        input = rest;
    }
    Ok(out)
}

/// Dotted text of an OBJECT IDENTIFIER's contents.
pub fn oid_to_string(contents: &[u8]) -> Result<String, ReadError> {
    let mut arcs: Vec<u128> = Vec::new();
    let mut value: u128 = 0;
    for (i, &b) in contents.iter().enumerate() {
        if value == 0 && b == 0x80 {
            return fail("non-minimal OID arc");
        }
        value = value
            .checked_mul(128)
            .and_then(|v| v.checked_add((b & 0x7F) as u128))
            .ok_or(ReadError("OID arc overflows".into()))?;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (first, second) = match value {
                    0..=39 => (0, value),
                    40..=79 => (1, value - 40),
                    _ => (2, value - 80),
                };
                arcs.push(first);
                arcs.push(second);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i == contents.len() - 1 {
            return fail("truncated OID");
        }
    }
    if arcs.is_empty() {
        return fail("empty OID");
    }
    Ok(arcs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join("."))
}

/// One extension of a certificate as it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub oid: String,
    pub critical: bool,
    /// The contents of extnValue's OCTET STRING: the DER of the extension itself.
    pub value: Vec<u8>,
}

/// The fields of a certificate these tests look at.
#[derive(Debug, Clone)]
pub struct CertificateView {
    pub issuer_raw: Vec<u8>,
    pub subject_raw: Vec<u8>,
    pub extensions: Vec<Extension>,
}

impl CertificateView {
    pub fn extension(&self, oid: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.oid == oid)
    }
}

/// Walks Certificate → TBSCertificate → `[3]` Extensions.
pub fn parse_certificate(der: &[u8]) -> Result<CertificateView, ReadError> {
    let cert = read_single(der)?.expect_tag(der_writer::TAG_SEQUENCE)?;
    let cert_parts = cert.children()?;
    if cert_parts.len() != 3 {
        return fail("Certificate must have three parts");
    }
    let tbs = cert_parts[0]
        .expect_tag(der_writer::TAG_SEQUENCE)?
        .children()?;
    // version [0] is present in every v3 certificate this crate deals with.
    let mut fields = tbs.iter();
    let first = fields
        .next()
        .ok_or(ReadError("empty TBSCertificate".into()))?;
    if first.tag != 0xA0 {
        return fail("not a v3 certificate (no version field)");
    }
    let _serial = fields.next().ok_or(ReadError("no serial".into()))?;
    let _signature = fields.next().ok_or(ReadError("no signature".into()))?;
    let issuer = fields.next().ok_or(ReadError("no issuer".into()))?;
    let _validity = fields.next().ok_or(ReadError("no validity".into()))?;
    let subject = fields.next().ok_or(ReadError("no subject".into()))?;
    let _spki = fields
        .next()
        .ok_or(ReadError("no subjectPublicKeyInfo".into()))?;
    let mut extensions = Vec::new();
    for field in fields {
        if field.tag != 0xA3 {
            continue;
        }
        let list = read_single(field.contents)?.expect_tag(der_writer::TAG_SEQUENCE)?;
        for ext in list.children()? {
            let parts = ext.expect_tag(der_writer::TAG_SEQUENCE)?.children()?;
            let (oid, critical, value) = match parts.as_slice() {
                [oid, value] => (oid, false, value),
                [oid, critical, value] => {
                    let critical = critical.expect_tag(der_writer::TAG_BOOLEAN)?;
                    match critical.contents {
                        [0xFF] => (oid, true, value),
                        // DER forbids encoding the DEFAULT FALSE explicitly.
                        _ => return fail("critical flag must be encoded TRUE (0xFF) or omitted"),
                    }
                }
                _ => return fail("malformed Extension"),
            };
            extensions.push(Extension {
                oid: oid_to_string(oid.expect_tag(der_writer::TAG_OID)?.contents)?,
                critical,
                value: value
                    .expect_tag(der_writer::TAG_OCTET_STRING)?
                    .contents
                    .to_vec(),
            });
        }
    }
    Ok(CertificateView {
        issuer_raw: issuer.raw.to_vec(),
        subject_raw: subject.raw.to_vec(),
        extensions,
    })
}

/// Attributes of a Name in order, as (type OID, string tag, value bytes).
pub fn name_attributes(name_der: &[u8]) -> Result<Vec<(String, u8, Vec<u8>)>, ReadError> {
    let name = read_single(name_der)?.expect_tag(der_writer::TAG_SEQUENCE)?;
    let mut out = Vec::new();
    for rdn in name.children()? {
        for atv in rdn.expect_tag(der_writer::TAG_SET)?.children()? {
            let parts = atv.expect_tag(der_writer::TAG_SEQUENCE)?.children()?;
            let [oid, value] = parts.as_slice() else {
                return fail("malformed AttributeTypeAndValue");
            };
            out.push((
                oid_to_string(oid.expect_tag(der_writer::TAG_OID)?.contents)?,
                value.tag,
                value.contents.to_vec(),
            ));
        }
    }
    Ok(out)
}

/// Undoes PEM armour for the first block labelled `label`.
pub fn pem_to_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    base64_decode(&pem[start..stop])
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der_writer as w;

    #[test]
    fn reads_back_what_the_writer_writes() {
        let long = w::octet_string(&[7u8; 200]);
        let seq = w::sequence(&[w::oid("1.0.17090.0.1").unwrap(), long.clone()]);
        let tlv = read_single(&seq).unwrap();
        let kids = tlv.children().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(oid_to_string(kids[0].contents).unwrap(), "1.0.17090.0.1");
        assert_eq!(kids[1].raw, long.as_slice());
        assert_eq!(kids[1].contents.len(), 200);
    }

    #[test]
    fn rejects_non_der_lengths_and_truncation() {
        assert!(read_single(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err());
        assert!(read_single(&[0x04, 0x82, 0x00, 0x80]).is_err());
        assert!(read_single(&[0x04, 0x03, 1, 2]).is_err());
        assert!(read_single(&[0x04, 0x01, 1, 2]).is_err());
    }

    #[test]
    fn oid_round_trip_including_large_first_arcs() {
        for dotted in [
            "2.5.29.32",
            "1.2.392.100495.1.5.1.2.0.1",
            "2.999.3",
            "0.9.2342",
        ] {
            let enc = w::oid(dotted).unwrap();
            assert_eq!(oid_to_string(&enc[2..]).unwrap(), dotted);
        }
    }

    #[test]
    fn base64_pem() {
        let pem = "-----BEGIN X-----\nAAEC\n/w==\n-----END X-----\n";
        assert_eq!(pem_to_der(pem, "X"), Some(vec![0, 1, 2, 0xFF]));
        assert_eq!(pem_to_der(pem, "Y"), None);
    }
}
