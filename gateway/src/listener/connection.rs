//! One accepted connection before (and, for plain HTTP, instead of) the WebSocket upgrade:
//! the TLS handshake, then HTTP/1.1, all within the upgrade deadline.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::debug;

use super::slots::{Admission, Slot};
use crate::refusals::Reason;
use crate::state::GatewayState;

/// A reserve connection (`/health` only) gets at most this long.
const RESERVE_DEADLINE: Duration = Duration::from_secs(1);
/// After the deadline, an HTTP response already under way may take this long to finish.
const RESPONSE_GRACE: Duration = Duration::from_secs(1);

/// A stream that holds its connection slot until it is dropped (after the WebSocket session,
/// when it upgrades).
pub struct Tracked<S> {
    inner: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one accepted connection until it closes, upgrades, or misses its deadline.
pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<GatewayState>,
) {
    let _ = stream.set_nodelay(true);
    let admission = slot.admission();
    let deadline = Instant::now()
        + match admission {
            Admission::Full => state.config.upgrade_timeout,
            Admission::Reserve => state.config.upgrade_timeout.min(RESERVE_DEADLINE),
        };
    let Some(acceptor) = tls else {
        let io = Tracked {
            inner: stream,
            _slot: slot,
        };
        return http(io, remote, admission, deadline, router, state).await;
    };
    match timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let io = Tracked {
                inner: stream,
                _slot: slot,
            };
            http(io, remote, admission, deadline, router, state).await;
        }
        Ok(Err(error)) => {
            debug!(%remote, %error, "TLS handshake failed");
            state.refusals.note(Reason::TlsHandshakeFailed, remote.ip());
        }
        Err(_) => state.refusals.note(Reason::UpgradeTimeout, remote.ip()),
    }
}

/// HTTP/1.1 on `io` until the connection closes or upgrades; at the deadline, the connection
/// is closed once the response under way (if any) is written.
async fn http<S>(
    io: Tracked<S>,
    remote: SocketAddr,
    admission: Admission,
    deadline: Instant,
    router: Router,
    state: Arc<GatewayState>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requested = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&requested);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(admission);
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(remaining.max(Duration::from_millis(1)));
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                if error.is_timeout() {
                    state.refusals.note(Reason::UpgradeTimeout, remote.ip());
                }
                debug!(%remote, %error, "HTTP connection ended with an error");
            }
            return;
        }
        () = sleep_until(deadline) => {
            if !requested.load(Ordering::Relaxed) {
                state.refusals.note(Reason::UpgradeTimeout, remote.ip());
            }
        }
        () = state.shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = timeout(RESPONSE_GRACE, connection).await;
}
