//! The gateway connection: registration, automatic reconnection with exponential backoff and
//! jitter, re-registration, and verified delivery of what the gateway relays.
//!
//! Every incoming envelope is decoded, its signature verified under its `from`, its `to`
//! checked to be this agent, and its `(from, id)` and timestamp checked by a replay guard,
//! before it is delivered. Failures are counted and logged, never delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use ioap_protocol::handshake::Advertisement;
use ioap_protocol::payload::{Registered, Unregister};
use ioap_protocol::{
    Body, Did, Envelope, ErrorCode, Identity, MessageId, ReceivedEnvelope, ReplayGuard, Timestamp,
};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::connect_error::ConnectError;
use crate::dial::{Ws, connect};
use crate::keepalive::{GatewayKeepalive, Keepalive};
use crate::rtc::IceServer;

/// Outgoing frames waiting for the connection.
const OUTBOUND_QUEUE: usize = 256;
/// Records of gateway-relayed links waiting to be written, apart from signaling (whose queue
/// they must never fill); senders wait for room.
const RELAY_QUEUE: usize = 64;
/// Connection events kept for an embedder that does not read them.
const EVENT_QUEUE: usize = 64;
/// How long closing waits for the gateway to confirm UNREGISTER.
const UNREGISTER_GRACE: Duration = Duration::from_secs(2);
/// A registered session that lasted this long is followed, once lost, by the next gateway at
/// once; a shorter one waits the backoff delay first.
const STABLE_SESSION: Duration = Duration::from_secs(1);
/// Most ICE servers taken from one REGISTERED.
const MAX_OFFERED_ICE_SERVERS: usize = 8;
/// Registering again for fresh credentials happens at most this often.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Verified envelopes waiting for the agent.
const INBOUND_QUEUE: usize = 1024;

/// How to reach and register with a gateway.
#[derive(Debug, Clone)]
pub struct GatewayClientConfig {
    /// `ws://…/ws` or `wss://…/ws`: the first gateway tried. The REGISTER audience is always
    /// the URL dialed.
    pub url: String,
    /// Further gateways of the same cluster. A failed attempt moves on to the next URL at
    /// once, and so does a lost connection; the backoff delay is waited only when every URL
    /// has failed in a row.
    pub alternate_urls: Vec<String>,
    /// The agent's identity.
    pub identity: Identity,
    /// Capabilities and listing advertised at every (re-)registration.
    pub advertisement: Advertisement,
    /// Refuse a gateway that is not this DID.
    pub expected_gateway: Option<Did>,
    /// TLS client configuration for `wss://` (default: the webpki roots).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed for connect + CHALLENGE + REGISTER + REGISTERED.
    pub handshake_timeout: Duration,
    /// First reconnection delay.
    pub reconnect_min_delay: Duration,
    /// Longest reconnection delay.
    pub reconnect_max_delay: Duration,
    /// After this long without a frame from the gateway, ping it (a WebSocket ping, §10).
    pub keepalive: Duration,
    /// A gateway that sends nothing within this of the ping is given up (a hung process, a
    /// dead path): the client reconnects, to the next URL if there is one.
    pub keepalive_timeout: Duration,
}

impl GatewayClientConfig {
    /// Defaults: 10 s handshake, reconnect from 100 ms up to 30 s with jitter, ping after 10 s
    /// of quiet and give up 5 s later.
    pub fn new(url: impl Into<String>, identity: Identity) -> Self {
        GatewayClientConfig {
            url: url.into(),
            alternate_urls: Vec::new(),
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            identity,
            advertisement: Advertisement::default(),
            expected_gateway: None,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(30),
        }
    }
}

/// The connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting or waiting to reconnect.
    Connecting,
    /// Registered with the gateway of this DID.
    Registered(Box<Did>),
    /// Closed for good (after [`GatewayClient::close`]).
    Closed,
}

