//! The cluster's essentials on one machine, as deploy/kubernetes runs them: three gateway
//! processes on their own loopback ports share one PostgreSQL (the store) and one audit
//! root (a node directory each, like the pods' shared volume). A client spreads its
//! requests across them as an L4 load balancer does, moving on to the next replica when
//! one does not answer.
//!
//! - An assistant's write held on replica A is confirmed by a doctor on replica B and
//!   reaches the portal exactly once; the assistant sees the outcome on replica C.
//! - Under load (doctors' reads, assistants' held writes), replica A is killed with
//!   SIGKILL: B and C answer every request sent to them, before and after; every held
//!   write acknowledged by any replica (A included) is in the store and in the audit log,
//!   and A's are confirmed on C, each delivered once.
//! - Every 2xx answer of B and C is in their audit logs (stopped with SIGTERM: drain and
//!   flush). Of A's answers, every one the audit log guarantees after a SIGKILL is there:
//!   a held write is fsynced before its 202, and records are written in order, so a read
//!   A answered before it received a later acknowledged held write is on disk too. Reads
//!   answered after A's last such held write may be lost with A (group commit,
//!   docs/audit.md "Guarantees after a crash"): counted and printed, not asserted.
//! - `hpki-gateway audit verify` accepts each node's log, A's cut off by the kill.
//!
//! Needs PostgreSQL (`HPKI_TEST_POSTGRES_URL`; scripts/test.sh starts one).

mod support;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hpki_gateway::store::PendingState;
use support::workflow::{
    block_on, csrf, decide, entry, held_writes_route, hold_form, json, open_store, seed_clinic,
};
use support::{audit_records, cli, config, curl, Gateway, Upstream};

const ASSISTANT: &str = "org-clinic";
const NODES: [&str; 3] = ["replica-a", "replica-b", "replica-c"];

/// One replica: the standard test config plus the held-write route, the shared store and
/// the shared audit root under its own node id.
fn replica(upstream: &Upstream, store_url: &str, audit_root: &Path, node: &str) -> Gateway {
    let listen = support::listen_addr();
    let text = config(
        listen,
        upstream.addr,
        "hpki-card",
        "required",
        &format!(
            r#"{route}
[store]
url = "{store_url}"
cache_ttl = "0s"

[audit]
dir = "{audit}"
node = "{node}"

[timeouts]
upstream_response = "5s"
shutdown_grace = "5s"
"#,
            route = held_writes_route(upstream.addr),
            audit = audit_root.display(),
        ),
    );
    Gateway::start(&text, listen)
}

/// What the client sent and what it got.
#[derive(Debug, Clone)]
struct Sent {
    replica: usize,
    /// The unique path: the audit record names it.
    path: String,
    held: bool,
    status: u16,
    sent: Instant,
    answered: Instant,
    pending_id: Option<String>,
}

impl Sent {
    fn acknowledged(&self) -> bool {
        if self.held {
            self.status == 202
        } else {
            (200..300).contains(&self.status)
        }
    }
}

