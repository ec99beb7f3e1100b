//! The demo portal: a stand-in for a legacy medical web application that knows nothing of
//! certificates. It shows what the gateway told it (the `X-HPKI-*` headers, decoded) so
//! that a person trying the demo sees the identity arrive.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::pages::escape_html;

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

async fn respond(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut rows = String::new();
    let mut json = serde_json::Map::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if n.starts_with("x-hpki-") || n.starts_with("x-forwarded-") {
            let raw = value.to_str().unwrap_or("<binary>");
            let shown = if n == "x-hpki-assertion" {
                format!(
                    "{}… ({} bytes, ES256 JWS)",
                    &raw[..raw.len().min(24)],
                    raw.len()
                )
            } else {
                decode(raw)
            };
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape_html(n),
                escape_html(&shown)
            ));
            json.insert(n.to_owned(), serde_json::Value::String(raw.to_owned()));
        }
    }
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    // Drain the body so that uploads through the gateway complete.
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let (ctype, body) = if wants_json {
        let v = serde_json::json!({ "method": method, "path": path, "body_bytes": body_len, "headers": json });
        ("application/json", v.to_string())
    } else {
        let name = req_name(&json);
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><title>デモポータル / Demo portal</title>\
                 <style>body{{font-family:sans-serif;margin:2em}}th{{text-align:left;padding-right:1em}}</style>\
                 <h1>デモポータル / Demo portal</h1><p>{}</p><p>{} {}</p>\
                 <h2>ゲートウェイから受け取ったヘッダー / Headers from the gateway</h2><table>{rows}</table></html>",
                escape_html(&name),
                escape_html(&method),
                escape_html(&path)
            ),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

fn req_name(headers: &serde_json::Map<String, serde_json::Value>) -> String {
    let get = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.as_str())
            .map(decode)
            .unwrap_or_default()
    };
    match (get("x-hpki-name-kanji"), get("x-hpki-role")) {
        (n, r) if !n.is_empty() => format!("ようこそ {n} さん（{r}）"),
        _ => "匿名の訪問者 / anonymous visitor".to_owned(),
    }
}

/// The demo PKI's CRLs, at the distribution points its certificates name
/// (`/crl/<ca>.crl`), so that the demo fetches and refreshes them like a real network.
fn crl_file(crl_dir: &std::path::Path, path: &str) -> Option<Vec<u8>> {
    let name = path.strip_prefix("/crl/")?;
    let plain = name.ends_with(".crl")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !plain || name.contains("..") {
        return None;
    }
    std::fs::read(crl_dir.join(name)).ok()
}

/// Serves the portal (and the demo CRLs from `crl_dir`) on `listener` until the process ends.
pub async fn serve(listener: TcpListener, crl_dir: std::path::PathBuf) {
    let crl_dir = std::sync::Arc::new(crl_dir);
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let crl_dir = crl_dir.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let crl_dir = crl_dir.clone();
                async move {
                    if let Some(bytes) = crl_file(&crl_dir, req.uri().path()) {
                        let mut resp = Response::new(Full::new(Bytes::from(bytes)));
                        if let Ok(v) = "application/pkix-crl".parse() {
                            resp.headers_mut().insert(header::CONTENT_TYPE, v);
                        }
                        return Ok::<_, Infallible>(resp);
                    }
                    respond(req).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
