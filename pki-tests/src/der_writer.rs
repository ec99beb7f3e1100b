//! A deliberately tiny DER encoder.
//!
//! The gateway decodes certificates with the `der`/`x509-cert` crates. Encoding the HPKI
//! extensions with the same crates would let a misunderstanding of the ASN.1 be mirrored on
//! both sides and go unnoticed, so this writer shares no code with them and is checked
//! byte-for-byte against extensions taken from real HPKI certificates instead.
//!
//! Every function returns one complete TLV, so values compose by nesting calls.

use std::fmt;

pub const TAG_BOOLEAN: u8 = 0x01;
pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_NULL: u8 = 0x05;
pub const TAG_OID: u8 = 0x06;
pub const TAG_UTF8_STRING: u8 = 0x0C;
pub const TAG_PRINTABLE_STRING: u8 = 0x13;
pub const TAG_IA5_STRING: u8 = 0x16;
pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_SET: u8 = 0x31;

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerError {
    /// The dotted OID text is not a valid object identifier.
    InvalidOid(String),
    /// The text has a character that PrintableString cannot carry.
    NotPrintable(String),
    /// The text has a character that IA5String (ASCII) cannot carry.
    NotIa5(String),
    /// A context tag number above 30 would need the multi-byte tag form, which nothing
    /// in HPKI uses.
    TagNumberTooLarge(u8),
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::InvalidOid(text) => write!(f, "not a valid object identifier: {text:?}"),
            DerError::NotPrintable(text) => {
                write!(f, "not representable as PrintableString: {text:?}")
            }
            DerError::NotIa5(text) => write!(f, "not representable as IA5String: {text:?}"),
            DerError::TagNumberTooLarge(n) => {
                write!(f, "context tag [{n}] needs the long tag form")
            }
        }
    }
}

impl std::error::Error for DerError {}

/// Appends a DER length: short form below 128, otherwise the minimal long form.
pub fn encode_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let first_significant = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = &bytes[first_significant..];
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// One TLV with a single-byte tag.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    encode_length(contents.len(), &mut out);
    out.extend_from_slice(contents);
    out
}

fn concat<T: AsRef<[u8]>>(parts: &[T]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.as_ref().iter().copied())
        .collect()
}

/// SEQUENCE of already-encoded elements, kept in the given order.
pub fn sequence<T: AsRef<[u8]>>(elements: &[T]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &concat(elements))
}

/// SET whose components the caller has already put in DER order (ascending tag).
///
/// Use this for a SET with named components such as ISO 17090 `CodedData`; for
/// `SET OF` use [`set_of`], which sorts.
pub fn set<T: AsRef<[u8]>>(components: &[T]) -> Vec<u8> {
    tlv(TAG_SET, &concat(components))
}

/// SET OF: DER (X.690 11.6) orders the elements by their encodings, compared as octet
/// strings with the shorter one padded, which for whole TLVs is plain lexicographic order.
pub fn set_of<T: AsRef<[u8]>>(elements: &[T]) -> Vec<u8> {
    let mut sorted: Vec<&[u8]> = elements.iter().map(|e| e.as_ref()).collect();
    sorted.sort();
    tlv(TAG_SET, &concat(&sorted))
}

/// `[n] EXPLICIT`: a constructed context-specific tag wrapping one complete TLV.
pub fn explicit(tag_number: u8, inner: &[u8]) -> Result<Vec<u8>, DerError> {
    if tag_number > 30 {
        return Err(DerError::TagNumberTooLarge(tag_number));
    }
    Ok(tlv(0xA0 | tag_number, inner))
}

/// `[n] IMPLICIT` on a primitive type: the context tag replaces the universal one.
pub fn implicit_primitive(tag_number: u8, contents: &[u8]) -> Result<Vec<u8>, DerError> {
    if tag_number > 30 {
        return Err(DerError::TagNumberTooLarge(tag_number));
    }
    Ok(tlv(0x80 | tag_number, contents))
}

/// OBJECT IDENTIFIER from dotted text such as `1.2.392.100495.1.6.1.1`.
pub fn oid(dotted: &str) -> Result<Vec<u8>, DerError> {
    let invalid = || DerError::InvalidOid(dotted.to_owned());
    let arcs: Vec<u128> = dotted
        .split('.')
        .map(|arc| {
            // Leading zeros or signs would parse but do not name the same OID textually.
            if arc.is_empty() || (arc.len() > 1 && arc.starts_with('0')) {
                return Err(invalid());
            }
            if !arc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            arc.parse::<u128>().map_err(|_| invalid())
        })
        .collect::<Result<_, _>>()?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39) {
        return Err(invalid());
    }
    let first = arcs[0]
        .checked_mul(40)
        .and_then(|v| v.checked_add(arcs[1]))
        .ok_or_else(invalid)?;
    let mut contents = Vec::new();
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        push_base128(arc, &mut contents);
    }
    Ok(tlv(TAG_OID, &contents))
}

fn push_base128(mut value: u128, out: &mut Vec<u8>) {
    let mut groups = vec![(value & 0x7F) as u8];
    value >>= 7;
    while value > 0 {
        groups.push(0x80 | (value & 0x7F) as u8);
        value >>= 7;
    }
    out.extend(groups.iter().rev());
}

