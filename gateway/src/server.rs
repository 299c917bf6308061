//! Starting, running and stopping a gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ioap_protocol::{Did, Identity};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cluster::{self, Cluster};
use crate::config::GatewayConfig;
use crate::http::{AppState, router};
use crate::limits::PRUNE_INTERVAL;
use crate::listener::{self, slots};
use crate::state::GatewayState;
use crate::tls::server_config;
use crate::turn::TurnConfig;
use crate::turn_server::TurnServer;
use crate::{metrics, refusals};
use base64::Engine as _;

/// How long shutdown waits for sessions to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pending TCP connections the kernel queues for us.
const LISTEN_BACKLOG: u32 = 4096;
/// Descriptors kept for everything but connections (listener, runtime, log files, ...).
const FD_MARGIN: usize = 64;
/// How often the janitor runs: the metrics upkeep's interval; its other chores are rarer.
const JANITOR_TICK: Duration = metrics::UPKEEP_INTERVAL;

/// The entry point for embedding a gateway.
#[derive(Debug)]
pub struct Gateway;

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    state: Arc<GatewayState>,
    local_addr: SocketAddr,
    tls: bool,
    server: JoinHandle<()>,
    janitor: JoinHandle<()>,
    cluster_tasks: Vec<JoinHandle<()>>,
    turn_server: Option<Box<TurnServer>>,
}

impl Gateway {
    /// Binds the listener and starts serving in the background (needs a Tokio runtime).
    pub async fn start(mut config: GatewayConfig) -> anyhow::Result<RunningGateway> {
        config.validate()?;
        fit_descriptor_limit(&mut config);
        let identity = match &config.identity {
            Some(identity) => identity.clone(),
            None => Identity::generate().context("generating the gateway identity")?,
        };
        let tls_config = config.tls.as_ref().map(server_config).transpose()?;
        let tcp =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = tcp.local_addr()?;
        let tls = tls_config.is_some();
        let cluster = match &config.cluster {
            Some(cluster_config) => {
                let scheme = if tls { "wss" } else { "ws" };
                let url = config
                    .public_urls
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{scheme}://{local_addr}/ws"));
                Some(Arc::new(Cluster::connect(cluster_config, url).await?))
            }
            None => None,
        };
        let turn_server = start_turn_server(&mut config).await?;
        let state = Arc::new(GatewayState::new(config, identity, cluster));
        let cluster_tasks = state
            .cluster
            .as_ref()
            .map(|cluster| cluster::tasks::spawn(&state, cluster))
            .unwrap_or_default();
        let app = router(AppState {
            gateway: Arc::clone(&state),
            tls,
        });
        let server = listener::spawn(tcp, tls_config, app, Arc::clone(&state));
        let janitor = tokio::spawn(janitor(Arc::clone(&state)));
        info!(
            address = %local_addr,
            tls,
            did = %state.did,
            node = state.cluster.as_ref().map(|c| c.node_id()),
            "ioap gateway listening"
        );
        Ok(RunningGateway {
            state,
            local_addr,
            tls,
            server,
            janitor,
            cluster_tasks,
            turn_server,
        })
    }
}

/// Starts the embedded TURN server, if configured, and offers it to agents unless the
/// operator named TURN servers of their own.
async fn start_turn_server(config: &mut GatewayConfig) -> anyhow::Result<Option<Box<TurnServer>>> {
    let Some(embedded) = config.turn_server else {
        return Ok(None);
    };
    let secret = match &config.turn {
        Some(turn) => turn.secret.clone(),
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    };
    let server = TurnServer::start(embedded, &secret).await?;
    let turn = config.turn.get_or_insert_with(|| TurnConfig {
        urls: Vec::new(),
        secret,
        ttl: crate::turn::DEFAULT_TTL,
    });
    if turn.urls.is_empty() {
        turn.urls.push(server.url(embedded.relay_ip));
    }
    Ok(Some(Box::new(server)))
}

/// Raises the open-file limit to its hard maximum and, if the connection limit (plus the
/// reserve and the descriptors the process needs besides) still does not fit, lowers the
/// connection limit to what fits: running out of descriptors would stall `accept` for
/// everyone, `/health` included.
fn fit_descriptor_limit(config: &mut GatewayConfig) {
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return;
    };
    let limit = if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let turn = config.turn_server.map_or(0, |turn| turn.max_allocations);
    let fits = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_MARGIN + slots::RESERVE + turn)
        .max(1);
    if config.max_connections > fits {
        warn!(
            configured = config.max_connections,
            open_file_limit = limit,
            max_connections = fits,
            "the open-file limit cannot hold max_connections; lowered to fit"
        );
        config.max_connections = fits;
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

/// Periodic upkeep: drains metric samples (every tick), prunes idle rate-limit buckets, and
/// writes the aggregated refusal lines.
async fn janitor(state: Arc<GatewayState>) {
    let mut tick = tokio::time::interval(JANITOR_TICK);
    let mut last_prune = Instant::now();
    let mut last_refusal_log = Instant::now();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                state.refusals.log();
                return;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if now - last_prune >= PRUNE_INTERVAL || state.limits.over_bound() {
            state.limits.prune();
            last_prune = now;
        }
        metrics::upkeep(&state.metrics);
        if now - last_refusal_log >= refusals::LOG_INTERVAL {
            state.refusals.log();
            last_refusal_log = now;
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

    /// The UDP address of the embedded TURN server, if one runs.
    pub fn turn_server_addr(&self) -> Option<SocketAddr> {
        self.turn_server.as_ref().map(|turn| turn.local_addr())
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

    /// Drains for the configured drain time: `/health` answers 503 `draining` and new
    /// connections to `/ws` are refused while registered sessions go on. Returns early if
    /// shutdown is requested meanwhile. Call [`shutdown`](Self::shutdown) after it.
    pub async fn drain(&self) {
        let drain = self.state.config.drain_time;
        if drain.is_zero() {
            return;
        }
        info!(
            seconds = drain.as_secs_f64(),
            "draining: /health answers 503, new registrations are refused"
        );
        self.state.draining.cancel();
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            () = self.state.shutdown.cancelled() => {}
        }
    }

    /// Stops accepting, closes every session with 1001 (going away), and waits for them (at
    /// most 10 s) and for the server to stop.
    pub async fn shutdown(self) {
        info!("shutting down: closing every session with 1001");
        if let Some(turn) = &self.turn_server {
            turn.close().await;
        }
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
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "server task failed"),
            Err(_) => warn!("server did not stop within {SHUTDOWN_GRACE:?}"),
        }
        self.janitor.abort();
        for task in self.cluster_tasks {
            // They end at shutdown; the heartbeat removes the node's records first.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
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
