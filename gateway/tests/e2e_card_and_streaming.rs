//! End-to-end tests with real peers only: a PKCS#1-only HPKI card (SoftHSM2 driven by
//! pkcs11-tool, used by curl through OpenSSL's pkcs11 engine), large downloads and uploads
//! streamed with flat gateway memory, limits and upstream failures, WebSocket upgrades,
//! and graceful shutdown of the real `hpki-gateway` binary.
//!
//! Needs the packages of `deploy/setup.sh` (softhsm2, opensc, libengine-pkcs11-openssl,
//! curl, openssl, procps). A missing peer fails the test with a message naming it; nothing
//! is skipped.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{pkcs11_tool, run_ok, text, Gateway};

const KEY_LABEL: &str = "Private key of HPKI";
const USER_PIN: &str = "1234";
const KEY_URI: &str = "pkcs11:token=HPKI%20Application;id=%17;type=private?pin-value=1234";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
/// Growth of the gateway's peak RSS allowed while one large body passes through.
const RSS_BUDGET_KIB: u64 = 48 * KIB;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn new_listen() -> SocketAddr {
    format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap()
}

/// One curl run that wrote `body` then `\n<http_code>` on stdout.
struct Http {
    status: u16,
    body: String,
    stderr: String,
    exit: i32,
}

impl Http {
    fn error_code(&self) -> Option<String> {
        support::error_code(&self.body)
    }
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "curl exit {} status {} body {:?} stderr {:?}",
            self.exit, self.status, self.body, self.stderr
        )
    }
}

/// curl trusting the test server CA; `card` names a software card of the test PKI.
fn curl_cmd(card: Option<&str>) -> Command {
    let p = support::pki();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"])
        .arg("--cacert")
        .arg(p.server_ca());
    if let Some(card) = card {
        cmd.arg("--cert")
            .arg(p.cert(card))
            .arg("--key")
            .arg(p.key(card));
    }
    cmd
}

