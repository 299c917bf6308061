//! The task driving one peer's link (PROTOCOL_DESIGN.md §11): it negotiates the attempt
//! through the gateway (OFFER, ANSWER, ICE_CANDIDATE; the glare rule in [`Negotiation`]),
//! verifies what arrives on the data channel, and feeds the link's [`LinkMachine`]; then it
//! executes what the machine asks — signed sends, caller events, handler tasks — until the
//! link ends or the agent closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ioap_protocol::payload::{IceCandidate, SessionDescription};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, MessageId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::core::AgentCore;
use crate::error::{CallError, SetupError};
use crate::link::{Command, LinkHandle};
use crate::machine::{
    CallEvent, LinkConfig, LinkEnd, LinkEvent, LinkMachine, PartStatus, ServeRequest,
};
use crate::negotiation::{Negotiation, Step};
use crate::relayed::Relayed;
use crate::rtc::{Candidate, RtcEvent, RtcPeer, RtcState};
use crate::serve::spawn_handler;
use crate::table::{Claim, LinkStatus, NewLink};
use crate::verify::PeerVerifier;
use ioap_protocol::chunks::Reassembly;

mod carry;
mod receipts;
mod relay;

/// How a driver begins.
enum Start {
    /// We dial.
    Dial,
    /// The peer dialed: this is its OFFER.
    Answer(Box<Envelope>),
}

/// One link attempt: the peer connection, what is known of it, and its machine.
struct Attempt {
    /// The OFFER's id, which names the attempt.
    id: MessageId,
    rtc: Arc<dyn RtcPeer>,
    events: mpsc::Receiver<RtcEvent>,
    machine: LinkMachine,
    verifier: PeerVerifier,
    /// We sent the attempt's OFFER (or RELAY_OPEN): ours to fall back to the gateway relay.
    offered: bool,
    /// When the attempt began.
    started: std::time::Instant,
    /// ICE found a working pair: a slow setup is not a missing path.
    path_found: bool,
    /// The attempt travels over the gateway relay (PROTOCOL_DESIGN.md §11.5).
    relayed: Option<Relayed>,
    /// Our messages waiting behind a large one (PROTOCOL_DESIGN.md §11.6).
    outbox: carry::Outbox,
    /// The peer's large messages being put back together.
    reassembly: Reassembly,
}

struct Driver {
    core: Arc<AgentCore>,
    remote: Did,
    negotiation: Negotiation,
    status: watch::Sender<LinkStatus>,
    attempt: Option<Attempt>,
    handle: LinkHandle,
    /// Where each call's events go.
    calls: HashMap<MessageId, mpsc::UnboundedSender<CallEvent>>,
    /// The task serving each of the peer's requests, and its idempotency key if it has one.
    serving: HashMap<MessageId, (AbortHandle, Option<String>)>,
    /// Handlers waiting for credit to send a part.
    waiting_parts: HashMap<MessageId, oneshot::Sender<bool>>,
    /// The signed texts kept for calls that asked for a receipt.
    receipts: receipts::Receipts,
}

enum Input {
    Stop,
    Signal(Option<Box<Envelope>>),
    Rtc(Option<RtcEvent>),
    Command(Command),
    Timeout,
    /// The direct attempt took too long: fall back to the gateway relay.
    RelayNow,
    /// The outbox holds a message (or the next piece of one) to send.
    SendNext,
}

/// The link to `remote`: the live one, or a new one whose task starts now.
pub(crate) fn link(
    core: &Arc<AgentCore>,
    remote: Did,
) -> Result<watch::Receiver<LinkStatus>, CallError> {
    match core.links.claim(remote)? {
        Claim::Existing(status) => Ok(status),
        Claim::New(new, status) => {
            core.tasks
                .spawn(run(Arc::clone(core), remote, Start::Dial, new));
            Ok(status)
        }
    }
}

