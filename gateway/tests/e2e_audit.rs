//! The audit log, the admin listener and shutdown, through the real binary: every
//! request and authentication failure is recorded and the chain verifies; a crash keeps
//! what the documented guarantee promises; a full disk refuses service with
//! `audit_unavailable` and recovers; `/metrics` parses as Prometheus text and moves;
//! SIGTERM drains and flushes.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{config, curl, error_code, free_port, Gateway, Upstream};

struct Env {
    gw: Gateway,
    upstream: Upstream,
    audit_dir: PathBuf,
    text: String,
    _tmp: tempfile::TempDir,
}

fn start_in(audit_dir: &Path, extra: &str) -> (Gateway, Upstream, String) {
    let upstream = Upstream::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = config(
        addr,
        upstream.addr,
        "hpki-card",
        "required",
        &format!(
            "\n[audit]\ndir = \"{}\"\nnode = \"gw-test\"\n{}{extra}\n[timeouts]\nshutdown_grace = \"5s\"\n",
            audit_dir.display(),
            if extra.contains("fsync_interval") {
                ""
            } else {
                "fsync_interval = \"200ms\"\n"
            }
        ),
    );
    let gw = Gateway::start(&text, addr);
    (gw, upstream, text)
}

fn start(extra: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let audit_dir = tmp.path().join("audit");
    let (gw, upstream, text) = start_in(&audit_dir, extra);
    Env {
        gw,
        upstream,
        audit_dir,
        text,
        _tmp: tmp,
    }
}

/// Every record of every segment, in file order.
fn records(dir: &Path) -> Vec<Value> {
    support::audit_records(dir)
}

fn by_request_id(dir: &Path) -> HashMap<String, Value> {
    records(dir)
        .into_iter()
        .filter(|r| r["event"] == "request")
        .filter_map(|r| {
            r["request_id"]
                .as_str()
                .map(|id| (id.to_owned(), r.clone()))
        })
        .collect()
}

/// Waits (bounded) until the records of `ids` are in the log: allowed requests are group
/// committed, not written before their answer.
fn wait_for(dir: &Path, ids: &[&str]) -> HashMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = by_request_id(dir);
        if ids.iter().all(|id| seen.contains_key(*id)) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "records missing for {:?}",
            ids.iter()
                .filter(|i| !seen.contains_key(**i))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `hpki-gateway audit verify DIR`: (exit code, output).
