//! Revocation: CRLs (files and distribution points, refreshed) and OCSP (cached, single
//! flight), checked right after the handshake with each profile's fail policy.
//!
//! The CRL set is an immutable snapshot behind an `ArcSwap`: the check reads it without
//! locks or allocation, and the refresh task replaces it whole. A CRL is only ever
//! replaced by a newer one (CRL number, else thisUpdate).

mod fetch;
mod refresh;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{
    FailMode, RevocationDepth, RevocationFetch, RevocationPolicy, RevocationSource,
};
use crate::pki::crl::{CrlEntry, CrlReason, UnverifiedCrl, VerifiedCrl};
use crate::pki::name::NameKey;
use crate::pki::ocsp::{self, OcspHash, OcspStatus};
use crate::pki::revocation_check::{crl_status, CheckDepth, CrlStatus, Freshness};
use crate::pki::{ParsedCertificate, UnixTime, ValidatedPath};
use crate::trust::TrustStore;

pub use fetch::{Fetched, Fetcher, Validators};
pub use refresh::{run as run_refresh, DistributionPointStatus, RefreshTask};

/// The issuer a CRL belongs to: its name and key (a CA re-keyed under the same name
/// issues separate CRLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerId {
    name: NameKey,
    key: [u8; 32],
}

impl IssuerId {
    pub fn of(ca: &ParsedCertificate) -> IssuerId {
        IssuerId {
            name: ca.subject_key().clone(),
            key: crate::pki::sha256(&ca.spki_der()),
        }
    }
}

/// One CRL in use, with where it came from.
#[derive(Debug)]
pub struct CrlRecord {
    pub crl: VerifiedCrl,
    pub source: String,
    pub loaded_at: UnixTime,
}

/// The CRLs in use, by issuer.
#[derive(Debug, Default, Clone)]
pub struct CrlSet {
    by_issuer: HashMap<IssuerId, Arc<CrlRecord>>,
}

impl CrlSet {
    pub fn get(&self, issuer: &ParsedCertificate) -> Option<&Arc<CrlRecord>> {
        self.by_issuer.get(&IssuerId::of(issuer))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<CrlRecord>> {
        self.by_issuer.values()
    }

    pub fn len(&self) -> usize {
        self.by_issuer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// Inserts unless the set already holds a CRL of the same issuer that is as new.
    /// Returns whether it was inserted.
    pub fn offer(&mut self, id: IssuerId, record: CrlRecord) -> bool {
        self.offer_shared(id, Arc::new(record))
    }

    fn offer_shared(&mut self, id: IssuerId, record: Arc<CrlRecord>) -> bool {
        match self.by_issuer.get(&id) {
            Some(current) if !record.crl.is_newer_than(&current.crl) => false,
            _ => {
                self.by_issuer.insert(id, record);
                true
            }
        }
    }
}

/// Reads, verifies and indexes the CRL files of every profile. A file that does not
/// parse, or whose issuer is not a CA of its profile, or whose signature fails, is a
/// problem naming the file: a broken CRL must not silently mean "nothing revoked".
pub fn load_crl_files(store: &TrustStore, now: UnixTime) -> Result<CrlSet, Vec<String>> {
    let mut set = CrlSet::default();
    let mut problems = Vec::new();
    for profile in &store.profiles {
        let cas: Vec<&Arc<ParsedCertificate>> = profile
            .directory
            .anchors
            .iter()
            .chain(profile.directory.intermediates.iter())
            .collect();
        for path in &profile.directory.crl_files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("{}: cannot be read: {e}", path.display()));
                    continue;
                }
            };
            let crls = match UnverifiedCrl::parse(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!(
                        "{}: {e} (expected a DER or PEM X.509 CRL)",
                        path.display()
                    ));
                    continue;
                }
            };
            for crl in crls {
                match verify_against(crl, &cas) {
                    Ok((id, verified)) => {
                        set.offer(
                            id,
                            CrlRecord {
                                crl: verified,
                                source: path.display().to_string(),
                                loaded_at: now,
                            },
                        );
                    }
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems)
    }
}

