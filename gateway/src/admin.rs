//! The admin listener: plain HTTP on loopback (`admin.listen`) or a Unix socket
//! (`admin.socket`), for probes and scrapers — never for browsers, so it has no TLS and
//! no authentication of its own; keep it off public interfaces.
//!
//! - `/healthz`: the process answers (liveness).
//! - `/readyz`: trust store loaded, store reachable, audit log writable, CRLs fresh;
//!   200 or 503 with a JSON body naming each check.
//! - `/metrics`: Prometheus text format ([`crate::metrics`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::metrics::Snapshot;
use crate::proxy::Gateway;

/// How long `/readyz` and `/metrics` wait for the store.
const STORE_PROBE: Duration = Duration::from_secs(2);

pub enum AdminListener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

impl AdminListener {
    /// Binds what the configuration names; a Unix socket left by a previous run is
    /// replaced.
    pub async fn bind(config: &crate::config::AdminSection) -> std::io::Result<AdminListener> {
        #[cfg(unix)]
        if let Some(path) = &config.socket {
            if path.exists() {
                std::fs::remove_file(path)?;
            }
            return tokio::net::UnixListener::bind(path).map(AdminListener::Unix);
        }
        tokio::net::TcpListener::bind(config.listen)
            .await
            .map(AdminListener::Tcp)
    }

    pub fn describe(&self) -> String {
        match self {
            AdminListener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            #[cfg(unix)]
            AdminListener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

/// Serves the admin endpoints until the gateway is dropped.
pub async fn serve(gateway: std::sync::Weak<Gateway>, listener: AdminListener) {
    loop {
        let io: Box<dyn ConnIo> = match &listener {
            AdminListener::Tcp(l) => match l.accept().await {
                Ok((s, _)) => Box::new(s),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            #[cfg(unix)]
            AdminListener::Unix(l) => match l.accept().await {
                Ok((s, _)) => Box::new(s),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(gw) = gateway.upgrade() else { return };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(respond(&gw, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

trait ConnIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ConnIo for T {}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

async fn respond(gw: &Arc<Gateway>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/trust/reload" {
        if req.method() != http::Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "POST /trust/reload (header X-HPKI-Operator: who)\n".into(),
            );
        }
        let operator = req
            .headers()
            .get("x-hpki-operator")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("admin API: {v}"))
            .unwrap_or_else(|| "admin API".into());
        let report = gw.reload("admin API", Some(&operator), false).await;
        return reload_response(&report);
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".into(),
        );
    }
    match req.uri().path() {
        "/trust/diff" => {
            let report = gw.reload("diff", None, true).await;
            reload_response(&report)
        }
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness(gw).await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, "application/json", body.to_string())
        }
        "/metrics" => {
            let snapshot = snapshot(gw).await;
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                gw.metrics.render(&snapshot),
            )
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: /healthz, /readyz, /metrics\n".into(),
        ),
    }
}

fn reload_response(report: &crate::proxy::reload::ReloadReport) -> Response<Full<Bytes>> {
    use crate::proxy::reload::ReloadOutcome;
    let status = match report.outcome {
        ReloadOutcome::Refused | ReloadOutcome::WouldRefuse => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    text(
        status,
        "application/json",
        serde_json::to_string(report).unwrap_or_default(),
    )
}

async fn store_reachable(gw: &Gateway) -> Result<(), String> {
    match tokio::time::timeout(STORE_PROBE, gw.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {STORE_PROBE:?}")),
    }
}

/// Every check, each with `ok` and a detail an operator can act on.
pub async fn readiness(gw: &Gateway) -> (bool, serde_json::Value) {
    let now = crate::proxy::now().0 as i64;
    let trust = {
        let store = gw.trust();
        let empty: Vec<&str> = store
            .profiles
            .iter()
            .filter(|p| p.directory.anchors.is_empty())
            .map(|p| p.name.as_str())
            .collect();
        if store.profiles.is_empty() {
            Err("no trust profile loaded".to_owned())
        } else if !empty.is_empty() {
            Err(format!("profiles without an anchor: {}", empty.join(", ")))
        } else {
            // A refused reload leaves the running store in place (still ready), but the
            // operator must see it here.
            let last = gw
                .last_reload
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .map(|r| match r.outcome {
                    crate::proxy::reload::ReloadOutcome::Refused => format!(
                        "; the last reload ({}) was REFUSED: {}",
                        r.trigger,
                        r.problems.join("; ")
                    ),
                    o => format!("; last reload ({}): {o:?}", r.trigger),
                })
                .unwrap_or_default();
            Ok(format!(
                "{} profiles, generation {}{last}",
                store.profiles.len(),
                gw.trust_generation()
            ))
        }
    };
    let store = store_reachable(gw).await.map(|()| {
        format!(
            "{} reachable",
            crate::store::redact_url(&gw.config.store.url)
        )
    });
    let audit = if gw.audit.healthy() {
        Ok("writable".to_owned())
    } else {
        Err("the last audit write failed (disk full? permissions?): see the log".to_owned())
    };
    // A CRL past nextUpdate plus the largest grace any profile allows is stale for every
    // profile; the gateway then refuses (or, where allowed, fails open on) its cards.
    let grace = gw
        .trust()
        .profiles
        .iter()
        .map(|p| p.revocation.stale_grace.as_secs() as i64)
        .max()
        .unwrap_or(0);
    let stale: Vec<String> = gw
        .revocation
        .crls()
        .iter()
        .filter(|r| {
            r.crl
                .next_update()
                .is_none_or(|nu| (nu.0 as i64) + grace < now)
        })
        .map(|r| r.crl.issuer_display())
        .collect();
    let crls = if stale.is_empty() {
        Ok(format!("{} CRLs fresh", gw.revocation.crls().len()))
    } else {
        Err(format!("stale: {}", stale.join("; ")))
    };
    let checks = [
        ("trust", trust),
        ("store", store),
        ("audit", audit),
        ("crls", crls),
    ];
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut detail = serde_json::Map::new();
    for (name, r) in checks {
        detail.insert(
            name.into(),
            match r {
                Ok(d) => json!({"ok": true, "detail": d}),
                Err(d) => json!({"ok": false, "detail": d}),
            },
        );
    }
    (ready, json!({"ready": ready, "checks": detail}))
}

async fn snapshot(gw: &Gateway) -> Snapshot {
    let now = crate::proxy::now().0 as i64;
    let crls = gw
        .revocation
        .crls()
        .iter()
        .map(|r| {
            (
                r.crl.issuer_display(),
                now - r.crl.this_update().0 as i64,
                r.crl.next_update().map(|nu| nu.0 as i64 - now),
            )
        })
        .collect();
    let pending = match tokio::time::timeout(STORE_PROBE, gw.store.count_pending()).await {
        Ok(Ok(n)) => Some(n),
        _ => None,
    };
    let (ocsp_lookups, ocsp_fetches) = gw.revocation.ocsp_counts();
    Snapshot {
        crls,
        ocsp_lookups,
        ocsp_fetches,
        ocsp_cache_entries: gw.revocation.ocsp_cache_len(),
        store_reachable: pending.is_some(),
        pending_confirmations: pending,
        audit_queue_depth: gw.audit.queue_depth() as u64,
        audit_healthy: gw.audit.healthy(),
    }
}
