//! OCSP (RFC 6960): building a request for one certificate and verifying the responder's
//! answer to it.
//!
//! Pure like the rest of `pki`: no I/O (the caller sends the request and hands back the
//! response bytes), no clock (the validation time is a parameter) and no panics on any
//! input. The ASN.1 types come from `x509-ocsp`; the signed bytes (tbsResponseData) and
//! the certificates the responder included are taken from the input as received, never
//! re-encoded, so a signature is checked over exactly what the responder signed.
//!
//! A response is accepted only if every check passes; any failure is an `OcspError`, so
//! a caller can never mistake a broken or forged response for "good".

use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, SingleResponse, TbsRequest,
};

use crate::pki::der_walk::{split_tlv, tag, TlvReader};
use crate::pki::name::{display, hex, NameKey};
use crate::pki::{oids, verify_signature, ParsedCertificate, Reason, UnixTime};

/// id-pkix-ocsp-basic: the only response type RFC 6960 requires, and the only one read.
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// id-pkix-ocsp-nonce (RFC 8954).
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// id-pkix-ocsp-nocheck: the responder certificate need not be checked for revocation.
const ID_PKIX_OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
/// id-kp-OCSPSigning: required on a delegated responder certificate.
const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// id-sha1, for CertIDs and ResponderID byKey only (never for signatures).
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

/// RFC 8954: a nonce is 1 to 32 octets.
const MAX_NONCE_LEN: usize = 32;
/// RFC 6960 A.1: larger requests go by POST.
const MAX_GET_URL_LEN: usize = 255;
/// Included certificates that match the ResponderID and are tried as the signer. Each
/// costs up to two signature checks; a hostile response cannot make us do more.
const MAX_RESPONDER_CANDIDATES: usize = 4;

/// The hash of a CertID (issuer name and key hashes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspHash {
    /// SHA-1: what every responder understands (RFC 5019 profile). A CertID is an
    /// identifier, not a signature, so SHA-1's collision weakness does not apply here.
    Sha1,
    Sha256,
}

impl OcspHash {
    /// The AlgorithmIdentifier OID of the hash.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            OcspHash::Sha1 => ID_SHA1,
            OcspHash::Sha256 => oids::SHA256,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            OcspHash::Sha1 => &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            OcspHash::Sha256 => &aws_lc_rs::digest::SHA256,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }
}

impl std::fmt::Display for OcspHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OcspHash::Sha1 => "SHA-1",
            OcspHash::Sha256 => "SHA-256",
        })
    }
}

/// What was asked, to match the response against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRequestInfo {
    /// The DER OCSPRequest to send (POST body, or via `get_url`).
    pub der: Vec<u8>,
    pub hash: OcspHash,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// Content octets of the certificate's serialNumber INTEGER.
    pub serial: Vec<u8>,
    /// The nonce sent (unwrapped), if any.
    pub nonce: Option<Vec<u8>>,
}

/// The certificate's status as the responder reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    /// `reason` is the CRLReason code (1 = keyCompromise, ...), when the responder gave one.
    Revoked {
        at: UnixTime,
        reason: Option<u8>,
    },
    /// The responder does not know the certificate. Not "good".
    Unknown,
}

/// A verified answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspVerdict {
    pub status: OcspStatus,
    pub this_update: UnixTime,
    pub next_update: Option<UnixTime>,
    pub produced_at: UnixTime,
    /// The responder that signed: "issuer" or the delegated responder's subject.
    pub signer: String,
    /// The delegated responder's certificate carries id-pkix-ocsp-nocheck (RFC 6960
    /// 4.2.2.2.1): the CA vouches that it need not be checked for revocation. False when
    /// the issuer signed or the extension is absent. `verify_response` checks no
    /// revocation of the responder either way; without nocheck, that is the caller's call.
    pub responder_nocheck: bool,
}

/// Why an OCSP request could not be built or a response is not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OcspError {
    /// The bytes are not what RFC 6960 describes (or the inputs are inconsistent).
    Malformed(String),
    /// The responder answered with an error status instead of a response:
    /// malformedRequest, internalError, tryLater, sigRequired or unauthorized.
    ResponderStatus(String),
    /// No SingleResponse in the response is about the certificate asked for.
    NoMatchingResponse,
    /// The response is signed by someone who may not answer for this issuer.
    UnauthorizedSigner(String),
    /// The response signature does not verify with the signer's key.
    BadSignature,
    /// thisUpdate (or producedAt) is later than now plus the allowed clock skew.
    NotYetValid,
    /// nextUpdate has passed (or, without nextUpdate, thisUpdate is too old).
    Stale,
    /// The request carried a nonce and the response does not echo it.
    NonceMismatch,
    /// Something outside what is implemented (response type, algorithm, extension).
    Unsupported(String),
}

impl std::fmt::Display for OcspError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OcspError::Malformed(d) => {
                write!(f, "The OCSP data is malformed or inconsistent: {d}.")
            }
            OcspError::ResponderStatus(s) => write!(
                f,
                "The OCSP responder returned no certificate status but the error \"{s}\"."
            ),
            OcspError::NoMatchingResponse => f.write_str(
                "The OCSP response does not answer for the certificate that was asked about.",
            ),
            OcspError::UnauthorizedSigner(d) => write!(
                f,
                "The OCSP response is signed by a responder that may not answer for this \
                 certificate's issuer: {d}."
            ),
            OcspError::BadSignature => f.write_str(
                "The signature on the OCSP response does not verify with the responder's key.",
            ),
            OcspError::NotYetValid => f.write_str(
                "The OCSP response is dated in the future (beyond the allowed clock skew).",
            ),
            OcspError::Stale => f.write_str(
                "The OCSP response is out of date (past its nextUpdate, or too old without one).",
            ),
            OcspError::NonceMismatch => {
                f.write_str("The OCSP response does not carry the nonce sent in the request.")
            }
            OcspError::Unsupported(d) => write!(f, "Unsupported in OCSP: {d}."),
        }
    }
}

impl std::error::Error for OcspError {}

fn malformed(what: &str) -> impl Fn(der::Error) -> OcspError + '_ {
    move |e| OcspError::Malformed(format!("{what}: {e}"))
}

