//! End-to-end tests of revocation against real peers only, with the real `hpki-gateway`
//! binary:
//!
//! - CRLs of the generated test PKI, issued with rcgen (`pki_tests::TestPki::crl`),
//!   published at the distribution points by the harness's CRL server and placed in
//!   per-test copies of the trust store: revoked vs good, a revoked CA under
//!   `revocation.depth = "chain"` / `"leaf"`, publication without restart (new
//!   connections, and open keep-alive connections closed at the re-check), CRL numbers
//!   only ever going up, a CRL signed with the wrong key, a stale CRL;
//! - OCSP against OpenSSL's own CA (`openssl ca` with its index.txt) and responder
//!   (`openssl ocsp`): good, revoked, unknown, responder down (deny / allow), forged
//!   responders;
//! - the same decisions side by side with nginx (`ssl_ocsp`, `ssl_crl`), printed as a
//!   Markdown table (`cargo test --test e2e_revocation -- --nocapture`).
//!
//! The harness has one CRL server per test process, serving `pki().served_crl(ca)`: the
//! tests that publish CRLs there hold [`served_crls`] and so run one at a time; the guard
//! puts the initial CRLs back when it is dropped.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pki_tests::Revoked;
use support::{pki, Gateway, Upstream};
use time::{Duration as Span, OffsetDateTime};

