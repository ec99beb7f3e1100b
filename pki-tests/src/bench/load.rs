//! The load generator: HTTP/1.1 over rustls (TLS 1.2, the cards' RSA-2048 keys) or plain
//! TCP, on hyper's client connection. Every run is bounded by a duration and a count, and
//! measures only its steady part: connections are set up first, then the clock and the
//! server's CPU time are read, then the load runs.
//!
//! Modes: [`keep_alive`] (fixed connections, optional fixed rate, latency of each request),
//! [`handshakes`] (one request per connection, cycling through distinct cards; full or
//! resumed), [`download`] (one big body, counted and dropped as it arrives) and
//! [`IdleConnections`] (many connections held open after one request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider, kx_group};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::cards::Card;
use super::servers::CpuTime;

/// Why a load run could not be done at all (failures of single requests are counted).
#[derive(Debug, Clone)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

fn fail(what: impl std::fmt::Display) -> LoadError {
    LoadError(what.to_string())
}

/// The TLS client side: one configuration per card and per resumption mode.
pub struct TlsClients {
    server_name: ServerName<'static>,
    /// Resumption off: every connection is a full handshake.
    full: Vec<Arc<rustls::ClientConfig>>,
    /// Each with a session cache of its own: resumed after the card's first connection.
    resuming: Vec<Arc<rustls::ClientConfig>>,
}

impl TlsClients {
    /// What both proxies are offered, so that they negotiate the same thing: TLS 1.2,
    /// ECDHE over X25519, AES-128-GCM (P-256 is offered too: in TLS 1.2 the supported
    /// groups also say which ECDSA server certificates the client can verify, and OpenSSL
    /// holds clients to that). The card signs PKCS#1 v1.5 (what HPKI cards do;
    /// both servers are configured to ask for no RSA-PSS).
    pub fn new(server_ca_pem: &[u8], cards: &[Card]) -> Result<TlsClients, LoadError> {
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: vec![
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ],
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
            ..default_provider()
        });
        let mut full = Vec::with_capacity(cards.len());
        let mut resuming = Vec::with_capacity(cards.len());
        for card in cards {
            let key = PrivateKeyDer::from_pem_slice(card.key_pem.as_bytes()).map_err(fail)?;
            let certified =
                crate::client::certified_card(&provider, card.chain_pem.as_bytes(), key)
                    .map_err(fail)?;
            let config = |resumption| -> Result<Arc<rustls::ClientConfig>, LoadError> {
                let mut c = crate::client::card_client_config_with(
                    server_ca_pem,
                    certified.clone(),
                    provider.clone(),
                    &[&rustls::version::TLS12],
                )
                .map_err(fail)?;
                c.resumption = resumption;
                Ok(Arc::new(c))
            };
            full.push(config(Resumption::disabled())?);
            resuming.push(config(Resumption::in_memory_sessions(4))?);
        }
        if full.is_empty() {
            return Err(fail("no cards"));
        }
        Ok(TlsClients {
            server_name: ServerName::try_from("127.0.0.1").map_err(fail)?,
            full,
            resuming,
        })
    }

    pub fn cards(&self) -> usize {
        self.full.len()
    }
}

/// Where the load goes: a TLS proxy (with the cards) or the plain upstream.
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<TlsClients>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Full,
    Resumed,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An HTTP/1.1 connection: its request sender and the task that drives it.
pub struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    /// Whether the TLS handshake resumed a session.
    pub resumed: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Opens a connection with card `card` (cycled); `mode` says whether the card's cached
/// session may be resumed.
pub async fn connect(
    target: &Target,
    card: usize,
    mode: Handshake,
) -> Result<Connection, LoadError> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| fail(format!("connect {}: {e}", target.addr)))?;
    let _ = tcp.set_nodelay(true);
    let (io, resumed): (Box<dyn Io>, bool) = match &target.tls {
        None => (Box::new(tcp), false),
        Some(tls) => {
            let configs = match mode {
                Handshake::Full => &tls.full,
                Handshake::Resumed => &tls.resuming,
            };
            let config = configs[card % configs.len()].clone();
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(tls.server_name.clone(), tcp)
                .await
                .map_err(|e| fail(format!("TLS handshake: {e}")))?;
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            (Box::new(stream), resumed)
        }
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| fail(format!("HTTP/1.1 handshake: {e}")))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Connection {
        sender,
        driver,
        resumed,
    })
}

