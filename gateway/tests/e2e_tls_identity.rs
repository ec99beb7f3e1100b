//! End-to-end tests of TLS termination and identity, with real clients only (`curl`,
//! `openssl s_client`) against the real `hpki-gateway` binary and a recording upstream:
//!
//! - the decision for every test card on every kind of route (reason codes, nothing
//!   forwarded when denied);
//! - the exact identity headers the upstream receives;
//! - client-sent identity headers never reach the upstream (HTTP/1.1 and HTTP/2);
//! - the TLS policy of `hpki-card` (TLS 1.2 only, AEAD only, no RSA-PSS requested) and
//!   that `cryptrec-high` does allow TLS 1.3;
//! - a G2 card whose chain goes through a cross certificate;
//! - the signed assertion, verified with the `openssl` CLI from the published JWK Set;
//! - `openssl s_client` as a raw HTTP/1.1 client.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use pki_tests::manifest::{LeafEntry, SubjectKind};
use serde_json::Value;
use support::{pki, Gateway, Received};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const ACCEPT_JSON: [&str; 2] = ["-H", "Accept: application/json"];

/// Trust profiles of `support::config`, in configuration order (the first that accepts a
/// certificate wins).
const CONFIGURED_PROFILES: [&str; 2] = ["hpki-auth", "hpki-org"];

/// `allow_roles` of the "/" route in `support::config`.
const ROOT_ROUTE_ROLES: [&str; 3] = ["Medical Doctor", "Pharmacist", "Dentist"];

fn leaf(name: &str) -> &'static LeafEntry {
    pki()
        .manifest
        .leaf(name)
        .unwrap_or_else(|| panic!("no leaf {name:?} in the test PKI manifest"))
}

/// A client certificate file (the leaf, possibly followed by its chain) and its key.
struct Card {
    cert: PathBuf,
    key: PathBuf,
}

/// The card's leaf certificate alone.
fn card(name: &str) -> Card {
    Card {
        cert: pki().cert(name),
        key: pki().key(name),
    }
}

/// The card's leaf followed by the manifest's `chain` (what a client sends), as one PEM
/// bundle. Each call writes its own file, so parallel tests never see a half-written one.
fn card_with_chain(name: &str) -> Card {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let p = pki();
    let mut pem = read(&p.cert(name));
    for c in &leaf(name).chain {
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&read(&p.dir.join("pki").join(c)));
    }
    let dir = p.dir.join("bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{name}-{}.pem",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, pem).unwrap();
    Card {
        cert: file,
        key: p.key(name),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One HTTP exchange made with curl.
struct Reply {
    status: u16,
    /// `%{http_version}`: "1.1", "2", or "0" when no response came.
    version: String,
    /// Response headers, names lowercase.
    headers: Vec<(String, String)>,
    body: String,
    exit: i32,
    stderr: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?} stderr {}",
                self.status, self.body, self.stderr
            )
        })
    }

    fn describe(&self) -> String {
        format!(
            "status {} (HTTP/{}), curl exit {}, body {:?}, stderr {:?}",
            self.status, self.version, self.exit, self.body, self.stderr
        )
    }
}

