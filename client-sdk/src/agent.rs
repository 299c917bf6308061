//! [`Agent`]: an identity registered with a gateway, serving its capabilities and INTENTs to
//! peers, and reaching other agents by DID over WebRTC links.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ioap_protocol::{Did, IdentityError};
use tokio::sync::mpsc;

use crate::connect_error::ConnectError;
use crate::core::AgentCore;
use crate::directory::{Directory, DirectoryError};
use crate::gateway::{ConnectionEvent, ConnectionState};
use crate::peer::Peer;

mod builder;

pub use builder::AgentBuilder;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The identity could not be generated, loaded or saved.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// The first attempt to register failed (and the builder does not retry it).
    #[error("cannot register with the gateway at {url}: {cause}")]
    Connect {
        /// The gateway URL.
        url: String,
        /// Why.
        #[source]
        cause: ConnectError,
    },
    /// The gateway did not register the agent within the handshake timeout (retrying).
    #[error("not registered with the gateway at {url} within {after:?}{}", last.as_ref().map(|c| format!("; last attempt: {c}")).unwrap_or_default())]
    NotRegistered {
        /// The gateway URL.
        url: String,
        /// How long it tried.
        after: Duration,
        /// Why the last attempt failed, if one did.
        last: Option<ConnectError>,
    },
    /// A CA certificate file given with [`AgentBuilder::ca_cert`] could not be used.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    /// The directory's URL could not be derived.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// `IOAP_ENGINE` names no WebRTC engine.
    #[error("{0}")]
    Engine(String),
}

/// An agent: registered with a gateway, answering peers, calling them by DID.
///
/// [`Agent::close`] closes every link, unregisters, and waits for all of it. Dropping the agent
/// does the same in the background: its links end, it unregisters from the gateway, and any
/// [`Peer`] handle that outlives it fails every call with [`CallError::ShuttingDown`] — an
/// agent never stays registered answering nobody.
///
/// # Connecting
///
/// [`AgentBuilder::connect`] fails at once with the first attempt's cause,
/// [`AgentError::Connect`] holding a [`ConnectError`](crate::ConnectError): `Unreachable`
/// (connection refused, no route), `BadUrl` (`http://…`: use `ws://` or `wss://`),
/// `Http { status }` (404: is the path `/ws`?), `Tls` (a plain port behind `wss://`, or the
/// certificate problem such as UnknownIssuer), `Refused { code, message }` (the gateway's
/// ERROR: UNAUTHORIZED, WRONG_AUDIENCE behind a proxy without `--public-url`, RATE_LIMITED…),
/// `Closed` (e.g. 1013 at the gateway's connection limit), `Timeout`, `Protocol` (not an
/// ioap gateway). [`AgentBuilder::retry_first_connect`] retries instead, until the handshake
/// timeout. `wss://` trusts the webpki roots, the platform's store (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` honoured) and every [`AgentBuilder::ca_cert`].
///
/// # Staying registered
///
/// Once registered, the agent reconnects on its own with exponential backoff and jitter
/// (100 ms up to 30 s) and registers again with the same capabilities; open links do not need
/// the gateway and keep working while it is down. With the gateways of a cluster
/// ([`AgentBuilder::alternate_gateway`]) a lost or unreachable gateway is left for the next at
/// once. A gateway that hangs is noticed too: the agent pings it (a WebSocket ping) after 10 s
/// of quiet and leaves it when nothing arrives within 5 s
/// ([`AgentBuilder::gateway_keepalive`]). Every failed attempt is a
/// [`ConnectionEvent`](crate::ConnectionEvent) ([`Agent::take_events`]) naming the gateway's
/// code or close code.
///
/// # Serving
///
/// Each [`CapabilityHandler`](crate::CapabilityHandler) runs with its request's deadline
/// ([`ExecCall::deadline`](crate::ExecCall::deadline)); calls it makes inherit that deadline.
/// A handler may fail with HANDLER_ERROR or INVALID_ARGS; a panic is answered HANDLER_ERROR.
/// At most 64 requests are served per link at once (more are answered TOO_MANY_REQUESTS), and
/// a streaming handler's [`Parts::send`](crate::Parts::send) waits while its caller has no
/// credit. A caller's CANCEL drops the handler's future at once.
///
/// # Bounds
///
/// Links per agent (1,024; further OFFERs are ignored), signaling queued per link (64), calls
/// in flight (256) and requests served (64) per link, unread parts per streamed call (the
/// window, 32), the gateway connection's queues (256 out, 1,024 in, 64 events). Every
/// envelope a peer sends is verified; what fails is dropped and counted
/// ([`Agent::refused_messages`]).
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let gateway = ioap_gateway::Gateway::start(ioap_gateway::GatewayConfig::ephemeral()).await?;
/// # let url = gateway.ws_url();
/// use ioap_client::{Agent, CapabilityHandler};
/// let agent = Agent::builder(&url) // ws://…/ws of a gateway
///     .loopback_only(true)
///     .capability(CapabilityHandler::new("echo", |args| async move { Ok(args) }))
///     .connect()
///     .await?;
/// assert!(agent.did().to_string().starts_with("did:key:z6Mk"));
/// agent.close().await;
/// # gateway.shutdown().await;
/// # Ok(()) }
/// ```
///
/// [`CallError::ShuttingDown`]: crate::CallError::ShuttingDown
pub struct Agent {
    core: Arc<AgentCore>,
    directory: Directory,
    events: Option<mpsc::Receiver<ConnectionEvent>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("did", &self.core.did)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// A builder for the gateway at `url`.
    pub fn builder(url: impl Into<String>) -> AgentBuilder {
        AgentBuilder::new(url)
    }

