//! End-to-end harness: a generated HPKI-shaped PKI, an upstream that records exactly what
//! reached it, and the real `hpki-gateway` binary started with a config. Clients are real
//! programs (curl, openssl s_client) driven by the tests.

#![allow(dead_code)]

pub mod postgres;
pub mod workflow;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The test PKI plus a server identity, generated once per test process.
pub struct Pki {
    pub dir: PathBuf,
    pub manifest: pki_tests::Manifest,
    /// The generator, kept to issue new CRLs (revocations) during tests.
    pub generated: pki_tests::TestPki,
    /// Serves `dir/pki/crls/<ca>.crl` at the distribution points the certificates name.
    pub crl_server: CrlServer,
}

impl Pki {
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join("pki/certs").join(format!("{name}.pem"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join("pki/certs").join(format!("{name}.key"))
    }
    pub fn trust(&self, profile: &str) -> PathBuf {
        self.dir.join("pki/trust").join(profile)
    }
    pub fn server_ca(&self) -> PathBuf {
        self.dir.join("server/server-ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server/server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server/server.key")
    }
    pub fn assertion_key(&self) -> PathBuf {
        self.dir.join("assertion-es256.pem")
    }
    /// The file served at CA `ca`'s distribution point.
    pub fn served_crl(&self, ca: &str) -> PathBuf {
        self.dir.join("pki/crls").join(format!("{ca}.crl"))
    }
}

/// A plain HTTP server for CRL files; each request reads the file afresh, so a test
/// publishes a new CRL by replacing the file. Counts requests per path.
pub struct CrlServer {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<String>>>,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl CrlServer {
    fn start(listener: std::net::TcpListener, root: PathBuf) -> CrlServer {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        );
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let hits2 = hits.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let root = root.clone();
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let path = req.uri().path().trim_start_matches('/').to_owned();
                            hits.lock().unwrap().push(path.clone());
                            let file = root.join(&path);
                            async move {
                                let (status, body) =
                                    match (path.contains(".."), std::fs::read(&file)) {
                                        (false, Ok(bytes)) => (200, bytes),
                                        _ => (404, Vec::new()),
                                    };
                                let mut resp = http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from(body),
                                ));
                                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        CrlServer {
            addr,
            hits,
            _runtime: runtime,
        }
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("server")).unwrap();
        // The distribution points must name this process's CRL server, so bind it first.
        let crl_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = pki_tests::GenerateOptions {
            crl_base_url: format!("http://{}", crl_listener.local_addr().unwrap()),
            ..pki_tests::GenerateOptions::default()
        };
        let pki = pki_tests::TestPki::generate(&opts).unwrap();
        let manifest = pki.write_to(&dir.join("pki")).unwrap();
        let crl_server = CrlServer::start(crl_listener, dir.join("pki/crls"));
        let server = pki_tests::server::server_identity(&["127.0.0.1", "localhost"]).unwrap();
        std::fs::write(dir.join("server/server.pem"), &server.chain_pem).unwrap();
        std::fs::write(dir.join("server/server.key"), &server.key_pem).unwrap();
        std::fs::write(dir.join("server/server-ca.pem"), &server.ca_pem).unwrap();
        std::fs::write(
            dir.join("assertion-es256.pem"),
            hpki_gateway::assertion::AssertionSigner::generate_pem(),
        )
        .unwrap();
        Pki {
            dir,
            manifest,
            generated: pki,
            crl_server,
        }
    })
}

/// One request as the upstream saw it: header names lowercase, in arrival order,
/// duplicates kept.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// The first 64 KiB of the body (uploads in the streaming tests are far bigger).
    pub body_head: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn hpki_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with("x-hpki-"))
            .collect();
        names.sort();
        names
    }
}

/// An HTTP/1.1 upstream on loopback that records every request and answers 200 with
/// `upstream ok`. `GET /big/<bytes>` answers a body of that many bytes, streamed in 64 KiB
/// chunks without holding it in memory.
pub struct Upstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let rec = received.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| upstream_respond(req, rec.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            received,
            _runtime: runtime,
        }
    }

    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

type UpBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

async fn upstream_respond(
    req: http::Request<hyper::body::Incoming>,
    rec: Arc<Mutex<Vec<Received>>>,
) -> Result<http::Response<UpBody>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = req.into_body();
    let mut body_len = 0u64;
    let mut body_head = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_len += d.len() as u64;
                    let room = (64 * 1024usize).saturating_sub(body_head.len());
                    body_head.extend_from_slice(&d[..d.len().min(room)]);
                }
            }
            Err(_) => break,
        }
    }
    rec.lock().unwrap().push(Received {
        method,
        path: path.clone(),
        query,
        headers,
        body_len,
        body_head,
    });
    let body: UpBody = match path
        .strip_prefix("/big/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(total) => {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_stream(total, chunk);
            http_body_util::StreamBody::new(stream).boxed()
        }
        None => http_body_util::Full::new(bytes::Bytes::from_static(b"upstream ok"))
            .map_err(|never| match never {})
            .boxed(),
    };
    Ok(http::Response::new(body))
}

/// A stream of `total` bytes in chunks, without an extra crate.
fn futures_stream(
    total: u64,
    chunk: bytes::Bytes,
) -> impl futures_core_stream::Stream<Item = Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>
{
    futures_core_stream::ChunkStream { left: total, chunk }
}

mod futures_core_stream {
    pub use futures_core::Stream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct ChunkStream {
        pub left: u64,
        pub chunk: bytes::Bytes,
    }

    impl Stream for ChunkStream {
        type Item = Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let n = self.left.min(self.chunk.len() as u64) as usize;
            self.left -= n as u64;
            Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.slice(..n)))))
        }
    }
}

