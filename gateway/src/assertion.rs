//! The signed identity assertion sent upstream as `X-HPKI-Assertion`.
//!
//! The gateway also names the logged-in person in plain headers, but a plain header is only
//! as trustworthy as every hop between the gateway and the portal. The assertion lets the
//! portal check, with any JOSE library and nothing specific to this project, that the identity
//! came from this gateway (`iss`, signature), was meant for this portal (`aud`), is recent
//! (`iat`/`exp`), and belongs to one request (`jti`).
//!
//! Format: a compact JWS (RFC 7515) carrying JWT claims (RFC 7519), signed ES256
//! (ECDSA P-256 with SHA-256, RFC 7518 §3.4). The public key is published as a JWK Set
//! (RFC 7517) at `/.well-known/hpki-gateway/jwks.json`, named by its RFC 7638 thumbprint so
//! that the `kid` changes exactly when the key does.
//!
//! This module only signs. There is deliberately no verifier here: the gateway never needs
//! one, and the tests check tokens with primitives and by-hand computations independent of
//! the signing code, so a shared misunderstanding cannot pass both sides.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

/// The command that makes a key this module accepts, quoted in every load error so an
/// operator who hit one can fix it without reading the source.
const KEYGEN_COMMAND: &str =
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out assertion-es256.pem";

/// Signs identity assertions with one ECDSA P-256 key.
///
/// Build it once at start-up and share it (it is `Send + Sync`); signing takes `&self`.
pub struct AssertionSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    issuer: String,
    /// `issuer` as a JSON string.
    issuer_json: String,
    lifetime: Duration,
    /// The encoded protected header. It depends only on the key, so it is built once.
    header_b64: String,
    /// The public key as a JWK, as served in the JWK Set.
    jwk: Value,
}

impl AssertionSigner {
    /// Loads the signing key from PEM text.
    ///
    /// Accepted: an unencrypted PKCS#8 `PRIVATE KEY` (what `openssl genpkey` writes) or a SEC1
    /// `EC PRIVATE KEY` (what `openssl ecparam -genkey` and `openssl ec` write; aws-lc-rs loads
    /// both), on curve P-256. Exactly one private key block must be present; other blocks
    /// (such as `EC PARAMETERS`) and text between blocks are ignored, as OpenSSL does.
    ///
    /// `lifetime` is counted in whole seconds, since `exp` and `iat` are integers.
    pub fn from_pem(
        pem: &str,
        issuer: &str,
        lifetime: Duration,
    ) -> Result<Self, AssertionKeyError> {
        let key = load_p256_key(pem)?;
        Ok(Self::from_key_pair(key, issuer, lifetime))
    }

    /// A fresh P-256 key as PKCS#8 PEM (used by `hpki-gateway demo`).
    ///
    /// # Panics
    ///
    /// If aws-lc-rs cannot generate or encode a key, which means the crypto library itself is
    /// broken; there is nothing useful a caller could do instead.
    pub fn generate_pem() -> String {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("aws-lc-rs failed to generate a P-256 key");
        let pkcs8 = key
            .to_pkcs8v1()
            .expect("aws-lc-rs failed to encode a P-256 key as PKCS#8");
        crate::pki::pem_encode("PRIVATE KEY", pkcs8.as_ref())
    }

    /// The key id: the RFC 7638 JWK thumbprint (base64url SHA-256) of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` for `audience` and returns a compact JWS.
    ///
    /// The header is `{"alg":"ES256","typ":"JWT","kid":..}`. The payload is `claims` plus
    /// `iss`, `aud`, `iat` (`now_unix`), `exp` (`now_unix` + lifetime) and `jti`
    /// (`request_id`); these replace any caller claim of the same name, because they are the
    /// ones a verifier relies on and only the signer may decide them.
    ///
    /// # Panics
    ///
    /// If aws-lc-rs fails to sign with a key it already accepted, which means the crypto
    /// library itself is broken.
    pub fn sign(
        &self,
        claims: &Map<String, Value>,
        audience: &str,
        request_id: &str,
        now_unix: u64,
    ) -> String {
        self.sign_prepared(
            &[&PreparedClaims::new(claims)],
            audience,
            request_id,
            now_unix,
        )
    }