/// curl against the gateway, trusting the test server CA, optionally presenting `card`.
fn curl(gw: &Gateway, card: Option<&Card>, path: &str, extra: &[&str]) -> Reply {
    let tmp = tempfile::tempdir().unwrap();
    let (head, body) = (tmp.path().join("head"), tmp.path().join("body"));
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "20",
        "-w",
        "%{http_code} %{http_version}",
    ])
    .arg("-D")
    .arg(&head)
    .arg("-o")
    .arg(&body)
    .arg("--cacert")
    .arg(pki().server_ca());
    if let Some(c) = card {
        cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
    }
    cmd.args(extra).arg(gw.url(path));
    let out = cmd.output().expect("curl must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = stdout.split_once(' ').unwrap_or(("0", "0"));
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    // The last header block is the final response (a 100 Continue would come first).
    let block = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status: status.trim().parse().unwrap_or(0),
        version: version.trim().to_owned(),
        headers,
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        exit: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command with optional stdin, bounded in time (the child is killed after `limit`).
fn run_bounded(mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_vec();
        // Closing stdin after the write is the client's EOF.
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out_reader = drain(Box::new(child.stdout.take().unwrap()));
    let err_reader = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break (s, false);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    assert!(
        !timed_out,
        "{shown} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The outcome of one `openssl s_client` run.
struct SClient {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl SClient {
    /// The handshake completed: the session summary names a real cipher.
    fn handshake_completed(&self) -> bool {
        self.stdout.contains("Cipher is ") && !self.stdout.contains("Cipher is (NONE)")
    }

    fn describe(&self) -> String {
        format!(
            "exit ok: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }

    /// The value after `label` on the first line that starts with it.
    fn line_value(&self, label: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(str::trim)
    }

    /// The HTTP response that came back through the TLS connection: status and body.
    fn http_response(&self) -> (u16, String) {
        let at = self
            .stdout
            .find("HTTP/1.1 ")
            .unwrap_or_else(|| panic!("no HTTP response in s_client output:\n{}", self.describe()));
        let response = &self.stdout[at..];
        let status = response[9..12].parse().unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

/// `openssl s_client` to the gateway, trusting the test server CA. With `request`, the
/// bytes are sent after the handshake and the output is read until the server closes.
fn s_client(gw: &Gateway, card: Option<&Card>, args: &[&str], request: Option<&str>) -> SClient {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(gw.addr.to_string())
        .arg("-CAfile")
        .arg(pki().server_ca())
        .arg("-verify_return_error");
    if let Some(c) = card {
        cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
    }
    if request.is_some() {
        cmd.arg("-ign_eof");
    }
    cmd.args(args);
    let out = run_bounded(cmd, request.map(str::as_bytes), Duration::from_secs(20));
    SClient {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn raw_get(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
}

/// A tiny, independent percent-decoder (the gateway encodes non-ASCII as UTF-8 %XX).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            // The gateway encodes '%' itself, so a bare '%' is never valid.
            assert!(i + 2 < b.len(), "truncated escape in {s:?}");
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ASCII escape");
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {s:?}")));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| panic!("{s:?} is not percent-encoded UTF-8: {e}"))
}

/// Uppercase hex digits only: "ce:9c:…" and "CE9C…" compare equal.
fn normalize_hex(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `openssl x509 -noout <flag>` of a certificate file: the text after '='.
fn openssl_x509(cert: &Path, flags: &[&str]) -> String {
    let out = Command::new("openssl")
        .arg("x509")
        .arg("-in")
        .arg(cert)
        .arg("-noout")
        .args(flags)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_once('=')
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("unexpected openssl output {text:?}"))
}

/// Every header the upstream saw, for failure messages.
fn dump(r: &Received) -> String {
    r.headers
        .iter()
        .map(|(n, v)| format!("  {n}: {v}\n"))
        .collect()
}

/// The only request the upstream received since the last `take`.
fn only_one(up: &support::Upstream, gw: &Gateway) -> Received {
    let mut seen = up.take();
    assert_eq!(
        seen.len(),
        1,
        "expected exactly one upstream request, got {seen:#?}\n{}",
        gw.log_text()
    );
    seen.remove(0)
}

fn kind_str(kind: &SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Person => "person",
        SubjectKind::Organization => "organization",
    }
}

/// Certificate-level expectation from the manifest: `Ok(profile)` for the first configured
/// profile that accepts the card, otherwise `Err(reason under hpki-auth)`.
fn certificate_expectation(l: &LeafEntry) -> Result<&'static str, String> {
    for profile in CONFIGURED_PROFILES {
        if l.expect.get(profile).map(String::as_str) == Some("valid") {
            return Ok(profile);
        }
    }
    Err(l
        .expect
        .get("hpki-auth")
        .unwrap_or_else(|| panic!("{}: no hpki-auth expectation", l.name))
        .clone())
}

/// Route-level expectation: `Ok(())` = forwarded, `Err(code)` = denied with that code.
fn route_expectation(l: &LeafEntry, cert: &Result<&str, String>, path: &str) -> Result<(), String> {
    if let Err(reason) = cert {
        return Err(reason.clone());
    }
    match path {
        "/" => {
            if l.kind != SubjectKind::Person {
                Err("kind_not_allowed".into())
            } else if l.roles.is_empty() {
                Err("no_hcrole".into())
            } else if !l
                .roles
                .iter()
                .any(|r| ROOT_ROUTE_ROLES.contains(&r.as_str()))
            {
                Err("role_not_allowed".into())
            } else {
                Ok(())
            }
        }
        "/clinic" => Ok(()),
        other => panic!("no expectation for {other}"),
    }
}

/// A compact JWS split into its parts.
struct Jws {
    header: Value,
    payload: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn decode_jws(token: &str) -> Jws {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let b64 = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    Jws {
        header: serde_json::from_slice(&b64(parts[0])).unwrap(),
        payload: serde_json::from_slice(&b64(parts[1])).unwrap(),
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature: b64(parts[2]),
    }
}

/// DER INTEGER of an unsigned big-endian number (minimal, with a 0x00 if the top bit is set).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut v = bytes[first..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, v.len() as u8];
    out.extend(v);
    out
}

/// JWS ES256 r||s → DER ECDSA-Sig-Value, what `openssl dgst -verify` reads.
fn ecdsa_sig_der(raw: &[u8]) -> Vec<u8> {
    assert_eq!(raw.len(), 64, "ES256 signature is r||s, 64 bytes");
    let mut body = der_uint(&raw[..32]);
    body.extend(der_uint(&raw[32..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// SubjectPublicKeyInfo PEM of a P-256 JWK, built by hand from x and y.
fn p256_spki_pem(jwk: &Value) -> String {
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    assert_eq!(
        (x.len(), y.len()),
        (32, 32),
        "JWK coordinates are 32 bytes each"
    );
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 00 04||x||y }
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend(x);
    der.extend(y);
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// Verifies `signing_input` against a JWS ES256 signature with `openssl dgst`.
fn openssl_verifies(dir: &Path, public_pem: &str, signing_input: &str, signature: &[u8]) -> bool {
    let (key, data, sig) = (dir.join("pub.pem"), dir.join("input"), dir.join("sig.der"));
    std::fs::write(&key, public_pem).unwrap();
    std::fs::write(&data, signing_input).unwrap();
    std::fs::write(&sig, ecdsa_sig_der(signature)).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .expect("openssl must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict = out.status.success() && text.contains("Verified OK");
    // openssl says one or the other; anything else (a key it cannot read) is a test bug.
    assert!(
        verdict || text.contains("Verification failure") || text.contains("Verification Failure"),
        "openssl dgst: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdict
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// 1. Decisions per card
// ---------------------------------------------------------------------------------------

#[test]
fn every_card_gets_the_decision_its_certificate_and_route_call_for() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    // The clinic's card is usable once the ledger names its holder.
    seed_clinic_card(&gw);
    let leaves = &pki().manifest.leaves;

    // The derivation from the manifest must not be vacuous: the brief's cases, by hand.
    let by_hand = [
        ("doctor", "/", Ok(())),
        ("clerk", "/", Err("no_hcrole")),
        ("clerk", "/clinic", Ok(())),
        ("org-clinic", "/", Err("kind_not_allowed")),
        ("org-clinic", "/clinic", Ok(())),
        ("signing-card", "/clinic", Err("signing_cert_not_for_login")),
        ("untrusted-doctor", "/", Err("untrusted_issuer")),
        ("expired", "/clinic", Err("cert_expired")),
        ("not-yet-valid", "/", Err("cert_not_yet_valid")),
        (
            "unknown-critical",
            "/",
            Err("unsupported_critical_extension"),
        ),
        ("wrong-policy", "/", Err("policy_not_accepted")),
        ("doctor-g2", "/", Ok(())),
    ];
    for (name, path, want) in by_hand {
        let l = leaf(name);
        let got = route_expectation(l, &certificate_expectation(l), path);
        assert_eq!(
            got,
            want.map_err(str::to_owned),
            "derived expectation of {name} on {path}"
        );
    }

    let mut failures = Vec::new();
    let mut forwarded = 0;
    for l in leaves {
        let cert = certificate_expectation(l);
        let c = card_with_chain(&l.name);

        // The connection's identity, as the gateway reports it.
        let r = curl(&gw, Some(&c), "/_hpki/whoami", &ACCEPT_JSON);
        match &cert {
            Ok(profile) => {
                let id = &r.json()["identity"];
                let got = (
                    r.status,
                    id["profile"].as_str(),
                    id["kind"].as_str(),
                    id["hpki_id"].as_str(),
                );
                let want = (
                    200,
                    Some(*profile),
                    Some(kind_str(&l.kind)),
                    Some(l.hpki_id.as_str()),
                );
                if got != want {
                    failures.push(format!("{} whoami: want {want:?}, got {got:?}", l.name));
                }
            }
            Err(reason) => {
                if (r.status, support::error_code(&r.body)) != (403, Some(reason.clone())) {
                    failures.push(format!(
                        "{} whoami: want 403 {reason}, got {}",
                        l.name,
                        r.describe()
                    ));
                }
            }
        }
        let stray = up.take();
        if !stray.is_empty() {
            failures.push(format!("{} whoami reached the upstream: {stray:?}", l.name));
        }

        for path in ["/", "/clinic"] {
            let want = route_expectation(l, &cert, path);
            let r = curl(&gw, Some(&c), path, &ACCEPT_JSON);
            let seen = up.take();
            match &want {
                Ok(()) => {
                    forwarded += 1;
                    let ok = r.status == 200
                        && r.body == "upstream ok"
                        && seen.len() == 1
                        && seen[0].path == path
                        && seen[0].all("x-hpki-id") == [l.hpki_id.as_str()];
                    if !ok {
                        failures.push(format!(
                            "{} {path}: want 200 forwarded once with x-hpki-id {}, got {} and \
                             {} upstream requests {seen:?}",
                            l.name,
                            l.hpki_id,
                            r.describe(),
                            seen.len()
                        ));
                    }
                }
                Err(code) => {
                    let body = serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null);
                    let ok = r.status == 403
                        && body["error"].as_str() == Some(code.as_str())
                        && body["status"] == 403
                        && body["request_id"].as_str().is_some()
                        && body["request_id"].as_str() == r.header("x-hpki-request-id")
                        && seen.is_empty();
                    if !ok {
                        failures.push(format!(
                            "{} {path}: want 403 {code} and nothing forwarded, got {} and {} \
                             upstream requests",
                            l.name,
                            r.describe(),
                            seen.len()
                        ));
                    }
                }
            }
        }
    }

    // No certificate at all (client_auth = "optional").
    for (path, want) in [
        ("/", Err("client_certificate_required")),
        ("/clinic", Err("client_certificate_required")),
        ("/public", Ok(())),
    ] {
        let r = curl(&gw, None, path, &ACCEPT_JSON);
        let seen = up.take();
        let ok = match want {
            Ok(()) => r.status == 200 && r.body == "upstream ok" && seen.len() == 1,
            Err(code) => {
                r.status == 403
                    && support::error_code(&r.body).as_deref() == Some(code)
                    && seen.is_empty()
            }
        };
        if !ok {
            failures.push(format!(
                "anonymous {path}: want {want:?}, got {} and {} upstream requests",
                r.describe(),
                seen.len()
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}\n--- gateway log\n{}",
        failures.len(),
        failures.join("\n"),
        gw.log_text()
    );
    assert!(
        leaves.len() >= 12,
        "the manifest lost cards: {}",
        leaves.len()
    );
    assert!(
        forwarded >= 10,
        "too few allowed cases to be meaningful: {forwarded}"
    );
}

// ---------------------------------------------------------------------------------------
// 2. Exact identity headers
// ---------------------------------------------------------------------------------------

#[test]
fn upstream_gets_exactly_the_documented_identity_headers() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    let l = leaf("doctor");

    let r = curl(&gw, Some(&card("doctor")), "/", &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    let seen = only_one(&up, &gw);
    let all = dump(&seen);

    let mut want: Vec<String> = [
        "kind",
        "role",
        "id",
        "name",
        "name-kanji",
        "org",
        "subject",
        "cert-serial",
        "cert-issuer",
        "cert-sha256",
        "request-id",
        "assertion",
    ]
    .iter()
    .map(|n| format!("x-hpki-{n}"))
    .collect();
    want.sort();
    // hpki_headers() keeps duplicates, so equality also means "each exactly once".
    assert_eq!(seen.hpki_headers(), want, "upstream headers:\n{all}");

    let h = |n: &str| seen.header(n).unwrap();
    assert_eq!(h("x-hpki-kind"), "person", "{all}");
    assert_eq!(h("x-hpki-role"), "Medical Doctor", "{all}");
    assert_eq!(h("x-hpki-id"), l.hpki_id, "{all}");
    assert_eq!(percent_decode(h("x-hpki-name")), l.name_romaji, "{all}");
    assert!(
        l.name_kanji.contains('\u{3000}'),
        "the manifest's kanji name has an ideographic space: {:?}",
        l.name_kanji
    );
    assert!(h("x-hpki-name-kanji").is_ascii(), "{all}");
    assert_eq!(
        percent_decode(h("x-hpki-name-kanji")),
        l.name_kanji,
        "{all}"
    );
    assert_eq!(
        Some(percent_decode(h("x-hpki-org"))),
        l.org.clone(),
        "{all}"
    );

    let cert = pki().cert("doctor");
    let fingerprint = openssl_x509(&cert, &["-fingerprint", "-sha256"]);
    assert_eq!(
        normalize_hex(h("x-hpki-cert-sha256")),
        normalize_hex(&fingerprint),
        "{all}"
    );
    assert_eq!(normalize_hex(h("x-hpki-cert-sha256")).len(), 64);
    let serial = openssl_x509(&cert, &["-serial"]);
    assert_eq!(
        normalize_hex(h("x-hpki-cert-serial")),
        normalize_hex(&serial),
        "{all}"
    );

    let subject = percent_decode(h("x-hpki-subject"));
    assert!(
        subject.contains(&format!("CN={}", l.name_romaji)) && subject.contains(&l.hpki_id),
        "subject {subject:?}"
    );
    let issuer = pki().manifest.ca(&l.issuer).expect("issuer in manifest");
    assert_eq!(
        percent_decode(h("x-hpki-cert-issuer")),
        issuer.subject,
        "{all}"
    );
    assert_eq!(h("x-hpki-assertion").split('.').count(), 3, "{all}");

    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "{all}");
    assert_eq!(seen.all("x-forwarded-proto"), ["https"], "{all}");

    // The client's response names the same request id the upstream saw.
    assert_eq!(
        r.header("x-hpki-request-id"),
        Some(h("x-hpki-request-id")),
        "response headers {:?}",
        r.headers
    );

    // An organization card on a route that admits organizations: no role header at all,
    // and the assistant the ledger names as the card's holder.
    seed_clinic_card(&gw);
    let o = leaf("org-clinic");
    let r = curl(&gw, Some(&card_with_chain("org-clinic")), "/clinic", &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    let seen = only_one(&up, &gw);
    let all = dump(&seen);
    assert_eq!(seen.all("x-hpki-kind"), ["organization"], "{all}");
    assert!(seen.all("x-hpki-role").is_empty(), "{all}");
    assert_eq!(seen.all("x-hpki-assistant-id"), ["a-001"], "{all}");
    assert_eq!(seen.all("x-hpki-supervisors"), ["Test000001"], "{all}");
    assert_eq!(seen.all("x-hpki-id"), [o.hpki_id.as_str()], "{all}");
    assert_eq!(
        percent_decode(seen.header("x-hpki-name").unwrap()),
        o.name_romaji
    );
    assert_eq!(
        r.header("x-hpki-request-id"),
        seen.header("x-hpki-request-id")
    );
}

/// Records assistant a-001 as the holder of `org-clinic`, supervised by `doctor`.
fn seed_clinic_card(gw: &Gateway) {
    use support::workflow::{gateway_store, seed_clinic};
    seed_clinic(&*gateway_store(gw), &["doctor"]);
}

// ---------------------------------------------------------------------------------------
// 3. Spoofed identity headers never reach the upstream
// ---------------------------------------------------------------------------------------

/// What a malicious client sends.
const SPOOFED: [&str; 14] = [
    // Control: an ordinary header, which must arrive (the client really sent the list).
    "X-Probe: arrived",
    "X-HPKI-Role: Medical Doctor",
    "x-hpki-role: Pharmacist",
    "X-Hpki-Id: forged",
    "X-HPKI-Assertion: forged",
    "X-HPKI-Emergency: 1",
    "X-HPKI-Confirmed-By: x",
    "X-HPKI-Confirmation-Signature: v1; digest=sha256:forged; sig=forged; cert=forged",
    "X-HPKI-Request-Id: forged-request-id",
    "X-Forwarded-Client-Cert: x",
    "Client-Cert: :x:",
    "Client-Cert-Chain: x",
    "X-Forwarded-For: 6.6.6.6",
    "Forwarded: for=6.6.6.6",
];

/// Header values a forged header could have smuggled through.
const FORGED_VALUES: [&str; 5] = ["forged", "Medical Doctor", "Pharmacist", "6.6.6.6", ":x:"];

const NEVER_FROM_CLIENT: [&str; 7] = [
    "x-hpki-emergency",
    "x-hpki-confirmed-by",
    "x-hpki-confirmation-signature",
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
    "forwarded",
];

fn spoofing_args(http2: bool) -> Vec<String> {
    let mut args = vec![if http2 { "--http2" } else { "--http1.1" }.to_owned()];
    for h in SPOOFED {
        args.push("-H".into());
        args.push(h.into());
    }
    args
}

fn check_spoofing(gw: &Gateway, up: &support::Upstream, http2: bool) {
    let args = spoofing_args(http2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let want_version = if http2 { "2" } else { "1.1" };
    let clerk = leaf("clerk");

    // (a) a clerk (no hcRole) on a route without role requirement.
    let r = curl(gw, Some(&card_with_chain("clerk")), "/clinic", &args);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    assert_eq!(
        r.version, want_version,
        "the client spoke the intended protocol"
    );
    let seen = only_one(up, gw);
    let all = dump(&seen);
    assert!(
        seen.all("x-hpki-role").is_empty(),
        "forged role reached the upstream:\n{all}"
    );
    assert_eq!(seen.all("x-hpki-id"), [clerk.hpki_id.as_str()], "{all}");
    assert_eq!(seen.all("x-hpki-kind"), ["person"], "{all}");
    assert_eq!(seen.all("x-hpki-assertion").len(), 1, "{all}");
    let assertion = decode_jws(seen.header("x-hpki-assertion").unwrap());
    assert_eq!(assertion.payload["sub"], clerk.hpki_id.as_str());
    assert_eq!(seen.all("x-hpki-request-id").len(), 1, "{all}");
    assert_eq!(
        r.header("x-hpki-request-id"),
        seen.header("x-hpki-request-id")
    );
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "{all}");
    assert_eq!(seen.all("x-probe"), ["arrived"], "{all}");
    for (name, value) in &seen.headers {
        assert!(
            !NEVER_FROM_CLIENT.contains(&name.as_str()),
            "{name} reached the upstream:\n{all}"
        );
        for forged in FORGED_VALUES {
            assert!(
                !value.contains(forged),
                "forged {forged:?} in {name}:\n{all}"
            );
        }
    }

    // (b) anonymous on an anonymous route: only the request id is gateway-owned.
    let r = curl(gw, None, "/public", &args);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    assert_eq!(r.version, want_version);
    let seen = only_one(up, gw);
    let all = dump(&seen);
    assert_eq!(seen.hpki_headers(), ["x-hpki-request-id"], "{all}");
    assert_eq!(
        r.header("x-hpki-request-id"),
        seen.header("x-hpki-request-id")
    );
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"], "{all}");
    assert_eq!(seen.all("x-probe"), ["arrived"], "{all}");
    for (name, value) in &seen.headers {
        assert!(
            !NEVER_FROM_CLIENT.contains(&name.as_str()),
            "{name} reached the upstream:\n{all}"
        );
        for forged in FORGED_VALUES {
            assert!(
                !value.contains(forged),
                "forged {forged:?} in {name}:\n{all}"
            );
        }
    }
}

#[test]
fn client_sent_identity_headers_never_reach_the_upstream_over_h1_and_h2() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    check_spoofing(&gw, &up, false);
    check_spoofing(&gw, &up, true);
}

// ---------------------------------------------------------------------------------------
// 4. TLS policy
// ---------------------------------------------------------------------------------------

#[test]
fn hpki_card_profile_is_tls12_aead_only_and_requests_no_rsa_pss() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    let doctor = card("doctor");

    // Positive control: the same client without a version floor gets in, over TLS 1.2.
    let r = curl(&gw, Some(&doctor), "/_hpki/whoami", &ACCEPT_JSON);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    assert_eq!(r.json()["identity"]["tls_version"], "TLSv1.2");

    // TLS 1.3 only: refused.
    let r = curl(&gw, Some(&doctor), "/", &["--tlsv1.3"]);
    // 35 = CURLE_SSL_CONNECT_ERROR: the handshake itself failed.
    assert!(
        r.exit == 35 && r.status == 0,
        "TLS 1.3 must not connect: {}",
        r.describe()
    );
    let s = s_client(&gw, None, &["-tls1_3"], None);
    assert!(
        !s.ok && !s.handshake_completed(),
        "-tls1_3:\n{}",
        s.describe()
    );

    // Cipher suites.
    for (cipher, accepted) in [
        ("ECDHE-ECDSA-AES128-SHA256", false),
        ("ECDHE-ECDSA-AES128-SHA", false),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", false),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", true),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", true),
    ] {
        let s = s_client(&gw, None, &["-tls1_2", "-cipher", cipher], None);
        assert_eq!(
            (s.ok, s.handshake_completed()),
            (accepted, accepted),
            "{cipher}:\n{}",
            s.describe()
        );
        if accepted {
            assert!(
                s.stdout.contains(&format!("Cipher is {cipher}")),
                "{cipher}:\n{}",
                s.describe()
            );
            assert_eq!(
                s.line_value("Protocol  :"),
                Some("TLSv1.2"),
                "{}",
                s.describe()
            );
        }
    }

    // The CertificateRequest: PKCS#1 v1.5 and ECDSA only, no RSA-PSS.
    let s = s_client(&gw, Some(&doctor), &["-tls1_2"], None);
    assert!(s.ok && s.handshake_completed(), "{}", s.describe());
    let requested = s
        .line_value("Requested Signature Algorithms:")
        .unwrap_or_else(|| panic!("no CertificateRequest sigalgs:\n{}", s.describe()));
    let mut lists = vec![("Requested", requested)];
    if let Some(shared) = s.line_value("Shared Requested Signature Algorithms:") {
        lists.push(("Shared Requested", shared));
    }
    for (what, list) in lists {
        let algs: Vec<&str> = list.split(':').map(str::trim).collect();
        assert!(algs.contains(&"RSA+SHA256"), "{what}: {list}");
        assert!(
            algs.iter().all(|a| !a.to_ascii_lowercase().contains("pss")),
            "{what} signature algorithms include RSA-PSS: {list}"
        );
    }

    // A TLS 1.2 client that can only sign PKCS#1 v1.5 (like an HPKI card) logs in.
    let s = s_client(
        &gw,
        Some(&doctor),
        &["-tls1_2", "-client_sigalgs", "RSA+SHA256"],
        Some(&raw_get("/_hpki/whoami")),
    );
    assert!(s.handshake_completed(), "{}", s.describe());
    assert!(s.stdout.contains("Peer signature type"), "{}", s.describe());
    let (status, body) = s.http_response();
    assert_eq!(status, 200, "{}\n{}", s.describe(), gw.log_text());
    let v: Value = serde_json::Deserializer::from_str(&body)
        .into_iter::<Value>()
        .next()
        .unwrap_or_else(|| panic!("no JSON body:\n{}", s.describe()))
        .unwrap();
    assert_eq!(v["identity"]["role"], "Medical Doctor", "{v}");
    assert_eq!(v["identity"]["tls_version"], "TLSv1.2", "{v}");

    assert!(up.take().is_empty(), "nothing here is routed upstream");
}

#[test]
fn cryptrec_high_profile_negotiates_tls13_with_a_software_key() {
    let (gw, up) = support::gateway("cryptrec-high", "optional");
    let r = curl(
        &gw,
        Some(&card("doctor")),
        "/_hpki/whoami",
        &["--tlsv1.3", ACCEPT_JSON[0], ACCEPT_JSON[1]],
    );
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    let v = r.json();
    assert_eq!(v["identity"]["tls_version"], "TLSv1.3", "{v}");
    assert_eq!(v["identity"]["role"], "Medical Doctor", "{v}");

    let r = curl(&gw, Some(&card("doctor")), "/", &["--tlsv1.3"]);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    assert_eq!(only_one(&up, &gw).all("x-hpki-role"), ["Medical Doctor"]);

    // Control for the RSA-PSS check of `hpki-card`: this profile does request PSS, and
    // s_client shows it in the same line.
    let s = s_client(&gw, Some(&card("doctor")), &["-tls1_2"], None);
    let requested = s
        .line_value("Requested Signature Algorithms:")
        .unwrap_or_else(|| panic!("no CertificateRequest sigalgs:\n{}", s.describe()));
    assert!(requested.contains("RSA-PSS"), "{requested}");

    // Still AEAD only under this profile.
    let s = s_client(
        &gw,
        None,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"],
        None,
    );
    assert!(!s.ok && !s.handshake_completed(), "{}", s.describe());
}

// ---------------------------------------------------------------------------------------
// 5. A G2 card through the cross certificate
// ---------------------------------------------------------------------------------------

#[test]
fn g2_card_is_accepted_with_its_cross_certificate_chain_only() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    let l = leaf("doctor-g2");
    assert!(
        l.chain.iter().any(|c| c.contains("cross")),
        "the G2 chain goes through the cross certificate: {:?}",
        l.chain
    );

    let r = curl(&gw, Some(&card_with_chain("doctor-g2")), "/", &ACCEPT_JSON);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    let seen = only_one(&up, &gw);
    assert_eq!(
        seen.all("x-hpki-id"),
        [l.hpki_id.as_str()],
        "{}",
        dump(&seen)
    );
    assert_eq!(
        seen.all("x-hpki-role"),
        ["Medical Doctor"],
        "{}",
        dump(&seen)
    );

    let r = curl(&gw, Some(&card("doctor-g2")), "/", &ACCEPT_JSON);
    assert_eq!(
        (r.status, support::error_code(&r.body).as_deref()),
        (403, Some("untrusted_issuer")),
        "{}\n{}",
        r.describe(),
        gw.log_text()
    );
    assert!(up.take().is_empty(), "a refused card was forwarded");
}

// ---------------------------------------------------------------------------------------
// 6. The assertion, verified independently
// ---------------------------------------------------------------------------------------

#[test]
fn assertion_verifies_with_openssl_against_the_published_jwks() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    let l = leaf("doctor");

    let r = curl(&gw, None, "/.well-known/hpki-gateway/jwks.json", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let jwks = r.json();
    let keys = jwks["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 1, "{jwks}");
    let jwk = &keys[0];
    assert!(jwk.get("d").is_none(), "private key published: {jwk}");
    let public_pem = p256_spki_pem(jwk);
    assert!(
        up.take().is_empty(),
        "the JWKS is served by the gateway itself"
    );

    let before = unix_now();
    let r = curl(&gw, Some(&card("doctor")), "/", &[]);
    let after = unix_now();
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), gw.log_text());
    let seen = only_one(&up, &gw);
    let token = seen.header("x-hpki-assertion").expect("assertion sent");
    let jws = decode_jws(token);

    assert_eq!(jws.header["alg"], "ES256", "{}", jws.header);
    assert_eq!(jws.header["kid"], jwk["kid"], "{}", jws.header);
    let p = &jws.payload;
    assert_eq!(p["iss"], "hpki-gateway", "{p}");
    assert_eq!(p["aud"], "/", "the audience is the route: {p}");
    assert_eq!(p["sub"], l.hpki_id.as_str(), "{p}");
    assert_eq!(p["role"], "Medical Doctor", "{p}");
    assert_eq!(p["jti"].as_str(), seen.header("x-hpki-request-id"), "{p}");
    let (iat, exp) = (p["iat"].as_u64().unwrap(), p["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 60, "{p}");
    assert!(
        before <= iat && iat <= after,
        "iat {iat} not in [{before}, {after}]"
    );

    let tmp = tempfile::tempdir().unwrap();
    assert!(
        openssl_verifies(tmp.path(), &public_pem, &jws.signing_input, &jws.signature),
        "openssl does not verify the gateway's assertion: {token}"
    );

    // One payload character changed: the signature no longer verifies.
    let (header_b64, payload_b64) = jws.signing_input.split_once('.').unwrap();
    let mut payload: Vec<u8> = payload_b64.bytes().collect();
    let i = payload.len() / 2;
    payload[i] = if payload[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{header_b64}.{}", String::from_utf8(payload).unwrap());
    assert_ne!(tampered, jws.signing_input);
    assert!(
        !openssl_verifies(tmp.path(), &public_pem, &tampered, &jws.signature),
        "a tampered payload verified"
    );

    // The audience follows the route.
    let r = curl(&gw, Some(&card("doctor")), "/clinic/x", &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = only_one(&up, &gw);
    let jws = decode_jws(seen.header("x-hpki-assertion").unwrap());
    assert_eq!(jws.payload["aud"], "/clinic", "{}", jws.payload);
    assert!(openssl_verifies(
        tmp.path(),
        &public_pem,
        &jws.signing_input,
        &jws.signature
    ));
}

// ---------------------------------------------------------------------------------------
// 7. openssl s_client as the HTTP client
// ---------------------------------------------------------------------------------------

#[test]
fn openssl_s_client_pharmacist_reaches_the_upstream() {
    let (gw, up) = support::gateway("hpki-card", "optional");
    let s = s_client(
        &gw,
        Some(&card_with_chain("pharmacist")),
        &[],
        Some(&raw_get("/rx")),
    );
    assert!(s.handshake_completed(), "{}", s.describe());
    let (status, body) = s.http_response();
    assert_eq!(status, 200, "{}\n{}", s.describe(), gw.log_text());
    assert!(body.starts_with("upstream ok"), "{body:?}");
    let seen = only_one(&up, &gw);
    assert_eq!(seen.path, "/rx");
    assert_eq!(seen.all("x-hpki-role"), ["Pharmacist"], "{}", dump(&seen));
    assert_eq!(seen.all("x-hpki-id"), [leaf("pharmacist").hpki_id.as_str()]);
}
