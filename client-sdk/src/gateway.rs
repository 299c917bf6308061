//! The gateway connection: registration, automatic reconnection with exponential backoff and
//! jitter, re-registration, and verified delivery of what the gateway relays.
//!
//! Every incoming envelope is decoded, its signature verified under its `from`, its `to`
//! checked to be this agent, and its `(from, id)` and timestamp checked by a replay guard,
//! before it is delivered. Failures are counted and logged, never delivered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use ioap_protocol::handshake::{Advertisement, ClientHandshake};
use ioap_protocol::json::MAX_ENVELOPE_BYTES;
use ioap_protocol::payload::Unregister;
use ioap_protocol::{
    Body, Did, Envelope, ErrorCode, Identity, MessageId, ReceivedEnvelope, ReplayGuard,
    SUBPROTOCOL, Timestamp,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::connect_error::ConnectError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Outgoing frames waiting for the connection.
const OUTBOUND_QUEUE: usize = 256;
/// Connection events kept for an embedder that does not read them.
const EVENT_QUEUE: usize = 64;
/// How long closing waits for the gateway to confirm UNREGISTER.
const UNREGISTER_GRACE: Duration = Duration::from_secs(2);
/// Verified envelopes waiting for the agent.
const INBOUND_QUEUE: usize = 1024;
/// The WebSocket's read buffer (frames larger than it are still read whole). Small, because
/// signaling frames are about 2 KB and a load test holds thousands of connections.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// How to reach and register with a gateway.
#[derive(Debug, Clone)]
pub struct GatewayClientConfig {
    /// `ws://…/ws` or `wss://…/ws` (also the REGISTER audience).
    pub url: String,
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
}

impl GatewayClientConfig {
    /// Defaults: 10 s handshake, reconnect from 100 ms up to 30 s with jitter.
    pub fn new(url: impl Into<String>, identity: Identity) -> Self {
        GatewayClientConfig {
            url: url.into(),
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
    outbound: mpsc::Sender<String>,
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
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let stop = CancellationToken::new();
        let rejected = Arc::new(AtomicU64::new(0));
        let identity = config.identity.clone();
        let runner = Runner {
            config,
            outbound: outbound_rx,
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
                outbound,
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
        let (id, wire) = self.sign(to, body, correlation)?;
        self.outbound
            .send(wire)
            .await
            .map_err(|_| SendError::Closed)?;
        Ok(id)
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
    outbound: mpsc::Receiver<String>,
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
        loop {
            let attempt = tokio::select! {
                () = self.stop.cancelled() => break,
                attempt = tokio::time::timeout(self.config.handshake_timeout, connect(&self.config)) => attempt,
            };
            match attempt {
                Ok(Ok((ws, gateway))) => {
                    delays = backoff.build();
                    info!(did = %self.config.identity.did(), %gateway, "registered with the gateway");
                    let _ = self
                        .state
                        .send(ConnectionState::Registered(Box::new(gateway)));
                    let _ = self
                        .events
                        .try_send(ConnectionEvent::Registered { gateway });
                    match self.serve(ws, gateway).await {
                        End::Stopped => break,
                        End::Lost(close_code, reason) => {
                            warn!(?close_code, %reason, "gateway connection lost");
                            let _ = self.state.send(ConnectionState::Connecting);
                            let _ = self
                                .events
                                .try_send(ConnectionEvent::Disconnected { close_code, reason });
                        }
                    }
                }
                Ok(Err(cause)) => {
                    debug!(%cause, "cannot register with the gateway");
                    self.attempt_failed(cause);
                }
                Err(_) => {
                    debug!("gateway handshake timed out");
                    self.attempt_failed(ConnectError::Timeout(self.config.handshake_timeout));
                }
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

    fn attempt_failed(&self, cause: ConnectError) {
        let _ = self.events.try_send(ConnectionEvent::RegistrationFailed {
            code: cause.code(),
            close_code: cause.close_code(),
            reason: cause.to_string(),
            cause,
        });
    }

    /// Relays in both directions until the connection ends or the client stops.
    async fn serve(&mut self, mut ws: Ws, gateway: Did) -> End {
        loop {
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
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.deliver(text.as_bytes(), gateway).await,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return End::Lost(code, reason);
                    }
                    Some(Ok(_)) => {}
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
                if envelope.from == gateway
                    && let Body::Error(error) = &envelope.body
                {
                    debug!(code = %error.code, message = %error.message, "gateway error");
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

/// Buffers sized for signaling, and no frame larger than an envelope may be (a larger one
/// ends the connection, as the protocol would refuse it anyway).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_ENVELOPE_BYTES)
        .max_message_size(Some(MAX_ENVELOPE_BYTES))
        .max_frame_size(Some(MAX_ENVELOPE_BYTES))
}

/// One attempt: WebSocket, CHALLENGE, REGISTER, REGISTERED.
async fn connect(config: &GatewayClientConfig) -> Result<(Ws, Did), ConnectError> {
    let mut request = config.url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let connector = config.tls.clone().map(Connector::Rustls);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config()),
        true,
        connector,
    )
    .await?;
    let not_ioap = |e: ioap_protocol::DecodeError| ConnectError::Protocol {
        reason: e.to_string(),
    };
    let challenge = next_text(&mut ws).await?;
    let challenge = ReceivedEnvelope::decode(challenge.as_bytes()).map_err(not_ioap)?;
    let mut handshake = ClientHandshake::new(config.url.clone(), config.expected_gateway);
    let register =
        handshake.on_challenge(&challenge, &config.identity, &config.advertisement, now())?;
    ws.send(Message::text(register.into_string())).await?;
    let reply = next_text(&mut ws).await?;
    let reply = ReceivedEnvelope::decode(reply.as_bytes()).map_err(not_ioap)?;
    let (gateway, _registered) = handshake.on_reply(&reply)?;
    Ok((ws, gateway))
}

async fn next_text(ws: &mut Ws) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::Closed {
                    close_code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => {
                return Err(ConnectError::Closed {
                    close_code: None,
                    reason: "the connection ended".into(),
                });
            }
        }
    }
}