impl Connection {
    /// Sends `GET path`, reads the whole body (counted, not kept) and returns its length;
    /// anything but 200 is an error naming the status and the start of the body.
    pub async fn get(&mut self, path: &str, close: bool) -> Result<u64, LoadError> {
        self.sender
            .ready()
            .await
            .map_err(|e| fail(format!("connection not ready: {e}")))?;
        let mut req = hyper::Request::get(path).header(http::header::HOST, "127.0.0.1");
        if close {
            req = req.header(http::header::CONNECTION, "close");
        }
        let req = req.body(Empty::new()).map_err(fail)?;
        let response = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| fail(format!("request: {e}")))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut len = 0u64;
        let mut head = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fail(format!("response body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
                if status != http::StatusCode::OK && head.len() < 300 {
                    head.extend_from_slice(&data[..data.len().min(300)]);
                }
            }
        }
        if status != http::StatusCode::OK {
            return Err(fail(format!(
                "{status}: {}",
                String::from_utf8_lossy(&head).trim()
            )));
        }
        Ok(len)
    }

    /// `GET path`, the body as text (for the checks a run does before measuring).
    pub async fn get_text(&mut self, path: &str) -> Result<(u16, String), LoadError> {
        let req = hyper::Request::get(path)
            .header(http::header::HOST, "127.0.0.1")
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(fail)?;
        self.sender
            .ready()
            .await
            .map_err(|e| fail(format!("connection not ready: {e}")))?;
        let response = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| fail(format!("request: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(format!("response body: {e}")))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// Latencies in microseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    fn from_unsorted(mut v: Vec<u32>) -> Latencies {
        v.sort_unstable();
        Latencies(v)
    }

    /// The `q` quantile (0..=1) in milliseconds; 0 when nothing was measured.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
        f64::from(self.0[i]) / 1000.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one bounded run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Requests (keep-alive, download) or connections (handshakes) completed.
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Length of the measured window.
    pub secs: f64,
    /// Server CPU time (user + system) spent in the window, microseconds.
    pub server_cpu_us: u64,
    pub latencies: Latencies,
    /// Connections whose handshake resumed a session.
    pub resumed: u64,
    /// Response body bytes received.
    pub bytes: u64,
}

impl RunResult {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }

    /// Server CPU microseconds per operation.
    pub fn cpu_per_op(&self) -> f64 {
        self.server_cpu_us as f64 / (self.ops.max(1)) as f64
    }
}

/// Counts errors and keeps the first message.
#[derive(Default)]
struct Errors {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Errors {
    fn add(&self, e: LoadError) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first.lock() {
            f.get_or_insert(e.0);
        }
    }
}

/// Reads the server's CPU time.
pub type CpuClock<'a> = &'a (dyn Fn() -> CpuTime + Sync);

/// No server to measure (the upstream called directly).
pub fn no_cpu() -> CpuTime {
    CpuTime::default()
}

#[derive(Debug, Clone)]
pub struct KeepAlive {
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
    pub path: String,
    /// Requests per second over all connections; `None` = as fast as answers come.
    pub rate: Option<f64>,
}

/// Keep-alive requests on `connections` connections (card i on connection i; full
/// handshakes, outside the window).
///
/// With a `rate` the load is open-loop: a pacing thread releases requests evenly spaced
/// in time (sleeping with the kernel's high-resolution timers: tokio's timer wheel has a
/// millisecond granularity and would release every request due in the same millisecond
/// together, a burst real clients do not make), the first free connection sends each, and
/// latency counts from when the request was due, so that a server falling behind is
/// charged for the wait too.
pub async fn keep_alive(
    target: &Arc<Target>,
    opts: &KeepAlive,
    cpu: CpuClock<'_>,
) -> Result<RunResult, LoadError> {
    let mut connections = Vec::with_capacity(opts.connections);
    for i in 0..opts.connections {
        connections.push(connect(target, i, Handshake::Full).await?);
    }
    let errors = Arc::new(Errors::default());
    let issued = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let schedule = opts.rate.map(|rate| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let period = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let max = opts.max_requests;
        std::thread::spawn(move || {
            let mut due = start;
            let mut n = 0u64;
            while due < deadline && n < max {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if tx.send(due).is_err() {
                    break;
                }
                due += period;
                n += 1;
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in connections {
        let (errors, issued, path, max, schedule) = (
            errors.clone(),
            issued.clone(),
            opts.path.clone(),
            opts.max_requests,
            schedule.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut bytes = 0u64;
            loop {
                let due = match &schedule {
                    Some(rx) => match rx.lock().await.recv().await {
                        Some(due) => due,
                        None => break,
                    },
                    None => Instant::now(),
                };
                if Instant::now() >= deadline || issued.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
                match conn.get(&path, false).await {
                    Ok(n) => {
                        latencies.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        bytes += n;
                    }
                    Err(e) => {
                        errors.add(e);
                        break;
                    }
                }
            }
            (latencies, bytes)
        });
    }
    let (mut result, bytes) = finish(tasks, &errors, start, cpu, &cpu0).await?;
    result.bytes = bytes;
    Ok(result)
}

/// Joins the tasks of a run, each returning its latencies and a count, and reads the
/// server's CPU time: the result, and the sum of the counts.
async fn finish(
    mut tasks: tokio::task::JoinSet<(Vec<u32>, u64)>,
    errors: &Errors,
    start: Instant,
    cpu: CpuClock<'_>,
    cpu0: &CpuTime,
) -> Result<(RunResult, u64), LoadError> {
    let mut all = Vec::new();
    let mut count = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, n) = done.map_err(fail)?;
        all.extend_from_slice(&l);
        count += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let server_cpu_us = cpu().since(cpu0);
    let result = RunResult {
        ops: all.len() as u64,
        errors: errors.count.load(Ordering::Relaxed),
        first_error: errors.first.lock().ok().and_then(|f| f.clone()),
        secs,
        server_cpu_us,
        latencies: Latencies::from_unsorted(all),
        resumed: 0,
        bytes: 0,
    };
    Ok((result, count))
}

#[derive(Debug, Clone)]
pub struct Handshakes {
    /// Connections being set up at once.
    pub concurrency: usize,
    pub duration: Duration,
    pub max_connections: u64,
    pub path: String,
    pub mode: Handshake,
}

/// One request per connection, cycling through the cards; latency is connect +
/// handshake + request.
pub async fn handshakes(
    target: &Arc<Target>,
    opts: &Handshakes,
    cpu: CpuClock<'_>,
) -> Result<RunResult, LoadError> {
    let next_card = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Errors::default());
    let issued = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu();
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (target, next_card, errors, issued, opts) = (
            target.clone(),
            next_card.clone(),
            errors.clone(),
            issued.clone(),
            opts.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(1024);
            let mut resumed = 0u64;
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < opts.max_connections
            {
                let card = next_card.fetch_add(1, Ordering::Relaxed);
                let began = Instant::now();
                let result = async {
                    let mut conn = connect(&target, card, opts.mode).await?;
                    conn.get(&opts.path, true).await?;
                    Ok::<_, LoadError>(conn.resumed)
                }
                .await;
                match result {
                    Ok(r) => {
                        latencies.push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        resumed += u64::from(r);
                    }
                    Err(e) => errors.add(e),
                }
            }
            (latencies, resumed)
        });
    }
    let (mut result, resumed) = finish(tasks, &errors, start, cpu, &cpu0).await?;
    result.resumed = resumed;
    Ok(result)
}

