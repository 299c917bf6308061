//! One WebSocket session: the registration handshake, then the relay loop.
//!
//! One task per session owns the socket. It reads the client's frames and writes what other
//! sessions queued for it; relaying to another session is a non-blocking push into that
//! session's bounded queue, so a client that stops reading only ever stalls itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use governor::DefaultDirectRateLimiter;
use ioap_protocol::handshake::{Registration, ServerChallenge};
use ioap_protocol::payload::{Ping, Registered};
use ioap_protocol::{Body, CloseCode, Did, ErrorCode, MessageId, ReceivedEnvelope};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::audience::{self, Reached};
use crate::metrics;
use crate::registry::{AgentRecord, Outbound, PushError};
use crate::routing::{self, Action, SessionView};
use crate::state::GatewayState;

/// Where the connection came from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's socket address.
    pub remote: SocketAddr,
    /// The upgrade request's `Host` header.
    pub host: Option<String>,
    /// Whether it arrived over TLS.
    pub tls: bool,
}

/// Why a session ended (a metrics label and a log field).
type EndReason = &'static str;

/// The socket, with writes bounded by the write timeout.
struct Conn {
    socket: WebSocket,
    write_timeout: Duration,
}

impl Conn {
    /// Sends text; `Err` means the client is gone or too slow.
    async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), EndReason> {
        match timeout(
            self.write_timeout,
            self.socket.send(Message::Text(text.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("client_gone"),
            Err(_) => Err("slow_consumer"),
        }
    }

    /// Sends a close frame (best effort) and ends.
    async fn close(&mut self, code: CloseCode) {
        let frame = CloseFrame {
            code: code.code(),
            reason: code.reason().into(),
        };
        let _ = timeout(
            self.write_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }

    /// Sends an ERROR, then closes with `code`.
    async fn fail(&mut self, error: String, code: CloseCode) {
        if self.send(error).await.is_ok() {
            self.close(code).await;
        }
    }
}

/// Serves one upgraded connection until it ends.
pub async fn run(state: Arc<GatewayState>, socket: WebSocket, peer: Peer) {
    metrics::connection_opened();
    let mut conn = Conn {
        socket,
        write_timeout: state.config.write_timeout,
    };
    let reason = match register(&state, &mut conn, &peer).await {
        Ok((registration, mut session)) => {
            let did = registration.did;
            let reason = session.serve(&mut conn).await;
            if state.registry.remove(&did, session.id) {
                metrics::unregistered();
            }
            info!(%did, reason, "agent disconnected");
            reason
        }
        Err(reason) => reason,
    };
    metrics::connection_closed(reason);
    state
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Closes a connection over the limit with 1013 (try again later).
pub async fn refuse_over_limit(state: Arc<GatewayState>, socket: WebSocket) {
    metrics::connection_refused();
    let mut conn = Conn {
        socket,
        write_timeout: state.config.write_timeout,
    };
    conn.close(CloseCode::TryAgainLater).await;
}

/// The handshake: CHALLENGE, then one REGISTER before the deadline.
async fn register(
    state: &Arc<GatewayState>,
    conn: &mut Conn,
    peer: &Peer,
) -> Result<(Registration, Session), EndReason> {
    let (challenge, challenge_message) =
        ServerChallenge::issue(&state.identity, state.now(), state.config.nonce_ttl).map_err(
            |e| {
                warn!(error = %e, "cannot issue a challenge");
                "internal_error"
            },
        )?;
    conn.send(challenge_message.into_string()).await?;
    let deadline = sleep_until(TokioInstant::now() + state.config.register_timeout);
    tokio::pin!(deadline);
    let text = loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                conn.close(CloseCode::GoingAway).await;
                return Err("shutdown");
            }
            () = &mut deadline => {
                debug!(remote = %peer.remote, "registration timeout");
                metrics::registration_failed(ErrorCode::Timeout);
                conn.close(CloseCode::RegistrationTimeout).await;
                return Err("registration_timeout");
            }
            frame = conn.socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => break text,
                Some(Ok(Message::Binary(_))) => {
                    let error = state.error(None, ErrorCode::MalformedMessage,
                        "binary frames are not part of ioap.v1; send JSON text", None);
                    return Err(refuse(state, conn, ErrorCode::MalformedMessage, error).await);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Err("client_closed"),
                Some(Err(error)) => return Err(read_failed(state, conn, None, error).await),
            },
        }
    };

    if !state.limits.allow_registration_from(peer.remote.ip()) {
        let error = state.error(
            None,
            ErrorCode::RateLimited,
            "too many registrations from this address; retry later",
            None,
        );
        metrics::registration_failed(ErrorCode::RateLimited);
        conn.fail(error, CloseCode::RateLimited).await;
        return Err("rate_limited");
    }
    let received = match ReceivedEnvelope::decode(text.as_bytes()) {
        Ok(received) => received,
        Err(e) => {
            let error = state.error(None, e.code(), e.to_string(), e.id);
            return Err(refuse(state, conn, e.code(), error).await);
        }
    };
    let id = received.envelope().id;
    let claimed = received.envelope().from;
    let reached = Reached {
        tls: peer.tls,
        host: peer.host.as_deref(),
    };
    let registration = match challenge.verify(
        &received,
        |aud| audience::matches(aud, reached, &state.config.public_urls),
        state.now(),
    ) {
        Ok(registration) => registration,
        Err(e) => {
            info!(did = %claimed, remote = %peer.remote, reason = %e, "registration refused");
            let error = state.error(None, e.code(), e.to_string(), Some(id));
            return Err(refuse(state, conn, e.code(), error).await);
        }
    };
    if !state.config.admission.admits(&registration.did) {
        info!(did = %registration.did, remote = %peer.remote, "registration refused: not on the allowlist");
        let error = state.error(
            Some(registration.did),
            ErrorCode::Unauthorized,
            "this DID is not admitted by the gateway's policy",
            Some(id),
        );
        return Err(refuse(state, conn, ErrorCode::Unauthorized, error).await);
    }
    let session = Session::start(state, &registration, peer);
    let registered = state.message(
        Some(registration.did),
        Body::Registered(Registered {
            session_id: session.id.to_string(),
            idle_timeout_ms: u64::try_from(state.config.idle_timeout.as_millis())
                .unwrap_or(u64::MAX),
            max_frame_bytes: state.config.max_frame_bytes as u64,
        }),
        Some(registration.register_id),
    );
    metrics::registered();
    info!(
        did = %registration.did,
        remote = %peer.remote,
        session = session.id,
        capabilities = registration.capabilities.len(),
        "agent registered"
    );
    if let Err(reason) = conn.send(registered).await {
        if state.registry.remove(&registration.did, session.id) {
            metrics::unregistered();
        }
        return Err(reason);
    }
    Ok((registration, session))
}

