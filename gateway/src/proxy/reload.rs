//! Trust-store rotation without a restart (sozu style: the running process takes new
//! state through a command, never through a restart).
//!
//! A reload builds a complete candidate — every trust profile, its CRL files, the server
//! certificate and key — validates all of it, and only then swaps it in atomically
//! (`ArcSwap`). A candidate with any problem is refused with a report naming each file,
//! and the running store stays. New handshakes use the new store; connections whose path
//! no longer validates under it are closed after `reload.grace` (see
//! `Gateway::watch_trust`). Triggers: SIGHUP, a debounced watch of the files, the admin
//! API (`POST /trust/reload`, `hpki-gateway trust reload`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{now, now_ms, Gateway, LiveTrust};
use crate::pki::{self, KeyPurpose, PathOptions};
use crate::trust::TrustStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied,
    Unchanged,
    Refused,
    /// A dry run (`GET /trust/diff`) that would apply.
    WouldApply,
    WouldRefuse,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub outcome: ReloadOutcome,
    pub generation: u64,
    pub problems: Vec<String>,
    pub changes: Vec<String>,
    pub trigger: String,
    pub at_ms: i64,
}

/// What a candidate would replace, and whether it may.
struct Candidate {
    live: LiveTrust,
    crls: crate::revocation::CrlSet,
    changes: Vec<String>,
}

fn fingerprint(sha: &[u8]) -> String {
    pki::name::hex(&sha[..8])
}

/// Every anchor, intermediate and CRL of a store, as comparable lines.
fn inventory(store: &TrustStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in &store.profiles {
        for a in p.directory.anchors.iter() {
            out.insert(format!(
                "anchor {} {} {}",
                p.name,
                pki::name::display(a.subject()),
                fingerprint(a.sha256())
            ));
        }
        // A changed trust.toml window is a change too (staged rotation).
        for line in p.directory.schedule_lines() {
            out.insert(format!("{} {line}", p.name));
        }
        for i in p.directory.intermediates.iter() {
            out.insert(format!(
                "intermediate {} {} {}",
                p.name,
                pki::name::display(i.subject()),
                fingerprint(i.sha256())
            ));
        }
    }
    out
}

