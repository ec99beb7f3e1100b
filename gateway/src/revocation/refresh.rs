//! Keeping CRLs fresh: every distribution point the gateway has seen (in the trust store
//! at start, in client paths on first sight) is fetched, then re-fetched on the refresh
//! interval and ahead of the CRL's nextUpdate. A failed fetch keeps the last good CRL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{CrlRecord, Fetched, IssuerId, Revocation, Validators};
use crate::pki::crl::UnverifiedCrl;
use crate::pki::ParsedCertificate;

enum Message {
    Register {
        url: String,
        issuer: Arc<ParsedCertificate>,
    },
    FetchNow {
        url: String,
        issuer: Arc<ParsedCertificate>,
        done: oneshot::Sender<()>,
    },
}

/// What an operator sees about one distribution point.
#[derive(Debug, Clone)]
pub struct DistributionPointStatus {
    pub url: String,
    pub last_result: String,
    pub last_success: Option<crate::pki::UnixTime>,
    pub next_fetch_in: Duration,
}

pub struct RefreshHandle {
    tx: mpsc::UnboundedSender<Message>,
    known: Mutex<HashSet<String>>,
    pub status: Arc<Mutex<HashMap<String, DistributionPointStatus>>>,
}

pub struct RefreshTask {
    rx: mpsc::UnboundedReceiver<Message>,
    status: Arc<Mutex<HashMap<String, DistributionPointStatus>>>,
    every: Duration,
}

impl RefreshHandle {
    pub fn new(every: Duration) -> (RefreshHandle, RefreshTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(HashMap::new()));
        (
            RefreshHandle {
                tx,
                known: Mutex::new(HashSet::new()),
                status: status.clone(),
            },
            RefreshTask { rx, status, every },
        )
    }

    /// Adds a distribution point (once; later calls are a set lookup).
    pub fn register(&self, url: &str, issuer: &Arc<ParsedCertificate>) {
        // Called for every login: the common case is a set lookup without allocation.
        let new = self
            .known
            .lock()
            .map(|mut k| !k.contains(url) && k.insert(url.to_owned()))
            .unwrap_or(false);
        if new {
            let _ = self.tx.send(Message::Register {
                url: url.to_owned(),
                issuer: issuer.clone(),
            });
        }
    }

    /// Fetches the certificate's distribution points now and waits (bounded) for the
    /// result to be installed.
    pub async fn fetch_now(
        &self,
        cert: &ParsedCertificate,
        issuer: &Arc<ParsedCertificate>,
        limit: Duration,
    ) {
        for url in cert.crl_distribution_urls() {
            if let Ok(mut k) = self.known.lock() {
                k.insert(url.clone());
            }
            let (done, wait) = oneshot::channel();
            let sent = self.tx.send(Message::FetchNow {
                url: url.clone(),
                issuer: issuer.clone(),
                done,
            });
            if sent.is_ok() {
                let _ = tokio::time::timeout(limit, wait).await;
            }
        }
    }
}

struct Entry {
    issuer: Arc<ParsedCertificate>,
    validators: Validators,
    next_fetch: Instant,
    /// When the last fetch failed: a first-sight fetch is not repeated for a while, so
    /// that an unreachable distribution point does not make every login wait.
    failed_at: Option<Instant>,
}

const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);

