//! Revocation status of a validated path from CRLs (RFC 5280 §6.3, complete CRLs only):
//! one implementation for the gateway's runtime check, `hpki-gateway cert verify --crl`
//! and the conformance harnesses (NIST PKITS, x509-limbo).
//!
//! Two layers:
//!
//! - [`crl_status`] decides one certificate from CRLs already verified as issued for its
//!   issuer: scope ([`VerifiedCrl::covers`]), conformance (a v2 CRL must carry
//!   cRLNumber), freshness (thisUpdate / nextUpdate against the caller's time) and the
//!   serial lookup. The runtime calls it with the CRL in use for the issuer.
//! - [`PathCrls`] takes CRLs as given (files, a test case's list), verifies each against
//!   the CA of the path whose name it bears — or, soundly, against a separate
//!   CRL-signing certificate — and decides every certificate of the path below the
//!   anchor. [`check_path_crls`] is the one-call form.
//!
//! Fail closed throughout: a certificate without a usable CRL is
//! [`CrlStatus::Unavailable`], never "good". Pure like the rest of `pki`.

use std::sync::Arc;

use crate::pki::crl::{CrlEntry, UnverifiedCrl, VerifiedCrl};
use crate::pki::{
    name, verify_path, CertificatePool, KeyPurpose, ParsedCertificate, PathOptions, Reason,
    UnixTime, ValidatedPath,
};

/// How current a CRL must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    /// Seconds a CRL stays usable after its nextUpdate.
    pub stale_grace: u64,
    /// Seconds thisUpdate may lie in the future (clock difference with the CA).
    pub clock_skew: u64,
}

impl Freshness {
    /// No grace, no skew: what the conformance suites expect.
    pub const STRICT: Freshness = Freshness {
        stale_grace: 0,
        clock_skew: 0,
    };

    /// Why `crl` is not current at `now`, or None when it is.
    pub fn problem(&self, crl: &VerifiedCrl, now: UnixTime) -> Option<String> {
        if crl.this_update().0 > now.0.saturating_add(self.clock_skew) {
            return Some(format!(
                "its thisUpdate {} is in the future",
                crl.this_update().to_rfc3339()
            ));
        }
        match crl.next_update() {
            // RFC 5280 5.1.2.5: conforming CRL issuers MUST include nextUpdate; without
            // it nothing says how long the list is current.
            None => Some("it has no nextUpdate, so it is never known to be current".into()),
            Some(nu) if now.0 > nu.0.saturating_add(self.stale_grace) => Some(format!(
                "it is stale: nextUpdate {}{} has passed",
                nu.to_rfc3339(),
                if self.stale_grace > 0 {
                    format!(" plus {} s grace", self.stale_grace)
                } else {
                    String::new()
                }
            )),
            Some(_) => None,
        }
    }
}

/// Why a verified CRL cannot be used at all (independent of time), or None.
///
/// RFC 5280 5.2.3: "conforming CRL issuers MUST include this extension [cRLNumber] in
/// all CRLs". A v1 CRL cannot carry extensions and is accepted; a v2 CRL without a
/// number comes from a non-conforming issuer and cannot be ordered against its
/// successors, so it is not used.
pub fn unusable(crl: &VerifiedCrl) -> Option<&'static str> {
    if crl.is_v2() && crl.crl_number().is_none() {
        return Some("a v2 CRL without cRLNumber (RFC 5280 5.2.3 requires one)");
    }
    None
}

/// What the CRLs say about one certificate.
#[derive(Debug, Clone)]
pub enum CrlStatus<'a> {
    /// A current CRL covers the certificate and does not list it.
    Good { crl: &'a VerifiedCrl },
    /// A current CRL lists the certificate.
    Revoked {
        crl: &'a VerifiedCrl,
        entry: CrlEntry,
    },
    /// Only CRLs that are not current cover the certificate: what the newest of them
    /// says (`entry`), and why it is not current. Policy decides (`stale_crl`).
    Stale {
        crl: &'a VerifiedCrl,
        entry: Option<CrlEntry>,
        why: String,
    },
    /// No usable CRL covers the certificate.
    Unavailable { why: String },
}

