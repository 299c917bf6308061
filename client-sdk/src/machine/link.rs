//! One link's protocol after its data channel exists (PROTOCOL_DESIGN.md §11.1 step 4–5,
//! §11.3, §11.4), as a state machine with time as an input: no I/O, no clock, no randomness.
//!
//! The driver feeds it verified envelopes from the peer, the application's calls, the
//! handlers' parts and results, and the time; it reads back envelopes to sign and send
//! ([`LinkMachine::poll_transmit`]), events for callers and handlers
//! ([`LinkMachine::poll_event`]) and when to call [`LinkMachine::handle_timeout`] next.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use ioap_protocol::payload::{ErrorPayload, Intent, IntentReply, Ping};
use ioap_protocol::{Body, Envelope, MessageId};
use serde_json::Value;

use super::calls::OutCalls;
use super::events::{CallEvent, LinkEnd, LinkEvent, Transmit};
use super::serving::ServedRequests;
use crate::error::CallError;

mod callee;
mod caller;
mod extras;
mod oversize;

pub(crate) use extras::ExecExtras;
pub(crate) use oversize::{Unsent, UnsentCause};

/// How long the callee serves an INTENT (callers wait as long by default).
pub const INTENT_DEADLINE: Duration = Duration::from_secs(30);

/// The fixed settings of one link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkConfig {
    /// A PING goes out each interval in which we sent nothing else.
    pub(crate) heartbeat_interval: Duration,
    /// Silence from the peer for this long loses the link.
    pub(crate) link_timeout: Duration,
    /// Our calls in flight at once.
    pub(crate) max_calls: usize,
    /// The peer's requests served at once.
    pub(crate) max_serving: usize,
    /// The window of our streamed calls to a peer that does flow control.
    pub(crate) window: u32,
    /// Whether this side lists `chunk_digest` (1.6); off only where a test plays a 1.5 peer.
    pub(crate) chunk_digest: bool,
}

/// What the application asks of the peer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallSpec {
    /// Run a capability.
    Exec {
        capability: String,
        args: Value,
        stream: bool,
        /// 1.5 fields: idempotency key, trace context, grants.
        extras: Box<ExecExtras>,
    },
    /// An INTENT query or task.
    Intent(Intent),
}

/// How a handler ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServeOutcome {
    /// An EXEC's final result.
    Value(Value),
    /// An INTENT's reply.
    Reply(IntentReply),
    /// The request failed; answered with this error.
    Failed(ErrorPayload),
}

/// What became of a handler's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartStatus {
    /// It went out.
    Sent,
    /// It waits for credit.
    Held,
    /// It will not be sent: the caller did not ask to stream, or the request is no longer
    /// served.
    NotSent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Call(MessageId),
    Served(MessageId),
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Setup {
        deadline: Instant,
    },
    Open {
        last_heard: Instant,
        next_tick: Instant,
    },
    Ended(LinkEnd),
}

/// The peer's 1.x features, as its FEATURES announced them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PeerFeatures {
    flow: bool,
    cancel: bool,
    chunks: bool,
    chunk_digest: bool,
    idempotency: bool,
    trace: bool,
    grants: bool,
}

/// One link's state.
#[derive(Debug)]
pub(crate) struct LinkMachine {
    config: LinkConfig,
    state: State,
    hello_sent: bool,
    peer: PeerFeatures,
    sent_since_tick: bool,
    ping_sequence: u64,
    /// Our PING awaiting its PONG: its sequence and when it was queued.
    ping_out: Option<(u64, Instant)>,
    /// Smoothed round trip from PING to PONG (7/8 of the old value, 1/8 of each sample).
    rtt: Option<Duration>,
    calls: OutCalls,
    served: ServedRequests,
    timers: BTreeSet<(Instant, Timer)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LinkEvent>,
}

