//! Trust-store rotation under load, through the real binary: 20 reloads (add a CA,
//! replace a CRL, drop a broken file in, fix it and remove the CA, replace the server
//! certificate) while a doctor keeps logging in; not one of the doctor's requests fails,
//! the removed CA's users are refused (their open connection closed after the grace), the
//! broken store is refused and the old one keeps serving. Plus SIGHUP and the file watch.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{config, error_code, free_port, pki, Gateway, Upstream};

struct Setup {
    dir: tempfile::TempDir,
    /// Server CA bundle trusting both server identities the test swaps between.
    both_cas: PathBuf,
    ca_a: PathBuf,
    ca_b: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

impl Setup {
    fn new() -> Setup {
        let p = pki();
        let dir = tempfile::tempdir().unwrap();
        for profile in ["hpki-auth", "hpki-org"] {
            copy_dir(&p.trust(profile), &dir.path().join("trust").join(profile));
        }
        std::fs::copy(p.server_cert(), dir.path().join("server.pem")).unwrap();
        std::fs::copy(p.server_key(), dir.path().join("server.key")).unwrap();
        let b = pki_tests::server::server_identity(&["127.0.0.1", "localhost"]).unwrap();
        std::fs::write(dir.path().join("server-b.pem"), &b.chain_pem).unwrap();
        std::fs::write(dir.path().join("server-b.key"), &b.key_pem).unwrap();
        let ca_a = dir.path().join("ca-a.pem");
        let ca_b = dir.path().join("ca-b.pem");
        std::fs::copy(p.server_ca(), &ca_a).unwrap();
        std::fs::write(&ca_b, &b.ca_pem).unwrap();
        let both_cas = dir.path().join("both-cas.pem");
        std::fs::write(
            &both_cas,
            format!("{}{}", std::fs::read_to_string(&ca_a).unwrap(), b.ca_pem),
        )
        .unwrap();
        Setup {
            dir,
            both_cas,
            ca_a,
            ca_b,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The standard test config, pointed at this setup's mutable copies.
    fn config(&self, upstream: SocketAddr, listen: SocketAddr, reload: &str) -> String {
        let p = pki();
        config(listen, upstream, "hpki-card", "required", reload)
            .replace(
                &p.trust("hpki-auth").display().to_string(),
                &self.path("trust/hpki-auth").display().to_string(),
            )
            .replace(
                &p.trust("hpki-org").display().to_string(),
                &self.path("trust/hpki-org").display().to_string(),
            )
            .replace(
                &p.server_cert().display().to_string(),
                &self.path("server.pem").display().to_string(),
            )
            .replace(
                &p.server_key().display().to_string(),
                &self.path("server.key").display().to_string(),
            )
    }
}

/// curl as `card` trusting the server CAs in `ca`: (status, body); status 0 when the
/// connection or TLS failed.
fn get(gw: &Gateway, ca: &Path, card: &str, path: &str) -> (u16, String) {
    let p = pki();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(["-H", "Accept: application/json"])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(p.cert(card))
        .arg("--key")
        .arg(p.key(card))
        .arg(gw.url(path))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `POST /trust/reload` on the admin listener: (HTTP status, report).
fn reload(gw: &Gateway) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(["-X", "POST", "-H", "X-HPKI-Operator: rotation-test"])
        .arg(format!("http://{}/trust/reload", gw.admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

fn applied(gw: &Gateway, what: &str) -> Value {
    let (status, r) = reload(gw);
    assert_eq!(status, 200, "{what}: {r}");
    assert_eq!(r["outcome"], "applied", "{what}: {r}");
    r
}

/// A CRL of the test PKI's `auth-ca`, numbered `number`, revoking `revoked`.
fn auth_ca_crl(revoked: &[&str], number: u64) -> Vec<u8> {
    use time::{Duration as Span, OffsetDateTime};
    let now = OffsetDateTime::now_utc();
    // Later numbers are also later in time: each replaces the previous one.
    let this_update = now - Span::minutes(30) + Span::seconds(number as i64);
    let list: Vec<pki_tests::Revoked<'_>> = revoked
        .iter()
        .map(|cert| pki_tests::Revoked {
            cert,
            at: this_update - Span::minutes(1),
            reason: None,
        })
        .collect();
    pki()
        .generated
        .crl("auth-ca", &list, number, this_update, now + Span::days(1))
        .unwrap()
        .der
}

#[test]
fn twenty_rotations_under_load_drop_no_valid_request() {
    let s = Setup::new();
    let upstream = Upstream::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(
        &s.config(
            upstream.addr,
            listen,
            "\n[reload]\nwatch = false\ngrace = \"1s\"\n",
        ),
        listen,
    );
    let anchors = s.path("trust/hpki-auth/anchors");
    let crls = s.path("trust/hpki-auth/crls");
    let new_root = pki().dir.join("pki/certs/untrusted-root.pem");
    let new_root_crl = pki().dir.join("pki/crls/untrusted-root.crl");

    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let mut reloads = 0;
    let sent = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = get(&gw, &s.both_cas, "doctor", "/");
                if status != 200 {
                    failures.lock().unwrap().push((status, body));
                }
                n += 1;
            }
            n
        });
        let mut server_is_b = false;
        let mut crl_number = 10;
        for cycle in 0..4 {
            // 1. Add a CA: its doctor is accepted from now on.
            std::fs::copy(&new_root, anchors.join("new-root.pem")).unwrap();
            std::fs::copy(&new_root_crl, crls.join("new-root.crl")).unwrap();
            let r = applied(&gw, "add a CA");
            reloads += 1;
            assert!(
                r["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c.as_str().unwrap().starts_with("+ anchor hpki-auth")),
                "{r}"
            );
            let ca = if server_is_b { &s.ca_b } else { &s.ca_a };
            assert_eq!(
                get(&gw, ca, "untrusted-doctor", "/").0,
                200,
                "cycle {cycle}"
            );
            // An open connection of the new CA's user, to be closed when the CA goes.
            let mut keep = (!server_is_b).then(|| {
                let mut c = support::card_connection(&gw, "untrusted-doctor");
                use std::io::{Read, Write};
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).unwrap();
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
                c
            });

            // 2. Replace a CRL: revokes the pharmacist on even cycles, lifts it on odd.
            let revoked: &[&str] = if cycle % 2 == 0 { &["pharmacist"] } else { &[] };
            crl_number += 1;
            std::fs::write(crls.join("auth-ca.crl"), auth_ca_crl(revoked, crl_number)).unwrap();
            applied(&gw, "replace a CRL");
            reloads += 1;
            let (status, body) = get(&gw, ca, "pharmacist", "/");
            if cycle % 2 == 0 {
                assert_eq!(status, 403, "{body}");
                assert_eq!(error_code(&body).as_deref(), Some("cert_revoked"));
            } else {
                assert_eq!(status, 200, "{body}");
            }

            // 3. A broken file: refused, naming it; the running store keeps serving.
            std::fs::write(
                anchors.join("broken.pem"),
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            )
            .unwrap();
            let (status, r) = reload(&gw);
            reloads += 1;
            assert_eq!(status, 422, "{r}");
            assert_eq!(r["outcome"], "refused");
            assert!(r["problems"].to_string().contains("broken.pem"), "{r}");
            assert_eq!(
                get(&gw, ca, "untrusted-doctor", "/").0,
                200,
                "old store still serves"
            );

            // 4. Fix it, and retire the added CA: its users are refused, their open
            //    connections closed after the grace.
            std::fs::remove_file(anchors.join("broken.pem")).unwrap();
            std::fs::remove_file(anchors.join("new-root.pem")).unwrap();
            std::fs::remove_file(crls.join("new-root.crl")).unwrap();
            let r = applied(&gw, "remove the CA");
            reloads += 1;
            assert!(
                r["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c.as_str().unwrap().starts_with("- anchor hpki-auth")),
                "{r}"
            );
            let (status, body) = get(&gw, ca, "untrusted-doctor", "/");
            assert_eq!(status, 403, "{body}");
            assert_eq!(error_code(&body).as_deref(), Some("untrusted_issuer"));
            if let Some(c) = keep.as_mut() {
                std::thread::sleep(Duration::from_millis(2500));
                use std::io::{Read, Write};
                let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).unwrap_or(0);
                assert!(
                    n == 0 || !String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
                    "the removed CA's open connection still served: {}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }

            // 5. Replace the server certificate (to another CA's, alternately).
            let (cert, key) = if server_is_b {
                (pki().server_cert(), pki().server_key())
            } else {
                (s.path("server-b.pem"), s.path("server-b.key"))
            };
            std::fs::copy(cert, s.path("server.pem")).unwrap();
            std::fs::copy(key, s.path("server.key")).unwrap();
            let r = applied(&gw, "replace the server certificate");
            reloads += 1;
            assert!(
                r["changes"].to_string().contains("server certificate"),
                "{r}"
            );
            server_is_b = !server_is_b;
            let (only_new, only_old) = if server_is_b {
                (&s.ca_b, &s.ca_a)
            } else {
                (&s.ca_a, &s.ca_b)
            };
            assert_eq!(
                get(&gw, only_new, "doctor", "/").0,
                200,
                "new server certificate served"
            );
            assert_eq!(
                get(&gw, only_old, "doctor", "/").0,
                0,
                "old server certificate gone"
            );
        }
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    assert_eq!(reloads, 20);
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "a valid doctor's requests failed during rotation: {failures:?}"
    );
    assert!(sent >= 20, "the load loop ran ({sent} requests)");
    // Every attempt is in the audit log with its operator.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = audit_records(&gw);
        let reloads: Vec<&Value> = records
            .iter()
            .filter(|r| r["event"] == "trust_change")
            .collect();
        if reloads.len() >= 20 {
            assert_eq!(
                reloads
                    .iter()
                    .filter(|r| r["decision"] == "refused")
                    .count(),
                4
            );
            assert!(reloads
                .iter()
                .all(|r| r["operator"] == "admin API: rotation-test"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} reload records",
            reloads.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = gw.admin_get("/metrics").1;
    assert!(metrics.contains("hpki_trust_generation 16"), "{metrics}");
    assert!(metrics.contains("hpki_trust_reloads_total{outcome=\"refused\"} 4"));
}

fn audit_records(gw: &Gateway) -> Vec<Value> {
    support::audit_records(&gw.audit_dir())
}

#[test]
fn sighup_and_the_file_watch_reload() {
    let s = Setup::new();
    let upstream = Upstream::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(
        &s.config(
            upstream.addr,
            listen,
            "\n[reload]\nwatch = true\nwatch_interval = \"300ms\"\ngrace = \"1s\"\n",
        ),
        listen,
    );
    let anchors = s.path("trust/hpki-auth/anchors");
    assert_eq!(get(&gw, &s.ca_a, "untrusted-doctor", "/").0, 403);
    // The watch: a new anchor is picked up by itself.
    std::fs::copy(
        pki().dir.join("pki/crls/untrusted-root.crl"),
        s.path("trust/hpki-auth/crls/new-root.crl"),
    )
    .unwrap();
    std::fs::copy(
        pki().dir.join("pki/certs/untrusted-root.pem"),
        anchors.join("new-root.pem"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&gw, &s.ca_a, "untrusted-doctor", "/").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the watch did not reload:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGHUP, with the watch looking too: a broken file is refused either way.
    std::fs::write(anchors.join("broken.pem"), "garbage").unwrap();
    let _ = std::fs::rename(anchors.join("broken.pem"), anchors.join("broken.crt"));
    let pid = gw.pid().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log_text().contains("trust reload refused") {
        assert!(Instant::now() < deadline, "{}", gw.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(gw.log_text().contains("broken.crt"), "{}", gw.log_text());
    // Refused: the running store (with the new anchor) still serves, and /readyz says so.
    assert_eq!(get(&gw, &s.ca_a, "untrusted-doctor", "/").0, 200);
    let (status, ready) = gw.admin_get("/readyz");
    assert_eq!(status, 200, "still ready: the old store serves");
    assert!(
        ready.contains("REFUSED") && ready.contains("broken.crt"),
        "{ready}"
    );
    // The diff says what a reload would do, without doing it.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/trust/diff", gw.admin))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "422");
}

#[test]
fn a_staged_rotation_switches_roots_on_its_date() {
    // Old root retired and new root accepted at T, an hour from now. One gateway runs on
    // today's clock, another on a test clock two hours ahead: "on the day".
    let s = Setup::new();
    let upstream = Upstream::start();
    let anchors = s.path("trust/hpki-auth/anchors");
    std::fs::copy(
        pki().dir.join("pki/certs/untrusted-root.pem"),
        anchors.join("new-root.pem"),
    )
    .unwrap();
    std::fs::copy(
        pki().dir.join("pki/crls/untrusted-root.crl"),
        s.path("trust/hpki-auth/crls/new-root.crl"),
    )
    .unwrap();
    let t = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let t = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let old_root = std::fs::read_dir(&anchors)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n != "new-root.pem")
        .unwrap();
    std::fs::write(
        s.path("trust/hpki-auth/trust.toml"),
        format!(
            "[[anchor]]\nfile = \"anchors/{old_root}\"\nnot_after = \"{t}\"\n\n[[anchor]]\nfile = \"anchors/new-root.pem\"\nnot_before = \"{t}\"\n"
        ),
    )
    .unwrap();
    let today_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let today = Gateway::start(
        &s.config(upstream.addr, today_addr, "\n[reload]\nwatch = false\n"),
        today_addr,
    );
    assert_eq!(get(&today, &s.ca_a, "doctor", "/").0, 200);
    let (status, body) = get(&today, &s.ca_a, "untrusted-doctor", "/");
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("untrusted_issuer"));
    assert!(
        body.contains("trust.toml"),
        "the refusal names the window: {body}"
    );

    // Bringing the date forward is a change a reload applies (nothing else changed).
    let earlier = (time::OffsetDateTime::now_utc() - time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let manifest = s.path("trust/hpki-auth/trust.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace(&t, &earlier);
    std::fs::write(&manifest, text).unwrap();
    let r = applied(&today, "an earlier switch date");
    assert!(r["changes"].to_string().contains("window"), "{r}");
    assert_eq!(get(&today, &s.ca_a, "untrusted-doctor", "/").0, 200);
    assert_eq!(get(&today, &s.ca_a, "doctor", "/").0, 403);
    std::fs::write(
        &manifest,
        std::fs::read_to_string(&manifest)
            .unwrap()
            .replace(&earlier, &t),
    )
    .unwrap();
    applied(&today, "the date back");

    let later_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let later = Gateway::start_with_env(
        &s.config(upstream.addr, later_addr, "\n[reload]\nwatch = false\n"),
        later_addr,
        &[("HPKI_GATEWAY_TEST_CLOCK_OFFSET", "7200")],
    );
    assert_eq!(get(&later, &s.ca_a, "untrusted-doctor", "/").0, 200);
    let (status, body) = get(&later, &s.ca_a, "doctor", "/");
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body).as_deref(), Some("untrusted_issuer"));
    assert!(body.contains("trust.toml"), "{body}");
}
