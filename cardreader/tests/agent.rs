//! `hpki-card agent` end to end, with real peers only: pcscd with the vsmartcard vpcd
//! driver (reader "Virtual PCD 00 01", TCP 35964; the card is `pki_tests::vcard`), the real
//! `hpki-gateway` binary with a generated test PKI, a doctor's rustls connection presenting
//! the test card, and the agent binary itself.
//!
//! pcscd must be running (scripts/test.sh starts one); the test fails if it is not. The
//! gateway binary is the workspace's `target/<profile>/hpki-gateway` (built by a
//! workspace build; `HPKI_GATEWAY_BIN` names another).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

const VPCD_PORT: u16 = 35964;
const READER: &str = "Virtual PCD 00 01";
const ORIGIN: &str = "https://portal.test";
const ATR: [u8; 13] = [
    0x3B, 0xDF, 0x18, 0x00, 0x81, 0x31, 0xFE, 0x58, 0x80, 0x31, 0x90, 0x52, 0x41,
];

/// A child process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr, proc: &mut Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{what} exited with {status}:\n{}", proc.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within 20 s:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HPKI_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/agent-<hash> → target/<profile>/hpki-gateway
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("hpki-gateway"))
        .unwrap();
    assert!(
        bin.exists(),
        "the hpki-gateway binary is not at {} (build the workspace, e.g. `cargo build -p \
         hpki-gateway`, or set HPKI_GATEWAY_BIN)",
        bin.display()
    );
    bin
}