/// The CertID fields for `cert` issued by `issuer`: (issuerNameHash, issuerKeyHash).
/// The name hash is over the issuer field of `cert` as received (RFC 6960 4.1.1), the
/// key hash over the issuer's subjectPublicKey BIT STRING value without the unused-bits
/// octet.
fn cert_id_hashes(
    cert: &ParsedCertificate,
    issuer: &ParsedCertificate,
    hash: OcspHash,
) -> Result<(Vec<u8>, Vec<u8>), OcspError> {
    if cert.issuer_key() != issuer.subject_key() {
        return Err(OcspError::Malformed(format!(
            "\"{}\" is issued by \"{}\", not by \"{}\"",
            display(cert.subject()),
            display(cert.issuer()),
            display(issuer.subject())
        )));
    }
    let name = issuer_field_der(cert.der())
        .ok_or_else(|| OcspError::Malformed("unreadable certificate issuer field".into()))?;
    Ok((hash.digest(name), hash.digest(public_key_bits(issuer))))
}

/// The raw issuer Name of a DER certificate.
fn issuer_field_der(cert_der: &[u8]) -> Option<&[u8]> {
    let (outer, _) = split_tlv(cert_der)?;
    let (tbs, _) = split_tlv(outer.value)?;
    let mut r = TlvReader::new(tbs.value);
    let mut serial = r.read()?;
    if serial.tag == 0xa0 {
        serial = r.read()?;
    }
    if serial.tag != 0x02 {
        return None;
    }
    r.expect(tag::SEQUENCE)?;
    r.expect(tag::SEQUENCE).map(|name| name.raw)
}

fn public_key_bits(c: &ParsedCertificate) -> &[u8] {
    c.x509()
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
}

/// extnValue of the nonce extension: the nonce wrapped in an OCTET STRING (RFC 8954).
fn wrapped_nonce(nonce: &[u8]) -> Result<Vec<u8>, OcspError> {
    OctetString::new(nonce)
        .and_then(|o| o.to_der())
        .map_err(malformed("nonce"))
}

/// Builds a DER OCSPRequest for `cert` issued by `issuer` (CertID with the given hash;
/// SHA-1 for responders that only know SHA-1), with an optional nonce extension
/// (id-pkix-ocsp-nonce, the nonce wrapped in an OCTET STRING per RFC 8954; 1 to 32
/// octets). The request is unsigned, as responders expect.
pub fn build_request(
    cert: &ParsedCertificate,
    issuer: &ParsedCertificate,
    hash: OcspHash,
    nonce: Option<&[u8]>,
) -> Result<OcspRequestInfo, OcspError> {
    let (issuer_name_hash, issuer_key_hash) = cert_id_hashes(cert, issuer, hash)?;
    let request_extensions = match nonce {
        Some(n) if n.is_empty() || n.len() > MAX_NONCE_LEN => {
            return Err(OcspError::Unsupported(format!(
                "a nonce of {} octets (RFC 8954 allows 1 to {MAX_NONCE_LEN})",
                n.len()
            )))
        }
        Some(n) => Some(vec![Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(wrapped_nonce(n)?).map_err(malformed("nonce"))?,
        }]),
        None => None,
    };
    let cert_id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: hash.oid(),
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(issuer_name_hash.clone())
            .map_err(malformed("issuerNameHash"))?,
        issuer_key_hash: OctetString::new(issuer_key_hash.clone())
            .map_err(malformed("issuerKeyHash"))?,
        serial_number: cert.x509().tbs_certificate.serial_number.clone(),
    };
    let request = OcspRequest {
        tbs_request: TbsRequest {
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions,
            ..TbsRequest::default()
        },
        optional_signature: None,
    };
    Ok(OcspRequestInfo {
        der: request.to_der().map_err(malformed("OCSPRequest"))?,
        hash,
        issuer_name_hash,
        issuer_key_hash,
        serial: cert.serial_bytes().to_vec(),
        nonce: nonce.map(<[u8]>::to_vec),
    })
}

/// For GET (RFC 6960 A.1): the standard base64 of the request DER, URL-escaped ('+',
/// '/' and '=' percent-encoded), appended to the responder URL with '/' (not doubled
/// when the URL already ends with one). None if the whole URL would exceed 255 bytes:
/// then the request goes by POST.
pub fn get_url(responder: &str, request: &OcspRequestInfo) -> Option<String> {
    let mut url = String::with_capacity(responder.len() + 1 + request.der.len() * 2);
    url.push_str(responder);
    if !responder.ends_with('/') {
        url.push('/');
    }
    for c in base64_encode(&request.der).chars() {
        match c {
            '+' => url.push_str("%2B"),
            '/' => url.push_str("%2F"),
            '=' => url.push_str("%3D"),
            c => url.push(c),
        }
        if url.len() > MAX_GET_URL_LEN {
            return None;
        }
    }
    (url.len() <= MAX_GET_URL_LEN).then_some(url)
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The parts of a BasicOCSPResponse needed as received.
struct RawBasic<'a> {
    tbs_response_data: &'a [u8],
    certs: Vec<&'a [u8]>,
}

fn split_basic(basic_der: &[u8]) -> Option<RawBasic<'_>> {
    let (outer, rest) = split_tlv(basic_der)?;
    if outer.tag != tag::SEQUENCE || !rest.is_empty() {
        return None;
    }
    let mut r = TlvReader::new(outer.value);
    let tbs = r.expect(tag::SEQUENCE)?;
    r.expect(tag::SEQUENCE)?;
    r.expect(0x03)?;
    let mut certs = Vec::new();
    if let Some(explicit) = r.read() {
        let (seq, rest) = split_tlv(explicit.value)?;
        if explicit.tag != 0xa0 || seq.tag != tag::SEQUENCE || !rest.is_empty() {
            return None;
        }
        let mut cr = TlvReader::new(seq.value);
        while let Some(c) = cr.read() {
            certs.push(c.raw);
        }
        if cr.failed() {
            return None;
        }
    }
    if r.failed() || !r.is_empty() {
        return None;
    }
    Some(RawBasic {
        tbs_response_data: tbs.raw,
        certs,
    })
}

fn status_name(s: OcspResponseStatus) -> &'static str {
    match s {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}

/// The error status of a bare `SEQUENCE { ENUMERATED }` read without DER strictness.
fn lenient_error_status(der: &[u8]) -> Option<&'static str> {
    let (outer, rest) = split_tlv(der)?;
    if outer.tag != tag::SEQUENCE || !rest.is_empty() {
        return None;
    }
    let (status, rest) = split_tlv(outer.value)?;
    if status.tag != 0x0a || !rest.is_empty() {
        return None;
    }
    let status = match status.value {
        [1] => OcspResponseStatus::MalformedRequest,
        [2] => OcspResponseStatus::InternalError,
        [3] => OcspResponseStatus::TryLater,
        [5] => OcspResponseStatus::SigRequired,
        [6] => OcspResponseStatus::Unauthorized,
        _ => return None,
    };
    Some(status_name(status))
}

