//! Certificate revocation lists (RFC 5280 §5): parsing, issuer and signature checks, and
//! a compact index for O(log n) serial lookups.
//!
//! HPKI CAs publish complete CRLs (end-entity CRLs, and the root's ARL for the CAs). A
//! CRL can hold hundreds of thousands of entries, so the entries are never decoded into
//! per-entry structures: the fields around `revokedCertificates` are decoded with
//! x509-cert/der types, the entries are walked with [`crate::pki::der_walk`], and a
//! [`VerifiedCrl`] keeps only a sorted arena of serial numbers, their revocation times
//! and reason codes: 13 bytes per entry plus the serial octets (29 MB for a million
//! 16-octet serials).
//!
//! Two steps, like certificates: [`UnverifiedCrl::from_der`] checks the structure
//! (everything is validated up front, entries included, so a malformed or unsupported
//! CRL is refused before anything trusts it), then [`UnverifiedCrl::verify`] checks it
//! against the issuer's certificate and builds the index. Pure like the rest of `pki`:
//! no I/O, no clock (freshness is the caller's comparison of [`VerifiedCrl::this_update`]
//! and [`VerifiedCrl::next_update`] with its own time), no panics on any input.
//!
//! Not supported, and refused with a dedicated error so the caller treats the CRL as
//! unavailable rather than as "nothing revoked": delta CRLs and indirect CRLs.
//! A CRL that covers only some reasons is accepted but [`VerifiedCrl::covers`] answers
//! false for every certificate (it is not a complete CRL).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use const_oid::ObjectIdentifier;
use der::asn1::{GeneralizedTime, UintRef};
use der::Decode;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlDistributionPoints};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RelativeDistinguishedName};
use x509_cert::time::Time;

use crate::pki::der_walk::{split_tlv, tag, Tlv, TlvReader};
use crate::pki::name::NameKey;
use crate::pki::{ParsedCertificate, Reason, UnixTime};

/// CRL extensions (RFC 5280 §5.2).
const AUTHORITY_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const ISSUER_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.18");
const CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const DELTA_CRL_INDICATOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.27");
const ISSUING_DISTRIBUTION_POINT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.28");
const FRESHEST_CRL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.46");
const CRL_DISTRIBUTION_POINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");