/// pcscd must run with the vpcd driver (scripts/test.sh starts it): fail, don't skip. A
/// pcscd that has just started may take a moment to list the reader.
fn require_pcscd() {
    let hint = "start pcscd with the vsmartcard vpcd driver: run the tests with \
                scripts/test.sh (it starts one), or see the PC/SC test setup in docs/cardreader.md";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match hpki_cardreader::reader::list_readers() {
            Ok(readers) if readers.iter().any(|r| r.name == READER) => return,
            Ok(readers) if Instant::now() > deadline => panic!(
                "pcscd runs but has no reader {READER:?} (readers {:?}): {hint}",
                readers.iter().map(|r| &r.name).collect::<Vec<_>>()
            ),
            Err(e) if Instant::now() > deadline => panic!("pcscd is not usable ({e}): {hint}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// An HTTP/1.1 upstream answering every request `200 upstream ok`, keep-alive.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if let Some(v) = line
                            .to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                        {
                            len = v.parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer =
                        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nupstream ok";
                    if w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki_tests::TestPki::generate(&pki_tests::GenerateOptions::default()).unwrap();
        pki.write_to(&dir.path().join("pki")).unwrap();
        let server = pki_tests::server::server_identity(&["127.0.0.1", "localhost"]).unwrap();
        std::fs::create_dir_all(dir.path().join("server")).unwrap();
        std::fs::write(dir.path().join("server/server.pem"), &server.chain_pem).unwrap();
        std::fs::write(dir.path().join("server/server.key"), &server.key_pem).unwrap();
        std::fs::write(dir.path().join("server/server-ca.pem"), &server.ca_pem).unwrap();
        std::fs::write(
            dir.path().join("assertion-es256.pem"),
            hpki_gateway::assertion::AssertionSigner::generate_pem(),
        )
        .unwrap();
        Setup { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The gateway: client_auth = "optional" (the agent calls the end endpoint without a
    /// card); revocation is not what this test is about, so the profile does not check it.
    fn gateway(&self, listen: SocketAddr, upstream: SocketAddr) -> Proc {
        let config = format!(
            r#"[server]
listen = "{listen}"
cert = "{cert}"
key = "{key}"
tls_profile = "hpki-card"
client_auth = "optional"

[assertion]
key = "{akey}"

[[trust]]
name = "hpki-auth"
dir = "{auth}"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]
revocation = {{ sources = [] }}

[[route]]
path = "/"
upstream = "http://{upstream}"
allow_roles = ["Medical Doctor", "Pharmacist", "Dentist"]

[admin]
listen = "127.0.0.1:{admin}"
"#,
            cert = self.path("server/server.pem").display(),
            key = self.path("server/server.key").display(),
            akey = self.path("assertion-es256.pem").display(),
            auth = self.path("pki/trust/hpki-auth").display(),
            admin = free_port(),
        );
        let config_path = self.path("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = self.path("gateway.log");
        let child = Command::new(gateway_bin())
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start hpki-gateway");
        let mut p = Proc { child, log };
        wait_listening(listen, &mut p, "hpki-gateway");
        p
    }

    fn agent(&self, listen: SocketAddr, gateway_ca: &Path) -> Proc {
        let log = self.path("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hpki-card"))
            .args(["agent", "--listen", &listen.to_string()])
            .args(["--allow-origin", ORIGIN])
            .arg("--gateway-ca")
            .arg(gateway_ca)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start hpki-card agent");
        let mut p = Proc { child, log };
        wait_listening(listen, &mut p, "hpki-card agent");
        p
    }

    fn server_ca(&self) -> Vec<u8> {
        std::fs::read(self.path("server/server-ca.pem")).unwrap()
    }

    /// A TLS connection to the gateway: with the test card `card`, or without a card.
    fn connect(
        &self,
        gw: SocketAddr,
        card: Option<&str>,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let ca = self.server_ca();
        let config = match card {
            Some(card) => pki_tests::client::card_client_config(
                &ca,
                &std::fs::read(self.path(&format!("pki/certs/{card}.pem"))).unwrap(),
                PrivateKeyDer::from_pem_file(self.path(&format!("pki/certs/{card}.key"))).unwrap(),
            )
            .unwrap(),
            None => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&ca) {
                    roots.add(c.unwrap()).unwrap();
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }
        };
        let conn =
            rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(gw.ip().into()))
                .unwrap();
        let tcp = TcpStream::connect(gw).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// One response: status, head (lowercase header names), body.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.text()))
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body).
fn read_response(s: &mut impl Read) -> std::io::Result<Resp> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "EOF after {} bytes of the response head",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut resp = Resp {
        status,
        head,
        body: Vec::new(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut b)?;
                line.push(b[0]);
            }
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let len: usize = resp
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        resp.body = vec![0u8; len];
        s.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

fn gw_get(
    s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    gw: SocketAddr,
    path: &str,
) -> std::io::Result<Resp> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {gw}\r\nAccept: application/json\r\n\r\n"
    )?;
    s.flush()?;
    read_response(s)
}

/// One request to the agent on a fresh connection (`Connection: close`).
fn agent_request(
    agent: SocketAddr,
    method: &str,
    path: &str,
    origin: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut s = TcpStream::connect(agent).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {agent}\r\nConnection: close\r\n");
    if let Some(o) = origin {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s).unwrap_or_else(|e| panic!("{method} {path} on the agent: {e}"))
}

/// The agent's event stream: (event name, data) pairs arrive on a channel.
fn open_events(agent: SocketAddr) -> mpsc::Receiver<(String, Value)> {
    let mut s = TcpStream::connect(agent).unwrap();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {agent}\r\nOrigin: {ORIGIN}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "/events: {status}");
    let mut content_type = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-type:") {
            content_type = Some(v.trim().to_owned());
        }
    }
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    std::thread::spawn(move || {
        // The body is chunked: chunk-size lines are neither `event:` nor `data:` lines.
        let mut event = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v: Value = serde_json::from_str(d).unwrap_or(Value::Null);
                if tx.send((std::mem::take(&mut event), v)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits (bounded) for an event matching `want`; returns it.
fn wait_event(
    rx: &mpsc::Receiver<(String, Value)>,
    within: Duration,
    what: &str,
    want: impl Fn(&str, &Value) -> bool,
    agent: &Proc,
) -> Value {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((e, v)) if want(&e, &v) => return v,
            Ok(other) => seen.push(other),
            Err(_) => panic!(
                "no {what} event within {within:?}; saw {seen:?}\nagent log:\n{}",
                agent.log_text()
            ),
        }
    }
}

/// The tests share reader "Virtual PCD 00 01" (cargo test runs them on threads).
static CARD_READER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock_reader() -> std::sync::MutexGuard<'static, ()> {
    CARD_READER.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn pulling_the_card_ends_the_gateway_session() {
    let _reader = lock_reader();
    require_pcscd();
    let setup = Setup::new();
    let up = upstream();
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = setup.gateway(gw_addr, up);

    // The doctor is logged in: a keep-alive connection with the card that works.
    let mut doctor = setup.connect(gw_addr, Some("doctor"));
    let r = gw_get(&mut doctor, gw_addr, "/records").unwrap();
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.head, r.text(), gw_log(&gw));
    assert_eq!(r.text(), "upstream ok");

    // The portal page fetches a one-time token on it.
    let r = gw_get(&mut doctor, gw_addr, "/_hpki/session/token").unwrap();
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.head, r.text(), gw_log(&gw));
    let t = r.json();
    let token = t["token"].as_str().expect("token").to_owned();
    let cert_sha256 = t["cert_sha256"].as_str().expect("cert_sha256").to_owned();
    assert_eq!(t["end_url"], "/_hpki/session/end", "{t}");

    let agent_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = setup.agent(agent_addr, &setup.path("server/server-ca.pem"));

    // Other pages (or none) cannot use the agent.
    let r = agent_request(
        agent_addr,
        "GET",
        "/status",
        Some("https://evil.test"),
        None,
    );
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(r.header("access-control-allow-origin"), None, "{}", r.head);
    let r = agent_request(agent_addr, "GET", "/status", None, None);
    assert_eq!(r.status, 403, "{}", r.head);
    let evil_arm = json!({"gateway": format!("https://{gw_addr}"), "token": token});
    let r = agent_request(
        agent_addr,
        "POST",
        "/session",
        Some("https://evil.test"),
        Some(&evil_arm),
    );
    assert_eq!(r.status, 403, "{}", r.head);

    // The portal's preflight is answered.
    let r = agent_request(agent_addr, "OPTIONS", "/session", Some(ORIGIN), None);
    assert!(r.status == 204 || r.status == 200, "{}", r.head);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{}",
        r.head
    );

    let events = open_events(agent_addr);

    // The card goes in: an event, and the status shows it.
    let card = pki_tests::vcard::VirtualCard::insert(VPCD_PORT, ATR.to_vec(), |_| vec![0x90, 0x00]);
    let atr_hex: String = ATR.iter().map(|b| format!("{b:02X}")).collect();
    let ev = wait_event(
        &events,
        Duration::from_secs(10),
        "card inserted",
        |e, v| e == "card" && v["type"] == "inserted" && v["reader"] == READER,
        &agent,
    );
    assert_eq!(ev["atr"], atr_hex.as_str(), "{ev}");
    let r = agent_request(agent_addr, "GET", "/status", Some(ORIGIN), None);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert_eq!(r.header("vary").as_deref(), Some("Origin"));
    let status = r.json();
    let reader = status["readers"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == READER))
        .unwrap_or_else(|| panic!("{READER} not in {status}"));
    assert_eq!(reader["card_present"], true, "{status}");
    assert_eq!(reader["atr"], atr_hex.as_str(), "{status}");
    assert_eq!(status["session"]["armed"], false, "{status}");

    // The page arms the agent with the token.
    let arm = json!({
        "gateway": format!("https://{gw_addr}"),
        "token": token,
        "reader": READER,
        "cert_sha256": cert_sha256,
    });
    let r = agent_request(agent_addr, "POST", "/session", Some(ORIGIN), Some(&arm));
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let status = agent_request(agent_addr, "GET", "/status", Some(ORIGIN), None).json();
    assert_eq!(status["session"]["armed"], true, "{status}");
    assert_eq!(
        status["session"]["cert_sha256"],
        cert_sha256.as_str(),
        "{status}"
    );

    // Still logged in.
    let r = gw_get(&mut doctor, gw_addr, "/records").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());

    // The card is pulled: the agent ends the session at the gateway.
    card.remove();
    wait_event(
        &events,
        Duration::from_secs(10),
        "card removed",
        |e, v| e == "card" && v["type"] == "removed" && v["reader"] == READER,
        &agent,
    );
    let ended = wait_event(
        &events,
        Duration::from_secs(15),
        "session ended",
        |e, v| e == "session" && (v["type"] == "ended" || v["type"] == "end_failed"),
        &agent,
    );
    assert_eq!(
        ended["type"],
        "ended",
        "{ended}\nagent log:\n{}\ngateway log:\n{}",
        agent.log_text(),
        gw_log(&gw)
    );
    assert!(
        ended["connections"].as_u64().is_some_and(|n| n >= 1),
        "{ended}"
    );
    let status = agent_request(agent_addr, "GET", "/status", Some(ORIGIN), None).json();
    assert_eq!(status["session"]["armed"], false, "{status}");

    // The doctor's connection is closed: a further request on it fails (bounded: the
    // gateway may finish a request already on its way before it closes).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match gw_get(&mut doctor, gw_addr, "/records") {
            Err(_) => break,
            Ok(r) if r.status != 200 => break,
            Ok(r) => assert!(
                Instant::now() < deadline,
                "the doctor's connection still works 5 s after the session ended: {}\n{}",
                r.head,
                gw_log(&gw)
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The token was one-time: replayed without a card, the gateway refuses it.
    let r = post_end(&setup, gw_addr, &token);
    assert_ne!(r.status, 200, "a replayed token was accepted: {}", r.text());
    assert!((400..500).contains(&r.status), "{}\n{}", r.head, r.text());

    // With the card back, a new connection logs in again.
    let mut again = setup.connect(gw_addr, Some("doctor"));
    let r = gw_get(&mut again, gw_addr, "/records").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());
}

