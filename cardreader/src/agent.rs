//! `hpki-card agent`: the loopback HTTP/1.1 service the portal page talks to.
//!
//! - `GET /status`: the readers, card presence and ATR, and whether a session is armed.
//! - `GET /events`: server-sent events: `event: card` for every insertion and removal,
//!   `event: reader` when a reader comes or goes, `event: session` when a session is
//!   armed, ended or its end failed; a comment line every 15 s keeps the stream open.
//! - `POST /session` `{"gateway", "token", "reader"?, "cert_sha256"?}`: arms the agent
//!   with a one-time token the page fetched from the gateway (`GET /_hpki/session/token`
//!   with the card). When the card is pulled (from `reader`, or from any reader), the agent
//!   calls `POST <gateway>/_hpki/session/end` `{"token"}` over HTTPS, verifying the
//!   gateway with `--gateway-ca`, and the gateway closes that card's connections.
//! - `DELETE /session`: disarms.
//!
//! Only loopback addresses are served, and every request must carry an `Origin` header
//! naming one of the `--allow-origin` values (403 otherwise), so other web pages the
//! browser shows cannot read the card status or arm the agent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::reader::CardEvent;

/// Where the gateway ends the sessions of a pulled card.
pub const END_PATH: &str = "/_hpki/session/end";

#[derive(Args)]
pub struct AgentArgs {
    /// Loopback address to listen on (a non-loopback address is refused).
    #[arg(long, default_value = "127.0.0.1:9731")]
    pub listen: SocketAddr,
    /// Origin of the portal page allowed to use the agent, e.g. https://portal.example.jp
    /// (repeatable; requests without an allowed Origin header are refused 403).
    #[arg(long = "allow-origin", required = true, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// PEM file of the CA certificate(s) the gateway's server certificate is verified
    /// with, for the session-end call (without it, POST /session is refused).
    #[arg(long = "gateway-ca", value_name = "FILE")]
    pub gateway_ca: Option<PathBuf>,
    /// Gateway base URL a session may name, e.g. https://gw.example.jp:8443 (repeatable;
    /// without it, any https gateway the allowed page names).
    #[arg(long = "allow-gateway", value_name = "URL")]
    pub allow_gateway: Vec<String>,
    /// Seconds between the keep-alive comment lines of /events.
    #[arg(long, default_value_t = 15, hide = true)]
    pub keepalive_secs: u64,
}

pub fn agent(args: AgentArgs) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hpki-card agent: {e}");
            return crate::EXIT_BAD_INPUT;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hpki-card agent: tokio runtime: {e}");
            return crate::EXIT_BAD_INPUT;
        }
    };
    runtime.block_on(run(config))
}

/// The validated command line.
struct Config {
    listen: SocketAddr,
    origins: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    gateways: Vec<String>,
    keepalive: Duration,
}

