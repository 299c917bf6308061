//! The task driving one peer's link (PROTOCOL_DESIGN.md §11.1, §11.3): it answers or makes
//! the OFFER, trickles candidates through the gateway, verifies everything arriving on the
//! data channel, opens the link on the peer's first signed PING, keeps it alive with a
//! heartbeat, and ends it on loss, on a setup deadline, or when the agent closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ioap_protocol::payload::{IceCandidate, Ping, SessionDescription};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, MessageId};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::calls::CallError;
use crate::core::AgentCore;
use crate::link::{Link, now};
use crate::negotiation::{Negotiation, Step};
use crate::rtc::{Candidate, RtcEvent, RtcPeer, RtcState};
use crate::table::LinkStatus;
use crate::verify::PeerVerifier;

/// How a driver begins.
pub(crate) enum Start {
    /// We dial.
    Dial,
    /// The peer dialed: this is its OFFER.
    Answer(Box<Envelope>),
}

/// One link attempt: the peer connection and what is known of it.
struct Attempt {
    /// The OFFER's id, which names the attempt.
    id: MessageId,
    rtc: RtcPeer,
    events: mpsc::Receiver<RtcEvent>,
    link: Arc<Link>,
    verifier: PeerVerifier,
    hello_sent: bool,
    open: bool,
    /// Setup deadline until open; then the time the peer was last heard.
    deadline: Instant,
    ping_sequence: u64,
}

struct Driver {
    core: Arc<AgentCore>,
    remote: Did,
    negotiation: Negotiation,
    status: watch::Sender<LinkStatus>,
    attempt: Option<Attempt>,
}

enum Input {
    Stop,
    Signal(Option<Box<Envelope>>),
    Rtc(Option<RtcEvent>),
    Deadline,
    Heartbeat,
}