/// The refresher. Ends when the `Revocation` it serves is dropped.
pub async fn run(rev: Weak<Revocation>, mut task: RefreshTask) {
    let every = task.every;
    let mut entries: HashMap<String, Entry> = HashMap::new();
    loop {
        let next_due = entries
            .values()
            .map(|e| e.next_fetch)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            msg = task.rx.recv() => match msg {
                None => return,
                Some(Message::Register { url, issuer }) => {
                    entries.entry(url).or_insert(Entry {
                        issuer,
                        validators: Validators::default(),
                        next_fetch: Instant::now(),
                        failed_at: None,
                    });
                }
                Some(Message::FetchNow { url, issuer, done }) => {
                    let entry = entries.entry(url.clone()).or_insert(Entry {
                        issuer,
                        validators: Validators::default(),
                        next_fetch: Instant::now(),
                        failed_at: None,
                    });
                    let recently_failed = entry
                        .failed_at
                        .is_some_and(|t| t.elapsed() < RETRY_FAILED_AFTER);
                    if !recently_failed && !fetch(&rev, &url, entry, every, &task.status).await {
                        return;
                    }
                    let _ = done.send(());
                }
            },
            _ = tokio::time::sleep_until(next_due) => {
                let now = Instant::now();
                let due: Vec<String> = entries
                    .iter()
                    .filter(|(_, e)| e.next_fetch <= now)
                    .map(|(u, _)| u.clone())
                    .collect();
                for url in due {
                    if let Some(entry) = entries.get_mut(&url) {
                        if !fetch(&rev, &url, entry, every, &task.status).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// One fetch of one distribution point. Returns false when the gateway is gone.
async fn fetch(
    rev: &Weak<Revocation>,
    url: &str,
    entry: &mut Entry,
    every: Duration,
    status: &Mutex<HashMap<String, DistributionPointStatus>>,
) -> bool {
    let Some(rev) = rev.upgrade() else {
        return false;
    };
    let now = crate::proxy::now();
    let mut next = every;
    let result = match rev
        .fetcher()
        .get(url, rev.max_crl_size(), &entry.validators)
        .await
    {
        Ok(Fetched::NotModified) => "not modified".to_owned(),
        Ok(Fetched::Body {
            body,
            etag,
            last_modified,
        }) => match UnverifiedCrl::parse(&body) {
            Err(e) => format!("not a CRL: {e}"),
            Ok(crls) => {
                let mut outcome = Vec::new();
                for crl in crls {
                    match crl.verify(&entry.issuer) {
                        Err(e) => {
                            tracing::warn!(
                                url,
                                issuer = %crate::pki::name::display(entry.issuer.subject()),
                                error = %e,
                                "refused the CRL fetched from a distribution point"
                            );
                            outcome.push(format!("refused: {e}"))
                        }
                        Ok(verified) => {
                            // Refresh ahead of nextUpdate, so a new CRL is in place before
                            // the old one goes stale.
                            if let Some(nu) = verified.next_update() {
                                let left = nu.0.saturating_sub(now.0);
                                let ahead = Duration::from_secs((left * 9 / 10).max(10));
                                next = next.min(ahead);
                            }
                            let entries = verified.len();
                            let installed = rev.offer(
                                IssuerId::of(&entry.issuer),
                                CrlRecord {
                                    crl: verified,
                                    source: url.to_owned(),
                                    loaded_at: now,
                                },
                            );
                            outcome.push(if installed {
                                format!("installed ({entries} entries)")
                            } else {
                                "kept the CRL in use (it is as new or newer)".to_owned()
                            });
                        }
                    }
                }
                if outcome.iter().all(|o| !o.starts_with("refused")) {
                    entry.validators = Validators {
                        etag,
                        last_modified,
                    };
                }
                outcome.join("; ")
            }
        },
        Err(e) => {
            // Keep the last good CRL; try again sooner than the normal interval.
            next = next.min(Duration::from_secs(60));
            entry.failed_at = Some(Instant::now());
            tracing::warn!(url, error = %e, "CRL fetch failed; keeping the CRL in use");
            format!("failed: {e}")
        }
    };
    if !result.starts_with("failed") {
        entry.failed_at = None;
    }
    entry.next_fetch = Instant::now() + next;
    if let Ok(mut s) = status.lock() {
        let prev_success = s.get(url).and_then(|p| p.last_success);
        let success = !result.starts_with("failed") && !result.starts_with("not a CRL");
        s.insert(
            url.to_owned(),
            DistributionPointStatus {
                url: url.to_owned(),
                last_success: if success { Some(now) } else { prev_success },
                last_result: result,
                next_fetch_in: next,
            },
        );
    }
    true
}