impl Config {
    fn from_args(args: &AgentArgs) -> Result<Config, String> {
        if !args.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {}: only a loopback address (127.0.0.1, ::1) may be used",
                args.listen
            ));
        }
        let origins = args
            .allow_origin
            .iter()
            .map(|o| normalize_origin(o).map_err(|e| format!("--allow-origin {o:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match &args.gateway_ca {
            Some(path) => Some(Arc::new(gateway_tls(path)?)),
            None => None,
        };
        let gateways = args
            .allow_gateway
            .iter()
            .map(|g| {
                GatewayUrl::parse(g)
                    .map(|u| u.base())
                    .map_err(|e| format!("--allow-gateway {g:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            listen: args.listen,
            origins,
            tls,
            gateways,
            keepalive: Duration::from_secs(args.keepalive_secs.max(1)),
        })
    }
}

/// `scheme://host[:port]`, as a browser sends it in `Origin` (lowercase, no path).
fn normalize_origin(o: &str) -> Result<String, String> {
    let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', '@', ' ']) {
        return Err("must be scheme://host[:port] with no path".into());
    }
    Ok(o)
}

fn gateway_tls(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--gateway-ca {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--gateway-ca {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--gateway-ca {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "--gateway-ca {}: no PEM certificate in the file",
            path.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An `https://host[:port][/base]` gateway URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayUrl {
    host: String,
    port: u16,
    /// The path prefix, without a trailing slash ("" for none).
    prefix: String,
}

impl GatewayUrl {
    fn parse(s: &str) -> Result<GatewayUrl, String> {
        let uri: http::Uri = s.trim().parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err("the gateway must be an https:// URL".into());
        }
        if uri.query().is_some() {
            return Err("the gateway URL must not have a query".into());
        }
        let authority = uri.authority().ok_or("the gateway URL has no host")?;
        if authority.as_str().contains('@') {
            return Err("the gateway URL must not have user information".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err("the gateway URL has no host".into());
        }
        Ok(GatewayUrl {
            host,
            port: authority.port_u16().unwrap_or(443),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn base(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("https://{host}:{}{}", self.port, self.prefix)
    }
}

/// An armed session: what to call when the card is pulled.
#[derive(Debug, Clone)]
struct Session {
    gateway: GatewayUrl,
    token: String,
    reader: Option<String>,
    cert_sha256: Option<String>,
}

struct State {
    origins: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    gateways: Vec<String>,
    keepalive: Duration,
    /// Reader name → the ATR of the card in it (None: no card).
    readers: Mutex<BTreeMap<String, Option<Vec<u8>>>>,
    session: Mutex<Option<Session>>,
    /// Ready-made SSE frames (`event: ...\ndata: ...\n\n`).
    events: broadcast::Sender<Bytes>,
}

impl State {
    fn emit(&self, event: &str, data: Value) {
        tracing::info!(event, %data, "event");
        let frame = format!("event: {event}\ndata: {data}\n\n");
        let _ = self.events.send(Bytes::from(frame));
    }
}

async fn run(config: Config) -> i32 {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hpki-card agent: listen on {}: {e}", config.listen);
            return crate::EXIT_BAD_INPUT;
        }
    };
    let (events, _) = broadcast::channel(256);
    let state = Arc::new(State {
        origins: config.origins,
        tls: config.tls,
        gateways: config.gateways,
        keepalive: config.keepalive,
        readers: Mutex::new(BTreeMap::new()),
        session: Mutex::new(None),
        events,
    });
    start_watch(state.clone());
    tracing::info!(
        listen = %config.listen,
        origins = ?state.origins,
        "hpki-card agent listening"
    );
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "connection");
                    }
                });
            }
            () = &mut shutdown => {
                tracing::info!("hpki-card agent stopping");
                return crate::EXIT_OK;
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the blocking PC/SC watch on a std thread (restarted after an error, e.g. pcscd
/// restarting) and applies its events on the runtime.
fn start_watch(state: Arc<State>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<CardEvent, String>>();
    std::thread::Builder::new()
        .name("pcsc-watch".into())
        .spawn(move || loop {
            let (std_tx, std_rx) = std::sync::mpsc::channel::<CardEvent>();
            let forward_tx = tx.clone();
            let forward = std::thread::spawn(move || {
                for ev in std_rx {
                    if forward_tx.send(Ok(ev)).is_err() {
                        break;
                    }
                }
            });
            let result = crate::reader::watch_events(std_tx);
            let _ = forward.join();
            let error = match result {
                Ok(()) => "the PC/SC watch ended".to_owned(),
                Err(e) => e.to_string(),
            };
            if tx.send(Err(error)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        })
        .expect("spawn the PC/SC watch thread");
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            match ev {
                Ok(ev) => on_card_event(&state, ev),
                Err(error) => {
                    tracing::warn!(%error, "PC/SC watch failed; retrying in 2 s");
                    state.emit("error", json!({"type": "pcsc", "error": error}));
                }
            }
        }
    });
}

fn on_card_event(state: &Arc<State>, ev: CardEvent) {
    match ev {
        CardEvent::ReaderAdded { reader } => {
            state
                .readers
                .lock()
                .unwrap()
                .entry(reader.clone())
                .or_insert(None);
            state.emit("reader", json!({"type": "added", "reader": reader}));
        }
        CardEvent::ReaderRemoved { reader } => {
            let had_card = state
                .readers
                .lock()
                .unwrap()
                .remove(&reader)
                .flatten()
                .is_some();
            if had_card {
                // A reader unplugged with the card in it: the card is gone too.
                card_removed(state, &reader);
            }
            state.emit("reader", json!({"type": "removed", "reader": reader}));
        }
        CardEvent::CardInserted { reader, atr } => {
            state
                .readers
                .lock()
                .unwrap()
                .insert(reader.clone(), Some(atr.clone()));
            state.emit(
                "card",
                json!({"type": "inserted", "reader": reader, "atr": hex(&atr)}),
            );
        }
        CardEvent::CardRemoved { reader } => {
            if let Some(slot) = state.readers.lock().unwrap().get_mut(&reader) {
                *slot = None;
            }
            card_removed(state, &reader);
        }
    }
}

fn card_removed(state: &Arc<State>, reader: &str) {
    state.emit(
        "card",
        json!({"type": "removed", "reader": reader, "atr": Value::Null}),
    );
    let session = {
        let mut armed = state.session.lock().unwrap();
        match armed.as_ref() {
            Some(s) if s.reader.as_deref().is_none_or(|r| r == reader) => armed.take(),
            _ => None,
        }
    };
    if let Some(session) = session {
        tracing::info!(
            reader,
            gateway = %session.gateway.base(),
            "card removed: ending the gateway session"
        );
        let state = state.clone();
        tokio::spawn(async move { end_session(&state, session).await });
    }
}

/// Calls the gateway's end endpoint, retrying transport errors and 5xx with back-off.
async fn end_session(state: &State, session: Session) {
    let Some(tls) = state.tls.clone() else {
        state.emit(
            "session",
            json!({"type": "end_failed", "error": "no --gateway-ca"}),
        );
        return;
    };
    let delays = [500u64, 1000, 2000, 4000];
    let mut last_error = String::new();
    for attempt in 0..=delays.len() {
        match call_end(&tls, &session).await {
            Ok(ended) => {
                tracing::info!(connections = ended, "gateway ended the session");
                state.emit(
                    "session",
                    json!({"type": "ended", "connections": ended, "cert_sha256": session.cert_sha256}),
                );
                return;
            }
            Err(EndError::Final(e)) => {
                last_error = e;
                break;
            }
            Err(EndError::Retry(e)) => {
                tracing::warn!(attempt = attempt + 1, error = %e, "session end failed");
                last_error = e;
                if let Some(ms) = delays.get(attempt) {
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                }
            }
        }
    }
    tracing::error!(error = %last_error, "could not end the gateway session");
    state.emit(
        "session",
        json!({"type": "end_failed", "error": last_error, "cert_sha256": session.cert_sha256}),
    );
}

enum EndError {
    /// Worth another try (network, TLS, 5xx).
    Retry(String),
    /// The gateway refused (a one-time token is not accepted twice).
    Final(String),
}

async fn call_end(tls: &Arc<rustls::ClientConfig>, session: &Session) -> Result<u64, EndError> {
    let gw = &session.gateway;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect((gw.host.as_str(), gw.port))
            .await
            .map_err(|e| EndError::Retry(format!("connect {}: {e}", gw.base())))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(gw.host.clone())
            .map_err(|e| EndError::Final(format!("gateway host {:?}: {e}", gw.host)))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| EndError::Retry(format!("TLS with {}: {e}", gw.base())))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| EndError::Retry(format!("HTTP with {}: {e}", gw.base())))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = if gw.port == 443 {
            gw.host.clone()
        } else if gw.host.contains(':') {
            format!("[{}]:{}", gw.host, gw.port)
        } else {
            format!("{}:{}", gw.host, gw.port)
        };
        let body = json!({"token": session.token}).to_string();
        let req = Request::post(format!("{}{END_PATH}", gw.prefix))
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::CONNECTION, "close")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| EndError::Final(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| EndError::Retry(format!("POST {END_PATH}: {e}")))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| EndError::Retry(format!("POST {END_PATH}: reading the answer: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status.is_server_error() {
            return Err(EndError::Retry(format!(
                "gateway answered {status}: {text}"
            )));
        }
        if status != StatusCode::OK {
            return Err(EndError::Final(format!(
                "gateway answered {status}: {text}"
            )));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| EndError::Final(format!("gateway answer is not JSON ({e}): {text}")))?;
        v["ended"]
            .as_u64()
            .ok_or_else(|| EndError::Final(format!("gateway answer has no \"ended\": {text}")))
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(r) => r,
        Err(_) => Err(EndError::Retry(format!(
            "{} did not answer within 10 s",
            gw.base()
        ))),
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(full(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": message}))
}

async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = match origin {
        Some(o) if state.origins.contains(&o) => o,
        other => {
            tracing::warn!(
                origin = other.as_deref().unwrap_or("(none)"),
                method = %req.method(),
                path = req.uri().path(),
                "refused: origin not allowed"
            );
            let mut resp = error(StatusCode::FORBIDDEN, "origin not allowed");
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Origin"));
            return resp;
        }
    };
    let mut resp = route(state, req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::OPTIONS {
        return preflight(&req);
    }
    match (path.as_str(), method) {
        ("/status", Method::GET) => json_response(StatusCode::OK, &status(state)),
        ("/events", Method::GET) => events(state),
        ("/session", Method::POST) => arm(state, req).await,
        ("/session", Method::DELETE) => {
            let was = state.session.lock().unwrap().take();
            if was.is_some() {
                state.emit("session", json!({"type": "disarmed"}));
            }
            json_response(StatusCode::OK, &json!({"armed": false}))
        }
        ("/status" | "/events" | "/session", _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn preflight(req: &Request<Incoming>) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    // Chrome's Private Network Access: a public page calling a loopback service.
    if req
        .headers()
        .get("access-control-request-private-network")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        h.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    resp
}

fn status(state: &State) -> Value {
    let readers: Vec<Value> = state
        .readers
        .lock()
        .unwrap()
        .iter()
        .map(|(name, atr)| {
            json!({
                "name": name,
                "card_present": atr.is_some(),
                "atr": atr.as_deref().map(hex),
            })
        })
        .collect();
    let session = match &*state.session.lock().unwrap() {
        Some(s) => json!({
            "armed": true,
            "cert_sha256": s.cert_sha256,
            "reader": s.reader,
            "gateway": s.gateway.base(),
        }),
        None => json!({"armed": false, "cert_sha256": Value::Null}),
    };
    json!({"readers": readers, "session": session})
}

#[derive(Deserialize)]
struct ArmRequest {
    gateway: String,
    token: String,
    #[serde(default)]
    reader: Option<String>,
    #[serde(default)]
    cert_sha256: Option<String>,
}

async fn arm(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let bytes = match Limited::new(req.into_body(), 16 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let body: ArmRequest = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected JSON {{\"gateway\", \"token\", \"reader\"?}}: {e}"),
            )
        }
    };
    if state.tls.is_none() {
        return error(
            StatusCode::CONFLICT,
            "the agent was started without --gateway-ca: it cannot end sessions",
        );
    }
    let gateway = match GatewayUrl::parse(&body.gateway) {
        Ok(g) => g,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("gateway: {e}")),
    };
    if !state.gateways.is_empty() && !state.gateways.contains(&gateway.base()) {
        return error(
            StatusCode::FORBIDDEN,
            "gateway not allowed (see --allow-gateway)",
        );
    }
    let token = body.token.trim().to_owned();
    if token.is_empty() || token.len() > 4096 {
        return error(StatusCode::BAD_REQUEST, "token: empty or too long");
    }
    let reader = body.reader.filter(|r| !r.is_empty());
    let card_present = {
        let readers = state.readers.lock().unwrap();
        match &reader {
            Some(r) => readers.get(r).is_some_and(Option::is_some),
            None => readers.values().any(Option::is_some),
        }
    };
    let session = Session {
        gateway,
        token,
        reader: reader.clone(),
        cert_sha256: body.cert_sha256,
    };
    tracing::info!(
        gateway = %session.gateway.base(),
        reader = reader.as_deref().unwrap_or("(any)"),
        card_present,
        "session armed"
    );
    let replaced = state.session.lock().unwrap().replace(session.clone());
    if replaced.is_some() {
        tracing::info!("the earlier armed session was replaced");
    }
    state.emit(
        "session",
        json!({"type": "armed", "reader": reader, "cert_sha256": session.cert_sha256}),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "armed": true,
            "reader": reader,
            "card_present": card_present,
            "gateway": session.gateway.base(),
        }),
    )
}

