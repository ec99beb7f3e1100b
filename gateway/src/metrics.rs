//! Counters and a latency histogram, exposed in the Prometheus text format (version
//! 0.0.4) on the admin listener. Small and dependency-free: atomics for the fixed
//! series, a mutex-guarded map for the labelled ones (one short lock per request).
//!
//! Gauges that describe state owned elsewhere (CRL age, pending confirmations, audit
//! queue depth) are read at scrape time and passed to [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the upstream latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
    /// (result, reason) → count; result `accepted` | `refused` | `anonymous`.
    authentications: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Cumulative bucket counts, then +Inf.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
    /// (decision, reason) for revocation outcomes that were not `good`.
    revocation: Mutex<BTreeMap<(&'static str, String), u64>>,
    audit_failures: AtomicU64,
    /// outcome → count.
    trust_reloads: Mutex<BTreeMap<&'static str, u64>>,
    trust_generation: AtomicU64,
}

/// State read at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (issuer, seconds since thisUpdate, seconds until nextUpdate if any).
    pub crls: Vec<(String, i64, Option<i64>)>,
    pub ocsp_lookups: u64,
    pub ocsp_fetches: u64,
    pub ocsp_cache_entries: u64,
    pub pending_confirmations: Option<i64>,
    pub audit_queue_depth: u64,
    pub audit_healthy: bool,
    pub store_reachable: bool,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry(key).or_insert(0) += 1;
}

