//! The request lifecycle, as named phases (pingora / linkerd2-proxy style):
//!
//! 1. accept + TLS handshake (`tls`), bounded by `timeouts.header_read`;
//! 2. identify — once per connection: the presented certificate is validated by `pki`
//!    against every trust profile and becomes a `ConnectionIdentity`;
//! 3. per request: strip client-sent identity headers → gateway-owned paths
//!    (`/_hpki/...`, JWKS) → route → authorize (kind, role, anonymous) → forward with
//!    identity headers and a signed assertion (`forward`), streaming both bodies.
//!
//! Denials are answered with the page or JSON of their stable reason code (`pages`).

mod body;
mod confirmation;
mod emergency;
mod forward;
mod held;
pub mod reload;
pub mod route;
pub mod session;
mod validated;

pub use held::form_pairs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::assertion::AssertionSigner;
use crate::config::{AuditOnFailure, CertKindConfig, Config, RouteSection};
use crate::identity::{ConnectionIdentity, Identity, Principal, STRIPPED_EXACT, STRIPPED_PREFIX};
use crate::pages::{self, Denial};
use crate::pki::{self, CertKind, ParsedCertificate, UnixTime};
use crate::store::{CardHolder, CardKey, Store, StoreError};
use crate::trust::{TrustDirectory, TrustProfile, TrustStore};

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub const JWKS_PATH: &str = "/.well-known/hpki-gateway/jwks.json";
pub const WHOAMI_PATH: &str = "/_hpki/whoami";
pub const PENDING_PATH: &str = "/_hpki/pending";
pub const EMERGENCY_PATH: &str = "/_hpki/emergency";

/// The store of a gateway and what every gateway sharing it must agree on.
pub struct StoreContext {
    pub store: Arc<dyn Store>,
    /// Keys the anti-forgery tokens of the gateway's forms; shared through the store so
    /// that a form rendered by one replica can be posted to another.
    pub csrf_secret: Vec<u8>,
}

/// Opens the configured store, applies pending migrations and reads the shared secrets.
pub async fn connect_store(config: &Config) -> Result<StoreContext, String> {
    let store = crate::store::open(&config.store.url, &config.base_dir, true)
        .await
        .map_err(|e| {
            format!(
                "store.url {}: {e}",
                crate::store::redact_url(&config.store.url)
            )
        })?;
    let fresh = crate::store::new_id("");
    let secret = store
        .shared_setting("csrf_secret", &fresh)
        .await
        .map_err(|e| format!("store: {e}"))?;
    Ok(StoreContext {
        store,
        csrf_secret: secret.into_bytes(),
    })
}

/// Everything a running listener needs; immutable and shared by every connection.
pub struct Gateway {
    pub config: Config,
    /// The trust store and TLS configuration in use; swapped whole by a reload.
    live: arc_swap::ArcSwap<LiveTrust>,
    generation_tx: tokio::sync::watch::Sender<u64>,
    reload_lock: tokio::sync::Mutex<()>,
    /// The last reload attempt, for `/readyz`.
    pub last_reload: std::sync::Mutex<Option<reload::ReloadReport>>,
    pub routes: route::RouteTable,
    pub signer: AssertionSigner,
    upstreams: forward::Upstreams,
    pub revocation: Arc<crate::revocation::Revocation>,
    refresh: std::sync::Mutex<Option<crate::revocation::RefreshTask>>,
    pub store: Arc<dyn Store>,
    csrf_key: aws_lc_rs::hmac::Key,
    /// Card holder by certificate SHA-256, for `store.cache_ttl`; `None` when it is 0.
    holders: Option<moka::future::Cache<String, Option<Arc<CardHolder>>>>,
    /// Active emergency grant id by certificate SHA-256.
    grants: Option<moka::future::Cache<String, Option<String>>>,
    pub metrics: crate::metrics::Metrics,
    pub audit: crate::audit::AuditLog,
    /// Live connections by certificate, for ending a pulled card's sessions.
    pub sessions: session::SessionRegistry,
    used_session_tokens: moka::future::Cache<String, ()>,
    /// Certificates whose sessions were ended: their cached TLS sessions are not resumed.
    pub ended: Arc<crate::tls::EndedCertificates>,
    /// Chains that validated recently, so that a card's next connections skip validation.
    validated: validated::ValidatedChains,
    /// Leaf DER of recently authenticated certificates by SHA-256, so that a session end
    /// can refuse the resumption of a card that has no connection open any more.
    pub recent_leaves: moka::future::Cache<String, Arc<Vec<u8>>>,
    /// The audit writer, started by `serve` (it needs the runtime).
    audit_writer:
        std::sync::Mutex<Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>>,
}

/// One generation of trust: what new handshakes are validated against.
pub struct LiveTrust {
    pub generation: u64,
    pub trust: Arc<TrustStore>,
    pub tls: Arc<rustls::ServerConfig>,
    /// First 8 bytes of the server certificate's SHA-256, hex (to report a change).
    pub server_sha: String,
}

/// A client's certificate and the intermediates it sent, parsed.
pub type PresentedChain = (Arc<ParsedCertificate>, Vec<Arc<ParsedCertificate>>);

/// Per-connection facts, decided once.
pub struct ConnectionContext {
    pub identity: ConnectionIdentity,
    /// The validated path and its profile index, for re-checking revocation while the
    /// connection lives.
    pub path: Option<(Arc<pki::ValidatedPath>, usize)>,
    pub peer: SocketAddr,
    pub tls_version: &'static str,
    /// The trust generation the connection was validated under.
    pub trust: Arc<TrustStore>,
    pub generation: u64,
}

