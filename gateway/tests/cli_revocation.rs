//! The operator's revocation tools, through the real binary:
//!
//! - `cert verify --crl FILE... --ocsp URL` on the generated HPKI-shaped PKI, with CRLs
//!   issued by rcgen (`pki_tests::TestPki::crl`) and `openssl ocsp` as the responder;
//! - `trust status --config FILE` (offline view of anchors, intermediates and CRLs).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pki_tests::{Revoked, TestPki};
use rcgen::RevocationReason;
use serde_json::Value;
use time::OffsetDateTime;

struct Fixture {
    dir: PathBuf,
    pki: TestPki,
}

impl Fixture {
    fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("pki/certs").join(format!("{name}.pem"))
    }
    fn key(&self, name: &str) -> PathBuf {
        self.dir.join("pki/certs").join(format!("{name}.key"))
    }
    fn trust(&self, profile: &str) -> PathBuf {
        self.dir.join("pki/trust").join(profile)
    }
    /// The initial CRL (number 1, nothing revoked) of `ca`, as written in the trust store.
    fn initial_crl(&self, ca: &str) -> PathBuf {
        self.dir.join("pki/crls").join(format!("{ca}.crl"))
    }
    fn now(&self) -> OffsetDateTime {
        self.pki.now
    }
    /// A new CRL of `ca` written to a fresh file; returns its path.
    fn crl(
        &self,
        file: &str,
        ca: &str,
        revoked: &[(&str, Option<RevocationReason>)],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> PathBuf {
        let list: Vec<Revoked<'_>> = revoked
            .iter()
            .map(|(cert, reason)| Revoked {
                cert,
                at: self.now() - time::Duration::hours(2),
                reason: *reason,
            })
            .collect();
        let crl = self
            .pki
            .crl(ca, &list, number, this_update, next_update)
            .unwrap();
        let dir = self.dir.join("made");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        std::fs::write(&path, &crl.pem).unwrap();
        path
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-revocation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = TestPki::generate(&pki_tests::GenerateOptions::default()).unwrap();
        pki.write_to(&dir.join("pki")).unwrap();
        Fixture { dir, pki }
    })
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the binary; (exit code, stdout, stderr).
fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(args)
        .output()
        .expect("run hpki-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cert verify --json` of `leaf` against hpki-auth with the given extra arguments.
fn verify_json(leaf: &str, extra: &[&str]) -> (i32, Value, String) {
    let f = fixture();
    let trust = f.trust("hpki-auth");
    let cert = f.cert(leaf);
    let mut args = vec!["cert", "verify", "--trust", p(&trust), "--json"];
    args.extend_from_slice(extra);
    args.push(p(&cert));
    let (code, out, err) = gateway(&args);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\nstderr:\n{err}"));
    (code, v, err)
}

fn statuses(v: &Value) -> Vec<String> {
    v["revocation"]["certificates"]
        .as_array()
        .unwrap_or_else(|| panic!("no revocation part: {v:#}"))
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// cert verify --crl
// ---------------------------------------------------------------------------------------

#[test]
fn current_crls_that_list_nothing_make_the_whole_chain_good() {
    let f = fixture();
    let (root, auth) = (f.initial_crl("root"), f.initial_crl("auth-ca"));
    let (code, v, err) = verify_json("doctor", &["--crl", p(&root), "--crl", p(&auth)]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["valid"], true);
    assert_eq!(v["revocation"]["sources"], serde_json::json!(["crl"]));
    // Leaf and CA are checked; the anchor is not.
    assert_eq!(statuses(&v), ["good", "good"]);
    let leaf = &v["revocation"]["certificates"][0];
    assert!(
        leaf["source"].as_str().unwrap().contains("auth-ca.crl"),
        "{leaf:#}"
    );
    assert_eq!(leaf["crl"]["status"], "good");
    assert!(leaf["ocsp"].is_null());
    let ca = &v["revocation"]["certificates"][1];
    assert!(
        ca["source"].as_str().unwrap().contains("root.crl"),
        "{ca:#}"
    );
    let crls = v["revocation"]["crls"].as_array().unwrap();
    assert_eq!(crls.len(), 2);
    assert!(crls
        .iter()
        .all(|c| c["used"] == true && c["crl_number"] == "1"));

    // The text form says the same, and a CRL of a CA off the path is only noted.
    let org = f.initial_crl("org-ca");
    let trust = f.trust("hpki-auth");
    let cert = f.cert("doctor");
    let (code, out, err) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(&trust),
        "--crl",
        p(&root),
        "--crl",
        p(&auth),
        "--crl",
        p(&org),
        p(&cert),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("valid\n"), "{out}");
    assert!(out.contains("revocation (crl):"), "{out}");
    assert!(out.contains("[0] good"), "{out}");
    assert!(out.contains("[1] good"), "{out}");
    assert!(
        out.contains("org-ca.crl not used") && out.contains("is not a CA of this path"),
        "{out}"
    );
}

#[test]
fn a_revoked_leaf_exits_1_with_cert_revoked_and_names_the_crl() {
    let f = fixture();
    let now = f.now();
    let revoking = f.crl(
        "auth-ca-2.crl",
        "auth-ca",
        &[("doctor", Some(RevocationReason::KeyCompromise))],
        2,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    let root = f.initial_crl("root");
    let (code, v, err) = verify_json("doctor", &["--crl", p(&root), "--crl", p(&revoking)]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "cert_revoked");
    assert!(
        v["detail"].as_str().unwrap().contains("keyCompromise"),
        "{v:#}"
    );
    // The path itself validated and is shown.
    assert_eq!(v["path"].as_array().unwrap().len(), 3);
    assert_eq!(statuses(&v), ["revoked", "good"]);
    let leaf = &v["revocation"]["certificates"][0];
    assert_eq!(leaf["reason"], "keyCompromise");
    assert!(
        leaf["source"].as_str().unwrap().contains("auth-ca-2.crl"),
        "{leaf:#}"
    );
    assert!(leaf["crl"]["revoked_at"].is_string());
    // Another doctor of the same CA is not on that CRL.
    let (code, v, _) = verify_json("pharmacist", &["--crl", p(&root), "--crl", p(&revoking)]);
    assert_eq!(code, 0, "{v:#}");

    let trust = f.trust("hpki-auth");
    let cert = f.cert("doctor");
    let (code, out, _) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(&trust),
        "--crl",
        p(&revoking),
        p(&cert),
    ]);
    assert_eq!(code, 1);
    assert!(out.starts_with("invalid: cert_revoked\n"), "{out}");
    assert!(
        out.contains("REVOKED") && out.contains("keyCompromise"),
        "{out}"
    );
}