/// Verifies a CRL against the CA it names: the candidate whose subjectKeyIdentifier equals
/// the CRL's authorityKeyIdentifier, else the first with the CRL's issuer name.
pub fn verify_against(
    crl: UnverifiedCrl,
    cas: &[&Arc<ParsedCertificate>],
) -> Result<(IssuerId, VerifiedCrl), String> {
    let named = || cas.iter().filter(|c| c.subject_key() == crl.issuer_key());
    let by_key = named().find(
        |c| matches!((crl.authority_key_id(), c.subject_key_id()), (Some(a), Some(s)) if a == s),
    );
    let Some(ca) = by_key.or_else(|| named().next()).copied() else {
        return Err(format!(
            "no CA of this profile is named \"{}\" (the CRL's issuer): add the CA to anchors/ or intermediates/",
            crate::pki::name::display(crl.issuer())
        ));
    };
    let id = IssuerId::of(ca);
    crl.verify(ca).map(|v| (id, v)).map_err(|e| e.to_string())
}

/// The result of checking one certificate path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every checked certificate has a definite "not revoked".
    Good,
    /// Status could not be established for some certificate, and the profile allows that
    /// (`on_unavailable = "allow"` / `stale_crl = "allow"`); `why` is for the warning.
    AllowedUnavailable { depth: usize, why: String },
    Revoked {
        depth: usize,
        reason: Option<String>,
        source: &'static str,
    },
    /// Status could not be established and the profile denies.
    Unavailable { depth: usize, why: String },
}

/// An OCSP answer as cached.
#[derive(Debug, Clone)]
enum OcspCached {
    Status(OcspStatus),
    Failed(String),
}

/// Revocation state shared by every connection.
pub struct Revocation {
    crls: ArcSwap<CrlSet>,
    fetcher: Fetcher,
    settings: RevocationFetch,
    ocsp_cache: moka::future::Cache<(IssuerId, Vec<u8>), (OcspCached, u64)>,
    refresh: refresh::RefreshHandle,
    /// OCSP lookups, and those that missed the cache, for the hit ratio in /metrics.
    ocsp_lookups: std::sync::atomic::AtomicU64,
    ocsp_fetches: std::sync::atomic::AtomicU64,
}

impl Revocation {
    /// Builds the state; the refresh task it returns is started with [`run_refresh`]
    /// once a Tokio runtime runs (`Gateway::serve`).
    pub fn new(
        initial: CrlSet,
        store: &TrustStore,
        settings: RevocationFetch,
        refresh_every: Duration,
    ) -> (Arc<Revocation>, RefreshTask) {
        let fetcher = Fetcher::new(&settings);
        let ocsp_cache = moka::future::Cache::builder()
            .max_capacity(settings.ocsp_cache_entries)
            .expire_after(OcspExpiry)
            .build();
        let (refresh, task) = refresh::RefreshHandle::new(refresh_every);
        let rev = Arc::new(Revocation {
            crls: ArcSwap::from_pointee(initial),
            fetcher,
            settings,
            ocsp_cache,
            refresh,
            ocsp_lookups: Default::default(),
            ocsp_fetches: Default::default(),
        });
        rev.register_distribution_points(store);
        (rev, task)
    }