fn verify(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(["audit", "verify"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A request as `card`; returns (status, request id from the response header, body).
fn request(gw: &Gateway, card: &str, path: &str) -> (u16, String, String) {
    let r = curl(
        gw,
        Some(card),
        path,
        &["-D", "/dev/stderr", "-H", "Accept: application/json"],
    );
    let id = r
        .stderr
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-hpki-request-id:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (r.status, id, r.body)
}

#[test]
fn every_request_and_refusal_is_recorded_and_the_chain_verifies() {
    let e = start("");
    let (s, allowed, _) = request(&e.gw, "doctor", "/");
    assert_eq!(s, 200);
    let (s, denied, body) = request(&e.gw, "clerk", "/");
    assert_eq!(s, 403);
    assert_eq!(error_code(&body).as_deref(), Some("no_hcrole"));
    let (s, refused, _) = request(&e.gw, "signing-card", "/");
    assert_eq!(s, 403);
    let (s, other_path, _) = request(&e.gw, "doctor", "/_nothing/here");
    assert_eq!(s, 200, "the catch-all route forwards it");
    let seen = wait_for(&e.audit_dir, &[&allowed, &denied, &refused, &other_path]);

    let a = &seen[&allowed];
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["hpki_id"], "Test000001");
    assert_eq!(a["kind"], "person");
    assert_eq!(a["role"], "Medical Doctor");
    assert_eq!(a["route"], "/");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["path"], "/");
    assert_eq!(a["status"], 200);
    assert_eq!(a["upstream_status"], 200);
    assert_eq!(a["node"], "gw-test");
    assert!(a["cert_serial"].is_string() && a["cert_issuer"].is_string());
    assert!(a["latency_ms"].is_u64());

    let d = &seen[&denied];
    assert_eq!(d["decision"], "deny", "{d}");
    assert_eq!(d["reason"], "no_hcrole");
    assert_eq!(d["hpki_id"], "Test000004");

    let r = &seen[&refused];
    assert_eq!(r["reason"], "signing_cert_not_for_login", "{r}");
    // The refusal at the connection is recorded as such too.
    let failures: Vec<Value> = records(&e.audit_dir)
        .into_iter()
        .filter(|r| r["event"] == "auth_failure")
        .collect();
    assert!(
        failures
            .iter()
            .any(|f| f["reason"] == "signing_cert_not_for_login" && f["cert_sha256"].is_string()),
        "{failures:?}"
    );

    let start = records(&e.audit_dir)
        .into_iter()
        .find(|r| r["event"] == "start")
        .expect("a start record");
    let detail = start["detail"].as_str().unwrap();
    assert!(
        detail.contains("hpki-auth [") && detail.contains("hpki-org ["),
        "{detail}"
    );

    let (code, out) = verify(&e.audit_dir);
    assert_eq!(code, 0, "{out}");
    assert!(e.upstream.take().len() >= 2);
}

/// Prometheus text, parsed by an independent parser: (name, labels) → value.
fn scrape(gw: &Gateway) -> Vec<prometheus_parse::Sample> {
    let (status, body) = gw.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{body}"))
        .samples
}

fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_parse_and_move_and_the_probes_answer() {
    let e = start("");
    assert_eq!(e.gw.admin_get("/healthz"), (200, "ok\n".to_owned()));
    let (status, ready) = e.gw.admin_get("/readyz");
    assert_eq!(status, 200, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["ready"], true);
    for check in ["trust", "store", "audit", "crls"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{ready}");
    }

    let before = scrape(&e.gw);
    for _ in 0..3 {
        assert_eq!(request(&e.gw, "doctor", "/").0, 200);
    }
    assert_eq!(request(&e.gw, "expired", "/").0, 403);
    let after = scrape(&e.gw);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta("hpki_requests_total", &[("route", "/"), ("status", "200")]),
        3.0
    );
    assert_eq!(
        delta("hpki_requests_total", &[("route", "/"), ("status", "403")]),
        1.0
    );
    assert_eq!(
        delta(
            "hpki_authentications_total",
            &[("result", "refused"), ("reason", "cert_expired")]
        ),
        1.0
    );
    assert!(delta("hpki_authentications_total", &[("result", "accepted")]) >= 3.0);
    assert!(delta("hpki_tls_handshakes_total", &[("result", "ok")]) >= 4.0);
    assert_eq!(delta("hpki_upstream_latency_seconds_count", &[]), 3.0);
    assert_eq!(value(&after, "hpki_audit_healthy", &[]), 1.0);
    assert!(
        after.iter().any(|s| s.metric == "hpki_crl_age_seconds"),
        "CRL age exported"
    );
    assert_eq!(value(&after, "hpki_pending_confirmations", &[]), 0.0);
    assert!(after.iter().any(|s| s.metric == "hpki_audit_queue_depth"));
    assert!(after
        .iter()
        .any(|s| s.metric == "hpki_ocsp_cache_hit_ratio"));
    let _ = &e.text;
}

#[test]
fn a_crash_under_load_keeps_every_durable_record_and_the_chain_verifies() {
    let mut e = start("");
    // Denied requests are recorded durably before their answer; allowed ones are group
    // committed. A load of both, then kill -9 in the middle of it.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered: Vec<(u16, String)> = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut got = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let card = if i % 2 == 0 { "clerk" } else { "doctor" };
                let (status, id, _) = request(&e.gw, card, "/");
                if status != 0 && !id.is_empty() {
                    got.push((status, id));
                }
                i += 1;
            }
            got
        });
        std::thread::sleep(Duration::from_secs(3));
        let answered = {
            // Kill while the load runs.
            let pid = e.gw.pid();
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            load.join().unwrap()
        };
        answered
    });
    e.gw.kill9();
    let denied: Vec<&str> = answered
        .iter()
        .filter(|(s, _)| *s == 403)
        .map(|(_, id)| id.as_str())
        .collect();
    assert!(denied.len() >= 5, "the load ran: {answered:?}");
    // A restart continues the chain after the crash.
    let addr = e.gw.addr;
    let restarted = Gateway::start(&e.text, addr);
    assert_eq!(request(&restarted, "doctor", "/").0, 200);
    let seen = by_request_id(&e.audit_dir);
    for id in &denied {
        let r = seen.get(*id).unwrap_or_else(|| {
            panic!("denied request {id} answered before the crash is not in the log")
        });
        assert_eq!(r["reason"], "no_hcrole");
    }
    drop(restarted);
    let (code, out) = verify(&e.audit_dir);
    assert_eq!(code, 0, "{out}");
}