impl CrlStatus<'_> {
    /// The CRL the answer comes from.
    pub fn crl(&self) -> Option<&VerifiedCrl> {
        match self {
            CrlStatus::Good { crl } | CrlStatus::Revoked { crl, .. } => Some(crl),
            CrlStatus::Stale { crl, .. } => Some(crl),
            CrlStatus::Unavailable { .. } => None,
        }
    }
}

/// Decides `cert` from `crls`, each already verified as signed for the certificate's
/// issuer (by the issuer's key or an accepted CRL signer). Pure; no allocation unless
/// the answer needs a message.
pub fn crl_status<'a>(
    cert: &ParsedCertificate,
    crls: impl IntoIterator<Item = &'a VerifiedCrl>,
    now: UnixTime,
    freshness: Freshness,
) -> CrlStatus<'a> {
    let mut seen = 0usize;
    let mut out_of_scope = 0usize;
    let mut refused: Option<&'static str> = None;
    let mut current: Option<&'a VerifiedCrl> = None;
    let mut newest_old: Option<&'a VerifiedCrl> = None;
    for crl in crls {
        seen += 1;
        if !crl.covers(cert) {
            out_of_scope += 1;
            continue;
        }
        if let Some(why) = unusable(crl) {
            refused = Some(why);
            continue;
        }
        if freshness.problem(crl, now).is_some() {
            if newest_old.is_none_or(|o| crl.is_newer_than(o)) {
                newest_old = Some(crl);
            }
            continue;
        }
        if let Some(entry) = crl.lookup(cert.serial_bytes()) {
            // Any current CRL that lists the certificate is enough.
            return CrlStatus::Revoked { crl, entry };
        }
        if current.is_none_or(|c| crl.is_newer_than(c)) {
            current = Some(crl);
        }
    }
    if let Some(crl) = current {
        return CrlStatus::Good { crl };
    }
    if let Some(crl) = newest_old {
        return CrlStatus::Stale {
            crl,
            entry: crl.lookup(cert.serial_bytes()),
            why: format!(
                "the CRL of \"{}\" is not current: {}",
                crl.issuer_display(),
                freshness.problem(crl, now).unwrap_or_default()
            ),
        };
    }
    let issuer = name::display(cert.issuer());
    let why = match (seen, refused) {
        (0, _) => format!("no CRL of \"{issuer}\""),
        (_, Some(why)) => format!("the CRL of \"{issuer}\" cannot be used: {why}"),
        _ if out_of_scope == seen => format!(
            "the CRL of \"{issuer}\" does not cover this certificate (its issuingDistributionPoint limits its scope)"
        ),
        _ => format!("no usable CRL of \"{issuer}\""),
    };
    CrlStatus::Unavailable { why }
}

/// Which certificates of a path are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckDepth {
    /// The end-entity certificate only.
    Leaf,
    /// Every certificate below the trust anchor.
    Chain,
}

impl CheckDepth {
    /// How many certificates of `path`, from the leaf, are checked (the anchor never).
    pub fn count(self, path: &ValidatedPath) -> usize {
        let below_anchor = path.chain.len().saturating_sub(1);
        match self {
            CheckDepth::Leaf => below_anchor.min(1),
            CheckDepth::Chain => below_anchor,
        }
    }
}

/// A CRL given to [`PathCrls`] that verified, with the certificate whose key signed it.
#[derive(Debug)]
pub struct VerifiedInput {
    pub crl: VerifiedCrl,
    pub signer: Arc<ParsedCertificate>,
    /// Position in the list given to [`PathCrls::new`].
    pub input: usize,
}

/// The status of one certificate of a path, with the input the answer came from.
#[derive(Debug)]
pub struct CertCrlResult<'a> {
    /// 0 = the leaf.
    pub depth: usize,
    pub status: CrlStatus<'a>,
    /// Position of the deciding CRL in the list given to [`PathCrls::new`].
    pub input: Option<usize>,
    /// The CRL was signed by a separate CRL-signing certificate, not the issuer.
    pub separate_signer: Option<Arc<ParsedCertificate>>,
}

