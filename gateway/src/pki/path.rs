//! Path building and validation (the RFC 5280 §6 subset HPKI needs, plus policy
//! processing and name constraints).
//!
//! Building walks from the leaf towards an anchor through the certificates the client
//! sent and the store's intermediates, matching issuer to subject by normalized name and
//! skipping candidates whose subjectKeyIdentifier contradicts the authorityKeyIdentifier.
//! Each step verifies the signature before going deeper, so a wrong branch costs one
//! signature check. Both the number of signature checks and of visited nodes are
//! bounded: a hostile bundle cannot make the handshake thread spin.

use std::collections::HashMap;
use std::sync::Arc;

use const_oid::ObjectIdentifier;

use super::name::NameKey;
use super::name_constraints::{self, NameConstraintsInput};
use super::policy::{self, CertPolicyInput, PolicySettings};
use super::signature::verify_certificate_signature;
use super::{oids, ParsedCertificate, PolicyPrefix, Reason, UnixTime};

/// Certificates indexed by subject name, for issuer lookup. Duplicates (same bytes) are
/// kept once.
#[derive(Debug, Clone, Default)]
pub struct CertificatePool {
    certs: Vec<Arc<ParsedCertificate>>,
    by_subject: HashMap<NameKey, Vec<usize>>,
}

impl CertificatePool {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_certs(certs: impl IntoIterator<Item = Arc<ParsedCertificate>>) -> Self {
        let mut pool = Self::new();
        for c in certs {
            pool.add(c);
        }
        pool
    }

    /// Adds a certificate; returns false if the same certificate was already there.
    pub fn add(&mut self, cert: Arc<ParsedCertificate>) -> bool {
        if self.certs.iter().any(|c| c.same_as(&cert)) {
            return false;
        }
        let idx = self.certs.len();
        self.by_subject
            .entry(cert.subject_key().clone())
            .or_default()
            .push(idx);
        self.certs.push(cert);
        true
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ParsedCertificate>> {
        self.certs.iter()
    }

    /// Certificates whose subject is `cert`'s issuer and whose key id does not contradict
    /// `cert`'s authorityKeyIdentifier; key-id matches first.
    pub fn issuers_of<'a>(
        &'a self,
        cert: &'a ParsedCertificate,
    ) -> impl Iterator<Item = &'a Arc<ParsedCertificate>> + 'a {
        let idxs: &[usize] = self
            .by_subject
            .get(cert.issuer_key())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let exact = idxs
            .iter()
            .map(|&i| &self.certs[i])
            .filter(move |c| key_id_matches(cert, c) == Some(true));
        let maybe = idxs
            .iter()
            .map(|&i| &self.certs[i])
            .filter(move |c| key_id_matches(cert, c).is_none());
        exact.chain(maybe)
    }
}

/// Some(true) if AKI and SKI are both present and equal, Some(false) if they differ,
/// None if either is absent.
fn key_id_matches(subject: &ParsedCertificate, issuer: &ParsedCertificate) -> Option<bool> {
    match (subject.authority_key_id(), issuer.subject_key_id()) {
        (Some(aki), Some(ski)) => Some(aki == ski),
        _ => None,
    }
}

/// The purpose the end-entity certificate must be valid for (extendedKeyUsage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// TLS client authentication: the login purpose.
    ClientAuth,
    /// TLS server authentication (used by test suites written for servers).
    ServerAuth,
    /// No extendedKeyUsage requirement (e.g. verifying a signing certificate).
    Any,
}

impl KeyPurpose {
    fn oid(self) -> Option<ObjectIdentifier> {
        match self {
            KeyPurpose::ClientAuth => Some(oids::KP_CLIENT_AUTH),
            KeyPurpose::ServerAuth => Some(oids::KP_SERVER_AUTH),
            KeyPurpose::Any => None,
        }
    }
}