/// A free loopback port (bound then released; good enough for tests on one machine).
/// A loopback port free now, for a server a test starts. Taken below Linux's ephemeral
/// range (32768-60999): a port the kernel hands out with `bind(0)` can be handed out again
/// as the local port of some test's outgoing connection before our server binds it (seen
/// as "Address already in use" under the load tests); ports below that range are only
/// ever taken on purpose. Random start, so parallel test processes rarely try the same.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let start = (h.finish() % 12_000) as u16;
    // Never the same port twice in one process (the first may not be bound yet).
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    for i in 0..12_000u16 {
        let port = 20_000 + (start + i) % 12_000;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free loopback address for a gateway's listener.
pub fn listen_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The config text for a gateway in front of `upstream` with the test PKI's profiles.
/// `extra_routes` is appended as is (TOML `[[route]]` tables).
pub fn config(
    listen: SocketAddr,
    upstream: SocketAddr,
    tls_profile: &str,
    client_auth: &str,
    extra_routes: &str,
) -> String {
    let p = pki();
    format!(
        r#"[server]
listen = "{listen}"
cert = "{cert}"
key = "{key}"
tls_profile = "{tls_profile}"
client_auth = "{client_auth}"

[assertion]
key = "{akey}"

[[trust]]
name = "hpki-auth"
dir = "{auth}"
kind = "person"
require_policies = ["1.2.392.100495.1.5.1.2"]

[[trust]]
name = "hpki-org"
dir = "{org}"
kind = "organization"
require_policies = ["1.2.392.100495.1.5.1.3"]

[[route]]
path = "/"
upstream = "http://{upstream}"
allow_roles = ["Medical Doctor", "Pharmacist", "Dentist"]

[[route]]
path = "/clinic"
upstream = "http://{upstream}"
allow_kinds = ["person", "organization"]

[[route]]
path = "/public"
upstream = "http://{upstream}"
allow_anonymous = true
{extra_routes}
"#,
        cert = p.server_cert().display(),
        key = p.server_key().display(),
        akey = p.assertion_key().display(),
        auth = p.trust("hpki-auth").display(),
        org = p.trust("hpki-org").display(),
    )
}

/// The real gateway binary, running; killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener (healthz, readyz, metrics).
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Gateway {
    /// Writes `config_text` and starts `hpki-gateway run`; waits (bounded) until it listens.
    pub fn start(config_text: &str, listen: SocketAddr) -> Gateway {
        Gateway::start_with_env(config_text, listen, &[])
    }

    /// [`Gateway::start`] with extra environment variables for the process.
    pub fn start_with_env(config_text: &str, listen: SocketAddr, env: &[(&str, &str)]) -> Gateway {
        let dir = pki().dir.join(format!("gw-{}", listen.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.toml");
        // Tests run in parallel: each gateway gets its own admin port unless the test
        // chose one (a restart with the same config text keeps it).
        let config_text = if config_text.contains("\n[admin]") {
            config_text.to_owned()
        } else {
            format!(
                "{config_text}\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
                free_port()
            )
        };
        std::fs::write(&config, &config_text).unwrap();
        let admin: SocketAddr = config_text
            .split("\n[admin]")
            .nth(1)
            .and_then(|t| t.lines().find(|l| l.starts_with("listen")))
            .and_then(|l| l.split('"').nth(1))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| "127.0.0.1:9900".parse().unwrap());
        let log = dir.join("gateway.log");
        let child = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start hpki-gateway");
        let mut gw = Gateway {
            child,
            addr: listen,
            admin,
            log,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(listen).is_err() {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("hpki-gateway exited with {status}:\n{}", gw.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "hpki-gateway did not listen:\n{}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    /// GET on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .arg(format!("http://{}{path}", self.admin))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The records of this gateway's audit log (default `[audit] dir`, beside its
    /// config), waiting up to 5 s for one that `matches` (allowed requests and other
    /// non-durable records are group-committed).
    pub fn audit_record(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let dir = self.audit_dir();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = audit_records(&dir).into_iter().find(|r| matches(r));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The default audit directory of this gateway (`var/audit` beside its config).
    pub fn audit_dir(&self) -> PathBuf {
        self.config.parent().unwrap().join("var/audit")
    }

    /// Waits (bounded) for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, as a service manager stops it (drain, flush the audit log); its exit
    /// code, or None when it has not exited `within`.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM {}", self.child.id());
        self.wait_exit(within)
    }

    /// SIGKILL, as a crash: nothing is flushed or drained.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident set size of the gateway process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }
}

/// Every record of every audit segment under `dir` (all nodes), in file order.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway with the standard config in front of a fresh upstream.
pub fn gateway(tls_profile: &str, client_auth: &str) -> (Gateway, Upstream) {
    let upstream = Upstream::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(
        &config(listen, upstream.addr, tls_profile, client_auth, ""),
        listen,
    );
    (gw, upstream)
}

/// Result of a curl run.
pub struct CurlResult {
    pub status: u16,
    pub body: String,
    pub stderr: String,
    pub exit: i32,
}

/// curl with the server CA; `card` = Some(name) presents that test card (PEM cert + key).
pub fn curl(gw: &Gateway, card: Option<&str>, path: &str, extra: &[&str]) -> CurlResult {
    let p = pki();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(p.server_ca());
    if let Some(card) = card {
        cmd.arg("--cert")
            .arg(p.cert(card))
            .arg("--key")
            .arg(p.key(card));
    }
    cmd.args(extra).arg(gw.url(path));
    output_to_result(cmd.output().expect("curl must be installed"))
}

fn output_to_result(out: Output) -> CurlResult {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    CurlResult {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit: out.status.code().unwrap_or(-1),
    }
}

/// The `error` field of a JSON denial body.
pub fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
}

/// A blocking HTTP/1.1 rustls connection to the gateway presenting test card `card`
/// (software key), trusting the harness's server CA; 10 s read/write timeouts.
pub fn card_connection(
    gw: &Gateway,
    card: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    let p = pki();
    let config = pki_tests::client::card_client_config(
        &std::fs::read(p.server_ca()).unwrap(),
        &std::fs::read(p.cert(card)).unwrap(),
        PrivateKeyDer::from_pem_file(p.key(card)).unwrap(),
    )
    .unwrap();
    let name = ServerName::IpAddress(gw.addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(gw.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Bytes as text (lossy), for messages and command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; a missing program or a failure names itself.
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run {:?}: {e} (install the packages of deploy/setup.sh)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Writes `dir/openssl-pkcs11.cnf`, an OpenSSL config that points the pkcs11 engine at
/// SoftHSM2 (not at p11-kit's proxy), and returns its path (for `OPENSSL_CONF`).
pub fn openssl_pkcs11_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("openssl-pkcs11.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n\n[openssl_init]\nengines = engine_section\n\n\
             [engine_section]\npkcs11 = pkcs11_section\n\n[pkcs11_section]\n\
             engine_id = pkcs11\ndynamic_path = {}\nMODULE_PATH = {SOFTHSM_MODULE}\ninit = 0\n",
            openssl_pkcs11_engine().display()
        ),
    )
    .unwrap();
    conf
}

/// OpenSSL's pkcs11 engine (`pkcs11.so` in the directory `openssl version -e` names),
/// or a failure that says which package installs it.
pub fn openssl_pkcs11_engine() -> PathBuf {
    let out = run_ok(
        Command::new("openssl").args(["version", "-e"]),
        "openssl version -e",
    );
    let line = text(&out.stdout);
    let dir = line
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected `openssl version -e` output: {line}"));
    let engine = Path::new(dir).join("pkcs11.so");
    assert!(
        engine.exists(),
        "OpenSSL's pkcs11 engine {} is missing: install libengine-pkcs11-openssl (deploy/setup.sh)",
        engine.display()
    );
    engine
}

/// SoftHSM2's PKCS#11 module: the tests' HPKI card.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The token label of an HPKI card's application.
pub const HPKI_TOKEN_LABEL: &str = "HPKI Application";

/// SoftHSM2 hides these mechanisms to look like a real HPKI card, which signs PKCS#1 v1.5
/// only: no RSA-PSS, and no raw RSA to sign PSS padding with. (In a `-` list SoftHSM2
/// ignores the first name, hence the empty one.)
pub const PKCS1_ONLY: &str = "slots.mechanisms = -,CKM_RSA_PKCS_PSS,CKM_SHA1_RSA_PKCS_PSS,\
CKM_SHA224_RSA_PKCS_PSS,CKM_SHA256_RSA_PKCS_PSS,CKM_SHA384_RSA_PKCS_PSS,\
CKM_SHA512_RSA_PKCS_PSS,CKM_RSA_X_509";

/// The two SoftHSM2 configs of one token directory: keys are generated under the first,
/// the second shows the same token as an HPKI card shows itself.
pub struct SoftToken {
    pub all_mechanisms: PathBuf,
    pub pkcs1_only: PathBuf,
}

/// Initialises the token "HPKI Application" (user PIN `pin`) in `dir/tokens` and writes
/// both configs.
pub fn softhsm_token(dir: &Path, pin: &str) -> SoftToken {
    assert!(
        Path::new(SOFTHSM_MODULE).exists(),
        "SoftHSM2's PKCS#11 module {SOFTHSM_MODULE} is missing: install softhsm2 (deploy/setup.sh)"
    );
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let base = format!(
        "directories.tokendir = {}/tokens\nobjectstore.backend = file\nslots.removable = false\nlog.level = ERROR\n",
        dir.display()
    );
    let token = SoftToken {
        all_mechanisms: dir.join("softhsm2.conf"),
        pkcs1_only: dir.join("softhsm2-pkcs1-only.conf"),
    };
    std::fs::write(&token.all_mechanisms, &base).unwrap();
    std::fs::write(&token.pkcs1_only, format!("{base}{PKCS1_ONLY}\n")).unwrap();
    run_ok(
        Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &token.all_mechanisms)
            .args(["--init-token", "--free", "--label", HPKI_TOKEN_LABEL])
            .args(["--so-pin", "12345678", "--pin", pin]),
        "softhsm2-util --init-token",
    );
    token
}

/// The public key of the HPKI token's key (CKA_ID 0x17), read without a PIN and written
/// as PEM to `dir/pub.pem`: what a CA certifies for the card.
pub fn token_public_key_pem(softhsm_conf: &Path, dir: &Path) -> PathBuf {
    let pub_der = dir.join("pub.der");
    let pub_pem = dir.join("pub.pem");
    run_ok(
        pkcs11_tool(softhsm_conf)
            .args(["--read-object", "--type", "pubkey", "--id", "17", "-o"])
            .arg(&pub_der),
        "pkcs11-tool --read-object pubkey",
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&pub_der)
            .arg("-out")
            .arg(&pub_pem),
        "openssl pkey (public key DER to PEM)",
    );
    pub_pem
}

/// A doctor's HPKI-shaped authentication certificate for `pub_pem`, issued with the
/// openssl CLI (independently of the gateway's parser) by the CA `ca_pem`/`ca_key`:
/// critical authentication policy, keyUsage digitalSignature, clientAuth, hcRole
/// "Medical Doctor", plus `extra_extensions` (openssl extfile lines, e.g. the kanji SAN).
pub struct AuthCardIssue<'a> {
    pub ca_pem: &'a Path,
    pub ca_key: &'a Path,
    pub subject: &'a str,
    pub serial: &'a str,
    pub days: u32,
    pub extra_extensions: &'a str,
}

impl AuthCardIssue<'_> {
    /// Writes the certificate to `out` (PEM); the extfile goes beside it.
    pub fn issue(&self, pub_pem: &Path, out: &Path) {
        let hc_role =
            pki_tests::der_writer::to_hex(&pki_tests::hc_role_extension_value(&["Medical Doctor"]));
        let extfile = out.with_extension("ext.cnf");
        std::fs::write(
            &extfile,
            format!(
                "certificatePolicies = critical, 1.2.392.100495.1.5.1.2.0.1\n\
                 keyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = clientAuth\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n\
                 {}\
                 2.5.29.9 = DER:{hc_role}\n",
                self.extra_extensions
            ),
        )
        .unwrap();
        run_ok(
            Command::new("openssl")
                .args(["x509", "-new", "-sha256", "-days", &self.days.to_string()])
                .args(["-subj", self.subject])
                .arg("-force_pubkey")
                .arg(pub_pem)
                .arg("-CA")
                .arg(self.ca_pem)
                .arg("-CAkey")
                .arg(self.ca_key)
                .args(["-set_serial", self.serial, "-extfile"])
                .arg(&extfile)
                .arg("-out")
                .arg(out),
            "openssl x509 -new -force_pubkey (issue the card certificate)",
        );
    }
}

/// Writes `cert` (PEM) onto the HPKI token as its end-entity certificate (CKA_ID 0x17, the
/// label real HPKI cards use), next to the key with the same id.
pub fn write_token_certificate(softhsm_conf: &Path, pin: &str, cert: &Path) {
    run_ok(
        pkcs11_tool(softhsm_conf)
            .args(["--login", "--pin", pin, "--write-object"])
            .arg(cert)
            .args(["--type", "cert", "--id", "17"])
            .args(["--label", "HPKI END ENTITY CERTIFICATE"]),
        "pkcs11-tool --write-object (the card's certificate)",
    );
}

/// `pkcs11-tool` on the HPKI token of the SoftHSM2 config `softhsm_conf`.
pub fn pkcs11_tool(softhsm_conf: &Path) -> Command {
    let mut cmd = Command::new("pkcs11-tool");
    cmd.env("SOFTHSM2_CONF", softhsm_conf).args([
        "--module",
        SOFTHSM_MODULE,
        "--token-label",
        HPKI_TOKEN_LABEL,
    ]);
    cmd
}

/// `hpki-gateway ARGS...`: (exit code, stdout + stderr).
pub fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hpki-gateway"))
        .args(args)
        .output()
        .expect("run hpki-gateway");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