/// A small tmpfs as the audit directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill the audit disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_audit_disk_refuses_service_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let audit_dir = tmp.path().join("audit");
    let _fs = Tmpfs::mount(&audit_dir, "512k");
    let (gw, upstream, _) = start_in(&audit_dir, "");
    assert_eq!(request(&gw, "doctor", "/").0, 200);
    // Fill the disk.
    let filler = audit_dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .output();
    upstream.take();
    // A denied request must be recorded before it is answered. The segment's last page
    // may still hold a few records; once it is full the record cannot be written: 503.
    let mut refused = None;
    for _ in 0..200 {
        let (status, _, body) = request(&gw, "clerk", "/");
        if status != 403 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("the full disk was never noticed");
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("audit_unavailable"));
    // From now on nothing is served unrecorded.
    let (status, _, body) = request(&gw, "doctor", "/");
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("audit_unavailable"));
    assert!(upstream.take().is_empty(), "served unrecorded");
    let (status, ready) = gw.admin_get("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains("\"audit\":{\"detail\"") || ready.contains("audit"),
        "{ready}"
    );
    // Space returns: service resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = request(&gw, "doctor", "/");
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the disk was freed"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(gw.admin_get("/readyz").0, 200);
    drop(gw);
    let (code, out) = verify(&audit_dir);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn sigterm_drains_and_flushes_the_audit_log() {
    let mut e = start("fsync_interval = \"1h\"\nfsync_records = 100000\n");
    let (status, id, _) = request(&e.gw, "doctor", "/");
    assert_eq!(status, 200);
    let pid = e.gw.pid();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = e.gw.wait_exit(Duration::from_secs(15));
    assert_eq!(exited, Some(0), "{}", e.gw.log_text());
    assert!(e.gw.log_text().contains("stopped"), "{}", e.gw.log_text());
    // The drained request's record is in the log, and the log closes cleanly.
    assert!(
        by_request_id(&e.audit_dir).contains_key(&id),
        "the record of a request served before SIGTERM is in the log"
    );
    let (code, out) = verify(&e.audit_dir);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_admin_endpoints_can_live_on_a_unix_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("admin.sock");
    let upstream = Upstream::start();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = config(
        addr,
        upstream.addr,
        "hpki-card",
        "required",
        &format!("\n[admin]\nsocket = \"{}\"\n", socket.display()),
    );
    let gw = Gateway::start(&text, addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&socket)
            .arg(format!("http://admin{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/healthz"), "ok\n");
    assert!(get("/metrics").contains("# TYPE hpki_requests_total counter"));
    assert!(
        get("/readyz").contains("\"ready\":true"),
        "{}",
        get("/readyz")
    );
}

#[test]
fn check_config_leaves_a_running_gateways_audit_log_alone() {
    let e = start("");
    assert_eq!(request(&e.gw, "doctor", "/").0, 200);
    let snapshot = || {
        let mut files: Vec<(PathBuf, u64)> = Vec::new();
        let mut stack = vec![e.audit_dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push((p.clone(), p.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
        files.sort();
        files
    };
    // Let the group commit settle, then check the config while the gateway runs.
    std::thread::sleep(Duration::from_millis(600));
    let before = snapshot();
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(["check-config", "--config"])
        .arg(&e.gw.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        snapshot(),
        before,
        "check-config wrote into the audit directory"
    );
    let (code, out) = verify(&e.audit_dir);
    assert_eq!(code, 0, "{out}");
}