/// One request as the load client sends it: a doctor's read, or every fourth one an
/// assistant's write (held, 202). `replica` answers it or not (status 0).
fn send(gws: &[&Gateway], replica: usize, client: usize, n: usize) -> Sent {
    let held = n % 4 == 3;
    let sent = Instant::now();
    let (path, r) = if held {
        let path = format!("/records/c{client}-{n}");
        let r = curl(
            gws[replica],
            Some(ASSISTANT),
            &path,
            &[
                "-H",
                "Accept: application/json",
                "--max-time",
                "10",
                "--data",
                "load=1",
            ],
        );
        (path, r)
    } else {
        let path = format!("/load/c{client}-{n}");
        let r = curl(gws[replica], Some("doctor"), &path, &["--max-time", "10"]);
        (path, r)
    };
    let pending_id = (r.status == 202)
        .then(|| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .flatten()
        .and_then(|v| v["pending_id"].as_str().map(str::to_owned));
    Sent {
        replica,
        path,
        held,
        status: r.status,
        sent,
        answered: Instant::now(),
        pending_id,
    }
}

#[test]
fn three_replicas_share_the_store_and_survive_losing_one() {
    let Some(url) = support::postgres::fresh_database_or_skip(
        "three_replicas_share_the_store_and_survive_losing_one",
    ) else {
        return;
    };
    let started = Instant::now();
    let upstream = Upstream::start();
    let audit_root = tempfile::tempdir().unwrap();
    let mut a = replica(&upstream, &url, audit_root.path(), NODES[0]);
    let mut b = replica(&upstream, &url, audit_root.path(), NODES[1]);
    let mut c = replica(&upstream, &url, audit_root.path(), NODES[2]);
    let store = open_store(&url, Path::new("."));
    seed_clinic(&*store, &["doctor"]);

    // ---- A held write on A, confirmed on B, seen on C --------------------------------
    let id = hold_form(&a, ASSISTANT, "/records?visit=1", "note=cluster");
    assert!(
        upstream.take().is_empty(),
        "held: nothing reaches the portal yet"
    );
    let token = csrf(&b, "doctor");
    let r = decide(&b, "doctor", &id, "confirm", &[("csrf", &token)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["state"], "forwarded", "{}", r.body);
    let seen = json(&entry(&c, ASSISTANT, &id));
    assert_eq!(seen["state"], "forwarded", "{seen}");
    assert_eq!(seen["decided_by"], "Test000001", "{seen}");
    // No replica delivers it again (each runs the maintenance task on the shared store).
    std::thread::sleep(Duration::from_millis(1500));
    let got = upstream.take();
    assert_eq!(got.len(), 1, "exactly one delivery: {got:?}");
    assert_eq!(got[0].header("x-hpki-confirmation-id"), Some(id.as_str()));
    assert_eq!(got[0].header("x-hpki-entered-by"), Some("a-001"));
    assert_eq!(got[0].header("x-hpki-confirmed-by"), Some("Test000001"));

    // ---- Load across the three; A killed in the middle --------------------------------
    let stop = AtomicBool::new(false);
    let log: Mutex<Vec<Sent>> = Mutex::new(Vec::new());
    let killed_at = {
        let gws = [&a, &b, &c];
        std::thread::scope(|s| {
            for client in 0..3 {
                let (stop, log, gws) = (&stop, &log, &gws);
                s.spawn(move || {
                    let mut n = 0;
                    let mut next = client;
                    // Bounded in count and time, whatever happens.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && n < 400 && Instant::now() < deadline {
                        // The balancer's turn; a replica that does not answer passes the
                        // request to the next one (a new request: a write is not retried
                        // blindly, the client makes it again).
                        for attempt in 0..3 {
                            let replica = (next + attempt) % 3;
                            let sent = send(gws, replica, client, n);
                            n += 1;
                            let answered = sent.status != 0;
                            log.lock().unwrap().push(sent);
                            if answered {
                                break;
                            }
                        }
                        next += 1;
                    }
                });
            }
            // Load until A has answered enough (reads and a held write), however slow the
            // machine; then kill it, and go on until B and C have served enough after.
            let wait_for = |what: &str, enough: &dyn Fn(&[Sent]) -> bool| {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !enough(&log.lock().unwrap()) {
                    if Instant::now() > deadline {
                        stop.store(true, Ordering::Relaxed);
                        panic!("{what} within 30 s: {:?}", log.lock().unwrap());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            wait_for("A answers reads and held writes", &|sent| {
                let on_a = sent.iter().filter(|s| s.replica == 0 && s.acknowledged());
                on_a.clone().count() >= 30 && on_a.filter(|s| s.held).count() >= 4
            });
            // The clients still borrow `a`: the kill goes by pid, and "killed" is when the
            // process is a zombie (dead, not yet reaped), so nothing sent after can have
            // been answered by it.
            let pid = a.pid();
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            let deadline = Instant::now() + Duration::from_secs(5);
            while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            }) {
                assert!(Instant::now() < deadline, "replica A did not die");
                std::thread::sleep(Duration::from_millis(5));
            }
            let killed_at = Instant::now();
            wait_for("B and C serve after the kill", &|sent| {
                [1, 2].iter().all(|r| {
                    sent.iter()
                        .filter(|s| s.replica == *r && s.sent > killed_at && s.acknowledged())
                        .count()
                        >= 20
                })
            });
            stop.store(true, Ordering::Relaxed);
            killed_at
        })
    };
    a.kill9(); // reaps the process
    let sent = log.into_inner().unwrap();

    let on = |r: usize| sent.iter().filter(move |s| s.replica == r);
    let before_a = on(0)
        .filter(|s| s.answered < killed_at && s.acknowledged())
        .count();
    let after: Vec<&Sent> = sent.iter().filter(|s| s.sent > killed_at).collect();
    println!(
        "load: {} requests, A acknowledged {before_a} before its kill; after it {} sent, \
         {} to B and C",
        sent.len(),
        after.len(),
        after.iter().filter(|s| s.replica != 0).count()
    );
    assert!(
        before_a >= 30,
        "the load reached A before the kill: {before_a}"
    );
    // B and C kept serving: not one of their requests failed, before or after the kill.
    let failed: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.replica != 0 && !s.acknowledged())
        .collect();
    assert!(
        failed.is_empty(),
        "B or C failed requests: {failed:?}\n{}",
        b.log_text()
    );
    for r in [1, 2] {
        let served = on(r).filter(|s| s.sent > killed_at).count();
        assert!(
            served >= 20,
            "replica {r} served {served} requests after the kill"
        );
    }
    // A answered nothing sent after it was killed.
    assert!(
        on(0).filter(|s| s.sent > killed_at).all(|s| s.status == 0),
        "A answered after SIGKILL"
    );

    // ---- Nothing acknowledged is lost: the held writes ---------------------------------
    let held: Vec<&Sent> = sent.iter().filter(|s| s.held && s.acknowledged()).collect();
    assert!(held.iter().any(|s| s.replica == 0), "no held write on A");
    for s in &held {
        let id = s.pending_id.as_deref().expect("a 202 names its pending id");
        let p = block_on(store.pending(id))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged held write {id} ({s:?}) is not in the store"));
        assert_eq!(p.state, PendingState::Pending, "{id}");
        assert_eq!(p.path_and_query, s.path, "{id}");
        assert_eq!(p.body, b"load=1", "{id}");
    }
    // A's held writes are confirmed on C, each delivered once.
    upstream.take();
    let token = csrf(&c, "doctor");
    let from_a: Vec<&str> = held
        .iter()
        .filter(|s| s.replica == 0)
        .map(|s| s.pending_id.as_deref().unwrap())
        .collect();
    for id in &from_a {
        let r = decide(&c, "doctor", id, "confirm", &[("csrf", &token)]);
        assert_eq!(r.status, 200, "confirm {id} on C: {}", r.body);
    }
    let delivered = upstream.take();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for d in &delivered {
        *per_id
            .entry(d.header("x-hpki-confirmation-id").unwrap_or("(none)"))
            .or_default() += 1;
    }
    for id in &from_a {
        assert_eq!(per_id.get(id), Some(&1), "delivered {per_id:?}");
    }
    assert_eq!(delivered.len(), from_a.len(), "{per_id:?}");

    // ---- The audit log ---------------------------------------------------------------
    for gw in [&mut b, &mut c] {
        assert_eq!(
            gw.terminate(Duration::from_secs(20)),
            Some(0),
            "{}",
            gw.log_text()
        );
    }
    let records = audit_records(audit_root.path());
    let recorded: HashMap<(&str, &str), Vec<u64>> = records
        .iter()
        .filter(|r| r["event"] == "request")
        .fold(HashMap::new(), |mut m, r| {
            if let (Some(node), Some(path)) = (r["node"].as_str(), r["path"].as_str()) {
                m.entry((node, path))
                    .or_default()
                    .push(r["status"].as_u64().unwrap_or(0));
            }
            m
        });
    let in_log = |s: &Sent| {
        recorded
            .get(&(NODES[s.replica], s.path.as_str()))
            .is_some_and(|statuses| statuses.contains(&u64::from(s.status)))
    };
    // B and C: every acknowledged request.
    let missing: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.replica != 0 && s.acknowledged() && !in_log(s))
        .collect();
    assert!(
        missing.is_empty(),
        "answered by B/C but not in their audit log: {missing:?}"
    );
    // A: every held write, and every read answered before a later acknowledged held
    // write was sent to A (its record was written before that write's fsync).
    let last_durable = on(0)
        .filter(|s| s.held && s.acknowledged())
        .map(|s| s.sent)
        .max()
        .unwrap();
    let guaranteed: Vec<&Sent> = on(0)
        .filter(|s| s.acknowledged() && (s.held || s.answered < last_durable))
        .collect();
    let lost: Vec<&&Sent> = guaranteed.iter().filter(|s| !in_log(s)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged by A and lost with it: {lost:?}"
    );
    let tail: Vec<&Sent> = on(0)
        .filter(|s| s.acknowledged() && !s.held && s.answered >= last_durable)
        .collect();
    println!(
        "audit: A acknowledged {} requests, {} of them guaranteed and present; {} reads \
         after its last acknowledged held write, {} of those not in its log (group commit)",
        on(0).filter(|s| s.acknowledged()).count(),
        guaranteed.len(),
        tail.len(),
        tail.iter().filter(|s| !in_log(s)).count()
    );

    // Each node's log verifies; A's ends where the kill cut it.
    for node in NODES {
        let dir = audit_root.path().join(node);
        let (code, out) = cli(&[OsStr::new("audit"), OsStr::new("verify"), dir.as_os_str()]);
        assert_eq!(code, 0, "audit verify {node}:\n{out}");
    }
    let elapsed = started.elapsed();
    println!("three replicas: done in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