/// The gateway's clock: every validity, window and expiry decision takes its time from
/// here (`pki` takes time as a parameter).
pub fn now() -> UnixTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    UnixTime(secs.saturating_add(clock_offset()).max(0) as u64)
}

/// Test clock: `HPKI_GATEWAY_TEST_CLOCK_OFFSET` (seconds, may be negative) shifts the
/// gateway's clock, so that end-to-end tests can run the gateway "on the day" of a staged
/// rotation. Read once; never set in production.
fn clock_offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("HPKI_GATEWAY_TEST_CLOCK_OFFSET")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .inspect(|o| tracing::warn!(offset_seconds = o, "test clock offset in use"))
            .unwrap_or(0)
    })
}

/// Builds the trust store of a configuration, naming every file problem.
pub fn build_trust_store(config: &Config) -> Result<TrustStore, Vec<String>> {
    let mut problems = Vec::new();
    let mut profiles = Vec::new();
    for (i, t) in config.trust.iter().enumerate() {
        let required_policies: Vec<pki::PolicyPrefix> = t
            .require_policies
            .iter()
            .filter_map(|p| match pki::PolicyPrefix::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    problems.push(format!("trust[{i}].require_policies: {e}"));
                    None
                }
            })
            .collect();
        match TrustDirectory::load(&t.dir) {
            Ok(directory) => profiles.push(TrustProfile {
                name: t.name.clone(),
                kind: t.kind,
                required_policies,
                max_intermediates: t.max_intermediates,
                revocation: t.revocation.clone(),
                directory,
            }),
            Err(e) => problems.push(format!("trust[{i}] ({}): {e}", t.name)),
        }
    }
    if problems.is_empty() {
        Ok(TrustStore { profiles })
    } else {
        Err(problems)
    }
}

impl Gateway {
    /// The trust store new handshakes are validated against.
    pub fn trust(&self) -> Arc<TrustStore> {
        self.live.load().trust.clone()
    }

    /// The trust store's generation: 0 at start, +1 per applied reload.
    pub fn trust_generation(&self) -> u64 {
        self.live.load().generation
    }