/// Hands a signaling envelope from the gateway to its link, starting one to answer an OFFER.
pub(crate) fn route(core: &Arc<AgentCore>, envelope: Box<Envelope>) {
    if let Some((new, offer)) = core.links.route(envelope) {
        let remote = offer.from;
        core.tasks
            .spawn(run(Arc::clone(core), remote, Start::Answer(offer), new));
    }
}

/// Runs one peer's link until it ends.
async fn run(core: Arc<AgentCore>, remote: Did, start: Start, new: NewLink) {
    let NewLink {
        generation,
        mut signals,
        status,
    } = new;
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let mut driver = Driver {
        negotiation: Negotiation::new(core.did, remote),
        core: Arc::clone(&core),
        remote,
        status,
        attempt: None,
        handle: LinkHandle::new(commands_tx),
        calls: HashMap::new(),
        serving: HashMap::new(),
        waiting_parts: HashMap::new(),
        receipts: receipts::Receipts::default(),
    };
    let started = match start {
        Start::Dial => driver.dial().await.map_err(LinkEnd::Failed),
        Start::Answer(offer) => driver.on_signal(offer).await,
    };
    if let Err(end) = started {
        driver.fail(end);
    }
    driver.flush().await;
    loop {
        let relay_at = driver.relay_deadline().map(Instant::from_std);
        let Some(attempt) = driver.attempt.as_mut() else {
            break;
        };
        let timeout = attempt.machine.poll_timeout().map(Instant::from_std);
        let sending = !attempt.outbox.is_empty();
        let input = tokio::select! {
            () = core.stop.cancelled() => Input::Stop,
            signal = signals.recv() => Input::Signal(signal),
            event = attempt.events.recv() => Input::Rtc(event),
            Some(command) = commands.recv() => Input::Command(*command),
            () = sleep_until(timeout) => Input::Timeout,
            () = sleep_until(relay_at) => Input::RelayNow,
            () = std::future::ready(()), if sending => Input::SendNext,
        };
        let outcome = match input {
            Input::Stop | Input::Signal(None) => Err(LinkEnd::ShuttingDown),
            Input::Signal(Some(envelope)) => driver.on_signal(envelope).await,
            // ICE found no path: the dialing side falls back to the gateway relay.
            Input::Rtc(Some(RtcEvent::State(RtcState::Failed))) if driver.may_relay() => {
                driver.start_relay().await
            }
            Input::Rtc(Some(event)) => driver.on_rtc(event),
            Input::Rtc(None) => Err(LinkEnd::Failed(lost("the peer connection ended"))),
            Input::Command(command) => driver.on_command(command).await,
            Input::Timeout => {
                if let Some(attempt) = driver.attempt.as_mut() {
                    attempt.machine.handle_timeout(now());
                }
                Ok(())
            }
            Input::RelayNow => driver.start_relay().await,
            Input::SendNext => {
                driver.send_next().await;
                Ok(())
            }
        };
        if let Err(end) = outcome {
            driver.fail(end);
        }
        driver.flush().await;
    }
    core.links.remove(remote, generation);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn lost(reason: &str) -> CallError {
    CallError::lost(reason)
}

fn rtc_failed(error: impl std::fmt::Display) -> LinkEnd {
    LinkEnd::Failed(CallError::Setup(SetupError::Rtc(error.to_string())))
}

fn gateway_failed(error: impl std::fmt::Display) -> LinkEnd {
    LinkEnd::Failed(CallError::Setup(SetupError::Gateway(error.to_string())))
}

impl Driver {
    /// The link rules' settings; `relayed`: over the gateway relay, where the heartbeat is
    /// the only liveness there is.
    fn link_config(&self, relayed: bool) -> LinkConfig {
        let settings = &self.core.settings;
        let (heartbeat_interval, link_timeout) = if relayed {
            (settings.heartbeat_interval, settings.link_timeout)
        } else {
            (
                settings.webrtc_heartbeat_interval,
                settings.webrtc_link_timeout,
            )
        };
        LinkConfig {
            heartbeat_interval,
            link_timeout,
            max_calls: settings.limits.max_calls,
            max_serving: settings.limits.max_serving,
            window: settings.limits.window,
            chunk_digest: !settings.as_of_1_5,
        }
    }

    /// Starts an attempt as the offerer.
    async fn dial(&mut self) -> Result<(), CallError> {
        if self.core.settings.gateway_relay == crate::GatewayRelay::Always {
            let (relayed, (rtc, events)) = Relayed::open(&self.core, self.remote)?;
            self.begin_relayed(relayed, rtc, events, true);
            return Ok(());
        }
        let offered = self.core.gateway.offered_ice_servers();
        let (rtc, events) = self.core.engine.peer(&offered).await.map_err(setup_rtc)?;
        let sdp = rtc.offer().await.map_err(setup_rtc)?;
        let id = self
            .core
            .gateway
            .try_send(self.remote, Body::Offer(SessionDescription { sdp }), None)
            .map_err(|e| CallError::Setup(SetupError::Gateway(e.to_string())))?;
        self.core.links.offer_sent(id, self.remote);
        self.negotiation.offered(id);
        self.begin(id, rtc, events, true, false);
        Ok(())
    }

    fn begin(
        &mut self,
        id: MessageId,
        rtc: Arc<dyn RtcPeer>,
        events: mpsc::Receiver<RtcEvent>,
        offered: bool,
        relayed: bool,
    ) {
        let deadline = now() + self.core.settings.setup_timeout;
        self.attempt = Some(Attempt {
            id,
            rtc,
            events,
            machine: LinkMachine::new(self.link_config(relayed), deadline),
            verifier: PeerVerifier::new(self.core.did, self.remote),
            offered,
            started: now(),
            path_found: false,
            relayed: None,
            outbox: carry::Outbox::default(),
            reassembly: Reassembly::new(self.core.settings.limits.max_message_bytes),
        });
        self.status.send_replace(LinkStatus::Connecting);
    }

    /// Ends the attempt (or, before one exists, the dial) with `end`.
    fn fail(&mut self, end: LinkEnd) {
        match self.attempt.as_mut() {
            Some(attempt) => attempt.machine.end(end),
            None => {
                self.status
                    .send_replace(LinkStatus::Closed(end.call_error()));
            }
        }
    }

    async fn on_signal(&mut self, envelope: Box<Envelope>) -> Result<(), LinkEnd> {
        let correlation = envelope.correlation_id;
        let id = envelope.id;
        match envelope.body {
            Body::Offer(offer) => {
                let Step::Answer(id) = self.negotiation.on_offer(id) else {
                    debug!(peer = %self.remote, "glare: our OFFER wins, theirs ignored");
                    return Ok(());
                };
                if let Some(attempt) = self.attempt.as_mut() {
                    attempt.machine.end(LinkEnd::Replaced);
                    self.flush().await;
                    // Ending the old attempt reset the negotiation: this OFFER is current.
                    self.negotiation.on_offer(id);
                }
                let offered = self.core.gateway.offered_ice_servers();
                let (rtc, events) = self.core.engine.peer(&offered).await.map_err(rtc_failed)?;
                let sdp = rtc.answer(offer.sdp).await.map_err(rtc_failed)?;
                self.core
                    .gateway
                    .try_send(
                        self.remote,
                        Body::Answer(SessionDescription { sdp }),
                        Some(id),
                    )
                    .map_err(gateway_failed)?;
                self.begin(id, rtc, events, false, false);
            }
            Body::Answer(answer) => {
                if self.negotiation.on_answer(correlation) == Step::AcceptAnswer
                    && let Some(attempt) = &self.attempt
                {
                    self.core.links.offer_done(attempt.id);
                    attempt
                        .rtc
                        .accept_answer(answer.sdp)
                        .await
                        .map_err(rtc_failed)?;
                }
            }
            Body::IceCandidate(candidate) => {
                if self.negotiation.on_candidate(correlation) == Step::AddCandidate
                    && let Some(attempt) = &self.attempt
                    && let Err(error) = attempt.rtc.add_candidate(candidate.into()).await
                {
                    debug!(peer = %self.remote, %error, "candidate not usable");
                }
            }
            Body::Error(error) => {
                if let Some(attempt) = &self.attempt
                    && attempt.relayed.is_some()
                    && attempt.machine.is_open()
                    && correlation == Some(attempt.id)
                {
                    return Err(LinkEnd::Failed(lost(&format!(
                        "the gateway did not relay a record of this link: {}",
                        error.code
                    ))));
                }
                if let Some(attempt) = &self.attempt
                    && !attempt.machine.is_open()
                    && correlation == Some(attempt.id)
                {
                    let setup = match error.code {
                        // The gateway does not offer relay, and ICE found no path before.
                        ErrorCode::NotRelayed if attempt.relayed.is_some() => SetupError::NoPath,
                        ErrorCode::UnknownAgent => SetupError::UnknownAgent,
                        ErrorCode::ReceiverBusy => SetupError::ReceiverBusy,
                        code => SetupError::Refused {
                            code,
                            message: error.message,
                        },
                    };
                    return Err(LinkEnd::Failed(CallError::Setup(setup)));
                }
            }
            Body::RelayOpen(open) => self.on_relay_open(id, &open).await?,
            Body::RelayAccept(accept) => self.on_relay_accept(correlation, &accept)?,
            Body::RelayData(record) => self.on_relay_data(correlation, &record)?,
            Body::RelayClose(_) => self.on_relay_close(correlation)?,
            _ => {}
        }
        Ok(())
    }

    fn on_rtc(&mut self, event: RtcEvent) -> Result<(), LinkEnd> {
        let Some(attempt) = self.attempt.as_mut() else {
            return Ok(());
        };
        match event {
            RtcEvent::LocalCandidate(candidate) => {
                let body = Body::IceCandidate(IceCandidate {
                    candidate: candidate.candidate,
                    sdp_mid: candidate.sdp_mid,
                    sdp_mline_index: candidate.sdp_mline_index,
                });
                if let Err(error) = self
                    .core
                    .gateway
                    .try_send(self.remote, body, Some(attempt.id))
                {
                    debug!(peer = %self.remote, %error, "candidate not sent");
                }
            }
            RtcEvent::ChannelOpen => attempt.machine.handle_channel_open(now()),
            RtcEvent::PathFound => attempt.path_found = true,
            RtcEvent::Message(text) => {
                match attempt
                    .verifier
                    .check(text.as_bytes(), carry::signing(attempt), wall_now())
                {
                    Ok(envelope) => {
                        if let Body::Chunk(chunk) = &envelope.body {
                            let limit = self.core.settings.limits.max_message_bytes;
                            let correlation = envelope.correlation_id;
                            let receipts = &mut self.receipts;
                            if let Err(why) =
                                carry::take_chunk(attempt, correlation, chunk, limit, receipts)
                            {
                                self.core.refusals.link_message();
                                debug!(peer = %self.remote, why, "a large message dropped");
                            }
                        } else {
                            self.receipts.received(&envelope, text.as_bytes());
                            attempt.machine.handle_message(now(), envelope);
                        }
                    }
                    Err(refusal) => {
                        self.core.refusals.link_message();
                        debug!(peer = %self.remote, %refusal, "message on the link dropped");
                    }
                }
            }
            RtcEvent::Binary(bytes) => {
                self.core.refusals.link_message();
                debug!(peer = %self.remote, bytes, "binary message on the link dropped");
            }
            RtcEvent::ChannelClosed => {
                return Err(LinkEnd::Failed(lost("the data channel closed")));
            }
            RtcEvent::State(RtcState::Failed) if !attempt.machine.is_open() => {
                return Err(LinkEnd::Failed(CallError::Setup(SetupError::NoPath)));
            }
            RtcEvent::State(RtcState::Failed | RtcState::Closed) => {
                return Err(LinkEnd::Failed(lost("the peer connection failed")));
            }
            RtcEvent::State(RtcState::Disconnected) if attempt.machine.is_open() => {
                return Err(LinkEnd::Failed(lost("ICE lost the peer")));
            }
            RtcEvent::State(_) => {}
        }
        Ok(())
    }

    async fn on_command(&mut self, command: Command) -> Result<(), LinkEnd> {
        let Some(attempt) = self.attempt.as_mut() else {
            return Ok(());
        };
        let machine = &mut attempt.machine;
        match command {
            Command::Call {
                id,
                spec,
                deadline,
                events,
                receipt,
            } => match machine.start_call(now(), id, spec, deadline) {
                Ok(()) => {
                    self.calls.insert(id, events);
                    if receipt {
                        self.receipts.want(id);
                    }
                }
                Err(error) => {
                    let _ = events.send(CallEvent::Done(Err(error)));
                }
            },
            Command::Consumed { id, parts } => machine.consume(id, parts),
            Command::Cancel { id } => {
                self.calls.remove(&id);
                self.receipts.forget(id);
                machine.cancel_call(id);
            }
            Command::Part { id, part, sent } => match machine.serve_part(now(), id, part) {
                PartStatus::Sent => {
                    let _ = sent.send(true);
                }
                PartStatus::Held => {
                    self.waiting_parts.insert(id, sent);
                }
                PartStatus::NotSent => {
                    let _ = sent.send(false);
                }
            },
            Command::Done { id, outcome } => {
                self.serving.remove(&id);
                machine.serve_done(now(), id, outcome);
            }
            Command::Path(reply) => {
                let rtt = attempt.machine.rtt();
                let path = attempt.rtc.path().await.ok().flatten().map(|mut path| {
                    path.rtt_ms = rtt.map(|rtt| rtt.as_secs_f64() * 1e3);
                    path
                });
                let _ = reply.send(path);
            }
            #[cfg(feature = "test-hooks")]
            Command::Break => attempt
                .machine
                .end(LinkEnd::Failed(lost("the link was broken for a test"))),
            #[cfg(feature = "test-hooks")]
            Command::Raw(text) => {
                if let Err(error) = attempt.rtc.send(text).await {
                    debug!(peer = %self.remote, %error, "raw message not sent");
                }
            }
        }
        Ok(())
    }

    /// Puts the outbox's next message, or piece of one, on the channel.
    async fn send_next(&mut self) {
        let Some(attempt) = self.attempt.as_mut() else {
            return;
        };
        let by_digest = attempt.machine.chunks_signed_by_digest();
        let sent = match attempt.outbox.next_wire(&self.core, self.remote, by_digest) {
            Some(Ok(wire)) => attempt.rtc.send(wire).await.map_err(|e| e.to_string()),
            Some(Err(error)) => Err(error),
            None => Ok(()),
        };
        if let Err(error) = sent {
            debug!(peer = %self.remote, %error, "send on the link failed");
            attempt.machine.end(LinkEnd::Failed(lost(&error)));
        }
    }

    /// Sends what the machine queued and acts on its events.
    async fn flush(&mut self) {
        loop {
            let Some(attempt) = self.attempt.as_mut() else {
                return;
            };
            if let Some(transmit) = attempt.machine.poll_transmit() {
                let limit = self.core.settings.limits.max_message_bytes;
                // Only the wire text waits on the send: this future lives in every link's task.
                let receipts = &mut self.receipts;
                if let carry::Send::Now(wire) =
                    carry::prepare(attempt, &self.core, self.remote, transmit, limit, receipts)
                    && let Err(error) = attempt.rtc.send(wire).await
                {
                    debug!(peer = %self.remote, %error, "send on the link failed");
                    attempt
                        .machine
                        .end(LinkEnd::Failed(lost(&error.to_string())));
                }
                continue;
            }
            let Some(event) = attempt.machine.poll_event() else {
                return;
            };
            if let Some(rtc) = self.on_event(event) {
                rtc.close().await;
            }
        }
    }

    /// Acts on one of the link rules' events; an ended attempt's connection is returned, for
    /// the caller to close.
    fn on_event(&mut self, event: LinkEvent) -> Option<Arc<dyn RtcPeer>> {
        match event {
            LinkEvent::Opened => {
                // A relayed link's id stays known: the gateway's ERRORs about its records
                // carry it.
                if let Some(attempt) = &self.attempt
                    && attempt.relayed.is_none()
                {
                    self.core.links.offer_done(attempt.id);
                }
                self.negotiation.reset();
                info!(peer = %self.remote, "link open");
                self.status
                    .send_replace(LinkStatus::Open(self.handle.clone()));
            }
            LinkEvent::Ended(end) => {
                let error = end.call_error();
                info!(peer = %self.remote, code = %error.code(), reason = %error, "link ended");
                let ended = self.attempt.take().map(|Attempt { id, rtc, .. }| {
                    self.core.links.offer_done(id);
                    rtc
                });
                self.negotiation.reset();
                if end != LinkEnd::Replaced {
                    // A replaced attempt is followed at once by the new one.
                    self.status.send_replace(LinkStatus::Closed(error));
                }
                return ended;
            }
            LinkEvent::Call { id, event } => {
                let done = matches!(event, CallEvent::Done(_));
                if done
                    && let Some(receipt) = self.receipts.take(id)
                    && let Some(events) = self.calls.get(&id)
                {
                    let _ = events.send(CallEvent::Receipt(Box::new(receipt)));
                }
                let delivered = self
                    .calls
                    .get(&id)
                    .is_some_and(|events| events.send(event).is_ok());
                if done || !delivered {
                    self.calls.remove(&id);
                }
                if !delivered
                    && !done
                    && let Some(attempt) = self.attempt.as_mut()
                {
                    // The caller went away without a word: stop the call.
                    attempt.machine.cancel_call(id);
                }
            }
            LinkEvent::Serve { id, request } => {
                let key = match &request {
                    ServeRequest::Exec { request, .. } => request.idempotency_key.clone(),
                    ServeRequest::Intent { .. } => None,
                };
                let abort =
                    spawn_handler(&self.core, self.handle.clone(), self.remote, id, request);
                self.serving.insert(id, (abort, key));
            }
            LinkEvent::CancelledByPeer { id } => {
                if let Some((_, Some(key))) = self.serving.get(&id) {
                    self.core
                        .operations
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .cancel(self.remote, key);
                }
            }
            LinkEvent::PartSent { id } => {
                if let Some(sent) = self.waiting_parts.remove(&id) {
                    let _ = sent.send(true);
                }
            }
            LinkEvent::StopServing { id } => {
                self.waiting_parts.remove(&id);
                if let Some((task, _)) = self.serving.remove(&id) {
                    task.abort();
                }
            }
            LinkEvent::Refused => self.core.refusals.link_message(),
            LinkEvent::HeartbeatSent => {
                self.core.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }
}

fn setup_rtc(error: impl std::fmt::Display) -> CallError {
    CallError::Setup(SetupError::Rtc(error.to_string()))
}

fn wall_now() -> ioap_protocol::Timestamp {
    ioap_protocol::Timestamp::from_system_time(std::time::SystemTime::now())
}

impl From<IceCandidate> for Candidate {
    fn from(candidate: IceCandidate) -> Self {
        Candidate {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
        }
    }
}
