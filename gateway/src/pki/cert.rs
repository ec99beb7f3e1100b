//! `ParsedCertificate`: one X.509 certificate decoded once, with everything path
//! validation and identity extraction need precomputed, so that the handshake path
//! never re-parses.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::{
    constraints::name::NameConstraints, name::GeneralName, AuthorityKeyIdentifier,
    BasicConstraints, CertificatePolicies, CrlDistributionPoints, ExtendedKeyUsage,
    InhibitAnyPolicy, KeyUsage, KeyUsages, PolicyConstraints, PolicyMappings, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::der_walk::{split_tlv, tag};
use super::name::NameKey;
use super::{oids, Reason, UnixTime};

/// Why bytes could not be turned into a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub detail: String,
}

impl ParseError {
    fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
        }
    }

    pub fn reason(&self) -> Reason {
        Reason::MalformedCertificate
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed certificate: {}", self.detail)
    }
}

impl std::error::Error for ParseError {}

/// keyUsage bits we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyUsageBits {
    pub digital_signature: bool,
    pub non_repudiation: bool,
    pub key_encipherment: bool,
    pub data_encipherment: bool,
    pub key_agreement: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
    pub encipher_only: bool,
    pub decipher_only: bool,
}

impl KeyUsageBits {
    fn from_ext(ku: &KeyUsage) -> Self {
        let f = ku.0;
        Self {
            digital_signature: f.contains(KeyUsages::DigitalSignature),
            non_repudiation: f.contains(KeyUsages::NonRepudiation),
            key_encipherment: f.contains(KeyUsages::KeyEncipherment),
            data_encipherment: f.contains(KeyUsages::DataEncipherment),
            key_agreement: f.contains(KeyUsages::KeyAgreement),
            key_cert_sign: f.contains(KeyUsages::KeyCertSign),
            crl_sign: f.contains(KeyUsages::CRLSign),
            encipher_only: f.contains(KeyUsages::EncipherOnly),
            decipher_only: f.contains(KeyUsages::DecipherOnly),
        }
    }

    /// The RFC 5280 names of the bits that are set, in bit order.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.digital_signature, "digitalSignature"),
            (self.non_repudiation, "nonRepudiation"),
            (self.key_encipherment, "keyEncipherment"),
            (self.data_encipherment, "dataEncipherment"),
            (self.key_agreement, "keyAgreement"),
            (self.key_cert_sign, "keyCertSign"),
            (self.crl_sign, "cRLSign"),
            (self.encipher_only, "encipherOnly"),
            (self.decipher_only, "decipherOnly"),
        ];
        all.iter()
            .filter(|(set, _)| *set)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// A decoded certificate. Invariant: `der` is exactly the input and every derived field
/// was computed from it; nothing is mutated after construction.
#[derive(Debug, Clone)]
pub struct ParsedCertificate {
    der: Vec<u8>,
    cert: Certificate,
    tbs: std::ops::Range<usize>,
    sha256: [u8; 32],
    subject_key: NameKey,
    issuer_key: NameKey,
    not_before: UnixTime,
    not_after: UnixTime,
    pub(crate) basic_constraints: Option<BasicConstraints>,
    pub(crate) key_usage: Option<KeyUsageBits>,
    pub(crate) ext_key_usage: Option<Vec<ObjectIdentifier>>,
    pub(crate) policies: Option<Vec<ObjectIdentifier>>,
    pub(crate) policy_mappings: Option<Vec<(ObjectIdentifier, ObjectIdentifier)>>,
    pub(crate) policy_constraints: Option<PolicyConstraints>,
    pub(crate) inhibit_any_policy: Option<u32>,
    pub(crate) name_constraints: Option<NameConstraints>,
    pub(crate) subject_alt_names: Option<Vec<GeneralName>>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    /// The raw value of subjectDirectoryAttributes (hcRole lives there).
    pub(crate) subject_directory_attributes: Option<Vec<u8>>,
    crl_distribution_urls: Vec<String>,
    ocsp_urls: Vec<String>,
    unknown_critical: Vec<ObjectIdentifier>,
    /// RFC 5280 issuance rules this certificate breaks (criticality of AKI/SKI/AIA). It still parses, so `cert inspect` can show it, but no path
    /// through it validates.
    nonconformities: Vec<String>,
}

