//! Distinguished names: the comparison key used for chaining, and readable forms.

use der::{Encode, Tag, Tagged};
use x509_cert::name::Name;

use super::der_walk::{directory_string, split_tlv};

/// A name reduced for RFC 5280 §7.1 comparison: RDNs in order, the attributes of each RDN
/// sorted, string values trimmed, inner whitespace collapsed and case-folded. Two names
/// chain when their keys are equal. Values that are not strings compare by their DER.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameKey(Vec<u8>);

impl NameKey {
    pub fn of(name: &Name) -> Option<NameKey> {
        let mut out = Vec::new();
        for rdn in name.0.iter() {
            let mut atvs: Vec<Vec<u8>> = Vec::with_capacity(rdn.0.len());
            for atv in rdn.0.iter() {
                let mut one = atv.oid.as_bytes().to_vec();
                one.push(0);
                let value_der = atv.value.to_der().ok()?;
                match normalized_string(&value_der) {
                    Some(s) => {
                        one.push(b's');
                        one.extend_from_slice(s.as_bytes());
                    }
                    None => {
                        one.push(b'd');
                        one.extend_from_slice(&value_der);
                    }
                }
                atvs.push(one);
            }
            atvs.sort();
            for a in atvs {
                out.extend_from_slice(&(a.len() as u32).to_be_bytes());
                out.extend_from_slice(&a);
            }
            out.push(0xff);
        }
        Some(NameKey(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn normalized_string(value_der: &[u8]) -> Option<String> {
    let (tlv, _) = split_tlv(value_der)?;
    let s = directory_string(&tlv)?;
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    Some(out)
}

/// The first value of an attribute in the name (most specific RDN last, as written).
pub fn attribute(name: &Name, oid: &const_oid::ObjectIdentifier) -> Option<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| &atv.oid == oid)
        .and_then(|atv| {
            let der = atv.value.to_der().ok()?;
            let (tlv, _) = split_tlv(&der)?;
            directory_string(&tlv)
        })
}

/// RFC 4514-style text, most significant RDN first as in `openssl -nameopt RFC2253`
/// reversed: we print in certificate order (`C=JP, O=..., CN=...`) like `openssl x509
/// -subject`, which is what operators compare against.
pub fn display(name: &Name) -> String {
    let mut parts = Vec::new();
    for rdn in name.0.iter() {
        let mut atvs = Vec::new();
        for atv in rdn.0.iter() {
            let key = short_name(&atv.oid);
            let value = atv
                .value
                .to_der()
                .ok()
                .and_then(|der| split_tlv(&der).and_then(|(t, _)| directory_string(&t)))
                .unwrap_or_else(|| {
                    if atv.value.tag() == Tag::OctetString {
                        "#<octets>".to_owned()
                    } else {
                        format!("#{}", hex(atv.value.value()))
                    }
                });
            atvs.push(format!("{key}={}", escape(&value)));
        }
        parts.push(atvs.join(" + "));
    }
    parts.join(", ")
}

fn short_name(oid: &const_oid::ObjectIdentifier) -> String {
    use const_oid::db::rfc4519;
    let known: [(&const_oid::ObjectIdentifier, &str); 10] = [
        (&rfc4519::C, "C"),
        (&rfc4519::O, "O"),
        (&rfc4519::OU, "OU"),
        (&rfc4519::CN, "CN"),
        (&rfc4519::SERIAL_NUMBER, "serialNumber"),
        (&rfc4519::L, "L"),
        (&rfc4519::ST, "ST"),
        (&rfc4519::DC, "DC"),
        (&rfc4519::UID, "UID"),
        (&const_oid::db::rfc3280::EMAIL_ADDRESS, "emailAddress"),
    ];
    known
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| oid.to_string())
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A SHA-256 written as 64 hex digits (either case), as [`hex`] and `sha256sum` write it.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn case_and_whitespace_do_not_matter_for_chaining() {
        let a = Name::from_str("CN=Good  CA,O=Test Certificates 2011,C=US").unwrap();
        let b = Name::from_str("CN=good ca,O=test certificates 2011,C=US").unwrap();
        let c = Name::from_str("CN=Other CA,O=Test Certificates 2011,C=US").unwrap();
        assert_eq!(NameKey::of(&a), NameKey::of(&b));
        assert_ne!(NameKey::of(&a), NameKey::of(&c));
    }

    #[test]
    fn rdn_order_matters() {
        let a = Name::from_str("CN=A,O=B").unwrap();
        let b = Name::from_str("O=B,CN=A").unwrap();
        assert_ne!(NameKey::of(&a), NameKey::of(&b));
    }
}
