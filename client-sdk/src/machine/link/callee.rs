//! The callee's side of a link: the peer's requests being served, their parts and answers
//! (PROTOCOL_DESIGN.md §11.3, §11.4).

use std::time::{Duration, Instant};

use ioap_protocol::payload::{Credit, ErrorPayload, ExecRequest, ExecResponse, ExecStatus, Intent};
use ioap_protocol::{Body, ErrorCode, MessageId};
use serde_json::Value;

use super::{INTENT_DEADLINE, LinkMachine, PartStatus, ServeOutcome, Timer};
use crate::machine::events::{LinkEvent, ServeRequest};
use crate::machine::serving::{PartPlan, Served, ServedKind};

impl LinkMachine {
    pub(super) fn admit(&mut self, now: Instant, id: MessageId, served: Served) -> bool {
        if self.served.len() >= self.config.max_serving {
            let refusal = ErrorPayload::new(
                ErrorCode::TooManyRequests,
                format!(
                    "{} requests already being served on this link",
                    self.config.max_serving
                ),
            );
            self.answer(
                now,
                id,
                served.kind,
                served.started,
                ServeOutcome::Failed(refusal),
            );
            return false;
        }
        self.timers.insert((served.deadline, Timer::Served(id)));
        self.served.insert(id, served);
        true
    }

    pub(super) fn serve_exec(&mut self, now: Instant, id: MessageId, request: ExecRequest) {
        let deadline = now + Duration::from_millis(request.timeout_ms);
        let served = Served {
            kind: ServedKind::Exec,
            started: now,
            deadline,
            stream: request.stream,
            credit: request.window,
            waiting: None,
        };
        if self.admit(now, id, served) {
            let request = ServeRequest::Exec { request, deadline };
            self.events.push_back(LinkEvent::Serve { id, request });
        }
    }

    pub(super) fn serve_intent(&mut self, now: Instant, id: MessageId, intent: Intent) {
        let deadline = now + INTENT_DEADLINE;
        let served = Served {
            kind: ServedKind::Intent,
            started: now,
            deadline,
            stream: false,
            credit: None,
            waiting: None,
        };
        if self.admit(now, id, served) {
            let request = ServeRequest::Intent { intent, deadline };
            self.events.push_back(LinkEvent::Serve { id, request });
        }
    }

    /// A handler sends a part of request `id`. When it is held for credit,
    /// [`LinkEvent::PartSent`] follows once it goes out (or `StopServing` if it never does).
    pub(crate) fn serve_part(&mut self, now: Instant, id: MessageId, part: Value) -> PartStatus {
        let Some(served) = self.served.get_mut(&id) else {
            return PartStatus::NotSent;
        };
        let started = served.started;
        match served.offer_part(part) {
            PartPlan::Send(part) => {
                self.send_part(now, id, started, part);
                PartStatus::Sent
            }
            PartPlan::Hold => PartStatus::Held,
            PartPlan::Discard => PartStatus::NotSent,
        }
    }

    pub(super) fn send_part(&mut self, now: Instant, id: MessageId, started: Instant, part: Value) {
        let response = ExecResponse {
            status: ExecStatus::Partial,
            result: Some(part),
            error: None,
            execution_time_ms: elapsed_ms(now, started),
        };
        self.send(Body::ExecResponse(response), Some(id));
    }

    pub(super) fn on_credit(&mut self, now: Instant, id: MessageId, credit: Credit) {
        let Some(served) = self.served.get_mut(&id) else {
            return;
        };
        let started = served.started;
        if let Some(part) = served.add_credit(credit.parts) {
            self.send_part(now, id, started, part);
            self.events.push_back(LinkEvent::PartSent { id });
        }
    }

    /// A handler finished request `id`.
    pub(crate) fn serve_done(&mut self, now: Instant, id: MessageId, outcome: ServeOutcome) {
        let Some(served) = self.served.remove(&id) else {
            return;
        };
        self.timers.remove(&(served.deadline, Timer::Served(id)));
        self.answer(now, id, served.kind, served.started, outcome);
    }

    pub(super) fn answer(
        &mut self,
        now: Instant,
        id: MessageId,
        kind: ServedKind,
        started: Instant,
        outcome: ServeOutcome,
    ) {
        let execution_time_ms = elapsed_ms(now, started);
        let outcome = match outcome {
            ServeOutcome::Failed(error) => ServeOutcome::Failed(self.readable_error(error)),
            other => other,
        };
        let mismatch = || {
            ErrorPayload::new(
                ErrorCode::InternalError,
                "the handler answered another kind of request",
            )
        };
        let body = match (kind, outcome) {
            (ServedKind::Exec, ServeOutcome::Value(value)) => Body::ExecResponse(ExecResponse {
                status: ExecStatus::Ok,
                result: Some(value),
                error: None,
                execution_time_ms,
            }),
            (ServedKind::Exec, ServeOutcome::Failed(error)) => Body::ExecResponse(ExecResponse {
                status: ExecStatus::Error,
                result: None,
                error: Some(error),
                execution_time_ms,
            }),
            (ServedKind::Exec, ServeOutcome::Reply(_)) => Body::ExecResponse(ExecResponse {
                status: ExecStatus::Error,
                result: None,
                error: Some(mismatch()),
                execution_time_ms,
            }),
            (ServedKind::Intent, ServeOutcome::Reply(reply)) => Body::Intent(Intent::Reply(reply)),
            (ServedKind::Intent, ServeOutcome::Failed(error)) => Body::Error(error),
            (ServedKind::Intent, ServeOutcome::Value(_)) => Body::Error(mismatch()),
        };
        self.send(body, Some(id));
    }

    pub(super) fn serve_timed_out(&mut self, id: MessageId) {
        let Some(served) = self.served.remove(&id) else {
            return;
        };
        self.events.push_back(LinkEvent::StopServing { id });
        let message = match served.kind {
            ServedKind::Exec => "the handler ran past timeout_ms",
            ServedKind::Intent => "the INTENT handler did not reply in time",
        };
        let error = ErrorPayload::new(ErrorCode::Timeout, message);
        self.answer(
            served.deadline,
            id,
            served.kind,
            served.started,
            ServeOutcome::Failed(error),
        );
    }

    pub(super) fn stop_serving(&mut self, id: MessageId) {
        if let Some(served) = self.served.remove(&id) {
            self.timers.remove(&(served.deadline, Timer::Served(id)));
            self.events.push_back(LinkEvent::CancelledByPeer { id });
            self.events.push_back(LinkEvent::StopServing { id });
        }
    }
}

pub(super) fn elapsed_ms(now: Instant, started: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX)
}
