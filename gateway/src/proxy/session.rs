//! Ending a card's sessions when the card is pulled out. The card-reader agent on the
//! workstation (`hpki-card agent`) holds a one-time token the gateway issued to that
//! card while it was present; when the card is removed, the agent (which has no card any
//! more) posts the token and the gateway closes every connection of that certificate, so
//! the next request needs a fresh handshake with the card.
//!
//! - `GET /_hpki/session/token` (with the card): `{"token", "cert_sha256", "expires_at", "end_url"}`.
//! - `POST /_hpki/session/end` (no card needed): `{"token"}` → `{"ended": N}`. A token
//!   works once, for `TOKEN_LIFETIME`; it is an HMAC under the store's shared secret,
//!   so any gateway of a cluster accepts it (each closes its own connections).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::{deny, json_response, now_ms, Body, ConnectionContext, Gateway};
use crate::pages::Denial;

pub const TOKEN_PATH: &str = "/_hpki/session/token";
pub const END_PATH: &str = "/_hpki/session/end";
/// How long an agent may hold a token: a working day.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The live connections of one certificate: (connection id, its "end" flag).
type Connections = Vec<(u64, tokio::sync::watch::Sender<bool>)>;

/// Live connections by certificate SHA-256: a flag each connection watches.
#[derive(Default)]
pub struct SessionRegistry {
    next_id: std::sync::atomic::AtomicU64,
    by_cert: std::sync::Mutex<std::collections::HashMap<String, Connections>>,
}

/// A connection's place in the registry; leaving it (drop) removes the entry.
pub struct Registered<'a> {
    registry: &'a SessionRegistry,
    cert: String,
    id: u64,
    pub ended: tokio::sync::watch::Receiver<bool>,
}

impl SessionRegistry {
    pub fn register(&self, cert_sha256: &str) -> Registered<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Ok(mut m) = self.by_cert.lock() {
            m.entry(cert_sha256.to_owned()).or_default().push((id, tx));
        }
        Registered {
            registry: self,
            cert: cert_sha256.to_owned(),
            id,
            ended: rx,
        }
    }

    /// Signals every live connection of a certificate to close; returns how many.
    pub fn end(&self, cert_sha256: &str) -> usize {
        let Ok(m) = self.by_cert.lock() else { return 0 };
        m.get(cert_sha256)
            .map(|conns| conns.iter().filter(|(_, tx)| tx.send(true).is_ok()).count())
            .unwrap_or(0)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.by_cert.lock() {
            if let Some(conns) = m.get_mut(&self.cert) {
                conns.retain(|(id, _)| *id != self.id);
                if conns.is_empty() {
                    m.remove(&self.cert);
                }
            }
        }
    }
}

fn mac(gw: &Gateway, cert: &str, expires: i64) -> String {
    gw.shared_tag("session-end", &format!("{cert}\0{expires}"))
}

pub async fn endpoint(
    gw: &Gateway,
    req: Request<Incoming>,
    ctx: &ConnectionContext,
    request_id: &str,
    json: bool,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, TOKEN_PATH) => {
            let id = match super::require_card(ctx, request_id, json) {
                Ok(id) => id,
                Err(denied) => return *denied,
            };
            let expires = crate::store::now() + TOKEN_LIFETIME.as_secs() as i64;
            let token = format!("{}.{expires}.{}", id.sha256, mac(gw, &id.sha256, expires));
            json_response(
                StatusCode::OK,
                json!({
                    "token": token,
                    "cert_sha256": id.sha256,
                    "expires_at": crate::store::format_time(expires),
                    "end_url": END_PATH,
                })
                .to_string(),
            )
        }
        (Method::POST, END_PATH) => {
            let body: Bytes = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return deny(
                        Denial::BadRequest,
                        Some(&format!("the body could not be read: {e}")),
                        request_id,
                        json,
                    )
                }
            };
            let token = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["token"].as_str().map(str::to_owned))
                .or_else(|| super::held::parse_urlencoded(&body).remove("token"))
                .unwrap_or_default();
            let refuse = |why: &str| deny(Denial::SessionTokenInvalid, Some(why), request_id, true);
            let mut parts = token.splitn(3, '.');
            let (Some(cert), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next())
            else {
                return refuse("not a session token");
            };
            let Ok(expires) = expires.parse::<i64>() else {
                return refuse("not a session token");
            };
            if !super::same_tag(&mac(gw, cert, expires), tag) {
                return refuse("the token was not issued by this gateway cluster");
            }
            if expires <= crate::store::now() {
                return refuse(
                    "the token has expired: the agent must get a new one while the card is present",
                );
            }
            // One use: a replayed token ends nothing.
            if gw.used_session_tokens.contains_key(&token) {
                return refuse("the token was already used");
            }
            gw.used_session_tokens.insert(token.clone(), ()).await;
            let ended = gw.sessions.end(cert);
            // Cached TLS sessions of the card must not bring it back without the card.
            if let Some(der) = gw.recent_leaves.get(cert).await {
                gw.ended.add(der.as_ref().clone());
            }
            tracing::info!(
                request_id,
                cert_sha256 = cert,
                ended,
                "card removed: its sessions are ended"
            );
            let record = crate::audit::Record {
                time_ms: now_ms(),
                event: "session_end".into(),
                request_id: Some(request_id.to_owned()),
                decision: Some("end".into()),
                cert_sha256: Some(cert.to_owned()),
                peer: Some(ctx.peer.to_string()),
                detail: Some(format!(
                    "card removed (agent); {ended} connection(s) closed"
                )),
                ..Default::default()
            };
            if gw.audit.append_durable(record).await.is_err() {
                gw.metrics.audit_failure();
            }
            json_response(StatusCode::OK, json!({ "ended": ended }).to_string())
        }
        _ => deny(
            Denial::BadRequest,
            Some("GET /_hpki/session/token (with the card) or POST /_hpki/session/end {\"token\"}"),
            request_id,
            json,
        ),
    }
}