/// Why a path fails the CRL check: the certificate at `depth`, the stable reason
/// (`cert_revoked` or `revocation_unavailable`) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCrlFailure {
    pub depth: usize,
    pub reason: Reason,
    pub detail: String,
}

/// How deep separate CRL signers are followed (a signer's own status needs CRLs, whose
/// signer may again be separate).
const MAX_SIGNER_LEVELS: usize = 2;

/// CRLs as given for one validated path: each verified against the CA of the path whose
/// name it bears, or against a separate CRL-signing certificate among `extra` (RFC 5280
/// 6.3.3 (f): such a signer must chain to the same trust anchor, carry cRLSign, and is
/// itself checked for revocation with the same CRLs).
pub struct PathCrls {
    path: ValidatedPath,
    /// Path CAs and extra certificates, the candidate CRL signers.
    signers: Vec<Arc<ParsedCertificate>>,
    verified: Vec<VerifiedInput>,
    refused: Vec<(usize, String)>,
}

impl PathCrls {
    /// Verifies every CRL of `crls` against the certificates that bear its issuer name:
    /// the CAs of `path` (below and including the anchor) and `extra`. A CRL that no
    /// such certificate verifies is recorded in [`PathCrls::refused`] with the reasons.
    pub fn new(
        path: &ValidatedPath,
        crls: &[UnverifiedCrl],
        extra: &[Arc<ParsedCertificate>],
    ) -> PathCrls {
        let mut signers: Vec<Arc<ParsedCertificate>> = Vec::new();
        for c in path.chain.iter().skip(1).chain(extra.iter()) {
            if !signers.iter().any(|s| s.same_as(c)) {
                signers.push(c.clone());
            }
        }
        let mut verified = Vec::new();
        let mut refused = Vec::new();
        for (input, crl) in crls.iter().enumerate() {
            let mut errors = Vec::new();
            let mut done = false;
            for signer in signers
                .iter()
                .filter(|s| s.subject_key() == crl.issuer_key())
            {
                match crl.check_issuer(signer) {
                    Ok(()) => match crl.clone().verify(signer) {
                        Ok(v) => {
                            verified.push(VerifiedInput {
                                crl: v,
                                signer: signer.clone(),
                                input,
                            });
                            done = true;
                            break;
                        }
                        Err(e) => errors.push(e.to_string()),
                    },
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !done {
                let why = if errors.is_empty() {
                    format!(
                        "no certificate of the path is named \"{}\" (the CRL's issuer)",
                        name::display(crl.issuer())
                    )
                } else {
                    errors.join(" / ")
                };
                refused.push((input, why));
            }
        }
        PathCrls {
            path: path.clone(),
            signers,
            verified,
            refused,
        }
    }

    /// The CRLs that verified.
    pub fn verified(&self) -> &[VerifiedInput] {
        &self.verified
    }

    /// The CRLs that did not verify: (position in the input, why).
    pub fn refused(&self) -> &[(usize, String)] {
        &self.refused
    }

    /// The status of each checked certificate of the path, leaf first.
    pub fn statuses(
        &self,
        depth: CheckDepth,
        now: UnixTime,
        freshness: Freshness,
    ) -> Vec<CertCrlResult<'_>> {
        self.path_statuses(&self.path, depth, now, freshness, 0, &[])
    }

    /// The first certificate (from the leaf) that is not good: revoked, or without a
    /// current CRL (a stale CRL counts as unavailable unless `allow_stale`, in which
    /// case it is used as if current).
    pub fn check(
        &self,
        depth: CheckDepth,
        now: UnixTime,
        freshness: Freshness,
        allow_stale: bool,
    ) -> Result<(), PathCrlFailure> {
        for r in self.statuses(depth, now, freshness) {
            if let Some(failure) = failure_of(&r, &self.path, allow_stale) {
                return Err(failure);
            }
        }
        Ok(())
    }

    fn path_statuses(
        &self,
        path: &ValidatedPath,
        depth: CheckDepth,
        now: UnixTime,
        freshness: Freshness,
        level: usize,
        excluded: &[&ParsedCertificate],
    ) -> Vec<CertCrlResult<'_>> {
        let mut out = Vec::new();
        for d in 0..depth.count(path) {
            let (cert, issuer) = (&path.chain[d], &path.chain[d + 1]);
            let mut candidates: Vec<&VerifiedInput> = Vec::new();
            for v in &self.verified {
                if v.crl.issuer_key() != cert.issuer_key() {
                    continue;
                }
                // Signed by the issuer's key, or by an accepted separate CRL signer.
                let by_issuer = v.signer.same_as(issuer);
                if by_issuer
                    || (!excluded.iter().any(|x| x.same_as(&v.signer))
                        && self.signer_accepted(&v.signer, path, now, freshness, level, excluded))
                {
                    candidates.push(v);
                }
            }
            let status = crl_status(cert, candidates.iter().map(|v| &v.crl), now, freshness);
            let source = status
                .crl()
                .and_then(|c| candidates.iter().find(|v| std::ptr::eq(&v.crl, c)).copied());
            out.push(CertCrlResult {
                depth: d,
                input: source.map(|v| v.input),
                separate_signer: source
                    .filter(|v| !v.signer.same_as(issuer))
                    .map(|v| v.signer.clone()),
                status,
            });
        }
        out
    }