impl ParsedCertificate {
    /// Decodes one DER certificate. Never panics; every failure is a `ParseError`.
    pub fn from_der(bytes: &[u8]) -> Result<Self, ParseError> {
        let cert = Certificate::from_der(bytes).map_err(|e| ParseError::new(e.to_string()))?;
        // Signatures are over the TBSCertificate bytes as received, not as re-encoded.
        let (outer, rest) = split_tlv(bytes).ok_or_else(|| ParseError::new("bad outer TLV"))?;
        if outer.tag != tag::SEQUENCE || !rest.is_empty() {
            return Err(ParseError::new("trailing data after the certificate"));
        }
        let (tbs_tlv, _) =
            split_tlv(outer.value).ok_or_else(|| ParseError::new("bad TBSCertificate TLV"))?;
        let tbs_start = tbs_tlv.raw.as_ptr() as usize - bytes.as_ptr() as usize;
        let tbs = tbs_start..tbs_start + tbs_tlv.raw.len();

        let tbs_cert = &cert.tbs_certificate;
        if tbs_cert.signature != cert.signature_algorithm {
            return Err(ParseError::new(
                "signatureAlgorithm differs from the TBSCertificate signature field",
            ));
        }
        let subject_key = NameKey::of(&tbs_cert.subject)
            .ok_or_else(|| ParseError::new("undecodable subject name"))?;
        let issuer_key = NameKey::of(&tbs_cert.issuer)
            .ok_or_else(|| ParseError::new("undecodable issuer name"))?;
        if issuer_key.is_empty() {
            return Err(ParseError::new("empty issuer name"));
        }
        let not_before = UnixTime::from_x509(&tbs_cert.validity.not_before);
        let not_after = UnixTime::from_x509(&tbs_cert.validity.not_after);

        let mut parsed = ParsedCertificate {
            sha256: sha256(bytes),
            der: bytes.to_vec(),
            tbs,
            subject_key,
            issuer_key,
            not_before,
            not_after,
            basic_constraints: None,
            key_usage: None,
            ext_key_usage: None,
            policies: None,
            policy_mappings: None,
            policy_constraints: None,
            inhibit_any_policy: None,
            name_constraints: None,
            subject_alt_names: None,
            subject_key_id: None,
            authority_key_id: None,
            subject_directory_attributes: None,
            crl_distribution_urls: Vec::new(),
            ocsp_urls: Vec::new(),
            unknown_critical: Vec::new(),
            nonconformities: Vec::new(),
            cert: cert.clone(),
        };
        if let Some(exts) = &cert.tbs_certificate.extensions {
            if tbs_cert.version != Version::V3 {
                return Err(ParseError::new(
                    "extensions in a certificate that is not v3",
                ));
            }
            let mut seen: Vec<&ObjectIdentifier> = Vec::with_capacity(exts.len());
            for ext in exts {
                if seen.contains(&&ext.extn_id) {
                    return Err(ParseError::new(format!(
                        "extension {} appears twice",
                        ext.extn_id
                    )));
                }
                seen.push(&ext.extn_id);
                parsed.apply_extension(&ext.extn_id, ext.critical, ext.extn_value.as_bytes())?;
            }
        }
        Ok(parsed)
    }