pub fn utf8_string(text: &str) -> Vec<u8> {
    tlv(TAG_UTF8_STRING, text.as_bytes())
}

/// PrintableString (X.680 41.4): letters, digits, space and `'()+,-./:=?`.
pub fn printable_string(text: &str) -> Result<Vec<u8>, DerError> {
    if !text.chars().all(is_printable_string_char) {
        return Err(DerError::NotPrintable(text.to_owned()));
    }
    Ok(tlv(TAG_PRINTABLE_STRING, text.as_bytes()))
}

pub fn is_printable_string_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

pub fn ia5_string(text: &str) -> Result<Vec<u8>, DerError> {
    if !text.is_ascii() {
        return Err(DerError::NotIa5(text.to_owned()));
    }
    Ok(tlv(TAG_IA5_STRING, text.as_bytes()))
}

pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, bytes)
}

/// DER allows only 0xFF for TRUE.
pub fn boolean(value: bool) -> Vec<u8> {
    tlv(TAG_BOOLEAN, &[if value { 0xFF } else { 0x00 }])
}

pub fn null() -> Vec<u8> {
    tlv(TAG_NULL, &[])
}

/// Non-negative INTEGER from big-endian magnitude bytes, minimally encoded.
pub fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let first_nonzero = magnitude.iter().position(|&b| b != 0);
    let trimmed = match first_nonzero {
        Some(i) => &magnitude[i..],
        None => &[0u8][..],
    };
    let mut contents = Vec::with_capacity(trimmed.len() + 1);
    // A set top bit would make the value negative in two's complement.
    if trimmed[0] & 0x80 != 0 {
        contents.push(0);
    }
    contents.extend_from_slice(trimmed);
    tlv(TAG_INTEGER, &contents)
}

/// Upper-case hex, the form the README and `openssl asn1parse` print.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses hex (either case, whitespace ignored); `None` on odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_short_and_long_forms() {
        let enc = |len| {
            let mut out = Vec::new();
            encode_length(len, &mut out);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(0x7F), [0x7F]);
        assert_eq!(enc(0x80), [0x81, 0x80]);
        assert_eq!(enc(0xFF), [0x81, 0xFF]);
        assert_eq!(enc(0x100), [0x82, 0x01, 0x00]);
        assert_eq!(enc(0x1_0000), [0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn long_content_gets_long_length() {
        let encoded = octet_string(&[0xAB; 300]);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(encoded.len(), 304);
    }

    #[test]
    fn oid_encodings_match_known_values() {
        assert_eq!(to_hex(&oid("2.5.29.9").unwrap()), "0603551D09");
        // rsaEncryption: multi-byte arcs.
        assert_eq!(
            to_hex(&oid("1.2.840.113549.1.1.1").unwrap()),
            "06092A864886F70D010101"
        );
        // id-hcpki-at-healthcareactor: first arc 1.0 and a three-byte arc.
        assert_eq!(to_hex(&oid("1.0.17090.0.1").unwrap()), "0606288185420001");
        assert_eq!(
            to_hex(&oid("1.2.392.100495.1.6.1.1").unwrap()),
            "060A2A830886910F01060101"
        );
        // Joint-iso-itu-t arcs above 39 are legal under 2.
        assert_eq!(to_hex(&oid("2.999.3").unwrap()), "0603883703");
    }

    #[test]
    fn malformed_oids_are_rejected() {
        for bad in [
            "", "1", "1.", "3.1", "1.40", "1.2.x", "1..2", "1.02", "-1.2",
        ] {
            assert!(oid(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn set_of_sorts_but_set_keeps_order() {
        let b = utf8_string("b");
        let a = utf8_string("a");
        assert_eq!(to_hex(&set_of(&[&b, &a])), "31060C01610C0162");
        assert_eq!(to_hex(&set(&[&b, &a])), "31060C01620C0161");
    }

    #[test]
    fn string_types_enforce_their_alphabets() {
        assert_eq!(to_hex(&printable_string("JP").unwrap()), "13024A50");
        assert!(printable_string("Test_1").is_err());
        assert!(printable_string("神楽坂").is_err());
        assert!(ia5_string("http://x/").is_ok());
        assert!(ia5_string("é").is_err());
        assert_eq!(to_hex(&utf8_string("\u{3000}")), "0C03E38080");
    }

    #[test]
    fn context_tags() {
        assert_eq!(to_hex(&explicit(2, &null()).unwrap()), "A2020500");
        assert_eq!(to_hex(&implicit_primitive(6, b"u").unwrap()), "860175");
        assert!(explicit(31, &null()).is_err());
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(to_hex(&unsigned_integer(&[0x00, 0x00, 0x05])), "020105");
        assert_eq!(to_hex(&unsigned_integer(&[0x80])), "02020080");
        assert_eq!(to_hex(&unsigned_integer(&[])), "020100");
        assert_eq!(to_hex(&boolean(true)), "0101FF");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(from_hex("0a FF\n10"), Some(vec![0x0A, 0xFF, 0x10]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(to_hex(&[0x0A, 0xFF]), "0AFF");
    }
}