    /// This agent's DID.
    pub fn did(&self) -> Did {
        self.core.did
    }

    /// Waits until registered; returns the gateway's DID (`None` once closed).
    pub async fn registered(&self) -> Option<Did> {
        self.core.gateway.registered().await
    }

    /// The gateway connection's state.
    pub fn connection_state(&self) -> ConnectionState {
        self.core.gateway.state()
    }

    /// The gateway connection's events (once; later calls return `None`).
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<ConnectionEvent>> {
        self.events.take()
    }

    /// The agent `did`. The link is opened on first use ([`Peer::connect`] opens it now).
    pub fn peer(&self, did: Did) -> Peer {
        Peer::new(Arc::clone(&self.core), did)
    }

    /// The gateway's directory of online agents.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Links open now.
    pub fn open_links(&self) -> usize {
        self.core.links.open_links()
    }

    /// The STUN/TURN servers the gateway offered at the last registration, with their
    /// short-lived credentials (used for links besides the configured ones).
    pub fn offered_ice_servers(&self) -> Vec<crate::IceServer> {
        self.core.gateway.offered_ice_servers()
    }

    /// Tries every STUN/TURN server this agent would use (configured and offered): a STUN
    /// binding, a TURN allocation with its credentials, 3 s each. A server that cannot be
    /// used shows here at once, rather than as links that fail later.
    pub async fn check_ice_servers(&self) -> Vec<crate::rtc::IceServerCheck> {
        let offered = self.core.gateway.offered_ice_servers();
        self.core.engine.check_ice_servers(&offered).await
    }

    /// Messages refused so far: from the gateway (bad signature, wrong recipient, replay) and
    /// on links (bad signature, wrong sender, replay, malformed). Never delivered.
    pub fn refused_messages(&self) -> u64 {
        self.core.gateway.rejected() + self.core.refusals.link_messages()
    }

    /// Heartbeat PINGs sent so far. A link PINGs only while idle: traffic of ours (calls,
    /// replies, PONGs) since the previous heartbeat tick stands in for it.
    pub fn heartbeats_sent(&self) -> u64 {
        self.core.heartbeats_sent.load(Ordering::Relaxed)
    }

    /// Closes every link (calls in flight fail with SHUTTING_DOWN), unregisters, and returns
    /// once every task the agent started has ended.
    pub async fn close(self) {
        self.core.stop.cancel();
        self.core.tasks.close();
        self.core.tasks.wait().await;
        self.core.gateway.close().await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.core.stop.cancel();
        self.core.tasks.close();
        self.core.gateway.begin_close();
    }
}
