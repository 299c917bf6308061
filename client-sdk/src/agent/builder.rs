//! [`AgentBuilder`]: an agent's identity, gateway, engine, limits and what it serves, and
//! starting it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ioap_protocol::handshake::Advertisement;
use ioap_protocol::payload::{Intent, IntentReply};
use ioap_protocol::{Did, Identity, IdentityError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Agent, AgentError};
use crate::core::{AgentCore, LinkSettings, Refusals};
use crate::directory::Directory;
use crate::gateway::{ConnectionEvent, GatewayClient, GatewayClientConfig};
use crate::handlers::{CapabilityHandler, Handlers};
use crate::operations::{IdempotencyLimits, Operations};
use crate::rtc::{Engine, IceServer, RtcEngine, RtcSettings};
use crate::table::LinkTable;

/// Builds an [`Agent`].
#[derive(Debug)]
pub struct AgentBuilder {
    gateway: GatewayClientConfig,
    key_file: Option<PathBuf>,
    identity: Option<Identity>,
    rtc: RtcSettings,
    engine: Option<Arc<dyn RtcEngine>>,
    engine_kind: Option<Engine>,
    links: LinkSettings,
    handlers: Handlers,
    retry_first_connect: bool,
    ca_files: Vec<PathBuf>,
    idempotency: IdempotencyLimits,
    spans: Option<crate::trace_context::SpanSink>,
}

impl AgentBuilder {
    /// An agent for the gateway at `url` (`ws://…/ws` or `wss://…/ws`).
    pub fn new(url: impl Into<String>) -> Self {
        // The placeholder identity is replaced in `start` (generated, given, or loaded).
        let placeholder = Identity::from_seed(&[0; 32]);
        AgentBuilder {
            gateway: GatewayClientConfig::new(url, placeholder),
            key_file: None,
            identity: None,
            rtc: RtcSettings::default(),
            engine: None,
            engine_kind: None,
            links: LinkSettings::default(),
            handlers: Handlers::default(),
            retry_first_connect: false,
            ca_files: Vec::new(),
            idempotency: IdempotencyLimits::default(),
            spans: None,
        }
    }

    /// Uses this identity (default: a new one).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Loads the identity from this PKCS#8 PEM file, creating it (mode 0600) if it does not
    /// exist.
    pub fn key_file(mut self, path: impl AsRef<Path>) -> Self {
        self.key_file = Some(path.as_ref().to_owned());
        self
    }

    /// Adds a STUN/TURN server (default: none, host candidates only).
    pub fn ice_server(mut self, server: IceServer) -> Self {
        self.rtc.ice_servers.push(server);
        self
    }

    /// Gathers loopback candidates only (tests, agents on one host).
    pub fn loopback_only(mut self, loopback_only: bool) -> Self {
        self.rtc.loopback_only = loopback_only;
        self
    }

    /// Replaces the WebRTC settings (ICE servers, timeouts).
    pub fn rtc_settings(mut self, settings: RtcSettings) -> Self {
        self.rtc = settings;
        self
    }

