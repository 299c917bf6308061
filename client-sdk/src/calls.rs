//! Calls in flight on one link, matched to their responses by `correlation_id`
//! (PROTOCOL_DESIGN.md §11.3). A plain data structure: the link feeds it responses, timeouts
//! and link loss; callers read their call's events from a channel.

use std::collections::HashMap;

use ioap_protocol::payload::{ExecResponse, ExecStatus};
use ioap_protocol::{ErrorCode, MessageId};
use serde_json::Value;
use tokio::sync::mpsc;

/// Default bound on calls in flight per link.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Streamed parts buffered per call before the link waits for the caller.
const PARTS_BUFFER: usize = 64;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    /// The protocol's code: UNKNOWN_CAPABILITY, HANDLER_ERROR, TIMEOUT, LINK_LOST, …
    pub code: ErrorCode,
    /// The explanation (for HANDLER_ERROR, the handler's own message).
    pub message: String,
}

impl CallError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }
}

/// What a call's caller receives.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// A streamed part (only for calls made with `stream: true`).
    Partial(Value),
    /// The final outcome; nothing follows it.
    Done(Result<Value, CallError>),
}

/// What became of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to its caller; the call goes on (a streamed part).
    Part,
    /// Handed to its caller; the call is finished.
    Final,
    /// No call in flight has that id (late, duplicate, or forged): dropped.
    Unknown,
}

#[derive(Debug)]
struct Pending {
    events: mpsc::Sender<CallEvent>,
    stream: bool,
}

/// The calls in flight on one link.
#[derive(Debug)]
pub struct PendingCalls {
    max_in_flight: usize,
    calls: HashMap<MessageId, Pending>,
    /// Set once the link is gone: new calls fail with this at once.
    closed: Option<CallError>,
}

impl PendingCalls {
    /// A table holding at most `max_in_flight` calls.
    pub fn new(max_in_flight: usize) -> Self {
        PendingCalls {
            max_in_flight: max_in_flight.max(1),
            calls: HashMap::new(),
            closed: None,
        }
    }

    /// How many calls are in flight.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Registers the request `id`; its caller reads the returned channel. Fails with
    /// TOO_MANY_REQUESTS when the table is full, and with the link's error once it is closed.
    pub fn begin(
        &mut self,
        id: MessageId,
        stream: bool,
    ) -> Result<mpsc::Receiver<CallEvent>, CallError> {
        if let Some(error) = &self.closed {
            return Err(error.clone());
        }
        if self.calls.len() >= self.max_in_flight {
            return Err(CallError::new(
                ErrorCode::TooManyRequests,
                format!(
                    "{} calls already in flight on this link",
                    self.max_in_flight
                ),
            ));
        }
        let (events, receiver) = mpsc::channel(PARTS_BUFFER);
        self.calls.insert(id, Pending { events, stream });
        Ok(receiver)
    }

    /// Routes an EXEC_RESPONSE to the call it answers. A `partial` for a call that did not
    /// ask to stream ends the call with an error rather than being passed on.
    pub fn on_response(&mut self, correlation: MessageId, response: ExecResponse) -> Delivery {
        let Some(pending) = self.calls.get(&correlation) else {
            return Delivery::Unknown;
        };
        match response.status {
            ExecStatus::Partial if pending.stream => {
                let part = response.result.unwrap_or(Value::Null);
                // A caller that stopped listening is not an error for the link.
                let _ = pending.events.try_send(CallEvent::Partial(part));
                Delivery::Part
            }
            ExecStatus::Partial => {
                self.finish(
                    correlation,
                    Err(CallError::new(
                        ErrorCode::MalformedMessage,
                        "a streamed part for a call that did not ask to stream",
                    )),
                );
                Delivery::Final
            }
            ExecStatus::Ok => {
                self.finish(correlation, Ok(response.result.unwrap_or(Value::Null)));
                Delivery::Final
            }
            ExecStatus::Error => {
                let error = response.error.map_or_else(
                    || CallError::new(ErrorCode::InternalError, "error without details"),
                    |e| CallError::new(e.code, e.message),
                );
                self.finish(correlation, Err(error));
                Delivery::Final
            }
        }
    }

    /// Ends one call with `outcome` (used for timeouts and refusals); false if it was not in
    /// flight.
    pub fn finish(&mut self, id: MessageId, outcome: Result<Value, CallError>) -> bool {
        match self.calls.remove(&id) {
            Some(pending) => {
                let _ = pending.events.try_send(CallEvent::Done(outcome));
                true
            }
            None => false,
        }
    }