    /// Distribution points and their last fetch, for operators.
    pub fn distribution_points(&self) -> Vec<refresh::DistributionPointStatus> {
        let mut v: Vec<_> = self
            .refresh
            .status
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.url.cmp(&b.url));
        v
    }

    pub fn crls(&self) -> arc_swap::Guard<Arc<CrlSet>> {
        self.crls.load()
    }

    /// Installs a CRL if it is newer than the one in use; returns whether it was.
    pub fn offer(&self, id: IssuerId, record: CrlRecord) -> bool {
        let record = Arc::new(record);
        let mut inserted = false;
        // `rcu` may run the closure more than once under contention: the record is
        // shared, not moved, so a retry offers it again.
        self.crls.rcu(|current| {
            let mut next = CrlSet::clone(current);
            inserted = next.offer_shared(id.clone(), record.clone());
            next
        });
        inserted
    }

    /// Installs every CRL of `incoming` that is newer than the one in use (a reload's
    /// CRL files); returns how many were.
    pub fn offer_all(&self, incoming: &CrlSet) -> usize {
        let mut installed = 0;
        self.crls.rcu(|current| {
            let mut next = CrlSet::clone(current);
            installed = 0;
            for (id, record) in &incoming.by_issuer {
                if next.offer_shared(id.clone(), record.clone()) {
                    installed += 1;
                }
            }
            next
        });
        installed
    }

    /// CA certificates of the store point at their issuer's CRL (the root's ARL); at
    /// start and for a reloaded store.
    pub fn register_distribution_points(&self, store: &TrustStore) {
        for profile in &store.profiles {
            let dir = &profile.directory;
            let cas: Vec<&Arc<ParsedCertificate>> =
                dir.anchors.iter().chain(dir.intermediates.iter()).collect();
            for ca in dir.intermediates.iter() {
                if let Some(issuer) = cas
                    .iter()
                    .find(|c| c.subject_key() == ca.issuer_key() && !c.same_as(ca))
                {
                    for url in ca.crl_distribution_urls() {
                        self.refresh.register(url, issuer);
                    }
                }
            }
        }
    }

    /// Makes sure the distribution points of a validated path are known, so that their
    /// CRLs are fetched and kept fresh.
    pub fn note_path(&self, path: &ValidatedPath) {
        for pair in path.chain.windows(2) {
            for url in pair[0].crl_distribution_urls() {
                self.refresh.register(url, &pair[1]);
            }
        }
    }

    /// Checks a validated path under a profile's policy. Network I/O only for OCSP, or to
    /// fetch a CRL not seen before (both bounded by `revocation.fetch_timeout`).
    pub async fn check(
        &self,
        path: &ValidatedPath,
        policy: &RevocationPolicy,
        now: UnixTime,
    ) -> Outcome {
        if policy.sources.is_empty() {
            return Outcome::Good;
        }
        self.note_path(path);
        // The anchor is trusted as configured; everything below it is checked.
        let last = check_depth(policy.depth).count(path);
        let mut allowed: Option<(usize, String)> = None;
        for depth in 0..last {
            let (cert, issuer) = (&path.chain[depth], &path.chain[depth + 1]);
            match self.check_one(cert, issuer, depth, policy, now).await {
                One::Good => {}
                One::Revoked(o) => return o,
                One::Unavailable { why, hard } => {
                    if hard || policy.on_unavailable == FailMode::Deny {
                        return Outcome::Unavailable { depth, why };
                    }
                    allowed.get_or_insert((depth, why));
                }
            }
        }
        match allowed {
            Some((depth, why)) => Outcome::AllowedUnavailable { depth, why },
            None => Outcome::Good,
        }
    }

    /// CRL-only re-check for long-lived connections (no network I/O).
    pub fn recheck_revoked(
        &self,
        path: &ValidatedPath,
        policy: &RevocationPolicy,
    ) -> Option<Outcome> {
        if !policy.sources.contains(&RevocationSource::Crl) {
            return None;
        }
        let crls = self.crls.load();
        // The anchor is never checked (a path of the anchor alone has nothing to check).
        let last = check_depth(policy.depth).count(path);
        for depth in 0..last {
            let (cert, issuer) = (&path.chain[depth], &path.chain[depth + 1]);
            let Some(rec) = crls.get(issuer) else {
                continue;
            };
            // Revocation only: a CRL that went stale meanwhile does not close the
            // connection, but what it lists is still revoked.
            let freshness = Freshness {
                stale_grace: policy.stale_grace.as_secs(),
                clock_skew: self.settings.clock_skew.as_secs(),
            };
            let entry = match crl_status(cert, [&rec.crl], crate::proxy::now(), freshness) {
                CrlStatus::Revoked { entry, .. } => entry,
                CrlStatus::Stale {
                    entry: Some(entry), ..
                } => entry,
                _ => continue,
            };
            return Some(Outcome::Revoked {
                depth,
                reason: entry.reason.map(|r| r.as_str().to_owned()),
                source: "crl",
            });
        }
        None
    }

    async fn check_one(
        &self,
        cert: &Arc<ParsedCertificate>,
        issuer: &Arc<ParsedCertificate>,
        depth: usize,
        policy: &RevocationPolicy,
        now: UnixTime,
    ) -> One {
        let mut why: Vec<String> = Vec::new();
        let mut hard = false;
        for source in &policy.sources {
            match source {
                RevocationSource::Crl => {
                    let mut record = self.crls.load().get(issuer).cloned();
                    if record.is_none() && !cert.crl_distribution_urls().is_empty() {
                        // First sight of this issuer: fetch its CRL now (bounded) rather
                        // than refusing a doctor whose CA we simply have not met yet.
                        self.refresh
                            .fetch_now(cert, issuer, self.settings.fetch_timeout)
                            .await;
                        record = self.crls.load().get(issuer).cloned();
                    }
                    let Some(rec) = record else {
                        why.push(format!(
                            "no CRL of \"{}\" is loaded{}",
                            crate::pki::name::display(issuer.subject()),
                            if cert.crl_distribution_urls().is_empty() {
                                " and the certificate names no distribution point".to_owned()
                            } else {
                                format!(
                                    " (distribution point {})",
                                    cert.crl_distribution_urls().join(", ")
                                )
                            }
                        ));
                        continue;
                    };
                    let freshness = Freshness {
                        stale_grace: policy.stale_grace.as_secs(),
                        clock_skew: self.settings.clock_skew.as_secs(),
                    };
                    let revoked = |entry: CrlEntry| {
                        One::Revoked(Outcome::Revoked {
                            depth,
                            reason: entry.reason.map(|r: CrlReason| r.as_str().to_owned()),
                            source: "crl",
                        })
                    };
                    match crl_status(cert, [&rec.crl], now, freshness) {
                        CrlStatus::Good { .. } => return One::Good,
                        CrlStatus::Revoked { entry, .. } => return revoked(entry),
                        CrlStatus::Unavailable { why: w } => {
                            why.push(format!("{w} (CRL from {})", rec.source));
                            continue;
                        }
                        CrlStatus::Stale { entry, why: w, .. } => {
                            let msg = format!("{w} (CRL from {})", rec.source);
                            tracing::warn!(depth, "{msg}");
                            if policy.stale_crl == FailMode::Deny {
                                // A stale CRL under "deny" is not rescued by
                                // on_unavailable = "allow".
                                hard = true;
                                why.push(msg);
                                continue;
                            }
                            return entry.map(revoked).unwrap_or(One::Good);
                        }
                    }
                }
                RevocationSource::Ocsp => {
                    let url = policy
                        .ocsp_responder
                        .clone()
                        .or_else(|| cert.ocsp_urls().first().cloned());
                    let Some(url) = url else {
                        why.push("no OCSP responder (no AIA, no revocation.ocsp_responder)".into());
                        continue;
                    };
                    match self.ocsp(cert, issuer, &url, now).await {
                        OcspCached::Status(OcspStatus::Good) => return One::Good,
                        OcspCached::Status(OcspStatus::Revoked { reason, .. }) => {
                            return One::Revoked(Outcome::Revoked {
                                depth,
                                reason: reason.map(|r| format!("reasonCode {r}")),
                                source: "ocsp",
                            })
                        }
                        OcspCached::Status(OcspStatus::Unknown) => why.push(format!(
                            "OCSP responder {url} does not know the certificate"
                        )),
                        OcspCached::Failed(e) => why.push(format!("OCSP {url}: {e}")),
                    }
                }
            }
        }
        // A stale CRL under "deny" is not rescued by on_unavailable = "allow": the
        // operator said stale means deny.
        One::Unavailable {
            why: why.join("; "),
            hard,
        }
    }

    async fn ocsp(
        &self,
        cert: &ParsedCertificate,
        issuer: &Arc<ParsedCertificate>,
        url: &str,
        now: UnixTime,
    ) -> OcspCached {
        let key = (IssuerId::of(issuer), cert.serial_bytes().to_vec());
        let negative = self.settings.ocsp_negative_ttl.as_secs();
        self.ocsp_lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cached = self
            .ocsp_cache
            .get_with(key, async {
                self.ocsp_fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = self.fetch_ocsp(cert, issuer, url, now).await;
                let ttl = match &answer {
                    // Cache up to nextUpdate, never past it, and at most an hour: a
                    // responder's "good" must not outlive a revocation for days.
                    Ok(v) => match v.next_update {
                        Some(nu) => nu.0.saturating_sub(now.0).clamp(1, 3600),
                        None => 300,
                    },
                    Err(_) => negative,
                };
                let value = match answer {
                    Ok(v) => OcspCached::Status(v.status),
                    Err(e) => OcspCached::Failed(e),
                };
                (value, ttl)
            })
            .await;
        cached.0
    }

    async fn fetch_ocsp(
        &self,
        cert: &ParsedCertificate,
        issuer: &ParsedCertificate,
        url: &str,
        now: UnixTime,
    ) -> Result<ocsp::OcspVerdict, String> {
        let nonce = if self.settings.ocsp_nonce {
            let mut n = [0u8; 16];
            aws_lc_rs::rand::fill(&mut n).map_err(|_| "no randomness for the nonce".to_owned())?;
            Some(n.to_vec())
        } else {
            None
        };
        let request = ocsp::build_request(cert, issuer, OcspHash::Sha256, nonce.as_deref())
            .map_err(|e| e.to_string())?;
        // RFC 6960 A.1: GET when the encoded request is small (cacheable by HTTP caches
        // in front of the responder), POST otherwise.
        const MAX_OCSP_RESPONSE: u64 = 1024 * 1024;
        let body = match ocsp::get_url(url, &request) {
            Some(get) => match self
                .fetcher
                .get(&get, MAX_OCSP_RESPONSE, &Validators::default())
                .await?
            {
                Fetched::Body { body, .. } => body,
                Fetched::NotModified => return Err("unexpected 304 to an OCSP GET".into()),
            },
            None => {
                self.fetcher
                    .post_ocsp(url, request.der.clone(), MAX_OCSP_RESPONSE)
                    .await?
            }
        };
        ocsp::verify_response(
            &body,
            &request,
            cert,
            issuer,
            now,
            self.settings.clock_skew.as_secs(),
            24 * 3600,
        )
        .map_err(|e| e.to_string())
    }

    /// (lookups, lookups that asked a responder) since start.
    pub fn ocsp_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.ocsp_lookups.load(Relaxed),
            self.ocsp_fetches.load(Relaxed),
        )
    }

    pub fn ocsp_cache_len(&self) -> u64 {
        self.ocsp_cache.entry_count()
    }

    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    pub(crate) fn max_crl_size(&self) -> u64 {
        self.settings.max_crl_size
    }
}

/// The policy's depth as the checker counts it.
pub fn check_depth(depth: RevocationDepth) -> CheckDepth {
    match depth {
        RevocationDepth::Leaf => CheckDepth::Leaf,
        RevocationDepth::Chain => CheckDepth::Chain,
    }
}

enum One {
    Good,
    Revoked(Outcome),
    Unavailable { why: String, hard: bool },
}

/// Each OCSP entry lives as long as its own TTL (nextUpdate, or the negative TTL).
struct OcspExpiry;

impl moka::Expiry<(IssuerId, Vec<u8>), (OcspCached, u64)> for OcspExpiry {
    fn expire_after_create(
        &self,
        _key: &(IssuerId, Vec<u8>),
        value: &(OcspCached, u64),
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(value.1))
    }
}
