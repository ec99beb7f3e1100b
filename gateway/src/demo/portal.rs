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

/// One record the demo portal registered through `/records`.
#[derive(Debug, Clone)]
struct Record {
    note: String,
    patient: String,
    entered_by: String,
    confirmed_by: String,
    confirmation_id: String,
}

type Records = std::sync::Arc<std::sync::Mutex<Vec<Record>>>;

fn header_text(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(decode)
        .unwrap_or_default()
}

/// `/records`: a form an assistant fills in (held by the gateway until a supervising
/// doctor confirms it) and the list of what was registered, with who entered and who
/// confirmed it. A repeated confirmation id is registered once: the portal uses it as the
/// idempotency key the gateway documents.
async fn records(req: Request<Incoming>, store: Records) -> Response<Full<Bytes>> {
    let html = |status: StatusCode, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = "text/html; charset=utf-8".parse() {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        resp
    };
    if req.method() == http::Method::POST {
        let entered_by = header_text(&req, "x-hpki-entered-by-name");
        let entered_id = header_text(&req, "x-hpki-entered-by");
        let confirmed_by = header_text(&req, "x-hpki-name-kanji");
        let confirmed_id = header_text(&req, "x-hpki-confirmed-by");
        let confirmation_id = header_text(&req, "x-hpki-confirmation-id");
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let form: std::collections::HashMap<String, String> =
            crate::proxy::form_pairs(&body).into_iter().collect();
        let record = Record {
            note: form.get("note").cloned().unwrap_or_default(),
            patient: form.get("patient").cloned().unwrap_or_default(),
            entered_by: format!("{entered_by} ({entered_id})"),
            confirmed_by: format!("{confirmed_by} ({confirmed_id})"),
            confirmation_id,
        };
        let mut list = store.lock().unwrap_or_else(|e| e.into_inner());
        let duplicate = !record.confirmation_id.is_empty()
            && list
                .iter()
                .any(|r| r.confirmation_id == record.confirmation_id);
        if !duplicate {
            list.push(record);
        }
        return html(
            StatusCode::CREATED,
            "<!doctype html><meta charset=\"utf-8\"><title>登録しました</title><p>登録しました / Registered. <a href=\"/records\">記録一覧 / Records</a></p>".into(),
        );
    }
    let mut rows = String::new();
    for r in store.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape_html(&r.patient),
            escape_html(&r.note),
            escape_html(&r.entered_by),
            escape_html(&r.confirmed_by),
            escape_html(&r.confirmation_id)
        ));
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><title>診療記録 / Records</title>\
             <style>body{{font-family:sans-serif;margin:2em}}th,td{{text-align:left;padding:.3em 1em .3em 0}}</style>\
             <h1>診療記録 / Records</h1>\
             <form method=\"post\" action=\"/records\"><p><label>患者ID / Patient <input name=\"patient\"></label></p>\
             <p><label>記録 / Note<br><textarea name=\"note\" rows=\"3\" cols=\"40\"></textarea></label></p>\
             <button type=\"submit\">送信 / Submit</button></form>\
             <h2>登録済み / Registered</h2><table><tr><th>患者</th><th>記録</th><th>入力者 / Entered by</th><th>確定者 / Confirmed by</th><th>確定ID</th></tr>{rows}</table></html>"
        ),
    )
}

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
    let store = Records::default();
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let crl_dir = crl_dir.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let crl_dir = crl_dir.clone();
                let store = store.clone();
                async move {
                    if req.uri().path() == "/records" {
                        return Ok::<_, Infallible>(records(req, store).await);
                    }
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