/// Sends the ERROR for a failed registration and closes (4002).
async fn refuse(
    _state: &GatewayState,
    conn: &mut Conn,
    code: ErrorCode,
    error: String,
) -> EndReason {
    metrics::registration_failed(code);
    conn.fail(error, CloseCode::RegistrationFailed).await;
    "registration_failed"
}

/// A read error: oversize frames and invalid UTF-8 get their ERROR and close code; anything
/// else means the connection is gone.
async fn read_failed(
    state: &GatewayState,
    conn: &mut Conn,
    agent: Option<Did>,
    error: axum::Error,
) -> EndReason {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            let error = state.error(
                agent,
                ErrorCode::TooLarge,
                format!(
                    "frame exceeds the limit of {} bytes",
                    state.config.max_frame_bytes
                ),
                None,
            );
            conn.fail(error, CloseCode::MessageTooBig).await;
            "too_large"
        }
        Some(tungstenite::Error::Utf8(_)) => {
            let error = state.error(
                agent,
                ErrorCode::MalformedMessage,
                "text frame is not valid UTF-8",
                None,
            );
            conn.fail(error, CloseCode::InvalidPayload).await;
            "invalid_utf8"
        }
        _ => {
            debug!(error = %inner, "read failed");
            "client_gone"
        }
    }
}

