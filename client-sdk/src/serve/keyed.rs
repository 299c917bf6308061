//! Serving a request with an idempotency key (PROTOCOL_DESIGN.md §11.10): the first request
//! starts the handler in a task of its own, which outlives the link it came on and records its
//! outcome; this request, and any repeat on any link, waits for that outcome.

use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use ioap_protocol::payload::ErrorPayload;
use ioap_protocol::{Did, ErrorCode};
use tracing::{Instrument, Span};

use super::{Serving, run};
use crate::core::AgentCore;
use crate::handlers::{CapabilityHandler, ExecCall};
use crate::machine::ServeOutcome;
use crate::operations::{Begin, Operations};

fn operations(core: &AgentCore) -> MutexGuard<'_, Operations> {
    core.operations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Serves `call` under `key`; returns the operation's outcome.
pub(super) async fn serve(
    core: &Arc<AgentCore>,
    caller: Did,
    key: String,
    digest: [u8; 32],
    handler: CapabilityHandler,
    call: ExecCall,
    serving: Serving,
) -> ServeOutcome {
    let begun = operations(core).begin(Instant::now(), caller, &key, digest);
    let mut outcome = match begun {
        Begin::Recorded(outcome) => return outcome,
        Begin::Conflict => {
            return failed(
                ErrorCode::InvalidArgs,
                "this idempotency key was used for another capability or other args".into(),
            );
        }
        Begin::Full(what) => {
            return failed(
                ErrorCode::TooManyRequests,
                format!("the callee holds as many {what} as it may; retry later"),
            );
        }
        Begin::Wait(outcome) => outcome,
        Begin::Run {
            generation,
            outcome: publish,
        } => {
            let waiting = publish.subscribe();
            let own = Arc::clone(core);
            let run_key = key.clone();
            let operation = async move {
                let deadline = tokio::time::Instant::from_std(serving.deadline);
                let ran = tokio::select! {
                    ran = tokio::time::timeout_at(deadline, run(handler, call, serving)) => ran,
                    () = own.stop.cancelled() => return,
                };
                let outcome = ran.unwrap_or_else(|_| {
                    failed(ErrorCode::Timeout, "the handler ran past timeout_ms".into())
                });
                operations(&own).finish(Instant::now(), caller, &run_key, generation, &outcome);
                publish.send_replace(Some(outcome));
            };
            let task = core.tasks.spawn(operation.instrument(Span::current()));
            operations(core).running(caller, &key, generation, task.abort_handle());
            waiting
        }
    };
    match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or_else(cancelled),
        Err(_) => cancelled(),
    }
}

fn cancelled() -> ServeOutcome {
    failed(
        ErrorCode::HandlerError,
        "the operation was stopped before it finished (cancelled by its caller, or the agent \
         is closing)"
            .into(),
    )
}

fn failed(code: ErrorCode, message: String) -> ServeOutcome {
    ServeOutcome::Failed(ErrorPayload::new(code, message))
}
