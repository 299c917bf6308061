//! Running a handler for one of the peer's requests: the callee's policy first (§11.9), its
//! deadline and trace in scope for the calls it makes, a panic turned into HANDLER_ERROR, and
//! only the codes a handler may send (PROTOCOL_DESIGN.md §11.4). Requests with an idempotency
//! key go through [`keyed`] (§11.10).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use ioap_protocol::payload::{ErrorPayload, ExecRequest, Intent};
use ioap_protocol::trace::TraceParent;
use ioap_protocol::{Did, ErrorCode, MessageId};
use tokio::task::AbortHandle;
use tracing::{Instrument, debug};

use crate::access::{self, FORBIDDEN_MESSAGE};
use crate::core::AgentCore;
use crate::handlers::{CapabilityHandler, ExecCall, ExecError, Parts};
use crate::link::{Command, LinkHandle};
use crate::machine::{ServeOutcome, ServeRequest};
use crate::trace_context::CallTrace;

mod keyed;

/// What the task serving a request knows of it, for the calls its handler makes.
#[derive(Debug, Clone)]
struct Serving {
    deadline: Instant,
    trace: TraceParent,
    /// The caller's `tracestate`, passed on as it is.
    tracestate: Option<Arc<str>>,
}

tokio::task_local! {
    static SERVING: Serving;
}

/// The deadline of the request being served by the current task, if any: calls made from a
/// handler end no later than that by default.
pub(crate) fn inherited_deadline() -> Option<Instant> {
    SERVING.try_with(|serving| serving.deadline).ok()
}

/// The trace of the request being served by the current task, if any: calls made from a
/// handler continue it.
pub(crate) fn inherited_trace() -> Option<TraceParent> {
    SERVING.try_with(|serving| serving.trace).ok()
}

/// The `tracestate` of the request being served by the current task, if it had one: calls
/// made from a handler pass it on (W3C Trace Context).
pub(crate) fn inherited_tracestate() -> Option<String> {
    SERVING
        .try_with(|serving| serving.tracestate.as_deref().map(str::to_owned))
        .ok()
        .flatten()
}

/// Starts the handler for request `id` from `caller`; the driver aborts it when the request is
/// cancelled, times out or the link ends.
pub(crate) fn spawn_handler(
    core: &Arc<AgentCore>,
    link: LinkHandle,
    caller: Did,
    id: MessageId,
    request: ServeRequest,
) -> AbortHandle {
    let own = Arc::clone(core);
    let task = async move {
        let (trace, outcome) = match request {
            ServeRequest::Exec { request, deadline } => {
                let trace = CallTrace::incoming(
                    caller,
                    &request.capability,
                    request.traceparent.as_deref(),
                    own.spans.clone(),
                );
                let serving = Serving {
                    deadline,
                    trace: trace.context(),
                    tracestate: request.tracestate.as_deref().map(Arc::from),
                };
                let span = trace.span().clone();
                let outcome = serve_exec(&own, &link, caller, id, request, serving)
                    .instrument(span)
                    .await;
                (trace, outcome)
            }
            ServeRequest::Intent { intent, deadline } => {
                let (traceparent, tracestate) = intent_trace(&intent);
                let trace = CallTrace::incoming(
                    caller,
                    "intent",
                    traceparent.as_deref(),
                    own.spans.clone(),
                );
                let serving = Serving {
                    deadline,
                    trace: trace.context(),
                    tracestate: tracestate.as_deref().map(Arc::from),
                };
                let span = trace.span().clone();
                let outcome = serve_intent(&own, caller, intent, serving)
                    .instrument(span)
                    .await;
                (trace, outcome)
            }
        };
        trace.finish(failure(&outcome));
        link.send(Command::Done { id, outcome });
    };
    core.tasks.spawn(task).abort_handle()
}

fn intent_trace(intent: &Intent) -> (Option<String>, Option<String>) {
    match intent {
        Intent::Query(query) => (query.traceparent.clone(), query.tracestate.clone()),
        Intent::Task(task) => (task.traceparent.clone(), task.tracestate.clone()),
        Intent::Reply(_) => (None, None),
    }
}