/// Runs `cmd` against `url`, reading body and status (`-w`), JSON denials preferred.
fn http(mut cmd: Command, url: &str) -> Http {
    cmd.args([
        "-H",
        "Accept: application/json",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg(url);
    let out = cmd
        .output()
        .expect("curl must be installed (deploy/setup.sh)");
    let stdout = text(&out.stdout);
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Http {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: text(&out.stderr),
        exit: out.status.code().unwrap_or(-1),
    }
}

fn get(gw: &Gateway, card: Option<&str>, path: &str, extra: &[&str]) -> Http {
    let mut cmd = curl_cmd(card);
    cmd.args(extra);
    http(cmd, &gw.url(path))
}

/// The standard config of the harness, with `tail` appended (`[limits]`, `[timeouts]`...).
fn config_with(listen: SocketAddr, upstream: SocketAddr, profile: &str, tail: &str) -> String {
    support::config(listen, upstream, profile, "required", &format!("\n{tail}"))
}

/// Polls `f` every 20 ms until it returns `Some` or `limit` passes.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for a child; kills it when the bound passes.
fn wait_child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    match poll(limit, || child.try_wait().ok().flatten()) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
    }
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A sparse file of `len` zero bytes (like `truncate -s`).
fn sparse_file(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

// ---------------------------------------------------------------------------------------
// The card: SoftHSM2 token shaped like an HPKI card
// ---------------------------------------------------------------------------------------

struct Card {
    _dir: tempfile::TempDir,
    /// SoftHSM2 config offering every mechanism (key generation happens under it).
    all_mechanisms: PathBuf,
    /// The same token with RSA-PSS and raw RSA hidden: PKCS#1 v1.5 only.
    pkcs1_only: PathBuf,
    /// OpenSSL config that points the pkcs11 engine at SoftHSM2 (not at p11-kit's proxy).
    openssl_conf: PathBuf,
    /// The card's certificate as issued by the test PKI's auth-ca (also on the token).
    cert: PathBuf,
}

impl Card {
    /// Token, key pair generated on the token, HPKI-shaped authentication certificate for
    /// its public key issued with the openssl CLI by the test auth-ca, certificate written
    /// back onto the token.
    fn create() -> Card {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let support::SoftToken {
            all_mechanisms,
            pkcs1_only,
        } = support::softhsm_token(d, USER_PIN);
        run_ok(
            pkcs11_tool(&all_mechanisms)
                .args(["--login", "--pin", USER_PIN, "--keypairgen"])
                .args(["--key-type", "rsa:2048", "--id", "17", "--label", KEY_LABEL]),
            "pkcs11-tool --keypairgen",
        );
        let pub_pem = support::token_public_key_pem(&all_mechanisms, d);
        let pki = support::pki();
        let cert = d.join("card.pem");
        support::AuthCardIssue {
            ca_pem: &pki.cert("auth-ca"),
            ca_key: &pki.key("auth-ca"),
            subject: "/C=JP/O=Test Clinic/CN=Card Holder/serialNumber=CARD0001",
            serial: "0x4850b1c4a2d0",
            days: 1825,
            extra_extensions: "",
        }
        .issue(&pub_pem, &cert);
        support::write_token_certificate(&all_mechanisms, USER_PIN, &cert);

        let openssl_conf = support::openssl_pkcs11_conf(d);

        Card {
            _dir: dir,
            all_mechanisms,
            pkcs1_only,
            openssl_conf,
            cert,
        }
    }

    /// The mechanisms the token offers under a SoftHSM2 config (`pkcs11-tool -M`).
    fn mechanisms(&self, softhsm_conf: &Path) -> String {
        text(&run_ok(pkcs11_tool(softhsm_conf).arg("-M"), "pkcs11-tool -M").stdout)
    }

    /// Fails the test, naming the problem, when OpenSSL cannot load the pkcs11 engine.
    fn assert_engine_loads(&self) {
        let out = Command::new("openssl")
            .args(["engine", "-t", "-c", "pkcs11"])
            .env("OPENSSL_CONF", &self.openssl_conf)
            .env("SOFTHSM2_CONF", &self.pkcs1_only)
            .output()
            .expect("openssl must be installed");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success() && all.contains("[ available ]"),
            "OpenSSL's pkcs11 engine cannot be loaded, so the card cannot be used \
             (install libengine-pkcs11-openssl): {all}"
        );
    }

    /// curl presenting the card through the pkcs11 engine, the token seen through
    /// `softhsm_conf`.
    fn get(&self, softhsm_conf: &Path, gw: &Gateway, path: &str, extra: &[&str]) -> Http {
        let mut cmd = curl_cmd(None);
        cmd.env("SOFTHSM2_CONF", softhsm_conf)
            .env("OPENSSL_CONF", &self.openssl_conf)
            .args(["--engine", "pkcs11", "--key-type", "ENG", "--key", KEY_URI])
            .arg("--cert")
            .arg(&self.cert)
            .args(extra);
        let r = http(cmd, &gw.url(path));
        // 53: engine not found, 54: engine cannot be set as default, 58: key/cert unusable.
        assert!(
            ![53, 54, 58].contains(&r.exit),
            "curl could not use the card through the pkcs11 engine: {r}"
        );
        r
    }
}

fn whoami(r: &Http) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("whoami is not JSON ({e}): {r}"));
    v["identity"].clone()
}

// ---------------------------------------------------------------------------------------
// 1. A PKCS#1-only HPKI card logs in over TLS 1.2
// ---------------------------------------------------------------------------------------

