//! The gateway's own accept loop (in place of `axum::serve`), so that every TCP connection is
//! bounded from the moment it is accepted (PROTOCOL_DESIGN.md §10, *Connections*):
//!
//! - it takes a slot against the connection limit and the per-address cap at accept, and holds
//!   it until its socket closes ([`slots`]);
//! - it must finish TLS, its HTTP request and the WebSocket upgrade within the upgrade
//!   deadline, or it is closed;
//! - a small reserve beyond the limit keeps `/health` answerable while the limit is full;
//! - a failed `accept` (out of descriptors) backs off and is logged once per interval
//!   (`backoff`), and serving resumes as soon as descriptors are free.

mod backoff;
mod connection;
pub mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::state::GatewayState;
use backoff::AcceptBackoff;

pub use slots::{Admission, ConnectionSlots};

/// How long shutdown waits for connections that have not upgraded.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Starts accepting on `tcp` until the gateway shuts down.
pub fn spawn(
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    state: Arc<GatewayState>,
) -> JoinHandle<()> {
    let tls = tls.map(TlsAcceptor::from);
    tokio::spawn(accept_loop(tcp, tls, router, state))
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    state: Arc<GatewayState>,
) {
    let connections = TaskTracker::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => break,
            accepted = tcp.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let after = backoff.failed(Instant::now());
                if let Some(failures) = after.log {
                    warn!(
                        %error,
                        failures,
                        retry_ms = after.wait.as_millis() as u64,
                        "cannot accept connections (out of file descriptors?); retrying"
                    );
                }
                tokio::select! {
                    () = state.shutdown.cancelled() => break,
                    () = tokio::time::sleep(after.wait) => continue,
                }
            }
        };
        backoff.succeeded();
        let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
        match state.slots.admit(remote.ip()) {
            Ok(slot) => {
                connections.spawn(connection::serve(
                    stream,
                    remote,
                    slot,
                    tls.clone(),
                    router.clone(),
                    Arc::clone(&state),
                ));
            }
            Err(refusal) => {
                crate::metrics::connection_refused();
                state.refusals.note(refusal, remote.ip());
                drop(stream);
            }
        }
    }
    drop(tcp);
    connections.close();
    let _ = tokio::time::timeout(DRAIN_GRACE, connections.wait()).await;
}
