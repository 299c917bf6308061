//! The relay loop of a registered session (PROTOCOL_DESIGN.md §10).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes};
use governor::DefaultDirectRateLimiter;
use ioap_protocol::handshake::Registration;
use ioap_protocol::payload::Ping;
use ioap_protocol::{Body, CloseCode, Did, ErrorCode, MessageType};
use tokio::sync::mpsc;
use tokio::time::{Instant as TokioInstant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::throttle::Throttle;
use super::{Conn, Ending, Peer, read_failed};
use crate::disconnects::Disconnect;
use crate::limits::Wait;
use crate::metrics;
use crate::refusals::Reason;
use crate::registry::{AgentRecord, Outbound, PushError};
use crate::routing::{self, Action, SessionView, is_relay_type};
use crate::state::GatewayState;

/// Most queued frames written before one flush.
const WRITE_BATCH_FRAMES: usize = 32;
/// Far enough ahead to stand for "never" in a timer that is only armed while a frame waits.
const NEVER: Duration = Duration::from_secs(86_400 * 365);

/// A registered session.
pub(super) struct Session {
    state: Arc<GatewayState>,
    id: u64,
    record: Arc<AgentRecord>,
    queue: mpsc::Receiver<Outbound>,
    /// Records of gateway-relayed links to this agent, written after signaling.
    relay_queue: mpsc::Receiver<Outbound>,
    replaced: CancellationToken,
    rate: Option<DefaultDirectRateLimiter>,
    /// The byte budget of the relayed-link records this agent sends.
    relay_rate: Option<DefaultDirectRateLimiter>,
    peer_ip: IpAddr,
    malformed_in_a_row: u32,
    throttle: Throttle,
    /// A frame read while the rate budget was empty, handled when the budget has room; the
    /// socket is not read meanwhile (backpressure).
    waiting: Option<Utf8Bytes>,
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
        let (relay_tx, relay_queue) = mpsc::channel(state.config.relay_queue_capacity);
        let replaced = CancellationToken::new();
        let record = Arc::new(
            AgentRecord::new(
                registration.did,
                id,
                state.now(),
                peer.remote,
                registration.capabilities.clone(),
                registration.listed,
                tx,
                replaced.clone(),
            )
            .with_relay_lane(relay_tx),
        );
        if let Some(old) = state.registry.insert(Arc::clone(&record)) {
            info!(did = %registration.did, old_session = old.session_id, "older session replaced");
            metrics::unregistered();
        }
        Session {
            state: Arc::clone(state),
            id,
            record,
            queue,
            relay_queue,
            replaced,
            rate: state.limits.session_limiter(),
            relay_rate: state.limits.relay_limiter(),
            peer_ip: peer.remote.ip(),
            malformed_in_a_row: 0,
            throttle: Throttle::new(state.config.flood_close_after),
            waiting: None,
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn did(&self) -> Did {
        self.record.did
    }

    pub(super) fn record(&self) -> &Arc<AgentRecord> {
        &self.record
    }

    /// Leaves the registry (unless a newer session already replaced this one), and the
    /// cluster's presence.
    pub(super) fn leave(&self) {
        if self.state.registry.remove(&self.record.did_text, self.id) {
            metrics::unregistered();
        }
        if let Some(cluster) = &self.state.cluster {
            cluster.withdraw(&self.record);
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
        let budget = sleep_until(TokioInstant::now() + NEVER);
        tokio::pin!(budget);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    return Err(Ending::close(Disconnect::Shutdown, CloseCode::GoingAway));
                }
                () = &mut replaced => {
                    let error = state.error(Some(self.did()), ErrorCode::SessionReplaced,
                        "a newer session registered this DID", None);
                    return Err(Ending::fail(Disconnect::Replaced, error, CloseCode::SessionReplaced));
                }
                Some(out) = self.queue.recv() => self.write_queued(conn, out, false).await?,
                Some(out) = self.relay_queue.recv() => self.write_queued(conn, out, true).await?,
                () = &mut budget, if self.waiting.is_some() => {
                    if let Some(text) = self.waiting.take() {
                        self.on_text(conn, text, budget.as_mut()).await?;
                    }
                }
                frame = conn.socket.recv(), if self.waiting.is_none() => {
                    last_heard = TokioInstant::now();
                    self.record.touch(state.now());
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            self.on_text(conn, text, budget.as_mut()).await?;
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let error = state.error(Some(self.did()), ErrorCode::MalformedMessage,
                                "binary frames are not part of ioap.v1; send JSON text", None);
                            conn.send(error).await?;
                            self.count_malformed()?;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            return Err(Ending::quiet(Disconnect::ClientClosed));
                        }
                        Some(Err(error)) => return Err(read_failed(&state, Some(self.did()), error)),
                    }
                }
                _ = pings.tick() => conn.send_message(Message::Ping(Default::default())).await?,
                () = &mut idle => {
                    let deadline = last_heard + config.idle_timeout;
                    if TokioInstant::now() >= deadline {
                        return Err(Ending::close(Disconnect::Idle, CloseCode::IdleTimeout));
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Writes `first` and whatever else is already queued in its lane (up to a batch), then
    /// flushes once.
    async fn write_queued(
        &mut self,
        conn: &mut Conn,
        first: Outbound,
        relay_lane: bool,
    ) -> Result<(), Ending> {
        let queue = if relay_lane {
            &mut self.relay_queue
        } else {
            &mut self.queue
        };
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH_FRAMES {
            match queue.try_recv() {
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

    /// Counts a malformed frame; the run of `max_consecutive_malformed` closes the session.
    fn count_malformed(&mut self) -> Result<(), Ending> {
        self.malformed_in_a_row += 1;
        if self.malformed_in_a_row >= self.state.config.max_consecutive_malformed {
            return Err(Ending::close(
                Disconnect::Malformed,
                CloseCode::PolicyViolation,
            ));
        }
        Ok(())
    }

    /// One text frame: routing, then the budget its kind spends — relayed-link records the
    /// relay byte budgets (§11.5), everything else the frame budgets (§10 *Rate limits*). Over
    /// budget, the frame waits (and the socket is not read) until `budget` fires, and is
    /// routed again then.
    async fn on_text(
        &mut self,
        conn: &mut Conn,
        text: Utf8Bytes,
        mut budget: Pin<&mut Sleep>,
    ) -> Result<(), Ending> {
        let arrived = Instant::now();
        let (action, receiver) = self.route(&text);
        let relayed_link = matches!(action, Action::Relay { ty, .. } if is_relay_type(ty));
        if relayed_link {
            let limiter = self.relay_rate.as_ref();
            if let Err(wait) = self.state.limits.take_relay(limiter, text.len()) {
                metrics::relay_wait();
                self.waiting = Some(text);
                budget.as_mut().reset(TokioInstant::now() + wait);
                return Ok(());
            }
        } else if let Err(wait) = self
            .state
            .limits
            .take_frame(self.rate.as_ref(), self.peer_ip)
        {
            return self.wait_for_budget(conn, text, wait, budget).await;
        }
        match self.handle(conn, text, action, receiver, arrived).await? {
            Handled::Ok => self.malformed_in_a_row = 0,
            Handled::Malformed => self.count_malformed()?,
            Handled::Unregister => {
                return Err(Ending::close(Disconnect::Unregistered, CloseCode::Normal));
            }
        }
        Ok(())
    }

    async fn wait_for_budget(
        &mut self,
        conn: &mut Conn,
        text: Utf8Bytes,
        wait: Wait,
        budget: Pin<&mut Sleep>,
    ) -> Result<(), Ending> {
        let verdict = self
            .throttle
            .waited(Instant::now(), wait.duration, wait.own);
        if verdict.close {
            self.state.refusals.note(Reason::FloodClosed, self.peer_ip);
            return Err(Ending::close(
                Disconnect::RateLimited,
                CloseCode::RateLimited,
            ));
        }
        if verdict.notice {
            self.state.refusals.note(Reason::RateLimited, self.peer_ip);
            let whose = if wait.own {
                "this agent's"
            } else {
                "this address's"
            };
            let message = format!(
                "over {whose} rate limit: frames are delayed, not dropped, while the gateway \
                 stops reading; an agent over its limit for {} s is closed (4006)",
                self.state.config.flood_close_after.as_secs()
            );
            let notice = self
                .state
                .error(Some(self.did()), ErrorCode::RateLimited, message, None);
            conn.send(notice).await?;
        }
        self.waiting = Some(text);
        budget.reset(TokioInstant::now() + wait.duration);
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
            relay_offered: self.state.limits.relay_offered(),
        };
        let action = routing::route(text, view);
        (action, receiver.take())
    }

    /// Acts on a frame that passed the rate limits.
    async fn handle(
        &self,
        conn: &mut Conn,
        text: Utf8Bytes,
        action: Action,
        receiver: Option<Arc<AgentRecord>>,
        arrived: Instant,
    ) -> Result<Handled, Ending> {
        let did = self.did();
        match action {
            Action::Relay {
                to, ty, answer_to, ..
            } => {
                let receiver = receiver.filter(|record| record.did == to);
                let bytes = text.len();
                let relayed = match (receiver, &self.state.cluster) {
                    (None, Some(cluster)) => {
                        let to = to.to_string();
                        cluster
                            .relay(&to, &self.record.did_text, answer_to, ty, &text)
                            .await
                    }
                    (receiver, _) => relay(receiver, ty, text, arrived),
                };
                if let Err(code) = relayed {
                    let message = match code {
                        ErrorCode::ReceiverBusy => format!("{to} is not reading; {ty} dropped"),
                        ErrorCode::RouteUnavailable => format!(
                            "{to} is not on this gateway and the cluster cannot be reached \
                             (Redis); retry later"
                        ),
                        _ if self.state.cluster.is_some() => {
                            format!("no agent {to} is registered in the cluster")
                        }
                        _ => format!("no agent {to} is registered here"),
                    };
                    conn.send(self.state.error(Some(did), code, message, Some(answer_to)))
                        .await?;
                } else {
                    metrics::relayed(ty);
                    if ty == MessageType::RelayData {
                        metrics::relayed_link_bytes(bytes);
                    }
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
    ty: MessageType,
    text: Utf8Bytes,
    arrived: Instant,
) -> Result<(), ErrorCode> {
    let receiver = receiver.ok_or(ErrorCode::UnknownAgent)?;
    receiver
        .push_typed(
            ty,
            Outbound {
                text,
                received_at: Some(arrived),
            },
        )
        .map_err(|e| match e {
            PushError::Full => {
                metrics::queue_overflow();
                ErrorCode::ReceiverBusy
            }
            PushError::Gone => ErrorCode::UnknownAgent,
        })
}
