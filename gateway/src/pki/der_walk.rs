//! A minimal DER TLV walker for what x509-cert does not give us directly: the exact
//! bytes of the signed TBSCertificate, and the HPKI structures (hcRole) whose ASN.1 uses
//! SET OF with arbitrary element order that a strict SET OF decoder would refuse.

/// One tag-length-value element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    /// The content octets.
    pub value: &'a [u8],
    /// The whole element (header + content).
    pub raw: &'a [u8],
}

/// Reads consecutive TLVs from a byte slice. Only single-byte tags and definite lengths
/// (DER) are accepted; anything else ends the walk with `None`.
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> TlvReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// True if a malformed element was met.
    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn read(&mut self) -> Option<Tlv<'a>> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match split_tlv(self.rest) {
            Some((tlv, rest)) => {
                self.rest = rest;
                Some(tlv)
            }
            None => {
                self.failed = true;
                None
            }
        }
    }

    /// Reads one element and checks its tag.
    pub fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        let tlv = self.read()?;
        if tlv.tag == tag {
            Some(tlv)
        } else {
            self.failed = true;
            None
        }
    }
}

/// Splits the first TLV off `bytes`.
pub fn split_tlv(bytes: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *bytes.first()?;
    // Multi-byte tags (low 5 bits all set) never occur in the structures we walk.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first_len = *bytes.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (first_len as usize, 2usize)
    } else {
        let n = (first_len & 0x7f) as usize;
        // 0x80 is BER indefinite length; more than 4 length octets is beyond any input we accept.
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *bytes.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > bytes.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            value: &bytes[header..end],
            raw: &bytes[..end],
        },
        &bytes[end..],
    ))
}

/// Tags used by the walkers.
pub mod tag {
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const TELETEX_STRING: u8 = 0x14;
    pub const IA5_STRING: u8 = 0x16;
    pub const UNIVERSAL_STRING: u8 = 0x1c;
    pub const BMP_STRING: u8 = 0x1e;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// Decodes a DirectoryString-like element to text. TeletexString is read as Latin-1,
/// which is what every deployed CA means by it.
pub fn directory_string(tlv: &Tlv<'_>) -> Option<String> {
    match tlv.tag {
        tag::UTF8_STRING | tag::PRINTABLE_STRING | tag::IA5_STRING => {
            std::str::from_utf8(tlv.value).ok().map(str::to_owned)
        }
        tag::TELETEX_STRING => Some(tlv.value.iter().map(|&b| b as char).collect()),
        tag::BMP_STRING => {
            if tlv.value.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = tlv
                .value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        tag::UNIVERSAL_STRING => {
            if tlv.value.len() % 4 != 0 {
                return None;
            }
            tlv.value
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_short_and_long_form() {
        let (tlv, rest) = split_tlv(&[0x30, 0x01, 0xAA, 0xFF]).unwrap();
        assert_eq!((tlv.tag, tlv.value, rest), (0x30, &[0xAA][..], &[0xFF][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let (tlv, rest) = split_tlv(&long).unwrap();
        assert_eq!(tlv.value.len(), 0x80);
        assert!(rest.is_empty());
    }

    #[test]
    fn rejects_truncated_indefinite_and_multibyte_tags() {
        assert!(split_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(split_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(split_tlv(&[0x1f, 0x01, 0x00]).is_none());
        assert!(split_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(split_tlv(&[]).is_none());
    }

    #[test]
    fn reader_stops_on_wrong_tag() {
        let mut r = TlvReader::new(&[0x02, 0x01, 0x05]);
        assert!(r.expect(0x30).is_none());
        assert!(r.failed());
    }
}