/// A registered session.
struct Session {
    state: Arc<GatewayState>,
    id: u64,
    did: Did,
    record: Arc<AgentRecord>,
    queue: mpsc::Receiver<Outbound>,
    replaced: CancellationToken,
    rate: Option<DefaultDirectRateLimiter>,
    peer_ip: std::net::IpAddr,
}

impl Session {
    /// Enters the registry (replacing any older session for the DID).
    fn start(state: &Arc<GatewayState>, registration: &Registration, peer: &Peer) -> Self {
        let id = state.next_session_id();
        let (tx, queue) = mpsc::channel(state.config.queue_capacity);
        let replaced = CancellationToken::new();
        let record = Arc::new(AgentRecord::new(
            registration.did,
            id,
            state.now(),
            peer.remote,
            registration.capabilities.clone(),
            registration.listed,
            tx,
            replaced.clone(),
        ));
        if let Some(old) = state.registry.insert(Arc::clone(&record)) {
            info!(did = %registration.did, old_session = old.session_id, "older session replaced");
            metrics::unregistered();
        }
        Session {
            state: Arc::clone(state),
            id,
            did: registration.did,
            record,
            queue,
            replaced,
            rate: state.limits.session_limiter(),
            peer_ip: peer.remote.ip(),
        }
    }

    /// The relay loop, until the session ends.
    async fn serve(&mut self, conn: &mut Conn) -> EndReason {
        match self.relay_loop(conn).await {
            Err(reason) => reason,
            Ok(never) => match never {},
        }
    }

