//! Starting, running and stopping a gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use ioap_protocol::{Did, Identity};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::GatewayConfig;
use crate::http::{AppState, router};
use crate::limits::PRUNE_INTERVAL;
use crate::state::GatewayState;
use crate::tls::{TlsListener, server_config};

/// How long shutdown waits for sessions to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pending TCP connections the kernel queues for us.
const LISTEN_BACKLOG: u32 = 4096;

/// The entry point for embedding a gateway.
#[derive(Debug)]
pub struct Gateway;

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    state: Arc<GatewayState>,
    local_addr: SocketAddr,
    tls: bool,
    server: JoinHandle<std::io::Result<()>>,
    janitor: JoinHandle<()>,
}

impl Gateway {
    /// Binds the listener and starts serving in the background (needs a Tokio runtime).
    pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
        config.validate()?;
        let identity = match &config.identity {
            Some(identity) => identity.clone(),
            None => Identity::generate().context("generating the gateway identity")?,
        };
        let tls_config = config.tls.as_ref().map(server_config).transpose()?;
        let tcp =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = tcp.local_addr()?;
        let state = Arc::new(GatewayState::new(config, identity));
        let tls = tls_config.is_some();
        let app = router(AppState {
            gateway: Arc::clone(&state),
            tls,
        })
        .into_make_service_with_connect_info::<SocketAddr>();
        let stop = state.shutdown.clone();
        let server = match tls_config {
            Some(tls_config) => {
                let listener = TlsListener::new(tcp, tls_config, stop.clone())?.tap_io(|_| {});
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                })
            }
            None => {
                let listener = tcp.tap_io(|stream| {
                    let _ = stream.set_nodelay(true);
                });
                tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await
                })
            }
        };
        let janitor = tokio::spawn(prune_limits(Arc::clone(&state)));
        info!(
            address = %local_addr,
            tls,
            did = %state.did,
            "ioap gateway listening"
        );
        Ok(RunningGateway {
            state,
            local_addr,
            tls,
            server,
            janitor,
        })
    }
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn prune_limits(state: Arc<GatewayState>) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL / 6);
    let mut rounds = 0u32;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                rounds += 1;
                if rounds.is_multiple_of(6) || state.limits.over_bound() {
                    state.limits.prune();
                }
            }
        }
    }
}

impl RunningGateway {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The gateway's DID.
    pub fn did(&self) -> Did {
        self.state.did
    }

    /// The WebSocket URL clients dial, e.g. `ws://127.0.0.1:8000/ws`.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// The base HTTP URL, e.g. `http://127.0.0.1:8000`.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// How many agents are registered now.
    pub fn registered_agents(&self) -> usize {
        self.state.registry.len()
    }

    /// Resolves when shutdown has been requested (by [`RunningGateway::shutdown`] or a
    /// [`ShutdownHandle`]).
    pub async fn shutdown_requested(&self) {
        self.state.shutdown.cancelled().await;
    }

    /// A handle that can request shutdown from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.state.shutdown.clone())
    }

    /// Stops accepting, closes every session with 1001 (going away), and waits for them (at
    /// most 10 s) and for the server to stop.
    pub async fn shutdown(self) {
        info!("shutting down: closing every session with 1001");
        self.state.shutdown.cancel();
        self.state.sessions.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.state.sessions.wait())
            .await
            .is_err()
        {
            warn!(
                "{} sessions did not close within {SHUTDOWN_GRACE:?}",
                self.state.sessions.len()
            );
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => warn!(%error, "server ended with an error"),
            Ok(Err(error)) => warn!(%error, "server task failed"),
            Err(_) => warn!("server did not stop within {SHUTDOWN_GRACE:?}"),
        }
        self.janitor.abort();
        info!("gateway stopped");
    }
}

/// Requests a gateway's shutdown (the gateway then closes its sessions with 1001).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(tokio_util::sync::CancellationToken);

impl ShutdownHandle {
    /// Requests shutdown.
    pub fn request(&self) {
        self.0.cancel();
    }
}