    /// Like [`Self::sign`], with claims serialized beforehand (a connection's identity is
    /// serialized once, not on every request); `parts` must not name a claim twice.
    pub fn sign_prepared(
        &self,
        parts: &[&PreparedClaims],
        audience: &str,
        request_id: &str,
        now_unix: u64,
    ) -> String {
        // Serializing a string cannot fail, and serde_json writes non-ASCII names (kanji)
        // as UTF-8, which is what RFC 8259 §8.1 asks for.
        let text = |s: &str| Value::from(s).to_string();
        let mut payload = String::with_capacity(512);
        payload.push_str("{\"iss\":");
        payload.push_str(&self.issuer_json);
        payload.push_str(",\"aud\":");
        payload.push_str(&text(audience));
        payload.push_str(",\"iat\":");
        payload.push_str(&now_unix.to_string());
        payload.push_str(",\"exp\":");
        payload.push_str(&now_unix.saturating_add(self.lifetime.as_secs()).to_string());
        payload.push_str(",\"jti\":");
        payload.push_str(&text(request_id));
        for part in parts {
            if !part.0.is_empty() {
                payload.push(',');
                payload.push_str(&part.0);
            }
        }
        payload.push('}');

        // The JWS signing input is the ASCII text `header.payload` (RFC 7515 §5.1).
        let mut token = self.header_b64.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);

        // ECDSA_P256_SHA256_FIXED gives r||s as two 32-byte big-endian integers, which is the
        // JWS encoding (RFC 7518 §3.4); the ASN.1/DER form that TLS uses would be rejected by
        // every JOSE library.
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .expect("aws-lc-rs failed to sign with a loaded P-256 key");
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        token
    }

    /// The JWK Set served at `/.well-known/hpki-gateway/jwks.json`:
    /// `{"keys":[{"kty":"EC","crv":"P-256","x":..,"y":..,"use":"sig","alg":"ES256","kid":..}]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    fn from_key_pair(key: EcdsaKeyPair, issuer: &str, lifetime: Duration) -> Self {
        // For P-256 aws-lc-rs exposes the public key as the SEC 1 uncompressed point
        // 0x04 || X || Y, each coordinate 32 bytes; JWK wants X and Y on their own (RFC 7518
        // §6.2.1.2), at that full length.
        let point = key.public_key().as_ref();
        assert!(
            point.len() == 65 && point[0] == 0x04,
            "aws-lc-rs returned a P-256 public key that is not an uncompressed point"
        );
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);

        let kid = jwk_thumbprint(&x, &y);
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "use": "sig",
            "alg": "ES256",
            "kid": kid,
        });

        Self {
            key,
            rng: SystemRandom::new(),
            kid,
            issuer: issuer.to_owned(),
            issuer_json: Value::from(issuer).to_string(),
            lifetime,
            header_b64,
            jwk,
        }
    }
}

impl fmt::Debug for AssertionSigner {
    // Written out so that the key pair never reaches a log line, whatever its own `Debug`
    // prints in some later aws-lc-rs version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// The claims the signer sets itself; a caller's claim of one of these names is dropped.
const SIGNER_CLAIMS: [&str; 5] = ["iss", "aud", "iat", "exp", "jti"];

/// Claims serialized for [`AssertionSigner::sign_prepared`]: the JSON object members
/// (`"name":value,...`, without braces), less the claims the signer sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedClaims(String);

impl PreparedClaims {
    pub fn new(claims: &Map<String, Value>) -> PreparedClaims {
        let kept: Map<String, Value> = claims
            .iter()
            .filter(|(k, _)| !SIGNER_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let object = Value::Object(kept).to_string();
        // `{...}` → its members.
        PreparedClaims(object[1..object.len() - 1].to_owned())
    }
}

/// RFC 7638 thumbprint of an EC P-256 public key: base64url(SHA-256) of the required members
/// in lexicographic order with no whitespace. Written out by hand rather than through a JSON
/// serializer, because the exact bytes are the point and serializer key order depends on
/// crate features; `x` and `y` are base64url, so nothing in them needs escaping.
fn jwk_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// Why an assertion signing key could not be loaded.
///
/// The messages never include key material: they say what was found, what is expected, and
/// how to make a key that works.
#[derive(Debug)]
pub enum AssertionKeyError {
    /// The text has no well-formed PEM block.
    NotPem,
    /// There is PEM, but not one unencrypted private key in a form the gateway reads.
    NotPkcs8(String),
    /// There is a private key, but it is not an ECDSA key on P-256, which ES256 requires.
    NotP256(String),
}

impl fmt::Display for AssertionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPem => write!(
                f,
                "assertion signing key is not PEM: expected an unencrypted PKCS#8 P-256 \
                 private key (-----BEGIN PRIVATE KEY-----); make one with `{KEYGEN_COMMAND}`"
            ),
            Self::NotPkcs8(found) => write!(
                f,
                "assertion signing key is not a usable private key: {found}; expected an \
                 unencrypted PKCS#8 P-256 private key (-----BEGIN PRIVATE KEY-----); make one \
                 with `{KEYGEN_COMMAND}`"
            ),
            Self::NotP256(found) => write!(
                f,
                "assertion signing key is {found}, but ES256 needs an ECDSA key on curve P-256 \
                 (prime256v1); make one with `{KEYGEN_COMMAND}`"
            ),
        }
    }
}