fn gw_log(gw: &Proc) -> String {
    let text = gw.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// POST /_hpki/session/end without a card: the gateway's answer.
fn post_end(setup: &Setup, gw_addr: SocketAddr, token: &str) -> Resp {
    let mut anon = setup.connect(gw_addr, None);
    let body = json!({"token": token}).to_string();
    write!(
        anon,
        "POST /_hpki/session/end HTTP/1.1\r\nHost: {gw_addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    anon.flush().unwrap();
    read_response(&mut anon).unwrap()
}

#[test]
fn an_untrusted_gateway_certificate_is_reported_and_the_token_is_not_spent() {
    let _reader = lock_reader();
    require_pcscd();
    let setup = Setup::new();
    let up = upstream();
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = setup.gateway(gw_addr, up);
    let mut doctor = setup.connect(gw_addr, Some("doctor"));
    let r = gw_get(&mut doctor, gw_addr, "/_hpki/session/token").unwrap();
    assert_eq!(r.status, 200, "{}\n{}\n{}", r.head, r.text(), gw_log(&gw));
    let token = r.json()["token"].as_str().expect("token").to_owned();

    // The agent trusts another CA than the one that issued the gateway's certificate.
    let other = pki_tests::server::server_identity(&["127.0.0.1"]).unwrap();
    let other_ca = setup.path("other-ca.pem");
    std::fs::write(&other_ca, &other.ca_pem).unwrap();
    let agent_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = setup.agent(agent_addr, &other_ca);
    let events = open_events(agent_addr);

    let card = pki_tests::vcard::VirtualCard::insert(VPCD_PORT, ATR.to_vec(), |_| vec![0x90, 0x00]);
    wait_event(
        &events,
        Duration::from_secs(10),
        "card inserted",
        |e, v| e == "card" && v["type"] == "inserted" && v["reader"] == READER,
        &agent,
    );
    let arm = json!({"gateway": format!("https://{gw_addr}"), "token": token});
    let r = agent_request(agent_addr, "POST", "/session", Some(ORIGIN), Some(&arm));
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());
    card.remove();

    // Retried with back-off, then reported.
    let failed = wait_event(
        &events,
        Duration::from_secs(30),
        "session end_failed",
        |e, v| e == "session" && (v["type"] == "end_failed" || v["type"] == "ended"),
        &agent,
    );
    assert_eq!(failed["type"], "end_failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("TLS"), "{failed}");
    let attempts = agent.log_text().matches("session end failed").count();
    assert!(attempts >= 3, "expected retries:\n{}", agent.log_text());

    // The gateway never accepted the call: the doctor is still logged in and the token
    // still ends the session once.
    let r = gw_get(&mut doctor, gw_addr, "/records").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());
    let r = post_end(&setup, gw_addr, &token);
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.text());
    assert_eq!(r.json()["ended"], 1, "{}", r.text());
}

#[test]
fn refuses_a_non_loopback_address_and_needs_an_origin() {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-card"))
        .args([
            "agent",
            "--listen",
            "0.0.0.0:9731",
            "--allow-origin",
            ORIGIN,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{out:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-card"))
        .args(["agent", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-origin"),
        "{out:?}"
    );
}
