//! Running a handler for one of the peer's requests: its deadline in scope for the calls it
//! makes, a panic turned into HANDLER_ERROR, and only the codes a handler may send
//! (PROTOCOL_DESIGN.md §11.4).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use ioap_protocol::payload::ErrorPayload;
use ioap_protocol::{Did, ErrorCode, MessageId};
use tokio::task::AbortHandle;

use crate::core::AgentCore;
use crate::handlers::{ExecCall, ExecError, Parts};
use crate::link::{Command, LinkHandle};
use crate::machine::{ServeOutcome, ServeRequest};

tokio::task_local! {
    /// The deadline of the request the current task serves.
    static SERVING: Instant;
}

/// The deadline of the request being served by the current task, if any: calls made from a
/// handler end no later than that by default.
pub(crate) fn inherited_deadline() -> Option<Instant> {
    SERVING.try_with(|deadline| *deadline).ok()
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
    let handlers = core.handlers.clone();
    let task = async move {
        let outcome = match request {
            ServeRequest::Exec { request, deadline } => {
                match handlers.capability(&request.capability) {
                    None => ServeOutcome::Failed(ErrorPayload::new(
                        ErrorCode::UnknownCapability,
                        format!("no capability named {:?}", request.capability),
                    )),
                    Some(handler) => {
                        let parts = Parts::new(request.stream.then(|| (link.clone(), id)));
                        let call = ExecCall::new(caller, request.args, parts, deadline);
                        // The handler may panic making its future, or while it runs.
                        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.run(call))) {
                            Err(_) => ServeOutcome::Failed(panicked()),
                            Ok(run) => match AssertUnwindSafe(SERVING.scope(deadline, run))
                                .catch_unwind()
                                .await
                            {
                                Ok(Ok(value)) => ServeOutcome::Value(value),
                                Ok(Err(error)) => ServeOutcome::Failed(handler_error(error)),
                                Err(_) => ServeOutcome::Failed(panicked()),
                            },
                        }
                    }
                }
            }
            ServeRequest::Intent { intent, deadline } => {
                let made =
                    std::panic::catch_unwind(AssertUnwindSafe(|| handlers.intent(caller, intent)));
                match made {
                    Err(_) => ServeOutcome::Failed(panicked()),
                    Ok(run) => match AssertUnwindSafe(SERVING.scope(deadline, run))
                        .catch_unwind()
                        .await
                    {
                        Ok(reply) => ServeOutcome::Reply(reply),
                        Err(_) => ServeOutcome::Failed(panicked()),
                    },
                }
            }
        };
        link.send(Command::Done { id, outcome });
    };
    core.tasks.spawn(task).abort_handle()
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