#[test]
fn a_revoked_ca_on_the_root_crl_revokes_its_users() {
    let f = fixture();
    let now = f.now();
    let arl = f.crl(
        "root-2.crl",
        "root",
        &[("auth-ca", Some(RevocationReason::CaCompromise))],
        2,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    let auth = f.initial_crl("auth-ca");
    let (code, v, err) = verify_json("doctor", &["--crl", p(&arl), "--crl", p(&auth)]);
    assert_eq!(code, 1, "{v:#}\n{err}");
    assert_eq!(v["reason"], "cert_revoked");
    assert_eq!(statuses(&v), ["good", "revoked"]);
    assert_eq!(v["revocation"]["certificates"][1]["reason"], "cACompromise");
    assert!(
        v["detail"].as_str().unwrap().contains("depth 1"),
        "{}",
        v["detail"]
    );
}

#[test]
fn no_current_crl_for_the_leaf_is_revocation_unavailable() {
    let f = fixture();
    let now = f.now();
    // Only the root's CRL: the doctor's own CA has none here.
    let root = f.initial_crl("root");
    let (code, v, _) = verify_json("doctor", &["--crl", p(&root)]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "revocation_unavailable");
    assert_eq!(statuses(&v), ["unknown", "good"]);
    assert!(
        v["revocation"]["certificates"][0]["why"]
            .as_str()
            .unwrap()
            .contains("no CRL"),
        "{v:#}"
    );

    // Only the CA's CRL: the leaf is decided; the CA above it is unknown, which is
    // reported but is not the leaf.
    let auth = f.initial_crl("auth-ca");
    let (code, v, _) = verify_json("doctor", &["--crl", p(&auth)]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(statuses(&v), ["good", "unknown"]);

    // A CRL past its nextUpdate is not current...
    let stale = f.crl(
        "auth-ca-stale.crl",
        "auth-ca",
        &[],
        3,
        now - time::Duration::hours(20),
        now - time::Duration::hours(2),
    );
    let (code, v, _) = verify_json("doctor", &["--crl", p(&root), "--crl", p(&stale)]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "revocation_unavailable");
    assert!(
        v["detail"].as_str().unwrap().contains("stale"),
        "{}",
        v["detail"]
    );
    // ... but it was three hours ago (--at judges the CRLs too).
    let before = (now - time::Duration::hours(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, v, _) = verify_json(
        "doctor",
        &["--at", &before, "--crl", p(&root), "--crl", p(&stale)],
    );
    // The root's initial CRL starts an hour before `now`: at `before` it is not yet valid.
    assert_eq!(statuses(&v), ["good", "unknown"], "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn bad_crl_files_exit_2_naming_the_file() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let trust = f.trust("hpki-auth");
    let cert = f.cert("doctor");
    let run = |crl: &Path| {
        gateway(&[
            "cert",
            "verify",
            "--trust",
            p(&trust),
            "--crl",
            p(crl),
            p(&cert),
        ])
    };

    let junk = tmp.path().join("junk.crl");
    std::fs::write(&junk, "this is not a CRL\n").unwrap();
    let (code, out, err) = run(&junk);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("junk.crl") && err.contains("expected a DER or PEM X.509 CRL"),
        "{err}"
    );

    let (code, _, err) = run(&tmp.path().join("missing.crl"));
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.crl") && err.contains("cannot be read"),
        "{err}"
    );

    // The CA's real CRL with one signature bit flipped: it names a CA of the path but
    // does not verify. Broken input, not "no information".
    let mut der = std::fs::read(f.initial_crl("auth-ca")).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let forged = tmp.path().join("forged.crl");
    std::fs::write(&forged, &der).unwrap();
    let (code, out, err) = run(&forged);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("forged.crl") && err.contains("cannot be verified"),
        "{err}"
    );

    let (code, _, err) = gateway(&[
        "cert",
        "verify",
        "--trust",
        p(&trust),
        "--ocsp",
        "https://127.0.0.1:1/",
        p(&cert),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("http://"), "{err}");
}

// ---------------------------------------------------------------------------------------
// cert verify --ocsp, with `openssl ocsp` as the responder
// ---------------------------------------------------------------------------------------

/// `openssl ocsp` answering for auth-ca from an index that says: doctor good, pharmacist
/// revoked (keyCompromise); every other serial unknown. Signed by auth-ca itself. Serves
/// a bounded number of requests; killed on drop.
struct Responder {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Responder {
    fn start() -> Responder {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let when = |t: OffsetDateTime| {
            t.format(time::macros::format_description!(
                "[year repr:last_two][month][day][hour][minute][second]Z"
            ))
            .unwrap()
        };
        let line = |name: &str, revoked: Option<&str>| {
            let c = f.pki.get(name).unwrap();
            let serial: Vec<u8> = c.serial.iter().copied().skip_while(|b| *b == 0).collect();
            let hex: String = serial.iter().map(|b| format!("{b:02X}")).collect();
            let (status, date) = match revoked {
                Some(reason) => (
                    "R",
                    format!("{},{reason}", when(f.now() - time::Duration::hours(2))),
                ),
                None => ("V", String::new()),
            };
            format!(
                "{status}\t{}\t{date}\t{hex}\tunknown\t/CN={name}\n",
                when(c.not_after)
            )
        };
        let index = line("doctor", None) + &line("pharmacist", Some("keyCompromise"));
        std::fs::write(dir.path().join("index.txt"), index).unwrap();
        std::fs::write(dir.path().join("index.txt.attr"), "unique_subject = no\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ca, key) = (f.cert("auth-ca"), f.key("auth-ca"));
        let child = Command::new("openssl")
            .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
            .args(["-rsigner", p(&ca), "-rkey", p(&key), "-CA", p(&ca)])
            .args(["-ndays", "1", "-nrequest", "40"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the openssl CLI is needed (deploy/setup.sh installs it)");
        let mut responder = Responder {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            _dir: dir,
        };
        // Wait for the listening socket without connecting: `openssl ocsp` (3.0) stalls
        // for good on a connection that closes without sending a request.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(port) {
            if let Ok(Some(status)) = responder.child.try_wait() {
                panic!("openssl ocsp exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "openssl ocsp did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        responder
    }
}

/// Whether some socket listens on TCP `port` (from /proc/net/tcp and tcp6).
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // local_address is column 1, st (0A = LISTEN) column 3.
                cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
            })
        })
    })
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ocsp_answers_good_revoked_unknown_and_a_dead_responder_is_unavailable() {
    let f = fixture();
    let responder = Responder::start();
    let url = &responder.url.clone();

    let (code, v, err) = verify_json("doctor", &["--ocsp", url]);
    assert_eq!(code, 0, "{v:#}\n{err}");
    assert_eq!(v["revocation"]["sources"], serde_json::json!(["ocsp"]));
    // OCSP answers for the leaf only; without CRLs the CA is not checked.
    assert_eq!(statuses(&v), ["good", "not_checked"]);
    assert_eq!(v["revocation"]["certificates"][0]["ocsp"]["status"], "good");

    let (code, v, _) = verify_json("pharmacist", &["--ocsp", url]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "cert_revoked");
    let leaf = &v["revocation"]["certificates"][0];
    assert_eq!(leaf["reason"], "keyCompromise");
    assert!(leaf["source"].as_str().unwrap().starts_with("OCSP http://"));

    // Not in the responder's index: "unknown" is not "good".
    let (code, v, _) = verify_json("dentist", &["--ocsp", url]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "revocation_unavailable");
    assert!(
        v["detail"].as_str().unwrap().contains("does not know"),
        "{}",
        v["detail"]
    );

    // Both sources: each must answer for the leaf; here both say good.
    let (root, auth) = (f.initial_crl("root"), f.initial_crl("auth-ca"));
    let (code, v, _) = verify_json(
        "doctor",
        &["--crl", p(&root), "--crl", p(&auth), "--ocsp", url],
    );
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        v["revocation"]["sources"],
        serde_json::json!(["crl", "ocsp"])
    );
    assert_eq!(statuses(&v), ["good", "good"]);
    // The CRL revokes, OCSP says good: revoked wins.
    let now = f.now();
    let revoking = f.crl(
        "auth-ca-ocsp.crl",
        "auth-ca",
        &[("doctor", Some(RevocationReason::Superseded))],
        4,
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    let (code, v, _) = verify_json("doctor", &["--crl", p(&revoking), "--ocsp", url]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "cert_revoked");
    assert_eq!(v["revocation"]["certificates"][0]["ocsp"]["status"], "good");

    // The responder gone: no answer is unavailable, even when the CRL says good.
    drop(responder);
    let (code, v, _) = verify_json(
        "doctor",
        &["--crl", p(&root), "--crl", p(&auth), "--ocsp", url],
    );
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["reason"], "revocation_unavailable");
    assert_eq!(v["revocation"]["certificates"][0]["crl"]["status"], "good");
    assert_eq!(
        v["revocation"]["certificates"][0]["ocsp"]["status"],
        "unknown"
    );
}

// ---------------------------------------------------------------------------------------
// trust status
// ---------------------------------------------------------------------------------------

/// A config over copies of the generated trust stores (so a test may break one).
fn status_config(tmp: &Path) -> PathBuf {
    let f = fixture();
    for profile in ["hpki-auth", "hpki-org"] {
        copy_dir(&f.trust(profile), &tmp.join("trust").join(profile));
    }
    let server = pki_tests::server::server_identity(&["127.0.0.1"]).unwrap();
    std::fs::write(tmp.join("server.pem"), &server.chain_pem).unwrap();
    std::fs::write(tmp.join("server.key"), &server.key_pem).unwrap();
    std::fs::write(
        tmp.join("assertion.pem"),
        hpki_gateway::assertion::AssertionSigner::generate_pem(),
    )
    .unwrap();
    let config = tmp.join("gateway.toml");
    std::fs::write(
        &config,
        r#"[server]
listen = "127.0.0.1:18443"
cert = "server.pem"
key = "server.key"

[assertion]
key = "assertion.pem"

[[trust]]
name = "hpki-auth"
dir = "trust/hpki-auth"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]
revocation.depth = "leaf"
revocation.stale_grace = "2h"

[[trust]]
name = "hpki-org"
dir = "trust/hpki-org"
kind = "organization"
revocation.sources = ["crl"]
revocation.on_unavailable = "allow"

[[route]]
path = "/"
upstream = "http://127.0.0.1:9000"
"#,
    )
    .unwrap();
    config
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn trust_status_shows_anchors_intermediates_crls_and_policy() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let config = status_config(tmp.path());
    let (code, out, err) = gateway(&["trust", "status", "--config", p(&config)]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "profile hpki-auth (person)",
        "profile hpki-org (organization)",
        "depth leaf",
        "stale_crl deny (grace 2h)",
        "sources crl, depth chain, on_unavailable allow",
        "Test HPKI Root CA",
        "HPKI-01-TestAuthCA-forAuthentication-forIndividual",
        "CRL number 1",
        "0 entries",
        "auth-ca.crl",
        "in memory",
        "admin endpoint",
        "status: OK",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("STALE") && !out.contains("WARNING"), "{out}");

    let (code, out, err) = gateway(&["trust", "status", "--config", p(&config), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["live_state"].as_str().unwrap().contains("OCSP cache"));
    let auth = &v["profiles"][0];
    assert_eq!(auth["name"], "hpki-auth");
    assert_eq!(auth["revocation"]["depth"], "leaf");
    assert_eq!(
        auth["revocation"]["sources"],
        serde_json::json!(["crl", "ocsp"])
    );
    assert_eq!(auth["anchors"].as_array().unwrap().len(), 1);
    assert_eq!(auth["intermediates"].as_array().unwrap().len(), 2);
    let root = f.pki.get("root").unwrap();
    let days = (root.not_after - f.now()).whole_days();
    let left = auth["anchors"][0]["days_left"].as_i64().unwrap();
    assert!((days - 1..=days).contains(&left), "{left} vs {days}");
    let crls = auth["crls"].as_array().unwrap();
    assert_eq!(crls.len(), 3, "{crls:#?}");
    for c in crls {
        assert_eq!(c["crl_number"], "1");
        assert_eq!(c["entries"], 0);
        assert_eq!(c["stale"], false);
        assert!(c["approx_bytes"].as_u64().unwrap() > 0);
        assert!(c["file"].as_str().unwrap().ends_with(".crl"));
    }

    // A CRL with entries: the count and the memory grow.
    let now = f.now();
    let crl = f
        .pki
        .crl(
            "auth-ca",
            &[
                Revoked {
                    cert: "doctor",
                    at: now,
                    reason: None,
                },
                Revoked {
                    cert: "pharmacist",
                    at: now,
                    reason: Some(RevocationReason::KeyCompromise),
                },
            ],
            7,
            now - time::Duration::hours(1),
            now + time::Duration::days(2),
        )
        .unwrap();
    std::fs::write(
        tmp.path().join("trust/hpki-auth/crls/auth-ca.crl"),
        &crl.der,
    )
    .unwrap();
    let (code, out, _) = gateway(&["trust", "status", "--config", p(&config), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let auth_crl = v["profiles"][0]["crls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"].as_str().unwrap().ends_with("auth-ca.crl"))
        .unwrap()
        .clone();
    assert_eq!(auth_crl["crl_number"], "7");
    assert_eq!(auth_crl["entries"], 2);
}

#[test]
fn trust_status_exits_1_for_stale_crls_expired_anchors_and_broken_files() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let config = status_config(tmp.path());
    let root = f.pki.get("root").unwrap();

    // Past the CRLs' nextUpdate (7 days): every CRL is stale.
    let later = rfc3339(f.now() + time::Duration::days(8));
    let (code, out, err) = gateway(&["trust", "status", "--config", p(&config), "--at", &later]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("STALE: nextUpdate passed"), "{out}");
    assert!(out.contains("problem(s)"), "{out}");

    // Within 90 days of the anchor's notAfter: WARNING (and the CRLs are stale too).
    let near = rfc3339(root.not_after - time::Duration::days(30));
    let (_, out, _) = gateway(&["trust", "status", "--config", p(&config), "--at", &near]);
    assert!(out.contains("WARNING: expires in"), "{out}");

    // After it: EXPIRED, a problem of its own.
    let after = rfc3339(root.not_after + time::Duration::days(1));
    let (code, out, _) = gateway(&[
        "trust",
        "status",
        "--config",
        p(&config),
        "--at",
        &after,
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["profiles"][0]["anchors"][0]["expired"], true);
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("anchor")),
        "{v:#}"
    );

    // A broken CRL file: refused, naming the file.
    std::fs::write(
        tmp.path().join("trust/hpki-org/crls/broken.crl"),
        "not a CRL",
    )
    .unwrap();
    let (code, _, err) = gateway(&["trust", "status", "--config", p(&config)]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.crl"), "{err}");
}
