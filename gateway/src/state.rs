//! State shared by every connection of one gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use ioap_protocol::payload::ErrorPayload;
use ioap_protocol::{Body, Did, ErrorCode, Identity, MessageId, Timestamp};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::config::GatewayConfig;
use crate::limits::Limits;
use crate::listener::ConnectionSlots;
use crate::metrics;
use crate::refusals::Refusals;
use crate::registry::Registry;

/// Everything a connection handler needs.
#[derive(Debug)]
pub struct GatewayState {
    /// The configuration it started with.
    pub config: GatewayConfig,
    /// The gateway's identity.
    pub identity: Identity,
    /// Its DID.
    pub did: Did,
    /// Registered agents.
    pub registry: Registry,
    /// Rate limiters.
    pub limits: Limits,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// Cancelled when the gateway starts draining (before it shuts down).
    pub draining: CancellationToken,
    /// Every session task, so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Open connections, counted from accept.
    pub slots: Arc<ConnectionSlots>,
    /// Refusals of the current log interval.
    pub refusals: Refusals,
    next_session: AtomicU64,
    /// When the gateway started.
    pub started: Instant,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// This gateway's cluster membership, in cluster mode.
    pub cluster: Option<Arc<Cluster>>,
}

impl GatewayState {
    /// State for a gateway with this configuration and identity.
    pub fn new(config: GatewayConfig, identity: Identity, cluster: Option<Arc<Cluster>>) -> Self {
        GatewayState {
            limits: Limits::new(&config),
            slots: ConnectionSlots::new(config.max_connections, config.max_connections_per_ip),
            refusals: Refusals::default(),
            did: identity.did(),
            identity,
            config,
            registry: Registry::new(),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            sessions: TaskTracker::new(),
            next_session: AtomicU64::new(1),
            started: Instant::now(),
            metrics: metrics::install(),
            cluster,
        }
    }

    /// The wall-clock time now.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// A fresh session number.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// A message from the gateway, signed.
    pub fn message(&self, to: Option<Did>, body: Body, correlation: Option<MessageId>) -> String {
        let mut envelope = ioap_protocol::Envelope::new(self.did, to, body, self.now());
        envelope.correlation_id = correlation;
        envelope
            .sign(&self.identity)
            .expect("the gateway's own messages are always valid")
            .into_string()
    }

    /// A signed ERROR, counted in the metrics.
    pub fn error(
        &self,
        to: Option<Did>,
        code: ErrorCode,
        message: impl Into<String>,
        correlation: Option<MessageId>,
    ) -> String {
        metrics::error_sent(code);
        let mut message: String = message.into();
        truncate(&mut message, 512);
        self.message(
            to,
            Body::Error(ErrorPayload::new(code, message)),
            correlation,
        )
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
