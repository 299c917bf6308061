//! The relay loop of a registered session (PROTOCOL_DESIGN.md §10).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, Utf8Bytes};
use governor::DefaultDirectRateLimiter;
use ioap_protocol::handshake::Registration;
use ioap_protocol::payload::Ping;
use ioap_protocol::{Body, CloseCode, Did, ErrorCode, MessageId};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{Conn, Ending, Peer, read_failed};
use crate::metrics;
use crate::registry::{AgentRecord, Outbound, PushError};
use crate::routing::{self, Action, SessionView};
use crate::state::GatewayState;

/// Most queued frames written before one flush.
const WRITE_BATCH_FRAMES: usize = 32;
/// Rate-limited frames in a row after which the session is closed (4006).
const RATE_LIMITED_BEFORE_CLOSE: u32 = 256;

/// A registered session.
pub(super) struct Session {
    state: Arc<GatewayState>,
    id: u64,
    record: Arc<AgentRecord>,
    queue: mpsc::Receiver<Outbound>,
    replaced: CancellationToken,
    rate: Option<DefaultDirectRateLimiter>,
    peer_ip: IpAddr,
    malformed_in_a_row: u32,
    limited_in_a_row: u32,
}

/// What handling one frame led to.
enum Handled {
    Ok,
    Malformed,
    Unregister,
}