impl std::error::Error for AssertionKeyError {}

fn load_p256_key(pem: &str) -> Result<EcdsaKeyPair, AssertionKeyError> {
    let blocks = pem_blocks(pem)?;
    let keys = blocks
        .iter()
        .filter(|b| b.label.ends_with("PRIVATE KEY"))
        .collect::<Vec<_>>();
    let block = match keys.as_slice() {
        [one] => *one,
        [] => {
            let labels = blocks
                .iter()
                .map(|b| b.label.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AssertionKeyError::NotPkcs8(format!(
                "the file holds PEM blocks ({labels}) but no private key"
            )));
        }
        // Picking one would make which key signs depend on file order.
        many => {
            return Err(AssertionKeyError::NotPkcs8(format!(
                "the file holds {} private keys; it must hold exactly one",
                many.len()
            )))
        }
    };

    if block.has_headers {
        // RFC 1421 headers in a key block mean OpenSSL's legacy encryption (Proc-Type, DEK-Info).
        return Err(encrypted_key());
    }

    match block.label.as_str() {
        "PRIVATE KEY" => load_pkcs8(&block.der),
        "EC PRIVATE KEY" => load_sec1(&block.der),
        "ENCRYPTED PRIVATE KEY" => Err(encrypted_key()),
        "RSA PRIVATE KEY" => Err(AssertionKeyError::NotP256("an RSA key".into())),
        "DSA PRIVATE KEY" => Err(AssertionKeyError::NotP256("a DSA key".into())),
        other => Err(AssertionKeyError::NotPkcs8(format!(
            "a '{other}' block, which is not PKCS#8"
        ))),
    }
}

fn encrypted_key() -> AssertionKeyError {
    AssertionKeyError::NotPkcs8(
        "the key is encrypted, and the gateway reads it unattended so it has no passphrase \
         to give; write a decrypted copy with `openssl pkey -in ENCRYPTED.pem -out \
         assertion-es256.pem` and protect it with file permissions"
            .into(),
    )
}

/// Loads a PKCS#8 `PrivateKeyInfo` (RFC 5208).
///
/// aws-lc-rs decides whether the key is usable; the structural look beforehand only lets the
/// error say *what* the key is (an RSA key, a P-384 key), which aws-lc-rs reports as a bare
/// "WrongAlgorithm". It also refuses bytes after the key, which aws-lc-rs would ignore.
fn load_pkcs8(der: &[u8]) -> Result<EcdsaKeyPair, AssertionKeyError> {
    let (algorithm, curve) = peek_pkcs8(der).ok_or_else(|| {
        AssertionKeyError::NotPkcs8(
            "the PRIVATE KEY block is not exactly one DER PKCS#8 PrivateKeyInfo".into(),
        )
    })?;
    if algorithm != OID_EC_PUBLIC_KEY {
        return Err(AssertionKeyError::NotP256(algorithm_name(algorithm)));
    }
    if let Some(curve) = curve {
        if curve != OID_P256 {
            return Err(AssertionKeyError::NotP256(format!(
                "an EC key on {}",
                curve_name(curve)
            )));
        }
    }
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| {
        AssertionKeyError::NotPkcs8(format!("aws-lc-rs rejected the PKCS#8 P-256 key ({e})"))
    })
}

/// Loads a SEC1 `ECPrivateKey` (RFC 5915), the "traditional" OpenSSL EC key format.
fn load_sec1(der: &[u8]) -> Result<EcdsaKeyPair, AssertionKeyError> {
    let curve = peek_sec1(der).ok_or_else(|| {
        AssertionKeyError::NotPkcs8(
            "the EC PRIVATE KEY block is not exactly one DER SEC1 ECPrivateKey".into(),
        )
    })?;
    if let Some(curve) = curve {
        if curve != OID_P256 {
            return Err(AssertionKeyError::NotP256(format!(
                "an EC key on {}",
                curve_name(curve)
            )));
        }
    }
    // `from_private_key_der` reads RFC 5915 keys (and PKCS#8, which `peek_sec1` has ruled out).
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| {
        AssertionKeyError::NotPkcs8(format!(
            "aws-lc-rs rejected the SEC1 EC PRIVATE KEY ({e}); converting it to PKCS#8 with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY.pem -out assertion-es256.pem` shows \
             whether OpenSSL can read it"
        ))
    })
}

