//! Signature verification with aws-lc-rs (the backend rustls uses), from a
//! SubjectPublicKeyInfo and an AlgorithmIdentifier. The accepted set follows CRYPTREC:
//! RSA (>= 2048 bits) PKCS#1 v1.5 and PSS with SHA-2, ECDSA P-256/P-384, Ed25519.
//! SHA-1 and MD5 are refused.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::{oids, Reason};

/// RSASSA-PSS-params (RFC 4055). Defaults (SHA-1) are refused, so every field we accept
/// is explicit.
#[derive(Sequence)]
struct PssParams<'a> {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierRef<'a>>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mgf: Option<AlgorithmIdentifierRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_len: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer: Option<u32>,
}

#[derive(Sequence)]
struct AlgorithmIdentifierRef<'a> {
    oid: ObjectIdentifier,
    #[asn1(optional = "true")]
    params: Option<AnyRef<'a>>,
}

fn params_absent_or_null(params: &Option<der::Any>) -> bool {
    match params {
        None => true,
        Some(any) => der::Tagged::tag(any) == der::Tag::Null && any.value().is_empty(),
    }
}

/// Chooses the aws-lc-rs algorithm for a (signature algorithm, public key) pair.
fn algorithm_for(
    sig_alg: &AlgorithmIdentifierOwned,
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<&'static dyn VerificationAlgorithm, Reason> {
    let key_alg = &spki.algorithm;
    let is_rsa_key = key_alg.oid == oids::RSA_ENCRYPTION;
    let ec_curve = if key_alg.oid == oids::EC_PUBLIC_KEY {
        key_alg
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
    } else {
        None
    };
    let unsupported = Err(Reason::UnsupportedSignatureAlgorithm);
    match sig_alg.oid {
        oids::SHA256_WITH_RSA | oids::SHA384_WITH_RSA | oids::SHA512_WITH_RSA => {
            if !is_rsa_key || !params_absent_or_null(&sig_alg.parameters) {
                return unsupported;
            }
            Ok(match sig_alg.oid {
                oids::SHA256_WITH_RSA => &signature::RSA_PKCS1_2048_8192_SHA256,
                oids::SHA384_WITH_RSA => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            })
        }
        oids::RSASSA_PSS => {
            if !is_rsa_key {
                return unsupported;
            }
            let params = sig_alg
                .parameters
                .as_ref()
                .ok_or(Reason::UnsupportedSignatureAlgorithm)?;
            let params_der =
                der::Encode::to_der(params).map_err(|_| Reason::MalformedCertificate)?;
            let p = PssParams::from_der(&params_der).map_err(|_| Reason::MalformedCertificate)?;
            let hash = p.hash.ok_or(Reason::UnsupportedSignatureAlgorithm)?.oid;
            let mgf = p.mgf.ok_or(Reason::UnsupportedSignatureAlgorithm)?;
            let mgf_hash = mgf
                .params
                .and_then(|a| a.decode_as::<AlgorithmIdentifierRef<'_>>().ok())
                .map(|a| a.oid);
            if mgf.oid != oids::MGF1 || mgf_hash != Some(hash) || p.trailer.unwrap_or(1) != 1 {
                return unsupported;
            }
            let (alg, salt): (&'static dyn VerificationAlgorithm, u32) = match hash {
                oids::SHA256 => (&signature::RSA_PSS_2048_8192_SHA256, 32),
                oids::SHA384 => (&signature::RSA_PSS_2048_8192_SHA384, 48),
                oids::SHA512 => (&signature::RSA_PSS_2048_8192_SHA512, 64),
                _ => return unsupported,
            };
            // aws-lc-rs verifies PSS with salt length = hash length only.
            if p.salt_len != Some(salt) {
                return unsupported;
            }
            Ok(alg)
        }
        oids::ECDSA_WITH_SHA256 | oids::ECDSA_WITH_SHA384 => {
            if sig_alg.parameters.is_some() {
                return unsupported;
            }
            let sha384 = sig_alg.oid == oids::ECDSA_WITH_SHA384;
            Ok(match (ec_curve, sha384) {
                (Some(oids::SECP256R1), false) => &signature::ECDSA_P256_SHA256_ASN1,
                (Some(oids::SECP256R1), true) => &signature::ECDSA_P256_SHA384_ASN1,
                (Some(oids::SECP384R1), false) => &signature::ECDSA_P384_SHA256_ASN1,
                (Some(oids::SECP384R1), true) => &signature::ECDSA_P384_SHA384_ASN1,
                _ => return unsupported,
            })
        }
        oids::ED25519 => {
            if key_alg.oid != oids::ED25519 || sig_alg.parameters.is_some() {
                return unsupported;
            }
            Ok(&signature::ED25519)
        }
        _ => unsupported,
    }
}

/// Verifies `signature` over `message` with the key in `spki`.
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Reason> {
    let alg = algorithm_for(sig_alg, spki)?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(Reason::MalformedCertificate)?;
    UnparsedPublicKey::new(alg, key)
        .verify(message, signature)
        .map_err(|_| {
            // aws-lc-rs reports a too-small RSA key as a verification failure; tell the
            // operator the real reason.
            if spki.algorithm.oid == oids::RSA_ENCRYPTION && rsa_modulus_bits(key) < 2048 {
                Reason::UnsupportedSignatureAlgorithm
            } else {
                Reason::BadSignature
            }
        })
}

/// Bits of an RSAPublicKey's modulus (0 if unreadable).
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> usize {
    use super::der_walk::TlvReader;
    let Some((seq, _)) = super::der_walk::split_tlv(rsa_public_key) else {
        return 0;
    };
    let mut r = TlvReader::new(seq.value);
    match r.expect(0x02) {
        Some(n) => {
            let digits = n.value;
            let skip = digits.iter().take_while(|&&b| b == 0).count();
            let digits = &digits[skip..];
            match digits.first() {
                Some(&b) => (digits.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
                None => 0,
            }
        }
        None => 0,
    }
}

/// Verifies that `subject` was signed by the key of `issuer`.
pub fn verify_certificate_signature(
    subject: &super::ParsedCertificate,
    issuer_spki: &SubjectPublicKeyInfoOwned,
) -> Result<(), Reason> {
    let x = subject.x509();
    let sig = x.signature.as_bytes().ok_or(Reason::MalformedCertificate)?;
    verify_signature(issuer_spki, &x.signature_algorithm, subject.tbs_der(), sig)
}