// ---------------------------------------------------------------------------------------
// Helpers: time, polling, logs
// ---------------------------------------------------------------------------------------

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Calls `attempt` every 200 ms until it returns `Ok`, for at most `limit`; panics with
/// the last error otherwise.
fn poll<T>(limit: Duration, what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match attempt() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines of a log, for assertion messages.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs a command bounded in time; the child is killed after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Stops a child we started (the `timeout` wrapper of a peer): SIGTERM to its pid, which
/// `timeout` forwards to the peer, then a bounded wait; SIGKILL as the last resort.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------
// Helpers: CRLs of the generated PKI, served CRLs, trust-store copies
// ---------------------------------------------------------------------------------------

/// A CRL of the test PKI's CA `issuer` listing the named certificates, DER.
fn crl_der(
    issuer: &str,
    revoked: &[&str],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Vec<u8> {
    let at = this_update - Span::minutes(1);
    let list: Vec<Revoked<'_>> = revoked
        .iter()
        .map(|cert| Revoked {
            cert,
            at,
            reason: None,
        })
        .collect();
    pki()
        .generated
        .crl(issuer, &list, number, this_update, next_update)
        .unwrap_or_else(|e| panic!("CRL of {issuer}: {e}"))
        .der
}

/// A current CRL: issued five minutes ago, next update in a day.
fn fresh_crl(issuer: &str, revoked: &[&str], number: u64) -> Vec<u8> {
    let t = now() - Span::minutes(5);
    crl_der(issuer, revoked, number, t, t + Span::days(1))
}

/// Replaces the CRL served at CA `ca`'s distribution point (atomically: the server reads
/// the file per request and must never see half of it).
fn publish(ca: &str, der: &[u8]) {
    let target = pki().served_crl(ca);
    let tmp = target.with_extension("crl.tmp");
    std::fs::write(&tmp, der).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
}

fn restore_initial_crls() {
    let p = pki();
    for ca in p.generated.cas() {
        publish(&ca.name, &p.generated.initial_crl(&ca.name).unwrap().der);
    }
}

/// Exclusive use of the harness's served CRLs; they start and end as the initial ones.
struct ServedCrls {
    _lock: MutexGuard<'static, ()>,
}

fn served_crls() -> ServedCrls {
    static LOCK: Mutex<()> = Mutex::new(());
    let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    restore_initial_crls();
    ServedCrls { _lock: lock }
}

impl Drop for ServedCrls {
    fn drop(&mut self) {
        restore_initial_crls();
    }
}

/// A trust-store directory of its own (anchors/, intermediates/, crls/), removed on drop.
struct TrustDir {
    tmp: tempfile::TempDir,
}

impl TrustDir {
    fn empty() -> TrustDir {
        let tmp = tempfile::Builder::new()
            .prefix("trust-")
            .tempdir_in(&pki().dir)
            .unwrap();
        for sub in ["anchors", "intermediates", "crls"] {
            std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        }
        TrustDir { tmp }
    }

    /// A copy of the harness's trust store `profile`, with its initial CRLs.
    fn copy_of(profile: &str) -> TrustDir {
        let t = TrustDir::empty();
        let src = pki().trust(profile);
        for sub in ["anchors", "intermediates", "crls"] {
            let Ok(entries) = std::fs::read_dir(src.join(sub)) else {
                continue;
            };
            for e in entries {
                let e = e.unwrap();
                std::fs::copy(e.path(), t.path().join(sub).join(e.file_name())).unwrap();
            }
        }
        t
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn put(&self, sub: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path().join(sub).join(file);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn remove_crl(&self, file: &str) {
        std::fs::remove_file(self.path().join("crls").join(file)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: gateway configuration and requests
// ---------------------------------------------------------------------------------------

/// A gateway config with one person profile (`hpki-auth`) on `trust` and one route for
/// doctors and pharmacists. `revocation` lines go into the `[[trust]]` block
/// (`revocation.depth = "leaf"`), `fetch` lines into a `[revocation]` section.
/// `timeouts.header_read` is raised so that an idle keep-alive connection is never closed
/// by the header-read timer, which would look like a close for revocation.
fn gateway_config(
    listen: SocketAddr,
    upstream: SocketAddr,
    trust: &Path,
    revocation: &[&str],
    fetch: &[&str],
) -> String {
    let p = pki();
    let fetch = if fetch.is_empty() {
        String::new()
    } else {
        format!("[revocation]\n{}\n", fetch.join("\n"))
    };
    format!(
        r#"[server]
listen = "{listen}"
cert = "{cert}"
key = "{key}"
tls_profile = "hpki-card"
client_auth = "required"

[assertion]
key = "{akey}"

[timeouts]
header_read = "30s"

{fetch}
[[trust]]
name = "hpki-auth"
dir = "{trust}"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]
{revocation}

[[route]]
path = "/"
upstream = "http://{upstream}"
allow_roles = ["Medical Doctor", "Pharmacist"]
"#,
        cert = p.server_cert().display(),
        key = p.server_key().display(),
        akey = p.assertion_key().display(),
        trust = trust.display(),
        revocation = revocation.join("\n"),
    )
}

fn start_gateway(
    upstream: &Upstream,
    trust: &TrustDir,
    revocation: &[&str],
    fetch: &[&str],
) -> Gateway {
    let listen: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    Gateway::start(
        &gateway_config(listen, upstream.addr, trust.path(), revocation, fetch),
        listen,
    )
}

/// One HTTPS exchange made with curl.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
    stderr: String,
}

impl Answer {
    /// The `error` code of a gateway JSON denial.
    fn code(&self) -> Option<String> {
        support::error_code(&self.body)
    }

    fn detail(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "status {}, body {:?}, curl stderr {:?}",
            self.status,
            self.body.chars().take(600).collect::<String>(),
            self.stderr.trim()
        )
    }
}

/// curl `url` (HTTPS, trusting the harness's server CA) presenting `cert`/`key`.
fn curl(url: &str, cert: &Path, key: &Path) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(pki().server_ca())
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-H", "Accept: application/json"])
        .arg(url);
    let out = run_bounded(cmd, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Answer {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A test-PKI card against the gateway.
fn ask(gw: &Gateway, card: &str) -> Answer {
    curl(&gw.url("/revocation"), &pki().cert(card), &pki().key(card))
}

fn is_allowed(a: &Answer) -> bool {
    a.status == 200 && a.body == "upstream ok"
}

fn is_denied(a: &Answer, code: &str) -> bool {
    a.status == 403 && a.code().as_deref() == Some(code)
}

#[track_caller]
fn assert_allowed(gw: &Gateway, a: &Answer, what: &str) {
    assert!(
        is_allowed(a),
        "{what}: expected 200 from the upstream, got {}\n--- gateway log (tail)\n{}",
        a.describe(),
        tail(&gw.log_text(), 25)
    );
}

#[track_caller]
fn assert_denied(gw: &Gateway, a: &Answer, code: &str, what: &str) {
    assert!(
        is_denied(a, code),
        "{what}: expected 403 {code}, got {}\n--- gateway log (tail)\n{}",
        a.describe(),
        tail(&gw.log_text(), 25)
    );
}

// ---------------------------------------------------------------------------------------
// Helpers: a keep-alive HTTP/1.1 connection over rustls, presenting a test card
// ---------------------------------------------------------------------------------------

struct KeepAlive {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    host: String,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn open(gw: &Gateway, card: &str) -> KeepAlive {
        KeepAlive {
            tls: support::card_connection(gw, card),
            host: gw.addr.to_string(),
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 8192];
        match self.tls.read(&mut tmp)? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
        }
    }

    /// One line without its CRLF.
    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn take(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// GET on this connection: status and body (Content-Length or chunked).
    fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            self.host
        );
        self.tls.write_all(request.as_bytes())?;
        self.tls.flush()?;
        let status_line = self.line()?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let h = self.line()?;
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap_or((&h, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = self.line()?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                        .map_err(|_| std::io::Error::other(format!("bad chunk {size_line:?}")))?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                body.extend(self.take(size)?);
                self.line()?;
            }
        } else if let Some(n) = length {
            body = self.take(n)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Waits (bounded) for the server to close this connection; returns how it ended.
    fn wait_closed(&mut self, limit: Duration) -> Result<String, String> {
        let sock_timeout = |s: &TcpStream, d| s.set_read_timeout(Some(d)).unwrap();
        sock_timeout(&self.tls.sock, Duration::from_millis(100));
        let deadline = Instant::now() + limit;
        let mut tmp = [0u8; 4096];
        let result = loop {
            match self.tls.read(&mut tmp) {
                Ok(0) => break Ok("EOF after close_notify".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => break Ok(format!("read error: {e}")),
            }
            if Instant::now() > deadline {
                break Err(format!(
                    "still open after {limit:?} (unsolicited bytes: {})",
                    self.buf.len()
                ));
            }
        };
        sock_timeout(&self.tls.sock, Duration::from_secs(10));
        result
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: OpenSSL's CA, CRLs and OCSP responder
// ---------------------------------------------------------------------------------------

/// A CA made with the openssl CLI (`openssl ca` and its index.txt), issuing HPKI-shaped
/// authentication certificates straight from the root:
/// - `good`: valid, in index.txt;
/// - `revoked`: revoked in index.txt (`-crl_reason keyCompromise`);
/// - `unknown`: issued with `openssl x509 -req`, so absent from index.txt;
/// - `ocsp-responder`: delegated responder (EKU OCSPSigning, id-pkix-ocsp-nocheck);
/// - `forged-self`: self-made responder certificate with the delegated responder's name;
/// - `forged-other`: responder certificate with that name from `other-ca`, a look-alike
///   CA with the real CA's name and another key;
/// - `crl.pem` (current, lists `revoked`) and `stale.pem` (nextUpdate two hours ago).
///
/// The leaves' AIA names the OCSP responder at `http://127.0.0.1:<aia_port>`.
struct OpenSslPki {
    dir: PathBuf,
    aia_port: u16,
}

impl OpenSslPki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
    fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// Runs openssl in `dir` with the words of `line` followed by `extra` (for arguments
/// with spaces); panics with its output unless it succeeds.
fn openssl(dir: &Path, line: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(line.split_whitespace())
        .args(extra)
        .current_dir(dir);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl {line} {extra:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `YYYYMMDDHHMMSSZ`, as `openssl ca -crl_lastupdate` takes it.
fn openssl_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    t.format(&f).unwrap()
}

fn openssl_pki() -> &'static OpenSslPki {
    static PKI: OnceLock<OpenSslPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = pki().dir.join("openssl-ca");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("newcerts")).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        let aia_port = support::free_port();
        let hc_role =
            pki_tests::der_writer::to_hex(&pki_tests::hc_role_extension_value(&["Medical Doctor"]));
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                r#"[ca]
default_ca = ca_default
[ca_default]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
certificate = ./ca.pem
private_key = ./ca.key
serial = ./serial
crlnumber = ./crlnumber
default_md = sha256
default_days = 30
default_crl_days = 7
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
countryName = optional
organizationName = optional
commonName = supplied
[req]
distinguished_name = req_dn
[req_dn]
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[hpki_auth]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
certificatePolicies = critical,1.2.392.100495.1.5.1.2.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
2.5.29.9 = DER:{hc_role}
authorityInfoAccess = OCSP;URI:http://127.0.0.1:{aia_port}
[ocsp_signer]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,OCSPSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
noCheck = ignored
[crl_ext]
authorityKeyIdentifier = keyid
"#
            ),
        )
        .unwrap();
        let o = |line: &str, extra: &[&str]| openssl(&dir, line, extra);
        let ca_subject = "/C=JP/O=OpenSSL Test HPKI/CN=OpenSSL Test HPKI CA";
        let responder_subject = "/C=JP/O=OpenSSL Test HPKI/CN=OpenSSL Test HPKI OCSP Responder";
        for ca in ["ca", "other-ca"] {
            o(
                &format!(
                    "req -x509 -newkey rsa:2048 -nodes -keyout {ca}.key -out {ca}.pem -days 30 \
                     -config ca.cnf -extensions v3_ca"
                ),
                &["-subj", ca_subject],
            );
        }
        let csr = |name: &str, subject: &str| {
            o(
                &format!(
                    "req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -config ca.cnf"
                ),
                &["-subj", subject],
            );
        };
        for (name, subject, ext) in [
            ("good", "/C=JP/CN=OpenSSL Good Doctor", "hpki_auth"),
            ("revoked", "/C=JP/CN=OpenSSL Revoked Doctor", "hpki_auth"),
            ("ocsp-responder", responder_subject, "ocsp_signer"),
        ] {
            csr(name, subject);
            o(
                &format!(
                    "ca -config ca.cnf -batch -notext -extensions {ext} -in {name}.csr \
                     -out {name}.pem"
                ),
                &[],
            );
        }
        o(
            "ca -config ca.cnf -revoke revoked.pem -crl_reason keyCompromise",
            &[],
        );
        // Signed by the CA but never entered in its database.
        csr("unknown", "/C=JP/CN=OpenSSL Unknown Doctor");
        o(
            "x509 -req -in unknown.csr -CA ca.pem -CAkey ca.key -set_serial 0x7777 -days 30 \
             -extfile ca.cnf -extensions hpki_auth -out unknown.pem",
            &[],
        );
        // Forged responders: the real responder's name, keys the CA never certified.
        o(
            "req -x509 -newkey rsa:2048 -nodes -keyout forged-self.key -out forged-self.pem \
             -days 30 -addext extendedKeyUsage=critical,OCSPSigning \
             -addext keyUsage=critical,digitalSignature",
            &["-subj", responder_subject],
        );
        csr("forged-other", responder_subject);
        o(
            "x509 -req -in forged-other.csr -CA other-ca.pem -CAkey other-ca.key \
             -set_serial 0x99 -days 30 -extfile ca.cnf -extensions ocsp_signer \
             -out forged-other.pem",
            &[],
        );
        o(
            "ca -config ca.cnf -gencrl -crlexts crl_ext -out crl.pem",
            &[],
        );
        let t = now();
        o(
            &format!(
                "ca -config ca.cnf -gencrl -crlexts crl_ext -crl_lastupdate {} \
                 -crl_nextupdate {} -out stale.pem",
                openssl_time(t - Span::hours(3)),
                openssl_time(t - Span::hours(2))
            ),
            &[],
        );
        OpenSslPki { dir, aia_port }
    })
}

/// `openssl ocsp` answering from the CA's index.txt, signing with `signer`
/// (`ocsp-responder`, `forged-self`, ...). Bounded lifetime (`timeout 120`), stopped on
/// drop.
struct Responder {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Responder {
    fn start(port: u16, signer: &str) -> Responder {
        let o = openssl_pki();
        let log = o.file(&format!("ocsp-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("timeout")
            .args(["120", "openssl", "ocsp", "-index", "index.txt", "-port"])
            .arg(port.to_string())
            .arg("-rsigner")
            .arg(o.cert(signer))
            .arg("-rkey")
            .arg(o.key(signer))
            .args(["-CA", "ca.pem", "-ndays", "1"])
            .current_dir(&o.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("openssl must be installed");
        let mut r = Responder { child, port, log };
        poll(Duration::from_secs(10), "openssl ocsp listens", || {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("openssl ocsp exited with {status}:\n{}", read_text(&r.log));
            }
            match read_text(&r.log).contains("waiting for OCSP client connections") {
                true => Ok(()),
                false => Err(read_text(&r.log)),
            }
        });
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests the responder has answered so far.
    fn requests(&self) -> usize {
        read_text(&self.log).matches("Received request").count()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A trust store whose anchor is the OpenSSL CA, with `crl` (a file of the OpenSSL CA's
/// directory) in crls/.
fn openssl_trust(crl: Option<&str>) -> TrustDir {
    let o = openssl_pki();
    let t = TrustDir::empty();
    t.put("anchors", "ca.pem", &std::fs::read(o.cert("ca")).unwrap());
    if let Some(crl) = crl {
        t.put("crls", crl, &std::fs::read(o.file(crl)).unwrap());
    }
    t
}

/// An OpenSSL-made card against the gateway.
fn ask_openssl(gw: &Gateway, card: &str) -> Answer {
    let o = openssl_pki();
    curl(&gw.url("/revocation"), &o.cert(card), &o.key(card))
}

// ---------------------------------------------------------------------------------------
// 1. CRL: revoked vs good; a revoked CA under depth "chain" and "leaf"
// ---------------------------------------------------------------------------------------

#[test]
fn crl_refuses_the_revoked_pharmacist_and_a_revoked_ca_only_under_depth_chain() {
    let _served = served_crls();
    let up = Upstream::start();

    // auth-ca's CRL number 2 revokes the pharmacist: in the trust store and at the DP.
    let auth_crl = fresh_crl("auth-ca", &["pharmacist"], 2);
    publish("auth-ca", &auth_crl);
    let trust = TrustDir::copy_of("hpki-auth");
    trust.put("crls", "auth-ca.crl", &auth_crl);
    let gw = start_gateway(&up, &trust, &[r#"revocation.sources = ["crl"]"#], &[]);

    let pharmacist = ask(&gw, "pharmacist");
    assert_denied(&gw, &pharmacist, "cert_revoked", "revoked pharmacist");
    assert!(
        pharmacist.detail().contains("crl"),
        "the detail names the source: {}",
        pharmacist.describe()
    );
    let doctor = ask(&gw, "doctor");
    assert_allowed(&gw, &doctor, "doctor (not on the CRL)");
    let forwarded = up.take();
    assert_eq!(
        forwarded.len(),
        1,
        "only the doctor's request is forwarded: {forwarded:?}"
    );
    assert_eq!(forwarded[0].header("x-hpki-role"), Some("Medical Doctor"));
    drop(gw);

    // The root's CRL (its ARL) revokes auth-ca itself.
    let root_crl = fresh_crl("root", &["auth-ca"], 2);
    publish("root", &root_crl);
    let trust = TrustDir::copy_of("hpki-auth");
    trust.put("crls", "root.crl", &root_crl);

    let chain = start_gateway(
        &up,
        &trust,
        &[
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.depth = "chain""#,
        ],
        &[],
    );
    let doctor = ask(&chain, "doctor");
    assert_denied(
        &chain,
        &doctor,
        "cert_revoked",
        "doctor under a revoked CA, depth chain",
    );
    assert!(
        doctor.detail().contains("depth 1"),
        "the detail names the revoked CA's depth: {}",
        doctor.describe()
    );
    drop(chain);

    let leaf = start_gateway(
        &up,
        &trust,
        &[
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.depth = "leaf""#,
        ],
        &[],
    );
    assert_allowed(
        &leaf,
        &ask(&leaf, "doctor"),
        "doctor under a revoked CA, depth leaf",
    );
}

// ---------------------------------------------------------------------------------------
// 2. A CRL published at the distribution point applies without a restart, to new
//    connections and to open keep-alive connections
// ---------------------------------------------------------------------------------------

#[test]
fn crl_published_over_http_applies_without_restart_and_closes_keep_alive_connections() {
    let _served = served_crls();
    let up = Upstream::start();
    let trust = TrustDir::copy_of("hpki-auth");
    let gw = start_gateway(
        &up,
        &trust,
        &[
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.crl_refresh = "1s""#,
            r#"revocation.recheck = "1s""#,
        ],
        &[],
    );
    assert_allowed(&gw, &ask(&gw, "doctor"), "doctor before publication");
    assert_allowed(
        &gw,
        &ask(&gw, "pharmacist"),
        "pharmacist before publication",
    );

    let mut doctor_conn = KeepAlive::open(&gw, "doctor");
    let mut pharmacist_conn = KeepAlive::open(&gw, "pharmacist");
    for (who, conn) in [
        ("doctor", &mut doctor_conn),
        ("pharmacist", &mut pharmacist_conn),
    ] {
        let (status, body) = conn.get("/keep-alive/1").unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "upstream ok"),
            "{who}'s keep-alive connection before publication"
        );
    }

    // The harness's distribution point now serves CRL number 2 revoking the pharmacist.
    let fetches_before = pki().crl_server.hits("auth-ca.crl");
    let published = Instant::now();
    publish("auth-ca", &fresh_crl("auth-ca", &["pharmacist"], 2));

    let took = poll(
        Duration::from_secs(20),
        "new connections of the pharmacist refused",
        || {
            let doctor = ask(&gw, "doctor");
            assert_allowed(&gw, &doctor, "doctor while the new CRL is published");
            let a = ask(&gw, "pharmacist");
            if is_denied(&a, "cert_revoked") {
                Ok(published.elapsed())
            } else {
                Err(a.describe())
            }
        },
    );
    println!("new connections of the pharmacist refused {took:?} after publication");
    assert!(
        pki().crl_server.hits("auth-ca.crl") > fetches_before,
        "the gateway fetched auth-ca's CRL from the distribution point"
    );

    // The open connection of the pharmacist is closed at a re-check; the doctor's stays.
    let how = pharmacist_conn
        .wait_closed(Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "the pharmacist's keep-alive connection: {e}\n--- gateway log (tail)\n{}",
                tail(&gw.log_text(), 25)
            )
        });
    println!(
        "pharmacist's keep-alive connection closed {:?} after publication ({how})",
        published.elapsed()
    );
    poll(
        Duration::from_secs(5),
        "the gateway logs why it closed the connection",
        || match gw
            .log_text()
            .contains("closing the connection: its certificate is now revoked")
        {
            true => Ok(()),
            false => Err(tail(&gw.log_text(), 10)),
        },
    );
    assert!(
        pharmacist_conn.get("/keep-alive/2").is_err(),
        "no request goes through the pharmacist's closed connection"
    );
    // Two more re-check periods of the doctor's connection, with requests through it.
    let watch = Instant::now();
    let mut n = 0;
    while watch.elapsed() < Duration::from_millis(2500) {
        n += 1;
        let (status, body) = doctor_conn
            .get(&format!("/keep-alive/doctor-{n}"))
            .unwrap_or_else(|e| panic!("doctor's keep-alive connection after re-checks: {e}"));
        assert_eq!((status, body.as_str()), (200, "upstream ok"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let forwarded: Vec<String> = up.take().into_iter().map(|r| r.path).collect();
    assert!(
        forwarded.contains(&"/keep-alive/1".to_owned())
            && forwarded.contains(&format!("/keep-alive/doctor-{n}"))
            && !forwarded.contains(&"/keep-alive/2".to_owned()),
        "forwarded: {forwarded:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. An older CRL never replaces a newer one
// ---------------------------------------------------------------------------------------

#[test]
fn an_older_crl_never_replaces_a_newer_one() {
    let _served = served_crls();
    let up = Upstream::start();
    let trust = TrustDir::copy_of("hpki-auth");
    let gw = start_gateway(
        &up,
        &trust,
        &[
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.crl_refresh = "1s""#,
        ],
        &[],
    );
    let issued = now() - Span::minutes(30);
    publish(
        "auth-ca",
        &crl_der(
            "auth-ca",
            &["pharmacist"],
            5,
            issued,
            issued + Span::days(1),
        ),
    );
    poll(
        Duration::from_secs(15),
        "CRL number 5 installed (pharmacist refused)",
        || {
            let a = ask(&gw, "pharmacist");
            match is_denied(&a, "cert_revoked") {
                true => Ok(()),
                false => Err(a.describe()),
            }
        },
    );

    // Number 3, issued later than number 5 (so that only the CRL number can tell them
    // apart), without the revocation.
    let later = now() - Span::minutes(1);
    publish(
        "auth-ca",
        &crl_der("auth-ca", &[], 3, later, later + Span::days(1)),
    );
    let fetches = pki().crl_server.hits("auth-ca.crl");
    poll(
        Duration::from_secs(15),
        "three refreshes of auth-ca's CRL after number 3 is served",
        || {
            let a = ask(&gw, "pharmacist");
            assert_denied(
                &gw,
                &a,
                "cert_revoked",
                "pharmacist while CRL number 3 is served",
            );
            let seen = pki().crl_server.hits("auth-ca.crl") - fetches;
            match seen >= 3 {
                true => Ok(()),
                false => Err(format!("{seen} fetches so far")),
            }
        },
    );
    assert_denied(
        &gw,
        &ask(&gw, "pharmacist"),
        "cert_revoked",
        "pharmacist after several refreshes of CRL number 3",
    );
    assert_allowed(&gw, &ask(&gw, "doctor"), "doctor");

    // The refresh still works: a newer number (6) is installed.
    publish("auth-ca", &fresh_crl("auth-ca", &[], 6));
    poll(
        Duration::from_secs(15),
        "CRL number 6 installed (pharmacist admitted)",
        || {
            let a = ask(&gw, "pharmacist");
            match is_allowed(&a) {
                true => Ok(()),
                false => Err(a.describe()),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// 4. A CRL signed by the wrong key
// ---------------------------------------------------------------------------------------

/// A CRL with auth-ca's exact issuer name and authorityKeyIdentifier, signed by a fresh
/// key: auth-ca's certificate re-signed with that key (`openssl x509 -signkey` keeps the
/// subject and subjectKeyIdentifier), then `openssl ca -gencrl` with it.
fn forged_auth_ca_crl(dir: &Path) -> Vec<u8> {
    let o = |line: &str, extra: &[&str]| openssl(dir, line, extra);
    let auth_ca = pki().cert("auth-ca");
    let auth_ca = auth_ca.to_str().unwrap();
    o(
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out forger.key",
        &[],
    );
    o(
        "x509 -signkey forger.key -out forger.pem",
        &["-in", auth_ca],
    );
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "63\n").unwrap();
    std::fs::write(
        dir.join("forger.cnf"),
        "[ca]\ndefault_ca = forger\n[forger]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 7\n[crl_ext]\nauthorityKeyIdentifier = keyid\n",
    )
    .unwrap();
    o(
        "ca -config forger.cnf -gencrl -cert forger.pem -keyfile forger.key -crlexts crl_ext \
         -out forged.crl.pem",
        &[],
    );
    o("crl -in forged.crl.pem -outform DER -out forged.crl", &[]);
    // Same issuer name and key identifier as auth-ca's genuine CRLs...
    let text = o("crl -in forged.crl.pem -noout -text", &[]);
    let ski = o("x509 -noout -ext subjectKeyIdentifier", &["-in", auth_ca]);
    let ski = ski.lines().nth(1).unwrap().trim().to_owned();
    assert!(
        text.contains(&ski),
        "forged CRL carries auth-ca's key id {ski}:\n{text}"
    );
    // ... and openssl itself refuses its signature under auth-ca.
    let mut cmd = Command::new("openssl");
    cmd.args(["crl", "-in", "forged.crl.pem", "-noout", "-CAfile", auth_ca])
        .current_dir(dir);
    let verify = run_bounded(cmd, Duration::from_secs(20));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        said.contains("verify failure"),
        "openssl must refuse the forged CRL's signature: {said}"
    );
    std::fs::read(dir.join("forged.crl")).unwrap()
}

#[test]
fn a_crl_signed_by_the_wrong_key_is_never_installed() {
    let _served = served_crls();
    let work = tempfile::tempdir_in(&pki().dir).unwrap();
    let forged = forged_auth_ca_crl(work.path());
    let up = Upstream::start();

    // Served at the distribution point; the trust store has no CRL of auth-ca.
    publish("auth-ca", &forged);
    let trust = TrustDir::copy_of("hpki-auth");
    trust.remove_crl("auth-ca.crl");
    let gw = start_gateway(
        &up,
        &trust,
        &[
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.on_unavailable = "deny""#,
            r#"revocation.crl_refresh = "1s""#,
        ],
        &[],
    );
    let fetches = pki().crl_server.hits("auth-ca.crl");
    let doctor = ask(&gw, "doctor");
    assert_denied(
        &gw,
        &doctor,
        "revocation_unavailable",
        "doctor whose issuer's only CRL is forged",
    );
    assert!(
        doctor.detail().contains("no CRL") && doctor.detail().contains("auth-ca.crl"),
        "the detail says no CRL is loaded and names the distribution point: {}",
        doctor.describe()
    );
    assert!(
        pki().crl_server.hits("auth-ca.crl") > fetches,
        "the forged CRL was fetched (and refused), not simply missed"
    );
    // Still refused after further refreshes of the forged CRL.
    let fetches = pki().crl_server.hits("auth-ca.crl");
    poll(Duration::from_secs(10), "two more fetches", || {
        match pki().crl_server.hits("auth-ca.crl") >= fetches + 2 {
            true => Ok(()),
            false => Err("waiting".into()),
        }
    });
    assert_denied(
        &gw,
        &ask(&gw, "pharmacist"),
        "revocation_unavailable",
        "pharmacist while the forged CRL is served",
    );
    up.take();

    // Positive control: the genuine CRL at the same place is installed.
    publish("auth-ca", &fresh_crl("auth-ca", &["pharmacist"], 2));
    poll(Duration::from_secs(15), "the genuine CRL installed", || {
        let a = ask(&gw, "doctor");
        match is_allowed(&a) {
            true => Ok(()),
            false => Err(a.describe()),
        }
    });
    assert_denied(
        &gw,
        &ask(&gw, "pharmacist"),
        "cert_revoked",
        "pharmacist on the genuine CRL",
    );
    drop(gw);

    // In the trust store's crls/, the forged CRL makes check-config fail, naming the file.
    let config_dir = tempfile::tempdir_in(&pki().dir).unwrap();
    let check = |trust: &TrustDir| {
        let file = config_dir.path().join("gateway.toml");
        std::fs::write(
            &file,
            gateway_config(
                "127.0.0.1:1".parse().unwrap(),
                up.addr,
                trust.path(),
                &[],
                &[],
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"));
        cmd.args(["check-config", "--config"]).arg(&file);
        let out = run_bounded(cmd, Duration::from_secs(20));
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let genuine = TrustDir::copy_of("hpki-auth");
    let (code, text) = check(&genuine);
    assert_eq!(code, Some(0), "check-config with the genuine CRLs:\n{text}");
    let broken = TrustDir::copy_of("hpki-auth");
    let planted = broken.put("crls", "auth-ca.crl", &forged);
    let (code, text) = check(&broken);
    assert_eq!(code, Some(1), "check-config with a forged CRL:\n{text}");
    assert!(
        text.contains(&planted.display().to_string()),
        "check-config names the forged file {}:\n{text}",
        planted.display()
    );
    println!("check-config on a forged CRL:\n{text}");
}

// ---------------------------------------------------------------------------------------
// 5. Stale CRL
// ---------------------------------------------------------------------------------------

#[test]
fn stale_crl_denies_under_deny_and_warns_under_allow() {
    let _served = served_crls();
    let up = Upstream::start();
    // nextUpdate two hours ago: past nextUpdate + stale_grace (1h).
    let t = now();
    let stale = crl_der("auth-ca", &[], 2, t - Span::hours(3), t - Span::hours(2));
    publish("auth-ca", &stale);
    let trust = TrustDir::copy_of("hpki-auth");
    trust.put("crls", "auth-ca.crl", &stale);
    let policy = |stale_crl: &'static str| {
        [
            r#"revocation.sources = ["crl"]"#,
            r#"revocation.stale_grace = "1h""#,
            stale_crl,
        ]
    };

    let deny = start_gateway(
        &up,
        &trust,
        &policy(r#"revocation.stale_crl = "deny""#),
        &[],
    );
    let doctor = ask(&deny, "doctor");
    assert_denied(
        &deny,
        &doctor,
        "revocation_unavailable",
        "doctor with a stale CRL under stale_crl = deny",
    );
    assert!(
        doctor.detail().contains("stale"),
        "the detail says the CRL is stale: {}",
        doctor.describe()
    );
    drop(deny);

    let allow = start_gateway(
        &up,
        &trust,
        &policy(r#"revocation.stale_crl = "allow""#),
        &[],
    );
    assert_allowed(
        &allow,
        &ask(&allow, "doctor"),
        "doctor with a stale CRL under stale_crl = allow",
    );
    let warned = poll(
        Duration::from_secs(5),
        "a warning about the stale CRL",
        || {
            allow
                .log_text()
                .lines()
                .find(|l| l.contains("WARN") && l.contains("stale"))
                .map(str::to_owned)
                .ok_or_else(|| tail(&allow.log_text(), 10))
        },
    );
    println!("gateway warning: {warned}");
    drop(allow);

    // Control: past nextUpdate but within the grace, it still counts under "deny".
    let within = crl_der("auth-ca", &[], 3, t - Span::hours(2), t - Span::minutes(10));
    publish("auth-ca", &within);
    trust.put("crls", "auth-ca.crl", &within);
    let grace = start_gateway(
        &up,
        &trust,
        &policy(r#"revocation.stale_crl = "deny""#),
        &[],
    );
    assert_allowed(
        &grace,
        &ask(&grace, "doctor"),
        "doctor with a CRL 10 minutes past nextUpdate, grace 1h",
    );
}

// ---------------------------------------------------------------------------------------
// 6. OCSP against OpenSSL's CA and responder
// ---------------------------------------------------------------------------------------

const OCSP_ONLY: &str = r#"revocation.sources = ["ocsp"]"#;
const DENY: &str = r#"revocation.on_unavailable = "deny""#;
const ALLOW: &str = r#"revocation.on_unavailable = "allow""#;

fn responder_override(url: &str) -> String {
    format!(r#"revocation.ocsp_responder = "{url}""#)
}

/// Waits (bounded) until nothing accepts connections on `port` any more.
fn wait_port_closed(port: u16) {
    poll(
        Duration::from_secs(10),
        "the responder's port closed",
        || match TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => Err(format!("127.0.0.1:{port} still accepts")),
            Err(_) => Ok(()),
        },
    );
}

#[test]
fn ocsp_with_openssl_ca_and_responder() {
    let o = openssl_pki();
    let up = Upstream::start();
    let trust = openssl_trust(None);

    // The responder the certificates' AIA names; the gateway finds it there.
    let responder = Responder::start(o.aia_port, "ocsp-responder");
    let gw = start_gateway(&up, &trust, &[OCSP_ONLY, DENY], &[]);
    let good = ask_openssl(&gw, "good");
    assert_allowed(&gw, &good, "good certificate, OCSP good");
    assert!(
        responder.requests() >= 1,
        "the gateway asked the AIA responder:\n{}",
        read_text(&responder.log)
    );
    let received = up.take();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("x-hpki-role"), Some("Medical Doctor"));

    let revoked = ask_openssl(&gw, "revoked");
    assert_denied(&gw, &revoked, "cert_revoked", "revoked in index.txt");
    assert!(
        revoked.detail().contains("ocsp") && revoked.detail().contains("reasonCode 1"),
        "the detail names OCSP and keyCompromise (reasonCode 1): {}",
        revoked.describe()
    );
    let unknown = ask_openssl(&gw, "unknown");
    assert_denied(
        &gw,
        &unknown,
        "revocation_unavailable",
        "certificate missing from index.txt (OCSP unknown), on_unavailable = deny",
    );
    assert!(
        unknown.detail().contains("does not know"),
        "the detail says the responder does not know the certificate: {}",
        unknown.describe()
    );
    assert!(up.take().is_empty(), "nothing forwarded for refused cards");

    // Forged responders answering "good" under the real responder's name.
    for signer in ["forged-self", "forged-other"] {
        let forged = Responder::start(support::free_port(), signer);
        let fgw = start_gateway(
            &up,
            &trust,
            &[OCSP_ONLY, DENY, &responder_override(&forged.url())],
            &[],
        );
        let a = ask_openssl(&fgw, "good");
        assert_denied(
            &fgw,
            &a,
            "revocation_unavailable",
            &format!("good certificate, response signed by {signer}"),
        );
        assert!(
            forged.requests() >= 1,
            "{signer} answered the gateway:\n{}",
            read_text(&forged.log)
        );
        println!("response signed by {signer}: {}", a.detail());
    }

    // Responder down.
    let port = responder.port;
    drop(responder);
    wait_port_closed(port);
    // The running gateway answers from its cache (until the responses' nextUpdate).
    assert_allowed(&gw, &ask_openssl(&gw, "good"), "good, cached OCSP answer");
    assert_denied(
        &gw,
        &ask_openssl(&gw, "revoked"),
        "cert_revoked",
        "revoked, cached OCSP answer",
    );
    drop(gw);
    // Fresh gateways have nothing cached.
    let deny = start_gateway(&up, &trust, &[OCSP_ONLY, DENY], &[]);
    let a = ask_openssl(&deny, "good");
    assert_denied(
        &deny,
        &a,
        "revocation_unavailable",
        "responder down, on_unavailable = deny",
    );
    assert!(
        a.detail().contains(&format!("127.0.0.1:{port}")),
        "the detail names the responder: {}",
        a.describe()
    );
    let allow = start_gateway(&up, &trust, &[OCSP_ONLY, ALLOW], &[]);
    assert_allowed(
        &allow,
        &ask_openssl(&allow, "good"),
        "responder down, on_unavailable = allow",
    );
    assert!(
        allow
            .log_text()
            .contains("allowed by revocation.on_unavailable"),
        "the allowed unavailability is logged:\n{}",
        tail(&allow.log_text(), 10)
    );
    // ...and recorded in the audit log, where an auditor finds fail-open admissions.
    let record = allow
        .audit_record(|r| r["event"] == "revocation")
        .expect("a revocation record in the audit log");
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["reason"], "revocation_unavailable", "{record}");
    assert!(
        record["detail"]
            .as_str()
            .is_some_and(|d| d.contains("on_unavailable = allow")),
        "{record}"
    );
    // A stale response (nextUpdate in the past) cannot be produced with a live
    // `openssl ocsp`: -ndays/-nmin must be positive, so its nextUpdate is at least a minute
    // ahead, and clock_skew cannot be set below one second; waiting past it would take
    // over a minute. The staleness rules (nextUpdate + clock_skew, and the maximum age
    // without nextUpdate) are covered by the unit tests of gateway/src/pki/ocsp.rs.
}

// ---------------------------------------------------------------------------------------
// 7. Side by side with nginx
// ---------------------------------------------------------------------------------------

/// nginx-light in a temp prefix, unprivileged layout, foreground, one process; one
/// `server` per entry of `servers` (extra directives), each on its own port, all proxying
/// to `upstream` with the client's DN. Bounded lifetime (`timeout 120`), stopped on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
}

impl Nginx {
    fn start(upstream: SocketAddr, ca: &Path, servers: &[String]) -> Nginx {
        let p = pki();
        let dir = tempfile::Builder::new()
            .prefix("nginx-")
            .tempdir_in(&p.dir)
            .unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let ports: Vec<u16> = servers.iter().map(|_| support::free_port()).collect();
        let blocks: String = servers
            .iter()
            .zip(&ports)
            .map(|(directives, port)| {
                format!(
                    "    server {{\n        listen 127.0.0.1:{port} ssl;\n        {directives}\n        \
                     location / {{\n            proxy_pass http://{upstream};\n            \
                     proxy_set_header X-Client-DN $ssl_client_s_dn;\n        }}\n    }}\n"
                )
            })
            .collect();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log info;\n\
             pid {d}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n    \
             access_log {d}/access.log;\n    client_body_temp_path {d}/tmp/body;\n    \
             proxy_temp_path {d}/tmp/proxy;\n    fastcgi_temp_path {d}/tmp/fastcgi;\n    \
             uwsgi_temp_path {d}/tmp/uwsgi;\n    scgi_temp_path {d}/tmp/scgi;\n    \
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
             ssl_verify_client on;\n    ssl_client_certificate {ca};\n    ssl_verify_depth 3;\n\
             {blocks}}}\n",
            cert = p.server_cert().display(),
            key = p.server_key().display(),
            ca = ca.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let out = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new("timeout")
            .args(["120", "nginx", "-p"])
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(format!("{d}/nginx.conf"))
            .arg("-e")
            .arg(format!("{d}/error.log"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("nginx must be installed (deploy/setup.sh)");
        let mut n = Nginx { child, dir, ports };
        poll(Duration::from_secs(10), "nginx listens", || {
            if let Ok(Some(status)) = n.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", n.logs());
            }
            match n
                .ports
                .iter()
                .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
            {
                true => Ok(()),
                false => Err(n.logs()),
            }
        });
        n
    }

    fn url(&self, server: usize) -> String {
        format!("https://127.0.0.1:{}/revocation", self.ports[server])
    }

    fn logs(&self) -> String {
        format!(
            "{}{}",
            read_text(&self.dir.path().join("stderr.log")),
            tail(&read_text(&self.dir.path().join("error.log")), 20)
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Allowed or denied, as a table cell. nginx refuses a client certificate that fails
/// verification with 400 "The SSL certificate error" (495/496 in its logs); the gateway
/// with 403 and a reason code.
fn verdict(a: &Answer) -> (bool, String) {
    if is_allowed(a) {
        return (true, "allowed (200)".into());
    }
    let why = match (a.status, a.code()) {
        (_, Some(code)) => format!("{} {code}", a.status),
        (400, None) if a.body.contains("SSL certificate error") => {
            "400 SSL certificate error".into()
        }
        (495 | 496, None) => a.status.to_string(),
        (0, None) => format!("no response: {}", a.stderr.trim()),
        (s, None) => format!("{s} (unexpected)"),
    };
    (false, format!("denied ({why})"))
}

/// A clear denial: nginx's certificate error or a gateway reason code.
fn clearly_denied(a: &Answer) -> bool {
    matches!(a.status, 400 | 495 | 496 | 403)
        && (a.code().is_some() || a.body.contains("SSL certificate error"))
}

#[test]
fn decisions_side_by_side_with_nginx() {
    let o = openssl_pki();
    let up = Upstream::start();
    let responder = Responder::start(support::free_port(), "ocsp-responder");
    let forged = Responder::start(support::free_port(), "forged-self");
    let responder_port = responder.port;
    let crl = o.file("crl.pem").display().to_string();
    let stale = o.file("stale.pem").display().to_string();
    let nginx = Nginx::start(
        up.addr,
        &o.cert("ca"),
        &[
            format!("ssl_ocsp on; ssl_ocsp_responder {};", responder.url()),
            format!("ssl_ocsp on; ssl_ocsp_responder {};", forged.url()),
            format!("ssl_crl {crl};"),
            format!("ssl_crl {stale};"),
        ],
    );
    let (ng_ocsp, ng_forged, ng_crl, ng_stale) = (0, 1, 2, 3);

    let ocsp_trust = openssl_trust(None);
    let crl_trust = openssl_trust(Some("crl.pem"));
    let stale_trust = openssl_trust(Some("stale.pem"));
    let with_responder = |url: &str, fail: &'static str| {
        start_gateway(
            &up,
            &ocsp_trust,
            &[OCSP_ONLY, fail, &responder_override(url)],
            &[],
        )
    };
    let crl_policy = [
        r#"revocation.sources = ["crl"]"#,
        r#"revocation.stale_crl = "deny""#,
        r#"revocation.stale_grace = "1h""#,
    ];
    let gw_ocsp = with_responder(&responder.url(), DENY);
    let gw_forged = with_responder(&forged.url(), DENY);
    let gw_crl = start_gateway(&up, &crl_trust, &crl_policy, &[]);
    let gw_stale = start_gateway(&up, &stale_trust, &crl_policy, &[]);

    // (case, nginx answer, gateway answer, expected: nginx allows, gateway allows, note)
    type Row = (&'static str, Answer, Answer, bool, bool, &'static str);
    let mut rows: Vec<Row> = Vec::new();
    let mut nginx_dn: Vec<String> = Vec::new();
    let mut case = |name: &'static str,
                    ng_server: usize,
                    gw: &Gateway,
                    card: &str,
                    expect: (bool, bool),
                    note: &'static str| {
        up.take();
        let ng = curl(&nginx.url(ng_server), &o.cert(card), &o.key(card));
        if is_allowed(&ng) {
            nginx_dn.extend(
                up.take()
                    .iter()
                    .filter_map(|r| r.header("x-client-dn").map(str::to_owned)),
            );
        }
        let g = ask_openssl(gw, card);
        rows.push((name, ng, g, expect.0, expect.1, note));
    };
    case("OCSP good", ng_ocsp, &gw_ocsp, "good", (true, true), "");
    case(
        "OCSP revoked (keyCompromise)",
        ng_ocsp,
        &gw_ocsp,
        "revoked",
        (false, false),
        "",
    );
    case(
        "OCSP unknown (not in index.txt)",
        ng_ocsp,
        &gw_ocsp,
        "unknown",
        (false, false),
        "",
    );
    case(
        "OCSP \"good\" signed by a self-made responder cert",
        ng_forged,
        &gw_forged,
        "good",
        (false, false),
        "",
    );
    case("CRL good", ng_crl, &gw_crl, "good", (true, true), "");
    case(
        "CRL revoked",
        ng_crl,
        &gw_crl,
        "revoked",
        (false, false),
        "",
    );
    case(
        "CRL stale (nextUpdate 2 h ago)",
        ng_stale,
        &gw_stale,
        "good",
        (false, false),
        "gateway: stale_grace 1h, stale_crl deny; nginx has no grace",
    );

    // Responder down: fresh gateways (empty caches); nginx caches nothing without
    // ssl_ocsp_cache.
    drop(responder);
    wait_port_closed(responder_port);
    let down_url = format!("http://127.0.0.1:{responder_port}");
    let gw_down = with_responder(&down_url, DENY);
    let gw_down_allow = with_responder(&down_url, ALLOW);
    case(
        "OCSP responder down",
        ng_ocsp,
        &gw_down,
        "good",
        (false, false),
        "gateway: on_unavailable deny",
    );
    // A principled disagreement: nginx has no fail-open setting for client-certificate
    // OCSP (a failed request fails verification), while the gateway lets an operator
    // choose availability over revocation status per profile.
    case(
        "OCSP responder down, gateway on_unavailable = allow",
        ng_ocsp,
        &gw_down_allow,
        "good",
        (false, true),
        "differs by configuration: nginx cannot fail open",
    );

    let mut table = String::from("| case | nginx | hpki-gateway | note |\n|---|---|---|---|\n");
    for (name, ng, g, _, _, note) in &rows {
        table.push_str(&format!(
            "| {name} | {} | {} | {note} |\n",
            verdict(ng).1,
            verdict(g).1
        ));
    }
    println!("\n{table}");

    let mut problems = Vec::new();
    for (name, ng, g, want_ng, want_g, _) in &rows {
        let (ng_ok, g_ok) = (verdict(ng).0, verdict(g).0);
        if ng_ok != *want_ng || (!ng_ok && !clearly_denied(ng)) {
            problems.push(format!("{name}: nginx {}", ng.describe()));
        }
        if g_ok != *want_g || (!g_ok && !clearly_denied(g)) {
            problems.push(format!("{name}: gateway {}", g.describe()));
        }
        if want_ng == want_g && ng_ok != g_ok {
            problems.push(format!("{name}: nginx and the gateway disagree"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n{table}\n--- nginx\n{}",
        problems.join("\n"),
        nginx.logs()
    );
    assert!(
        !nginx_dn.is_empty()
            && nginx_dn
                .iter()
                .all(|dn| dn.contains("CN=OpenSSL Good Doctor")),
        "nginx forwarded the good doctor's DN: {nginx_dn:?}"
    );
}
