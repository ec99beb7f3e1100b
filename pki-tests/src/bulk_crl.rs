//! CRLs of any size, written with [`crate::der_writer`] (not the `der` crate the gateway
//! parses with) and signed with aws-lc-rs: the million-entry CRL of the benchmarks
//! (`pki-tests/bench/`, `gateway/examples/crl_1m.rs`). rcgen can build CRLs too, but keeps
//! every entry as a struct and re-encodes it, which for a million entries costs seconds and
//! hundreds of MiB; this writer appends each entry's DER once.

use std::fmt;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use time::OffsetDateTime;

use crate::der_reader;
use crate::der_writer::{encode_length, octet_string, oid, sequence, tlv, unsigned_integer};

/// Why a CRL could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlError(pub String);

impl fmt::Display for CrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write the CRL: {}", self.0)
    }
}

impl std::error::Error for CrlError {}

fn fail(what: impl fmt::Display) -> CrlError {
    CrlError(what.to_string())
}

/// The CA key that signs: RSA (sha256WithRSAEncryption, like HPKI CAs) or ECDSA P-256.
pub enum CrlSigner {
    Rsa(RsaKeyPair),
    EcdsaP256(EcdsaKeyPair),
}

impl CrlSigner {
    /// From a PKCS#8 DER private key, RSA or P-256.
    pub fn from_pkcs8(der: &[u8]) -> Result<CrlSigner, CrlError> {
        if let Ok(key) = RsaKeyPair::from_pkcs8(der) {
            return Ok(CrlSigner::Rsa(key));
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map(CrlSigner::EcdsaP256)
            .map_err(|_| fail("the key is neither an RSA nor a P-256 PKCS#8 key"))
    }

    /// From a PEM "PRIVATE KEY" (PKCS#8), as the test PKI writes its keys.
    pub fn from_pkcs8_pem(pem: &str) -> Result<CrlSigner, CrlError> {
        let der = der_reader::pem_to_der(pem, "PRIVATE KEY")
            .ok_or_else(|| fail("no PRIVATE KEY block in the key PEM"))?;
        Self::from_pkcs8(&der)
    }

    /// The AlgorithmIdentifier of the signature.
    fn algorithm(&self) -> Vec<u8> {
        match self {
            CrlSigner::Rsa(_) => sequence(&[
                oid("1.2.840.113549.1.1.11").expect("constant OID"),
                crate::der_writer::null(),
            ]),
            CrlSigner::EcdsaP256(_) => {
                sequence(&[oid("1.2.840.10045.4.3.2").expect("constant OID")])
            }
        }
    }

    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, CrlError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            CrlSigner::Rsa(key) => {
                let mut signature = vec![0u8; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, tbs, &mut signature)
                    .map_err(|_| fail("RSA signing failed"))?;
                Ok(signature)
            }
            CrlSigner::EcdsaP256(key) => key
                .sign(&rng, tbs)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| fail("ECDSA signing failed")),
        }
    }
}

/// Who issues the CRL: the CA's subject Name (DER, as in its certificate), its
/// subjectKeyIdentifier (for the CRL's authorityKeyIdentifier) and its key.
pub struct CrlIssuer {
    pub name_der: Vec<u8>,
    pub key_id: Option<Vec<u8>>,
    pub signer: CrlSigner,
}

impl CrlIssuer {
    /// From the CA's certificate (DER) and PKCS#8 private key (PEM).
    pub fn from_certificate(cert_der: &[u8], key_pem: &str) -> Result<CrlIssuer, CrlError> {
        let view = der_reader::parse_certificate(cert_der).map_err(fail)?;
        let key_id = match view.extension("2.5.29.14") {
            Some(ext) => Some(
                der_reader::read_single(&ext.value)
                    .map_err(fail)?
                    .contents
                    .to_vec(),
            ),
            None => None,
        };
        Ok(CrlIssuer {
            name_der: view.subject_raw,
            key_id,
            signer: CrlSigner::from_pkcs8_pem(key_pem)?,
        })
    }
}

/// Serial numbers as the test PKI issues them: 16 octets, positive, never a leading zero.
pub fn random_serial(rng: &aws_lc_rs::rand::SystemRandom) -> Result<[u8; 16], CrlError> {
    let mut s = [0u8; 16];
    rng.fill(&mut s).map_err(|_| fail("no randomness"))?;
    s[0] = (s[0] & 0x7f) | 0x01;
    Ok(s)
}

fn utc_time(t: OffsetDateTime) -> Vec<u8> {
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x17, text.as_bytes())
}

/// A DER CertificateList (v2) by `issuer`, valid from `this_update` to `next_update`,
/// numbered `number`, revoking `serials` (each given as DER INTEGER content octets) three
/// days before `this_update`; every fourth entry carries a keyCompromise reasonCode.
pub fn build<S: AsRef<[u8]>>(
    issuer: &CrlIssuer,
    serials: &[S],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, CrlError> {
    let alg = issuer.signer.algorithm();
    let revoked_at = utc_time(this_update - time::Duration::days(3));
    let reason_extensions = sequence(&[sequence(&[
        oid("2.5.29.21").expect("constant OID"),
        octet_string(&tlv(0x0a, &[1])),
    ])]);
    // Entries are appended into one buffer: a million small vectors would double the
    // peak memory of the writer.
    let mut entries = Vec::with_capacity(serials.len() * 48);
    let mut entry = Vec::with_capacity(64);
    for (i, serial) in serials.iter().enumerate() {
        entry.clear();
        entry.extend_from_slice(&unsigned_integer(serial.as_ref()));
        entry.extend_from_slice(&revoked_at);
        if i % 4 == 0 {
            entry.extend_from_slice(&reason_extensions);
        }
        entries.push(0x30);
        encode_length(entry.len(), &mut entries);
        entries.extend_from_slice(&entry);
    }
    let mut aki = Vec::new();
    if let Some(id) = &issuer.key_id {
        aki.push(sequence(&[
            oid("2.5.29.35").expect("constant OID"),
            octet_string(&sequence(&[tlv(0x80, id)])),
        ]));
    }
    aki.push(sequence(&[
        oid("2.5.29.20").expect("constant OID"),
        octet_string(&unsigned_integer(&number.to_be_bytes())),
    ]));
    let extensions = tlv(0xa0, &sequence(&aki));
    let mut tbs_fields: Vec<Vec<u8>> = vec![
        unsigned_integer(&[1]),
        alg.clone(),
        issuer.name_der.clone(),
        utc_time(this_update),
        utc_time(next_update),
    ];
    if !serials.is_empty() {
        // An empty revokedCertificates is omitted, not encoded empty (RFC 5280 5.1.2.6).
        tbs_fields.push(tlv(0x30, &entries));
    }
    drop(entries);
    tbs_fields.push(extensions);
    let tbs = sequence(&tbs_fields);
    drop(tbs_fields);
    let signature = issuer.signer.sign(&tbs)?;
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0u8);
    bits.extend_from_slice(&signature);
    Ok(sequence(&[tbs, alg, tlv(0x03, &bits)]))
}

/// PEM armour for a DER CRL ("X509 CRL"), as nginx's `ssl_crl` reads it.
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 64);
    out.push_str("-----BEGIN X509 CRL-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END X509 CRL-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_reader() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                der_reader::pem_to_der(&to_pem(&bytes), "X509 CRL"),
                Some(bytes)
            );
        }
    }
}