    /// Loads everything the configuration names; every problem is reported.
    pub fn build(config: Config, store: StoreContext) -> Result<Gateway, Vec<String>> {
        let mut problems = Vec::new();
        let trust = build_trust_store(&config)
            .map_err(|p| problems.extend(p))
            .ok();
        let signer = std::fs::read_to_string(&config.assertion.key)
            .map_err(|e| format!("assertion.key {}: {e}", config.assertion.key.display()))
            .and_then(|pem| {
                AssertionSigner::from_pem(&pem, &config.assertion.issuer, config.assertion.lifetime)
                    .map_err(|e| format!("assertion.key {}: {e}", config.assertion.key.display()))
            })
            .map_err(|e| problems.push(e))
            .ok();
        let identity = crate::tls::load_server_identity(&config.server.cert, &config.server.key)
            .map_err(|e| problems.push(format!("server.cert/server.key: {e}")))
            .ok();
        let upstreams = forward::Upstreams::build(&config)
            .map_err(|p| problems.extend(p))
            .ok();
        let crls = trust.as_ref().and_then(|t| {
            crate::revocation::load_crl_files(t, now())
                .map_err(|p| problems.extend(p))
                .ok()
        });
        let (Some(trust), Some(signer), Some((chain, key)), Some(upstreams), Some(crls)) =
            (trust, signer, identity, upstreams, crls)
        else {
            return Err(problems);
        };
        let ended = Arc::new(crate::tls::EndedCertificates::default());
        let (tls, server_sha) =
            listener_tls(&config, &trust, chain, key, ended.clone()).map_err(|e| vec![e])?;
        let refresh_every = config
            .trust
            .iter()
            .map(|t| t.revocation.crl_refresh)
            .min()
            .unwrap_or(Duration::from_secs(900));
        let (revocation, refresh) = crate::revocation::Revocation::new(
            crls,
            &trust,
            config.revocation.clone(),
            refresh_every,
        );
        fn cache<V: Clone + Send + Sync + 'static>(
            ttl: Duration,
        ) -> Option<moka::future::Cache<String, V>> {
            (!ttl.is_zero()).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .build()
            })
        }
        let ttl = config.store.cache_ttl;
        let (audit, audit_writer) = open_audit(&config).map_err(|e| vec![e])?;
        Ok(Gateway {
            csrf_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &store.csrf_secret),
            store: store.store,
            holders: cache(ttl),
            grants: cache(ttl),
            metrics: crate::metrics::Metrics::default(),
            sessions: session::SessionRegistry::default(),
            ended,
            validated: validated::ValidatedChains::default(),
            recent_leaves: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            used_session_tokens: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(13 * 3600))
                .build(),
            audit,
            audit_writer: std::sync::Mutex::new(Some(audit_writer)),
            revocation,
            refresh: std::sync::Mutex::new(Some(refresh)),
            routes: route::RouteTable::new(config.routes.clone()),
            config,
            live: arc_swap::ArcSwap::from_pointee(LiveTrust {
                generation: 0,
                trust: Arc::new(trust),
                tls: Arc::new(tls),
                server_sha,
            }),
            generation_tx: tokio::sync::watch::channel(0).0,
            reload_lock: tokio::sync::Mutex::new(()),
            last_reload: std::sync::Mutex::new(None),
            signer,
            upstreams,
        })
    }

    /// Serves until SIGTERM/SIGINT, then drains for `timeouts.shutdown_grace`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        tokio::spawn(reload::run_triggers(Arc::downgrade(&self)));
        if let Some(writer) = self.audit_writer.lock().ok().and_then(|mut w| w.take()) {
            tokio::spawn(writer);
        }
        // What this process serves with, for an auditor reading the log later: the trust
        // profiles and their anchors.
        let anchors: Vec<String> = self
            .trust()
            .profiles
            .iter()
            .map(|p| {
                let fps: Vec<String> = p
                    .directory
                    .anchors
                    .iter()
                    .map(|a| pki::name::hex(&a.sha256()[..8]))
                    .collect();
                format!("{} [{}]", p.name, fps.join(" "))
            })
            .collect();
        let start = crate::audit::Record {
            time_ms: now_ms(),
            event: "start".into(),
            detail: Some(format!(
                "hpki-gateway {} serving {}; trust: {}",
                env!("CARGO_PKG_VERSION"),
                self.config.server.listen,
                anchors.join("; ")
            )),
            ..Default::default()
        };
        if let Err(e) = self.audit.append_durable(start).await {
            tracing::error!(error = %e, "the audit log cannot be written at start");
        }
        tokio::spawn(held::run_maintenance(Arc::downgrade(&self)));
        if let Some(task) = self.refresh.lock().ok().and_then(|mut t| t.take()) {
            tokio::spawn(crate::revocation::run_refresh(
                Arc::downgrade(&self.revocation),
                task,
            ));
        }
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown_signal());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let gw = self.clone();
                    // The generation in use when the connection arrived validates it.
                    let live = self.live.load_full();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        gw.serve_connection(live, tcp, peer, watcher).await;
                    });
                }
                _ = &mut shutdown => {
                    tracing::info!("shutting down: no new connections, draining");
                    break;
                }
            }
        }
        drop(listener);
        let grace = self.config.timeouts.shutdown_grace;
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; closing"
            );
        }
        // Everything the drained requests recorded is on disk before the process ends.
        if let Err(e) = self.audit.flush().await {
            tracing::error!(error = %e, "audit log not flushed at shutdown");
        }
        tracing::info!("stopped");
        Ok(())
    }

    async fn serve_connection(
        self: Arc<Self>,
        live: Arc<LiveTrust>,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let acceptor = TlsAcceptor::from(live.tls.clone());
        let handshake =
            tokio::time::timeout(self.config.timeouts.header_read, acceptor.accept(tcp));
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                self.metrics.handshake(false);
                tracing::info!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics.handshake(false);
                tracing::info!(%peer, "TLS handshake timed out");
                return;
            }
        };
        self.metrics.handshake(true);
        let (_, conn) = tls.get_ref();
        let tls_version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let (identity, path, certs) = self.identify(&live, conn.peer_certificates()).await;
        match &identity {
            ConnectionIdentity::Authenticated(id) => tracing::info!(
                %peer, tls_version, profile = %id.profile, hpki_id = ?id.hpki_id, role = ?id.roles.first(),
                "client authenticated"
            ),
            ConnectionIdentity::Refused { reason, detail } => {
                tracing::info!(%peer, tls_version, reason = %reason, detail = %detail, "client certificate refused")
            }
            ConnectionIdentity::Anonymous => {
                tracing::debug!(%peer, tls_version, "anonymous client")
            }
        }
        match &identity {
            ConnectionIdentity::Authenticated(_) => self.metrics.authentication("accepted", ""),
            ConnectionIdentity::Anonymous => self.metrics.authentication("anonymous", ""),
            ConnectionIdentity::Refused { reason, detail } => {
                self.metrics.authentication("refused", reason.code());
                // Every authentication failure is recorded, whether or not the client
                // goes on to send a request (which is then recorded as denied too).
                let ctx = ConnectionContext {
                    identity: identity.clone(),
                    path: None,
                    peer,
                    tls_version,
                    trust: live.trust.clone(),
                    generation: live.generation,
                };
                let mut record = audit_record(&ctx, "auth_failure", "");
                record.request_id = None;
                record.decision = Some("deny".into());
                record.detail = Some(detail.clone());
                if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
                    record.cert_sha256 = Some(pki::name::hex(
                        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref())
                            .as_ref(),
                    ));
                }
                if let Err(e) = self.audit.append(record).await {
                    self.metrics.audit_failure();
                    tracing::error!(%peer, error = %e, "authentication failure not recorded");
                }
            }
        }
        let ctx = Arc::new(ConnectionContext {
            identity,
            path,
            peer,
            tls_version,
            trust: live.trust.clone(),
            generation: live.generation,
        });
        let ctx_for_watch = ctx.clone();
        let ctx_for_trust = ctx.clone();
        let ctx_cert = match &ctx.identity {
            ConnectionIdentity::Authenticated(id) => Some(id.sha256.clone()),
            _ => None,
        };
        if let (Some(sha), Some((leaf, _))) = (&ctx_cert, &certs) {
            self.recent_leaves
                .insert(sha.clone(), Arc::new(leaf.der().to_vec()))
                .await;
        }
        let gw = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            let ctx = ctx.clone();
            // Boxed: hyper keeps room for one in-flight request future per connection,
            // idle or not, and this one is several KiB (the whole request lifecycle).
            // Boxing it costs an allocation per request and saves that room on every
            // idle keep-alive connection.
            Box::pin(async move { Ok::<_, std::convert::Infallible>(gw.handle(req, &ctx).await) })
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.config.timeouts.header_read)
            .max_headers(self.config.limits.max_request_headers);
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(self.config.timeouts.idle))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
        let served = watcher.watch(conn.into_owned());
        // A long-lived connection is re-checked against the CRLs in use; when its
        // certificate becomes revoked the connection is dropped, which closes it.
        let revoked = self.clone().watch_revocation(ctx_for_watch);
        let untrusted = self.clone().watch_trust(ctx_for_trust, certs);
        // A pulled card's sessions end when its agent says so (`/_hpki/session/end`).
        let registered = ctx_cert.as_ref().map(|sha| self.sessions.register(sha));
        let mut ended_rx = registered.as_ref().map(|r| r.ended.clone());
        let ended = async move {
            match ended_rx.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|v| *v).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            result = served => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            reason = revoked => {
                tracing::warn!(%peer, %reason, "closing the connection: its certificate is now revoked");
            }
            reason = untrusted => {
                tracing::warn!(%peer, %reason, "closing the connection: its certificate no longer validates after a trust reload");
            }
            _ = ended => {
                tracing::info!(%peer, "closing the connection: the card was removed (session ended by its agent)");
            }
        }
        drop(registered);
    }

    /// Resolves when the connection's certificate becomes revoked; never for anonymous
    /// or refused connections, or when re-checking is off (`revocation.recheck = 0`).
    async fn watch_revocation(self: Arc<Self>, ctx: Arc<ConnectionContext>) -> String {
        let Some((path, profile)) = ctx.path.clone() else {
            return std::future::pending().await;
        };
        let Some(policy) = ctx
            .trust
            .profiles
            .get(profile)
            .map(|p| p.revocation.clone())
        else {
            return std::future::pending().await;
        };
        if policy.recheck.is_zero() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(policy.recheck).await;
            if let Some(outcome) = self.revocation.recheck_revoked(&path, &policy) {
                return format!("{outcome:?}");
            }
        }
    }

    /// After a trust reload, re-validates the connection's certificate against the new
    /// store (and its CRLs); resolves, after `reload.grace`, when it no longer validates.
    /// Never for anonymous or refused connections.
    async fn watch_trust(
        self: Arc<Self>,
        ctx: Arc<ConnectionContext>,
        certs: Option<PresentedChain>,
    ) -> String {
        let (Some((leaf, presented)), ConnectionIdentity::Authenticated(_)) =
            (certs, &ctx.identity)
        else {
            return std::future::pending().await;
        };
        let mut generations = self.generation_tx.subscribe();
        if self.trust_generation() != ctx.generation {
            generations.mark_changed();
        }
        let still_valid = |gw: &Gateway| -> Result<(), String> {
            let store = gw.trust();
            let auth = store
                .authenticate(&leaf, &presented, now())
                .map_err(|e| format!("{}: {}", e.reason.code(), e.detail))?;
            let policy = &store.profiles[auth.profile_index].revocation;
            match gw.revocation.recheck_revoked(&auth.path, policy) {
                Some(outcome) => Err(format!("cert_revoked: {outcome:?}")),
                None => Ok(()),
            }
        };
        // Besides each reload, once a minute: a trust.toml window can end while the
        // connection lives, with no reload at all.
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                changed = generations.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
                _ = tick.tick() => {}
            }
            if let Err(why) = still_valid(&self) {
                let grace = self.config.reload.grace;
                tracing::info!(peer = %ctx.peer, %why, ?grace, "certificate no longer valid after a trust reload; closing after the grace period");
                tokio::time::sleep(grace).await;
                // A reload during the grace (the operator undid the change) may have
                // made it valid again.
                if let Err(why) = still_valid(&self) {
                    return why;
                }
            }
        }
    }

    /// Phase 2: who is on this connection — path validation by `pki` against the trust
    /// generation the connection arrived under (remembered for the card's next
    /// connections: `validated`), then revocation under the accepting profile's policy.
    /// Also returns the parsed chain, to re-validate after a reload.
    pub async fn identify(
        &self,
        live: &LiveTrust,
        certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
    ) -> (
        ConnectionIdentity,
        Option<(Arc<pki::ValidatedPath>, usize)>,
        Option<PresentedChain>,
    ) {
        let refused = |reason, detail| (ConnectionIdentity::Refused { reason, detail }, None, None);
        let Some(certs) = certs.filter(|c| !c.is_empty()) else {
            return (ConnectionIdentity::Anonymous, None, None);
        };
        let trust = &live.trust;
        let now = now();
        let key = validated::chain_key(certs);
        let auth = match self.validated.get(&key, live.generation, now).await {
            Some(hit) => hit,
            None => {
                let (leaf, rest) = certs.split_first().expect("not empty");
                let leaf = match ParsedCertificate::from_der(leaf.as_ref()) {
                    Ok(c) => Arc::new(c),
                    Err(e) => return refused(e.reason(), e.detail),
                };
                // Presented intermediates are only candidates; an unparsable one cannot help.
                // One the store holds is taken from there rather than parsed (and kept)
                // once more for every card.
                let presented: Vec<Arc<ParsedCertificate>> = rest
                    .iter()
                    .filter_map(|c| {
                        trust
                            .known_ca(&pki::sha256(c.as_ref()))
                            .or_else(|| ParsedCertificate::from_der(c.as_ref()).ok().map(Arc::new))
                    })
                    .collect();
                let auth = match trust.authenticate(&leaf, &presented, now) {
                    Ok(auth) => auth,
                    Err(e) => return refused(e.reason, e.detail),
                };
                let identity = Identity::from_authenticated(&auth).map(Arc::new);
                let validated = Arc::new(validated::Validated::new(
                    live.generation,
                    trust,
                    now,
                    leaf,
                    presented,
                    Arc::new(auth.path),
                    auth.profile_index,
                    auth.profile,
                    identity,
                ));
                self.validated.insert(key, validated.clone()).await;
                validated
            }
        };
        let policy = &trust.profiles[auth.profile_index].revocation;
        use crate::revocation::Outcome;
        match self.revocation.check(&auth.path, policy, now).await {
            Outcome::Good => {}
            Outcome::AllowedUnavailable { depth, why } => {
                record_fail_open(self, &auth.path, &auth.profile, depth, &why).await;
            }
            Outcome::Revoked {
                depth,
                reason,
                source,
            } => {
                self.metrics.revocation("revoked", &auth.profile);
                let what = if depth == 0 {
                    "the certificate".to_owned()
                } else {
                    format!("the CA certificate at depth {depth}")
                };
                return refused(
                    pki::Reason::CertRevoked,
                    format!(
                        "{what} is revoked ({}) according to {source}",
                        reason.as_deref().unwrap_or("no reason given")
                    ),
                );
            }
            Outcome::Unavailable { depth, why } => {
                self.metrics.revocation("unavailable_denied", &auth.profile);
                return refused(
                    pki::Reason::RevocationUnavailable,
                    format!("revocation status of the certificate at depth {depth} unknown: {why}"),
                );
            }
        }
        match &auth.identity {
            Ok(id) => (
                ConnectionIdentity::Authenticated(id.clone()),
                Some((auth.path.clone(), auth.profile_index)),
                Some((auth.leaf.clone(), auth.presented.clone())),
            ),
            Err(reason) => refused(*reason, "the hcRole extension is malformed".into()),
        }
    }

    /// Phase 3, one request: answered by [`Self::route_request`], then counted and
    /// recorded. Denied and held requests are recorded durably before their answer is
    /// sent; when the audit log cannot record (and `audit.on_failure = "refuse"`),
    /// nothing is served: `503 audit_unavailable`.
    pub async fn handle(&self, req: Request<Incoming>, ctx: &ConnectionContext) -> Response<Body> {
        let started = std::time::Instant::now();
        let request_id = new_request_id();
        let json = pages::wants_json(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let route = self.route_label(&req);
        let bytes_in = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let refuse_unrecorded = self.config.audit.on_failure == AuditOnFailure::Refuse;
        let mut response = if refuse_unrecorded && !self.audit.healthy() {
            self.metrics.audit_failure();
            deny(
                Denial::AuditUnavailable,
                Some("the audit log cannot be written; nothing is served unrecorded"),
                &request_id,
                json,
            )
        } else {
            use tracing::Instrument;
            let span = tracing::info_span!("request", request_id = %request_id, route = %route);
            self.route_request(req, ctx, &request_id, json)
                .instrument(span)
                .await
        };
        let status = response.status().as_u16();
        self.metrics.request(&route, status);
        let denial = response.extensions().get::<DenialCode>().map(|d| d.0);
        let held = response
            .extensions()
            .get::<HeldEntry>()
            .map(|h| h.0.clone());
        if denial != Some(Denial::AuditUnavailable.code()) {
            let mut record = audit_record(ctx, "request", &request_id);
            record.route = Some(route);
            record.method = Some(method);
            record.path = Some(path);
            record.status = Some(status);
            record.bytes_in = bytes_in;
            record.bytes_out = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            record.latency_ms = Some(started.elapsed().as_millis() as u64);
            if let Some(a) = response.extensions().get::<AssistantSeen>() {
                record.assistant_id = Some(a.0.clone());
                record.supervisors = Some(a.1.clone());
            }
            record.upstream_status = response.extensions().get::<UpstreamStatus>().map(|u| u.0);
            let durable = denial.is_some() || held.is_some();
            record.decision = Some(
                match (denial, &held) {
                    (Some(_), _) => "deny",
                    (None, Some(_)) => "hold",
                    _ => "allow",
                }
                .into(),
            );
            record.reason = denial.map(str::to_owned);
            record.detail = held.map(|id| format!("pending {id}"));
            let written = if durable {
                self.audit.append_durable(record).await
            } else {
                self.audit.append(record).await
            };
            if let Err(e) = written {
                self.metrics.audit_failure();
                tracing::error!(request_id, error = %e, "audit record not written");
                if refuse_unrecorded && durable {
                    // A denial or a held write must not be answered unrecorded; the held
                    // entry itself is stored and stays visible at /_hpki/pending.
                    response = deny(
                        Denial::AuditUnavailable,
                        Some("the audit log cannot be written"),
                        &request_id,
                        json,
                    );
                }
            }
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-hpki-request-id", v);
        }
        response
    }

    /// The metrics/audit label of a request: the route's path prefix, the gateway's
    /// own path, or `(no route)`.
    fn route_label(&self, req: &Request<Incoming>) -> String {
        let path = req.uri().path();
        for own in [
            JWKS_PATH,
            WHOAMI_PATH,
            PENDING_PATH,
            EMERGENCY_PATH,
            session::TOKEN_PATH,
            session::END_PATH,
        ] {
            if path == own || path.starts_with(&format!("{own}/")) {
                return own.to_owned();
            }
        }
        let host = request_host(req);
        self.routes
            .find(host.as_deref(), path)
            .map(|r| r.path.clone())
            .unwrap_or_else(|| "(no route)".into())
    }

    async fn route_request(
        &self,
        mut req: Request<Incoming>,
        ctx: &ConnectionContext,
        request_id: &str,
        json: bool,
    ) -> Response<Body> {
        let request_id = request_id.to_owned();
        strip_identity_headers(req.headers_mut());
        let path = req.uri().path().to_owned();

        let response = if path == JWKS_PATH {
            json_response(StatusCode::OK, self.signer.jwks().to_string())
        } else if path == PENDING_PATH || path.starts_with("/_hpki/pending/") {
            held::endpoint(self, req, ctx, &request_id, json).await
        } else if path.starts_with("/_hpki/session/") {
            session::endpoint(self, req, ctx, &request_id, json).await
        } else if path == EMERGENCY_PATH || path.starts_with("/_hpki/emergency/") {
            emergency::endpoint(self, req, ctx, &request_id, json).await
        } else if path == WHOAMI_PATH {
            match &ctx.identity {
                ConnectionIdentity::Authenticated(id) => match self.principal(id).await {
                    Ok(principal) => {
                        let mut v = principal.to_json();
                        v["tls_version"] = ctx.tls_version.into();
                        page_response(pages::whoami_page(&v, &request_id, json))
                    }
                    Err((denial, detail)) => deny(denial, Some(&detail), &request_id, json),
                },
                ConnectionIdentity::Anonymous => page_response(pages::whoami_page(
                    &serde_json::Value::Null,
                    &request_id,
                    json,
                )),
                ConnectionIdentity::Refused { reason, detail } => deny(
                    Denial::Certificate(*reason),
                    Some(detail),
                    &request_id,
                    json,
                ),
            }
        } else {
            let host = request_host(&req);
            match self.routes.find(host.as_deref(), &path) {
                None => deny(Denial::NoRoute, None, &request_id, json),
                Some(route) => match authorize(route, &ctx.identity) {
                    Err((denial, detail)) => deny(denial, detail.as_deref(), &request_id, json),
                    Ok(None) => {
                        self.upstreams
                            .forward(self, route, req, None, ctx, &request_id, json)
                            .await
                    }
                    Ok(Some(identity)) => match self.principal(identity).await {
                        Err((denial, detail)) => deny(denial, Some(&detail), &request_id, json),
                        Ok(principal) => {
                            let mut response = if held::must_hold(route, &principal, req.method()) {
                                held::hold(self, route, req, &principal, &request_id, json).await
                            } else {
                                self.upstreams
                                    .forward(
                                        self,
                                        route,
                                        req,
                                        Some(&principal),
                                        ctx,
                                        &request_id,
                                        json,
                                    )
                                    .await
                            };
                            if let Some(holder) = &principal.assistant {
                                response.extensions_mut().insert(AssistantSeen(
                                    holder.assistant.id.clone(),
                                    holder
                                        .supervisors
                                        .iter()
                                        .map(|d| d.hpki_id.clone())
                                        .collect(),
                                ));
                            }
                            response
                        }
                    },
                },
            }
        };
        response
    }
}