/// CRL entry extensions (RFC 5280 §5.3), as OID content octets: entries are walked
/// without decoding OIDs.
const REASON_CODE_OID: &[u8] = &[0x55, 0x1d, 0x15]; // 2.5.29.21
const INVALIDITY_DATE_OID: &[u8] = &[0x55, 0x1d, 0x18]; // 2.5.29.24
const CERTIFICATE_ISSUER_OID: &[u8] = &[0x55, 0x1d, 0x1d]; // 2.5.29.29

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT` around the TBSCertList's crlExtensions.
const TAG_CRL_EXTENSIONS: u8 = 0xa0;

/// Stored in the reason arena for an entry without a reasonCode extension.
const NO_REASON: u8 = 0xff;

/// Why an entry was revoked (RFC 5280 §5.3.1 CRLReason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    /// Only meaningful in delta CRLs; an entry carrying it is not a revocation.
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl CrlReason {
    /// From the ENUMERATED value (7 is unassigned).
    pub const fn from_code(code: u8) -> Option<CrlReason> {
        Some(match code {
            0 => CrlReason::Unspecified,
            1 => CrlReason::KeyCompromise,
            2 => CrlReason::CaCompromise,
            3 => CrlReason::AffiliationChanged,
            4 => CrlReason::Superseded,
            5 => CrlReason::CessationOfOperation,
            6 => CrlReason::CertificateHold,
            8 => CrlReason::RemoveFromCrl,
            9 => CrlReason::PrivilegeWithdrawn,
            10 => CrlReason::AaCompromise,
            _ => return None,
        })
    }

    /// The ENUMERATED value.
    pub const fn code(self) -> u8 {
        match self {
            CrlReason::Unspecified => 0,
            CrlReason::KeyCompromise => 1,
            CrlReason::CaCompromise => 2,
            CrlReason::AffiliationChanged => 3,
            CrlReason::Superseded => 4,
            CrlReason::CessationOfOperation => 5,
            CrlReason::CertificateHold => 6,
            CrlReason::RemoveFromCrl => 8,
            CrlReason::PrivilegeWithdrawn => 9,
            CrlReason::AaCompromise => 10,
        }
    }

    /// The RFC 5280 name (`keyCompromise`, `cACompromise`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            CrlReason::Unspecified => "unspecified",
            CrlReason::KeyCompromise => "keyCompromise",
            CrlReason::CaCompromise => "cACompromise",
            CrlReason::AffiliationChanged => "affiliationChanged",
            CrlReason::Superseded => "superseded",
            CrlReason::CessationOfOperation => "cessationOfOperation",
            CrlReason::CertificateHold => "certificateHold",
            CrlReason::RemoveFromCrl => "removeFromCRL",
            CrlReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            CrlReason::AaCompromise => "aACompromise",
        }
    }
}

impl fmt::Display for CrlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a CRL says about one serial number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlEntry {
    pub revoked_at: UnixTime,
    /// The entry's reasonCode, if it has one.
    pub reason: Option<CrlReason>,
}

/// Why a CRL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlError {
    /// Not a well-formed DER CertificateList (or a known extension is malformed).
    Malformed(String),
    /// A critical CRL or CRL-entry extension this implementation does not understand (the OID).
    UnsupportedCriticalExtension(String),
    /// A delta CRL (deltaCRLIndicator): only complete CRLs are supported.
    DeltaCrlUnsupported,
    /// An indirect CRL (indirectCRL, or an entry's certificateIssuer).
    IndirectCrlUnsupported,
    /// The certificate offered as issuer is not the CRL's issuer (name or key identifier).
    IssuerMismatch(String),
    /// The issuer certificate's keyUsage lacks cRLSign.
    IssuerNotForCrls,
    /// The signature does not verify (BadSignature) or uses an algorithm outside the
    /// accepted set (UnsupportedSignatureAlgorithm).
    BadSignature(Reason),
}

impl fmt::Display for CrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrlError::Malformed(detail) => write!(f, "The CRL is malformed: {detail}."),
            CrlError::UnsupportedCriticalExtension(oid) => write!(
                f,
                "The CRL carries a critical extension {oid} that the gateway does not understand."
            ),
            CrlError::DeltaCrlUnsupported => {
                f.write_str("The CRL is a delta CRL; only complete CRLs are supported.")
            }
            CrlError::IndirectCrlUnsupported => f.write_str(
                "The CRL is an indirect CRL (it lists certificates of other issuers), which is not supported.",
            ),
            CrlError::IssuerMismatch(detail) => {
                write!(f, "The CRL was not issued by this certificate: {detail}.")
            }
            CrlError::IssuerNotForCrls => f.write_str(
                "The CRL issuer's certificate has a keyUsage without cRLSign, so it may not sign CRLs.",
            ),
            CrlError::BadSignature(Reason::BadSignature) => {
                f.write_str("The CRL's signature does not verify with the issuer's key.")
            }
            CrlError::BadSignature(reason) => write!(
                f,
                "The CRL's signature cannot be accepted: {} ({reason}).",
                reason.description()
            ),
        }
    }
}

impl std::error::Error for CrlError {}

fn malformed(detail: impl Into<String>) -> CrlError {
    CrlError::Malformed(detail.into())
}

/// The issuingDistributionPoint, reduced to what scope checks need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Scope {
    only_user_certs: bool,
    only_ca_certs: bool,
    only_attribute_certs: bool,
    only_some_reasons: bool,
    /// The distribution point's names, with nameRelativeToCRLIssuer resolved against
    /// the CRL issuer.
    distribution_point: Option<Vec<GeneralName>>,
}

/// A CRL parsed but whose signature is not yet verified. Holds the DER.
#[derive(Clone)]
pub struct UnverifiedCrl {
    der: Vec<u8>,
    tbs: Range<usize>,
    signature: Range<usize>,
    signature_algorithm: AlgorithmIdentifierOwned,
    v2: bool,
    issuer: Name,
    issuer_key: NameKey,
    this_update: UnixTime,
    next_update: Option<UnixTime>,
    /// Content octets of revokedCertificates (empty range if absent).
    entries: Range<usize>,
    entry_count: usize,
    /// Sum of the entries' serial lengths, to size the index exactly.
    serial_bytes: usize,
    crl_number: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    scope: Scope,
}

impl fmt::Debug for UnverifiedCrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedCrl")
            .field("issuer", &crate::pki::name::display(&self.issuer))
            .field("this_update", &self.this_update)
            .field("next_update", &self.next_update)
            .field("entries", &self.entry_count)
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl UnverifiedCrl {
    /// Parses one DER CertificateList. Every entry is checked here; nothing is trusted yet.
    pub fn from_der(der: &[u8]) -> Result<UnverifiedCrl, CrlError> {
        Self::from_der_owned(der.to_vec())
    }

    /// PEM ("X509 CRL" blocks; several allowed, other blocks and surrounding text
    /// skipped) or DER (input starting with a SEQUENCE tag).
    pub fn parse(input: &[u8]) -> Result<Vec<UnverifiedCrl>, CrlError> {
        if input.first() == Some(&tag::SEQUENCE) {
            return Ok(vec![Self::from_der(input)?]);
        }
        if input.iter().all(u8::is_ascii_whitespace) {
            return Err(malformed("empty input"));
        }
        let text = std::str::from_utf8(input)
            .map_err(|_| malformed("neither DER (no SEQUENCE tag) nor PEM (not UTF-8)"))?;
        let blocks = crate::pki::pem_blocks(text).map_err(|e| malformed(e.detail))?;
        let mut out = Vec::new();
        for block in blocks {
            if block.label == "X509 CRL" {
                out.push(Self::from_der_owned(block.der)?);
            }
        }
        if out.is_empty() {
            return Err(malformed("the input holds no X509 CRL PEM block"));
        }
        Ok(out)
    }

    /// [`UnverifiedCrl::from_der`] taking ownership of the buffer, which saves a copy of
    /// a large CRL (the DER is kept until [`UnverifiedCrl::verify`]).
    pub fn from_der_owned(der: Vec<u8>) -> Result<UnverifiedCrl, CrlError> {
        if u32::try_from(der.len()).is_err() {
            return Err(malformed("larger than 4 GiB"));
        }
        let layout = Layout::read(&der)?;
        let mut crl = UnverifiedCrl {
            tbs: layout.tbs,
            signature: layout.signature,
            signature_algorithm: layout.signature_algorithm,
            v2: layout.v2,
            issuer: layout.issuer,
            issuer_key: layout.issuer_key,
            this_update: layout.this_update,
            next_update: layout.next_update,
            entries: layout.entries,
            entry_count: 0,
            serial_bytes: 0,
            crl_number: None,
            authority_key_id: None,
            scope: Scope::default(),
            der: Vec::new(),
        };
        if let Some(exts) = &layout.extensions {
            crl.apply_extensions(exts)?;
        }
        let list = der.get(crl.entries.clone()).unwrap_or(&[]);
        let mut serial_bytes = 0usize;
        crl.entry_count = walk_entries(list, crl.v2, |e| serial_bytes += e.serial.len())?;
        crl.serial_bytes = serial_bytes;
        crl.der = der;
        Ok(crl)
    }

    fn apply_extensions(&mut self, exts: &[Extension]) -> Result<(), CrlError> {
        let mut seen: Vec<&ObjectIdentifier> = Vec::with_capacity(exts.len());
        for ext in exts {
            if seen.contains(&&ext.extn_id) {
                return Err(malformed(format!(
                    "CRL extension {} appears twice",
                    ext.extn_id
                )));
            }
            seen.push(&ext.extn_id);
            let oid = ext.extn_id;
            let value = ext.extn_value.as_bytes();
            let bad = |e: der::Error| malformed(format!("CRL extension {oid}: {e}"));
            match oid {
                CRL_NUMBER => {
                    // RFC 5280 §5.2.3: "This extension ... MUST be marked non-critical."
                    if ext.critical {
                        return Err(malformed(
                            "the cRLNumber extension is marked critical (RFC 5280 5.2.3 requires non-critical)",
                        ));
                    }
                    let n = UintRef::from_der(value).map_err(bad)?;
                    self.crl_number = Some(n.as_bytes().to_vec());
                }
                AUTHORITY_KEY_ID => {
                    let aki = AuthorityKeyIdentifier::from_der(value).map_err(bad)?;
                    self.authority_key_id = aki.key_identifier.map(|k| k.as_bytes().to_vec());
                }
                ISSUING_DISTRIBUTION_POINT => {
                    let idp = IssuingDistributionPoint::from_der(value).map_err(bad)?;
                    if idp.indirect_crl {
                        return Err(CrlError::IndirectCrlUnsupported);
                    }
                    let only = [
                        idp.only_contains_user_certs,
                        idp.only_contains_ca_certs,
                        idp.only_contains_attribute_certs,
                    ];
                    if only.iter().filter(|b| **b).count() > 1 {
                        return Err(malformed(
                            "issuingDistributionPoint asserts more than one of onlyContainsUserCerts, onlyContainsCACerts and onlyContainsAttributeCerts",
                        ));
                    }
                    self.scope = Scope {
                        only_user_certs: idp.only_contains_user_certs,
                        only_ca_certs: idp.only_contains_ca_certs,
                        only_attribute_certs: idp.only_contains_attribute_certs,
                        only_some_reasons: idp.only_some_reasons.is_some(),
                        distribution_point: idp
                            .distribution_point
                            .map(|dp| resolve_dp_name(dp, &self.issuer)),
                    };
                }
                DELTA_CRL_INDICATOR => return Err(CrlError::DeltaCrlUnsupported),
                ISSUER_ALT_NAME | FRESHEST_CRL if !ext.critical => {}
                _ if ext.critical => {
                    return Err(CrlError::UnsupportedCriticalExtension(oid.to_string()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn issuer(&self) -> &Name {
        &self.issuer
    }

    pub fn issuer_key(&self) -> &NameKey {
        &self.issuer_key
    }

    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }

    pub fn this_update(&self) -> UnixTime {
        self.this_update
    }

    pub fn next_update(&self) -> Option<UnixTime> {
        self.next_update
    }

    /// Number of entries as listed (before duplicates and removeFromCRL entries are dropped).
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// The checks of [`UnverifiedCrl::verify`] without consuming the CRL, so a caller
    /// holding several candidate issuers (a CA and its separate CRL-signing certificate,
    /// old and new keys) can find the right one first.
    pub fn check_issuer(&self, issuer: &ParsedCertificate) -> Result<(), CrlError> {
        if issuer.subject_key() != &self.issuer_key {
            return Err(CrlError::IssuerMismatch(format!(
                "the CRL issuer is \"{}\" but the certificate's subject is \"{}\"",
                crate::pki::name::display(&self.issuer),
                crate::pki::name::display(issuer.subject())
            )));
        }
        if let (Some(aki), Some(ski)) = (self.authority_key_id(), issuer.subject_key_id()) {
            if aki != ski {
                return Err(CrlError::IssuerMismatch(format!(
                    "the CRL's authorityKeyIdentifier {} differs from the certificate's subjectKeyIdentifier {}",
                    crate::pki::name::hex(aki),
                    crate::pki::name::hex(ski)
                )));
            }
        }
        if issuer.key_usage().is_some_and(|ku| !ku.crl_sign) {
            return Err(CrlError::IssuerNotForCrls);
        }
        let (Some(tbs), Some(signature)) = (
            self.der.get(self.tbs.clone()),
            self.der.get(self.signature.clone()),
        ) else {
            return Err(malformed("internal offsets out of range"));
        };
        crate::pki::verify_signature(
            &issuer.x509().tbs_certificate.subject_public_key_info,
            &self.signature_algorithm,
            tbs,
            signature,
        )
        .map_err(|reason| match reason {
            Reason::MalformedCertificate => malformed(
                "the signature algorithm parameters or the issuer's public key cannot be decoded",
            ),
            other => CrlError::BadSignature(other),
        })
    }

    /// Checks: issuer name == CA subject (NameKey), AKI (if present) == CA SKI (if
    /// present), CA keyUsage (if present) has cRLSign, signature by the CA's key over the
    /// TBSCertList bytes as received. Consumes self; the result keeps no DER.
    pub fn verify(self, issuer: &ParsedCertificate) -> Result<VerifiedCrl, CrlError> {
        self.check_issuer(issuer)?;
        let sha256 = {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der);
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        };
        let UnverifiedCrl {
            der,
            entries,
            v2,
            entry_count,
            serial_bytes,
            issuer,
            issuer_key,
            this_update,
            next_update,
            crl_number,
            authority_key_id,
            scope,
            ..
        } = self;
        let index = Index::build(der, entries, v2, entry_count, serial_bytes)?;
        Ok(VerifiedCrl {
            v2,
            issuer_display: crate::pki::name::display(&issuer),
            issuer_key_bytes: der::Encode::encoded_len(&issuer)
                .map(|l| l.try_into().unwrap_or(0usize))
                .unwrap_or(0),
            issuer_key,
            this_update,
            next_update,
            crl_number,
            authority_key_id,
            scope,
            index,
            sha256,
        })
    }
}

/// The positions and header fields of a CertificateList.
struct Layout {
    tbs: Range<usize>,
    signature: Range<usize>,
    signature_algorithm: AlgorithmIdentifierOwned,
    v2: bool,
    issuer: Name,
    issuer_key: NameKey,
    this_update: UnixTime,
    next_update: Option<UnixTime>,
    entries: Range<usize>,
    extensions: Option<Vec<Extension>>,
}

/// Where `inner` (a subslice of `outer`) sits in `outer`.
fn range_in(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

fn read_time(tlv: &Tlv<'_>, what: &str) -> Result<UnixTime, CrlError> {
    Time::from_der(tlv.raw)
        .map(|t| UnixTime::from_x509(&t))
        .map_err(|e| malformed(format!("{what}: {e}")))
}

impl Layout {
    fn read(der: &[u8]) -> Result<Layout, CrlError> {
        // CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
        let (outer, rest) =
            split_tlv(der).ok_or_else(|| malformed("not a DER SEQUENCE (bad outer TLV)"))?;
        if outer.tag != tag::SEQUENCE {
            return Err(malformed("not a DER SEQUENCE"));
        }
        if !rest.is_empty() {
            return Err(malformed("trailing data after the CRL"));
        }
        let mut r = TlvReader::new(outer.value);
        let tbs = r
            .expect(tag::SEQUENCE)
            .ok_or_else(|| malformed("bad TBSCertList"))?;
        let alg = r
            .expect(tag::SEQUENCE)
            .ok_or_else(|| malformed("bad signatureAlgorithm"))?;
        let sig = r
            .expect(TAG_BIT_STRING)
            .ok_or_else(|| malformed("bad signatureValue"))?;
        if !r.is_empty() || r.failed() {
            return Err(malformed("unexpected data after signatureValue"));
        }
        let signature_algorithm = AlgorithmIdentifierOwned::from_der(alg.raw)
            .map_err(|e| malformed(format!("signatureAlgorithm: {e}")))?;
        let sig_bits = match sig.value.split_first() {
            Some((0, bits)) => bits,
            _ => return Err(malformed("signatureValue has unused bits or is empty")),
        };

        // TBSCertList ::= SEQUENCE { version OPTIONAL, signature, issuer, thisUpdate,
        //   nextUpdate OPTIONAL, revokedCertificates OPTIONAL, [0] crlExtensions OPTIONAL }
        let mut t = TlvReader::new(tbs.value);
        let mut next = t.read();
        let mut v2 = false;
        if let Some(version) = next.filter(|x| x.tag == TAG_INTEGER) {
            // Absent means v1; DER forbids encoding the default, and v2 is the only other.
            if version.value != [1] {
                return Err(malformed("version is neither absent (v1) nor v2"));
            }
            v2 = true;
            next = t.read();
        }
        let inner_alg = next
            .filter(|x| x.tag == tag::SEQUENCE)
            .ok_or_else(|| malformed("bad TBSCertList signature field"))?;
        let inner_alg = AlgorithmIdentifierOwned::from_der(inner_alg.raw)
            .map_err(|e| malformed(format!("TBSCertList signature: {e}")))?;
        if inner_alg != signature_algorithm {
            return Err(malformed(
                "signatureAlgorithm differs from the TBSCertList signature field",
            ));
        }
        let issuer_tlv = t
            .expect(tag::SEQUENCE)
            .ok_or_else(|| malformed("bad issuer name"))?;
        let issuer =
            Name::from_der(issuer_tlv.raw).map_err(|e| malformed(format!("issuer: {e}")))?;
        let issuer_key =
            NameKey::of(&issuer).ok_or_else(|| malformed("undecodable issuer name"))?;
        if issuer_key.is_empty() {
            return Err(malformed("empty issuer name"));
        }
        let this_update = t
            .read()
            .filter(|x| matches!(x.tag, TAG_UTC_TIME | TAG_GENERALIZED_TIME))
            .ok_or_else(|| malformed("bad thisUpdate"))?;
        let this_update = read_time(&this_update, "thisUpdate")?;

        let mut next = t.read();
        let mut next_update = None;
        if let Some(time) = next.filter(|x| matches!(x.tag, TAG_UTC_TIME | TAG_GENERALIZED_TIME)) {
            let when = read_time(&time, "nextUpdate")?;
            if when < this_update {
                return Err(malformed("nextUpdate is before thisUpdate"));
            }
            next_update = Some(when);
            next = t.read();
        }
        let mut entries = 0..0;
        if let Some(list) = next.filter(|x| x.tag == tag::SEQUENCE) {
            entries = range_in(der, list.value);
            next = t.read();
        }
        let mut extensions = None;
        if let Some(exts) = next.filter(|x| x.tag == TAG_CRL_EXTENSIONS) {
            if !v2 {
                return Err(malformed("crlExtensions in a v1 CRL"));
            }
            let list = Vec::<Extension>::from_der(exts.value)
                .map_err(|e| malformed(format!("crlExtensions: {e}")))?;
            extensions = Some(list);
            next = t.read();
        }
        if next.is_some() || t.failed() || !t.is_empty() {
            return Err(malformed("unexpected element in TBSCertList"));
        }
        Ok(Layout {
            tbs: range_in(der, tbs.raw),
            signature: range_in(der, sig_bits),
            signature_algorithm,
            v2,
            issuer,
            issuer_key,
            this_update,
            next_update,
            entries,
            extensions,
        })
    }
}

/// nameRelativeToCRLIssuer is the issuer's name plus one RDN.
fn resolve_dp_name(dp: DistributionPointName, issuer: &Name) -> Vec<GeneralName> {
    match dp {
        DistributionPointName::FullName(names) => names,
        DistributionPointName::NameRelativeToCRLIssuer(rdn) => {
            vec![GeneralName::DirectoryName(name_plus_rdn(issuer, rdn))]
        }
    }
}

fn name_plus_rdn(name: &Name, rdn: RelativeDistinguishedName) -> Name {
    let mut rdns = name.0.clone();
    rdns.push(rdn);
    x509_cert::name::RdnSequence(rdns)
}

fn general_names_match(a: &GeneralName, b: &GeneralName) -> bool {
    match (a, b) {
        (GeneralName::DirectoryName(x), GeneralName::DirectoryName(y)) => {
            matches!((NameKey::of(x), NameKey::of(y)), (Some(x), Some(y)) if x == y)
        }
        _ => a == b,
    }
}

/// One revoked entry as walked: the serial (normalized, a slice of the DER), the
/// revocation time and the reason byte.
struct RawEntry<'a> {
    serial: &'a [u8],
    revoked_at: u64,
    reason: u8,
}

/// The minimal two's-complement form of an INTEGER's content octets: redundant leading
/// `00` (before a byte < 0x80) and `FF` (before a byte >= 0x80) are dropped, so a
/// non-minimal encoding in a CRL still matches the certificate's DER (`00 80` stays
/// `00 80`: it is 128, while `80` is -128). The sign is kept on purpose: PKITS 4.4.14
/// has a certificate with serial 255 (`00 FF`) next to a CRL revoking -1 (`FF`).
fn normalize_serial(serial: &[u8]) -> &[u8] {
    let mut s = serial;
    while let [first, second, ..] = s {
        if (*first == 0x00 && *second < 0x80) || (*first == 0xff && *second >= 0x80) {
            s = &s[1..];
        } else {
            break;
        }
    }
    s
}

/// Walks revokedCertificates (its content octets), validating every entry, and calls
/// `each` per entry. Returns the number of entries. Allocation-free.
fn walk_entries<'a>(
    list: &'a [u8],
    v2: bool,
    mut each: impl FnMut(RawEntry<'a>),
) -> Result<usize, CrlError> {
    let mut r = TlvReader::new(list);
    let mut count = 0usize;
    while !r.is_empty() {
        let n = count;
        let entry = r
            .expect(tag::SEQUENCE)
            .ok_or_else(|| malformed(format!("revoked entry {n} is not a SEQUENCE")))?;
        let mut e = TlvReader::new(entry.value);
        let serial = e
            .expect(TAG_INTEGER)
            .filter(|s| !s.value.is_empty())
            .ok_or_else(|| malformed(format!("revoked entry {n}: bad userCertificate serial")))?;
        let when = e
            .read()
            .filter(|x| matches!(x.tag, TAG_UTC_TIME | TAG_GENERALIZED_TIME))
            .ok_or_else(|| malformed(format!("revoked entry {n}: bad revocationDate")))?;
        let revoked_at = read_time(&when, "revocationDate")?.0;
        let mut reason = NO_REASON;
        if let Some(exts) = e.read() {
            if exts.tag != tag::SEQUENCE {
                return Err(malformed(format!(
                    "revoked entry {n}: bad crlEntryExtensions"
                )));
            }
            if !v2 {
                return Err(malformed("crlEntryExtensions in a v1 CRL"));
            }
            reason = entry_extensions(exts.value, n)?;
        }
        if e.failed() || !e.is_empty() {
            return Err(malformed(format!("revoked entry {n}: unexpected element")));
        }
        each(RawEntry {
            serial: normalize_serial(serial.value),
            revoked_at,
            reason,
        });
        count += 1;
    }
    if r.failed() {
        return Err(malformed("bad TLV in revokedCertificates"));
    }
    Ok(count)
}

/// Checks one entry's extensions; returns its reason code (or `NO_REASON`).
fn entry_extensions(exts: &[u8], n: usize) -> Result<u8, CrlError> {
    let mut reason = NO_REASON;
    let mut seen_reason = false;
    let mut seen_invalidity = false;
    let mut r = TlvReader::new(exts);
    while !r.is_empty() {
        let bad = |what: &str| malformed(format!("revoked entry {n}: {what}"));
        let ext = r
            .expect(tag::SEQUENCE)
            .ok_or_else(|| bad("extension is not a SEQUENCE"))?;
        let mut x = TlvReader::new(ext.value);
        let oid = x.expect(tag::OID).ok_or_else(|| bad("bad extension OID"))?;
        let mut field = x.read();
        let mut critical = false;
        if let Some(flag) = field.filter(|f| f.tag == TAG_BOOLEAN) {
            critical = match flag.value {
                [0xff] => true,
                [0x00] => false,
                _ => return Err(bad("bad critical flag")),
            };
            field = x.read();
        }
        let value = field
            .filter(|f| f.tag == TAG_OCTET_STRING)
            .ok_or_else(|| bad("bad extension value"))?;
        if x.failed() || !x.is_empty() {
            return Err(bad("unexpected element in an extension"));
        }
        match oid.value {
            REASON_CODE_OID => {
                if std::mem::replace(&mut seen_reason, true) {
                    return Err(bad("reasonCode appears twice"));
                }
                let code = match split_tlv(value.value) {
                    Some((t, rest))
                        if t.tag == TAG_ENUMERATED && t.value.len() == 1 && rest.is_empty() =>
                    {
                        t.value[0]
                    }
                    _ => return Err(bad("malformed reasonCode")),
                };
                if CrlReason::from_code(code).is_none() {
                    return Err(bad(&format!("unknown reasonCode {code}")));
                }
                reason = code;
            }
            INVALIDITY_DATE_OID => {
                if std::mem::replace(&mut seen_invalidity, true) {
                    return Err(bad("invalidityDate appears twice"));
                }
                GeneralizedTime::from_der(value.value).map_err(|_| bad("bad invalidityDate"))?;
            }
            CERTIFICATE_ISSUER_OID => return Err(CrlError::IndirectCrlUnsupported),
            other if critical => {
                let oid = ObjectIdentifier::from_bytes(other)
                    .map(|o| o.to_string())
                    .unwrap_or_else(|_| "(undecodable OID)".to_owned());
                return Err(CrlError::UnsupportedCriticalExtension(oid));
            }
            _ => {}
        }
    }
    if r.failed() {
        return Err(malformed(format!(
            "revoked entry {n}: bad TLV in crlEntryExtensions"
        )));
    }
    Ok(reason)
}

/// The sorted entries: serials in one arena, delimited by `offsets` (len + 1 of them).
#[derive(Default)]
struct Index {
    serials: Vec<u8>,
    offsets: Vec<u32>,
    revoked_at: Vec<u64>,
    reasons: Vec<u8>,
}

impl Index {
    /// Second walk over the (already validated) entries, in DER order, into the arenas;
    /// then the DER is dropped, an index permutation is sorted by (serial, revocation
    /// time), and the arenas are rebuilt in sorted order without duplicates (the first
    /// of a run is the earliest revocation). Peak memory is the larger of DER + one set
    /// of arenas and two sets of arenas + the permutation.
    fn build(
        der: Vec<u8>,
        entries: Range<usize>,
        v2: bool,
        expected: usize,
        serial_bytes: usize,
    ) -> Result<Index, CrlError> {
        let mut raw = Index {
            serials: Vec::with_capacity(serial_bytes),
            offsets: Vec::with_capacity(expected + 1),
            revoked_at: Vec::with_capacity(expected),
            reasons: Vec::with_capacity(expected),
        };
        raw.offsets.push(0);
        let mut overflow = false;
        walk_entries(der.get(entries).unwrap_or(&[]), v2, |e| {
            if e.reason == CrlReason::RemoveFromCrl.code() {
                return; // a delta-CRL-only reason: not a revocation
            }
            raw.serials.extend_from_slice(e.serial);
            match u32::try_from(raw.serials.len()) {
                Ok(end) => raw.offsets.push(end),
                Err(_) => overflow = true,
            }
            raw.revoked_at.push(e.revoked_at);
            raw.reasons.push(e.reason);
        })?;
        drop(der);
        let n = raw.len();
        if overflow || raw.offsets.len() != n + 1 || u32::try_from(n).is_err() {
            return Err(malformed("too many revoked entries"));
        }
        let time = |i: u32| raw.revoked_at.get(i as usize).copied().unwrap_or(0);
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.sort_unstable_by(|&a, &b| {
            raw.serial(a as usize)
                .cmp(raw.serial(b as usize))
                .then(time(a).cmp(&time(b)))
        });
        let (mut kept, mut bytes) = (0usize, 0usize);
        let mut prev: Option<&[u8]> = None;
        for &i in &perm {
            let serial = raw.serial(i as usize);
            if prev != Some(serial) {
                kept += 1;
                bytes += serial.len();
                prev = Some(serial);
            }
        }
        let mut index = Index {
            serials: Vec::with_capacity(bytes),
            offsets: Vec::with_capacity(kept + 1),
            revoked_at: Vec::with_capacity(kept),
            reasons: Vec::with_capacity(kept),
        };
        index.offsets.push(0);
        let mut prev: Option<&[u8]> = None;
        for &i in &perm {
            let serial = raw.serial(i as usize);
            if prev == Some(serial) {
                continue;
            }
            prev = Some(serial);
            index.serials.extend_from_slice(serial);
            // Cannot fail: at most the raw arena's size, which fit in u32.
            index
                .offsets
                .push(u32::try_from(index.serials.len()).unwrap_or(u32::MAX));
            index.revoked_at.push(time(i));
            index
                .reasons
                .push(raw.reasons.get(i as usize).copied().unwrap_or(NO_REASON));
        }
        Ok(index)
    }

    fn len(&self) -> usize {
        self.revoked_at.len()
    }

    fn serial(&self, i: usize) -> &[u8] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.serials.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Binary search; no allocation.
    fn find(&self, serial: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.serial(mid).cmp(serial) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn heap_bytes(&self) -> usize {
        self.serials.capacity()
            + self.offsets.capacity() * std::mem::size_of::<u32>()
            + self.revoked_at.capacity() * std::mem::size_of::<u64>()
            + self.reasons.capacity()
    }
}

/// A CRL whose signature and issuer were verified; the DER is dropped, only the compact
/// index is kept.
pub struct VerifiedCrl {
    /// A version 2 CRL (one that may carry extensions).
    v2: bool,
    issuer_key: NameKey,
    /// NameKey's buffer is private: its size is estimated from the name's DER length.
    issuer_key_bytes: usize,
    issuer_display: String,
    this_update: UnixTime,
    next_update: Option<UnixTime>,
    crl_number: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    scope: Scope,
    index: Index,
    sha256: [u8; 32],
}

impl fmt::Debug for VerifiedCrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCrl")
            .field("issuer", &self.issuer_display)
            .field("this_update", &self.this_update)
            .field("next_update", &self.next_update)
            .field(
                "crl_number",
                &self.crl_number.as_deref().map(crate::pki::name::hex),
            )
            .field("entries", &self.len())
            .field("sha256", &crate::pki::name::hex(&self.sha256))
            .finish_non_exhaustive()
    }
}

impl VerifiedCrl {
    pub fn issuer_key(&self) -> &NameKey {
        &self.issuer_key
    }

    /// The issuer name as text (`C=JP, O=..., CN=...`).
    pub fn issuer_display(&self) -> String {
        self.issuer_display.clone()
    }

    pub fn this_update(&self) -> UnixTime {
        self.this_update
    }

    pub fn next_update(&self) -> Option<UnixTime> {
        self.next_update
    }

    /// CRL number as big-endian unsigned bytes without leading zeros (zero is `[0]`);
    /// None if absent.
    pub fn crl_number(&self) -> Option<&[u8]> {
        self.crl_number.as_deref()
    }

    /// The key identifier of the CRL's authorityKeyIdentifier, if present.
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }

    /// Whether the CRL is version 2 (the version that carries extensions; a v1 CRL
    /// cannot have a cRLNumber).
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// By CRL number when both have one (compared as unsigned integers), else by thisUpdate.
    pub fn is_newer_than(&self, other: &VerifiedCrl) -> bool {
        match (self.crl_number(), other.crl_number()) {
            (Some(a), Some(b)) => compare_unsigned(a, b) == Ordering::Greater,
            _ => self.this_update > other.this_update,
        }
    }

    /// Distinct revoked serials.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// O(log n), no allocation. `serial` is the certificate's serial as DER INTEGER
    /// content octets ([`ParsedCertificate::serial_bytes`]). Both sides are reduced to
    /// the minimal two's-complement encoding, so redundant leading `00`/`FF` octets do not
    /// matter, while the sign does (`00 80` is 128 and matches a CRL's `00 80` or
    /// `00 00 80`; `80` is -128).
    pub fn lookup(&self, serial: &[u8]) -> Option<CrlEntry> {
        let i = self.index.find(normalize_serial(serial))?;
        let revoked_at = UnixTime(*self.index.revoked_at.get(i)?);
        let reason = self
            .index
            .reasons
            .get(i)
            .and_then(|&code| CrlReason::from_code(code));
        Some(CrlEntry { revoked_at, reason })
    }

    /// Whether this CRL is authoritative for `cert` (issued by the CRL's issuer): the
    /// issuer names match and the issuingDistributionPoint's scope includes it. A CRL
    /// limited to some reasons is not complete: false, so the caller treats revocation
    /// information as unavailable. When the IDP names a distribution point, one of the
    /// certificate's cRLDistributionPoints must name it too.
    pub fn covers(&self, cert: &ParsedCertificate) -> bool {
        if cert.issuer_key() != &self.issuer_key {
            return false;
        }
        let s = &self.scope;
        if s.only_some_reasons || s.only_attribute_certs {
            return false;
        }
        if (s.only_user_certs && cert.is_ca()) || (s.only_ca_certs && !cert.is_ca()) {
            return false;
        }
        match &s.distribution_point {
            None => true,
            Some(idp_names) => cert_distribution_points_match(cert, idp_names),
        }
    }

    /// SHA-256 of the DER the CRL came from.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// Heap held by this value (capacities), for metrics.
    pub fn approx_heap_bytes(&self) -> usize {
        let names: usize = self
            .scope
            .distribution_point
            .as_ref()
            .map(|n| n.capacity() * std::mem::size_of::<GeneralName>() + 128 * n.len())
            .unwrap_or(0);
        std::mem::size_of::<Self>()
            + self.index.heap_bytes()
            + self.issuer_display.capacity()
            + self.issuer_key_bytes
            + self.crl_number.as_ref().map_or(0, Vec::capacity)
            + self.authority_key_id.as_ref().map_or(0, Vec::capacity)
            + names
    }
}

fn compare_unsigned(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |x: &[u8]| -> usize { x.iter().take_while(|&&b| b == 0).count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// RFC 5280 §6.3.3 (b)(2)(i): one of the IDP's names matches a name of one of the
/// certificate's distribution points (or, for a point without a name, its cRLIssuer).
fn cert_distribution_points_match(cert: &ParsedCertificate, idp_names: &[GeneralName]) -> bool {
    let Some(ext) = cert
        .x509()
        .tbs_certificate
        .extensions
        .as_ref()
        .and_then(|exts| exts.iter().find(|e| e.extn_id == CRL_DISTRIBUTION_POINTS))
    else {
        return false;
    };
    let Ok(dps) = CrlDistributionPoints::from_der(ext.extn_value.as_bytes()) else {
        return false;
    };
    dps.0.into_iter().any(|dp| {
        let names = match (dp.distribution_point, dp.crl_issuer) {
            (Some(name), _) => resolve_dp_name(name, cert.issuer()),
            (None, Some(crl_issuer)) => crl_issuer,
            (None, None) => Vec::new(),
        };
        names
            .iter()
            .any(|n| idp_names.iter().any(|m| general_names_match(n, m)))
    })
}

#[cfg(test)]
mod tests {
    //! The CRLs here come from independent producers: the `openssl` CLI (`openssl ca`),
    //! NIST PKITS and x509-limbo. Hand-built CRLs (signed with a key `openssl` made) cover
    //! what `openssl ca` cannot produce (IDP scopes, duplicates, removeFromCRL).

    use super::*;
    use der::Encode;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    // ---------------------------------------------------------------- helpers

    /// The shared test data directory (`$HPKI_SHARED_DIR`, or `../shared` beside the
    /// repository), as the integration tests find it. Missing data is a failure.
    fn shared_dir() -> PathBuf {
        let dir = std::env::var_os("HPKI_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
        assert!(
            dir.join("pkits").is_dir() && dir.join("limbo").is_dir(),
            "shared test data not found at {} (set HPKI_SHARED_DIR to the directory holding pkits/ and limbo/)",
            dir.display()
        );
        dir
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "hpki-crl-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI is needed by these tests");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    const CA_CNF: &str = r#"
[ ca ]
default_ca = test_ca

[ test_ca ]
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
crlnumber = ./crlnumber
certificate = ./ca.pem
private_key = ./ca.key
default_md = sha256
default_days = 30
default_crl_days = 1
policy = policy_any
unique_subject = no
copy_extensions = none
x509_extensions = ee_ext
crl_extensions = crl_ext

[ policy_any ]
commonName = supplied

[ ee_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ ee_ext_dp ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://crl.example.jp/a.crl

[ sub_ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ crl_ext ]
authorityKeyIdentifier = keyid:always

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ v3_ca ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ v3_ca_no_crlsign ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign
subjectKeyIdentifier = hash

[ v3_ca_no_ski ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = none
authorityKeyIdentifier = none
"#;

    /// A CA run by `openssl ca` in its own directory.
    struct OpensslCa {
        dir: TempDir,
        cert: ParsedCertificate,
    }

    impl OpensslCa {
        /// `key`: "rsa" (RSA-2048) or "ec" (P-256). `serial`: first serial, in hex.
        fn new(tag: &str, subject: &str, key: &str, extensions: &str, serial: &str) -> Self {
            let dir = TempDir::new(tag);
            let d = &dir.0;
            std::fs::write(d.join("ca.cnf"), CA_CNF).unwrap();
            std::fs::write(d.join("index.txt"), "").unwrap();
            std::fs::write(d.join("serial"), format!("{serial}\n")).unwrap();
            std::fs::write(d.join("crlnumber"), "1000\n").unwrap();
            std::fs::create_dir_all(d.join("newcerts")).unwrap();
            let mut args = vec![
                "req",
                "-x509",
                "-config",
                "ca.cnf",
                "-extensions",
                extensions,
            ];
            args.extend(key_args(key));
            args.extend([
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", subject,
            ]);
            openssl(d, &args);
            let cert = read_cert(&d.join("ca.pem"));
            OpensslCa { dir, cert }
        }

        fn path(&self, file: &str) -> String {
            self.dir.0.join(file).to_string_lossy().into_owned()
        }

        /// Issues a P-256 certificate; returns it parsed.
        fn issue(&self, name: &str, extensions: &str) -> ParsedCertificate {
            let d = &self.dir.0;
            let csr = format!("{name}.csr");
            let pem = format!("{name}.pem");
            let mut args = vec!["req", "-new", "-config", "ca.cnf"];
            args.extend(key_args("ec"));
            let subj = format!("/CN={name}");
            let key = format!("{name}.key");
            args.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "ca",
                    "-batch",
                    "-notext",
                    "-config",
                    "ca.cnf",
                    "-extensions",
                    extensions,
                    "-in",
                    &csr,
                    "-out",
                    &pem,
                ],
            );
            read_cert(&d.join(&pem))
        }

        /// `how`: extra `openssl ca -revoke` arguments (`-crl_reason keyCompromise`...).
        fn revoke(&self, name: &str, how: &[&str]) {
            let pem = format!("{name}.pem");
            let mut args = vec!["ca", "-config", "ca.cnf", "-revoke", &pem];
            args.extend_from_slice(how);
            openssl(&self.dir.0, &args);
        }

        /// A CRL (PEM) from `openssl ca -gencrl`; `extra` e.g. `-crlexts`.
        fn gencrl(&self, out: &str, extra: &[&str]) -> Vec<u8> {
            let mut args = vec![
                "ca", "-config", "ca.cnf", "-gencrl", "-crldays", "1", "-out", out,
            ];
            args.extend_from_slice(extra);
            openssl(&self.dir.0, &args);
            std::fs::read(self.dir.0.join(out)).unwrap()
        }

        /// The CA key as PKCS#8 DER (for hand-signed CRLs).
        fn pkcs8(&self) -> Vec<u8> {
            openssl(
                &self.dir.0,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", "ca.key", "-outform", "DER", "-out",
                    "ca.p8",
                ],
            );
            std::fs::read(self.dir.0.join("ca.p8")).unwrap()
        }
    }

    fn key_args(key: &str) -> Vec<&'static str> {
        match key {
            "rsa" => vec!["-newkey", "rsa:2048"],
            _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        }
    }

    fn read_cert(path: &Path) -> ParsedCertificate {
        let bytes = std::fs::read(path).unwrap();
        crate::pki::parse_certificates(&bytes)
            .unwrap()
            .into_iter()
            .next()
            .unwrap()
    }

    fn one(input: &[u8]) -> UnverifiedCrl {
        let mut crls = UnverifiedCrl::parse(input).unwrap();
        assert_eq!(crls.len(), 1);
        crls.remove(0)
    }

    fn now() -> UnixTime {
        UnixTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
    }

    // ---------------------------------------------------------------- openssl ca

    /// One RSA CA with five end entities (serials 7F, 80, 81, 82, 83: 80 and up need the
    /// DER leading zero), four revoked in various ways, and two successive CRLs.
    struct Scenario {
        ca: OpensslCa,
        ee: Vec<ParsedCertificate>,
        crl1: Vec<u8>,
        crl2: Vec<u8>,
    }

    fn scenario() -> Scenario {
        let ca = OpensslCa::new(
            "rsa",
            "/C=JP/O=Test HPKI/CN=Test CRL CA",
            "rsa",
            "v3_ca",
            "7F",
        );
        let ee: Vec<ParsedCertificate> = (0..5)
            .map(|i| ca.issue(&format!("ee{i}"), "ee_ext"))
            .collect();
        assert_eq!(ee[0].serial_bytes(), [0x7f]);
        assert_eq!(ee[1].serial_bytes(), [0x00, 0x80]);
        ca.revoke("ee1", &["-crl_reason", "keyCompromise"]);
        ca.revoke("ee2", &["-crl_reason", "superseded"]);
        let crl1 = ca.gencrl("crl1.pem", &[]);
        ca.revoke("ee3", &[]);
        ca.revoke("ee4", &["-crl_compromise", "20240101000000Z"]);
        let crl2 = ca.gencrl("crl2.pem", &[]);
        Scenario { ca, ee, crl1, crl2 }
    }

    #[test]
    fn openssl_ca_crls_verify_and_answer_lookups() {
        let s = scenario();
        let t0 = now();
        let crl1 = one(&s.crl1).verify(&s.ca.cert).unwrap();
        let crl2 = one(&s.crl2).verify(&s.ca.cert).unwrap();

        assert_eq!(crl1.len(), 2);
        assert_eq!(crl2.len(), 4);
        assert!(!crl1.is_empty());
        assert_eq!(crl1.crl_number(), Some(&[0x10, 0x00][..]));
        assert_eq!(crl2.crl_number(), Some(&[0x10, 0x01][..]));
        assert!(crl2.is_newer_than(&crl1));
        assert!(!crl1.is_newer_than(&crl2));
        assert!(!crl1.is_newer_than(&crl1));
        assert_eq!(crl1.issuer_key(), s.ca.cert.subject_key());
        assert_eq!(crl1.issuer_display(), "C=JP, O=Test HPKI, CN=Test CRL CA");
        assert_eq!(crl1.authority_key_id(), s.ca.cert.subject_key_id());
        let next = crl1.next_update().unwrap();
        assert_eq!(next.0 - crl1.this_update().0, 86_400);
        assert!(crl1.this_update().0 <= t0.0 + 5 && crl1.this_update().0 + 600 > t0.0);

        // 00 80 (the certificate's DER) against whatever the CRL holds.
        let e = crl1.lookup(s.ee[1].serial_bytes()).unwrap();
        assert_eq!(e.reason, Some(CrlReason::KeyCompromise));
        assert!(e.revoked_at.0 + 600 > t0.0 && e.revoked_at.0 <= t0.0 + 5);
        assert_eq!(crl1.lookup(&[0x00, 0x00, 0x80]), Some(e));
        assert_eq!(crl1.lookup(&[0x80]), None, "80 is -128");
        assert_eq!(
            crl1.lookup(s.ee[2].serial_bytes()).unwrap().reason,
            Some(CrlReason::Superseded)
        );
        assert_eq!(crl1.lookup(s.ee[0].serial_bytes()), None);
        assert_eq!(crl1.lookup(s.ee[3].serial_bytes()), None);
        assert_eq!(crl1.lookup(&[]), None);

        // The second CRL adds ee3 (no reason) and ee4 (keyCompromise with invalidityDate).
        assert_eq!(crl2.lookup(s.ee[3].serial_bytes()).unwrap().reason, None);
        assert_eq!(
            crl2.lookup(s.ee[4].serial_bytes()).unwrap().reason,
            Some(CrlReason::KeyCompromise)
        );
        assert_eq!(crl2.lookup(s.ee[0].serial_bytes()), None);
        for ee in &s.ee {
            assert!(crl2.covers(ee));
        }
        assert!(
            crl2.covers(&s.ca.cert),
            "self-issued: the CA's own CRL names its issuer"
        );
    }

    #[test]
    fn openssl_der_and_multi_block_pem_parse() {
        let s = scenario();
        let der = openssl(&s.ca.dir.0, &["crl", "-in", "crl2.pem", "-outform", "DER"]);
        let from_der = UnverifiedCrl::from_der(&der).unwrap();
        assert_eq!(UnverifiedCrl::parse(&der).unwrap().len(), 1);
        assert_eq!(from_der.entry_count(), 4);
        assert_eq!(from_der.issuer_key(), s.ca.cert.subject_key());
        assert_eq!(from_der.authority_key_id(), s.ca.cert.subject_key_id());
        assert_eq!(
            crate::pki::name::display(from_der.issuer()),
            "C=JP, O=Test HPKI, CN=Test CRL CA"
        );
        let mut bundle = b"some text before\n".to_vec();
        bundle.extend_from_slice(&s.crl1);
        bundle.extend_from_slice(std::fs::read(s.ca.path("ca.pem")).unwrap().as_slice());
        bundle.extend_from_slice(&s.crl2);
        let crls = UnverifiedCrl::parse(&bundle).unwrap();
        assert_eq!(crls.len(), 2);
        let sha_der = crls[1].clone().verify(&s.ca.cert).unwrap();
        let direct = from_der.verify(&s.ca.cert).unwrap();
        assert_eq!(sha_der.sha256(), direct.sha256());
        let cert_only = std::fs::read(s.ca.path("ca.pem")).unwrap();
        assert!(matches!(
            UnverifiedCrl::parse(&cert_only),
            Err(CrlError::Malformed(_))
        ));
        assert!(UnverifiedCrl::parse(b"").is_err());
        assert!(UnverifiedCrl::parse(b"  \n").is_err());
    }

    #[test]
    fn wrong_key_wrong_issuer_and_missing_crl_sign_are_refused() {
        let s = scenario();
        // Same subject, another key, no subjectKeyIdentifier: only the signature can tell.
        let impostor = OpensslCa::new(
            "impostor",
            "/C=JP/O=Test HPKI/CN=Test CRL CA",
            "rsa",
            "v3_ca_no_ski",
            "01",
        );
        assert!(impostor.cert.subject_key_id().is_none());
        assert_eq!(
            one(&s.crl1).verify(&impostor.cert).unwrap_err(),
            CrlError::BadSignature(Reason::BadSignature)
        );
        // The impostor's own CRL, without authorityKeyIdentifier, reaches the signature
        // check against the real CA and fails it.
        let cnf = std::fs::read_to_string(impostor.path("ca.cnf")).unwrap();
        std::fs::write(
            impostor.path("ca.cnf"),
            cnf.replace("crl_extensions = crl_ext\n", ""),
        )
        .unwrap();
        let forged = one(&impostor.gencrl("forged.pem", &[]));
        assert_eq!(forged.authority_key_id(), None);
        assert!(forged.check_issuer(&impostor.cert).is_ok());
        assert_eq!(
            forged.verify(&s.ca.cert).unwrap_err(),
            CrlError::BadSignature(Reason::BadSignature)
        );
        // With an authorityKeyIdentifier naming another key: refused before the signature.
        let impostor2 = OpensslCa::new(
            "impostor2",
            "/C=JP/O=Test HPKI/CN=Test CRL CA",
            "ec",
            "v3_ca",
            "01",
        );
        let forged = one(&impostor2.gencrl("forged.pem", &[]));
        let err = forged.verify(&s.ca.cert).unwrap_err();
        assert!(
            matches!(&err, CrlError::IssuerMismatch(m) if m.contains("authorityKeyIdentifier")),
            "{err}"
        );

        // A certificate that is not the CRL's issuer.
        let err = one(&s.crl1).verify(&s.ee[0]).unwrap_err();
        assert!(matches!(err, CrlError::IssuerMismatch(_)), "{err}");
        assert!(err.to_string().contains("CN=ee0"), "{err}");

        // keyUsage without cRLSign (ECDSA CA: also exercises P-256 CRL signatures).
        let no_crl_sign = OpensslCa::new(
            "nocrlsign",
            "/C=JP/O=Test HPKI/CN=Cert Only CA",
            "ec",
            "v3_ca_no_crlsign",
            "01",
        );
        let crl = no_crl_sign.gencrl("crl.pem", &[]);
        let err = one(&crl).verify(&no_crl_sign.cert).unwrap_err();
        assert_eq!(err, CrlError::IssuerNotForCrls);
        assert!(err.to_string().contains("cRLSign"));

        // The same CRL shape from an ECDSA CA that may sign CRLs verifies.
        let ec_ca = OpensslCa::new("ec", "/C=JP/O=Test HPKI/CN=EC CA", "ec", "v3_ca", "01");
        let ee = ec_ca.issue("ee", "ee_ext");
        ec_ca.revoke("ee", &["-crl_reason", "cessationOfOperation"]);
        let crl = one(&ec_ca.gencrl("crl.pem", &[]))
            .verify(&ec_ca.cert)
            .unwrap();
        assert_eq!(
            crl.lookup(ee.serial_bytes()).unwrap().reason,
            Some(CrlReason::CessationOfOperation)
        );
    }

    #[test]
    fn every_single_byte_change_is_refused_without_panic() {
        let s = scenario();
        let der = openssl(&s.ca.dir.0, &["crl", "-in", "crl2.pem", "-outform", "DER"]);
        assert!(UnverifiedCrl::from_der(&der)
            .unwrap()
            .verify(&s.ca.cert)
            .is_ok());
        for i in 0..der.len() {
            for flip in [0x01u8, 0x80] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let result = UnverifiedCrl::from_der(&bad).and_then(|c| c.verify(&s.ca.cert));
                match result {
                    Err(CrlError::Malformed(_))
                    | Err(CrlError::BadSignature(_))
                    | Err(CrlError::IssuerMismatch(_))
                    | Err(CrlError::UnsupportedCriticalExtension(_)) => {}
                    other => panic!("byte {i} ^ {flip:#x}: {other:?}"),
                }
            }
        }
    }

    // ---------------------------------------------------------------- hand-built CRLs

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = (len as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (4 - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    fn oid(dotted: &str) -> Vec<u8> {
        ObjectIdentifier::new_unwrap(dotted).to_der().unwrap()
    }

    fn utc(t: &str) -> Vec<u8> {
        tlv(TAG_UTC_TIME, t.as_bytes())
    }

    fn ext(id: &str, critical: bool, value: &[u8]) -> Vec<u8> {
        let crit = if critical {
            tlv(TAG_BOOLEAN, &[0xff])
        } else {
            Vec::new()
        };
        seq(&[&oid(id), &crit, &tlv(TAG_OCTET_STRING, value)])
    }

    fn reason_ext(code: u8) -> Vec<u8> {
        ext("2.5.29.21", false, &tlv(TAG_ENUMERATED, &[code]))
    }

    fn entry(serial: &[u8], when: &str, exts: &[&[u8]]) -> Vec<u8> {
        let exts = if exts.is_empty() {
            Vec::new()
        } else {
            seq(exts)
        };
        seq(&[&tlv(TAG_INTEGER, serial), &utc(when), &exts])
    }

    fn crl_number_ext(n: &[u8]) -> Vec<u8> {
        ext("2.5.29.20", false, &tlv(TAG_INTEGER, n))
    }

    /// A TBSCertList; `version` None = v1. Entries and extensions as given.
    struct Tbs<'a> {
        version: Option<u8>,
        issuer: &'a [u8],
        entries: Option<Vec<Vec<u8>>>,
        extensions: Option<Vec<Vec<u8>>>,
    }

    impl Tbs<'_> {
        fn der(&self) -> Vec<u8> {
            let version = self
                .version
                .map(|v| tlv(TAG_INTEGER, &[v]))
                .unwrap_or_default();
            let alg = seq(&[&oid("1.2.840.10045.4.3.2")]);
            let entries = self
                .entries
                .as_ref()
                .map(|e| tlv(0x30, &e.concat()))
                .unwrap_or_default();
            let exts = self
                .extensions
                .as_ref()
                .map(|e| tlv(TAG_CRL_EXTENSIONS, &tlv(0x30, &e.concat())))
                .unwrap_or_default();
            seq(&[
                &version,
                &alg,
                self.issuer,
                &utc("240101000000Z"),
                &utc("340101000000Z"),
                &entries,
                &exts,
            ])
        }
    }

    fn sign_p256(pkcs8: &[u8], tbs: &[u8]) -> Vec<u8> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = key.sign(&rng, tbs).unwrap();
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig.as_ref());
        seq(&[
            tbs,
            &seq(&[&oid("1.2.840.10045.4.3.2")]),
            &tlv(TAG_BIT_STRING, &bits),
        ])
    }

    /// An EC CA, a sub-CA and end entities (one with a cRLDistributionPoint), for
    /// hand-signed CRLs.
    struct HandCa {
        ca: OpensslCa,
        pkcs8: Vec<u8>,
        issuer: Vec<u8>,
        ee: ParsedCertificate,
        ee_dp: ParsedCertificate,
        sub_ca: ParsedCertificate,
    }

    fn hand_ca() -> HandCa {
        let ca = OpensslCa::new("hand", "/C=JP/O=Test HPKI/CN=Hand CA", "ec", "v3_ca", "01");
        let pkcs8 = ca.pkcs8();
        let issuer = ca.cert.subject().to_der().unwrap();
        let ee = ca.issue("ee", "ee_ext");
        let ee_dp = ca.issue("ee-dp", "ee_ext_dp");
        let sub_ca = ca.issue("sub", "sub_ca_ext");
        HandCa {
            ca,
            pkcs8,
            issuer,
            ee,
            ee_dp,
            sub_ca,
        }
    }

    impl HandCa {
        fn crl(
            &self,
            entries: Vec<Vec<u8>>,
            extensions: Vec<Vec<u8>>,
        ) -> Result<VerifiedCrl, CrlError> {
            let tbs = Tbs {
                version: Some(1),
                issuer: &self.issuer,
                entries: Some(entries),
                extensions: Some(extensions),
            };
            let der = sign_p256(&self.pkcs8, &tbs.der());
            UnverifiedCrl::from_der(&der)?.verify(&self.ca.cert)
        }

        fn idp(&self, content: &[&[u8]]) -> Result<VerifiedCrl, CrlError> {
            self.crl(
                vec![entry(self.ee.serial_bytes(), "240101000000Z", &[])],
                vec![crl_number_ext(&[1]), ext("2.5.29.28", true, &seq(content))],
            )
        }
    }

    #[test]
    fn duplicates_keep_the_earliest_and_remove_from_crl_is_not_a_revocation() {
        let h = hand_ca();
        let crl = h
            .crl(
                vec![
                    entry(&[0x05], "240301000000Z", &[&reason_ext(4)]),
                    entry(&[0x00, 0x90], "240101000000Z", &[]),
                    entry(&[0x05], "240201000000Z", &[&reason_ext(1)]),
                    entry(&[0x07], "240101000000Z", &[&reason_ext(8)]),
                    entry(&[0x06], "240101000000Z", &[&reason_ext(6)]),
                    entry(&[0x01, 0x00, 0x00], "240101000000Z", &[&reason_ext(0)]),
                ],
                vec![crl_number_ext(&[0x00, 0xff])],
            )
            .unwrap();
        assert_eq!(crl.len(), 4); // 05 once, 00 90, 06, 01 00 00; 07 removed
        let five = crl.lookup(&[0x05]).unwrap();
        assert_eq!(five.reason, Some(CrlReason::KeyCompromise));
        assert_eq!(
            five.revoked_at,
            UnixTime::parse_rfc3339("2024-02-01T00:00:00Z").unwrap()
        );
        assert_eq!(crl.lookup(&[0x07]), None);
        assert_eq!(
            crl.lookup(&[0x06]).unwrap().reason,
            Some(CrlReason::CertificateHold)
        );
        assert_eq!(crl.lookup(&[0x00, 0x90]).unwrap().reason, None);
        assert!(crl.lookup(&[0x00, 0x00, 0x90]).is_some());
        assert!(crl.lookup(&[0x90]).is_none());
        assert_eq!(
            crl.lookup(&[0x01, 0x00, 0x00]).unwrap().reason,
            Some(CrlReason::Unspecified)
        );
        assert_eq!(crl.lookup(&[0x01, 0x00]), None);
        assert_eq!(crl.lookup(&[0x01]), None);
        assert_eq!(crl.crl_number(), Some(&[0xff][..]));
        assert!(crl.approx_heap_bytes() > 4 * 13);
        // Other (non-critical) extensions are ignored; an empty list is an empty CRL.
        let empty = h
            .crl(
                vec![],
                vec![
                    crl_number_ext(&[0x01, 0x00]),
                    ext("2.5.29.18", false, &seq(&[&tlv(0x82, b"ca.example.jp")])),
                    ext("2.5.29.46", false, &seq(&[])),
                    ext("1.3.6.1.5.5.7.1.1", false, &seq(&[])),
                ],
            )
            .unwrap();
        assert!(empty.is_empty());
        assert!(empty.is_newer_than(&crl)); // 256 > 255 although "ff" > "01 00" bytewise
        assert!(!crl.is_newer_than(&empty));
    }

    #[test]
    fn issuing_distribution_point_scopes() {
        let h = hand_ca();
        assert!(h.sub_ca.is_ca());
        // No IDP: covers all of the issuer's certificates, nobody else's.
        let plain = h.crl(vec![], vec![crl_number_ext(&[1])]).unwrap();
        assert!(plain.covers(&h.ee) && plain.covers(&h.sub_ca) && plain.covers(&h.ee_dp));
        assert!(!plain.covers(&h.ca.cert.clone()) || h.ca.cert.is_self_issued());
        let other = OpensslCa::new("other", "/CN=Other CA", "ec", "v3_ca", "01");
        assert!(!plain.covers(&other.issue("x", "ee_ext")));

        let user = h.idp(&[&tlv(0x81, &[0xff])]).unwrap();
        assert!(user.covers(&h.ee) && !user.covers(&h.sub_ca));
        let ca_only = h.idp(&[&tlv(0x82, &[0xff])]).unwrap();
        assert!(!ca_only.covers(&h.ee) && ca_only.covers(&h.sub_ca));
        let attr = h.idp(&[&tlv(0x85, &[0xff])]).unwrap();
        assert!(!attr.covers(&h.ee) && !attr.covers(&h.sub_ca));
        // onlySomeReasons [3] ReasonFlags (keyCompromise): not a complete CRL.
        let some = h.idp(&[&tlv(0x83, &[0x06, 0x40])]).unwrap();
        assert!(!some.covers(&h.ee) && !some.covers(&h.sub_ca));

        // distributionPoint [0] { fullName [0] { URI } }
        let dp = |uri: &[u8]| tlv(0xa0, &tlv(0xa0, &tlv(0x86, uri)));
        let a = h.idp(&[&dp(b"http://crl.example.jp/a.crl")]).unwrap();
        assert!(a.covers(&h.ee_dp));
        assert!(
            !a.covers(&h.ee),
            "no cRLDistributionPoints: not this partition"
        );
        let b = h.idp(&[&dp(b"http://crl.example.jp/b.crl")]).unwrap();
        assert!(!b.covers(&h.ee_dp));

        assert_eq!(
            h.idp(&[&tlv(0x84, &[0xff])]).unwrap_err(),
            CrlError::IndirectCrlUnsupported
        );
        assert!(matches!(
            h.idp(&[&tlv(0x81, &[0xff]), &tlv(0x82, &[0xff])]),
            Err(CrlError::Malformed(_))
        ));
    }

    #[test]
    fn extension_rules() {
        let h = hand_ca();
        let e = || vec![entry(&[1], "240101000000Z", &[])];
        let err = |exts: Vec<Vec<u8>>| h.crl(e(), exts).unwrap_err();
        assert_eq!(
            err(vec![ext("2.5.29.27", true, &tlv(TAG_INTEGER, &[1]))]),
            CrlError::DeltaCrlUnsupported
        );
        assert!(matches!(
            err(vec![ext("2.5.29.20", true, &tlv(TAG_INTEGER, &[1]))]),
            CrlError::Malformed(m) if m.contains("critical")
        ));
        assert!(matches!(
            err(vec![crl_number_ext(&[0x80])]),
            CrlError::Malformed(_)
        ));
        assert!(matches!(
            err(vec![crl_number_ext(&[1]), crl_number_ext(&[2])]),
            CrlError::Malformed(m) if m.contains("twice")
        ));
        assert_eq!(
            err(vec![ext("1.2.3.4", true, &[0x05, 0x00])]),
            CrlError::UnsupportedCriticalExtension("1.2.3.4".into())
        );
        assert_eq!(
            err(vec![ext("2.5.29.18", true, &seq(&[&tlv(0x82, b"x")]))]),
            CrlError::UnsupportedCriticalExtension("2.5.29.18".into())
        );
        assert!(h
            .crl(e(), vec![ext("1.2.3.4", false, &[0x05, 0x00])])
            .is_ok());
        // Entry extensions.
        let with = |x: Vec<u8>| h.crl(vec![entry(&[1], "240101000000Z", &[&x])], vec![]);
        assert_eq!(
            with(ext("2.5.29.29", false, &seq(&[]))).unwrap_err(),
            CrlError::IndirectCrlUnsupported
        );
        assert_eq!(
            with(ext("1.2.3.5", true, &[0x05, 0x00])).unwrap_err(),
            CrlError::UnsupportedCriticalExtension("1.2.3.5".into())
        );
        assert!(with(ext("1.2.3.5", false, &[0x05, 0x00])).is_ok());
        assert!(matches!(with(reason_ext(7)), Err(CrlError::Malformed(_))));
        assert!(matches!(with(reason_ext(11)), Err(CrlError::Malformed(_))));
        let inval = ext(
            "2.5.29.24",
            false,
            &tlv(TAG_GENERALIZED_TIME, b"20231231000000Z"),
        );
        assert!(with(inval).is_ok());
        assert!(matches!(
            with(ext("2.5.29.24", false, &utc("231231000000Z"))),
            Err(CrlError::Malformed(_))
        ));
        let twice = h.crl(
            vec![entry(
                &[1],
                "240101000000Z",
                &[&reason_ext(1), &reason_ext(1)],
            )],
            vec![],
        );
        assert!(matches!(twice, Err(CrlError::Malformed(_))));

        // v1: no extensions anywhere, and no version 0 encoded.
        let v1 = |entries: Vec<Vec<u8>>, exts: Option<Vec<Vec<u8>>>, version: Option<u8>| {
            let tbs = Tbs {
                version,
                issuer: &h.issuer,
                entries: Some(entries),
                extensions: exts,
            };
            UnverifiedCrl::from_der(&sign_p256(&h.pkcs8, &tbs.der()))
                .and_then(|c| c.verify(&h.ca.cert))
        };
        let ok = v1(e(), None, None).unwrap();
        assert_eq!((ok.len(), ok.crl_number()), (1, None));
        assert!(matches!(
            v1(e(), Some(vec![crl_number_ext(&[1])]), None),
            Err(CrlError::Malformed(_))
        ));
        assert!(matches!(
            v1(
                vec![entry(&[1], "240101000000Z", &[&reason_ext(1)])],
                None,
                None
            ),
            Err(CrlError::Malformed(_))
        ));
        assert!(matches!(
            v1(e(), None, Some(0)),
            Err(CrlError::Malformed(_))
        ));
        assert!(matches!(
            v1(e(), None, Some(2)),
            Err(CrlError::Malformed(_))
        ));
        // v1 and v2 numbers compare by thisUpdate when one has no number: equal here.
        let v2 = h.crl(e(), vec![crl_number_ext(&[9])]).unwrap();
        assert!(!v2.is_newer_than(&ok) && !ok.is_newer_than(&v2));
    }

    #[test]
    fn errors_read_as_sentences() {
        let all = [
            CrlError::Malformed("bad thisUpdate".into()),
            CrlError::UnsupportedCriticalExtension("1.2.3".into()),
            CrlError::DeltaCrlUnsupported,
            CrlError::IndirectCrlUnsupported,
            CrlError::IssuerMismatch("x".into()),
            CrlError::IssuerNotForCrls,
            CrlError::BadSignature(Reason::BadSignature),
            CrlError::BadSignature(Reason::UnsupportedSignatureAlgorithm),
        ];
        for e in all {
            let s = e.to_string();
            assert!(s.starts_with("The CRL") && s.ends_with('.'), "{s}");
        }
        for code in 0..=10u8 {
            match CrlReason::from_code(code) {
                Some(r) => assert_eq!(r.code(), code),
                None => assert_eq!(code, 7),
            }
        }
        assert_eq!(CrlReason::CaCompromise.as_str(), "cACompromise");
        assert_eq!(CrlReason::RemoveFromCrl.to_string(), "removeFromCRL");
        assert_eq!(CrlReason::AaCompromise.as_str(), "aACompromise");
    }

    // ---------------------------------------------------------------- PKITS

    fn pkits_dir() -> PathBuf {
        shared_dir().join("pkits")
    }

    fn pkits_cert(name: &str) -> ParsedCertificate {
        let bytes = std::fs::read(pkits_dir().join("certs").join(name)).unwrap();
        ParsedCertificate::from_der(&bytes).unwrap()
    }

    fn pkits_crl(name: &str) -> Vec<u8> {
        std::fs::read(pkits_dir().join("crls").join(name)).unwrap()
    }

    /// PKITS CRLs this implementation refuses on purpose, with the reason.
    fn pkits_refused(name: &str) -> Option<CrlError> {
        Some(match name {
            "UnknownCRLEntryExtensionCACRL.crl" => {
                CrlError::UnsupportedCriticalExtension("2.16.840.1.101.2.1.12.2".into())
            }
            // Its signatureValue BIT STRING declares an unused bit.
            "BadCRLSignatureCACRL.crl" => {
                CrlError::Malformed("signatureValue has unused bits or is empty".into())
            }
            "UnknownCRLExtensionCACRL.crl" => {
                CrlError::UnsupportedCriticalExtension("2.16.840.1.101.2.1.12.2".into())
            }
            n if n.contains("delta")
                && n != "deltaCRLCA1CRL.crl"
                && n != "deltaCRLCA2CRL.crl"
                && n != "deltaCRLCA3CRL.crl" =>
            {
                CrlError::DeltaCrlUnsupported
            }
            "indirectCRLCA1CRL.crl"
            | "indirectCRLCA3cRLIssuerCRL.crl"
            | "indirectCRLCA4cRLIssuerCRL.crl"
            | "indirectCRLCA5CRL.crl" => CrlError::IndirectCrlUnsupported,
            _ => return None,
        })
    }

    #[test]
    fn every_pkits_crl_parses_or_is_refused_for_a_stated_reason() {
        let mut names: Vec<String> = std::fs::read_dir(pkits_dir().join("crls"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".crl"))
            .collect();
        names.sort();
        assert_eq!(names.len(), 173);
        let certs: Vec<ParsedCertificate> = std::fs::read_dir(pkits_dir().join("certs"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .filter_map(|b| ParsedCertificate::from_der(&b).ok())
            .collect();
        let mut unverified = Vec::new();
        for name in &names {
            let result = UnverifiedCrl::from_der(&pkits_crl(name));
            match (result, pkits_refused(name)) {
                (Ok(crl), None) => {
                    // Some certificate with the CRL issuer's name must verify it.
                    let verified = certs
                        .iter()
                        .filter(|c| c.subject_key() == crl.issuer_key())
                        .map(|c| crl.check_issuer(c))
                        .collect::<Vec<_>>();
                    if !verified.iter().any(Result::is_ok) {
                        unverified.push(format!("{name}: {verified:?}"));
                    }
                }
                (Err(e), Some(want)) => assert_eq!(e, want, "{name}"),
                (got, want) => panic!("{name}: got {got:?}, expected refusal {want:?}"),
            }
        }
        // Made not to verify: no certificate has the issuer name (4.4.5, 4.4.7's bad
        // CRL), the issuer's keyUsage lacks cRLSign (4.7.4, 4.7.5), and the DSA CAs (DSA
        // is outside the accepted algorithms).
        unverified.sort();
        assert_eq!(
            unverified,
            [
                "BadCRLIssuerNameCACRL.crl: []",
                "DSACACRL.crl: [Err(BadSignature(UnsupportedSignatureAlgorithm))]",
                "DSAParametersInheritedCACRL.crl: [Err(BadSignature(UnsupportedSignatureAlgorithm))]",
                "TwoCRLsCABadCRL.crl: []",
                "keyUsageCriticalcRLSignFalseCACRL.crl: [Err(IssuerNotForCrls)]",
                "keyUsageNotCriticalcRLSignFalseCACRL.crl: [Err(IssuerNotForCrls)]",
            ],
        );
    }

    /// What the CRLs of a case say about one certificate.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Status {
        Good,
        Revoked,
        Unavailable(String),
    }

    /// Revocation status of `cert` (issued by `issuer`) from `crls`, at `time`. CRL
    /// signers other than the issuer come from `pool`; their own status is checked
    /// (one level) against the same CRLs with issuers from `pool`.
    fn status(
        cert: &ParsedCertificate,
        issuer: &ParsedCertificate,
        crls: &[UnverifiedCrl],
        pool: &[ParsedCertificate],
        time: UnixTime,
        depth: u32,
    ) -> Status {
        let mut why = Vec::new();
        let mut good = false;
        for crl in crls.iter().filter(|c| c.issuer_key() == cert.issuer_key()) {
            let signers = std::iter::once(issuer)
                .chain(pool.iter().filter(|p| p.subject_key() == crl.issuer_key()));
            let mut verified = None;
            for signer in signers {
                match crl.check_issuer(signer) {
                    Ok(()) => {
                        if !signer.same_as(issuer) && depth < 2 {
                            let signer_issuer =
                                pool.iter().find(|p| p.subject_key() == signer.issuer_key());
                            let ok = signer_issuer.is_some_and(|si| {
                                status(signer, si, crls, pool, time, depth + 1) == Status::Good
                            });
                            if !ok {
                                why.push("CRL signer not good".to_owned());
                                continue;
                            }
                        }
                        verified = Some(crl.clone().verify(signer).unwrap());
                        break;
                    }
                    Err(e) => why.push(e.to_string()),
                }
            }
            let Some(v) = verified else { continue };
            if v.this_update() > time || v.next_update().is_none_or(|n| n < time) {
                why.push("stale CRL".to_owned());
                continue;
            }
            if !v.covers(cert) {
                why.push("CRL does not cover the certificate".to_owned());
                continue;
            }
            if v.lookup(cert.serial_bytes()).is_some() {
                return Status::Revoked;
            }
            good = true;
        }
        if good {
            Status::Good
        } else {
            Status::Unavailable(why.join("; "))
        }
    }

    /// Status of the whole path (every certificate but the anchor): the first that is not
    /// good.
    fn path_status(case: &serde_json::Value, parsed_crls: &[UnverifiedCrl]) -> Status {
        let names = |k: &str| -> Vec<String> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let mut path = vec![pkits_cert(case["end_entity"].as_str().unwrap())];
        path.extend(names("intermediates").iter().map(|n| pkits_cert(n)));
        path.push(pkits_cert(case["trust_anchor"].as_str().unwrap()));
        let mut pool: Vec<ParsedCertificate> = path.clone();
        pool.extend(names("extra_certs").iter().map(|n| pkits_cert(n)));
        let time = UnixTime(case["time"].as_u64().unwrap());
        for pair in path.windows(2) {
            let s = status(&pair[0], &pair[1], parsed_crls, &pool, time, 0);
            if s != Status::Good {
                return s;
            }
        }
        Status::Good
    }

    fn pkits_cases(section: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(pkits_dir().join("manifest.json")).unwrap();
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .filter(|c| c["section"] == section)
            .collect()
    }

    fn case_crls(case: &serde_json::Value) -> Vec<UnverifiedCrl> {
        case["crls"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| UnverifiedCrl::from_der(&pkits_crl(n.as_str().unwrap())).ok())
            .collect()
    }

    #[test]
    fn pkits_4_4_crl_cases() {
        use Status::*;
        let unavailable = Unavailable(String::new());
        let expected = [
            ("4.4.1", &unavailable), // no CRL for the CA
            ("4.4.2", &Revoked),     // the intermediate CA is revoked
            ("4.4.3", &Revoked),
            ("4.4.4", &unavailable), // bad signature
            ("4.4.5", &unavailable), // CRL issuer name differs
            ("4.4.6", &unavailable), // another CA's CRL
            ("4.4.7", &Good),        // one good CRL, one badly signed
            ("4.4.8", &unavailable), // unknown critical entry extension
            ("4.4.9", &unavailable), // unknown critical CRL extension
            ("4.4.10", &unavailable),
            ("4.4.11", &unavailable), // nextUpdate in the past
            ("4.4.12", &unavailable), // nextUpdate 1999
            ("4.4.13", &Good),        // GeneralizedTime nextUpdate
            ("4.4.14", &Good),        // negative serial, not revoked
            ("4.4.15", &Revoked),     // negative serial, revoked
            ("4.4.16", &Good),        // long serials
            ("4.4.17", &Good),
            ("4.4.18", &Revoked),
            ("4.4.19", &Good),        // separate CRL-signing key
            ("4.4.20", &Revoked),     // ... revoking the EE
            ("4.4.21", &unavailable), // ... whose CRL signer is revoked
        ];
        let cases = pkits_cases("4.4");
        assert_eq!(cases.len(), expected.len());
        for (case, (id, want)) in cases.iter().zip(expected) {
            assert_eq!(case["id"], id);
            let got = path_status(case, &case_crls(case));
            let same = match (&got, want) {
                (Unavailable(_), Unavailable(_)) => true,
                (a, b) => a == b,
            };
            assert!(same, "{id} {}: got {got:?}, want {want:?}", case["name"]);
            // Agrees with PKITS' verdict, and "Revoked" in a name means revoked.
            assert_eq!(got == Good, case["expected"] == "valid", "{id}");
            if case["name"].as_str().unwrap().contains("Revoked") {
                assert_eq!(got, Revoked, "{id}");
            }
        }
        // The EE of 4.4.3 directly against GoodCACRL, as the simplest statement.
        let good_ca = pkits_cert("GoodCACert.crt");
        let crl = UnverifiedCrl::from_der(&pkits_crl("GoodCACRL.crl"))
            .unwrap()
            .verify(&good_ca)
            .unwrap();
        let revoked = pkits_cert("InvalidRevokedEETest3EE.crt");
        let entry = crl.lookup(revoked.serial_bytes()).unwrap();
        assert_eq!(entry.reason, Some(CrlReason::KeyCompromise));
        assert!(crl.covers(&revoked));
        assert!(crl
            .lookup(pkits_cert("ValidCertificatePathTest1EE.crt").serial_bytes())
            .is_none());
        let root = UnverifiedCrl::from_der(&pkits_crl("TrustAnchorRootCRL.crl"))
            .unwrap()
            .verify(&pkits_cert("TrustAnchorRootCertificate.crt"))
            .unwrap();
        assert!(root.covers(&good_ca));
        assert!(root.lookup(good_ca.serial_bytes()).is_none());
    }

    /// Sections 4.5 (self-issued key rollover), 4.14 (distribution points, scopes,
    /// indirect CRLs) and 4.15 (delta CRLs), case by case.
    #[test]
    fn pkits_scope_rollover_and_unsupported_kinds() {
        use Status::*;
        const G: u8 = 0; // good
        const R: u8 = 1; // revoked
        const U: u8 = 2; // no usable CRL
        #[rustfmt::skip]
        let expected: [(&str, u8); 53] = [
            ("4.5.1", G), ("4.5.2", R), ("4.5.3", G), ("4.5.4", G), ("4.5.5", R),
            ("4.5.6", G), ("4.5.7", R), ("4.5.8", G),
            ("4.14.1", G), ("4.14.2", R), ("4.14.3", U), ("4.14.4", G), ("4.14.5", G),
            ("4.14.6", R), ("4.14.7", G), ("4.14.8", U), ("4.14.9", U), ("4.14.10", G),
            ("4.14.11", U), ("4.14.12", U), ("4.14.13", G), ("4.14.14", U),
            ("4.14.15", U), ("4.14.16", U), ("4.14.17", U), ("4.14.18", U),
            ("4.14.19", U), ("4.14.20", U), ("4.14.21", U), ("4.14.22", U),
            ("4.14.23", U), ("4.14.24", U), ("4.14.25", U), ("4.14.26", U),
            ("4.14.27", U), ("4.14.28", U), ("4.14.29", U), ("4.14.30", U),
            ("4.14.31", U), ("4.14.32", U), ("4.14.33", U), ("4.14.34", U),
            ("4.14.35", U),
            ("4.15.1", U), ("4.15.2", G), ("4.15.3", R), ("4.15.4", G), ("4.15.5", R),
            ("4.15.6", R), ("4.15.7", G), ("4.15.8", G), ("4.15.9", R), ("4.15.10", U),
        ];
        // Where the CRL verdict alone differs from PKITS' path verdict:
        // - 4.5.8 is invalid because the EE is issued by a CRL-signing-only key (a path
        //   matter, not revocation);
        // - fail closed (valid in PKITS, no usable CRL here): only-some-reasons CRLs
        //   that would have to be combined (4.14.18/19), indirect CRLs (4.14.22-33),
        //   and 4.15.5, where the base CRL's certificateHold is lifted by a delta CRL;
        // - 4.15.4: the EE is revoked only in the delta CRL, which is refused; the base
        //   CRL alone is current and does not list it (RFC 5280 makes deltas optional).
        let deviations = [
            "4.5.8", "4.14.18", "4.14.19", "4.14.22", "4.14.24", "4.14.25", "4.14.28", "4.14.29",
            "4.14.30", "4.14.33", "4.15.4", "4.15.5",
        ];
        let cases: Vec<serde_json::Value> = ["4.5", "4.14", "4.15"]
            .iter()
            .flat_map(|s| pkits_cases(s))
            .collect();
        assert_eq!(cases.len(), expected.len());
        for (case, (id, want)) in cases.iter().zip(expected) {
            assert_eq!(case["id"], id);
            let got = match path_status(case, &case_crls(case)) {
                Good => G,
                Revoked => R,
                Unavailable(_) => U,
            };
            assert_eq!(got, want, "{id} {}", case["name"]);
            let valid = case["expected"] == "valid";
            assert_eq!((got == G) != valid, deviations.contains(&id), "{id}");
        }
    }

    // ---------------------------------------------------------------- limbo

    #[test]
    fn limbo_crl_cases() {
        let text = std::fs::read_to_string(shared_dir().join("limbo/limbo-client.json")).unwrap();
        let limbo: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut seen = 0;
        for case in limbo["testcases"].as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            if !id.starts_with("crl::") {
                continue;
            }
            seen += 1;
            let pem = |v: &serde_json::Value| v.as_str().unwrap().as_bytes().to_vec();
            let anchors: Vec<ParsedCertificate> = case["trusted_certs"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| crate::pki::parse_certificates(&pem(p)).unwrap())
                .collect();
            let leaf = crate::pki::parse_certificates(&pem(&case["peer_certificate"]))
                .unwrap()
                .remove(0);
            let time = UnixTime::parse_rfc3339(case["validation_time"].as_str().unwrap()).unwrap();
            let mut parsed = Vec::new();
            let mut refusals = Vec::new();
            for p in case["crls"].as_array().unwrap() {
                match UnverifiedCrl::parse(&pem(p)) {
                    Ok(mut c) => parsed.append(&mut c),
                    Err(e) => refusals.push(e),
                }
            }
            let issuer = anchors
                .iter()
                .find(|a| a.subject_key() == leaf.issuer_key())
                .unwrap();
            let got = status(&leaf, issuer, &parsed, &anchors, time, 0);
            let expected_success = case["expected_result"] == "SUCCESS";
            match id {
                // RFC 5280 5.2.3 says CRL issuers MUST include cRLNumber. The parser
                // accepts a CRL without one (v1 CRLs cannot have it; ordering falls back
                // to thisUpdate), so this helper, which checks only scope, freshness and
                // the serial, says "good". The checker the gateway uses
                // (`pki::revocation_check::unusable`) does not use a v2 CRL without a
                // number, which gives limbo's expected failure (tests/limbo.rs).
                "crl::crlnumber-missing" => {
                    assert!(!expected_success);
                    assert_eq!(got, Status::Good);
                    assert!(parsed[0]
                        .clone()
                        .verify(issuer)
                        .unwrap()
                        .crl_number()
                        .is_none());
                }
                // A critical cRLNumber is refused as malformed: no usable CRL.
                "crl::crlnumber-critical" => {
                    assert!(!expected_success);
                    assert!(
                        matches!(&refusals[..], [CrlError::Malformed(m)] if m.contains("cRLNumber"))
                    );
                    assert!(matches!(got, Status::Unavailable(_)));
                }
                "crl::issuer-missing-crlsign" => {
                    assert!(!expected_success);
                    assert!(
                        matches!(&got, Status::Unavailable(w) if w.contains("cRLSign")),
                        "{got:?}"
                    );
                }
                _ => {
                    assert!(refusals.is_empty(), "{id}: {refusals:?}");
                    assert_eq!(got == Status::Good, expected_success, "{id}: {got:?}");
                }
            }
            if id == "crl::revoked-certificate-with-crl" {
                assert_eq!(got, Status::Revoked);
            }
        }
        assert_eq!(seen, 8);
    }

    // ---------------------------------------------------------------- robustness

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Exercises everything a parsed (and possibly verified) CRL offers.
    fn poke(input: &[u8], issuer: &ParsedCertificate, probes: &[&[u8]]) {
        let crls = match UnverifiedCrl::parse(input) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        };
        for crl in crls {
            let _ = (
                crl.issuer(),
                crl.issuer_key(),
                crl.authority_key_id(),
                format!("{crl:?}"),
            );
            if let Ok(v) = crl.verify(issuer) {
                let _ = (
                    v.len(),
                    v.crl_number(),
                    v.next_update(),
                    v.approx_heap_bytes(),
                );
                let _ = (v.covers(issuer), v.is_newer_than(&v), format!("{v:?}"));
                for p in probes {
                    let _ = v.lookup(p);
                }
            }
        }
    }

    fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
        let mut m = seed.to_vec();
        if m.is_empty() {
            return m;
        }
        match rng.below(4) {
            0 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(m.len());
                    m[i] = rng.next() as u8;
                }
            }
            1 => {
                let i = rng.below(m.len());
                m.insert(i, rng.next() as u8);
            }
            2 => {
                let i = rng.below(m.len());
                m.remove(i);
            }
            _ => {
                // Lengths and tags are where parsers break: hit a header-like byte.
                let i = rng.below(m.len());
                m[i] = [0x00, 0x01, 0x02, 0x30, 0x7f, 0x80, 0x81, 0x84, 0x85, 0xff][rng.below(10)];
            }
        }
        m
    }

    #[test]
    fn random_bytes_and_truncations_never_panic() {
        let seeds = [
            ("GoodCACRL.crl", "GoodCACert.crt"),
            ("LongSerialNumberCACRL.crl", "LongSerialNumberCACert.crt"),
            (
                "distributionPoint1CACRL.crl",
                "distributionPoint1CACert.crt",
            ),
            (
                "onlySomeReasonsCA1compromiseCRL.crl",
                "onlySomeReasonsCA1Cert.crt",
            ),
            (
                "UnknownCRLEntryExtensionCACRL.crl",
                "UnknownCRLEntryExtensionCACert.crt",
            ),
        ];
        let probes: [&[u8]; 6] = [&[], &[0], &[0x80], &[0, 0x80], &[1, 2, 3], &[0xff; 30]];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for (crl, ca) in seeds {
            let (seed, issuer) = (pkits_crl(crl), pkits_cert(ca));
            for len in 0..=seed.len() {
                poke(&seed[..len], &issuer, &probes);
            }
            for _ in 0..3000 {
                poke(&mutate(&mut rng, &seed), &issuer, &probes);
            }
        }
        let issuer = pkits_cert("GoodCACert.crt");
        for _ in 0..5000 {
            let len = rng.below(300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 && bytes.len() > 4 {
                bytes[0] = 0x30;
                bytes[1] = 0x82;
            }
            poke(&bytes, &issuer, &probes);
            let mut pem = b"-----BEGIN X509 CRL-----\n".to_vec();
            pem.extend(bytes.iter().map(|b| b"AB+/=x\n-"[(*b % 8) as usize]));
            pem.extend_from_slice(b"\n-----END X509 CRL-----\n");
            poke(&pem, &issuer, &probes);
        }
    }

    /// Mutated TBSCertLists signed again with the right key, so that mutations reach the
    /// index builder and lookups instead of stopping at the signature.
    #[test]
    fn re_signed_mutations_never_panic() {
        let h = hand_ca();
        let entries: Vec<Vec<u8>> = (0u8..40)
            .map(|i| {
                let serial = [i % 7, i, 0x80 | i];
                let ext = [reason_ext(
                    [0, 1, 2, 3, 4, 5, 6, 8, 9, 10][usize::from(i % 10)],
                )];
                let exts: &[Vec<u8>] = if i % 3 == 0 { &[] } else { &ext };
                let exts: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
                entry(&serial[usize::from(i % 3)..], "240101000000Z", &exts)
            })
            .collect();
        let tbs = Tbs {
            version: Some(1),
            issuer: &h.issuer,
            entries: Some(entries),
            extensions: Some(vec![
                crl_number_ext(&[1]),
                ext("2.5.29.28", true, &seq(&[&tlv(0x81, &[0xff])])),
            ]),
        }
        .der();
        let probes: [&[u8]; 4] = [&[0], &[3, 0x83], &[1, 1, 0x81], h.ee.serial_bytes()];
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let (mut verified, mut total) = (0, 0);
        for _ in 0..1500 {
            let der = sign_p256(&h.pkcs8, &mutate(&mut rng, &tbs));
            total += 1;
            if let Ok(v) = UnverifiedCrl::from_der(&der).and_then(|c| c.verify(&h.ca.cert)) {
                verified += 1;
                for p in probes {
                    let _ = v.lookup(p);
                }
                let _ = (v.covers(&h.ee), v.covers(&h.sub_ca), v.approx_heap_bytes());
            }
        }
        assert!(
            verified > 50 && verified < total,
            "{verified} of {total} verified"
        );
    }
}
