//! Messages a link cannot carry (PROTOCOL_DESIGN.md §11.6): ours that could not be sent, and
//! the peer's that this side refused at their first CHUNK. Either way the call or request the
//! message belonged to ends with a word, never silently.

use std::time::Instant;

use ioap_protocol::payload::{ErrorPayload, ExecResponse, ExecStatus};
use ioap_protocol::{Body, ErrorCode, MessageId, MessageType};

use super::callee::elapsed_ms;
use super::{LinkEvent, LinkMachine, State, Timer};
use crate::error::CallError;

/// One of our envelopes that did not go out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsent {
    /// Its type.
    pub(crate) ty: MessageType,
    /// Its id, when a caller chose it (our requests).
    pub(crate) id: Option<MessageId>,
    /// Its `correlation_id` (our answers).
    pub(crate) correlation: Option<MessageId>,
    /// Why.
    pub(crate) cause: UnsentCause,
}

/// Why an envelope of ours did not go out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum UnsentCause {
    /// Over this side's maximum, or over 64 KiB to a peer that takes no CHUNKs.
    TooLarge {
        /// The signed envelope's size.
        size: u64,
        /// The limit it passed.
        limit: u64,
    },
    /// It breaks a rule of §8 (depth, integer range).
    Invalid(String),
}

impl LinkMachine {
    /// Whether the peer takes messages over 64 KiB in CHUNKs.
    pub(crate) fn peer_takes_chunks(&self) -> bool {
        self.peer.chunks
    }

    /// Whether the messages carried in CHUNKs either way are signed over their text's digest
    /// (both sides list `chunk_digest`, 1.6).
    pub(crate) fn chunks_signed_by_digest(&self) -> bool {
        self.config.chunk_digest && self.peer.chunks && self.peer.chunk_digest
    }

    /// A CHUNK from the peer was verified: traffic, as any message is, though the rules see
    /// only the message it belongs to.
    pub(crate) fn heard(&mut self, now: Instant) {
        if let State::Open { last_heard, .. } = &mut self.state {
            *last_heard = now;
        }
    }

    /// An envelope of ours could not be sent: our call fails, or the peer's request is answered
    /// with the reason instead.
    pub(crate) fn unsendable(&mut self, now: Instant, unsent: Unsent) {
        let (code, message) = match &unsent.cause {
            UnsentCause::TooLarge { size, limit } => (
                ErrorCode::TooLarge,
                format!("the answer is {size} bytes; the limit is {limit}"),
            ),
            UnsentCause::Invalid(reason) => (
                ErrorCode::InternalError,
                format!("the answer cannot be sent: {reason}"),
            ),
        };
        match (unsent.ty, unsent.id, unsent.correlation) {
            (MessageType::ExecRequest | MessageType::Intent, Some(call), None) => {
                let error = match unsent.cause {
                    UnsentCause::TooLarge { size, limit } => CallError::TooLarge { size, limit },
                    UnsentCause::Invalid(reason) => CallError::Invalid { reason },
                };
                self.finish_call(call, Err(error));
            }
            (MessageType::ExecResponse, _, Some(request)) => {
                let started = self.stop_serving_for(request);
                let execution_time_ms = started.map_or(0, |started| elapsed_ms(now, started));
                let response = ExecResponse {
                    status: ExecStatus::Error,
                    result: None,
                    error: Some(ErrorPayload::new(code, message)),
                    execution_time_ms,
                };
                self.send(Body::ExecResponse(response), Some(request));
            }
            (MessageType::Intent | MessageType::Error, _, Some(request)) => {
                self.stop_serving_for(request);
                self.send(Body::Error(ErrorPayload::new(code, message)), Some(request));
            }
            // Nothing else this side sends can be large or malformed.
            _ => self.events.push_back(LinkEvent::Refused),
        }
    }

    /// The peer's CHUNKed message was refused at its first piece (§11.6): our call it answers
    /// ends with TOO_LARGE and is cancelled, or the peer's request is answered with `code`.
    pub(crate) fn refuse_message(
        &mut self,
        message: MessageId,
        correlation: Option<MessageId>,
        code: ErrorCode,
        size: u64,
        limit: u64,
    ) {
        match correlation {
            Some(call) if self.calls.get_mut(&call).is_some() => {
                self.abandon_call(call, CallError::TooLarge { size, limit });
            }
            Some(_) => {}
            None => {
                let message_text = match code {
                    ErrorCode::TooLarge => {
                        format!("the message is {size} bytes; the limit is {limit}")
                    }
                    _ => "too many large messages under way on this link".to_owned(),
                };
                self.send(
                    Body::Error(ErrorPayload::new(code, message_text)),
                    Some(message),
                );
            }
        }
    }

    /// Stops serving `request` if it still is (a part of its answer could not go out); when it
    /// started.
    fn stop_serving_for(&mut self, request: MessageId) -> Option<Instant> {
        let served = self.served.remove(&request)?;
        self.timers
            .remove(&(served.deadline, Timer::Served(request)));
        self.events
            .push_back(LinkEvent::StopServing { id: request });
        Some(served.started)
    }
}