    async fn relay_loop(&mut self, conn: &mut Conn) -> Result<std::convert::Infallible, EndReason> {
        let config = &self.state.config;
        let idle_timeout = config.idle_timeout;
        let mut last_heard = TokioInstant::now();
        let idle = sleep_until(last_heard + idle_timeout);
        tokio::pin!(idle);
        let mut pings = tokio::time::interval(config.ping_interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings.tick().await;
        let mut malformed_in_a_row = 0u32;
        let mut limited_in_a_row = 0u32;
        loop {
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => {
                    conn.close(CloseCode::GoingAway).await;
                    return Err("shutdown");
                }
                () = self.replaced.cancelled() => {
                    let error = self.state.error(Some(self.did), ErrorCode::SessionReplaced,
                        "a newer session registered this DID", None);
                    conn.fail(error, CloseCode::SessionReplaced).await;
                    return Err("replaced");
                }
                Some(out) = self.queue.recv() => {
                    conn.send(out.text).await?;
                    if let Some(received_at) = out.received_at {
                        metrics::relay_latency(received_at.elapsed());
                    }
                }
                frame = conn.socket.recv() => {
                    last_heard = TokioInstant::now();
                    self.record.touch(self.state.now());
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            malformed_in_a_row += 1;
                            let error = self.state.error(Some(self.did), ErrorCode::MalformedMessage,
                                "binary frames are not part of ioap.v1; send JSON text", None);
                            conn.send(error).await?;
                            if malformed_in_a_row > config.max_consecutive_malformed {
                                conn.close(CloseCode::PolicyViolation).await;
                                return Err("malformed");
                            }
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => return Err("client_closed"),
                        Some(Err(error)) => {
                            return Err(read_failed(&self.state, conn, Some(self.did), error).await);
                        }
                    };
                    if !self.allow_frame() {
                        limited_in_a_row += 1;
                        let id = peek_id(&text);
                        let error = self.state.error(Some(self.did), ErrorCode::RateLimited,
                            "rate limit exceeded; slow down", id);
                        conn.send(error).await?;
                        if limited_in_a_row > RATE_LIMITED_BEFORE_CLOSE {
                            conn.close(CloseCode::RateLimited).await;
                            return Err("rate_limited");
                        }
                        continue;
                    }
                    limited_in_a_row = 0;
                    match self.handle(conn, text).await? {
                        Handled::Ok => malformed_in_a_row = 0,
                        Handled::Malformed => {
                            malformed_in_a_row += 1;
                            if malformed_in_a_row > config.max_consecutive_malformed {
                                conn.close(CloseCode::PolicyViolation).await;
                                return Err("malformed");
                            }
                        }
                        Handled::Unregister => {
                            conn.close(CloseCode::Normal).await;
                            return Err("unregistered");
                        }
                    }
                }
                _ = pings.tick() => {
                    let ping = timeout(config.write_timeout, conn.socket.send(Message::Ping(Default::default())));
                    match ping.await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err("client_gone"),
                        Err(_) => return Err("slow_consumer"),
                    }
                }
                () = &mut idle => {
                    let deadline = last_heard + idle_timeout;
                    if TokioInstant::now() >= deadline {
                        conn.close(CloseCode::IdleTimeout).await;
                        return Err("idle");
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    fn allow_frame(&self) -> bool {
        self.rate.as_ref().is_none_or(|r| r.check().is_ok())
            && self.state.limits.allow_frame_from(self.peer_ip)
    }

    /// Acts on one text frame.
    async fn handle(&self, conn: &mut Conn, text: Utf8Bytes) -> Result<Handled, EndReason> {
        let arrived = Instant::now();
        let view = SessionView {
            agent: &self.did,
            gateway: &self.state.did,
            verify_relayed: self.state.config.verify_relayed,
        };
        match routing::route(text.as_str(), view) {
            Action::Relay { to, ty, id } => {
                let outcome = match self.state.registry.get(&to) {
                    None => Err(ErrorCode::UnknownAgent),
                    Some(receiver) => match receiver.push(Outbound {
                        text,
                        received_at: Some(arrived),
                    }) {
                        Ok(()) => Ok(()),
                        Err(PushError::Full) => {
                            metrics::queue_overflow();
                            Err(ErrorCode::ReceiverBusy)
                        }
                        Err(PushError::Gone) => Err(ErrorCode::UnknownAgent),
                    },
                };
                match outcome {
                    Ok(()) => metrics::relayed(ty),
                    Err(code) => {
                        let message = match code {
                            ErrorCode::ReceiverBusy => {
                                format!("{to} is not reading; {ty} dropped")
                            }
                            _ => format!("no agent {to} is registered here"),
                        };
                        conn.send(self.state.error(Some(self.did), code, message, Some(id)))
                            .await?;
                    }
                }
                Ok(Handled::Ok)
            }
            Action::Pong { id, sequence } => {
                let pong =
                    self.state
                        .message(Some(self.did), Body::Pong(Ping { sequence }), Some(id));
                conn.send(pong).await?;
                Ok(Handled::Ok)
            }
            Action::Unregister => Ok(Handled::Unregister),
            Action::Reject { code, message, id } => {
                debug!(did = %self.did, %code, %message, "frame refused");
                conn.send(self.state.error(Some(self.did), code, message, id))
                    .await?;
                Ok(if code == ErrorCode::MalformedMessage {
                    Handled::Malformed
                } else {
                    Handled::Ok
                })
            }
            Action::Ignore => Ok(Handled::Ok),
        }
    }
}

/// Rate-limited frames in a row after which the session is closed (4006).
const RATE_LIMITED_BEFORE_CLOSE: u32 = 256;

enum Handled {
    Ok,
    Malformed,
    Unregister,
}

/// The `id` of a frame, for correlating a refusal without decoding the whole frame.
fn peek_id(text: &str) -> Option<MessageId> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let id: Id<'_> = serde_json::from_str(text).ok()?;
    MessageId::parse(&id.id?).ok()
}