fn responder_id_matches(id: &ResponderId, c: &ParsedCertificate) -> bool {
    match id {
        ResponderId::ByName(name) => NameKey::of(name).is_some_and(|k| &k == c.subject_key()),
        ResponderId::ByKey(hash) => {
            hash.as_bytes() == OcspHash::Sha1.digest(public_key_bits(c)).as_slice()
        }
    }
}

fn describe_responder_id(id: &ResponderId) -> String {
    match id {
        ResponderId::ByName(name) => format!("\"{}\"", display(name)),
        ResponderId::ByKey(hash) => format!("the key with SHA-1 hash {}", hex(hash.as_bytes())),
    }
}

fn has_nocheck(c: &ParsedCertificate) -> bool {
    c.x509()
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .any(|e| e.extn_id == ID_PKIX_OCSP_NOCHECK)
}

/// RFC 6960 4.2.2.2: a delegated responder certificate is issued directly by the CA that
/// issued the certificate in question and carries id-kp-OCSPSigning. It must also be
/// valid at `now` and carry no critical extension we do not understand.
fn check_delegate(
    responder: &ParsedCertificate,
    issuer: &ParsedCertificate,
    now: UnixTime,
) -> Result<(), String> {
    let who = display(responder.subject());
    if responder.issuer_key() != issuer.subject_key() {
        return Err(format!(
            "responder certificate \"{who}\" is issued by \"{}\", not by the certificate's \
             issuer \"{}\"",
            display(responder.issuer()),
            display(issuer.subject())
        ));
    }
    let x = responder.x509();
    let sig = x.signature.as_bytes().unwrap_or(&[]);
    let issuer_spki = &issuer.x509().tbs_certificate.subject_public_key_info;
    if let Err(reason) = verify_signature(
        issuer_spki,
        &x.signature_algorithm,
        responder.tbs_der(),
        sig,
    ) {
        return Err(format!(
            "responder certificate \"{who}\" was not signed by the issuer's key ({})",
            reason.description()
        ));
    }
    if !responder
        .ext_key_usage()
        .is_some_and(|eku| eku.contains(&ID_KP_OCSP_SIGNING))
    {
        return Err(format!(
            "responder certificate \"{who}\" lacks extendedKeyUsage id-kp-OCSPSigning"
        ));
    }
    if now < responder.not_before() || now > responder.not_after() {
        return Err(format!(
            "responder certificate \"{who}\" is valid from {} to {}, not at {}",
            responder.not_before().to_rfc3339(),
            responder.not_after().to_rfc3339(),
            now.to_rfc3339()
        ));
    }
    if let Some(oid) = responder
        .unknown_critical_extensions()
        .iter()
        .find(|oid| **oid != ID_PKIX_OCSP_NOCHECK)
    {
        return Err(format!(
            "responder certificate \"{who}\" has critical extension {oid}"
        ));
    }
    Ok(())
}

/// The key type a signature algorithm needs, for the algorithms `verify_signature` knows.
fn key_type_for(sig_alg: &ObjectIdentifier) -> Option<ObjectIdentifier> {
    match *sig_alg {
        oids::SHA256_WITH_RSA
        | oids::SHA384_WITH_RSA
        | oids::SHA512_WITH_RSA
        | oids::RSASSA_PSS => Some(oids::RSA_ENCRYPTION),
        oids::ECDSA_WITH_SHA256 | oids::ECDSA_WITH_SHA384 => Some(oids::EC_PUBLIC_KEY),
        oids::ED25519 => Some(oids::ED25519),
        _ => None,
    }
}

fn signature_error(
    reason: Reason,
    sig_alg: &AlgorithmIdentifierOwned,
    signer: &ParsedCertificate,
) -> OcspError {
    let key_alg = signer
        .x509()
        .tbs_certificate
        .subject_public_key_info
        .algorithm
        .oid;
    match reason {
        Reason::BadSignature => OcspError::BadSignature,
        // A known algorithm for another kind of key than the signer's: whoever signed, it
        // was not the holder of this key.
        Reason::UnsupportedSignatureAlgorithm
            if key_type_for(&sig_alg.oid).is_some_and(|k| k != key_alg) =>
        {
            OcspError::BadSignature
        }
        Reason::UnsupportedSignatureAlgorithm => OcspError::Unsupported(format!(
            "the signature algorithm {} with a {key_alg} key (outside the accepted set, or \
             an RSA key under 2048 bits)",
            sig_alg.oid
        )),
        other => OcspError::Malformed(format!("signature check: {}", other.description())),
    }
}

/// Who signed, once authorized and the response signature verified.
struct Signer {
    name: String,
    nocheck: bool,
}

/// Finds the responder allowed to sign for `issuer` and verifies the response signature
/// with its key.
fn authorize_and_verify(
    basic: &BasicOcspResponse,
    raw: &RawBasic<'_>,
    issuer: &ParsedCertificate,
    now: UnixTime,
) -> Result<Signer, OcspError> {
    let id = &basic.tbs_response_data.responder_id;
    let sig_alg = &basic.signature_algorithm;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| OcspError::Malformed("the signature BIT STRING has unused bits".into()))?;
    let verify = |c: &ParsedCertificate| {
        verify_signature(
            &c.x509().tbs_certificate.subject_public_key_info,
            sig_alg,
            raw.tbs_response_data,
            signature,
        )
        .map_err(|r| signature_error(r, sig_alg, c))
    };

    let mut first_error: Option<OcspError> = None;
    if responder_id_matches(id, issuer) {
        match verify(issuer) {
            Ok(()) => {
                return Ok(Signer {
                    name: "issuer".into(),
                    nocheck: false,
                })
            }
            // A delegated responder may share the CA's name (not its key): try those too.
            Err(e) => first_error = Some(e),
        }
    }

    let issuer_spki = &issuer.x509().tbs_certificate.subject_public_key_info;
    let candidates: Vec<ParsedCertificate> = raw
        .certs
        .iter()
        .filter_map(|der| ParsedCertificate::from_der(der).ok())
        .filter(|c| {
            responder_id_matches(id, c)
                && c.x509().tbs_certificate.subject_public_key_info != *issuer_spki
        })
        .take(MAX_RESPONDER_CANDIDATES)
        .collect();
    if candidates.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            OcspError::UnauthorizedSigner(format!(
                "the responder {} is neither the issuer \"{}\" nor a certificate included in \
                 the response",
                describe_responder_id(id),
                display(issuer.subject())
            ))
        }));
    }
    for c in &candidates {
        let outcome = check_delegate(c, issuer, now)
            .map_err(OcspError::UnauthorizedSigner)
            .and_then(|()| verify(c));
        match outcome {
            Ok(()) => {
                return Ok(Signer {
                    name: display(c.subject()),
                    nocheck: has_nocheck(c),
                })
            }
            // A failed signature (of the issuer, or of an authorized responder) says more
            // than a certificate that is not authorized.
            Err(e) => {
                if first_error.is_none() || !matches!(e, OcspError::UnauthorizedSigner(_)) {
                    first_error = Some(e);
                }
            }
        }
    }
    Err(first_error.unwrap_or(OcspError::BadSignature))
}

