//! Forwarding to the upstream portal: header rewriting, identity injection, streaming
//! bodies in both directions, timeouts, and protocol upgrades (WebSocket).

use std::sync::Arc;

use http::{
    header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{deny, now, Body, ConnectionContext, Gateway};
use crate::config::{Config, RouteSection, UpstreamScheme};
use crate::identity::Principal;
use crate::pages::Denial;
use crate::store::{ForwardOutcome, PendingWrite};

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One pooled client per route (an https route carries its own CA).
pub struct Upstreams {
    http: Client<HttpConnector, Body>,
    https: Vec<Option<Client<HttpsConnector, Body>>>,
}

fn connector(config: &Config) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(config.timeouts.upstream_connect));
    c.set_nodelay(true);
    c.enforce_http(false);
    c
}

impl Upstreams {
    pub fn build(config: &Config) -> Result<Upstreams, Vec<String>> {
        let mut problems = Vec::new();
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(config.timeouts.idle);
            b
        };
        let mut https = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            if route.upstream.scheme != UpstreamScheme::Https {
                https.push(None);
                continue;
            }
            match https_client_config(route) {
                Ok(tls) => {
                    let conn = hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config(tls)
                        .https_only()
                        .enable_http1()
                        .wrap_connector(connector(config));
                    https.push(Some(builder().build(conn)));
                }
                Err(e) => {
                    problems.push(format!("route[{i}].upstream_ca: {e}"));
                    https.push(None);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Upstreams {
            http: builder().build(connector(config)),
            https,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        gw: &Gateway,
        route: &RouteSection,
        mut req: Request<Incoming>,
        principal: Option<&Principal<'_>>,
        ctx: &ConnectionContext,
        request_id: &str,
        json: bool,
    ) -> Response<Body> {
        let limit = gw.config.limits.max_request_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            tokio::spawn(super::body::drain(req.into_body(), 0));
            return deny(
                Denial::RequestTooLarge,
                Some(&format!("the request body is larger than {limit} bytes")),
                request_id,
                json,
            );
        }

        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let original_host = super::request_host(&req);
        let route_index = route_index(gw, route);

        let (mut parts, body) = req.into_parts();
        let up = &route.upstream;
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = match upstream_uri(route, path_and_query) {
            Ok(u) => u,
            Err(_) => {
                return deny(
                    Denial::BadRequest,
                    Some("unusable request path"),
                    request_id,
                    json,
                )
            }
        };
        parts.uri = uri;
        parts.version = Version::HTTP_11;

        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{}:{}", up.host, up.port)) {
            headers.insert(header::HOST, v);
        }
        // We are the edge: whatever the client claims about forwarding is replaced.
        if let Ok(v) = HeaderValue::from_str(&ctx.peer.ip().to_string()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        headers.remove(HeaderName::from_static("forwarded"));
        match original_host.as_deref().map(HeaderValue::from_str) {
            Some(Ok(v)) => {
                headers.insert(HeaderName::from_static("x-forwarded-host"), v);
            }
            _ => {
                headers.remove(HeaderName::from_static("x-forwarded-host"));
            }
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(HeaderName::from_static("x-hpki-request-id"), v);
        }
        if let Some(principal) = principal {
            for (name, value) in principal.identity.upstream_headers() {
                headers.insert(name.clone(), value.clone());
            }
            for (name, value) in principal.extra_headers() {
                headers.insert(name, value);
            }
            let token = principal.assertion(&gw.signer, &audience(route), request_id, now().0);
            if let Ok(v) = HeaderValue::from_str(&token) {
                headers.insert(HeaderName::from_static("x-hpki-assertion"), v);
            }
        }

        // Streamed, never buffered. A declared length is already within the limit; a body
        // of unknown length is capped on the way and its over-limit rest drained.
        let (body, overflowed): (Body, _) = if declared.is_some() {
            (Limited::new(body, limit as usize).boxed(), None)
        } else {
            let (capped, flag) = super::body::capped(body, limit);
            (capped.boxed(), Some(flag))
        };
        let upstream_req = Request::from_parts(parts, body);
        let send = async {
            match self.https.get(route_index).and_then(Option::as_ref) {
                Some(client) => client.request(upstream_req).await,
                None => self.http.request(upstream_req).await,
            }
        };
        let sent = std::time::Instant::now();
        let mut resp = match tokio::time::timeout(gw.config.timeouts.upstream_response, send).await
        {
            Err(_) => {
                return deny(
                    Denial::UpstreamTimeout,
                    Some(&format!(
                        "no response within {:?}",
                        gw.config.timeouts.upstream_response
                    )),
                    request_id,
                    json,
                )
            }
            Ok(Err(e)) => {
                let too_large = overflowed
                    .as_ref()
                    .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
                    || is_body_limit(&e);
                if too_large {
                    tracing::info!(
                        request_id,
                        limit,
                        "request body over limits.max_request_body"
                    );
                    return deny(
                        Denial::RequestTooLarge,
                        Some(&format!("the request body is larger than {limit} bytes")),
                        request_id,
                        json,
                    );
                }
                tracing::warn!(request_id, upstream = %up.host, error = %e, "upstream request failed");
                return deny(
                    Denial::UpstreamUnavailable,
                    Some(&format!("{e}")),
                    request_id,
                    json,
                );
            }
            Ok(Ok(r)) => r,
        };
        gw.metrics.upstream_latency(sent.elapsed());
        let upstream_status = resp.status().as_u16();

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                let request_id = request_id.to_owned();
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, upstream)) => {
                            let mut client = TokioIo::new(client);
                            let mut upstream = TokioIo::new(upstream);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                        Err(e) => tracing::debug!(request_id, error = %e, "upgrade failed"),
                    }
                });
            }
        } else {
            remove_hop_by_hop(resp.headers_mut());
        }
        let mut resp = resp.map(|b| {
            b.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed()
        });
        resp.extensions_mut()
            .insert(super::UpstreamStatus(upstream_status));
        resp
    }

    /// Sends a confirmed held write: the assistant's stored request, under the confirming
    /// doctor's identity, with the entry id as idempotency key. The upstream's answer is
    /// read (up to `keep` bytes kept) so that both can see it.
    pub async fn forward_held(
        &self,
        gw: &Gateway,
        route: &RouteSection,
        entry: &PendingWrite,
        request_id: &str,
        keep: usize,
    ) -> ForwardOutcome {
        let failed = |error: String| ForwardOutcome::Failed {
            error,
            status: None,
            body: Vec::new(),
        };
        let Some(confirmer) = &entry.confirmer else {
            return failed("the entry has no confirming doctor".into());
        };
        let uri = match upstream_uri(route, &entry.path_and_query) {
            Ok(u) => u,
            Err(e) => return failed(e),
        };
        let method = match http::Method::from_bytes(entry.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => return failed(format!("unusable method {:?}", entry.method)),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        let up = &route.upstream;
        let mut add = |name: &str, value: &str| {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                builder.headers_mut().map(|h| h.append(n, v));
            }
        };
        for (name, value) in &entry.headers {
            add(name, value);
        }
        add("host", &format!("{}:{}", up.host, up.port));
        add("x-forwarded-proto", "https");
        if let Some(h) = &entry.request_host {
            add("x-forwarded-host", h);
        }
        add("x-hpki-request-id", request_id);
        for (name, value) in &confirmer.headers {
            add(name, value);
        }
        add(
            "x-hpki-entered-by",
            &crate::identity::encode_header_value(&entry.assistant_id),
        );
        add(
            "x-hpki-entered-by-name",
            &crate::identity::encode_header_value(&entry.assistant_name),
        );
        add(
            "x-hpki-confirmed-by",
            &crate::identity::encode_header_value(&confirmer.hpki_id),
        );
        add("x-hpki-confirmation-id", &entry.id);
        if let Some(signature) = &entry.signature {
            add(
                "x-hpki-confirmation-signature",
                &confirmation_signature_header(signature),
            );
        }
        let mut claims = match &confirmer.claims {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        claims.insert("entered_by".into(), entry.assistant_id.clone().into());
        claims.insert("confirmation_id".into(), entry.id.clone().into());
        if let Some(signature) = &entry.signature {
            claims.insert(
                "confirmation_digest".into(),
                format!("sha256:{}", crate::pki::name::hex(&signature.digest)).into(),
            );
        }
        let token = gw
            .signer
            .sign(&claims, &audience(route), request_id, now().0);
        add("x-hpki-assertion", &token);
        let request = match builder.body(super::full_body(entry.body.clone())) {
            Ok(r) => r,
            Err(e) => return failed(format!("cannot build the request: {e}")),
        };
        let send = async {
            match self
                .https
                .get(route_index(gw, route))
                .and_then(Option::as_ref)
            {
                Some(client) => client.request(request).await,
                None => self.http.request(request).await,
            }
        };
        let timeout = gw.config.timeouts.upstream_response;
        let response = match tokio::time::timeout(timeout, send).await {
            Err(_) => return failed(format!("no response within {timeout:?}")),
            Ok(Err(e)) => return failed(format!("upstream request failed: {e}")),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read at most `keep` bytes; the rest of a big answer is not kept (it was
        // delivered: the upstream has already acted on the request).
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        let read = tokio::time::timeout(timeout, async {
            while let Some(frame) = incoming.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            let room = keep.saturating_sub(body.len());
                            body.extend_from_slice(&d[..d.len().min(room)]);
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        })
        .await;
        if status.is_server_error() {
            return ForwardOutcome::Failed {
                error: format!("the portal answered {status}"),
                status: Some(status.as_u16()),
                body,
            };
        }
        if let Ok(Err(e)) = read {
            tracing::info!(id = %entry.id, error = %e, "held write delivered; reading the answer failed");
        }
        ForwardOutcome::Delivered {
            status: status.as_u16(),
            content_type,
            body,
        }
    }
}

fn route_index(gw: &Gateway, route: &RouteSection) -> usize {
    gw.config
        .routes
        .iter()
        .position(|r| std::ptr::eq(r, route))
        .unwrap_or(0)
}

/// The assertion audience of a route: its host and path.
fn audience(route: &RouteSection) -> String {
    match &route.host {
        Some(h) if h != "*" => format!("{h}{}", route.path),
        _ => route.path.clone(),
    }
}

fn upstream_uri(route: &RouteSection, path_and_query: &str) -> Result<Uri, String> {
    let up = &route.upstream;
    let scheme = match up.scheme {
        UpstreamScheme::Http => "http",
        UpstreamScheme::Https => "https",
    };
    format!(
        "{scheme}://{}:{}{}{}",
        up.host, up.port, up.base_path, path_and_query
    )
    .parse()
    .map_err(|_| format!("unusable request path {path_and_query:?}"))
}

fn is_body_limit(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn https_client_config(route: &RouteSection) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let ca = route.upstream_ca.as_ref().ok_or(
        "an https upstream needs upstream_ca (the CA bundle that signed the portal's certificate)",
    )?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("{}: {e}", ca.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The protocol a request asks to upgrade to (WebSocket), if it does so properly.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// RFC 9110 §7.6.1: connection-specific headers are not forwarded, including any header
/// the Connection header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove(HeaderName::from_static("keep-alive"));
    headers.remove(HeaderName::from_static("proxy-connection"));
}

/// `X-HPKI-Confirmation-Signature` (docs/headers.md): the format version, then the SHA-256
/// of the confirmation text, the signature and the signing certificate (DER), standard
/// base64 with padding, `; `-separated. ASCII only, so it passes every HTTP hop unchanged.
pub fn confirmation_signature_header(s: &crate::store::ConfirmationSignature) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "v1; digest=sha256:{}; sig={}; cert={}",
        crate::pki::name::hex(&s.digest),
        b64.encode(&s.signature),
        b64.encode(&s.certificate)
    )
}