#[test]
fn pkcs1_only_card_logs_in_over_tls12_and_cannot_over_tls13() {
    let started = Instant::now();
    let card = Card::create();

    // The restriction really removes PSS (and raw RSA) and keeps PKCS#1 v1.5.
    let all = card.mechanisms(&card.all_mechanisms);
    let pkcs1 = card.mechanisms(&card.pkcs1_only);
    assert!(all.contains("RSA-PKCS-PSS"), "unrestricted token: {all}");
    assert!(
        !pkcs1.contains("PSS"),
        "PKCS#1-only token still offers PSS: {pkcs1}"
    );
    assert!(
        !pkcs1.contains("RSA-X-509"),
        "PKCS#1-only token offers raw RSA: {pkcs1}"
    );
    assert!(
        pkcs1.contains("RSA-PKCS,"),
        "PKCS#1-only token lost RSA-PKCS: {pkcs1}"
    );
    assert!(pkcs1.contains("SHA256-RSA-PKCS,"), "{pkcs1}");
    card.assert_engine_loads();

    // hpki-card profile (TLS 1.2, no PSS in CertificateRequest): the card logs in.
    let (gw12, up12) = support::gateway("hpki-card", "required");
    let r = card.get(&card.pkcs1_only, &gw12, "/", &[]);
    assert_eq!(r.status, 200, "{r}\n{}", log_tail(&gw12.log_text()));
    assert_eq!(r.body, "upstream ok");
    let seen = up12.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("x-hpki-role"), Some("Medical Doctor"));
    assert_eq!(seen[0].header("x-hpki-id"), Some("CARD0001"));
    assert_eq!(seen[0].header("x-hpki-name"), Some("Card Holder"));
    let id = whoami(&card.get(&card.pkcs1_only, &gw12, "/_hpki/whoami", &[]));
    assert_eq!(id["tls_version"], "TLSv1.2", "{id}");
    assert_eq!(id["hpki_id"], "CARD0001", "{id}");
    assert_eq!(id["profile"], "hpki-auth", "{id}");

    // cryptrec-high with TLS 1.3: CertificateVerify must be RSA-PSS, the card cannot.
    let (gw13, up13) = support::gateway("cryptrec-high", "required");
    let r = card.get(&card.pkcs1_only, &gw13, "/", &["--tlsv1.3"]);
    assert_ne!(r.exit, 0, "a PKCS#1-only card logged in over TLS 1.3: {r}");
    assert_eq!(r.status, 0, "{r}");
    // 35: the TLS handshake failed, because the card refused the PSS signature.
    assert_eq!(r.exit, 35, "expected a handshake failure: {r}");
    assert!(
        r.stderr.contains("Mechanism invalid"),
        "the handshake failed for another reason than the card's missing PSS: {r}"
    );
    println!(
        "PKCS#1-only card, TLS 1.3: curl exit {}: {}",
        r.exit,
        r.stderr.trim()
    );
    assert!(
        up13.take().is_empty(),
        "the upstream saw a request from a failed handshake"
    );
    let failed = poll(Duration::from_secs(5), || {
        gw13.log_text()
            .contains("TLS handshake failed")
            .then_some(())
    });
    assert!(
        failed.is_some(),
        "the gateway did not log the failed handshake:\n{}",
        log_tail(&gw13.log_text())
    );

    // Positive control: the same key, with PSS available, logs in over TLS 1.3.
    let r = card.get(&card.all_mechanisms, &gw13, "/", &["--tlsv1.3"]);
    assert_eq!(r.status, 200, "{r}\n{}", log_tail(&gw13.log_text()));
    let seen = up13.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("x-hpki-role"), Some("Medical Doctor"));
    assert_eq!(seen[0].header("x-hpki-id"), Some("CARD0001"));
    let id = whoami(&card.get(&card.all_mechanisms, &gw13, "/_hpki/whoami", &["--tlsv1.3"]));
    assert_eq!(id["tls_version"], "TLSv1.3", "{id}");
    println!("card test: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 2, 3. Large bodies stream through with flat memory
// ---------------------------------------------------------------------------------------

#[test]
fn download_of_200_mb_streams_with_flat_memory() {
    const TOTAL: u64 = 200 * MIB;
    let (gw, upstream) = support::gateway("hpki-card", "required");
    // Warm up: one request, so per-connection and TLS buffers are in the baseline.
    let warm = get(&gw, Some("doctor"), "/", &[]);
    assert_eq!(warm.status, 200, "{warm}");
    upstream.take();
    let before = gw.peak_rss_kib();
    assert!(before > 0, "cannot read VmHWM of the gateway");

    let out = curl_cmd(Some("doctor"))
        .args(["--max-time", "90", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(gw.url(&format!("/big/{TOTAL}")))
        .output()
        .expect("curl");
    let after = gw.peak_rss_kib();
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "download failed: {report} {}\n{}",
        text(&out.stderr),
        log_tail(&gw.log_text())
    );
    let (code, size) = report.split_once(' ').unwrap_or(("", ""));
    assert_eq!(code, "200", "{report}");
    assert_eq!(size.parse::<u64>().ok(), Some(TOTAL), "{report}");
    let seen = upstream.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, format!("/big/{TOTAL}"));
    assert_eq!(seen[0].header("x-hpki-role"), Some("Medical Doctor"));

    let grown = after.saturating_sub(before);
    println!(
        "download 200 MiB: gateway VmHWM before {before} KiB, after {after} KiB, grew {grown} KiB (budget {RSS_BUDGET_KIB} KiB)"
    );
    assert!(
        grown < RSS_BUDGET_KIB,
        "the gateway's peak RSS grew by {grown} KiB while streaming {TOTAL} bytes: buffered?"
    );
}

#[test]
fn upload_of_150_mb_streams_with_flat_memory() {
    const TOTAL: u64 = 150 * MIB;
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let gw = Gateway::start(
        &config_with(
            listen,
            upstream.addr,
            "hpki-card",
            "[limits]\nmax_request_body = \"300MiB\"\n",
        ),
        listen,
    );
    let warm = get(&gw, Some("doctor"), "/", &[]);
    assert_eq!(warm.status, 200, "{warm}");
    upstream.take();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    sparse_file(&file, TOTAL);
    let before = gw.peak_rss_kib();
    assert!(before > 0, "cannot read VmHWM of the gateway");

    let mut cmd = curl_cmd(Some("doctor"));
    cmd.args([
        "--max-time",
        "90",
        "-H",
        "Content-Type: application/octet-stream",
    ])
    .arg("--data-binary")
    .arg(format!("@{}", file.display()));
    let r = http(cmd, &gw.url("/upload"));
    let after = gw.peak_rss_kib();
    assert_eq!(r.status, 200, "{r}\n{}", log_tail(&gw.log_text()));
    let seen = upstream.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/upload");
    assert_eq!(seen[0].body_len, TOTAL);
    assert_eq!(seen[0].header("x-hpki-role"), Some("Medical Doctor"));

    let grown = after.saturating_sub(before);
    println!(
        "upload 150 MiB: gateway VmHWM before {before} KiB, after {after} KiB, grew {grown} KiB (budget {RSS_BUDGET_KIB} KiB)"
    );
    assert!(
        grown < RSS_BUDGET_KIB,
        "the gateway's peak RSS grew by {grown} KiB while streaming a {TOTAL}-byte upload: buffered?"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Limits and failures
// ---------------------------------------------------------------------------------------

#[test]
fn body_over_max_request_body_is_413_and_never_forwarded() {
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let gw = Gateway::start(
        &config_with(
            listen,
            upstream.addr,
            "hpki-card",
            "[limits]\nmax_request_body = \"1MiB\"\n",
        ),
        listen,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two-mib.bin");
    sparse_file(&file, 2 * MIB);
    let data = format!("@{}", file.display());

    // Declared with Content-Length: refused before anything is forwarded, over HTTP/2
    // (curl's choice here) and over HTTP/1.1 (curl sends `Expect: 100-continue`).
    for version in ["--http2", "--http1.1"] {
        let r = get(
            &gw,
            Some("doctor"),
            "/upload",
            &[version, "--data-binary", &data],
        );
        assert_eq!(r.status, 413, "{version}: {r}");
        assert_eq!(r.error_code().as_deref(), Some("request_too_large"), "{r}");
        assert!(
            upstream.take().is_empty(),
            "{version}: the upstream saw the oversized request"
        );
    }

    // A body exactly at the limit passes (the limit is not off by one).
    let exact = dir.path().join("one-mib.bin");
    sparse_file(&exact, MIB);
    let r = get(
        &gw,
        Some("doctor"),
        "/upload",
        &["--data-binary", &format!("@{}", exact.display())],
    );
    assert_eq!(r.status, 200, "{r}");
    let seen = upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, MIB);

    // No length declared (HTTP/2 DATA frames): the stream is cut at the limit, 413, and
    // the upstream never receives the whole body.
    let r = get(
        &gw,
        Some("doctor"),
        "/upload",
        &[
            "--http2",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(r.status, 413, "{r}\n{}", log_tail(&gw.log_text()));
    assert_eq!(r.error_code().as_deref(), Some("request_too_large"), "{r}");
    let seen = upstream.take();
    assert!(
        seen.iter().all(|s| s.body_len <= MIB),
        "the upstream received more than the limit: {:?}",
        seen.iter().map(|s| s.body_len).collect::<Vec<_>>()
    );
}

/// Regression test: over HTTP/1.1, a client still sending a body the gateway will not
/// forward (over `max_request_body`) used to hit a TCP reset and lose its 413 (curl:
/// `(55) Send failure: Broken pipe`) in 5-20 % of attempts. The gateway now drains the
/// rest of such a body (bounded) while answering, so every attempt gets its 413 page.
#[test]
fn oversized_http1_upload_always_gets_its_413() {
    const ATTEMPTS: usize = 50;
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let gw = Gateway::start(
        &config_with(
            listen,
            upstream.addr,
            "hpki-card",
            "[limits]\nmax_request_body = \"1MiB\"\n",
        ),
        listen,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eight-mib.bin");
    sparse_file(&file, 8 * MIB);
    let data = format!("@{}", file.display());
    let mut lost = Vec::new();
    for attempt in 0..ATTEMPTS {
        let r = get(
            &gw,
            Some("doctor"),
            "/upload",
            &[
                "--http1.1",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &data,
            ],
        );
        if r.status != 413 {
            lost.push(format!("attempt {attempt}: {r}"));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {ATTEMPTS} oversized HTTP/1.1 uploads did not get their 413:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

#[test]
fn upstream_down_is_502() {
    // A port that was free a moment ago: nothing listens there.
    let closed: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    assert!(
        TcpStream::connect(closed).is_err(),
        "{closed} unexpectedly listens"
    );
    let listen = new_listen();
    let gw = Gateway::start(&config_with(listen, closed, "hpki-card", ""), listen);
    let r = get(&gw, Some("doctor"), "/records/1", &[]);
    assert_eq!(r.status, 502, "{r}");
    assert_eq!(
        r.error_code().as_deref(),
        Some("upstream_unavailable"),
        "{r}"
    );
}

/// A TCP server that accepts, records what arrives, and never answers.
fn silent_upstream() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let rec = rec.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Hold the connection open; read until the peer closes.
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    rec.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, received)
}

#[test]
fn slow_upstream_is_504_after_upstream_response_timeout() {
    let (slow, received) = silent_upstream();
    let listen = new_listen();
    let gw = Gateway::start(
        &config_with(
            listen,
            slow,
            "hpki-card",
            "[timeouts]\nupstream_response = \"1s\"\n",
        ),
        listen,
    );
    let t0 = Instant::now();
    let r = get(&gw, Some("doctor"), "/slow/report", &[]);
    let took = t0.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert_eq!(r.error_code().as_deref(), Some("upstream_timeout"), "{r}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "504 after {took:?}, expected about 1 s"
    );
    // The request did reach the silent upstream (so the timeout was about its answer).
    let head = text(&received.lock().unwrap());
    assert!(head.starts_with("GET /slow/report HTTP/1.1"), "{head:?}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-hpki-role: medical doctor"),
        "{head:?}"
    );
}

#[test]
fn host_specific_route_answers_no_route_for_other_hosts() {
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let standard = support::config(listen, upstream.addr, "hpki-card", "required", "");
    // Keep server/assertion/trust, replace every route by one for a single host.
    let head = &standard[..standard.find("[[route]]").expect("routes in the config")];
    let cfg = format!(
        "{head}[[route]]\nhost = \"portal.example.jp\"\npath = \"/\"\nupstream = \"http://{}\"\nallow_roles = [\"Medical Doctor\"]\n",
        upstream.addr
    );
    let gw = Gateway::start(&cfg, listen);

    for version in ["--http1.1", "--http2"] {
        let r = get(
            &gw,
            Some("doctor"),
            "/",
            &[version, "-H", "Host: other.example.jp"],
        );
        assert_eq!(r.status, 404, "{version}: {r}");
        assert_eq!(
            r.error_code().as_deref(),
            Some("no_route"),
            "{version}: {r}"
        );
        // No Host match by IP either.
        let r = get(&gw, Some("doctor"), "/", &[version]);
        assert_eq!(r.status, 404, "{version} (Host 127.0.0.1): {r}");
        assert_eq!(r.error_code().as_deref(), Some("no_route"), "{r}");
        assert!(upstream.take().is_empty());

        // Positive control: the route's own host (any case, with a port) is served.
        let r = get(
            &gw,
            Some("doctor"),
            "/",
            &[version, "-H", "Host: Portal.Example.JP:8443"],
        );
        assert_eq!(r.status, 200, "{version}: {r}");
        let seen = upstream.take();
        assert_eq!(seen.len(), 1, "{version}: {seen:?}");
        assert_eq!(
            seen[0].header("x-forwarded-host"),
            Some("Portal.Example.JP:8443")
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. WebSocket / Upgrade
// ---------------------------------------------------------------------------------------

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn ws_accept(key: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WS_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Reads an HTTP head (through the blank line), bounded in size.
fn read_head(r: &mut impl Read) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("head too long"));
        }
        if r.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(text(&head))
}

fn header_of<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// A WebSocket-ish upstream: answers an Upgrade request with 101 and then echoes every
/// byte. Records each request head.
fn echo_upgrade_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let rec = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let rec = rec.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let Ok(head) = read_head(&mut conn) else {
                    return;
                };
                rec.lock().unwrap().push(head.clone());
                let upgrade = header_of(&head, "upgrade")
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case("websocket"));
                let key = header_of(&head, "sec-websocket-key")
                    .first()
                    .map(|k| k.to_string());
                let (true, Some(key)) = (upgrade, key) else {
                    let _ = conn.write_all(
                        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    return;
                };
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    ws_accept(&key)
                );
                if conn.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 8192];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// A blocking rustls client presenting the test PKI's software card over HTTP/1.1.
fn tls_client(
    gw: &Gateway,
    card: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    support::card_connection(gw, card)
}

#[test]
fn websocket_upgrade_passes_through_with_identity_headers() {
    let (up, heads) = echo_upgrade_upstream();
    let listen = new_listen();
    let gw = Gateway::start(&config_with(listen, up, "hpki-card", ""), listen);
    let mut tls = tls_client(&gw, "doctor");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /ws/chat?room=1 HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-HPKI-Role: Pharmacist\r\n\r\n",
        gw.addr
    );
    tls.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut tls)
        .unwrap_or_else(|e| panic!("no response head: {e}\n{}", log_tail(&gw.log_text())));
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "expected 101 Switching Protocols, got:\n{head}\n{}",
        log_tail(&gw.log_text())
    );
    assert_eq!(
        header_of(&head, "sec-websocket-accept"),
        vec![ws_accept(key).as_str()],
        "{head}"
    );
    assert!(
        header_of(&head, "upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket")),
        "{head}"
    );

    // Bytes after the 101 go to the upstream and come back, in both directions, twice.
    for message in [
        &b"hello through the gateway"[..],
        &[0x81, 0x05, 0, 1, 2, 3, 4][..],
    ] {
        tls.write_all(message).unwrap();
        tls.flush().unwrap();
        let mut echoed = vec![0u8; message.len()];
        tls.read_exact(&mut echoed)
            .unwrap_or_else(|e| panic!("no echo after the upgrade: {e}"));
        assert_eq!(echoed, message);
    }

    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let seen = &heads[0];
    assert!(
        seen.starts_with("GET /ws/chat?room=1 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert_eq!(
        header_of(seen, "x-hpki-role"),
        vec!["Medical Doctor"],
        "{seen}"
    );
    assert_eq!(header_of(seen, "x-hpki-id"), vec!["Test000001"], "{seen}");
    assert_eq!(header_of(seen, "x-hpki-assertion").len(), 1, "{seen}");
    assert_eq!(header_of(seen, "sec-websocket-key"), vec![key], "{seen}");
    assert!(
        header_of(seen, "upgrade")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("websocket")),
        "{seen}"
    );
    assert!(
        header_of(seen, "connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("upgrade")),
        "{seen}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ---------------------------------------------------------------------------------------

/// The gateway binary started by this file, so that its exit status can be read.
struct OwnedGateway {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnedGateway {
    fn start(config_text: &str, listen: SocketAddr) -> OwnedGateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        let config_text = format!(
            "{config_text}\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            support::free_port()
        );
        std::fs::write(&config, config_text).unwrap();
        let log = dir.path().join("gateway.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start hpki-gateway");
        let mut gw = OwnedGateway {
            child,
            addr: listen,
            log,
            _dir: dir,
        };
        let up = poll(Duration::from_secs(20), || {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("hpki-gateway exited with {status}:\n{}", gw.log_text());
            }
            TcpStream::connect(listen).ok()
        });
        assert!(
            up.is_some(),
            "hpki-gateway did not listen:\n{}",
            gw.log_text()
        );
        gw
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn sigterm(&self) {
        run_ok(
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]),
            "kill -TERM",
        );
    }
}

impl Drop for OwnedGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throttled download through the gateway, running in the background.
fn slow_download(gw: &OwnedGateway, total: u64, rate: &str) -> Child {
    curl_cmd(Some("doctor"))
        .args(["--max-time", "60", "--limit-rate", rate, "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .arg(gw.url(&format!("/big/{total}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl")
}

fn child_output(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    (text(&out.stdout), text(&out.stderr))
}

/// SIGTERM, then: new connections refused while the transfer goes on. Returns when
/// the listener is closed.
fn sigterm_and_wait_for_refusal(gw: &OwnedGateway) -> Instant {
    gw.sigterm();
    let t0 = Instant::now();
    // Each probe is closed at once so that it does not hold the drain open.
    let refused = poll(Duration::from_secs(3), || {
        TcpStream::connect_timeout(&gw.addr, Duration::from_millis(200))
            .is_err()
            .then_some(())
    });
    assert!(
        refused.is_some(),
        "new connections still accepted 3 s after SIGTERM:\n{}",
        gw.log_text()
    );
    println!("listener closed {:?} after SIGTERM", t0.elapsed());
    t0
}

#[test]
fn sigterm_refuses_new_connections_and_finishes_the_in_flight_download() {
    const TOTAL: u64 = 12 * MIB;
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let mut gw = OwnedGateway::start(
        &config_with(
            listen,
            upstream.addr,
            "hpki-card",
            "[timeouts]\nshutdown_grace = \"15s\"\n",
        ),
        listen,
    );
    // About 3 s at 4 MB/s.
    let mut download = slow_download(&gw, TOTAL, "4M");
    let reached = poll(Duration::from_secs(10), || {
        (!upstream.received.lock().unwrap().is_empty()).then_some(())
    });
    assert!(reached.is_some(), "the download never reached the upstream");
    std::thread::sleep(Duration::from_millis(300));

    let t0 = sigterm_and_wait_for_refusal(&gw);
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download ended before the listener closed; lengthen it"
    );
    let r = get_owned(&gw, "/");
    assert_eq!(
        r.exit, 7,
        "a new request after SIGTERM was not refused: {r}"
    );

    let status = wait_child(
        &mut download,
        Duration::from_secs(20),
        "the in-flight download",
    );
    let done = t0.elapsed();
    let (report, stderr) = child_output(download);
    assert!(
        status.success(),
        "the in-flight download failed: {report} {stderr}"
    );
    assert_eq!(report, format!("200 {TOTAL}"));

    let exit = wait_child(
        &mut gw.child,
        Duration::from_secs(17),
        "the gateway after SIGTERM",
    );
    let exited = t0.elapsed();
    println!("in-flight download done {done:?} after SIGTERM; gateway exited {exited:?} after SIGTERM with {exit}");
    assert_eq!(exit.code(), Some(0), "{}", gw.log_text());
    assert!(
        exited < Duration::from_secs(15),
        "gateway took {exited:?} (grace 15 s)"
    );
    assert!(gw.log_text().contains("shutting down"), "{}", gw.log_text());
}

#[test]
fn sigterm_cuts_requests_still_running_when_the_grace_period_ends() {
    const TOTAL: u64 = 64 * MIB;
    let upstream = support::Upstream::start();
    let listen = new_listen();
    let mut gw = OwnedGateway::start(
        &config_with(
            listen,
            upstream.addr,
            "hpki-card",
            "[timeouts]\nshutdown_grace = \"2s\"\n",
        ),
        listen,
    );
    // About 32 s at 2 MB/s: far longer than the grace period.
    let mut download = slow_download(&gw, TOTAL, "2M");
    let reached = poll(Duration::from_secs(10), || {
        (!upstream.received.lock().unwrap().is_empty()).then_some(())
    });
    assert!(reached.is_some(), "the download never reached the upstream");

    let t0 = sigterm_and_wait_for_refusal(&gw);
    let exit = wait_child(
        &mut gw.child,
        Duration::from_secs(8),
        "the gateway after SIGTERM",
    );
    let exited = t0.elapsed();
    println!("gateway exited {exited:?} after SIGTERM (grace 2 s) with {exit}");
    assert_eq!(exit.code(), Some(0), "{}", gw.log_text());
    assert!(
        exited >= Duration::from_millis(1800) && exited < Duration::from_secs(5),
        "exit {exited:?} after SIGTERM, expected about the 2 s grace period"
    );
    assert!(gw.log_text().contains("grace period"), "{}", gw.log_text());

    let status = wait_child(&mut download, Duration::from_secs(10), "the cut download");
    let (report, stderr) = child_output(download);
    assert!(
        !status.success(),
        "a download longer than the grace period completed: {report} {stderr}"
    );
    let got: u64 = report
        .split_once(' ')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    assert!(got < TOTAL, "{report}");
}

fn get_owned(gw: &OwnedGateway, path: &str) -> Http {
    let mut cmd = curl_cmd(Some("doctor"));
    cmd.args(["--max-time", "5"]);
    http(cmd, &gw.url(path))
}