impl Session {
    /// Enters the registry, replacing any older session for the DID.
    pub(super) fn enter(
        state: &Arc<GatewayState>,
        registration: &Registration,
        peer: &Peer,
    ) -> Self {
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
            record,
            queue,
            replaced,
            rate: state.limits.session_limiter(),
            peer_ip: peer.remote.ip(),
            malformed_in_a_row: 0,
            limited_in_a_row: 0,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn did(&self) -> Did {
        self.record.did
    }

    /// Leaves the registry (unless a newer session already replaced this one).
    pub(super) fn leave(&self) {
        if self.state.registry.remove(&self.record.did_text, self.id) {
            metrics::unregistered();
        }
    }

    /// Relays until the session ends.
    pub(super) async fn serve(&mut self, conn: &mut Conn) -> Ending {
        match self.relay_loop(conn).await {
            Err(ending) => ending,
            Ok(never) => match never {},
        }
    }

    async fn relay_loop(&mut self, conn: &mut Conn) -> Result<Infallible, Ending> {
        let state = Arc::clone(&self.state);
        let config = &state.config;
        let mut last_heard = TokioInstant::now();
        let idle = sleep_until(last_heard + config.idle_timeout);
        tokio::pin!(idle);
        let mut pings = tokio::time::interval(config.ping_interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings.tick().await;
        // Made once: each `cancelled()` registers with the token, which is shared by every
        // session (a lock per loop iteration otherwise).
        let shutdown = state.shutdown.cancelled();
        tokio::pin!(shutdown);
        let replaced_token = self.replaced.clone();
        let replaced = replaced_token.cancelled();
        tokio::pin!(replaced);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    return Err(Ending::close("shutdown", CloseCode::GoingAway));
                }
                () = &mut replaced => {
                    let error = state.error(Some(self.did()), ErrorCode::SessionReplaced,
                        "a newer session registered this DID", None);
                    return Err(Ending::fail("replaced", error, CloseCode::SessionReplaced));
                }
                Some(out) = self.queue.recv() => self.write_queued(conn, out).await?,
                frame = conn.socket.recv() => {
                    last_heard = TokioInstant::now();
                    self.record.touch(state.now());
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_text(conn, text).await?,
                        Some(Ok(Message::Binary(_))) => {
                            let error = state.error(Some(self.did()), ErrorCode::MalformedMessage,
                                "binary frames are not part of ioap.v1; send JSON text", None);
                            conn.send(error).await?;
                            self.count_malformed()?;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            return Err(Ending::quiet("client_closed"));
                        }
                        Some(Err(error)) => return Err(read_failed(&state, Some(self.did()), error)),
                    }
                }
                _ = pings.tick() => conn.send_message(Message::Ping(Default::default())).await?,
                () = &mut idle => {
                    let deadline = last_heard + config.idle_timeout;
                    if TokioInstant::now() >= deadline {
                        return Err(Ending::close("idle", CloseCode::IdleTimeout));
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Writes `first` and whatever else is already queued (up to a batch), then flushes once.
    async fn write_queued(&mut self, conn: &mut Conn, first: Outbound) -> Result<(), Ending> {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH_FRAMES {
            match self.queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let times: Vec<_> = batch.iter().filter_map(|out| out.received_at).collect();
        conn.send_batch(batch.into_iter().map(|out| out.text))
            .await?;
        for received_at in times {
            metrics::relay_latency(received_at.elapsed());
        }
        Ok(())
    }

    fn count_malformed(&mut self) -> Result<(), Ending> {
        self.malformed_in_a_row += 1;
        if self.malformed_in_a_row > self.state.config.max_consecutive_malformed {
            return Err(Ending::close("malformed", CloseCode::PolicyViolation));
        }
        Ok(())
    }

    fn allow_frame(&self) -> bool {
        self.rate.as_ref().is_none_or(|r| r.check().is_ok())
            && self.state.limits.allow_frame_from(self.peer_ip)
    }

    /// One text frame: rate limits, then routing.
    async fn on_text(&mut self, conn: &mut Conn, text: Utf8Bytes) -> Result<(), Ending> {
        if !self.allow_frame() {
            self.limited_in_a_row += 1;
            let error = self.state.error(
                Some(self.did()),
                ErrorCode::RateLimited,
                "rate limit exceeded; slow down",
                peek_id(&text),
            );
            conn.send(error).await?;
            if self.limited_in_a_row > RATE_LIMITED_BEFORE_CLOSE {
                return Err(Ending::close("rate_limited", CloseCode::RateLimited));
            }
            return Ok(());
        }
        self.limited_in_a_row = 0;
        match self.handle(conn, text).await? {
            Handled::Ok => self.malformed_in_a_row = 0,
            Handled::Malformed => self.count_malformed()?,
            Handled::Unregister => return Err(Ending::close("unregistered", CloseCode::Normal)),
        }
        Ok(())
    }

    /// Decides what the frame asks for. Resolving `to` finds the receiver's record, which is
    /// returned for the relay.
    fn route(&self, text: &str) -> (Action, Option<Arc<AgentRecord>>) {
        let did = self.did();
        let receiver = Cell::new(None);
        let registry = &self.state.registry;
        let known = |text: &str| {
            let record = registry.get(text)?;
            let did = record.did;
            receiver.set(Some(record));
            Some(did)
        };
        let view = SessionView {
            agent: &did,
            agent_text: &self.record.did_text,
            known: &known,
            gateway: &self.state.did,
            verify_relayed: self.state.config.verify_relayed,
        };
        let action = routing::route(text, view);
        (action, receiver.take())
    }

    /// Acts on a frame that passed the rate limits.
    async fn handle(&self, conn: &mut Conn, text: Utf8Bytes) -> Result<Handled, Ending> {
        let arrived = Instant::now();
        let did = self.did();
        let (action, receiver) = self.route(&text);
        match action {
            Action::Relay { to, ty, id } => {
                let receiver = receiver.filter(|record| record.did == to);
                if let Err(code) = relay(receiver, text, arrived) {
                    let message = match code {
                        ErrorCode::ReceiverBusy => format!("{to} is not reading; {ty} dropped"),
                        _ => format!("no agent {to} is registered here"),
                    };
                    conn.send(self.state.error(Some(did), code, message, Some(id)))
                        .await?;
                } else {
                    metrics::relayed(ty);
                }
                Ok(Handled::Ok)
            }
            Action::Pong { id, sequence } => {
                let pong = self
                    .state
                    .message(Some(did), Body::Pong(Ping { sequence }), Some(id));
                conn.send(pong).await?;
                Ok(Handled::Ok)
            }
            Action::Unregister => Ok(Handled::Unregister),
            Action::Reject { code, message, id } => {
                debug!(%did, %code, %message, "frame refused");
                conn.send(self.state.error(Some(did), code, message, id))
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

/// Queues the frame's original bytes for the receiver without waiting.
fn relay(
    receiver: Option<Arc<AgentRecord>>,
    text: Utf8Bytes,
    arrived: Instant,
) -> Result<(), ErrorCode> {
    let receiver = receiver.ok_or(ErrorCode::UnknownAgent)?;
    receiver
        .push(Outbound {
            text,
            received_at: Some(arrived),
        })
        .map_err(|e| match e {
            PushError::Full => {
                metrics::queue_overflow();
                ErrorCode::ReceiverBusy
            }
            PushError::Gone => ErrorCode::UnknownAgent,
        })
}

/// The `id` of a frame, to correlate a refusal without decoding the whole envelope.
fn peek_id(text: &str) -> Option<MessageId> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let id: Id<'_> = serde_json::from_str(text).ok()?;
    MessageId::parse(&id.id?).ok()
}