impl LinkMachine {
    /// A link whose channel must open, and the peer's first PING arrive, by `setup_deadline`.
    pub(crate) fn new(config: LinkConfig, setup_deadline: Instant) -> Self {
        LinkMachine {
            config,
            state: State::Setup {
                deadline: setup_deadline,
            },
            hello_sent: false,
            peer: PeerFeatures::default(),
            sent_since_tick: false,
            ping_sequence: 0,
            ping_out: None,
            rtt: None,
            calls: OutCalls::default(),
            served: ServedRequests::default(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether the peer's first PING has arrived and the link has not ended.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Why the link ended, once it has.
    pub(crate) fn ended(&self) -> Option<&LinkEnd> {
        match &self.state {
            State::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// Calls in flight and requests being served.
    #[cfg(test)]
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.calls.len(), self.served.len())
    }

    /// The next envelope to sign and send.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for callers, handlers or the driver.
    pub(crate) fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    /// Changes the heartbeat and silence limit (a link moving to the gateway relay before it
    /// opens, where the heartbeat is the only liveness).
    pub(crate) fn set_liveness(&mut self, heartbeat_interval: Duration, link_timeout: Duration) {
        self.config.heartbeat_interval = heartbeat_interval;
        self.config.link_timeout = link_timeout;
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let link = match &self.state {
            State::Setup { deadline } => *deadline,
            State::Open {
                last_heard,
                next_tick,
            } => (*last_heard + self.config.link_timeout).min(*next_tick),
            State::Ended(_) => return None,
        };
        let timer = self.timers.first().map(|(at, _)| *at);
        Some(timer.map_or(link, |timer| timer.min(link)))
    }

    fn send(&mut self, body: Body, correlation: Option<MessageId>) {
        self.sent_since_tick = true;
        self.transmits.push_back(Transmit {
            id: None,
            body,
            correlation,
        });
    }

    /// The data channel opened: our FEATURES and first PING go out (§11.1, §11.4).
    pub(crate) fn handle_channel_open(&mut self, now: Instant) {
        if self.hello_sent || self.ended().is_some() {
            return;
        }
        self.ping_out = Some((0, now));
        self.hello_sent = true;
        self.send(Body::Features(extras::ours(self.config.chunk_digest)), None);
        self.send(Body::Ping(Ping { sequence: 0 }), None);
    }

    /// A verified envelope from the peer arrived on the channel.
    pub(crate) fn handle_message(&mut self, now: Instant, envelope: Envelope) {
        match &mut self.state {
            State::Ended(_) => {}
            State::Setup { .. } => match envelope.body {
                Body::Features(features) => {
                    self.peer = PeerFeatures::from_announced(&features);
                }
                Body::Ping(ping) => {
                    // The peer's PING may come before our channel-open event.
                    self.handle_channel_open(now);
                    self.state = State::Open {
                        last_heard: now,
                        next_tick: now + self.config.heartbeat_interval,
                    };
                    self.events.push_back(LinkEvent::Opened);
                    self.send(Body::Pong(ping), Some(envelope.id));
                }
                _ => self.events.push_back(LinkEvent::Refused),
            },
            State::Open { last_heard, .. } => {
                *last_heard = now;
                self.dispatch(now, envelope);
            }
        }
    }

    fn dispatch(&mut self, now: Instant, envelope: Envelope) {
        let correlation = envelope.correlation_id;
        if let Some(id) = correlation
            && self
                .calls
                .get_mut(&id)
                .is_some_and(|call| call.deadline <= now)
        {
            // An answer after our deadline (its timer not yet handled) does not count.
            self.abandon_call(id, CallError::Timeout);
            return;
        }
        match (envelope.body, correlation) {
            (Body::Ping(ping), _) => self.send(Body::Pong(ping), Some(envelope.id)),
            (Body::Pong(pong), _) => self.on_pong(now, pong.sequence),
            (Body::Features(_), _) => {}
            (Body::ExecRequest(request), _) => self.serve_exec(now, envelope.id, request),
            (Body::Intent(Intent::Reply(reply)), Some(id)) => {
                let reply = serde_json::to_value(reply).unwrap_or(Value::Null);
                self.finish_call(id, Ok(reply));
            }
            (Body::Intent(intent), None) => self.serve_intent(now, envelope.id, intent),
            (Body::ExecResponse(response), Some(id)) => self.on_response(id, response),
            (Body::Error(error), Some(id)) => {
                self.finish_call(id, Err(CallError::remote(error.code, error.message)));
            }
            (Body::Credit(credit), Some(id)) => self.on_credit(now, id, credit),
            (Body::Cancel(_), Some(id)) => self.stop_serving(id),
            _ => self.events.push_back(LinkEvent::Refused),
        }
    }

    /// Time passed: deadlines, heartbeat, silence.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Call(id) => self.abandon_call(id, CallError::Timeout),
                Timer::Served(id) => self.serve_timed_out(id),
            }
        }
        match self.state {
            State::Setup { deadline } if now >= deadline => {
                self.end(LinkEnd::SetupTimeout);
            }
            State::Open {
                last_heard,
                next_tick,
            } => {
                if now >= last_heard + self.config.link_timeout {
                    self.end(LinkEnd::Silent(self.config.link_timeout));
                } else if now >= next_tick {
                    self.heartbeat(now, next_tick);
                }
            }
            _ => {}
        }
    }

    fn heartbeat(&mut self, now: Instant, tick: Instant) {
        let mut next = tick + self.config.heartbeat_interval;
        if next <= now {
            // Ticks missed while the driver was busy are not made up.
            next = now + self.config.heartbeat_interval;
        }
        if let State::Open { next_tick, .. } = &mut self.state {
            *next_tick = next;
        }
        if !std::mem::take(&mut self.sent_since_tick) {
            self.ping_sequence += 1;
            self.ping_out = Some((self.ping_sequence, now));
            self.transmits.push_back(Transmit {
                id: None,
                body: Body::Ping(Ping {
                    sequence: self.ping_sequence,
                }),
                correlation: None,
            });
            self.events.push_back(LinkEvent::HeartbeatSent);
        }
    }

    /// The PONG to our PING `sequence` arrived: one round-trip sample.
    fn on_pong(&mut self, now: Instant, sequence: u64) {
        let Some((sent_sequence, sent_at)) = self.ping_out else {
            return;
        };
        if sent_sequence != sequence {
            return;
        }
        self.ping_out = None;
        let sample = now.saturating_duration_since(sent_at);
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(smoothed) => (smoothed * 7 + sample) / 8,
        });
    }

    /// The smoothed round trip of PING → PONG on this link (`None` before the first PONG).
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Ends the link: every call fails with `end`'s error, every handler is stopped.
    pub(crate) fn end(&mut self, end: LinkEnd) {
        if self.ended().is_some() {
            return;
        }
        let error = end.call_error();
        for (id, _) in self.calls.drain() {
            self.events.push_back(LinkEvent::Call {
                id,
                event: CallEvent::Done(Err(error.clone())),
            });
        }
        for (id, _) in self.served.drain() {
            self.events.push_back(LinkEvent::StopServing { id });
        }
        self.timers.clear();
        self.transmits.clear();
        self.state = State::Ended(end.clone());
        self.events.push_back(LinkEvent::Ended(end));
    }
}