    /// Fails every call in flight at once and refuses new ones with `error` (the link was
    /// lost or closed).
    pub fn close(&mut self, error: CallError) {
        for (_, pending) in self.calls.drain() {
            let _ = pending.events.try_send(CallEvent::Done(Err(error.clone())));
        }
        self.closed = Some(error);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

impl Default for PendingCalls {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::payload::ErrorPayload;
    use serde_json::json;

    fn response(status: ExecStatus, result: Option<Value>) -> ExecResponse {
        ExecResponse {
            status,
            result,
            error: None,
            execution_time_ms: 1,
        }
    }

    #[test]
    fn responses_reach_their_own_call_only() {
        let mut calls = PendingCalls::default();
        let (a, b) = (MessageId::random(), MessageId::random());
        let mut rx_a = calls.begin(a, false).expect("room");
        let mut rx_b = calls.begin(b, false).expect("room");
        assert_eq!(
            calls.on_response(b, response(ExecStatus::Ok, Some(json!(2)))),
            Delivery::Final
        );
        assert_eq!(rx_b.try_recv(), Ok(CallEvent::Done(Ok(json!(2)))));
        assert!(rx_a.try_recv().is_err(), "a's caller saw b's response");
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls.on_response(b, response(ExecStatus::Ok, None)),
            Delivery::Unknown,
            "a duplicate response is dropped"
        );
    }

    #[test]
    fn streamed_parts_arrive_in_order_then_the_final_result() {
        let mut calls = PendingCalls::default();
        let id = MessageId::random();
        let mut rx = calls.begin(id, true).expect("room");
        for i in 0..3 {
            assert_eq!(
                calls.on_response(id, response(ExecStatus::Partial, Some(json!(i)))),
                Delivery::Part
            );
        }
        calls.on_response(id, response(ExecStatus::Ok, Some(json!("done"))));
        let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            events,
            vec![
                CallEvent::Partial(json!(0)),
                CallEvent::Partial(json!(1)),
                CallEvent::Partial(json!(2)),
                CallEvent::Done(Ok(json!("done"))),
            ]
        );
        assert!(calls.is_empty());
    }

    #[test]
    fn a_part_for_a_non_streaming_call_ends_it() {
        let mut calls = PendingCalls::default();
        let id = MessageId::random();
        let mut rx = calls.begin(id, false).expect("room");
        calls.on_response(id, response(ExecStatus::Partial, Some(json!(1))));
        assert!(matches!(
            rx.try_recv(),
            Ok(CallEvent::Done(Err(CallError {
                code: ErrorCode::MalformedMessage,
                ..
            })))
        ));
    }

    #[test]
    fn handler_errors_pass_their_code_and_message_through() {
        let mut calls = PendingCalls::default();
        let id = MessageId::random();
        let mut rx = calls.begin(id, false).expect("room");
        let mut failed = response(ExecStatus::Error, None);
        failed.error = Some(ErrorPayload::new(ErrorCode::HandlerError, "disk full"));
        calls.on_response(id, failed);
        assert_eq!(
            rx.try_recv(),
            Ok(CallEvent::Done(Err(CallError::new(
                ErrorCode::HandlerError,
                "disk full"
            ))))
        );
    }

    #[test]
    fn the_table_is_bounded_and_link_loss_fails_every_call_present_and_future() {
        let mut calls = PendingCalls::new(2);
        let mut first = calls.begin(MessageId::random(), false).expect("room");
        let mut second = calls.begin(MessageId::random(), true).expect("room");
        assert_eq!(
            calls
                .begin(MessageId::random(), false)
                .err()
                .map(|e| e.code),
            Some(ErrorCode::TooManyRequests)
        );
        calls.close(CallError::new(ErrorCode::LinkLost, "peer vanished"));
        for rx in [&mut first, &mut second] {
            assert!(matches!(
                rx.try_recv(),
                Ok(CallEvent::Done(Err(CallError {
                    code: ErrorCode::LinkLost,
                    ..
                })))
            ));
        }
        assert!(calls.is_empty());
        assert_eq!(
            calls
                .begin(MessageId::random(), false)
                .err()
                .map(|e| e.code),
            Some(ErrorCode::LinkLost),
            "a call begun after the loss fails at once instead of waiting for its timeout"
        );
    }

    #[test]
    fn a_timed_out_call_is_finished_once() {
        let mut calls = PendingCalls::default();
        let id = MessageId::random();
        let mut rx = calls.begin(id, false).expect("room");
        assert!(calls.finish(id, Err(CallError::new(ErrorCode::Timeout, "5000 ms"))));
        assert!(!calls.finish(id, Ok(json!(1))), "finished twice");
        assert!(matches!(
            rx.try_recv(),
            Ok(CallEvent::Done(Err(CallError {
                code: ErrorCode::Timeout,
                ..
            })))
        ));
        assert_eq!(
            calls.on_response(id, response(ExecStatus::Ok, None)),
            Delivery::Unknown,
            "a late response after the timeout is dropped"
        );
    }
}