/// A body fed by a channel: the SSE stream.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn events(state: &Arc<State>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut sub = state.events.subscribe();
    let keepalive = state.keepalive;
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b"retry: 2000\n: hpki-card agent\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        loop {
            let frame = tokio::select! {
                ev = sub.recv() => match ev {
                    Ok(frame) => frame,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Bytes::from(format!(": {n} events dropped (slow reader)\n\n"))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                () = tx.closed() => return,
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_checked() {
        assert_eq!(
            normalize_origin("https://Portal.example.jp/").unwrap(),
            "https://portal.example.jp"
        );
        assert!(normalize_origin("portal.example.jp").is_err());
        assert!(normalize_origin("https://portal.example.jp/app").is_err());
        assert!(normalize_origin("*").is_err());
    }

    #[test]
    fn gateway_urls() {
        let g = GatewayUrl::parse("https://gw.example.jp:8443/").unwrap();
        assert_eq!(
            (g.host.as_str(), g.port, g.prefix.as_str()),
            ("gw.example.jp", 8443, "")
        );
        assert_eq!(g.base(), "https://gw.example.jp:8443");
        let g = GatewayUrl::parse("https://gw.example.jp/base").unwrap();
        assert_eq!((g.port, g.prefix.as_str()), (443, "/base"));
        assert!(GatewayUrl::parse("http://gw.example.jp").is_err());
        assert!(GatewayUrl::parse("https://u@gw.example.jp").is_err());
    }
}
