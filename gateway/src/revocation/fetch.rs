//! Bounded HTTP for CRLs and OCSP: plain http:// only (CRL and OCSP are signed objects,
//! distributed over HTTP by design), a size cap, a total timeout, and an optional
//! restriction to loopback hosts.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::{FetchHosts, RevocationFetch};

#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    hosts: FetchHosts,
}

/// What a fetch returned.
#[derive(Debug)]
pub enum Fetched {
    Body {
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 304: the copy we have is current.
    NotModified,
}

/// Conditional-GET validators from the previous fetch.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Fetcher {
    pub fn new(settings: &RevocationFetch) -> Fetcher {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.fetch_timeout));
        Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: settings.fetch_timeout,
            hosts: settings.hosts,
        }
    }

    fn check_url(&self, url: &str) -> Result<Uri, String> {
        let uri: Uri = url.parse().map_err(|_| format!("\"{url}\" is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "\"{url}\": only http:// is fetched (CRLs and OCSP responses are signed)"
            ));
        }
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        if self.hosts == FetchHosts::Loopback {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "\"{url}\": revocation.hosts = \"loopback\" allows loopback hosts only"
                ));
            }
        }
        Ok(uri)
    }

    /// GET with a size cap; `validators` make it conditional.
    pub async fn get(
        &self,
        url: &str,
        max_bytes: u64,
        validators: &Validators,
    ) -> Result<Fetched, String> {
        let uri = self.check_url(url)?;
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(etag) = &validators.etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &validators.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(req, max_bytes).await
    }

    /// POST an OCSP request.
    pub async fn post_ocsp(
        &self,
        url: &str,
        body: Vec<u8>,
        max_bytes: u64,
    ) -> Result<Bytes, String> {
        let uri = self.check_url(url)?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/ocsp-request")
            .header(header::ACCEPT, "application/ocsp-response")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        match self.send(req, max_bytes).await? {
            Fetched::Body { body, .. } => Ok(body),
            Fetched::NotModified => Err("unexpected 304 to an OCSP POST".into()),
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>, max_bytes: u64) -> Result<Fetched, String> {
        let uri = req.uri().to_string();
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{uri}: {e}"))?;
            let status = resp.status();
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if !status.is_success() {
                return Err(format!("{uri}: HTTP {status}"));
            }
            let text = |name: header::HeaderName| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let etag = text(header::ETAG);
            let last_modified = text(header::LAST_MODIFIED);
            let body = Limited::new(resp.into_body(), max_bytes as usize)
                .collect()
                .await
                .map_err(|e| {
                    format!("{uri}: {e} (limit {max_bytes} bytes: revocation.max_crl_size)")
                })?
                .to_bytes();
            Ok(Fetched::Body {
                body,
                etag,
                last_modified,
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{uri}: no complete answer within {:?} (revocation.fetch_timeout)",
                self.timeout
            )),
        }
    }
}
