//! Request bodies over the size limit, answered without a connection reset.
//!
//! A client that is still sending when the gateway answers 413 gets a TCP reset if the
//! gateway closes without reading the rest, and the reset destroys the 413 page. So the
//! rest of an over-limit body is read and discarded — bounded in bytes and time, like
//! nginx's lingering close — while the answer goes out.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much of an over-limit body is drained, at most.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and discards what is left of a body, within the bounds above.
pub async fn drain(mut body: Incoming, already: u64) {
    let mut seen = already;
    let work = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    seen += f.data_ref().map(|d| d.len() as u64).unwrap_or(0);
                    if seen > DRAIN_BYTES {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, work).await;
}

/// The error the upstream request fails with when the body outgrows the limit.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body larger than limits.max_request_body")
    }
}

impl std::error::Error for BodyTooLarge {}

/// A body of unknown length (chunked, or HTTP/2 without content-length), streamed to the
/// upstream through a small channel. When it outgrows `limit` the upstream stream fails,
/// `overflowed` is set, and the rest is drained instead of forwarded.
pub fn capped(mut incoming: Incoming, limit: u64) -> (ChannelBody, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = overflowed.clone();
    tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(frame) = incoming.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(Box::new(e))).await;
                    return;
                }
            };
            seen += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
            if seen > limit {
                flag.store(true, Ordering::SeqCst);
                let _ = tx.send(Err(Box::new(BodyTooLarge))).await;
                drop(tx);
                drain(incoming, seen).await;
                return;
            }
            if tx.send(Ok(frame)).await.is_err() {
                // The upstream request is gone; the client's rest is not wanted either.
                drain(incoming, seen).await;
                return;
            }
        }
    });
    (ChannelBody { rx }, overflowed)
}

pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}