/// Runs one peer's link until it ends.
pub(crate) async fn run(
    core: Arc<AgentCore>,
    remote: Did,
    generation: u64,
    start: Start,
    mut signals: mpsc::Receiver<Box<Envelope>>,
    status: watch::Sender<LinkStatus>,
) {
    let mut driver = Driver {
        negotiation: Negotiation::new(core.did, remote),
        core: Arc::clone(&core),
        remote,
        status,
        attempt: None,
    };
    let started = match start {
        Start::Dial => driver.dial().await,
        Start::Answer(offer) => driver.on_signal(offer).await,
    };
    if let Err(error) = started {
        driver.end(error).await;
    }
    let mut heartbeat = tokio::time::interval(core.settings.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while let Some(attempt) = driver.attempt.as_mut() {
        let input = tokio::select! {
            () = core.stop.cancelled() => Input::Stop,
            signal = signals.recv() => Input::Signal(signal),
            event = attempt.events.recv() => Input::Rtc(event),
            () = tokio::time::sleep_until(attempt.deadline) => Input::Deadline,
            _ = heartbeat.tick(), if attempt.open => Input::Heartbeat,
        };
        let outcome = match input {
            Input::Stop => Err(CallError::new(ErrorCode::ShuttingDown, "the agent closed")),
            Input::Signal(Some(envelope)) => driver.on_signal(envelope).await,
            Input::Signal(None) => Err(CallError::new(ErrorCode::ShuttingDown, "closed")),
            Input::Rtc(Some(event)) => driver.on_event(event).await,
            Input::Rtc(None) => Err(lost("the peer connection ended")),
            Input::Deadline => Err(driver.deadline_error()),
            Input::Heartbeat => driver.ping().await,
        };
        if let Err(error) = outcome {
            driver.end(error).await;
        }
    }
    core.links.remove(remote, generation);
}

fn lost(reason: &str) -> CallError {
    CallError::new(ErrorCode::LinkLost, reason)
}

impl Driver {
    /// Starts an attempt as the offerer.
    async fn dial(&mut self) -> Result<(), CallError> {
        let (rtc, events) = self.new_peer().await?;
        let sdp = rtc.offer().await.map_err(refused)?;
        let id = self
            .core
            .gateway
            .try_send(self.remote, Body::Offer(SessionDescription { sdp }), None)
            .map_err(|e| CallError::new(ErrorCode::ConnectionRefused, e.to_string()))?;
        self.core.links.offer_sent(id, self.remote);
        self.negotiation.offered(id);
        self.begin(id, rtc, events);
        Ok(())
    }

    async fn new_peer(&self) -> Result<(RtcPeer, mpsc::Receiver<RtcEvent>), CallError> {
        self.core.engine.peer().await.map_err(refused)
    }

    fn begin(&mut self, id: MessageId, rtc: RtcPeer, events: mpsc::Receiver<RtcEvent>) {
        let link = Arc::new(Link::new(
            self.core.identity.clone(),
            self.remote,
            rtc.clone(),
            self.core.settings.limits,
            self.core.stop.child_token(),
            self.core.tasks.clone(),
        ));
        self.attempt = Some(Attempt {
            id,
            rtc,
            events,
            link,
            verifier: PeerVerifier::new(self.core.did, self.remote),
            hello_sent: false,
            open: false,
            deadline: Instant::now() + self.core.settings.setup_timeout,
            ping_sequence: 0,
        });
        self.status.send_replace(LinkStatus::Connecting);
    }

    /// Ends the current attempt (if any) and tells callers why.
    async fn end(&mut self, error: CallError) {
        if let Some(attempt) = self.attempt.take() {
            info!(peer = %self.remote, code = %error.code, reason = %error.message, "link ended");
            attempt.link.end(error.clone());
            self.core.links.offer_done(attempt.id);
            attempt.rtc.close().await;
        }
        self.negotiation.reset();
        self.status.send_replace(LinkStatus::Closed(error));
    }

    fn deadline_error(&self) -> CallError {
        match &self.attempt {
            Some(attempt) if attempt.open => lost(&format!(
                "nothing heard from the peer for {} ms",
                self.core.settings.link_timeout.as_millis()
            )),
            _ => CallError::new(
                ErrorCode::Timeout,
                format!(
                    "the link was not set up within {} ms",
                    self.core.settings.setup_timeout.as_millis()
                ),
            ),
        }
    }

    async fn on_signal(&mut self, envelope: Box<Envelope>) -> Result<(), CallError> {
        let correlation = envelope.correlation_id;
        let id = envelope.id;
        match envelope.body {
            Body::Offer(offer) => {
                let Step::Answer(id) = self.negotiation.on_offer(id) else {
                    debug!(peer = %self.remote, "glare: our OFFER wins, theirs ignored");
                    return Ok(());
                };
                if self.attempt.is_some() {
                    self.replace_attempt().await;
                }
                let (rtc, events) = self.new_peer().await?;
                let sdp = rtc.answer(offer.sdp).await.map_err(refused)?;
                self.core
                    .gateway
                    .try_send(
                        self.remote,
                        Body::Answer(SessionDescription { sdp }),
                        Some(id),
                    )
                    .map_err(|e| CallError::new(ErrorCode::ConnectionRefused, e.to_string()))?;
                self.begin(id, rtc, events);
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
                        .map_err(refused)?;
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
                    && !attempt.open
                    && correlation == Some(attempt.id)
                {
                    return Err(CallError::new(error.code, error.message));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The peer started a new attempt: the current one ends for its callers.
    async fn replace_attempt(&mut self) {
        if let Some(old) = self.attempt.take() {
            old.link.end(lost(
                "the peer started a new link while this one was in use",
            ));
            self.core.links.offer_done(old.id);
            old.rtc.close().await;
        }
    }

    async fn on_event(&mut self, event: RtcEvent) -> Result<(), CallError> {
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
            RtcEvent::ChannelOpen => send_hello(attempt).await?,
            RtcEvent::Message(text) => {
                let envelope = match attempt.verifier.check(text.as_bytes(), now()) {
                    Ok(envelope) => envelope,
                    Err(refusal) => {
                        self.core.refusals.link_message();
                        debug!(peer = %self.remote, %refusal, "message on the link dropped");
                        return Ok(());
                    }
                };
                if attempt.open {
                    attempt.deadline = Instant::now() + self.core.settings.link_timeout;
                    attempt.link.dispatch(envelope, &self.core.handlers);
                } else if matches!(envelope.body, Body::Ping(_)) {
                    send_hello(attempt).await?;
                    attempt.open = true;
                    attempt.deadline = Instant::now() + self.core.settings.link_timeout;
                    attempt.link.dispatch(envelope, &self.core.handlers);
                    self.negotiation.reset();
                    self.core.links.offer_done(attempt.id);
                    info!(peer = %self.remote, "link open");
                    self.status
                        .send_replace(LinkStatus::Open(Arc::clone(&attempt.link)));
                } else {
                    self.core.refusals.link_message();
                    debug!(peer = %self.remote, "first message on the link is not a PING, dropped");
                }
            }
            RtcEvent::Binary(bytes) => {
                self.core.refusals.link_message();
                debug!(peer = %self.remote, bytes, "binary message on the link dropped");
            }
            RtcEvent::ChannelClosed => return Err(lost("the data channel closed")),
            RtcEvent::State(RtcState::Failed | RtcState::Closed) => {
                return Err(lost("the peer connection failed"));
            }
            RtcEvent::State(RtcState::Disconnected) if attempt.open => {
                return Err(lost("ICE lost the peer"));
            }
            RtcEvent::State(_) => {}
        }
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), CallError> {
        let Some(attempt) = self.attempt.as_mut() else {
            return Ok(());
        };
        if attempt.link.heartbeat(attempt.ping_sequence + 1).await? {
            attempt.ping_sequence += 1;
            self.core.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Our first message on the channel: a signed PING (sent once).
async fn send_hello(attempt: &mut Attempt) -> Result<(), CallError> {
    if !attempt.hello_sent {
        attempt.hello_sent = true;
        let hello = Body::Ping(Ping { sequence: 0 });
        attempt.link.send(hello, None).await?;
    }
    Ok(())
}

fn refused(error: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::ConnectionRefused, error.to_string())
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

/// Waits for a link to open; the driver's own deadline bounds the wait.
pub(crate) async fn wait_open(
    mut status: watch::Receiver<LinkStatus>,
    stop: &CancellationToken,
) -> Result<Arc<Link>, CallError> {
    loop {
        match &*status.borrow_and_update() {
            LinkStatus::Open(link) => return Ok(Arc::clone(link)),
            LinkStatus::Closed(error) => return Err(error.clone()),
            LinkStatus::Connecting => {}
        }
        tokio::select! {
            () = stop.cancelled() => {
                return Err(CallError::new(ErrorCode::ShuttingDown, "the agent closed"));
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return Err(lost("the link's task ended"));
                }
            }
        }
    }
}