/// A label value escaped as the text format requires.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Metrics {
    pub fn handshake(&self, ok: bool) {
        if ok {
            self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One identification: `accepted`, `anonymous`, or `refused` with its reason code.
    pub fn authentication(&self, result: &'static str, reason: &str) {
        bump(&self.authentications, (result, reason.to_owned()));
    }

    pub fn request(&self, route: &str, status: u16) {
        bump(&self.requests, (route.to_owned(), status));
    }

    pub fn upstream_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_buckets[LATENCY_BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A revocation outcome other than good: `revoked`, `unavailable_denied`,
    /// `unavailable_allowed`.
    pub fn revocation(&self, decision: &'static str, reason: &str) {
        bump(&self.revocation, (decision, reason.to_owned()));
    }

    /// A trust reload attempt: `applied`, `unchanged`, `refused`.
    pub fn trust_reload(&self, outcome: &'static str) {
        bump(&self.trust_reloads, outcome);
    }

    pub fn set_trust_generation(&self, generation: u64) {
        self.trust_generation.store(generation, Ordering::Relaxed);
    }

    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "hpki_tls_handshakes_total",
            "counter",
            "TLS handshakes on the public listener, by result.",
        );
        let _ = writeln!(
            out,
            "hpki_tls_handshakes_total{{result=\"ok\"}} {}\nhpki_tls_handshakes_total{{result=\"failed\"}} {}",
            self.handshakes_ok.load(Ordering::Relaxed),
            self.handshakes_failed.load(Ordering::Relaxed)
        );

        family(
            &mut out,
            "hpki_authentications_total",
            "counter",
            "Client identifications after the handshake, by result and reason code.",
        );
        for ((result, reason), n) in self
            .authentications
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "hpki_authentications_total{{result=\"{result}\",reason=\"{}\"}} {n}",
                label(reason)
            );
        }
        family(
            &mut out,
            "hpki_requests_total",
            "counter",
            "Requests answered, by route (path prefix, or the gateway's own path) and status.",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "hpki_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        family(
            &mut out,
            "hpki_upstream_latency_seconds",
            "histogram",
            "Time from sending a request upstream to its response headers.",
        );
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "hpki_upstream_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "hpki_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {}\nhpki_upstream_latency_seconds_sum {}\nhpki_upstream_latency_seconds_count {count}",
            self.latency_buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed),
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        family(
            &mut out,
            "hpki_revocation_decisions_total",
            "counter",
            "Revocation outcomes other than good, by decision and reason.",
        );
        for ((decision, reason), n) in self
            .revocation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "hpki_revocation_decisions_total{{decision=\"{decision}\",reason=\"{}\"}} {n}",
                label(reason)
            );
        }
        family(
            &mut out,
            "hpki_ocsp_lookups_total",
            "counter",
            "OCSP status lookups (cache hits and misses).",
        );
        let _ = writeln!(out, "hpki_ocsp_lookups_total {}", s.ocsp_lookups);
        family(
            &mut out,
            "hpki_ocsp_fetches_total",
            "counter",
            "OCSP lookups that missed the cache and asked a responder.",
        );
        let _ = writeln!(out, "hpki_ocsp_fetches_total {}", s.ocsp_fetches);
        family(
            &mut out,
            "hpki_ocsp_cache_hit_ratio",
            "gauge",
            "Share of OCSP lookups answered from the cache (1 when there were none).",
        );
        let ratio = if s.ocsp_lookups == 0 {
            1.0
        } else {
            1.0 - s.ocsp_fetches.min(s.ocsp_lookups) as f64 / s.ocsp_lookups as f64
        };
        let _ = writeln!(out, "hpki_ocsp_cache_hit_ratio {ratio}");
        family(
            &mut out,
            "hpki_ocsp_cache_entries",
            "gauge",
            "OCSP answers cached.",
        );
        let _ = writeln!(out, "hpki_ocsp_cache_entries {}", s.ocsp_cache_entries);
        family(
            &mut out,
            "hpki_crl_age_seconds",
            "gauge",
            "Seconds since thisUpdate of each CRL in use, by issuer.",
        );
        for (issuer, age, _) in &s.crls {
            let _ = writeln!(
                out,
                "hpki_crl_age_seconds{{issuer=\"{}\"}} {age}",
                label(issuer)
            );
        }
        family(
            &mut out,
            "hpki_crl_next_update_seconds",
            "gauge",
            "Seconds until nextUpdate of each CRL in use (negative: stale), by issuer.",
        );
        for (issuer, _, next) in &s.crls {
            if let Some(next) = next {
                let _ = writeln!(
                    out,
                    "hpki_crl_next_update_seconds{{issuer=\"{}\"}} {next}",
                    label(issuer)
                );
            }
        }
        family(
            &mut out,
            "hpki_pending_confirmations",
            "gauge",
            "Held writes awaiting a supervising doctor (-1: the store did not answer).",
        );
        let _ = writeln!(
            out,
            "hpki_pending_confirmations {}",
            s.pending_confirmations.unwrap_or(-1)
        );
        family(
            &mut out,
            "hpki_audit_queue_depth",
            "gauge",
            "Audit records queued and not yet written.",
        );
        let _ = writeln!(out, "hpki_audit_queue_depth {}", s.audit_queue_depth);
        family(
            &mut out,
            "hpki_audit_healthy",
            "gauge",
            "1 when the audit log's last write succeeded.",
        );
        let _ = writeln!(out, "hpki_audit_healthy {}", u8::from(s.audit_healthy));
        family(
            &mut out,
            "hpki_audit_refusals_total",
            "counter",
            "Requests refused because the audit log could not record them.",
        );
        let _ = writeln!(
            out,
            "hpki_audit_refusals_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "hpki_trust_reloads_total",
            "counter",
            "Trust-store reload attempts, by outcome (applied, unchanged, refused).",
        );
        for (outcome, n) in self
            .trust_reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "hpki_trust_reloads_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(
            &mut out,
            "hpki_trust_generation",
            "gauge",
            "The trust store in use: 0 at start, +1 for each applied reload.",
        );
        let _ = writeln!(
            out,
            "hpki_trust_generation {}",
            self.trust_generation.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "hpki_store_reachable",
            "gauge",
            "1 when the store answered the last readiness probe.",
        );
        let _ = writeln!(out, "hpki_store_reachable {}", u8::from(s.store_reachable));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_render() {
        let m = Metrics::default();
        m.handshake(true);
        m.handshake(true);
        m.handshake(false);
        m.request("/", 200);
        m.request("/", 200);
        m.request("/_hpki/pending", 403);
        m.authentication("refused", "cert_expired");
        m.upstream_latency(Duration::from_millis(3));
        let text = m.render(&Snapshot {
            crls: vec![("C=JP, CN=\"x\"".into(), 60, Some(-5))],
            ..Snapshot::default()
        });
        assert!(text.contains("hpki_tls_handshakes_total{result=\"ok\"} 2"));
        assert!(text.contains("hpki_tls_handshakes_total{result=\"failed\"} 1"));
        assert!(text.contains("hpki_requests_total{route=\"/\",status=\"200\"} 2"));
        assert!(text.contains("hpki_requests_total{route=\"/_hpki/pending\",status=\"403\"} 1"));
        assert!(text
            .contains("hpki_authentications_total{result=\"refused\",reason=\"cert_expired\"} 1"));
        // 3 ms falls in the 5 ms bucket and above, not in 2.5 ms.
        assert!(text.contains("hpki_upstream_latency_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("hpki_upstream_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("hpki_upstream_latency_seconds_count 1"));
        assert!(text.contains("hpki_crl_age_seconds{issuer=\"C=JP, CN=\\\"x\\\"\"} 60"));
        assert!(text.contains("hpki_crl_next_update_seconds{issuer=\"C=JP, CN=\\\"x\\\"\"} -5"));
    }
}
