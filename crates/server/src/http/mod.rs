//! Serving the router with the configured timeouts (`server.read_timeout`, `write_timeout`,
//! `idle_timeout`) and graceful shutdown.
//!
//! - `read_timeout`: time allowed to receive a request's headers (hyper's header read timeout).
//! - `write_timeout`: time allowed to produce a response; past it the answer is a 503 JSON error.
//! - `idle_timeout`: a keep-alive connection with no bytes in either direction for this long is
//!   closed gracefully.
//!
//! And the conventions every response follows ([`with_conventions`]):
//!
//! - **Request id**: an incoming `x-request-id` of 1–64 characters of `[A-Za-z0-9._-]` is kept,
//!   anything else is replaced by a new UUID; the id is returned as `x-request-id` and every log
//!   line of the request carries it (span `http_request`, field `request_id`).
//! - **Access log**: one `info` line per request, target `driftguard::access`: `request_id`,
//!   `method`, `route` (the template, `unmatched` for unknown paths), `path` (without the query,
//!   cut to 200 characters), `query` (parameter *names* only: values may be secrets), `status`,
//!   `latency_ms` (until the response head), `bytes` (the body before compression, when known).
//!   Headers are never logged, so neither is `Authorization`.
//! - **Compression**: gzip or br, as `Accept-Encoding` asks, for bodies over 32 bytes; never for
//!   `text/event-stream`, gRPC or images (tower-http's default predicate).

mod conventions;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::conventions::{UNMATCHED_ROUTE, with_conventions, with_write_timeout};

/// Timeouts of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Headers must arrive within this.
    pub read: Duration,
    /// Idle keep-alive connections are closed after this.
    pub idle: Duration,
}

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting, lets open
/// connections finish their requests (at most `grace`), and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(stream, router.clone(), timeouts, shutdown.clone()));
            }
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(IdleStream {
        inner: stream,
        start,
        activity: Arc::clone(&activity),
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.read)
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = start + last + timeouts.idle;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline), if !closing => {
                let idle_for = start.elapsed().saturating_sub(Duration::from_millis(activity.load(Ordering::Relaxed)));
                if idle_for >= timeouts.idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A TCP stream that records when bytes last moved.
struct IdleStream {
    inner: TcpStream,
    start: Instant,
    activity: Arc<AtomicU64>,
}

impl IdleStream {
    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(millis, Ordering::Relaxed);
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