/// A change of connection state, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Registered (again) with the gateway.
    Registered {
        /// The gateway's DID.
        gateway: Did,
        /// The URL dialed.
        url: String,
    },
    /// The connection ended; the client will reconnect.
    Disconnected {
        /// The close code the gateway sent, if any.
        close_code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
    /// One connection attempt failed before registration (the client will retry).
    RegistrationFailed {
        /// The URL dialed.
        url: String,
        /// Why, typed.
        cause: ConnectError,
        /// The code of the gateway's ERROR (e.g. `RATE_LIMITED`, `UNAUTHORIZED`), or
        /// `TIMEOUT` when the handshake ran out of time; `None` for transport failures.
        code: Option<ErrorCode>,
        /// The close code, when the gateway closed without an ERROR (e.g. 1013 at its
        /// connection limit).
        close_code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
    /// Waiting before the next attempt.
    Reconnecting {
        /// The wait.
        delay: Duration,
    },
    /// Closed for good.
    Closed,
}

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The envelope could not be signed (it breaks a protocol rule).
    #[error(transparent)]
    Encode(#[from] ioap_protocol::EncodeError),
    /// The client is closed.
    #[error("the gateway client is closed")]
    Closed,
    /// The outgoing queue is full.
    #[error("the outgoing queue to the gateway is full")]
    QueueFull,
}

/// A connection to a gateway that keeps itself registered.
#[derive(Debug)]
pub struct GatewayClient {
    identity: Identity,
    offered: Arc<std::sync::RwLock<Vec<IceServer>>>,
    outbound: mpsc::Sender<String>,
    relay_outbound: mpsc::Sender<String>,
    state: watch::Receiver<ConnectionState>,
    stop: CancellationToken,
    rejected: Arc<AtomicU64>,
}

/// What the client delivers: verified envelopes and connection events.
#[derive(Debug)]
pub struct GatewayStreams {
    /// Verified envelopes from the gateway and relayed from other agents.
    pub inbound: mpsc::Receiver<Envelope>,
    /// Connection state changes (at most 64 unread; while the queue is full, new events are
    /// dropped, and [`GatewayClient::state`] stays authoritative).
    pub events: mpsc::Receiver<ConnectionEvent>,
}

impl GatewayClient {
    /// Starts connecting (in the background, with retries).
    pub fn start(config: GatewayClientConfig) -> (GatewayClient, GatewayStreams) {
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (relay_outbound, relay_outbound_rx) = mpsc::channel(RELAY_QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let stop = CancellationToken::new();
        let rejected = Arc::new(AtomicU64::new(0));
        let identity = config.identity.clone();
        let offered = Arc::new(std::sync::RwLock::new(Vec::new()));
        let runner = Runner {
            offered: Arc::clone(&offered),
            config,
            outbound: outbound_rx,
            relay_outbound: relay_outbound_rx,
            inbound: inbound_tx,
            events: events_tx,
            state: state_tx,
            stop: stop.clone(),
            rejected: Arc::clone(&rejected),
            replay: ReplayGuard::default(),
        };
        tokio::spawn(runner.run());
        (
            GatewayClient {
                identity,
                offered,
                outbound,
                relay_outbound,
                state,
                stop,
                rejected,
            },
            GatewayStreams { inbound, events },
        )
    }

    /// This agent's DID.
    pub fn did(&self) -> Did {
        self.identity.did()
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// Waits until registered; returns the gateway's DID (`None` once closed).
    pub async fn registered(&self) -> Option<Did> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                ConnectionState::Registered(gateway) => return Some(**gateway),
                ConnectionState::Closed => return None,
                ConnectionState::Connecting => {}
            }
            state.changed().await.ok()?;
        }
    }

    /// The STUN/TURN servers the gateway offered at the last registration (with fresh
    /// credentials; none when it offers none).
    pub fn offered_ice_servers(&self) -> Vec<IceServer> {
        self.offered
            .read()
            .map(|servers| servers.clone())
            .unwrap_or_default()
    }

    /// Incoming envelopes refused so far (bad signature, wrong recipient, replay, malformed).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Signs and queues an envelope to `to` (waiting for room in the queue); returns its id.
    pub async fn send(
        &self,
        to: Did,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<MessageId, SendError> {
        self.sign_and_queue(&self.outbound, to, body, correlation)
            .await
    }

    async fn sign_and_queue(
        &self,
        queue: &mpsc::Sender<String>,
        to: Did,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<MessageId, SendError> {
        let (id, wire) = self.sign(to, body, correlation)?;
        queue.send(wire).await.map_err(|_| SendError::Closed)?;
        Ok(id)
    }

    /// Signs and queues a record of a gateway-relayed link (PROTOCOL_DESIGN.md §11.5) in the
    /// relay lane, written only while no signaling waits; waits for room.
    pub(crate) async fn send_relayed(
        &self,
        to: Did,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<MessageId, SendError> {
        self.sign_and_queue(&self.relay_outbound, to, body, correlation)
            .await
    }

    /// Signs and queues an envelope to `to` without waiting: fails with
    /// [`SendError::QueueFull`] while the queue is full (e.g. the gateway is unreachable).
    pub fn try_send(
        &self,
        to: Did,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<MessageId, SendError> {
        let (id, wire) = self.sign(to, body, correlation)?;
        self.outbound.try_send(wire).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => SendError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })?;
        Ok(id)
    }

    fn sign(
        &self,
        to: Did,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<(MessageId, String), SendError> {
        let mut envelope = Envelope::new(self.did(), Some(to), body, now());
        envelope.correlation_id = correlation;
        let id = envelope.id;
        Ok((id, envelope.sign(&self.identity)?.into_string()))
    }

    /// Starts closing: unregisters, closes the connection and stops reconnecting, in the
    /// background.
    pub fn begin_close(&self) {
        self.stop.cancel();
    }

    /// Unregisters, closes the connection and stops reconnecting; returns once closed.
    pub async fn close(&self) {
        self.stop.cancel();
        let mut state = self.state.clone();
        while *state.borrow_and_update() != ConnectionState::Closed {
            if state.changed().await.is_err() {
                break;
            }
        }
    }
}

impl Drop for GatewayClient {
    /// Dropping the client stops its task (it unregisters in the background).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// The background task.
struct Runner {
    config: GatewayClientConfig,
    offered: Arc<std::sync::RwLock<Vec<IceServer>>>,
    outbound: mpsc::Receiver<String>,
    relay_outbound: mpsc::Receiver<String>,
    inbound: mpsc::Sender<Envelope>,
    events: mpsc::Sender<ConnectionEvent>,
    state: watch::Sender<ConnectionState>,
    stop: CancellationToken,
    rejected: Arc<AtomicU64>,
    replay: ReplayGuard,
}

/// How a registered connection ended.
enum End {
    Stopped,
    Lost(Option<u16>, String),
}

impl Runner {
    async fn run(mut self) {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.reconnect_min_delay)
            .with_max_delay(self.config.reconnect_max_delay)
            .with_jitter()
            .without_max_times();
        let mut delays = backoff.build();
        let urls: Vec<String> = std::iter::once(self.config.url.clone())
            .chain(self.config.alternate_urls.iter().cloned())
            .collect();
        let mut at = 0;
        let mut failed_in_a_row = 0;
        loop {
            let url = &urls[at % urls.len()];
            let attempt = tokio::select! {
                () = self.stop.cancelled() => break,
                attempt = tokio::time::timeout(self.config.handshake_timeout, connect(&self.config, url)) => attempt,
            };
            match attempt {
                Ok(Ok((ws, gateway, registered))) => {
                    delays = backoff.build();
                    let refresh = self.take_offer(&registered);
                    failed_in_a_row = 0;
                    info!(did = %self.config.identity.did(), %gateway, %url, "registered with the gateway");
                    let _ = self
                        .state
                        .send(ConnectionState::Registered(Box::new(gateway)));
                    let _ = self.events.try_send(ConnectionEvent::Registered {
                        gateway,
                        url: url.clone(),
                    });
                    let registered_at = Instant::now();
                    match self.serve(ws, gateway, refresh).await {
                        End::Stopped => break,
                        End::Lost(close_code, reason) => {
                            warn!(?close_code, %reason, %url, "gateway connection lost");
                            let _ = self.state.send(ConnectionState::Connecting);
                            let _ = self
                                .events
                                .try_send(ConnectionEvent::Disconnected { close_code, reason });
                            // A session that lived is followed at once by the next gateway; one
                            // that ended at once (replaced by a twin, refused) waits the backoff,
                            // so two processes of one identity cannot ping-pong in a tight loop.
                            if urls.len() > 1 && registered_at.elapsed() >= STABLE_SESSION {
                                at += 1;
                                continue;
                            }
                        }
                    }
                }
                Ok(Err(cause)) => {
                    debug!(%cause, %url, "cannot register with the gateway");
                    self.attempt_failed(url, cause);
                    failed_in_a_row += 1;
                }
                Err(_) => {
                    debug!(%url, "gateway handshake timed out");
                    self.attempt_failed(url, ConnectError::Timeout(self.config.handshake_timeout));
                    failed_in_a_row += 1;
                }
            }
            at += 1;
            if failed_in_a_row % urls.len() != 0 {
                continue;
            }
            let delay = delays.next().unwrap_or(self.config.reconnect_max_delay);
            let _ = self
                .events
                .try_send(ConnectionEvent::Reconnecting { delay });
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        let _ = self.state.send(ConnectionState::Closed);
        let _ = self.events.try_send(ConnectionEvent::Closed);
    }

    /// Keeps the ICE servers REGISTERED offered; returns when to register again for fresh
    /// credentials (at 80 % of their lifetime).
    fn take_offer(&self, registered: &Registered) -> Option<Duration> {
        let servers: Vec<IceServer> = registered
            .ice_servers
            .iter()
            .take(MAX_OFFERED_ICE_SERVERS)
            .map(|offer| IceServer {
                urls: offer.urls.clone(),
                username: offer.username.clone().unwrap_or_default(),
                credential: offer.credential.clone().unwrap_or_default(),
            })
            .collect();
        if let Ok(mut offered) = self.offered.write() {
            *offered = servers;
        }
        registered
            .ice_servers_ttl_ms
            .filter(|_| !registered.ice_servers.is_empty())
            .map(|ttl| Duration::from_millis(ttl).mul_f64(0.8).max(MIN_REFRESH))
    }

    fn attempt_failed(&self, url: &str, cause: ConnectError) {
        let _ = self.events.try_send(ConnectionEvent::RegistrationFailed {
            url: url.to_owned(),
            code: cause.code(),
            close_code: cause.close_code(),
            reason: cause.to_string(),
            cause,
        });
    }

    /// Relays in both directions until the connection ends or the client stops.
    async fn serve(&mut self, mut ws: Ws, gateway: Did, refresh: Option<Duration>) -> End {
        let refresh_at = tokio::time::sleep(refresh.unwrap_or(Duration::from_secs(86_400 * 365)));
        tokio::pin!(refresh_at);
        let mut keepalive = GatewayKeepalive::new(
            self.config.keepalive,
            self.config.keepalive_timeout,
            Instant::now(),
        );
        let mut ping_sequence = 0u64;
        loop {
            let check = tokio::time::sleep_until(keepalive.deadline().into());
            tokio::select! {
                () = self.stop.cancelled() => {
                    let bye = Envelope::new(self.config.identity.did(), Some(gateway),
                        Body::Unregister(Unregister { reason: Some("agent closing".into()) }), now())
                        .sign(&self.config.identity);
                    if let Ok(bye) = bye
                        && ws.send(Message::text(bye.into_string())).await.is_ok()
                    {
                        // The gateway answers UNREGISTER by closing (1000) after it has
                        // removed the agent: wait for that, briefly.
                        let _ = tokio::time::timeout(UNREGISTER_GRACE, async {
                            while let Some(Ok(frame)) = ws.next().await {
                                if matches!(frame, Message::Close(_)) {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                    let _ = tokio::time::timeout(UNREGISTER_GRACE, ws.close(None)).await;
                    return End::Stopped;
                }
                Some(wire) = self.outbound.recv() => {
                    if let Err(error) = ws.send(Message::text(wire)).await {
                        return End::Lost(None, error.to_string());
                    }
                }
                Some(wire) = self.relay_outbound.recv() => {
                    // Signaling queued before this record goes first: a RELAY_ACCEPT must
                    // precede the link's records, and signaling never waits behind them.
                    while let Ok(signal) = self.outbound.try_recv() {
                        if let Err(error) = ws.send(Message::text(signal)).await {
                            return End::Lost(None, error.to_string());
                        }
                    }
                    if let Err(error) = ws.send(Message::text(wire)).await {
                        return End::Lost(None, error.to_string());
                    }
                }
                () = &mut refresh_at, if refresh.is_some() => {
                    info!("registering again for fresh TURN credentials");
                    let _ = tokio::time::timeout(UNREGISTER_GRACE, ws.close(None)).await;
                    return End::Lost(None, "refreshing the gateway's TURN credentials".into());
                }
                () = check => match keepalive.poll(Instant::now()) {
                    Keepalive::Wait => {}
                    Keepalive::Ping => {
                        // A WebSocket ping, which every WebSocket endpoint answers with a pong
                        // (RFC 6455 §5.5.2): liveness needs no signature on either side (§10).
                        ping_sequence += 1;
                        let ping = Message::Ping(ping_sequence.to_be_bytes().to_vec().into());
                        if let Err(error) = ws.send(ping).await {
                            return End::Lost(None, error.to_string());
                        }
                    }
                    Keepalive::Dead => {
                        return End::Lost(None, format!(
                            "the gateway sent nothing for {:?} after a ping (hung or unreachable)",
                            self.config.keepalive_timeout
                        ));
                    }
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        keepalive.heard(Instant::now());
                        self.deliver(text.as_bytes(), gateway).await;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return End::Lost(code, reason);
                    }
                    Some(Ok(_)) => keepalive.heard(Instant::now()),
                    Some(Err(error)) => return End::Lost(None, error.to_string()),
                    None => return End::Lost(None, "connection closed".into()),
                },
            }
        }
    }

    /// Verifies an incoming frame and hands it to the agent; refusals are counted.
    async fn deliver(&mut self, bytes: &[u8], gateway: Did) {
        let me = self.config.identity.did();
        match self.verify(bytes, me) {
            Ok(envelope) => {
                if envelope.from == gateway {
                    match &envelope.body {
                        // An answer to a PING (this SDK pings with WebSocket pings): nothing to do.
                        Body::Pong(_) => return,
                        Body::Error(error) => {
                            debug!(code = %error.code, message = %error.message, "gateway error");
                        }
                        _ => {}
                    }
                }
                let _ = self.inbound.send(envelope).await;
            }
            Err(reason) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                debug!(reason, "incoming envelope refused");
            }
        }
    }

    fn verify(&mut self, bytes: &[u8], me: Did) -> Result<Envelope, &'static str> {
        let received = ReceivedEnvelope::decode(bytes).map_err(|_| "malformed")?;
        let envelope = received.into_verified().map_err(|_| "bad signature")?;
        if envelope.to.is_some_and(|to| to != me) {
            return Err("addressed to another agent");
        }
        self.replay
            .check(&envelope.from, &envelope.id, envelope.timestamp, now())
            .map_err(|_| "replayed or stale")?;
        Ok(envelope)
    }
}