/// Response extensions by which a phase tells `handle` what it decided, for the audit
/// record and metrics (never sent to the client).
#[derive(Clone, Copy)]
pub struct DenialCode(pub &'static str);
#[derive(Clone)]
pub struct HeldEntry(pub String);
#[derive(Clone)]
pub struct AssistantSeen(pub String, pub Vec<String>);
#[derive(Clone, Copy)]
pub struct UpstreamStatus(pub u16);

/// A certificate admitted although its revocation status is unknown, because its
/// profile says `revocation.on_unavailable = "allow"` (a login or a confirmation's signing
/// certificate): counted, logged and recorded — a fail-open decision an auditor must be
/// able to find.
pub(crate) async fn record_fail_open(
    gw: &Gateway,
    path: &pki::ValidatedPath,
    profile: &str,
    depth: usize,
    why: &str,
) {
    gw.metrics.revocation("unavailable_allowed", profile);
    tracing::warn!(
        depth, why = %why, profile = %profile,
        "revocation status unavailable; allowed by revocation.on_unavailable = \"allow\""
    );
    let leaf = path.leaf();
    let record = crate::audit::Record {
        time_ms: now_ms(),
        event: "revocation".into(),
        decision: Some("allow".into()),
        reason: Some(pki::Reason::RevocationUnavailable.code().into()),
        cert_serial: Some(leaf.serial_hex()),
        cert_issuer: Some(pki::name::display(leaf.issuer())),
        cert_sha256: Some(pki::name::hex(leaf.sha256())),
        detail: Some(format!(
            "profile {profile} (on_unavailable = allow), depth {depth}: {why}"
        )),
        ..Default::default()
    };
    if gw.audit.append(record).await.is_err() {
        gw.metrics.audit_failure();
    }
}

/// A record with the connection's identity filled in.
pub fn audit_record(
    ctx: &ConnectionContext,
    event: &str,
    request_id: &str,
) -> crate::audit::Record {
    let mut r = crate::audit::Record {
        time_ms: now_ms(),
        event: event.into(),
        request_id: Some(request_id.to_owned()),
        peer: Some(ctx.peer.to_string()),
        ..Default::default()
    };
    match &ctx.identity {
        ConnectionIdentity::Authenticated(id) => fill_identity(&mut r, id),
        ConnectionIdentity::Refused { reason, .. } => {
            r.kind = Some("refused".into());
            r.reason = Some(reason.code().into());
        }
        ConnectionIdentity::Anonymous => r.kind = Some("anonymous".into()),
    }
    r
}

pub fn fill_identity(r: &mut crate::audit::Record, id: &Identity) {
    r.kind = Some(id.kind.as_str().into());
    r.role = id.roles.first().cloned();
    r.hpki_id = id.hpki_id.clone();
    r.name = id.name_kanji.clone().or_else(|| id.name.clone());
    r.cert_serial = Some(id.serial.clone());
    r.cert_issuer = Some(id.issuer.clone());
    r.cert_sha256 = Some(id.sha256.clone());
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Gateway {
    /// Who acts on this request: an organization card is resolved to the assistant the
    /// ledger names as its holder now (refused when nobody is), a person's card to any
    /// running emergency grant.
    pub async fn principal<'a>(
        &self,
        identity: &'a Identity,
    ) -> Result<Principal<'a>, (Denial, String)> {
        let unavailable = |e: StoreError| {
            tracing::warn!(error = %e, "store unavailable");
            (Denial::StoreUnavailable, e.to_string())
        };
        match identity.kind {
            CertKind::Organization => {
                let holder = self.card_holder(identity).await.map_err(|e| match e {
                    StoreError::Rejected(why) => (Denial::AssistantNotInLedger, why),
                    e => unavailable(e),
                })?;
                match holder {
                    Some(holder) => Ok(Principal {
                        identity,
                        assistant: Some(holder),
                        emergency: None,
                    }),
                    None => Err((
                        Denial::AssistantNotInLedger,
                        format!(
                            "no assistant holds the card with certificate SHA-256 {} (serial {}, issuer {}) now",
                            identity.sha256, identity.serial, identity.issuer
                        ),
                    )),
                }
            }
            CertKind::Person | CertKind::Unknown => {
                // A store outage must not lock doctors out: without the lookup the
                // request goes on without an emergency mark, which a portal treats as
                // ordinary (consented) access, the closed side for emergency access.
                let emergency = match self.active_grant(&identity.sha256).await {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!(error = %e, "store unavailable: emergency grant not looked up");
                        None
                    }
                };
                Ok(Principal {
                    identity,
                    assistant: None,
                    emergency,
                })
            }
        }
    }

    async fn card_holder(
        &self,
        identity: &Identity,
    ) -> Result<Option<Arc<CardHolder>>, StoreError> {
        if let Some(cache) = &self.holders {
            if let Some(hit) = cache.get(&identity.sha256).await {
                return Ok(hit);
            }
        }
        let keys = CardKey::of_certificate(&identity.sha256, &identity.issuer, &identity.serial);
        let holder = self
            .store
            .holder_at(&keys, crate::store::now())
            .await?
            .map(Arc::new);
        if let Some(cache) = &self.holders {
            cache.insert(identity.sha256.clone(), holder.clone()).await;
        }
        Ok(holder)
    }

    async fn active_grant(&self, cert_sha256: &str) -> Result<Option<String>, StoreError> {
        if let Some(cache) = &self.grants {
            if let Some(hit) = cache.get(cert_sha256).await {
                return Ok(hit);
            }
        }
        let grant = self
            .store
            .active_emergency(cert_sha256, crate::store::now())
            .await?
            .map(|g| g.id);
        if let Some(cache) = &self.grants {
            cache.insert(cert_sha256.to_owned(), grant.clone()).await;
        }
        Ok(grant)
    }

    /// Forgets the cached emergency state of a certificate (after a grant starts or ends
    /// on this gateway).
    async fn forget_grant(&self, cert_sha256: &str) {
        if let Some(cache) = &self.grants {
            cache.invalidate(cert_sha256).await;
        }
    }

    /// A tag over `purpose` and `data` under the secret every gateway of the store
    /// shares: the anti-forgery tokens of forms and the session-end tokens are these.
    pub fn shared_tag(&self, purpose: &str, data: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.csrf_key, format!("{purpose}\0{data}").as_bytes());
        pki::name::hex(&tag.as_ref()[..16])
    }

    /// The anti-forgery token of a certificate's forms: only a page served to that card
    /// can carry it.
    pub fn csrf_token(&self, cert_sha256: &str) -> String {
        self.shared_tag("csrf", cert_sha256)
    }

    pub fn csrf_ok(&self, cert_sha256: &str, token: &str) -> bool {
        same_tag(&self.csrf_token(cert_sha256), token)
    }
}