/// What a validation is asked to check.
#[derive(Debug, Clone)]
pub struct PathOptions {
    /// The validation time.
    pub time: UnixTime,
    pub purpose: KeyPurpose,
    /// The end-entity certificate must carry a policy under one of these (empty: no
    /// requirement). HPKI CAs and end entities carry different policy OIDs, so this is
    /// matched against the end entity's own certificatePolicies, not the RFC 5280
    /// user-constrained set.
    pub required_policies: Vec<PolicyPrefix>,
    /// Inputs of RFC 5280 policy processing (default: any-policy, nothing inhibited).
    pub policy_settings: PolicySettings,
    /// Maximum number of CA certificates between the leaf and the anchor.
    pub max_intermediates: usize,
}

impl PathOptions {
    pub fn new(time: UnixTime, purpose: KeyPurpose) -> Self {
        Self {
            time,
            purpose,
            required_policies: Vec::new(),
            policy_settings: PolicySettings::default(),
            max_intermediates: DEFAULT_MAX_INTERMEDIATES,
        }
    }
}

pub const DEFAULT_MAX_INTERMEDIATES: usize = 6;
/// Signature verifications allowed per validation.
const MAX_SIGNATURE_CHECKS: u32 = 64;
/// Path-building nodes visited per validation.
const MAX_BUILD_STEPS: u32 = 256;

/// A validated path, leaf first, trust anchor last.
#[derive(Debug, Clone)]
pub struct ValidatedPath {
    pub chain: Vec<Arc<ParsedCertificate>>,
    /// RFC 5280 user-constrained policy set (may be empty).
    pub user_constrained_policies: Vec<ObjectIdentifier>,
}

impl ValidatedPath {
    pub fn leaf(&self) -> &Arc<ParsedCertificate> {
        &self.chain[0]
    }

    pub fn anchor(&self) -> &Arc<ParsedCertificate> {
        &self.chain[self.chain.len() - 1]
    }
}

/// Why no valid path was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub reason: Reason,
    /// Position of the certificate at fault on the best candidate path (0 = the leaf).
    pub depth: Option<usize>,
    /// Human-readable detail: which certificate and what exactly.
    pub detail: String,
}