// DER contents (without tag and length) of the object identifiers the diagnostics name.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7

fn algorithm_name(oid: &[u8]) -> String {
    const NAMES: &[(&[u8], &str)] = &[
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            "an RSA key",
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
            "an RSA-PSS key",
        ),
        (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "a DSA key"),
        (&[0x2b, 0x65, 0x70], "an Ed25519 key"),
        (&[0x2b, 0x65, 0x71], "an Ed448 key"),
        (&[0x2b, 0x65, 0x6e], "an X25519 key"),
        (&[0x2b, 0x65, 0x6f], "an X448 key"),
    ];
    NAMES.iter().find(|(known, _)| *known == oid).map_or_else(
        || "a key of an unrecognised algorithm".into(),
        |(_, name)| (*name).into(),
    )
}

fn curve_name(oid: &[u8]) -> String {
    const NAMES: &[(&[u8], &str)] = &[
        (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384 (secp384r1)"),
        (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521 (secp521r1)"),
        (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
        (
            &[0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07],
            "brainpoolP256r1",
        ),
    ];
    NAMES.iter().find(|(known, _)| *known == oid).map_or_else(
        || "an unrecognised curve".into(),
        |(_, name)| (*name).into(),
    )
}

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;

/// `PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, ... }`:
/// returns the algorithm OID and, if the parameters are an OID (a named curve), that OID.
fn peek_pkcs8(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let info = der_whole(der, TAG_SEQUENCE)?;
    let (_version, rest) = der_expect(info, TAG_INTEGER)?;
    let (algorithm_id, _) = der_expect(rest, TAG_SEQUENCE)?;
    let (algorithm, parameters) = der_expect(algorithm_id, TAG_OID)?;
    let curve = der_expect(parameters, TAG_OID).map(|(curve, _)| curve);
    Some((algorithm, curve))
}

/// `ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
/// parameters [0] OID OPTIONAL, publicKey [1] BIT STRING OPTIONAL }`: returns the named curve
/// if the key states one. A PKCS#8 key fails here (its second element is a SEQUENCE).
fn peek_sec1(der: &[u8]) -> Option<Option<&[u8]>> {
    let key = der_whole(der, TAG_SEQUENCE)?;
    let (version, rest) = der_expect(key, TAG_INTEGER)?;
    if version != [1] {
        return None;
    }
    let (_private_key, rest) = der_expect(rest, TAG_OCTET_STRING)?;
    match der_next(rest) {
        Some((TAG_CONTEXT_0, parameters, _)) => Some(Some(der_expect(parameters, TAG_OID)?.0)),
        _ => Some(None),
    }
}

/// The contents of `der` if it is exactly one element with `tag` and nothing after it.
fn der_whole(der: &[u8], tag: u8) -> Option<&[u8]> {
    match der_expect(der, tag)? {
        (contents, []) => Some(contents),
        _ => None,
    }
}

fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match der_next(input)? {
        (found, contents, rest) if found == tag => Some((contents, rest)),
        _ => None,
    }
}

/// Splits one element off `input` as (tag, contents, rest). Only as much DER as keys use:
/// one-byte tags and definite lengths of up to four bytes. This reader only chooses error
/// messages; aws-lc-rs does the strict parse that decides whether a key is accepted.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

struct PemBlock {
    label: String,
    /// RFC 1421 `Name: value` lines inside the block (only legacy encrypted keys have them).
    has_headers: bool,
    der: Vec<u8>,
}

/// Every PEM block in `text` (RFC 7468), in order.
///
/// Lenient where OpenSSL is (CRLF line ends, indentation, text between blocks such as
/// "Bag Attributes"), strict where a mistake would otherwise go unnoticed: an unterminated
/// block or bad base64 is `NotPem`, not a skipped block.
fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, AssertionKeyError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut base64 = String::new();
        let mut has_headers = false;
        let mut closed = false;
        for line in lines.by_ref() {
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                has_headers = true;
            } else {
                base64.push_str(line);
            }
        }
        if !closed {
            return Err(AssertionKeyError::NotPem);
        }
        let der = STANDARD
            .decode(base64)
            .map_err(|_| AssertionKeyError::NotPem)?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            has_headers,
            der,
        });
    }
    if blocks.is_empty() {
        return Err(AssertionKeyError::NotPem);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    //! Tokens are checked without any code from the signing path: signatures with aws-lc-rs's
    //! verifier and a public key rebuilt from the JWK Set alone, the thumbprint by hashing a
    //! string written out in the test, and one fixed key against values computed by Python's
    //! `cryptography` package.

    use super::*;
    use crate::pki::pem_encode;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        Ed25519KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED,
        ECDSA_P384_SHA384_FIXED_SIGNING,
    };

    const ISSUER: &str = "https://gateway.example.jp";
    const AUDIENCE: &str = "https://portal.example.jp";
    const NOW: u64 = 1_760_000_000;
    const LIFETIME: Duration = Duration::from_secs(60);

    /// A throwaway test key made with the documented command (`openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256`). It protects nothing.
    const OPENSSL_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMbsDhJJZ8hdAZ41p
