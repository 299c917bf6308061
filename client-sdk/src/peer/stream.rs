//! A call in flight as its caller holds it: partial results, then the final one, as a
//! `futures::Stream`, cancelled on the callee when dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use ioap_protocol::receipt::Receipt;
use ioap_protocol::{ErrorCode, MessageId};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::error::CallError;
use crate::link::{Command, LinkHandle};
use crate::machine::CallEvent;
use crate::trace_context::CallTrace;

/// One item of a streamed EXEC.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamItem {
    /// A partial result; more follow.
    Partial(Value),
    /// The final result; nothing follows.
    Final(Value),
}

/// An EXEC in flight: partial results in order, then the final one (or an error), as a
/// [`Stream`]. Each part read makes room for one more from the callee (flow control, so no
/// part is ever dropped); dropping the stream, or [`cancel`](Self::cancel), cancels the call
/// on the callee.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let gateway = ioap_gateway::Gateway::start(ioap_gateway::GatewayConfig::ephemeral()).await?;
/// # let url = gateway.ws_url();
/// use futures_util::StreamExt;
/// use ioap_client::{Agent, CapabilityHandler, StreamItem};
/// use serde_json::json;
/// let count = CapabilityHandler::streaming("count", |_args, parts| async move {
///     for i in 1..=3 {
///         parts.send(json!(i)).await; // waits while the caller has no room
///     }
///     Ok(json!("done"))
/// });
/// let bob = Agent::builder(&url).loopback_only(true).capability(count).connect().await?;
/// let alice = Agent::builder(&url).loopback_only(true).connect().await?;
///
/// let mut stream = alice.peer(bob.did()).exec_stream("count", json!(null)).await?;
/// let mut parts = Vec::new();
/// while let Some(item) = stream.next().await {
///     match item? {
///         StreamItem::Partial(part) => parts.push(part),
///         StreamItem::Final(result) => assert_eq!(result, json!("done")),
///         _ => {}
///     }
/// }
/// assert_eq!(parts, [json!(1), json!(2), json!(3)]);
/// # alice.close().await;
/// # bob.close().await;
/// # gateway.shutdown().await;
/// # Ok(()) }
/// ```
pub struct ExecStream {
    pub(super) call: CallGuard,
    pub(super) events: mpsc::UnboundedReceiver<CallEvent>,
    pub(super) deadline: Pin<Box<Sleep>>,
    pub(super) receipt: Option<Box<Receipt>>,
    /// The stream's span, ended with its outcome (calls made with retries end theirs
    /// themselves).
    pub(super) trace: Option<CallTrace>,
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
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Stops waiting: the callee is told to stop serving the call.
    pub fn cancel(self) {}

    pub(super) async fn final_value(&mut self) -> Result<Value, CallError> {
        loop {
            match self.next().await {
                Some(Ok(StreamItem::Final(value))) => return Ok(value),
                Some(Ok(StreamItem::Partial(_))) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(CallError::lost("the call ended without a final response")),
            }
        }
    }
}

impl Stream for ExecStream {
    type Item = Result<StreamItem, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.call.done {
            return Poll::Ready(None);
        }
        let item = loop {
            match self.events.poll_recv(cx) {
                Poll::Ready(Some(CallEvent::Receipt(receipt))) => self.receipt = Some(receipt),
                Poll::Ready(Some(CallEvent::Part(part))) => {
                    let id = self.call.id;
                    self.call.link.send(Command::Consumed { id, parts: 1 });
                    return Poll::Ready(Some(Ok(StreamItem::Partial(part))));
                }
                Poll::Ready(Some(CallEvent::Done(Ok(value)))) => {
                    break Ok(StreamItem::Final(value));
                }
                Poll::Ready(Some(CallEvent::Done(Err(error)))) => break Err(error),
                Poll::Ready(None) => break Err(CallError::lost("the link's task ended")),
                // The machine ends the call at its deadline; this is the backstop should the
                // link's task be slow to say so.
                Poll::Pending => match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let item = Err(CallError::Timeout);
                        self.call.cancel();
                        if let Some(trace) = self.trace.take() {
                            trace.finish(Some(ErrorCode::Timeout));
                        }
                        return Poll::Ready(Some(item));
                    }
                    Poll::Pending => return Poll::Pending,
                },
            }
        };
        self.call.done = true;
        if let Some(trace) = self.trace.take() {
            trace.finish(item.as_ref().err().map(CallError::code));
        }
        Poll::Ready(Some(item))
    }
}

/// Cancels the call on the callee if the caller stops waiting before its end.
pub(super) struct CallGuard {
    pub(super) link: LinkHandle,
    pub(super) id: MessageId,
    pub(super) done: bool,
}

impl CallGuard {
    fn cancel(&mut self) {
        if !self.done {
            self.done = true;
            self.link.send(Command::Cancel { id: self.id });
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.cancel();
    }
}