    /// A separate CRL signer is accepted when it may sign CRLs (keyUsage present with
    /// cRLSign), validates to the same trust anchor as the path, and none of the
    /// certificates on its own path is revoked or without a current CRL.
    fn signer_accepted(
        &self,
        signer: &Arc<ParsedCertificate>,
        path: &ValidatedPath,
        now: UnixTime,
        freshness: Freshness,
        level: usize,
        excluded: &[&ParsedCertificate],
    ) -> bool {
        if level >= MAX_SIGNER_LEVELS || !signer.key_usage().is_some_and(|ku| ku.crl_sign) {
            return false;
        }
        let pool: Vec<Arc<ParsedCertificate>> = self
            .signers
            .iter()
            .filter(|c| !c.same_as(signer))
            .cloned()
            .collect();
        let anchors = CertificatePool::from_certs([path.anchor().clone()]);
        let Ok(signer_path) = verify_path(
            signer,
            &pool,
            &anchors,
            &CertificatePool::new(),
            &PathOptions::new(now, KeyPurpose::Any),
        ) else {
            return false;
        };
        if !signer_path.anchor().same_as(path.anchor()) {
            return false;
        }
        let mut excluded: Vec<&ParsedCertificate> = excluded.to_vec();
        excluded.push(signer);
        self.path_statuses(
            &signer_path,
            CheckDepth::Chain,
            now,
            freshness,
            level + 1,
            &excluded,
        )
        .iter()
        .all(|r| matches!(r.status, CrlStatus::Good { .. }))
    }
}

/// The failure a certificate's status amounts to, if any.
fn failure_of(
    r: &CertCrlResult<'_>,
    path: &ValidatedPath,
    allow_stale: bool,
) -> Option<PathCrlFailure> {
    let what = || {
        let c = &path.chain[r.depth];
        format!(
            "\"{}\" (serial {})",
            name::display(c.subject()),
            c.serial_hex()
        )
    };
    let revoked = |entry: &CrlEntry, crl: &VerifiedCrl| PathCrlFailure {
        depth: r.depth,
        reason: Reason::CertRevoked,
        detail: format!(
            "{} is revoked ({}) since {}, according to the CRL of \"{}\"",
            what(),
            entry
                .reason
                .map(|x| x.as_str())
                .unwrap_or("no reason given"),
            entry.revoked_at.to_rfc3339(),
            crl.issuer_display()
        ),
    };
    match &r.status {
        CrlStatus::Good { .. } => None,
        CrlStatus::Revoked { crl, entry } => Some(revoked(entry, crl)),
        CrlStatus::Stale {
            crl,
            entry: Some(entry),
            ..
        } if allow_stale => Some(revoked(entry, crl)),
        CrlStatus::Stale { entry: None, .. } if allow_stale => None,
        CrlStatus::Stale { why, .. } | CrlStatus::Unavailable { why } => Some(PathCrlFailure {
            depth: r.depth,
            reason: Reason::RevocationUnavailable,
            detail: format!("revocation status of {} unknown: {why}", what()),
        }),
    }
}