fn cert_id_matches(id: &CertId, request: &OcspRequestInfo) -> bool {
    let params_ok = match &id.hash_algorithm.parameters {
        None => true,
        Some(p) => der::Tagged::tag(p) == der::Tag::Null && p.value().is_empty(),
    };
    id.hash_algorithm.oid == request.hash.oid()
        && params_ok
        && id.issuer_name_hash.as_bytes() == request.issuer_name_hash.as_slice()
        && id.issuer_key_hash.as_bytes() == request.issuer_key_hash.as_slice()
        && id.serial_number.as_bytes() == request.serial.as_slice()
}

/// Extensions we act on or know to be informational; any other critical one is refused.
fn check_critical(
    exts: Option<&Vec<Extension>>,
    known: &[ObjectIdentifier],
) -> Result<(), OcspError> {
    match exts
        .into_iter()
        .flatten()
        .find(|e| e.critical && !known.contains(&e.extn_id))
    {
        Some(e) => Err(OcspError::Unsupported(format!(
            "the critical extension {}",
            e.extn_id
        ))),
        None => Ok(()),
    }
}

fn unix(t: &x509_ocsp::OcspGeneralizedTime) -> UnixTime {
    UnixTime(t.0.to_unix_duration().as_secs())
}

/// Verifies a DER OCSPResponse for `request` (built by `build_request` for `cert` issued
/// by `issuer`). Any failure is an error — never "good". Checks, in order:
///
/// 1. responseStatus is successful (else `ResponderStatus`), the response type is
///    id-pkix-ocsp-basic and the BasicOCSPResponse decodes;
/// 2. the signer is the issuer itself (ResponderID byName = issuer subject, or byKey =
///    SHA-1 of the issuer's public key bits), or a delegated responder certificate
///    included in the response that matches the ResponderID, is issued by the issuer
///    (same name and signature verified with the issuer's key), carries
///    id-kp-OCSPSigning, is valid at `now` and has no unknown critical extension
///    (else `UnauthorizedSigner`);
/// 3. the response signature verifies with the signer's key over tbsResponseData as
///    received (else `BadSignature`);
/// 4. no critical response or single extension other than the nonce (else
///    `Unsupported`); exactly one SingleResponse has the request's CertID (hash
///    algorithm, issuer name hash, issuer key hash, serial; else `NoMatchingResponse`),
///    and the request does describe `cert` and `issuer` (else `NoMatchingResponse`);
/// 5. thisUpdate and producedAt <= now + skew (else `NotYetValid`); nextUpdate, if
///    present, >= now - skew, and if absent thisUpdate no older than
///    `max_age_without_next_update` seconds (else `Stale`);
/// 6. if the request carried a nonce, the response echoes exactly that nonce extension
///    (else `NonceMismatch`).
///
/// Not done here: revocation checking of a delegated responder's own certificate.
/// Whether it carries id-pkix-ocsp-nocheck is reported in
/// `OcspVerdict::responder_nocheck`; what to do without it is the caller's policy.
/// Validating `cert` and `issuer` themselves is path validation's job.
pub fn verify_response(
    der: &[u8],
    request: &OcspRequestInfo,
    cert: &ParsedCertificate,
    issuer: &ParsedCertificate,
    now: UnixTime,
    skew_secs: u64,
    max_age_without_next_update: u64,
) -> Result<OcspVerdict, OcspError> {
    let response = match OcspResponse::from_der(der) {
        Ok(r) => r,
        Err(e) => {
            // Error statuses are reported even when not strict DER (a non-minimal length,
            // say): the answer is an error either way, and naming it helps the operator.
            return Err(match lenient_error_status(der) {
                Some(status) => OcspError::ResponderStatus(status.into()),
                None => OcspError::Malformed(format!("OCSPResponse: {e}")),
            });
        }
    };
    if response.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::ResponderStatus(
            status_name(response.response_status).into(),
        ));
    }
    let bytes = response.response_bytes.ok_or_else(|| {
        OcspError::Malformed("a successful response without responseBytes".into())
    })?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(OcspError::Unsupported(format!(
            "the response type {}",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(malformed("BasicOCSPResponse"))?;
    let raw = split_basic(basic_der)
        .ok_or_else(|| OcspError::Malformed("unreadable BasicOCSPResponse structure".into()))?;

    let signer = authorize_and_verify(&basic, &raw, issuer, now)?;

    // From here on the data is signed by an authorized responder.
    let tbs = &basic.tbs_response_data;
    check_critical(tbs.response_extensions.as_ref(), &[ID_PKIX_OCSP_NONCE])?;
    let (name_hash, key_hash) =
        cert_id_hashes(cert, issuer, request.hash).map_err(|_| OcspError::NoMatchingResponse)?;
    if name_hash != request.issuer_name_hash
        || key_hash != request.issuer_key_hash
        || cert.serial_bytes() != request.serial.as_slice()
    {
        return Err(OcspError::NoMatchingResponse);
    }
    let matching: Vec<&SingleResponse> = tbs
        .responses
        .iter()
        .filter(|s| cert_id_matches(&s.cert_id, request))
        .collect();
    let single = match matching.as_slice() {
        [] => return Err(OcspError::NoMatchingResponse),
        [one] => *one,
        more => {
            return Err(OcspError::Malformed(format!(
                "the response holds {} answers for the same certificate",
                more.len()
            )))
        }
    };
    check_critical(single.single_extensions.as_ref(), &[])?;

    let produced_at = unix(&tbs.produced_at);
    let this_update = unix(&single.this_update);
    let next_update = single.next_update.as_ref().map(unix);
    let latest_acceptable = UnixTime(now.0.saturating_add(skew_secs));
    if this_update > latest_acceptable || produced_at > latest_acceptable {
        return Err(OcspError::NotYetValid);
    }
    match next_update {
        Some(next) if next < this_update => {
            return Err(OcspError::Malformed(
                "nextUpdate is earlier than thisUpdate".into(),
            ))
        }
        Some(next) if next.0 < now.0.saturating_sub(skew_secs) => return Err(OcspError::Stale),
        Some(_) => {}
        None if now.0.saturating_sub(this_update.0) > max_age_without_next_update => {
            return Err(OcspError::Stale)
        }
        None => {}
    }

    if let Some(nonce) = &request.nonce {
        let want = wrapped_nonce(nonce)?;
        let echoed: Vec<&Extension> = tbs
            .response_extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
            .collect();
        match echoed.as_slice() {
            [one] if one.extn_value.as_bytes() == want.as_slice() => {}
            [] | [_] => return Err(OcspError::NonceMismatch),
            _ => {
                return Err(OcspError::Malformed(
                    "the response carries more than one nonce".into(),
                ))
            }
        }
    }

    let status = match &single.cert_status {
        CertStatus::Good(_) => OcspStatus::Good,
        CertStatus::Revoked(info) => OcspStatus::Revoked {
            at: unix(&info.revocation_time),
            reason: info.revocation_reason.map(|r| r as u8),
        },
        CertStatus::Unknown(_) => OcspStatus::Unknown,
    };
    Ok(OcspVerdict {
        status,
        this_update,
        next_update,
        produced_at,
        signer: signer.name,
        responder_nocheck: signer.nocheck,
    })
}

#[cfg(test)]
mod tests {
    //! Responses come from an independent producer: `openssl ocsp` in responder mode over
    //! an `openssl ca` index, fed our request DER (`-reqin`) and writing its response to a
    //! file (`-respout`): no network, no port.

    use super::*;
    use std::cell::Cell;
    use std::path::Path;
    use std::process::Command;

    const CA_CNF: &str = "\
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
default_md = sha256
default_days = 365
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_leaf ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_ocsp ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
noCheck = ignored
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_noeku ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

    const CA_NAME: &str = "/CN=Test OCSP CA";
    const RESPONDER_NAME: &str = "/CN=Test OCSP Responder";
    /// Responder certificates valid long before and after the test's clock, so that the
    /// validation time can be moved around.
    const LONG: [&str; 4] = [
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20491231000000Z",
    ];
    const SKEW: u64 = 300;
    const MAX_AGE: u64 = 3600;

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed for the OCSP tests");
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn system_now() -> UnixTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        UnixTime(d.as_secs())
    }

    /// A CA (RSA 2048) with an `openssl ca` database, and P-256 end entities.
    struct Pki {
        dir: tempfile::TempDir,
        ca: ParsedCertificate,
        leaf: ParsedCertificate,
        revoked: ParsedCertificate,
        other: ParsedCertificate,
        unknown: ParsedCertificate,
        counter: Cell<u32>,
    }

    impl Pki {
        fn new() -> Pki {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            std::fs::write(dir.join("ca.cnf"), CA_CNF).unwrap();
            std::fs::create_dir(dir.join("newcerts")).unwrap();
            std::fs::write(dir.join("index.txt"), "").unwrap();
            std::fs::write(dir.join("serial"), "1000\n").unwrap();
            let cnf = ["-config", "ca.cnf"];
            let rsa = ["-newkey", "rsa:2048", "-nodes"];
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            let self_signed = |name: &str, key: &[&str], subj: &str, ext: &str| {
                let (k, c) = (format!("{name}.key"), format!("{name}.pem"));
                let out = ["-keyout", &k, "-out", &c, "-subj", subj, "-extensions", ext];
                let days = ["-days", "3650"];
                run(
                    dir,
                    &[&["req", "-x509"][..], key, &out, &days, &cnf].concat(),
                );
            };
            let csr = |name: &str, subj: &str| {
                let (k, r) = (format!("{name}.key"), format!("{name}.csr"));
                let out = ["-keyout", &k, "-out", &r, "-subj", subj];
                run(dir, &[&["req", "-new"][..], &ec, &out, &cnf].concat());
            };
            // Through the `openssl ca` database that `openssl ocsp -index` answers from.
            let issue = |name: &str, subj: &str, ext: &str, dates: &[&str]| {
                csr(name, subj);
                let (r, c) = (format!("{name}.csr"), format!("{name}.pem"));
                let ca = [
                    "ca", "-batch", "-notext", "-cert", "ca.pem", "-keyfile", "ca.key",
                ];
                let out = ["-extensions", ext, "-in", &r, "-out", &c];
                run(dir, &[&ca[..], &cnf, &out, dates].concat());
            };
            // Outside the database, by `openssl x509 -req`.
            let sign = |name: &str, subj: &str, ext: &str, ca: &str, serial: &str| {
                csr(name, subj);
                let (r, c) = (format!("{name}.csr"), format!("{name}.pem"));
                let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
                run(
                    dir,
                    &[
                        "x509",
                        "-req",
                        "-in",
                        &r,
                        "-CA",
                        &ca_pem,
                        "-CAkey",
                        &ca_key,
                        "-set_serial",
                        serial,
                        "-days",
                        "30",
                        "-extfile",
                        "ca.cnf",
                        "-extensions",
                        ext,
                        "-out",
                        &c,
                    ],
                );
            };

            self_signed("ca", &rsa, CA_NAME, "v3_ca");
            issue("leaf", "/CN=Leaf", "v3_leaf", &LONG);
            issue("revoked", "/CN=Revoked Leaf", "v3_leaf", &LONG);
            issue("other", "/CN=Other Leaf", "v3_leaf", &LONG);
            issue("responder", RESPONDER_NAME, "v3_ocsp", &LONG);
            // A delegated responder that shares the CA's name, not its key.
            issue("samename", CA_NAME, "v3_ocsp", &LONG);
            let noeku = "/CN=Responder Without OCSPSigning";
            issue("noeku", noeku, "v3_noeku", &LONG);
            let expired = [
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20210101000000Z",
            ];
            issue("expired", "/CN=Expired OCSP Responder", "v3_ocsp", &expired);
            let revoke = ["-revoke", "revoked.pem", "-crl_reason", "keyCompromise"];
            let ca = ["ca", "-cert", "ca.pem", "-keyfile", "ca.key"];
            run(dir, &[&ca[..], &revoke, &cnf].concat());
            // Issued by the CA but never entered in its database.
            sign("unknown", "/CN=Unknown Leaf", "v3_leaf", "ca", "0x7777");

            // Forgeries. A self-signed certificate with the responder's name and EKU:
            self_signed("forged", &ec, RESPONDER_NAME, "v3_ocsp");
            // an impostor CA with the CA's exact name and key type but another key, which
            // issues a responder certificate with the real responder's name:
            self_signed("impostor_ca", &rsa, CA_NAME, "v3_ca");
            sign(
                "impostor",
                RESPONDER_NAME,
                "v3_ocsp",
                "impostor_ca",
                "0x1001",
            );
            // and one with an EC key, whose signatures cannot even be checked with the
            // CA's RSA key.
            self_signed("impostor_ec_ca", &ec, CA_NAME, "v3_ca");

            let load = |name: &str| {
                let pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
                crate::pki::parse_certificates(&pem).unwrap().remove(0)
            };
            Pki {
                ca: load("ca"),
                leaf: load("leaf"),
                revoked: load("revoked"),
                other: load("other"),
                unknown: load("unknown"),
                dir: tmp,
                counter: Cell::new(0),
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn request(&self, cert: &ParsedCertificate, hash: OcspHash) -> OcspRequestInfo {
            build_request(cert, &self.ca, hash, None).unwrap()
        }

        /// `openssl ocsp` answers `req` as the responder `signer` (`signer.pem/.key`).
        fn respond(&self, req: &OcspRequestInfo, signer: &str, extra: &[&str]) -> Vec<u8> {
            let n = self.counter.get() + 1;
            self.counter.set(n);
            let (req_file, resp_file) = (format!("req-{n}.der"), format!("resp-{n}.der"));
            std::fs::write(self.path().join(&req_file), &req.der).unwrap();
            let (cert, key) = (format!("{signer}.pem"), format!("{signer}.key"));
            let args = [
                &["ocsp", "-index", "index.txt", "-CA", "ca.pem"][..],
                &["-rsigner", &cert, "-rkey", &key],
                &["-reqin", &req_file, "-respout", &resp_file],
                extra,
            ]
            .concat();
            run(self.path(), &args);
            std::fs::read(self.path().join(&resp_file)).unwrap()
        }

        fn verify_at(
            &self,
            resp: &[u8],
            req: &OcspRequestInfo,
            cert: &ParsedCertificate,
            now: UnixTime,
        ) -> Result<OcspVerdict, OcspError> {
            verify_response(resp, req, cert, &self.ca, now, SKEW, MAX_AGE)
        }

        fn verify(
            &self,
            resp: &[u8],
            req: &OcspRequestInfo,
            cert: &ParsedCertificate,
        ) -> Result<OcspVerdict, OcspError> {
            self.verify_at(resp, req, cert, system_now())
        }
    }

    #[test]
    fn requests_are_byte_identical_to_openssl_requests() {
        let pki = Pki::new();
        for (hash, flag) in [(OcspHash::Sha1, "-sha1"), (OcspHash::Sha256, "-sha256")] {
            let ours = pki.request(&pki.leaf, hash);
            run(
                pki.path(),
                &[
                    "ocsp",
                    flag,
                    "-issuer",
                    "ca.pem",
                    "-cert",
                    "leaf.pem",
                    "-no_nonce",
                    "-reqout",
                    "theirs.der",
                ],
            );
            let theirs = std::fs::read(pki.path().join("theirs.der")).unwrap();
            assert_eq!(ours.der, theirs, "{hash} CertID differs from openssl's");
            assert_eq!(ours.serial, pki.leaf.serial_bytes());
            assert_eq!(ours.issuer_key_hash.len(), ours.issuer_name_hash.len());
        }
        // openssl reads our nonce as RFC 8954 wraps it: an OCTET STRING in extnValue.
        let nonce = [0xA5u8; 16];
        let req = build_request(&pki.leaf, &pki.ca, OcspHash::Sha1, Some(&nonce)).unwrap();
        std::fs::write(pki.path().join("nonce.der"), &req.der).unwrap();
        let text = run(pki.path(), &["ocsp", "-reqin", "nonce.der", "-req_text"]);
        assert!(
            text.contains(&format!("0410{}", "A5".repeat(16))),
            "openssl does not show the wrapped nonce:\n{text}"
        );
    }

    #[test]
    fn good_from_delegated_responder() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        let resp = pki.respond(&req, "responder", &["-ndays", "1"]);
        let before = system_now();
        let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
        assert_eq!(v.status, OcspStatus::Good);
        assert_eq!(v.signer, "CN=Test OCSP Responder");
        assert!(
            v.responder_nocheck,
            "the responder certificate has ocspNoCheck"
        );
        assert_eq!(v.next_update, Some(UnixTime(v.this_update.0 + 86_400)));
        assert!(v.produced_at.0.abs_diff(before.0) < 60);
        // By key instead of by name.
        let resp = pki.respond(&req, "responder", &["-ndays", "1", "-resp_key_id"]);
        let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
        assert_eq!(
            (v.status, v.signer.as_str()),
            (OcspStatus::Good, "CN=Test OCSP Responder")
        );
        // A responder named like the CA is tried as a delegate once the CA's key fails.
        let resp = pki.respond(&req, "samename", &["-ndays", "1"]);
        let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
        assert_eq!(
            (v.status, v.signer.as_str()),
            (OcspStatus::Good, "CN=Test OCSP CA")
        );
        assert!(v.responder_nocheck);
    }

    #[test]
    fn good_signed_by_the_issuer_itself() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha256);
        for extra in [&["-ndays", "1"][..], &["-ndays", "1", "-resp_key_id"]] {
            let resp = pki.respond(&req, "ca", extra);
            let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
            assert_eq!(v.status, OcspStatus::Good);
            assert_eq!(v.signer, "issuer");
            assert!(!v.responder_nocheck);
        }
    }

    #[test]
    fn sha1_and_sha256_cert_ids_both_work_and_do_not_mix() {
        let pki = Pki::new();
        let sha1 = pki.request(&pki.leaf, OcspHash::Sha1);
        let sha256 = pki.request(&pki.leaf, OcspHash::Sha256);
        let r1 = pki.respond(&sha1, "responder", &["-ndays", "1"]);
        let r256 = pki.respond(&sha256, "responder", &["-ndays", "1"]);
        assert_eq!(
            pki.verify(&r1, &sha1, &pki.leaf).unwrap().status,
            OcspStatus::Good
        );
        assert_eq!(
            pki.verify(&r256, &sha256, &pki.leaf).unwrap().status,
            OcspStatus::Good
        );
        assert_eq!(
            pki.verify(&r256, &sha1, &pki.leaf),
            Err(OcspError::NoMatchingResponse)
        );
        assert_eq!(
            pki.verify(&r1, &sha256, &pki.leaf),
            Err(OcspError::NoMatchingResponse)
        );
    }

    #[test]
    fn revoked_with_reason_and_time() {
        let pki = Pki::new();
        let index = std::fs::read_to_string(pki.path().join("index.txt")).unwrap();
        let line = index
            .lines()
            .find(|l| l.ends_with("/CN=Revoked Leaf"))
            .unwrap();
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], "R");
        let (date, reason) = fields[2].split_once(',').unwrap();
        assert_eq!(reason, "keyCompromise");
        // YYMMDDHHMMSSZ
        let d = |r: std::ops::Range<usize>| &date[r];
        let rfc3339 = format!(
            "20{}-{}-{}T{}:{}:{}Z",
            d(0..2),
            d(2..4),
            d(4..6),
            d(6..8),
            d(8..10),
            d(10..12)
        );
        let revoked_at = UnixTime::parse_rfc3339(&rfc3339).unwrap();

        for signer in ["responder", "ca"] {
            let req = pki.request(&pki.revoked, OcspHash::Sha1);
            let resp = pki.respond(&req, signer, &["-ndays", "1"]);
            let v = pki.verify(&resp, &req, &pki.revoked).unwrap();
            assert_eq!(
                v.status,
                OcspStatus::Revoked {
                    at: revoked_at,
                    reason: Some(1)
                }
            );
        }
    }

    #[test]
    fn serial_missing_from_the_index_is_unknown() {
        let pki = Pki::new();
        let req = pki.request(&pki.unknown, OcspHash::Sha256);
        let resp = pki.respond(&req, "responder", &["-ndays", "1"]);
        let v = pki.verify(&resp, &req, &pki.unknown).unwrap();
        assert_eq!(v.status, OcspStatus::Unknown);
    }

    #[test]
    fn forged_responders_are_refused() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        // Self-signed, with the real responder's name and OCSPSigning.
        let resp = pki.respond(&req, "forged", &["-ndays", "1"]);
        let err = pki.verify(&resp, &req, &pki.leaf).unwrap_err();
        assert!(matches!(err, OcspError::UnauthorizedSigner(_)), "{err:?}");
        // The responder's name, issued under the CA's name, but by another key.
        let resp = pki.respond(&req, "impostor", &["-ndays", "1"]);
        let err = pki.verify(&resp, &req, &pki.leaf).unwrap_err();
        assert!(
            matches!(&err, OcspError::UnauthorizedSigner(d) if d.contains("not signed by the issuer's key")),
            "{err:?}"
        );
        // The impostor CAs answering as the issuer: right name, wrong key.
        for impostor in ["impostor_ca", "impostor_ec_ca"] {
            let resp = pki.respond(&req, impostor, &["-ndays", "1"]);
            assert_eq!(
                pki.verify(&resp, &req, &pki.leaf),
                Err(OcspError::BadSignature),
                "{impostor}"
            );
        }
        // Same by key hash: the key hash is not the issuer's, and no included
        // certificate of the issuer has it.
        let resp = pki.respond(&req, "impostor_ca", &["-ndays", "1", "-resp_key_id"]);
        let err = pki.verify(&resp, &req, &pki.leaf).unwrap_err();
        assert!(matches!(err, OcspError::UnauthorizedSigner(_)), "{err:?}");
    }

    #[test]
    fn responder_certificate_must_be_fit_for_ocsp_signing() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        let cases = [
            ("noeku", &["-ndays", "1"][..], "id-kp-OCSPSigning"),
            ("expired", &["-ndays", "1"], "not at"),
            // The responder's certificate left out: nothing to verify it with.
            (
                "responder",
                &["-ndays", "1", "-resp_no_certs"],
                "nor a certificate included",
            ),
        ];
        for (signer, extra, detail) in cases {
            let resp = pki.respond(&req, signer, extra);
            let err = pki.verify(&resp, &req, &pki.leaf).unwrap_err();
            assert!(
                matches!(&err, OcspError::UnauthorizedSigner(d) if d.contains(detail)),
                "{signer}: {err:?}"
            );
            assert!(err.to_string().ends_with('.'));
        }
    }

    #[test]
    fn validity_window_with_skew() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        // nextUpdate = thisUpdate + 5 minutes.
        let resp = pki.respond(&req, "responder", &["-nmin", "5"]);
        let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
        let next = v.next_update.unwrap();
        assert_eq!(next.0, v.this_update.0 + 300);
        let at = |t: u64| pki.verify_at(&resp, &req, &pki.leaf, UnixTime(t));
        assert!(at(next.0 + SKEW).is_ok());
        assert_eq!(at(next.0 + SKEW + 1), Err(OcspError::Stale));
        assert_eq!(at(next.0 + 3600), Err(OcspError::Stale));
        assert!(at(v.this_update.0 - SKEW).is_ok());
        assert_eq!(at(v.this_update.0 - SKEW - 1), Err(OcspError::NotYetValid));
        assert_eq!(at(v.this_update.0 - 3600), Err(OcspError::NotYetValid));

        // Without nextUpdate, the caller's maximum age applies.
        let resp = pki.respond(&req, "responder", &[]);
        let v = pki.verify(&resp, &req, &pki.leaf).unwrap();
        assert_eq!(v.next_update, None);
        let at = |t: u64| pki.verify_at(&resp, &req, &pki.leaf, UnixTime(t));
        assert!(at(v.this_update.0 + MAX_AGE).is_ok());
        assert_eq!(at(v.this_update.0 + MAX_AGE + 1), Err(OcspError::Stale));
        assert_eq!(at(v.this_update.0 - 3600), Err(OcspError::NotYetValid));
    }

    #[test]
    fn nonce_is_echoed_and_checked() {
        let pki = Pki::new();
        let nonce = b"0123456789abcdef";
        let req = build_request(&pki.leaf, &pki.ca, OcspHash::Sha1, Some(nonce)).unwrap();
        let resp = pki.respond(&req, "responder", &["-ndays", "1"]);
        assert_eq!(
            pki.verify(&resp, &req, &pki.leaf).unwrap().status,
            OcspStatus::Good
        );

        let mut other = req.clone();
        other.nonce = Some(b"fedcba9876543210".to_vec());
        assert_eq!(
            pki.verify(&resp, &other, &pki.leaf),
            Err(OcspError::NonceMismatch)
        );
        // A response that carries no nonce, to a caller that sent one.
        let plain = pki.request(&pki.leaf, OcspHash::Sha1);
        let resp_plain = pki.respond(&plain, "responder", &["-ndays", "1"]);
        assert_eq!(
            pki.verify(&resp_plain, &req, &pki.leaf),
            Err(OcspError::NonceMismatch)
        );
        // A nonce the caller did not ask for is ignored.
        assert!(pki.verify(&resp, &plain, &pki.leaf).is_ok());
    }

    #[test]
    fn response_for_another_certificate_does_not_match() {
        let pki = Pki::new();
        let req_leaf = pki.request(&pki.leaf, OcspHash::Sha1);
        let req_other = pki.request(&pki.other, OcspHash::Sha1);
        let resp_other = pki.respond(&req_other, "responder", &["-ndays", "1"]);
        assert_eq!(
            pki.verify(&resp_other, &req_leaf, &pki.leaf),
            Err(OcspError::NoMatchingResponse)
        );
        // The request info must describe the certificate passed in.
        assert_eq!(
            pki.verify(&resp_other, &req_other, &pki.leaf),
            Err(OcspError::NoMatchingResponse)
        );
        assert!(pki.verify(&resp_other, &req_other, &pki.other).is_ok());
    }

    #[test]
    fn damaged_responses_are_errors_never_panics() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        for signer in ["responder", "ca"] {
            let resp = pki.respond(&req, signer, &["-ndays", "1"]);
            let good = pki.verify(&resp, &req, &pki.leaf).unwrap();
            let now = system_now();
            for len in 0..resp.len() {
                assert!(
                    pki.verify_at(&resp[..len], &req, &pki.leaf, now).is_err(),
                    "{signer}: truncated to {len} bytes"
                );
            }
            let mut accepted = 0;
            for i in 0..resp.len() {
                for bit in 0..8 {
                    let mut m = resp.clone();
                    m[i] ^= 1 << bit;
                    if let Ok(v) = pki.verify_at(&m, &req, &pki.leaf, now) {
                        // Only bytes outside what is signed or used can change unnoticed.
                        assert_eq!(v, good, "{signer}: byte {i} bit {bit} changed the verdict");
                        accepted += 1;
                    }
                }
            }
            // Every byte of a delegated response is signed or used; the issuer-signed one
            // carries the CA certificate, unused, whose flips change nothing.
            if signer == "responder" {
                assert_eq!(accepted, 0);
            }
        }
    }

    #[test]
    fn signature_bit_flip_is_bad_signature() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        // The CA signs with RSA: the signature is the last 256 bytes of the
        // BasicOCSPResponse, followed by the included certificates.
        let resp = pki.respond(&req, "ca", &["-ndays", "1", "-resp_no_certs"]);
        let mut m = resp.clone();
        let last = m.len() - 1;
        m[last] ^= 0x01;
        assert_eq!(
            pki.verify(&m, &req, &pki.leaf),
            Err(OcspError::BadSignature)
        );
    }

    #[test]
    fn responder_error_statuses() {
        let pki = Pki::new();
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        for (code, name) in [
            (1u8, "malformedRequest"),
            (2, "internalError"),
            (3, "tryLater"),
            (5, "sigRequired"),
            (6, "unauthorized"),
        ] {
            // DER, and with a non-minimal long-form length (BER).
            for der in [
                vec![0x30, 0x03, 0x0a, 0x01, code],
                vec![0x30, 0x81, 0x03, 0x0a, 0x01, code],
            ] {
                assert_eq!(
                    pki.verify(&der, &req, &pki.leaf),
                    Err(OcspError::ResponderStatus(name.into()))
                );
            }
        }
        for bad in [
            &[0x30, 0x03, 0x0a, 0x01, 0x04][..], // 4 is not a status
            &[0x30, 0x03, 0x0a, 0x01, 0x00],     // successful without responseBytes
            &[],
            &[0x30],
            &[0x30, 0x80, 0x0a, 0x01, 0x01, 0x00, 0x00],
        ] {
            let err = pki.verify(bad, &req, &pki.leaf).unwrap_err();
            assert!(
                matches!(err, OcspError::Malformed(_)),
                "{bad:02x?}: {err:?}"
            );
        }
    }

    #[test]
    fn get_url_follows_rfc6960_appendix_a1() {
        let pki = Pki::new();
        let info = |der: Vec<u8>| OcspRequestInfo {
            der,
            ..pki.request(&pki.leaf, OcspHash::Sha1)
        };
        // 0xfb 0xff -> "+/8=": all three characters escaped.
        assert_eq!(
            get_url("http://ocsp.example.jp", &info(vec![0xfb, 0xff])).as_deref(),
            Some("http://ocsp.example.jp/%2B%2F8%3D")
        );
        assert_eq!(
            get_url("http://ocsp.example.jp/", &info(vec![0xfb, 0xff, 0xbf])).as_deref(),
            Some("http://ocsp.example.jp/%2B%2F%2B%2F")
        );
        // A real request, against openssl's base64.
        let req = pki.request(&pki.leaf, OcspHash::Sha1);
        std::fs::write(pki.path().join("get.der"), &req.der).unwrap();
        let b64 = run(pki.path(), &["base64", "-A", "-in", "get.der"]);
        let escaped = b64
            .trim()
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert_eq!(
            get_url("http://ocsp.example.jp/ocsp", &req),
            Some(format!("http://ocsp.example.jp/ocsp/{escaped}"))
        );
        // 255 bytes is the limit (23 + 232 base64 characters for 174 zero bytes).
        let url = get_url("http://ocsp.example.jp", &info(vec![0; 174])).unwrap();
        assert_eq!(url.len(), 255);
        assert_eq!(get_url("http://ocsp.example.jp", &info(vec![0; 175])), None);
        // A SHA-256 request with a 32-octet nonce is 152 octets, 204 base64 characters.
        let big = build_request(&pki.leaf, &pki.ca, OcspHash::Sha256, Some(&[7; 32])).unwrap();
        assert_eq!(big.der.len(), 152);
        let responder = "http://ocsp.example.jp/hpki/authentication-ca/ocsp-responder";
        assert_eq!(get_url(responder, &big), None);
    }

    #[test]
    fn build_request_refuses_bad_inputs() {
        let pki = Pki::new();
        for n in [&[][..], &[1u8; 33]] {
            let err = build_request(&pki.leaf, &pki.ca, OcspHash::Sha1, Some(n)).unwrap_err();
            assert!(matches!(err, OcspError::Unsupported(_)), "{err:?}");
        }
        assert!(build_request(&pki.leaf, &pki.ca, OcspHash::Sha1, Some(&[1; 32])).is_ok());
        // The leaf is not issued by itself.
        let err = build_request(&pki.leaf, &pki.leaf, OcspHash::Sha1, None).unwrap_err();
        assert!(matches!(err, OcspError::Malformed(_)), "{err:?}");
    }
}
