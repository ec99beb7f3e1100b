//! The text a supervising doctor signs to confirm an assistant's held write, and the
//! check of that signature (docs/confirmation-signature.md).
//!
//! The text names everything the doctor confirms — the entry, the request as held (its
//! body by SHA-256), who entered it and who confirms it — one `key: value` line each, so
//! that it reads the same to a person, to OpenSSL and to this code. It is rebuilt from the
//! stored entry whenever it is needed (page, download, verification, export): an entry
//! changed after the doctor signed no longer yields the signed text, and the signature
//! fails.
//!
//! The signature is RSA PKCS#1 v1.5 with SHA-256 over the text's bytes: what an HPKI
//! card makes with CKM_RSA_PKCS over the DigestInfo of the text's SHA-256, and what
//! `openssl dgst -sha256 -verify` checks. Pure, like the rest of `pki`.

use std::fmt;

use spki::AlgorithmIdentifierOwned;

use super::{oids, sha256, ParsedCertificate, Reason, UnixTime};

/// The first line: the format and its version.
pub const CONFIRMATION_FORMAT: &str = "HPKI-GATEWAY-CONFIRMATION-V1";

/// What a confirmation text says, as the held entry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationFields<'a> {
    /// The held write's id (`p-...`).
    pub entry_id: &'a str,
    pub method: &'a str,
    /// The host the assistant's request named, if any.
    pub host: Option<&'a str>,
    /// Path and query as held.
    pub path_and_query: &'a str,
    /// The held `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The held body, whose SHA-256 the text carries.
    pub body: &'a [u8],
    /// The assistant's ledger id.
    pub assistant_id: &'a str,
    /// The HPKI id (subject serialNumber) of the doctor who confirms.
    pub doctor_hpki_id: &'a str,
    /// When the write was held.
    pub held_at: UnixTime,
}

/// Why no confirmation text can be built for an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmationTextError {
    /// A value holds a control character (a line break would forge a line).
    ControlCharacter { field: &'static str },
    /// A required value is empty (the line would end in a space).
    Empty { field: &'static str },
}

impl fmt::Display for ConfirmationTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfirmationTextError::ControlCharacter { field } => write!(
                f,
                "the entry's {field} contains a control character, so it has no confirmation \
                 text to sign: reject it and ask the assistant to enter it again"
            ),
            ConfirmationTextError::Empty { field } => write!(
                f,
                "the entry's {field} is empty, so it has no confirmation text to sign"
            ),
        }
    }
}

impl std::error::Error for ConfirmationTextError {}

/// The confirmation text: UTF-8, one `key: value` line each, every line ended by LF, no
/// other whitespace around the values. An optional value that is absent is `-`.
pub fn confirmation_text(f: &ConfirmationFields<'_>) -> Result<String, ConfirmationTextError> {
    let required = |field: &'static str, value: &str| {
        if value.is_empty() {
            Err(ConfirmationTextError::Empty { field })
        } else if value.chars().any(char::is_control) {
            Err(ConfirmationTextError::ControlCharacter { field })
        } else {
            Ok(())
        }
    };
    required("id", f.entry_id)?;
    required("method", f.method)?;
    required("path", f.path_and_query)?;
    required("assistant id", f.assistant_id)?;
    required("doctor's HPKI id", f.doctor_hpki_id)?;
    let host = present_or_dash("host", f.host)?;
    let content_type = present_or_dash("content-type", f.content_type)?;
    let lines = [
        CONFIRMATION_FORMAT.to_owned(),
        format!("entry-id: {}", f.entry_id),
        format!("method: {}", f.method),
        format!("host: {host}"),
        format!("path: {}", f.path_and_query),
        format!("content-type: {content_type}"),
        format!("body-sha256: {}", super::name::hex(&sha256(f.body))),
        format!("assistant: {}", f.assistant_id),
        format!("doctor: {}", f.doctor_hpki_id),
        format!("held-at: {}", f.held_at.to_rfc3339()),
    ];
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// An optional value as written: itself, or `-` when absent or empty.
fn present_or_dash<'a>(
    field: &'static str,
    value: Option<&'a str>,
) -> Result<&'a str, ConfirmationTextError> {
    match value {
        None | Some("") => Ok("-"),
        Some(v) if v.chars().any(char::is_control) => {
            Err(ConfirmationTextError::ControlCharacter { field })
        }
        Some(v) => Ok(v),
    }
}

/// The SHA-256 of the text's bytes: what the card signs (inside a DigestInfo) and what
/// the page shows for `hpki-card sign --digest`.
pub fn confirmation_digest(text: &str) -> [u8; 32] {
    sha256(text.as_bytes())
}