fn failure(outcome: &ServeOutcome) -> Option<ErrorCode> {
    match outcome {
        ServeOutcome::Failed(error) => Some(error.code),
        _ => None,
    }
}

async fn serve_intent(
    core: &Arc<AgentCore>,
    caller: Did,
    intent: Intent,
    serving: Serving,
) -> ServeOutcome {
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| core.handlers.intent(caller, intent)));
    match made {
        Err(_) => ServeOutcome::Failed(panicked()),
        Ok(run) => match AssertUnwindSafe(SERVING.scope(serving, run))
            .catch_unwind()
            .await
        {
            Ok(reply) => ServeOutcome::Reply(reply),
            Err(_) => ServeOutcome::Failed(panicked()),
        },
    }
}

async fn serve_exec(
    core: &Arc<AgentCore>,
    link: &LinkHandle,
    caller: Did,
    id: MessageId,
    mut request: ExecRequest,
    serving: Serving,
) -> ServeOutcome {
    let Some(handler) = core.handlers.capability(&request.capability).cloned() else {
        return ServeOutcome::Failed(ErrorPayload::new(
            ErrorCode::UnknownCapability,
            format!("no capability named {:?}", request.capability),
        ));
    };
    let checker = access::Checker {
        callee: &core.did,
        now: ioap_protocol::Timestamp::from_system_time(std::time::SystemTime::now()),
        trusted: core.handlers.trusted_issuers(),
        verified: &core.verified_chains,
    };
    if let Err(refusal) = access::check(handler.access(), &caller, &request, &checker) {
        debug!(%caller, capability = %request.capability, %refusal, "call refused");
        return ServeOutcome::Failed(ErrorPayload::new(ErrorCode::Forbidden, FORBIDDEN_MESSAGE));
    }
    let key = request.idempotency_key.take();
    let parts = Parts::new(request.stream.then(|| (link.clone(), id)));
    let digest = key.is_some().then(|| request.operation_digest());
    let call = ExecCall::new(
        Arc::clone(core),
        caller,
        request.args,
        parts,
        serving.deadline,
        (
            serving.trace,
            serving.tracestate.as_deref().map(str::to_owned),
        ),
    );
    match key.zip(digest) {
        None => run(handler, call, serving).await,
        Some((key, digest)) => {
            keyed::serve(core, caller, key, digest, handler, call, serving).await
        }
    }
}

/// Runs `handler` on `call`: a panic (making its future or while it runs) is HANDLER_ERROR.
async fn run(handler: CapabilityHandler, call: ExecCall, serving: Serving) -> ServeOutcome {
    debug!(target: "ioap_client::calls", "handler started");
    match std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(call))) {
        Err(_) => ServeOutcome::Failed(panicked()),
        Ok(future) => match AssertUnwindSafe(SERVING.scope(serving, future))
            .catch_unwind()
            .await
        {
            Ok(Ok(value)) => ServeOutcome::Value(value),
            Ok(Err(error)) => ServeOutcome::Failed(handler_error(error)),
            Err(_) => ServeOutcome::Failed(panicked()),
        },
    }
}

fn panicked() -> ErrorPayload {
    ErrorPayload::new(ErrorCode::HandlerError, "the handler panicked")
}

/// A handler's failure as the caller sees it: HANDLER_ERROR and INVALID_ARGS pass as they
/// are; any other code is a handler's claim about something it does not own (the link, the
/// caller's deadline) and becomes HANDLER_ERROR with the code kept in the message.
pub(crate) fn handler_error(error: ExecError) -> ErrorPayload {
    match error.code {
        ErrorCode::HandlerError | ErrorCode::InvalidArgs => {
            ErrorPayload::new(error.code, error.message)
        }
        other => ErrorPayload::new(
            ErrorCode::HandlerError,
            format!("{other}: {}", error.message),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_cannot_speak_for_the_transport() {
        let lying = ExecError {
            code: ErrorCode::LinkLost,
            message: "gone".into(),
        };
        let sent = handler_error(lying);
        assert_eq!(sent.code, ErrorCode::HandlerError);
        assert_eq!(sent.message, "LINK_LOST: gone");
        let honest = handler_error(ExecError::invalid_args("values"));
        assert_eq!(honest.code, ErrorCode::InvalidArgs);
    }
}
