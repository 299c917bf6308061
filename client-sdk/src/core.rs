//! What an agent's tasks share: identity, gateway connection, WebRTC engine, handlers,
//! settings, the link table, and the cancellation and tracking of every task it spawns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ioap_protocol::{Did, Identity};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gateway::GatewayClient;
use crate::handlers::Handlers;
use crate::link::LinkLimits;
use crate::rtc::RtcEngine;
use crate::table::LinkTable;

/// How links are set up, kept alive and bounded.
///
/// ```
/// use std::time::Duration;
/// use ioap_client::{LinkLimits, LinkSettings};
/// let settings = LinkSettings::default()
///     .setup_timeout(Duration::from_secs(5))
///     .limits(LinkLimits::default().max_serving(16));
/// assert_eq!(settings.limits.max_serving, 16);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkSettings {
    /// OFFER sent (or received) → channel open and the peer's first PING verified.
    pub setup_timeout: Duration,
    /// On a link over the gateway relay (no transport of its own to notice a vanished peer):
    /// each open link is checked this often, and a PING goes out when we sent nothing else on
    /// it since the previous check (the link is idle).
    pub heartbeat_interval: Duration,
    /// On a link over the gateway relay: no message from the peer for this long, and the link
    /// is lost.
    pub link_timeout: Duration,
    /// On a WebRTC link the engine notices a vanished peer itself (ICE consent, within 5 s:
    /// PROTOCOL_DESIGN.md §11.3), so the signed PING is rarer: it measures the round trip and
    /// catches a peer whose transport answers while its agent does not.
    pub webrtc_heartbeat_interval: Duration,
    /// On a WebRTC link: no message from the peer for this long, and the link is lost.
    pub webrtc_link_timeout: Duration,
    /// Default deadline of EXEC (when no `timeout_ms` is given) and INTENT calls.
    pub call_timeout: Duration,
    /// Links (open or being set up) at once; OFFERs beyond this are ignored.
    pub max_links: usize,
    /// Per-link bounds.
    pub limits: LinkLimits,
    /// Whether links may travel over the gateway when no UDP path exists
    /// (PROTOCOL_DESIGN.md §11.5).
    pub gateway_relay: GatewayRelay,
    /// With [`GatewayRelay::Fallback`]: how long a direct attempt may take before the dialing
    /// side falls back to the gateway relay (sooner if ICE fails).
    pub relay_after: Duration,
    /// Links list only the FEATURES of protocol 1.5 (tests of mixed versions).
    pub(crate) as_of_1_5: bool,
}

/// When a link travels over the gateway instead of a direct WebRTC path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GatewayRelay {
    /// Direct first; the dialing side falls back to the gateway relay when ICE fails or the
    /// direct attempt has not opened within [`LinkSettings::relay_after`].
    #[default]
    Fallback,
    /// Direct only: an attempt whose ICE fails ends with CONNECTION_REFUSED; RELAY_OPENs from
    /// peers are ignored.
    Never,
    /// Dial over the gateway relay at once (networks known to block UDP).
    Always,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            setup_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            link_timeout: Duration::from_secs(5),
            webrtc_heartbeat_interval: Duration::from_secs(15),
            webrtc_link_timeout: Duration::from_secs(45),
            call_timeout: Duration::from_secs(30),
            max_links: 1024,
            limits: LinkLimits::default(),
            gateway_relay: GatewayRelay::default(),
            relay_after: Duration::from_secs(2),
            as_of_1_5: false,
        }
    }
}

impl LinkSettings {
    /// For tests of mixed versions: links list only the FEATURES a 1.5 agent lists (no
    /// `chunk_digest`), so large messages either way are signed as §5 says.
    #[cfg(feature = "test-hooks")]
    pub fn as_of_1_5(mut self) -> Self {
        self.as_of_1_5 = true;
        self
    }

    /// Sets [`setup_timeout`](Self::setup_timeout).
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.setup_timeout = timeout;
        self
    }

    /// Sets [`heartbeat_interval`](Self::heartbeat_interval).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets [`link_timeout`](Self::link_timeout).
    pub fn link_timeout(mut self, timeout: Duration) -> Self {
        self.link_timeout = timeout;
        self
    }

    /// Sets [`webrtc_heartbeat_interval`](Self::webrtc_heartbeat_interval).
    pub fn webrtc_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.webrtc_heartbeat_interval = interval;
        self
    }

    /// Sets [`webrtc_link_timeout`](Self::webrtc_link_timeout).
    pub fn webrtc_link_timeout(mut self, timeout: Duration) -> Self {
        self.webrtc_link_timeout = timeout;
        self
    }

    /// Sets [`call_timeout`](Self::call_timeout).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets [`max_links`](Self::max_links).
    pub fn max_links(mut self, links: usize) -> Self {
        self.max_links = links;
        self
    }

    /// Sets [`limits`](Self::limits).
    pub fn limits(mut self, limits: LinkLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`gateway_relay`](Self::gateway_relay).
    pub fn gateway_relay(mut self, mode: GatewayRelay) -> Self {
        self.gateway_relay = mode;
        self
    }

    /// Sets [`relay_after`](Self::relay_after).
    pub fn relay_after(mut self, wait: Duration) -> Self {
        self.relay_after = wait;
        self
    }
}

/// Counters of what an agent refused.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    link_messages: AtomicU64,
}

impl Refusals {
    pub(crate) fn link_message(&self) {
        self.link_messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn link_messages(&self) -> u64 {
        self.link_messages.load(Ordering::Relaxed)
    }
}

/// The shared state of one agent.
pub(crate) struct AgentCore {
    pub(crate) identity: Identity,
    pub(crate) did: Did,
    pub(crate) gateway: GatewayClient,
    pub(crate) engine: Arc<dyn RtcEngine>,
    pub(crate) handlers: Handlers,
    pub(crate) settings: LinkSettings,
    pub(crate) links: LinkTable,
    pub(crate) refusals: Refusals,
    /// Heartbeat PINGs sent on idle links.
    pub(crate) heartbeats_sent: AtomicU64,
    /// Where ended calls' spans go, when an exporter is set (the `otlp` feature).
    pub(crate) spans: Option<crate::trace_context::SpanSink>,
    /// Grant chains verified already (signatures and derivation).
    pub(crate) verified_chains: std::sync::Mutex<crate::access::VerifiedChains>,
    /// The idempotency keys held as a callee.
    pub(crate) operations: std::sync::Mutex<crate::operations::Operations>,
    /// Cancelled when the agent closes or is dropped.
    pub(crate) stop: CancellationToken,
    /// Every task the agent spawns (link drivers, handlers, the signaling router).
    pub(crate) tasks: TaskTracker,
}
