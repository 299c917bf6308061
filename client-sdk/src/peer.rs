//! Calling another agent over the link to it: EXEC (single and streamed) and INTENT.

use std::sync::Arc;
use std::time::Duration;

use ioap_protocol::payload::{ExecRequest, Intent, IntentReply, MAX_EXEC_TIMEOUT_MS};
use ioap_protocol::{Body, Did, ErrorCode, MessageId};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::calls::{CallError, CallEvent};
use crate::core::AgentCore;
use crate::driver::wait_open;
use crate::link::Link;

/// Another agent, reached over a WebRTC link that is opened on first use, reused while it
/// lives, and dialed again after it is lost. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    core: Arc<AgentCore>,
    did: Did,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("did", &self.did).finish()
    }
}

impl Peer {
    pub(crate) fn new(core: Arc<AgentCore>, did: Did) -> Self {
        Peer { core, did }
    }

    /// The peer's DID.
    pub fn did(&self) -> Did {
        self.did
    }

    /// Opens the link (or returns at once if it is open). Fails with UNKNOWN_AGENT when the
    /// gateway does not know the peer, TIMEOUT when setup takes longer than the setup timeout,
    /// CONNECTION_REFUSED when the peer connection cannot be made.
    pub async fn connect(&self) -> Result<(), CallError> {
        self.link().await.map(|_| ())
    }

    async fn link(&self) -> Result<Arc<Link>, CallError> {
        if self.did == self.core.did {
            return Err(CallError::new(
                ErrorCode::UnknownAgent,
                "an agent cannot link to itself",
            ));
        }
        let status = self.core.links.link(&self.core, self.did)?;
        wait_open(status, &self.core.stop).await
    }

    /// Runs `capability` on the peer with `args`; waits up to the default call timeout.
    pub async fn exec(&self, capability: &str, args: Value) -> Result<Value, CallError> {
        self.exec_with_timeout(capability, args, self.core.settings.call_timeout)
            .await
    }

    /// Runs `capability` on the peer, waiting up to `timeout` (sent as `timeout_ms`).
    pub async fn exec_with_timeout(
        &self,
        capability: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let mut call = self.start_exec(capability, args, timeout, false).await?;
        loop {
            match call.next().await {
                Some(Ok(StreamItem::Final(value))) => return Ok(value),
                Some(Ok(StreamItem::Partial(_))) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(lost()),
            }
        }
    }

    /// Runs a streaming `capability`: partial results, then the final one, with the default
    /// call timeout for the whole call.
    pub async fn exec_stream(
        &self,
        capability: &str,
        args: Value,
    ) -> Result<ExecStream, CallError> {
        self.start_exec(capability, args, self.core.settings.call_timeout, true)
            .await
    }

    /// [`exec_stream`](Self::exec_stream) with a timeout for the whole call.
    pub async fn exec_stream_with_timeout(
        &self,
        capability: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<ExecStream, CallError> {
        self.start_exec(capability, args, timeout, true).await
    }

    async fn start_exec(
        &self,
        capability: &str,
        args: Value,
        timeout: Duration,
        stream: bool,
    ) -> Result<ExecStream, CallError> {
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_EXEC_TIMEOUT_MS);
        let request = Body::ExecRequest(ExecRequest {
            capability: capability.to_owned(),
            args,
            timeout_ms,
            stream,
            window: None,
        });
        let link = self.link().await?;
        let (id, events) = link.call(request, stream).await?;
        Ok(ExecStream {
            call: CallGuard {
                link,
                id,
                done: false,
            },
            events,
            deadline: Instant::now() + Duration::from_millis(timeout_ms),
            timeout_ms,
        })
    }

    /// Sends an INTENT (a query or a task) and waits for the peer's reply, up to the default
    /// call timeout.
    pub async fn intent(&self, intent: Intent) -> Result<IntentReply, CallError> {
        if matches!(intent, Intent::Reply(_)) {
            return Err(CallError::new(
                ErrorCode::MalformedMessage,
                "a reply is sent by the SDK, not requested",
            ));
        }
        let link = self.link().await?;
        let (id, mut events) = link.call(Body::Intent(intent), false).await?;
        let mut call = CallGuard {
            link,
            id,
            done: false,
        };
        let timeout = self.core.settings.call_timeout;
        // Any outcome but a final event leaves `call` to free the call's place when dropped.
        let outcome = match tokio::time::timeout(timeout, events.recv()).await {
            Ok(Some(CallEvent::Done(outcome))) => {
                call.done = true;
                outcome
            }
            Ok(Some(CallEvent::Partial(_)) | None) => Err(lost()),
            Err(_) => Err(CallError::new(
                ErrorCode::Timeout,
                format!("no INTENT reply within {} ms", timeout.as_millis()),
            )),
        };
        serde_json::from_value(outcome?)
            .map_err(|e| CallError::new(ErrorCode::MalformedMessage, format!("INTENT reply: {e}")))
    }
}

impl Peer {
    /// Sends `text` as is on the link (opening it if needed). For tests of what the peer
    /// refuses; real messages go through [`exec`](Self::exec) and [`intent`](Self::intent).
    #[doc(hidden)]
    pub async fn send_raw(&self, text: String) -> Result<(), CallError> {
        self.link().await?.send_raw(text).await
    }
}

fn lost() -> CallError {
    CallError::new(
        ErrorCode::LinkLost,
        "the call ended without a final response",
    )
}

/// One item of a streamed EXEC.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A partial result; more follow.
    Partial(Value),
    /// The final result; nothing follows.
    Final(Value),
}

/// An EXEC in flight: partial results in order, then the final one (or an error).
pub struct ExecStream {
    call: CallGuard,
    events: mpsc::Receiver<CallEvent>,
    deadline: Instant,
    timeout_ms: u64,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream")
            .field("id", &self.call.id)
            .finish_non_exhaustive()
    }
}

impl ExecStream {
    /// The next item; `None` after the final result or an error.
    pub async fn next(&mut self) -> Option<Result<StreamItem, CallError>> {
        if self.call.done {
            return None;
        }
        let event = tokio::time::timeout_at(self.deadline, self.events.recv()).await;
        let item = match event {
            Ok(Some(CallEvent::Partial(part))) => return Some(Ok(StreamItem::Partial(part))),
            Ok(Some(CallEvent::Done(Ok(value)))) => Ok(StreamItem::Final(value)),
            Ok(Some(CallEvent::Done(Err(error)))) => Err(error),
            Ok(None) => Err(lost()),
            Err(_) => {
                let error = CallError::new(
                    ErrorCode::Timeout,
                    format!(
                        "no final response within timeout_ms ({} ms)",
                        self.timeout_ms
                    ),
                );
                self.call.link.finish(self.call.id, Err(error.clone()));
                Err(error)
            }
        };
        self.call.done = true;
        Some(item)
    }
}

/// Frees the call's place in the link's table if the caller stops waiting early.
struct CallGuard {
    link: Arc<Link>,
    id: MessageId,
    done: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            self.link.finish(
                self.id,
                Err(CallError::new(
                    ErrorCode::Timeout,
                    "the caller stopped waiting",
                )),
            );
        }
    }
}