/// Compares a presented tag with the expected one in constant time.
pub fn same_tag(expected: &str, given: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes()).is_ok()
}

/// The connection's card holder, or the denial a gateway page answers to a connection
/// without an accepted card.
pub(crate) fn require_card(
    ctx: &ConnectionContext,
    request_id: &str,
    json: bool,
) -> Result<Arc<Identity>, Box<Response<Body>>> {
    match &ctx.identity {
        ConnectionIdentity::Authenticated(id) => Ok(id.clone()),
        ConnectionIdentity::Anonymous => Err(Box::new(deny(
            Denial::ClientCertificateRequired,
            None,
            request_id,
            json,
        ))),
        ConnectionIdentity::Refused { reason, detail } => Err(Box::new(deny(
            Denial::Certificate(*reason),
            Some(detail),
            request_id,
            json,
        ))),
    }
}

/// `503 store_unavailable`, logged: the store could not record or answer.
pub(crate) fn store_unavailable(
    e: &crate::store::StoreError,
    request_id: &str,
    json: bool,
) -> Response<Body> {
    tracing::warn!(request_id, error = %e, "store unavailable");
    deny(
        Denial::StoreUnavailable,
        Some(&e.to_string()),
        request_id,
        json,
    )
}

/// The listener's TLS configuration for a trust store (client-certificate hints from its
/// CAs, session storage that refuses ended certificates), with the server certificate's
/// fingerprint. At start and at every reload.
pub(crate) fn listener_tls(
    config: &Config,
    trust: &TrustStore,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    ended: Arc<crate::tls::EndedCertificates>,
) -> Result<(rustls::ServerConfig, String), String> {
    let server_sha = server_fingerprint(&chain);
    let verifier = Arc::new(crate::tls::HpkiClientVerifier::new(
        config.server.tls_profile,
        config.server.client_auth,
        trust.hint_subjects(),
    ));
    let mut tls = crate::tls::server_config(
        config.server.tls_profile,
        verifier,
        chain,
        key,
        config.server.http2,
    )
    .map_err(|e| format!("server.cert/server.key: {e} (does the key match the certificate?)"))?;
    crate::tls::guard_sessions(&mut tls, ended);
    Ok((tls, server_sha))
}