/// One connection per card with its resuming configuration and one request, so that
/// every card has a session to resume.
pub async fn warm_sessions(target: &Arc<Target>, concurrency: usize) -> Result<(), LoadError> {
    let cards = target.tls.as_ref().map(|t| t.cards()).unwrap_or(0);
    let opts = Handshakes {
        concurrency,
        duration: Duration::from_secs(600),
        max_connections: cards as u64,
        path: "/".into(),
        mode: Handshake::Resumed,
    };
    let r = handshakes(target, &opts, &no_cpu).await?;
    match r.first_error {
        Some(e) => Err(fail(format!(
            "warming the session caches: {} errors, first: {e}",
            r.errors
        ))),
        None => Ok(()),
    }
}

/// `count` sequential downloads of `path` on one connection; bytes are counted and
/// dropped.
pub async fn download(
    target: &Arc<Target>,
    path: &str,
    count: u64,
    cpu: CpuClock<'_>,
) -> Result<RunResult, LoadError> {
    let mut conn = connect(target, 0, Handshake::Full).await?;
    let cpu0 = cpu();
    let start = Instant::now();
    let mut result = RunResult::default();
    for _ in 0..count {
        let began = Instant::now();
        match conn.get(path, false).await {
            Ok(n) => {
                result.ops += 1;
                result.bytes += n;
                result
                    .latencies
                    .0
                    .push(began.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(e.0);
                break;
            }
        }
    }
    result.secs = start.elapsed().as_secs_f64();
    result.server_cpu_us = cpu().since(&cpu0);
    result.latencies.0.sort_unstable();
    Ok(result)
}

/// Connections held open after one request each.
pub struct IdleConnections {
    pub connections: Vec<Connection>,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Time to open them all.
    pub secs: f64,
}

impl IdleConnections {
    /// Opens `count` connections, `concurrency` at a time, cycling through the cards with
    /// session resumption (a card's first connection is a full handshake), one `GET path`
    /// each.
    pub async fn open(
        target: &Arc<Target>,
        count: usize,
        concurrency: usize,
        path: &str,
    ) -> Result<IdleConnections, LoadError> {
        let start = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Errors::default());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (target, next, errors, path) = (
                target.clone(),
                next.clone(),
                errors.clone(),
                path.to_owned(),
            );
            tasks.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let opened = async {
                        let mut conn = connect(&target, i, Handshake::Resumed).await?;
                        conn.get(&path, false).await?;
                        Ok::<_, LoadError>(conn)
                    }
                    .await;
                    match opened {
                        Ok(c) => mine.push(c),
                        Err(e) => errors.add(e),
                    }
                }
                mine
            });
        }
        let mut connections = Vec::with_capacity(count);
        while let Some(done) = tasks.join_next().await {
            connections.extend(done.map_err(fail)?);
        }
        Ok(IdleConnections {
            connections,
            failed: errors.count.load(Ordering::Relaxed),
            first_error: errors.first.lock().ok().and_then(|f| f.clone()),
            secs: start.elapsed().as_secs_f64(),
        })
    }

    /// How many are still open (the server closes none of them while idle within its
    /// timeouts; a closed one would make the memory figure too low).
    pub fn still_open(&self) -> usize {
        self.connections.iter().filter(|c| c.is_open()).count()
    }
}
