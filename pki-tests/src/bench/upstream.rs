//! The upstream both proxies forward to, and that scenario 7 calls directly: a minimal
//! static HTTP/1.1 server (hyper, keep-alive).
//!
//! - `GET /big` answers [`Upstream::big_bytes`] bytes, streamed from one static buffer
//!   (nothing is held per response);
//! - `GET /echo` answers the identity headers it received (`x-hpki-*`, `x-client-*`), one
//!   `name: value` line each, so that a run can check what each proxy forwards;
//! - anything else answers [`SMALL_BODY`].

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};

/// The small page of the keep-alive scenarios.
pub const SMALL_BODY: &[u8] = b"<!doctype html><title>portal</title><p>upstream ok: a small static page of the portal, 128 bytes.</p>\n.......................";

const CHUNK_LEN: usize = 256 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

/// `len` bytes in frames of at most 256 KiB, all borrowed from one static buffer.
pub struct RepeatBody {
    left: u64,
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK_LEN as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

pub type UpstreamBody = Either<Full<Bytes>, RepeatBody>;

#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub big_bytes: u64,
}

impl Upstream {
    pub fn answer(&self, req: &Request<Incoming>) -> Response<UpstreamBody> {
        let path = req.uri().path();
        let (body, content_type) = if path == "/big" {
            (
                Either::Right(RepeatBody {
                    left: self.big_bytes,
                }),
                "application/octet-stream",
            )
        } else if path == "/echo" {
            let mut text = String::new();
            for (name, value) in req.headers() {
                let n = name.as_str();
                if n.starts_with("x-hpki-") || n.starts_with("x-client-") {
                    text.push_str(n);
                    text.push_str(": ");
                    text.push_str(&String::from_utf8_lossy(value.as_bytes()));
                    text.push('\n');
                }
            }
            (Either::Left(Full::new(Bytes::from(text))), "text/plain")
        } else {
            (
                Either::Left(Full::new(Bytes::from_static(SMALL_BODY))),
                "text/html",
            )
        };
        let len = body.size_hint().exact().unwrap_or(0);
        Response::builder()
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, len)
            .body(body)
            .expect("static response parts")
    }

    /// Serves `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors and the like: wait instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let response = self.answer(&req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    }
}