/// First 8 bytes of the SHA-256 of the server's leaf certificate, hex.
pub fn server_fingerprint(chain: &[rustls::pki_types::CertificateDer<'_>]) -> String {
    chain
        .first()
        .map(|c| {
            pki::name::hex(
                &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.as_ref()).as_ref()[..8],
            )
        })
        .unwrap_or_default()
}

/// Opens the configured audit log (its writer future is spawned by `serve`).
#[allow(clippy::type_complexity)]
fn open_audit(
    config: &Config,
) -> Result<
    (
        crate::audit::AuditLog,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ),
    String,
> {
    let a = &config.audit;
    let hmac_key = match &a.hmac_key {
        Some(path) => Some(
            crate::audit::read_key_file(path)
                .map_err(|e| format!("audit.hmac_key {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let (log, writer) = crate::audit::AuditLog::open(crate::audit::AuditConfig {
        dir: a.dir.clone(),
        node: a.node.clone(),
        segment_max_bytes: a.segment_max_bytes,
        fsync_interval: a.fsync_interval,
        fsync_records: a.fsync_records,
        queue: 10_000,
        hmac_key,
    })
    .map_err(|e| format!("audit.dir {}: {e}", a.dir.display()))?;
    Ok((log, Box::pin(writer)))
}

/// Decides whether the connection's holder may use the route.
fn authorize<'a>(
    route: &RouteSection,
    identity: &'a ConnectionIdentity,
) -> Result<Option<&'a Identity>, (Denial, Option<String>)> {
    match identity {
        ConnectionIdentity::Refused { reason, detail } => {
            Err((Denial::Certificate(*reason), Some(detail.clone())))
        }
        ConnectionIdentity::Anonymous => {
            if route.allow_anonymous {
                Ok(None)
            } else {
                Err((Denial::ClientCertificateRequired, None))
            }
        }
        ConnectionIdentity::Authenticated(id) => {
            let kind_ok = route.allow_kinds.iter().any(|k| {
                matches!(
                    (k, id.kind),
                    (CertKindConfig::Person, CertKind::Person)
                        | (CertKindConfig::Organization, CertKind::Organization)
                )
            });
            if !kind_ok {
                return Err((
                    Denial::KindNotAllowed,
                    Some(format!(
                        "certificate kind {} is not allowed here",
                        id.kind.as_str()
                    )),
                ));
            }
            if !route.allow_roles.is_empty() {
                if id.roles.is_empty() {
                    return Err((Denial::NoHcRole, None));
                }
                if !id.roles.iter().any(|r| route.allow_roles.contains(r)) {
                    return Err((
                        Denial::RoleNotAllowed,
                        Some(format!(
                            "role {:?} is not among {:?}",
                            id.roles, route.allow_roles
                        )),
                    ));
                }
            }
            Ok(Some(id))
        }
    }
}

/// Removes every client-sent identity header, whatever its case and however often it
/// appears (HeaderMap names are lowercase, HTTP/2 included).
pub fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let doomed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            n.starts_with(STRIPPED_PREFIX) || STRIPPED_EXACT.contains(&n)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

fn request_host(req: &Request<Incoming>) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
}

pub fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system RNG failing is not a reason to refuse a request; the id only needs to
        // be unique enough to find a log line.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&t.to_be_bytes()[4..]);
    }
    pki::name::hex(&bytes)
}

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full_body(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn page_response(page: pages::Page) -> Response<Body> {
    let mut r = Response::new(full_body(page.body));
    *r.status_mut() = page.status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The gateway's own pages carry forms (confirm, reject, emergency): never framed, so
    // that another site cannot overlay them to steal a doctor's click. The pages' own
    // <meta> policy stays in force too (both apply).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(pages::FORMS_CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

pub fn deny(denial: Denial, detail: Option<&str>, request_id: &str, json: bool) -> Response<Body> {
    let mut r = page_response(pages::denial_page(denial, detail, request_id, json));
    r.extensions_mut().insert(DenialCode(denial.code()));
    r
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
