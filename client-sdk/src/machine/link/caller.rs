//! The caller's side of a link: calls and their streams (PROTOCOL_DESIGN.md §11.3, §11.4).

use std::time::Instant;

use ioap_protocol::payload::{
    Cancel, Credit, ExecRequest, ExecResponse, ExecStatus, MAX_EXEC_TIMEOUT_MS,
};
use ioap_protocol::{Body, ErrorCode, MessageId};
use serde_json::Value;

use super::{CallSpec, LinkMachine, State, Timer};
use crate::error::CallError;
use crate::machine::calls::{CallKind, Flow, OutCall, PartCheck};
use crate::machine::events::{CallEvent, LinkEvent, Transmit};

impl LinkMachine {
    /// Sends a request `id` for the application, to be answered by `deadline`.
    pub(crate) fn start_call(
        &mut self,
        now: Instant,
        id: MessageId,
        spec: CallSpec,
        deadline: Instant,
    ) -> Result<(), CallError> {
        match &self.state {
            State::Ended(end) => return Err(end.call_error()),
            State::Setup { .. } => return Err(CallError::local_busy("the link is not open yet")),
            State::Open { .. } => {}
        }
        if self.calls.len() >= self.config.max_calls {
            return Err(CallError::local_busy(format!(
                "{} calls already in flight on this link",
                self.config.max_calls
            )));
        }
        if deadline <= now {
            return Err(CallError::Timeout);
        }
        let (body, kind, flow) = match spec {
            CallSpec::Exec {
                capability,
                args,
                stream,
                extras,
            } => {
                let window = (stream && self.peer.flow).then_some(self.config.window);
                // Rounded up: the callee's deadline (its receipt + timeout_ms) is never before
                // ours, so its TIMEOUT cannot overtake our own.
                let millis = deadline
                    .saturating_duration_since(now)
                    .as_micros()
                    .div_ceil(1000);
                let mut request = ExecRequest::new(capability, args);
                request.timeout_ms = u64::try_from(millis)
                    .unwrap_or(u64::MAX)
                    .clamp(1, MAX_EXEC_TIMEOUT_MS);
                request.stream = stream;
                request.window = window;
                self.add_extras(&mut request, *extras)?;
                let flow = window.map(|window| Flow {
                    window,
                    granted: window,
                    pending: 0,
                });
                (Body::ExecRequest(request), CallKind::Exec { stream }, flow)
            }
            CallSpec::Intent(mut intent) => {
                self.fit_intent(&mut intent);
                (Body::Intent(intent), CallKind::Intent, None)
            }
        };
        self.sent_since_tick = true;
        self.transmits.push_back(Transmit {
            id: Some(id),
            body,
            correlation: None,
        });
        let call = OutCall {
            kind,
            deadline,
            held: 0,
            flow,
        };
        self.timers.insert((deadline, Timer::Call(id)));
        self.calls.insert(id, call);
        Ok(())
    }

    /// The application consumed `parts` of call `id`'s stream.
    pub(crate) fn consume(&mut self, id: MessageId, parts: u32) {
        let Some(grant) = self.calls.get_mut(&id).and_then(|call| call.consume(parts)) else {
            return;
        };
        self.send(Body::Credit(Credit { parts: grant }), Some(id));
    }

    /// The application stopped waiting for call `id` (dropped or cancelled it).
    pub(crate) fn cancel_call(&mut self, id: MessageId) {
        if let Some(call) = self.calls.remove(&id) {
            self.timers.remove(&(call.deadline, Timer::Call(id)));
            self.send_cancel(id, "the caller cancelled the call");
        }
    }

    pub(super) fn send_cancel(&mut self, id: MessageId, reason: &str) {
        if self.peer.cancel {
            let reason = Some(reason.to_owned());
            self.send(Body::Cancel(Cancel { reason }), Some(id));
        }
    }

    /// Ends call `id` for a reason of ours and tells the callee to stop.
    pub(super) fn abandon_call(&mut self, id: MessageId, error: CallError) {
        if self.finish_call(id, Err(error)) {
            self.send_cancel(id, "the caller stopped waiting");
        }
    }

    pub(super) fn finish_call(&mut self, id: MessageId, outcome: Result<Value, CallError>) -> bool {
        let Some(call) = self.calls.remove(&id) else {
            return false;
        };
        self.timers.remove(&(call.deadline, Timer::Call(id)));
        self.events.push_back(LinkEvent::Call {
            id,
            event: CallEvent::Done(outcome),
        });
        true
    }

    pub(super) fn on_response(&mut self, id: MessageId, response: ExecResponse) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match response.status {
            ExecStatus::Partial => match call.receive_part() {
                PartCheck::Deliver => self.events.push_back(LinkEvent::Call {
                    id,
                    event: CallEvent::Part(response.result.unwrap_or(Value::Null)),
                }),
                PartCheck::NotStreaming => self.abandon_call(
                    id,
                    CallError::protocol("a streamed part for a call that did not ask to stream"),
                ),
                PartCheck::OverCredit => self.abandon_call(
                    id,
                    CallError::protocol("the callee sent more parts than the caller had room for"),
                ),
            },
            ExecStatus::Ok => {
                self.finish_call(id, Ok(response.result.unwrap_or(Value::Null)));
            }
            ExecStatus::Error => {
                let error = response.error.map_or_else(
                    || CallError::remote(ErrorCode::InternalError, "error without details"),
                    |e| CallError::remote(e.code, e.message),
                );
                self.finish_call(id, Err(error));
            }
        }
    }
}