impl Gateway {
    /// Builds and validates a candidate from the files as they are now. `Err` lists
    /// every problem, each naming its file.
    fn candidate(&self) -> Result<Candidate, Vec<String>> {
        let config = &self.config;
        let mut problems = Vec::new();
        let trust = match super::build_trust_store(config) {
            Ok(t) => Some(t),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let now = now();
        if let Some(trust) = &trust {
            // Every intermediate must lead to an anchor of its own profile: a CA file
            // dropped into the wrong profile, or an expired one, is caught here rather
            // than by the first doctor whose login it breaks.
            for (i, p) in trust.profiles.iter().enumerate() {
                if p.directory.anchors.is_empty() {
                    problems.push(format!(
                        "trust[{i}] ({}): no anchor: a profile cannot be left without one",
                        p.name
                    ));
                }
                for ca in p.directory.intermediates.iter() {
                    let mut opts = PathOptions::new(now, KeyPurpose::Any);
                    opts.max_intermediates = p.max_intermediates;
                    if let Err(e) = pki::verify_path(
                        ca,
                        &[],
                        &p.directory.anchors,
                        &p.directory.intermediates,
                        &opts,
                    ) {
                        problems.push(format!(
                            "trust[{i}] ({}): intermediate {} does not chain to an anchor of the profile: {} ({})",
                            p.name,
                            pki::name::display(ca.subject()),
                            e.reason.code(),
                            e.detail
                        ));
                    }
                }
            }
        }
        let crls = trust.as_ref().and_then(|t| {
            crate::revocation::load_crl_files(t, now)
                .map_err(|p| problems.extend(p))
                .ok()
        });
        // A CRL file older than the one in use (an old copy left behind, a stale mirror)
        // would undo revocations: refused.
        if let Some(crls) = &crls {
            let live_crls = self.revocation.crls();
            for record in crls.iter() {
                if let Some(current) = live_crls
                    .iter()
                    .find(|c| c.crl.issuer_key() == record.crl.issuer_key())
                {
                    if current.crl.is_newer_than(&record.crl) {
                        problems.push(format!(
                            "{}: older than the CRL in use for {} (thisUpdate {} < {}): remove it or publish a newer one",
                            record.source,
                            record.crl.issuer_display(),
                            record.crl.this_update().0,
                            current.crl.this_update().0
                        ));
                    }
                }
            }
        }
        let identity = crate::tls::load_server_identity(&config.server.cert, &config.server.key)
            .map_err(|e| problems.push(format!("server.cert/server.key: {e}")))
            .ok();
        let (Some(trust), Some(crls), Some((chain, key))) = (trust, crls, identity) else {
            return Err(problems);
        };
        let (tls, server_sha) =
            match super::listener_tls(config, &trust, chain, key, self.ended.clone()) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(e);
                    return Err(problems);
                }
            };
        if !problems.is_empty() {
            return Err(problems);
        }
        let live = self.live.load();
        let (before, after) = (inventory(&live.trust), inventory(&trust));
        let mut changes: Vec<String> = after
            .difference(&before)
            .map(|l| format!("+ {l}"))
            .chain(before.difference(&after).map(|l| format!("- {l}")))
            .collect();
        let live_crls = self.revocation.crls();
        for record in crls.iter() {
            let same = live_crls.iter().any(|c| {
                c.crl.issuer_key() == record.crl.issuer_key()
                    && !c.crl.is_newer_than(&record.crl)
                    && !record.crl.is_newer_than(&c.crl)
            });
            if !same {
                changes.push(format!(
                    "~ crl {} thisUpdate {} ({} entries) from {}",
                    record.crl.issuer_display(),
                    record.crl.this_update().0,
                    record.crl.len(),
                    record.source
                ));
            }
        }
        if server_sha != live.server_sha {
            changes.push(format!(
                "~ server certificate {} -> {server_sha}",
                live.server_sha
            ));
        }
        Ok(Candidate {
            live: LiveTrust {
                generation: live.generation + 1,
                trust: Arc::new(trust),
                tls: Arc::new(tls),
                server_sha,
            },
            crls,
            changes,
        })
    }

    /// Builds, validates and (unless `dry_run`) swaps in a new trust store. Every
    /// attempt is logged, counted and audited with its trigger and operator.
    pub async fn reload(
        &self,
        trigger: &str,
        operator: Option<&str>,
        dry_run: bool,
    ) -> ReloadReport {
        // One reload at a time: two triggers at once (SIGHUP and the watch) must not
        // interleave their swaps.
        let _one = self.reload_lock.lock().await;
        let generation = self.live.load().generation;
        let report = match self.candidate() {
            Err(problems) => ReloadReport {
                outcome: if dry_run {
                    ReloadOutcome::WouldRefuse
                } else {
                    ReloadOutcome::Refused
                },
                generation,
                problems,
                changes: Vec::new(),
                trigger: trigger.into(),
                at_ms: now_ms(),
            },
            Ok(c) if c.changes.is_empty() => ReloadReport {
                outcome: ReloadOutcome::Unchanged,
                generation,
                problems: Vec::new(),
                changes: Vec::new(),
                trigger: trigger.into(),
                at_ms: now_ms(),
            },
            Ok(c) if dry_run => ReloadReport {
                outcome: ReloadOutcome::WouldApply,
                generation,
                problems: Vec::new(),
                changes: c.changes,
                trigger: trigger.into(),
                at_ms: now_ms(),
            },
            Ok(c) => {
                let generation = c.live.generation;
                self.revocation.offer_all(&c.crls);
                self.revocation.register_distribution_points(&c.live.trust);
                self.live.store(Arc::new(c.live));
                self.metrics.set_trust_generation(generation);
                let _ = self.generation_tx.send(generation);
                ReloadReport {
                    outcome: ReloadOutcome::Applied,
                    generation,
                    problems: Vec::new(),
                    changes: c.changes,
                    trigger: trigger.into(),
                    at_ms: now_ms(),
                }
            }
        };
        if dry_run {
            return report;
        }
        self.metrics.trust_reload(match report.outcome {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            _ => "refused",
        });
        match report.outcome {
            ReloadOutcome::Refused => tracing::error!(
                trigger, operator, problems = ?report.problems,
                "trust reload refused; the running trust store stays"
            ),
            _ => tracing::info!(
                trigger, operator, generation = report.generation, changes = ?report.changes,
                outcome = ?report.outcome, "trust reload"
            ),
        }
        let record = crate::audit::Record {
            time_ms: report.at_ms,
            event: "trust_change".into(),
            decision: Some(
                match report.outcome {
                    ReloadOutcome::Applied => "applied",
                    ReloadOutcome::Unchanged => "unchanged",
                    _ => "refused",
                }
                .into(),
            ),
            operator: Some(
                operator
                    .map(str::to_owned)
                    .unwrap_or_else(|| trigger.to_owned()),
            ),
            detail: Some(format!(
                "trigger {trigger}; generation {}; {}",
                report.generation,
                if report.problems.is_empty() {
                    report.changes.join("; ")
                } else {
                    report.problems.join("; ")
                }
            )),
            ..Default::default()
        };
        if self.audit.append_durable(record).await.is_err() {
            self.metrics.audit_failure();
        }
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(report.clone());
        }
        report
    }

    /// The files a reload reads, with their sizes and modification times: when this
    /// changes (and then holds still), the watch reloads.
    fn watched_state(&self) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        let mut out = Vec::new();
        let mut stack: Vec<PathBuf> = self.config.trust.iter().map(|t| t.dir.clone()).collect();
        stack.push(self.config.server.cert.clone());
        stack.push(self.config.server.key.clone());
        while let Some(p) = stack.pop() {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => {
                    for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                        stack.push(e.path());
                    }
                }
                Ok(m) => out.push((p, m.len(), m.modified().ok())),
                Err(_) => out.push((p, u64::MAX, None)),
            }
        }
        out.sort();
        out
    }
}

/// Reloads on SIGHUP and, with `reload.watch`, when the watched files change and then
/// stay unchanged for one interval (an operator copying several files triggers one
/// reload, after the last).
pub async fn run_triggers(gateway: std::sync::Weak<Gateway>) {
    let Some(gw) = gateway.upgrade() else { return };
    let watch = gw.config.reload.watch;
    let interval = gw.config.reload.watch_interval;
    let mut seen = gw.watched_state();
    drop(gw);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut pending: Option<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> = None;
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = hangup => {
                let Some(gw) = gateway.upgrade() else { return };
                gw.reload("SIGHUP", None, false).await;
                seen = gw.watched_state();
                pending = None;
            }
            _ = tokio::time::sleep(if watch { interval } else { Duration::from_secs(3600) }) => {
                if !watch {
                    continue;
                }
                let Some(gw) = gateway.upgrade() else { return };
                let now = gw.watched_state();
                if now == seen {
                    pending = None;
                    continue;
                }
                // Changed: wait until it holds still for one interval.
                if pending.as_ref() == Some(&now) {
                    gw.reload("file watch", None, false).await;
                    seen = now;
                    pending = None;
                } else {
                    pending = Some(now);
                }
            }
        }
    }
}