impl PathError {
    fn new(reason: Reason, depth: Option<usize>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            depth,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for PathError {}

/// Validates `leaf` up to one of `anchors`, using the certificates the client presented
/// and the store's intermediates as candidate issuers. Pure: time comes from `opts`.
pub fn verify_path(
    leaf: &Arc<ParsedCertificate>,
    presented: &[Arc<ParsedCertificate>],
    anchors: &CertificatePool,
    intermediates: &CertificatePool,
    opts: &PathOptions,
) -> Result<ValidatedPath, PathError> {
    let presented = CertificatePool::from_certs(presented.iter().cloned());
    let mut search = Search {
        opts,
        anchors,
        pools: [&presented, intermediates],
        signature_checks: 0,
        steps: 0,
        best: None,
    };
    let mut chain = vec![leaf.clone()];
    match search.extend(&mut chain) {
        Some(path) => Ok(path),
        // Every dead end records an error, so `best` is only empty if building was
        // cut off before the first step.
        None => Err(search.best.map(|(_, e)| e).unwrap_or_else(|| {
            PathError::new(Reason::PathTooComplex, None, "path building did not start")
        })),
    }
}

/// Validates a certificate presented for login: the path with the clientAuth purpose,
/// then login usability. When both the profile's policy and login usability fail, the
/// login reason wins: "use your authentication certificate, not the signing one" is what
/// the doctor can act on, and a signing card never carries the authentication policy.
pub fn verify_for_login(
    leaf: &Arc<ParsedCertificate>,
    presented: &[Arc<ParsedCertificate>],
    anchors: &CertificatePool,
    intermediates: &CertificatePool,
    opts: &PathOptions,
) -> Result<ValidatedPath, PathError> {
    let mut opts = opts.clone();
    opts.purpose = KeyPurpose::ClientAuth;
    let login_refusal = || {
        super::identity::login_problems(leaf)
            .first()
            .map(|&reason| PathError::new(reason, Some(0), reason.description()))
    };
    match verify_path(leaf, presented, anchors, intermediates, &opts) {
        Ok(path) => match login_refusal() {
            Some(e) => Err(e),
            None => Ok(path),
        },
        Err(e)
            if matches!(e.reason, Reason::PolicyNotAccepted | Reason::EkuNotAllowed)
                && e.depth == Some(0) =>
        {
            Err(login_refusal().unwrap_or(e))
        }
        Err(e) => Err(e),
    }
}

/// Validates a certificate offered for signing (a doctor's confirmation of a held write):
/// first that it is a signing certificate (nonRepudiation, not a CA) — an authentication
/// certificate pasted by mistake is named as such, whatever its chain —, then its path,
/// with no extendedKeyUsage purpose (HPKI signing certificates carry none).
pub fn verify_for_signing(
    leaf: &Arc<ParsedCertificate>,
    presented: &[Arc<ParsedCertificate>],
    anchors: &CertificatePool,
    intermediates: &CertificatePool,
    opts: &PathOptions,
) -> Result<ValidatedPath, PathError> {
    if let Some(&reason) = super::identity::signing_problems(leaf).first() {
        let usage = leaf
            .key_usage()
            .map(|ku| ku.names().join(", "))
            .unwrap_or_else(|| "no keyUsage".into());
        return Err(PathError::new(
            reason,
            Some(0),
            format!(
                "\"{}\" is not a signing certificate (keyUsage: {usage}{}): offer the card's \
                 signing (署名用) certificate",
                describe(leaf),
                if leaf.is_ca() {
                    "; a CA certificate"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut opts = opts.clone();
    opts.purpose = KeyPurpose::Any;
    verify_path(leaf, presented, anchors, intermediates, &opts)
}

struct Search<'a> {
    opts: &'a PathOptions,
    anchors: &'a CertificatePool,
    pools: [&'a CertificatePool; 2],
    signature_checks: u32,
    steps: u32,
    /// The most informative failure so far, with its rank.
    best: Option<(u8, PathError)>,
}

/// How informative a failure is: a complete path that fails a check says more than a
/// branch that did not reach an anchor.
fn rank(reason: Reason, complete: bool) -> u8 {
    match (complete, reason) {
        (true, _) => 4,
        (false, Reason::BadSignature | Reason::UnsupportedSignatureAlgorithm) => 3,
        (false, Reason::PathTooLong | Reason::PathTooComplex) => 2,
        (false, _) => 1,
    }
}

impl Search<'_> {
    fn record(&mut self, err: PathError, complete: bool) {
        let r = rank(err.reason, complete);
        if self.best.as_ref().is_none_or(|(b, _)| r > *b) {
            self.best = Some((r, err));
        }
    }

    fn check_signature(
        &mut self,
        subject: &ParsedCertificate,
        issuer: &ParsedCertificate,
        depth: usize,
    ) -> bool {
        if self.signature_checks >= MAX_SIGNATURE_CHECKS {
            self.record(
                PathError::new(Reason::PathTooComplex, None, "too many signature checks"),
                false,
            );
            return false;
        }
        self.signature_checks += 1;
        let spki = &issuer.x509().tbs_certificate.subject_public_key_info;
        match verify_certificate_signature(subject, spki) {
            Ok(()) => true,
            Err(reason) => {
                self.record(
                    PathError::new(
                        reason,
                        Some(depth),
                        format!(
                            "signature of \"{}\" does not verify with the key of \"{}\"",
                            super::name::display(subject.subject()),
                            super::name::display(issuer.subject())
                        ),
                    ),
                    false,
                );
                false
            }
        }
    }

    fn extend(&mut self, chain: &mut Vec<Arc<ParsedCertificate>>) -> Option<ValidatedPath> {
        self.steps += 1;
        if self.steps > MAX_BUILD_STEPS {
            self.record(
                PathError::new(Reason::PathTooComplex, None, "too many candidate paths"),
                false,
            );
            return None;
        }
        let current = chain.last()?.clone();
        let depth = chain.len() - 1;

        let anchors: Vec<_> = self.anchors.issuers_of(&current).cloned().collect();
        for anchor in &anchors {
            if !self.check_signature(&current, anchor, depth) {
                continue;
            }
            match validate(chain, anchor, self.opts) {
                Ok(path) => return Some(path),
                Err(e) => self.record(e, true),
            }
        }

        let candidates: Vec<_> = self
            .pools
            .iter()
            .flat_map(|p| p.issuers_of(&current))
            .cloned()
            .collect();
        let any_issuer = !anchors.is_empty() || !candidates.is_empty();
        for cand in candidates {
            if chain.iter().any(|c| c.same_subject_and_key(&cand)) {
                continue;
            }
            // Self-issued certificates (key rollover) are not counted, as RFC 5280 does
            // for pathLen; loops are excluded above and the step bound caps the rest.
            let counted = chain[1..].iter().filter(|c| !c.is_self_issued()).count()
                + usize::from(!cand.is_self_issued());
            if counted > self.opts.max_intermediates {
                self.record(
                    PathError::new(
                        Reason::PathTooLong,
                        Some(depth),
                        format!(
                            "more than {} intermediate certificates",
                            self.opts.max_intermediates
                        ),
                    ),
                    false,
                );
                return None;
            }
            if !self.check_signature(&current, &cand, depth) {
                continue;
            }
            chain.push(cand);
            let found = self.extend(chain);
            chain.pop();
            if found.is_some() {
                return found;
            }
        }
        if !any_issuer {
            // A dead end: name the certificate whose issuer is unknown, which is the one
            // the operator has to add (or the one that should not be trusted).
            self.record(
                PathError::new(
                    Reason::UntrustedIssuer,
                    Some(depth),
                    format!(
                        "no trust anchor or intermediate matches issuer \"{}\" of \"{}\"",
                        super::name::display(current.issuer()),
                        super::name::display(current.subject())
                    ),
                ),
                false,
            );
        }
        None
    }
}

fn describe(c: &ParsedCertificate) -> String {
    super::name::display(c.subject())
}

/// Checks every certificate of a path must pass, wherever it sits.
fn check_certificate(
    cert: &ParsedCertificate,
    depth: usize,
    time: UnixTime,
) -> Result<(), PathError> {
    if time < cert.not_before() {
        return Err(PathError::new(
            Reason::CertNotYetValid,
            Some(depth),
            format!(
                "\"{}\" is valid from {}",
                describe(cert),
                cert.not_before().to_rfc3339()
            ),
        ));
    }
    if time > cert.not_after() {
        return Err(PathError::new(
            Reason::CertExpired,
            Some(depth),
            format!(
                "\"{}\" expired at {}",
                describe(cert),
                cert.not_after().to_rfc3339()
            ),
        ));
    }
    if let Some(oid) = cert.unknown_critical_extensions().first() {
        return Err(PathError::new(
            Reason::UnsupportedCriticalExtension,
            Some(depth),
            format!("\"{}\" has critical extension {oid}", describe(cert)),
        ));
    }
    if let Some(problem) = cert.nonconformities().first() {
        return Err(PathError::new(
            Reason::MalformedCertificate,
            Some(depth),
            format!("\"{}\": {problem}", describe(cert)),
        ));
    }
    if cert.version() != x509_cert::certificate::Version::V3 {
        return Err(PathError::new(
            Reason::MalformedCertificate,
            Some(depth),
            format!("\"{}\" is not an X.509 v3 certificate", describe(cert)),
        ));
    }
    Ok(())
}

/// Checks for a certificate that issues others (an intermediate or the anchor).
fn check_ca(cert: &ParsedCertificate, depth: usize, purpose: KeyPurpose) -> Result<(), PathError> {
    if !cert.is_ca() {
        return Err(PathError::new(
            Reason::NotACa,
            Some(depth),
            format!("\"{}\" is not a CA certificate", describe(cert)),
        ));
    }
    if cert.key_usage().is_some_and(|ku| !ku.key_cert_sign) {
        return Err(PathError::new(
            Reason::CaKeyUsageMissingCertSign,
            Some(depth),
            format!("\"{}\" keyUsage lacks keyCertSign", describe(cert)),
        ));
    }
    if cert.subject_key_id().is_none() {
        return Err(PathError::new(
            Reason::MalformedCertificate,
            Some(depth),
            format!(
                "CA certificate \"{}\" has no subjectKeyIdentifier (RFC 5280 4.2.1.2)",
                describe(cert)
            ),
        ));
    }
    // A CA restricted by extendedKeyUsage may not issue for other purposes (the
    // constraint Windows, NSS and Go apply); HPKI CAs carry no EKU.
    if let (Some(required), Some(eku)) = (purpose.oid(), cert.ext_key_usage()) {
        if !eku.contains(&required) && !eku.contains(&oids::ANY_EXTENDED_KEY_USAGE) {
            return Err(PathError::new(
                Reason::EkuNotAllowed,
                Some(depth),
                format!(
                    "CA \"{}\" is restricted by extendedKeyUsage that excludes {required}",
                    describe(cert)
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a complete candidate path whose signatures are already verified.
/// `chain` is leaf first; `anchor` issued `chain.last()`.
fn validate(
    chain: &[Arc<ParsedCertificate>],
    anchor: &Arc<ParsedCertificate>,
    opts: &PathOptions,
) -> Result<ValidatedPath, PathError> {
    // The anchor is checked like any CA: an expired root, or one with an extension we
    // do not understand, must not anchor anything.
    check_certificate(anchor, chain.len(), opts.time)?;
    check_ca(anchor, chain.len(), opts.purpose)?;
    // An anchor's own pathLen bounds the path below it, as OpenSSL and most verifiers do.
    let mut max_path_len: Option<u32> = anchor.path_len_constraint().map(u32::from);

    for depth in (0..chain.len()).rev() {
        let cert = &chain[depth];
        check_certificate(cert, depth, opts.time)?;
        // Not checked on anchors: an operator-chosen root is trusted as it is (one widely
        // deployed root has serial 0).
        if cert.serial_bytes().iter().all(|&b| b == 0) {
            return Err(PathError::new(
                Reason::MalformedCertificate,
                Some(depth),
                format!(
                    "\"{}\" has serial number 0 (RFC 5280 4.1.2.2)",
                    describe(cert)
                ),
            ));
        }
        if !cert.is_self_issued() && cert.authority_key_id().is_none() {
            return Err(PathError::new(
                Reason::MalformedCertificate,
                Some(depth),
                format!(
                    "\"{}\" has no authorityKeyIdentifier keyIdentifier (RFC 5280 4.2.1.1)",
                    describe(cert)
                ),
            ));
        }
        if depth == 0 {
            break;
        }
        check_ca(cert, depth, opts.purpose)?;
        if !cert.is_self_issued() {
            match max_path_len {
                Some(0) => {
                    return Err(PathError::new(
                        Reason::PathTooLong,
                        Some(depth),
                        format!(
                            "\"{}\" exceeds an issuer's pathLenConstraint",
                            describe(cert)
                        ),
                    ))
                }
                Some(n) => max_path_len = Some(n - 1),
                None => {}
            }
        }
        if let Some(pl) = cert.path_len_constraint() {
            let pl = u32::from(pl);
            if max_path_len.is_none_or(|m| pl < m) {
                max_path_len = Some(pl);
            }
        }
    }

    let leaf = &chain[0];
    // A CA certificate may be the target (`cert verify` of a CA, a CRL signer's path);
    // it may carry nameConstraints.
    if leaf.name_constraints.is_some() && !leaf.is_ca() {
        return Err(PathError::new(
            Reason::MalformedCertificate,
            Some(0),
            "nameConstraints in an end-entity certificate (RFC 5280 4.2.1.10)",
        ));
    }
    if !leaf.is_ca() && leaf.key_usage().is_some_and(|ku| ku.key_cert_sign) {
        return Err(PathError::new(
            Reason::MalformedCertificate,
            Some(0),
            "keyCertSign without basicConstraints cA (RFC 5280 4.2.1.3)",
        ));
    }
    if let (Some(required), Some(eku)) = (opts.purpose.oid(), leaf.ext_key_usage()) {
        if !eku.contains(&required) && !eku.contains(&oids::ANY_EXTENDED_KEY_USAGE) {
            return Err(PathError::new(
                Reason::EkuNotAllowed,
                Some(0),
                format!("extendedKeyUsage does not include {required}"),
            ));
        }
    }

    // Anchor first, so that the anchor's own name constraints apply below it.
    let nc_inputs: Vec<NameConstraintsInput<'_>> = std::iter::once(anchor)
        .chain(chain.iter().rev())
        .enumerate()
        .map(|(i, c)| NameConstraintsInput {
            subject: c.subject(),
            subject_alt_names: c.subject_alt_names(),
            name_constraints: c.name_constraints.as_ref(),
            // The anchor is not checked against anything; treat it as exempt.
            self_issued: i == 0 || c.is_self_issued(),
        })
        .collect();
    if let Err(e) = name_constraints::check_path(&nc_inputs) {
        let depth = match e {
            name_constraints::NameConstraintsError::NotPermitted { index }
            | name_constraints::NameConstraintsError::Unsupported { index }
            | name_constraints::NameConstraintsError::Malformed { index } => {
                // index 0 is the anchor; index k is chain[len - k].
                chain.len().checked_sub(index)
            }
            name_constraints::NameConstraintsError::TooComplex => None,
        };
        return Err(PathError::new(
            Reason::NameConstraintViolation,
            depth,
            format!("name constraints: {e:?}"),
        ));
    }

    let policy_inputs: Vec<CertPolicyInput> = chain
        .iter()
        .rev()
        .map(|c| CertPolicyInput {
            policies: c.policies.clone(),
            mappings: c.policy_mappings.clone(),
            require_explicit_policy: c
                .policy_constraints
                .as_ref()
                .and_then(|p| p.require_explicit_policy),
            inhibit_policy_mapping: c
                .policy_constraints
                .as_ref()
                .and_then(|p| p.inhibit_policy_mapping),
            inhibit_any_policy: c.inhibit_any_policy,
            self_issued: c.is_self_issued(),
        })
        .collect();
    let outcome = policy::process_policies(&policy_inputs, &opts.policy_settings).map_err(|e| {
        PathError::new(
            Reason::PolicyNotAccepted,
            None,
            format!("RFC 5280 policy processing: {e:?}"),
        )
    })?;

    if !opts.required_policies.is_empty() {
        let leaf_policies = leaf.policies().unwrap_or(&[]);
        let accepted = leaf_policies
            .iter()
            .any(|p| opts.required_policies.iter().any(|req| req.matches(p)));
        if !accepted {
            let have: Vec<String> = leaf_policies.iter().map(|p| p.to_string()).collect();
            let want: Vec<String> = opts
                .required_policies
                .iter()
                .map(|p| p.to_string())
                .collect();
            return Err(PathError::new(
                Reason::PolicyNotAccepted,
                Some(0),
                format!(
                    "certificate policies [{}] match none of the required [{}]",
                    have.join(", "),
                    want.join(", ")
                ),
            ));
        }
    }

    let mut full = chain.to_vec();
    full.push(anchor.clone());
    Ok(ValidatedPath {
        chain: full,
        user_constrained_policies: outcome.user_constrained_policy_set,
    })
}