    /// Uses this WebRTC engine, built with the [`rtc_settings`](Self::rtc_settings) (default:
    /// the one `IOAP_ENGINE` names, else [`Engine::WebrtcRs`]).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine_kind = Some(engine);
        self
    }

    /// Uses an engine of the caller's own (it takes precedence over [`engine`](Self::engine)).
    pub fn rtc_engine(mut self, engine: Arc<dyn RtcEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Replaces the link settings (setup timeout, heartbeat, bounds).
    pub fn link_settings(mut self, settings: LinkSettings) -> Self {
        self.links = settings;
        self
    }

    /// The largest message this agent sends or takes on a link, in bytes (default 16 MiB, at
    /// least 64 KiB): EXEC arguments, results and parts and INTENTs over 64 KiB travel in
    /// CHUNKs to peers that take them (PROTOCOL_DESIGN.md §11.6); larger ones are refused with
    /// TOO_LARGE. Shorthand for [`LinkLimits::max_message_bytes`](crate::LinkLimits).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.links.limits = self.links.limits.max_message_bytes(bytes);
        self
    }

    /// When links may travel over the gateway instead of a direct WebRTC path
    /// ([`GatewayRelay`](crate::GatewayRelay); default: fallback when ICE finds no path).
    pub fn gateway_relay(mut self, mode: crate::GatewayRelay) -> Self {
        self.links.gateway_relay = mode;
        self
    }

    /// Changes the gateway connection settings (TLS, reconnection delays, expected DID).
    pub fn gateway_settings(mut self, change: impl FnOnce(&mut GatewayClientConfig)) -> Self {
        change(&mut self.gateway);
        self
    }

    /// Offers a capability (advertised at registration).
    pub fn capability(mut self, capability: CapabilityHandler) -> Self {
        self.handlers.insert(capability);
        self
    }

    /// Offers several capabilities.
    pub fn capabilities(
        mut self,
        capabilities: impl IntoIterator<Item = CapabilityHandler>,
    ) -> Self {
        for capability in capabilities {
            self.handlers.insert(capability);
        }
        self
    }

    /// Accepts grant chains rooted at `issuer` for restricted capabilities, besides chains
    /// this agent issued itself (PROTOCOL_DESIGN.md §11.9). Repeatable.
    pub fn trust_grants_from(mut self, issuer: Did) -> Self {
        self.handlers.trust_grants_from(issuer);
        self
    }

    /// How many idempotency keys this agent holds as a callee, and for how long
    /// (PROTOCOL_DESIGN.md §11.10; default [`IdempotencyLimits::default`]).
    pub fn idempotency_limits(mut self, limits: IdempotencyLimits) -> Self {
        self.idempotency = limits;
        self
    }

    /// Also exports the span of every call this agent makes or serves with `exporter`
    /// (PROTOCOL_DESIGN.md §11.8; OTLP over HTTP).
    #[cfg(feature = "otlp")]
    pub fn export_spans(mut self, exporter: &crate::otlp::OtlpExporter) -> Self {
        self.spans = Some(exporter.sink());
        self
    }

    /// Answers INTENTs with `handler` (default: every intent declined).
    pub fn on_intent<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Did, Intent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IntentReply> + Send + 'static,
    {
        self.handlers.set_intent(handler);
        self
    }

    /// Whether the gateway's `/agents` lists this agent (default: yes).
    pub fn listed(mut self, listed: bool) -> Self {
        self.gateway.advertisement.listed = listed;
        self
    }

    /// Starts the agent: it connects, registers and re-registers in the background. Must be
    /// called inside a Tokio runtime.
    pub fn start(mut self) -> Result<Agent, AgentError> {
        let identity = match (self.identity.take(), &self.key_file) {
            (Some(identity), _) => identity,
            (None, Some(path)) => load_or_create(path)?,
            (None, None) => Identity::generate()?,
        };
        if self.gateway.tls.is_none() || !self.ca_files.is_empty() {
            self.gateway.tls = Some(crate::trust::client_config(&self.ca_files)?);
        }
        if self.rtc.loopback_candidates.is_none() {
            self.rtc.loopback_candidates = Some(crate::rtc::gateway_is_local(&self.gateway.url));
        }
        let engine = match self.engine.take() {
            Some(engine) => engine,
            None => self
                .engine_kind
                .map_or_else(Engine::from_env, Ok)
                .map_err(AgentError::Engine)?
                .build(&self.rtc),
        };
        let directory = Directory::new(&self.gateway.url, self.gateway.tls.clone())?
            .with_alternates(&self.gateway.alternate_urls)?;
        self.gateway.identity = identity.clone();
        self.gateway.advertisement = Advertisement {
            capabilities: self.handlers.advertised(),
            listed: self.gateway.advertisement.listed,
        };
        let (gateway, streams) = GatewayClient::start(self.gateway);
        let core = Arc::new(AgentCore {
            did: identity.did(),
            identity,
            gateway,
            engine,
            handlers: self.handlers,
            links: LinkTable::new(self.links.max_links),
            settings: self.links,
            refusals: Refusals::default(),
            heartbeats_sent: AtomicU64::new(0),
            operations: std::sync::Mutex::new(Operations::new(self.idempotency)),
            spans: self.spans,
            verified_chains: std::sync::Mutex::default(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        core.tasks
            .spawn(route_signaling(Arc::clone(&core), streams.inbound));
        Ok(Agent {
            core,
            directory,
            events: Some(streams.events),
        })
    }

    /// Another gateway of the same cluster to register with when the current one is lost or
    /// cannot be reached (repeatable; tried in the order given, after the builder's URL).
    /// The REGISTER audience is always the URL dialed.
    pub fn alternate_gateway(mut self, url: impl Into<String>) -> Self {
        self.gateway.alternate_urls.push(url.into());
        self
    }

    /// Ping the gateway (a WebSocket ping) after `quiet` without hearing from it, and give it
    /// up (reconnect, to the next gateway if any) when nothing arrives within `timeout` of it
    /// (defaults 10 s and 5 s: a hung gateway is left within 15 s).
    pub fn gateway_keepalive(mut self, quiet: Duration, timeout: Duration) -> Self {
        self.gateway.keepalive = quiet;
        self.gateway.keepalive_timeout = timeout;
        self
    }

    /// Also trusts the CA certificate(s) in this PEM file for `wss://` and `https://` (a
    /// private CA, a test certificate); the webpki roots and the platform's trust store
    /// (`SSL_CERT_FILE`, `SSL_CERT_DIR` honoured) stay trusted.
    pub fn ca_cert(mut self, path: impl AsRef<Path>) -> Self {
        self.ca_files.push(path.as_ref().to_owned());
        self
    }

    /// Whether [`connect`](Self::connect) retries a failed first attempt until the handshake
    /// timeout (default: no — it fails at once with the attempt's cause). Either way, once
    /// registered the agent reconnects on its own.
    pub fn retry_first_connect(mut self, retry: bool) -> Self {
        self.retry_first_connect = retry;
        self
    }

    /// [`start`](Self::start), then waits until registered: fails with the first attempt's
    /// cause ([`AgentError::Connect`]) as soon as it is known, or, with
    /// [`retry_first_connect`](Self::retry_first_connect), after the handshake timeout.
    pub async fn connect(self) -> Result<Agent, AgentError> {
        let wait = self.gateway.handshake_timeout;
        let retry = self.retry_first_connect;
        let url = self.gateway.url.clone();
        let gateways = 1 + self.gateway.alternate_urls.len();
        let mut failures = 0;
        let mut agent = self.start()?;
        let mut events = agent.events.take();
        let mut last = None;
        let registered = tokio::time::timeout(wait, async {
            loop {
                let event = async {
                    match events.as_mut() {
                        Some(events) => events.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    registered = agent.registered() => return registered.is_some(),
                    event = event => match event {
                        Some(ConnectionEvent::RegistrationFailed { cause, .. }) => {
                            failures += 1;
                            // Fail fast once every gateway has failed once; report the first.
                            let fail_now = !retry && failures >= gateways;
                            if last.is_none() || retry {
                                last = Some(cause);
                            }
                            if fail_now {
                                return false;
                            }
                        }
                        Some(_) => {}
                        None => events = None,
                    },
                }
            }
        })
        .await
        .unwrap_or(false);
        agent.events = events;
        if registered {
            return Ok(agent);
        }
        agent.close().await;
        Err(match (retry, last) {
            (false, Some(cause)) => AgentError::Connect { url, cause },
            (_, last) => AgentError::NotRegistered {
                url,
                after: wait,
                last,
            },
        })
    }
}

fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
    if path.exists() {
        return Identity::load(path);
    }
    let identity = Identity::generate()?;
    identity.save(path, false)?;
    Ok(identity)
}

/// Hands the gateway's signaling to the link table until the agent stops.
async fn route_signaling(
    core: Arc<AgentCore>,
    mut inbound: mpsc::Receiver<ioap_protocol::Envelope>,
) {
    loop {
        tokio::select! {
            () = core.stop.cancelled() => break,
            envelope = inbound.recv() => match envelope {
                Some(envelope) => crate::driver::route(&core, Box::new(envelope)),
                None => break,
            },
        }
    }
}