x7P7UYiEX7AYaXEK9gCINjQ5hUqhRANCAARpIm+6HNK+VcVLRhm2dZuv9fuwecPR
7/z+YwuMfVDsn16eWss2iIaoizNtitflz0TN2YrIiiCEkplXjez5JCQ4
-----END PRIVATE KEY-----
";
    /// The same key as `openssl ec` writes it (SEC1).
    const OPENSSL_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIDG7A4SSWfIXQGeNacez+1GIhF+wGGlxCvYAiDY0OYVKoAoGCCqGSM49
AwEHoUQDQgAEaSJvuhzSvlXFS0YZtnWbr/X7sHnD0e/8/mMLjH1Q7J9enlrLNoiG
qIszbYrX5c9EzdmKyIoghJKZV43s+SQkOA==
-----END EC PRIVATE KEY-----
";
    /// What `openssl ecparam -genkey` puts before the key: the curve OID alone.
    const EC_PARAMETERS_P256: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
";
    // Computed from the key above by Python `cryptography` (public_numbers, then RFC 7638 with
    // json.dumps(sort_keys=True, separators=(",", ":")) and hashlib.sha256).
    const OPENSSL_X: &str = "aSJvuhzSvlXFS0YZtnWbr_X7sHnD0e_8_mMLjH1Q7J8";
    const OPENSSL_Y: &str = "Xp5ayzaIhqiLM22K1-XPRM3ZisiKIISSmVeN7PkkJDg";
    const OPENSSL_KID: &str = "g64eg4_6jlKLE-pemP-qvlyTWdvPrHTSm7NWJNUf9N4";

    fn fresh_signer() -> AssertionSigner {
        AssertionSigner::from_pem(&AssertionSigner::generate_pem(), ISSUER, LIFETIME).unwrap()
    }

    fn identity_claims() -> Map<String, Value> {
        let claims = json!({
            "sub": "HPKI:1234567890",
            "name": "山田 太郎",
            "hpki_role": "Medical Doctor",
        });
        claims.as_object().unwrap().clone()
    }

    fn b64url(part: &str) -> Vec<u8> {
        // Strict: padding or standard-alphabet characters fail here.
        URL_SAFE_NO_PAD.decode(part).unwrap()
    }

    struct Decoded {
        header: Value,
        payload: Value,
        signing_input: String,
        signature: Vec<u8>,
    }

    fn decode(token: &str) -> Decoded {
        let parts = token.split('.').collect::<Vec<_>>();
        assert_eq!(parts.len(), 3, "compact JWS has three parts: {token}");
        Decoded {
            header: serde_json::from_slice(&b64url(parts[0])).unwrap(),
            payload: serde_json::from_slice(&b64url(parts[1])).unwrap(),
            signing_input: format!("{}.{}", parts[0], parts[1]),
            signature: b64url(parts[2]),
        }
    }

    /// The only key a portal has: the one in the JWK Set.
    fn public_key_from_jwks(jwks: &Value) -> Vec<u8> {
        let jwk = &jwks["keys"][0];
        let x = b64url(jwk["x"].as_str().unwrap());
        let y = b64url(jwk["y"].as_str().unwrap());
        assert_eq!(
            (x.len(), y.len()),
            (32, 32),
            "coordinates keep leading zeros"
        );
        let mut point = vec![0x04];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        point
    }

    fn verifies(jwks: &Value, signing_input: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key_from_jwks(jwks))
            .verify(signing_input, signature)
            .is_ok()
    }

    fn load_err(pem: &str) -> AssertionKeyError {
        AssertionSigner::from_pem(pem, ISSUER, LIFETIME).unwrap_err()
    }

    #[test]
    fn token_is_three_base64url_parts_without_padding() {
        let token = fresh_signer().sign(&identity_claims(), AUDIENCE, "req-1", NOW);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(decode(&token).signature.len(), 64, "r||s, not DER");
    }

    #[test]
    fn header_is_exactly_alg_typ_kid() {
        let signer = fresh_signer();
        let header = decode(&signer.sign(&identity_claims(), AUDIENCE, "req-1", NOW)).header;
        assert_eq!(
            header,
            json!({ "alg": "ES256", "typ": "JWT", "kid": signer.kid() })
        );
    }

    #[test]
    fn payload_has_caller_and_registered_claims() {
        let payload =
            decode(&fresh_signer().sign(&identity_claims(), AUDIENCE, "req-42", NOW)).payload;
        for (name, value) in identity_claims() {
            assert_eq!(payload[&name], value, "caller claim {name}");
        }
        assert_eq!(payload["iss"], ISSUER);
        assert_eq!(payload["aud"], AUDIENCE);
        assert_eq!(payload["jti"], "req-42");
        assert_eq!(payload["iat"], NOW);
        let exp = payload["exp"].as_u64().unwrap();
        assert_eq!(exp - payload["iat"].as_u64().unwrap(), LIFETIME.as_secs());
        assert_eq!(
            payload.as_object().unwrap().len(),
            identity_claims().len() + 5
        );
    }

    #[test]
    fn prepared_parts_name_every_claim_once() {
        let signer = fresh_signer();
        let mut identity = identity_claims();
        identity.insert("jti".into(), json!("replayed"));
        let mut extra = Map::new();
        extra.insert("emergency".into(), json!("e-1"));
        let parts = [
            &PreparedClaims::new(&identity),
            &PreparedClaims::new(&extra),
        ];
        let token = signer.sign_prepared(&parts, AUDIENCE, "req-9", NOW);
        let raw = String::from_utf8(b64url(token.split('.').nth(1).unwrap())).unwrap();
        for name in [
            "iss",
            "aud",
            "iat",
            "exp",
            "jti",
            "sub",
            "name",
            "hpki_role",
            "emergency",
        ] {
            assert_eq!(
                raw.matches(&format!("\"{name}\":")).count(),
                1,
                "{name} in {raw}"
            );
        }
        let payload = decode(&token).payload;
        assert_eq!(payload["jti"], "req-9");
        assert_eq!(payload["emergency"], "e-1");
        assert_eq!(payload["name"], "山田 太郎");
        // An empty part adds nothing, not a stray comma.
        let token = signer.sign_prepared(&[&PreparedClaims::default()], AUDIENCE, "req-10", NOW);
        assert_eq!(decode(&token).payload.as_object().unwrap().len(), 5);
    }

    #[test]
    fn registered_claims_override_caller_claims() {
        let mut claims = identity_claims();
        for (name, forged) in [
            ("iss", json!("https://evil.example")),
            (
                "aud",
                json!(["https://portal.example.jp", "https://other.example"]),
            ),
            ("iat", json!(NOW + 100_000)),
            ("exp", json!(u64::MAX)),
            ("jti", json!("replayed")),
        ] {
            claims.insert(name.into(), forged);
        }
        let payload = decode(&fresh_signer().sign(&claims, AUDIENCE, "req-7", NOW)).payload;
        assert_eq!(payload["iss"], ISSUER);
        assert_eq!(payload["aud"], AUDIENCE);
        assert_eq!(payload["iat"], NOW);
        assert_eq!(payload["exp"], NOW + 60);
        assert_eq!(payload["jti"], "req-7");
        assert_eq!(payload["name"], "山田 太郎");
    }

    #[test]
    fn signature_verifies_with_key_from_jwks_only() {
        let signer = fresh_signer();
        let jwks = signer.jwks();
        for request_id in ["a", "b", "c"] {
            let token = decode(&signer.sign(&identity_claims(), AUDIENCE, request_id, NOW));
            assert!(verifies(
                &jwks,
                token.signing_input.as_bytes(),
                &token.signature
            ));
            // The DER form is what the wrong aws-lc-rs algorithm would have produced.
            assert!(
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key_from_jwks(&jwks))
                    .verify(token.signing_input.as_bytes(), &token.signature)
                    .is_err()
            );
        }
    }

    #[test]
    fn flipping_a_byte_of_payload_or_signature_fails() {
        let signer = fresh_signer();
        let jwks = signer.jwks();
        let token = signer.sign(&identity_claims(), AUDIENCE, "req-1", NOW);
        let (header_b64, rest) = token.split_once('.').unwrap();
        let (payload_b64, _) = rest.split_once('.').unwrap();
        let payload = b64url(payload_b64);
        let signature = decode(&token).signature;

        for i in [0, payload.len() / 2, payload.len() - 1] {
            let mut tampered = payload.clone();
            tampered[i] ^= 0x01;
            let input = format!("{header_b64}.{}", URL_SAFE_NO_PAD.encode(&tampered));
            assert!(
                !verifies(&jwks, input.as_bytes(), &signature),
                "payload byte {i}"
            );
        }
        let input = format!("{header_b64}.{payload_b64}");
        for i in [0, 31, 32, 63] {
            let mut tampered = signature.clone();
            tampered[i] ^= 0x01;
            assert!(
                !verifies(&jwks, input.as_bytes(), &tampered),
                "signature byte {i}"
            );
        }
        // And another key's JWK Set does not verify it either.
        assert!(!verifies(
            &fresh_signer().jwks(),
            input.as_bytes(),
            &signature
        ));
    }

    #[test]
    fn kid_is_rfc7638_thumbprint_of_the_jwks_key() {
        let signer = fresh_signer();
        let jwks = signer.jwks();
        let jwk = &jwks["keys"][0];
        let canonical = format!(
            "{{\"crv\":\"{}\",\"kty\":\"{}\",\"x\":\"{}\",\"y\":\"{}\"}}",
            jwk["crv"].as_str().unwrap(),
            jwk["kty"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        );
        let thumbprint =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        assert_eq!(signer.kid(), thumbprint);
        assert_eq!(jwk["kid"], thumbprint);
    }

    #[test]
    fn jwks_has_exactly_the_documented_members() {
        let signer = fresh_signer();
        let jwks = signer.jwks();
        assert_eq!(jwks.as_object().unwrap().len(), 1);
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        let jwk = &jwks["keys"][0];
        assert_eq!(
            *jwk,
            json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                "kid": signer.kid(), "x": jwk["x"], "y": jwk["y"],
            })
        );
        // No private member ("d") in the published set.
        assert_eq!(jwk.as_object().unwrap().len(), 7);
    }

    #[test]
    fn openssl_key_matches_values_computed_by_python() {
        let ec_param_genkey = format!("{EC_PARAMETERS_P256}{OPENSSL_SEC1}");
        for pem in [OPENSSL_PKCS8, OPENSSL_SEC1, ec_param_genkey.as_str()] {
            let signer = AssertionSigner::from_pem(pem, ISSUER, LIFETIME).unwrap();
            assert_eq!(signer.kid(), OPENSSL_KID);
            let jwk = &signer.jwks()["keys"][0];
            assert_eq!(
                (jwk["x"].as_str(), jwk["y"].as_str()),
                (Some(OPENSSL_X), Some(OPENSSL_Y))
            );
        }
    }

    #[test]
    fn generated_pem_is_pkcs8_and_loads() {
        let pem = AssertionSigner::generate_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.ends_with("\n-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        let a = AssertionSigner::from_pem(&pem, ISSUER, LIFETIME).unwrap();
        let b = AssertionSigner::from_pem(&pem, ISSUER, LIFETIME).unwrap();
        assert_eq!(a.kid(), b.kid(), "the kid depends on the key only");
        assert_ne!(a.kid(), fresh_signer().kid(), "each call makes a new key");
    }

    #[test]
    fn pem_with_crlf_and_surrounding_text_loads() {
        let pem = format!(
            "Bag Attributes\r\n    friendlyName: gateway\r\n{}",
            OPENSSL_PKCS8.replace('\n', "\r\n")
        );
        let signer = AssertionSigner::from_pem(&pem, ISSUER, LIFETIME).unwrap();
        assert_eq!(signer.kid(), OPENSSL_KID);
    }

    #[test]
    fn garbage_is_not_pem() {
        let unterminated = OPENSSL_PKCS8.replace("-----END PRIVATE KEY-----", "");
        let bad_base64 = OPENSSL_PKCS8.replace("MIGH", "M!GH");
        for garbage in [
            "",
            "not a key",
            "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg",
            unterminated.as_str(),
            bad_base64.as_str(),
        ] {
            assert!(
                matches!(load_err(garbage), AssertionKeyError::NotPem),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn rsa_key_is_not_p256() {
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = rsa.as_der().unwrap();
        let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
        match load_err(&pem) {
            AssertionKeyError::NotP256(found) => assert_eq!(found, "an RSA key"),
            other => panic!("{other:?}"),
        }
        // The traditional `openssl genrsa` label is named without parsing.
        let traditional = pem_encode("RSA PRIVATE KEY", &[0x30, 0x00]);
        assert!(matches!(
            load_err(&traditional),
            AssertionKeyError::NotP256(_)
        ));
    }

    #[test]
    fn other_curves_and_algorithms_are_not_p256() {
        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let p384_pkcs8 = pem_encode("PRIVATE KEY", p384.to_pkcs8v1().unwrap().as_ref());
        let p384_sec1 = pem_encode(
            "EC PRIVATE KEY",
            p384.private_key().as_der().unwrap().as_ref(),
        );
        let ed25519 = pem_encode(
            "PRIVATE KEY",
            Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
                .unwrap()
                .as_ref(),
        );
        for (pem, expected) in [
            (p384_pkcs8, "an EC key on P-384 (secp384r1)"),
            (p384_sec1, "an EC key on P-384 (secp384r1)"),
            (ed25519, "an Ed25519 key"),
        ] {
            match load_err(&pem) {
                AssertionKeyError::NotP256(found) => assert_eq!(found, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn pem_without_one_usable_private_key_is_not_pkcs8() {
        let pkcs8_der = STANDARD
            .decode(
                OPENSSL_PKCS8
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let mut trailing = pkcs8_der.clone();
        trailing.push(0);
        let mut bad_scalar = pkcs8_der.clone();
        // The private scalar starts right after `04 20` inside the ECPrivateKey; all-ones is
        // above the group order, so aws-lc-rs must refuse it.
        let at = pkcs8_der
            .windows(2)
            .position(|w| w == [0x04, 0x20])
            .unwrap()
            + 2;
        bad_scalar[at..at + 32].fill(0xff);
        let legacy_encrypted = OPENSSL_SEC1.replace(
            "-----BEGIN EC PRIVATE KEY-----\n",
            "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
        );
        let cases = [
            ("certificate only", pem_encode("CERTIFICATE", &[0x30, 0x00])),
            (
                "two keys",
                format!("{OPENSSL_PKCS8}{}", AssertionSigner::generate_pem()),
            ),
            (
                "encrypted",
                pem_encode("ENCRYPTED PRIVATE KEY", &[0x30, 0x00]),
            ),
            ("legacy encrypted", legacy_encrypted),
            (
                "OpenSSH",
                pem_encode("OPENSSH PRIVATE KEY", b"openssh-key-v1\0"),
            ),
            (
                "truncated",
                pem_encode("PRIVATE KEY", &pkcs8_der[..pkcs8_der.len() - 1]),
            ),
            ("trailing data", pem_encode("PRIVATE KEY", &trailing)),
            ("bad scalar", pem_encode("PRIVATE KEY", &bad_scalar)),
            (
                "PKCS#8 labelled SEC1",
                pem_encode("EC PRIVATE KEY", &pkcs8_der),
            ),
        ];
        for (what, pem) in cases {
            assert!(
                matches!(load_err(&pem), AssertionKeyError::NotPkcs8(_)),
                "{what}"
            );
        }
    }

    #[test]
    fn error_messages_say_how_to_make_a_key() {
        let errors = [
            load_err("not a key"),
            load_err(&pem_encode("ENCRYPTED PRIVATE KEY", &[0x30, 0x00])),
            load_err(&pem_encode("RSA PRIVATE KEY", &[0x30, 0x00])),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.contains(KEYGEN_COMMAND), "{message}");
            assert!(message.contains("BEGIN PRIVATE KEY") || message.contains("P-256"));
        }
        let encrypted = load_err(&pem_encode("ENCRYPTED PRIVATE KEY", &[0x30, 0x00])).to_string();
        assert!(encrypted.contains("openssl pkey -in"), "{encrypted}");
    }

    #[test]
    fn signer_is_shareable_and_debug_shows_no_key() {
        fn shareable<T: Send + Sync>() {}
        shareable::<AssertionSigner>();
        let signer = AssertionSigner::from_pem(OPENSSL_PKCS8, ISSUER, LIFETIME).unwrap();
        let debug = format!("{signer:?}");
        assert!(debug.contains(OPENSSL_KID), "{debug}");
        assert!(!debug.contains("EcdsaKeyPair"), "{debug}");
    }
}