    fn apply_extension(
        &mut self,
        oid: &ObjectIdentifier,
        critical: bool,
        value: &[u8],
    ) -> Result<(), ParseError> {
        fn decode<'a, T: Decode<'a>>(oid: &ObjectIdentifier, v: &'a [u8]) -> Result<T, ParseError> {
            T::from_der(v).map_err(|e| ParseError::new(format!("extension {oid}: {e}")))
        }
        // RFC 5280 4.2.1.1, 4.2.1.2, 4.2.2.1: conforming CAs mark these non-critical.
        if critical
            && matches!(
                *oid,
                oids::AUTHORITY_KEY_ID | oids::SUBJECT_KEY_ID | oids::AUTHORITY_INFO_ACCESS
            )
        {
            self.nonconformities.push(format!(
                "extension {oid} is marked critical (RFC 5280 requires non-critical)"
            ));
        }
        match *oid {
            oids::BASIC_CONSTRAINTS => {
                self.basic_constraints = Some(decode::<BasicConstraints>(oid, value)?)
            }
            oids::KEY_USAGE => {
                let ku = decode::<KeyUsage>(oid, value)?;
                self.key_usage = Some(KeyUsageBits::from_ext(&ku));
            }
            oids::EXT_KEY_USAGE => {
                let eku = decode::<ExtendedKeyUsage>(oid, value)?;
                if eku.0.is_empty() {
                    return Err(ParseError::new("empty extendedKeyUsage"));
                }
                self.ext_key_usage = Some(eku.0);
            }
            oids::CERTIFICATE_POLICIES => {
                let cp = decode::<CertificatePolicies>(oid, value)?;
                let mut list: Vec<ObjectIdentifier> = Vec::with_capacity(cp.0.len());
                for p in cp.0 {
                    if list.contains(&p.policy_identifier) {
                        return Err(ParseError::new("a policy OID appears twice"));
                    }
                    list.push(p.policy_identifier);
                }
                self.policies = Some(list);
            }
            oids::POLICY_MAPPINGS => {
                let pm = decode::<PolicyMappings>(oid, value)?;
                self.policy_mappings = Some(
                    pm.0.into_iter()
                        .map(|m| (m.issuer_domain_policy, m.subject_domain_policy))
                        .collect(),
                );
            }
            oids::POLICY_CONSTRAINTS => {
                let pc = decode::<PolicyConstraints>(oid, value)?;
                if pc.require_explicit_policy.is_none() && pc.inhibit_policy_mapping.is_none() {
                    return Err(ParseError::new("empty policyConstraints"));
                }
                self.policy_constraints = Some(pc);
            }
            oids::INHIBIT_ANY_POLICY => {
                self.inhibit_any_policy = Some(decode::<InhibitAnyPolicy>(oid, value)?.0)
            }
            oids::NAME_CONSTRAINTS => {
                let nc = decode::<NameConstraints>(oid, value)?;
                // RFC 5280: at least one of the two, and each SIZE (1..MAX).
                let empty = |t: &Option<Vec<_>>| t.as_ref().is_none_or(Vec::is_empty);
                if empty(&nc.permitted_subtrees) && empty(&nc.excluded_subtrees)
                    || nc.permitted_subtrees.as_ref().is_some_and(Vec::is_empty)
                    || nc.excluded_subtrees.as_ref().is_some_and(Vec::is_empty)
                {
                    return Err(ParseError::new("empty nameConstraints subtrees"));
                }
                self.name_constraints = Some(nc);
            }
            oids::SUBJECT_ALT_NAME => {
                let san = decode::<SubjectAltName>(oid, value)?;
                self.subject_alt_names = Some(san.0);
            }
            oids::SUBJECT_KEY_ID => {
                let ski = decode::<SubjectKeyIdentifier>(oid, value)?;
                self.subject_key_id = Some(ski.0.as_bytes().to_vec());
            }
            oids::AUTHORITY_KEY_ID => {
                let aki = decode::<AuthorityKeyIdentifier>(oid, value)?;
                self.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
            }
            oids::SUBJECT_DIRECTORY_ATTRIBUTES => {
                // Checked structurally here; interpreted by `identity`.
                let (tlv, rest) = split_tlv(value)
                    .filter(|(t, rest)| t.tag == tag::SEQUENCE && rest.is_empty())
                    .ok_or_else(|| ParseError::new("malformed subjectDirectoryAttributes"))?;
                let _ = (tlv, rest);
                self.subject_directory_attributes = Some(value.to_vec());
            }
            oids::CRL_DISTRIBUTION_POINTS => {
                let dps = decode::<CrlDistributionPoints>(oid, value)?;
                self.crl_distribution_urls = dps
                    .0
                    .iter()
                    .filter_map(|dp| match &dp.distribution_point {
                        Some(x509_cert::ext::pkix::name::DistributionPointName::FullName(
                            names,
                        )) => Some(names.iter()),
                        _ => None,
                    })
                    .flatten()
                    .filter_map(|gn| match gn {
                        GeneralName::UniformResourceIdentifier(uri) => {
                            Some(uri.as_str().to_owned())
                        }
                        _ => None,
                    })
                    .collect();
            }
            oids::AUTHORITY_INFO_ACCESS => {
                let aia = decode::<x509_cert::ext::pkix::AuthorityInfoAccessSyntax>(oid, value)?;
                self.ocsp_urls = aia
                    .0
                    .iter()
                    .filter(|ad| ad.access_method == oids::AD_OCSP)
                    .filter_map(|ad| match &ad.access_location {
                        GeneralName::UniformResourceIdentifier(uri) => {
                            Some(uri.as_str().to_owned())
                        }
                        _ => None,
                    })
                    .collect();
            }
            _ => {
                if critical {
                    self.unknown_critical.push(*oid);
                }
            }
        }
        Ok(())
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub fn x509(&self) -> &Certificate {
        &self.cert
    }

    pub(crate) fn tbs_der(&self) -> &[u8] {
        &self.der[self.tbs.clone()]
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub fn subject(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }

    pub fn issuer(&self) -> &Name {
        &self.cert.tbs_certificate.issuer
    }

    pub fn subject_key(&self) -> &NameKey {
        &self.subject_key
    }

    pub fn issuer_key(&self) -> &NameKey {
        &self.issuer_key
    }

    /// Serial number as lowercase hex of its DER content octets (leading zero kept).
    pub fn serial_hex(&self) -> String {
        super::name::hex(self.cert.tbs_certificate.serial_number.as_bytes())
    }

    pub fn serial_bytes(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }

    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    pub fn is_self_issued(&self) -> bool {
        self.subject_key == self.issuer_key
    }

    /// basicConstraints cA = TRUE on a v3 certificate.
    pub fn is_ca(&self) -> bool {
        self.cert.tbs_certificate.version == Version::V3
            && self
                .basic_constraints
                .as_ref()
                .map(|b| b.ca)
                .unwrap_or(false)
    }

    pub fn path_len_constraint(&self) -> Option<u8> {
        self.basic_constraints
            .as_ref()
            .and_then(|b| b.path_len_constraint)
    }

    pub fn key_usage(&self) -> Option<KeyUsageBits> {
        self.key_usage
    }

    pub fn ext_key_usage(&self) -> Option<&[ObjectIdentifier]> {
        self.ext_key_usage.as_deref()
    }

    pub fn policies(&self) -> Option<&[ObjectIdentifier]> {
        self.policies.as_deref()
    }

    pub fn subject_alt_names(&self) -> Option<&[GeneralName]> {
        self.subject_alt_names.as_deref()
    }

    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }

    pub fn crl_distribution_urls(&self) -> &[String] {
        &self.crl_distribution_urls
    }

    pub fn ocsp_urls(&self) -> &[String] {
        &self.ocsp_urls
    }

    /// RFC 5280 issuance rules the certificate breaks (see the field).
    pub fn nonconformities(&self) -> &[String] {
        &self.nonconformities
    }

    pub fn version(&self) -> Version {
        self.cert.tbs_certificate.version
    }

    /// Critical extensions outside the set this validator implements.
    pub fn unknown_critical_extensions(&self) -> &[ObjectIdentifier] {
        &self.unknown_critical
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap_or_default()
    }

    /// The same certificate (byte-identical)?
    pub fn same_as(&self, other: &ParsedCertificate) -> bool {
        self.sha256 == other.sha256
    }

    /// Same subject and same key: the identity used for loop detection, so that a
    /// re-issued CA certificate (new validity, same key) counts as the same node.
    pub fn same_subject_and_key(&self, other: &ParsedCertificate) -> bool {
        self.subject_key == other.subject_key
            && self.cert.tbs_certificate.subject_public_key_info
                == other.cert.tbs_certificate.subject_public_key_info
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Splits PEM or DER input into certificates. PEM input may hold several certificates
/// (a bundle); other PEM blocks (keys, CRLs) are skipped. Bytes that are neither PEM nor
/// a DER certificate are an error naming the problem.
pub fn parse_certificates(input: &[u8]) -> Result<Vec<ParsedCertificate>, ParseError> {
    let trimmed = input
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &input[i..])
        .unwrap_or(&[]);
    if trimmed.is_empty() {
        return Err(ParseError::new("empty input"));
    }
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(input).map_err(|_| ParseError::new("PEM is not UTF-8"))?;
        let mut certs = Vec::new();
        for block in pem_blocks(text)? {
            if block.label == "CERTIFICATE" || block.label == "X509 CERTIFICATE" {
                certs.push(ParsedCertificate::from_der(&block.der)?);
            }
        }
        if certs.is_empty() {
            return Err(ParseError::new("PEM input holds no CERTIFICATE block"));
        }
        Ok(certs)
    } else {
        Ok(vec![ParsedCertificate::from_der(input)?])
    }
}

/// PEM with 64-character lines, the width RFC 7468 §2 asks generators for and OpenSSL writes.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for (i, c) in base64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push_str(&format!("\n-----END {label}-----\n"));
    pem
}

/// One PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Vec<u8>,
}

/// Reads every PEM block in `text` (RFC 7468, lax about surrounding text).
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, ParseError> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for body in lines.by_ref() {
            let body = body.trim();
            if body == end {
                closed = true;
                break;
            }
            if body.contains(':') {
                // RFC 1421 headers (Proc-Type...) are not base64.
                continue;
            }
            b64.push_str(body);
        }
        if !closed {
            return Err(ParseError::new(format!(
                "PEM block {label} has no END line"
            )));
        }
        let der = base64_decode(&b64)
            .ok_or_else(|| ParseError::new(format!("PEM block {label} is not valid base64")))?;
        out.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_known_vectors() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==").unwrap(), b"M");
        assert!(base64_decode("T$==").is_none());
        assert!(base64_decode("TQ==TQ").is_none());
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        for input in [
            &b""[..],
            b"   ",
            b"\x30\x03\x02\x01",
            b"hello",
            b"-----BEGIN CERTIFICATE-----\n",
        ] {
            assert!(parse_certificates(input).is_err());
        }
    }
}