/// Checks `path` against `crls` (verified here, see [`PathCrls`]), failing closed: the
/// first certificate (from the leaf, down to `depth`) that is revoked or has no current
/// CRL, with `cert_revoked` or `revocation_unavailable`. Strict freshness; `extra` may
/// hold separate CRL-signing certificates.
pub fn check_path_crls(
    path: &ValidatedPath,
    crls: &[UnverifiedCrl],
    extra: &[Arc<ParsedCertificate>],
    depth: CheckDepth,
    now: UnixTime,
) -> Result<(), PathCrlFailure> {
    PathCrls::new(path, crls, extra).check(depth, now, Freshness::STRICT, false)
}

#[cfg(test)]
mod tests {
    //! On NIST PKITS data (independent producer); the whole suite runs through
    //! `tests/pkits.rs`, these pin the individual rules.

    use super::*;
    use std::path::PathBuf;

    fn pkits() -> PathBuf {
        let dir = std::env::var_os("HPKI_SHARED_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
            .join("pkits");
        assert!(dir.is_dir(), "PKITS not found at {}", dir.display());
        dir
    }

    fn cert(name: &str) -> Arc<ParsedCertificate> {
        let bytes = std::fs::read(pkits().join("certs").join(name)).unwrap();
        Arc::new(ParsedCertificate::from_der(&bytes).unwrap())
    }

    fn crl(name: &str) -> UnverifiedCrl {
        UnverifiedCrl::from_der(&std::fs::read(pkits().join("crls").join(name)).unwrap()).unwrap()
    }

    /// PKITS' validation time (2011-04-15) and the Good CA's CRL (nextUpdate 2020-12-31).
    const T: UnixTime = UnixTime(1_302_825_600);

    fn path(ee: &str, cas: &[&str]) -> ValidatedPath {
        let anchors = CertificatePool::from_certs([cert("TrustAnchorRootCertificate.crt")]);
        let presented: Vec<_> = cas.iter().map(|c| cert(c)).collect();
        verify_path(
            &cert(ee),
            &presented,
            &anchors,
            &CertificatePool::new(),
            &PathOptions::new(T, KeyPurpose::Any),
        )
        .unwrap()
    }

    #[test]
    fn one_certificate_good_revoked_stale_and_unavailable() {
        let good_ca = cert("GoodCACert.crt");
        let v = crl("GoodCACRL.crl").verify(&good_ca).unwrap();
        let ok = cert("ValidCertificatePathTest1EE.crt");
        let revoked = cert("InvalidRevokedEETest3EE.crt");
        assert!(matches!(
            crl_status(&ok, [&v], T, Freshness::STRICT),
            CrlStatus::Good { .. }
        ));
        match crl_status(&revoked, [&v], T, Freshness::STRICT) {
            CrlStatus::Revoked { entry, .. } => assert_eq!(
                entry.reason,
                Some(crate::pki::crl::CrlReason::KeyCompromise)
            ),
            other => panic!("{other:?}"),
        }
        // After nextUpdate: stale, and still says what it lists; a grace covers it.
        let late = UnixTime(v.next_update().unwrap().0 + 10);
        match crl_status(&revoked, [&v], late, Freshness::STRICT) {
            CrlStatus::Stale { entry, why, .. } => {
                assert!(entry.is_some());
                assert!(why.contains("stale"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let graceful = Freshness {
            stale_grace: 60,
            clock_skew: 0,
        };
        assert!(matches!(
            crl_status(&ok, [&v], late, graceful),
            CrlStatus::Good { .. }
        ));
        // Before thisUpdate: not current either (no skew allowed).
        let early = UnixTime(v.this_update().0 - 10);
        assert!(matches!(
            crl_status(&ok, [&v], early, Freshness::STRICT),
            CrlStatus::Stale { .. }
        ));
        // Nothing given, or a CRL of another issuer: unavailable.
        match crl_status(&ok, [], T, Freshness::STRICT) {
            CrlStatus::Unavailable { why } => assert!(why.contains("no CRL"), "{why}"),
            other => panic!("{other:?}"),
        }
        let root = crl("TrustAnchorRootCRL.crl")
            .verify(&cert("TrustAnchorRootCertificate.crt"))
            .unwrap();
        assert!(matches!(
            crl_status(&ok, [&root], T, Freshness::STRICT),
            CrlStatus::Unavailable { .. }
        ));
    }

    #[test]
    fn a_path_is_checked_from_the_leaf_and_fails_closed() {
        let p = path("InvalidRevokedEETest3EE.crt", &["GoodCACert.crt"]);
        let all = [crl("TrustAnchorRootCRL.crl"), crl("GoodCACRL.crl")];
        let err = check_path_crls(&p, &all, &[], CheckDepth::Chain, T).unwrap_err();
        assert_eq!((err.depth, err.reason), (0, Reason::CertRevoked));
        assert!(err.detail.contains("keyCompromise"), "{}", err.detail);

        // Without the root's CRL the CA has no status: fine for depth leaf only.
        let leaf_crl = [crl("GoodCACRL.crl")];
        let p = path("ValidCertificatePathTest1EE.crt", &["GoodCACert.crt"]);
        check_path_crls(&p, &leaf_crl, &[], CheckDepth::Leaf, T).unwrap();
        let err = check_path_crls(&p, &leaf_crl, &[], CheckDepth::Chain, T).unwrap_err();
        assert_eq!((err.depth, err.reason), (1, Reason::RevocationUnavailable));

        // Reports: which input answered, and which were refused.
        let with_junk = [
            crl("TrustAnchorRootCRL.crl"),
            crl("BadCRLIssuerNameCACRL.crl"),
            crl("GoodCACRL.crl"),
        ];
        let crls = PathCrls::new(&p, &with_junk, &[]);
        assert_eq!(crls.refused().len(), 1);
        assert_eq!(crls.refused()[0].0, 1);
        let statuses = crls.statuses(CheckDepth::Chain, T, Freshness::STRICT);
        assert_eq!(
            statuses.iter().map(|s| s.input).collect::<Vec<_>>(),
            [Some(2), Some(0)]
        );
        assert!(statuses.iter().all(|s| s.separate_signer.is_none()));
    }

    #[test]
    fn separate_crl_signers_must_chain_to_the_anchor_and_be_unrevoked() {
        // 4.4.19: the CA signs CRLs with a second key, certified by the root.
        let p = path(
            "ValidSeparateCertificateandCRLKeysTest19EE.crt",
            &["SeparateCertificateandCRLKeysCertificateSigningCACert.crt"],
        );
        let signer = cert("SeparateCertificateandCRLKeysCRLSigningCert.crt");
        let crls = [
            crl("TrustAnchorRootCRL.crl"),
            crl("SeparateCertificateandCRLKeysCRL.crl"),
        ];
        check_path_crls(
            &p,
            &crls,
            std::slice::from_ref(&signer),
            CheckDepth::Chain,
            T,
        )
        .unwrap();
        let checked = PathCrls::new(&p, &crls, std::slice::from_ref(&signer));
        let statuses = checked.statuses(CheckDepth::Leaf, T, Freshness::STRICT);
        assert!(statuses[0]
            .separate_signer
            .as_ref()
            .is_some_and(|s| s.same_as(&signer)));
        // Without the signer's certificate the CRL cannot be verified: no status.
        let err = check_path_crls(&p, &crls, &[], CheckDepth::Chain, T).unwrap_err();
        assert_eq!((err.depth, err.reason), (0, Reason::RevocationUnavailable));

        // 4.4.21: the CRL signer is itself revoked on the root's CRL.
        let p = path(
            "InvalidSeparateCertificateandCRLKeysTest21EE.crt",
            &["SeparateCertificateandCRLKeysCA2CertificateSigningCACert.crt"],
        );
        let signer = cert("SeparateCertificateandCRLKeysCA2CRLSigningCert.crt");
        let crls = [
            crl("TrustAnchorRootCRL.crl"),
            crl("SeparateCertificateandCRLKeysCA2CRL.crl"),
        ];
        let err = check_path_crls(&p, &crls, &[signer], CheckDepth::Chain, T).unwrap_err();
        assert_eq!((err.depth, err.reason), (0, Reason::RevocationUnavailable));
    }
}