/// Checks `signature` (RSA PKCS#1 v1.5, SHA-256) over `text` with the key of `signer`.
/// `Reason::BadSignature` when it does not verify; `UnsupportedSignatureAlgorithm` when
/// the key cannot make such a signature (not RSA, or under 2048 bits).
pub fn verify_confirmation_signature(
    signer: &ParsedCertificate,
    text: &[u8],
    signature: &[u8],
) -> Result<(), Reason> {
    let algorithm = AlgorithmIdentifierOwned {
        oid: oids::SHA256_WITH_RSA,
        parameters: None,
    };
    let spki = &signer.x509().tbs_certificate.subject_public_key_info;
    super::signature::verify_signature(spki, &algorithm, text, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(body: &'a [u8]) -> ConfirmationFields<'a> {
        ConfirmationFields {
            entry_id: "p-0123456789abcdef0123",
            method: "POST",
            host: Some("emr.clinic.example.jp"),
            path_and_query: "/records?visit=7&note=%E5%8F%97",
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            body,
            assistant_id: "a-001",
            doctor_hpki_id: "Test117120",
            held_at: UnixTime::parse_rfc3339("2026-11-22T21:05:09+09:00").unwrap(),
        }
    }

    #[test]
    fn the_text_is_exactly_these_bytes() {
        let text = confirmation_text(&fields(b"dose=2")).unwrap();
        // SHA-256("dose=2"), computed independently with `printf 'dose=2' | sha256sum`.
        let expected = "HPKI-GATEWAY-CONFIRMATION-V1\n\
                        entry-id: p-0123456789abcdef0123\n\
                        method: POST\n\
                        host: emr.clinic.example.jp\n\
                        path: /records?visit=7&note=%E5%8F%97\n\
                        content-type: application/x-www-form-urlencoded; charset=utf-8\n\
                        body-sha256: 4186b0179505a1c635144f3ffef7b70f423004ebb10c3cedb40e1418d6dce180\n\
                        assistant: a-001\n\
                        doctor: Test117120\n\
                        held-at: 2026-11-22T12:05:09Z\n";
        assert_eq!(text, expected);
        assert_eq!(confirmation_digest(&text), sha256(expected.as_bytes()));
    }

    #[test]
    fn absent_host_and_content_type_are_a_dash_without_trailing_space() {
        let mut f = fields(b"");
        f.host = None;
        f.content_type = Some("");
        let text = confirmation_text(&f).unwrap();
        assert!(text.contains("\nhost: -\n"), "{text}");
        assert!(text.contains("\ncontent-type: -\n"), "{text}");
        // The SHA-256 of nothing.
        assert!(text.contains(
            "\nbody-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        ));
        for line in text.split_terminator('\n') {
            assert_eq!(line, line.trim(), "whitespace around {line:?}");
        }
        assert!(text.ends_with('\n') && !text.contains('\r'));
    }

    #[test]
    fn control_characters_and_empty_values_build_no_text() {
        type Change = fn(&mut ConfirmationFields<'_>);
        let cases: [(&str, Change); 6] = [
            ("path", |f| f.path_and_query = "/x\ndoctor: Evil"),
            ("content-type", |f| f.content_type = Some("text/plain\r")),
            ("host", |f| f.host = Some("a\u{7f}b")),
            ("assistant id", |f| f.assistant_id = "a\u{85}1"),
            ("method", |f| f.method = "PO\tST"),
            ("doctor's HPKI id", |f| f.doctor_hpki_id = "T1\u{0}"),
        ];
        for (field, change) in cases {
            let mut f = fields(b"x");
            change(&mut f);
            assert_eq!(
                confirmation_text(&f),
                Err(ConfirmationTextError::ControlCharacter { field }),
                "{field}"
            );
        }
        let mut f = fields(b"x");
        f.doctor_hpki_id = "";
        assert_eq!(
            confirmation_text(&f),
            Err(ConfirmationTextError::Empty {
                field: "doctor's HPKI id"
            })
        );
        // Non-ASCII text is not a control character: kept as UTF-8.
        let mut f = fields(b"x");
        f.assistant_id = "受付-01";
        assert!(confirmation_text(&f)
            .unwrap()
            .contains("\nassistant: 受付-01\n"));
    }

    /// A key and a certificate made by rcgen (an encoder independent of `pki`), the
    /// signature by aws-lc-rs's signer.
    fn signer() -> (ParsedCertificate, aws_lc_rs::signature::RsaKeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&key.serialize_der()).unwrap();
        (ParsedCertificate::from_der(cert.der()).unwrap(), pair)
    }

    fn sign(key: &aws_lc_rs::signature::RsaKeyPair, msg: &[u8]) -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .unwrap();
        sig
    }

    #[test]
    fn a_pkcs1_signature_over_the_text_verifies_and_nothing_else_does() {
        let (cert, key) = signer();
        let text = confirmation_text(&fields(b"dose=2")).unwrap();
        let sig = sign(&key, text.as_bytes());
        assert_eq!(
            verify_confirmation_signature(&cert, text.as_bytes(), &sig),
            Ok(())
        );
        // The entry changed after signing: another body, another text.
        let tampered = confirmation_text(&fields(b"dose=20")).unwrap();
        assert_eq!(
            verify_confirmation_signature(&cert, tampered.as_bytes(), &sig),
            Err(Reason::BadSignature)
        );
        // Another doctor named in the text.
        let mut f = fields(b"dose=2");
        f.doctor_hpki_id = "Test000002";
        let other = confirmation_text(&f).unwrap();
        assert_eq!(
            verify_confirmation_signature(&cert, other.as_bytes(), &sig),
            Err(Reason::BadSignature)
        );
        // A signature by another key.
        let (_, other_key) = signer();
        let foreign = sign(&other_key, text.as_bytes());
        assert_eq!(
            verify_confirmation_signature(&cert, text.as_bytes(), &foreign),
            Err(Reason::BadSignature)
        );
        // Garbage and an empty signature.
        assert!(verify_confirmation_signature(&cert, text.as_bytes(), b"").is_err());
        assert!(verify_confirmation_signature(&cert, text.as_bytes(), &sig[1..]).is_err());
    }
}
