//! One link to one peer: signed sends on the data channel, the calls in flight on it, and the
//! serving of the peer's requests (PROTOCOL_DESIGN.md §11.3).
//!
//! A [`Link`] is shared by its driving task (which verifies what arrives and calls
//! [`Link::dispatch`]), by callers (EXEC, INTENT) and by the handler tasks serving the peer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ioap_protocol::payload::{ErrorPayload, ExecRequest, ExecResponse, ExecStatus, Intent, Ping};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, Identity, MessageId};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::calls::{CallError, CallEvent, PendingCalls};
use crate::handlers::{ExecCall, Handlers, Parts};
use crate::rtc::RtcPeer;

/// Parts a streaming handler may have queued before it waits for the link.
const PARTS_QUEUE: usize = 16;

/// How long an INTENT handler may take (callers wait as long by default).
pub const INTENT_DEADLINE: Duration = Duration::from_secs(30);

/// Bounds of one link.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Our calls in flight on the link.
    pub max_calls: usize,
    /// The peer's requests being served at once; more are refused with TOO_MANY_REQUESTS.
    pub max_serving: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_calls: crate::calls::DEFAULT_MAX_IN_FLIGHT,
            max_serving: 64,
        }
    }
}

/// An open (or opening) link.
pub(crate) struct Link {
    identity: Identity,
    remote: Did,
    rtc: RtcPeer,
    calls: Mutex<PendingCalls>,
    serving: AtomicUsize,
    max_serving: usize,
    /// We sent something other than a heartbeat PING since the last heartbeat tick.
    sent_since_tick: AtomicBool,
    /// Cancelled when the link ends: stops the handler tasks serving the peer.
    ended: CancellationToken,
    tasks: TaskTracker,
}

impl Link {
    pub(crate) fn new(
        identity: Identity,
        remote: Did,
        rtc: RtcPeer,
        limits: LinkLimits,
        ended: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Link {
            identity,
            remote,
            rtc,
            calls: Mutex::new(PendingCalls::new(limits.max_calls)),
            serving: AtomicUsize::new(0),
            max_serving: limits.max_serving,
            sent_since_tick: AtomicBool::new(false),
            ended,
            tasks,
        }
    }

    fn calls(&self) -> MutexGuard<'_, PendingCalls> {
        // A panic while holding this lock cannot leave the table inconsistent (every method
        // is a single map operation), so a poisoned lock is used as is.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs `body` and sends it to the peer; returns its id.
    pub(crate) async fn send(
        &self,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<MessageId, CallError> {
        let (id, wire) = self.sign(body, correlation)?;
        self.send_raw(wire).await?;
        Ok(id)
    }

    /// Signs `body` as a message to the peer.
    fn sign(
        &self,
        body: Body,
        correlation: Option<MessageId>,
    ) -> Result<(MessageId, String), CallError> {
        let mut envelope = Envelope::new(self.identity.did(), Some(self.remote), body, now());
        envelope.correlation_id = correlation;
        let id = envelope.id;
        let wire = envelope
            .sign(&self.identity)
            .map_err(|e| CallError::new(ErrorCode::MalformedMessage, e.to_string()))?;
        Ok((id, wire.into_string()))
    }

    /// Sends text as is (signed envelopes, and tests of the peer's refusals).
    pub(crate) async fn send_raw(&self, text: String) -> Result<(), CallError> {
        self.transmit(text).await?;
        self.sent_since_tick.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn transmit(&self, text: String) -> Result<(), CallError> {
        self.rtc
            .send(text)
            .await
            .map_err(|e| CallError::new(ErrorCode::LinkLost, e.to_string()))
    }

    /// A heartbeat tick: PING `sequence` if the link is idle, i.e. we sent nothing else on it
    /// since the previous tick (PROTOCOL_DESIGN.md §11.3). Returns whether a PING went out.
    pub(crate) async fn heartbeat(&self, sequence: u64) -> Result<bool, CallError> {
        if self.sent_since_tick.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let (_, wire) = self.sign(Body::Ping(Ping { sequence }), None)?;
        self.transmit(wire).await?;
        Ok(true)
    }

    /// Sends a request and registers it as a call; its events arrive on the receiver.
    pub(crate) async fn call(
        &self,
        body: Body,
        stream: bool,
    ) -> Result<(MessageId, mpsc::Receiver<CallEvent>), CallError> {
        let (id, wire) = self.sign(body, None)?;
        let events = self.calls().begin(id, stream)?;
        if let Err(error) = self.send_raw(wire).await {
            self.finish(id, Err(error.clone()));
            return Err(error);
        }
        Ok((id, events))
    }

    /// Ends a call from the caller's side (its deadline passed).
    pub(crate) fn finish(&self, id: MessageId, outcome: Result<Value, CallError>) {
        self.calls().finish(id, outcome);
    }

    /// Ends the link: calls in flight (and any begun later) fail with `error`, handler tasks
    /// serving the peer are cancelled.
    pub(crate) fn end(&self, error: CallError) {
        self.calls().close(error);
        self.ended.cancel();
    }

    /// Acts on one verified envelope from the peer.
    pub(crate) fn dispatch(self: &Arc<Self>, envelope: Envelope, handlers: &Handlers) {
        let correlation = envelope.correlation_id;
        match envelope.body {
            Body::ExecResponse(response) => {
                if let Some(id) = correlation {
                    self.calls().on_response(id, response);
                }
            }
            Body::Intent(Intent::Reply(reply)) => {
                if let Some(id) = correlation {
                    let reply = serde_json::to_value(reply).unwrap_or(Value::Null);
                    self.calls().finish(id, Ok(reply));
                }
            }
            Body::Error(error) => {
                if let Some(id) = correlation {
                    self.calls()
                        .finish(id, Err(CallError::new(error.code, error.message)));
                }
            }
            Body::ExecRequest(request) => self.serve_exec(envelope.id, request, handlers),
            Body::Intent(intent) => self.serve_intent(envelope.id, intent, handlers),
            Body::Ping(ping) => {
                // A PONG takes a serving slot too, so a PING flood cannot grow the task count;
                // a PING that finds no slot goes unanswered (the link is busy, not lost).
                let Some(slot) = self.admit() else { return };
                let link = Arc::clone(self);
                let id = envelope.id;
                self.spawn(async move {
                    let _slot = slot;
                    let _ = link.send(Body::Pong(ping), Some(id)).await;
                });
            }
            Body::Pong(_) => {}
            other => debug!(
                peer = %self.remote,
                message_type = %other.message_type(),
                "message type not used on links, dropped"
            ),
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let ended = self.ended.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = ended.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Takes a serving slot, if fewer than `max_serving` requests are being served.
    fn admit(self: &Arc<Self>) -> Option<ServingSlot> {
        if self.serving.fetch_add(1, Ordering::AcqRel) >= self.max_serving {
            self.serving.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ServingSlot(Arc::clone(self)))
    }

    fn too_many(&self) -> ErrorPayload {
        ErrorPayload::new(
            ErrorCode::TooManyRequests,
            format!(
                "{} requests already being served on this link",
                self.max_serving
            ),
        )
    }

    fn serve_exec(self: &Arc<Self>, id: MessageId, request: ExecRequest, handlers: &Handlers) {
        let Some(slot) = self.admit() else {
            let link = Arc::clone(self);
            let refusal = self.too_many();
            self.spawn(async move {
                let _ = link.respond(id, Err(refusal), Instant::now()).await;
            });
            return;
        };
        let handler = handlers.capability(&request.capability).cloned();
        let link = Arc::clone(self);
        self.spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let Some(handler) = handler else {
                let error = ErrorPayload::new(
                    ErrorCode::UnknownCapability,
                    format!("no capability named {:?}", request.capability),
                );
                let _ = link.respond(id, Err(error), started).await;
                return;
            };
            let (parts, mut part_rx) = if request.stream {
                let (tx, rx) = mpsc::channel(PARTS_QUEUE);
                (Parts::new(Some(tx)), Some(rx))
            } else {
                (Parts::new(None), None)
            };
            let run = handler.run(ExecCall {
                caller: link.remote,
                args: request.args,
                parts,
            });
            let deadline = Duration::from_millis(request.timeout_ms);
            let outcome = tokio::time::timeout(deadline, async {
                let mut run = std::pin::pin!(run);
                loop {
                    let part = async {
                        match part_rx.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        Some(part) = part => link.send_partial(id, part, started).await,
                        result = &mut run => {
                            // Parts queued before the handler returned go out first.
                            if let Some(rx) = part_rx.as_mut() {
                                rx.close();
                                while let Some(part) = rx.recv().await {
                                    link.send_partial(id, part, started).await;
                                }
                            }
                            return result;
                        }
                    }
                }
            })
            .await;
            let response = match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(ErrorPayload::new(error.code, error.message)),
                Err(_) => Err(ErrorPayload::new(
                    ErrorCode::Timeout,
                    format!(
                        "the handler ran past timeout_ms ({} ms)",
                        request.timeout_ms
                    ),
                )),
            };
            let _ = link.respond(id, response, started).await;
        });
    }

    async fn send_partial(&self, request: MessageId, part: Value, started: Instant) {
        let response = ExecResponse {
            status: ExecStatus::Partial,
            result: Some(part),
            error: None,
            execution_time_ms: elapsed_ms(started),
        };
        let _ = self.send(Body::ExecResponse(response), Some(request)).await;
    }

    async fn respond(
        &self,
        request: MessageId,
        outcome: Result<Value, ErrorPayload>,
        started: Instant,
    ) -> Result<MessageId, CallError> {
        let response = match outcome {
            Ok(value) => ExecResponse {
                status: ExecStatus::Ok,
                result: Some(value),
                error: None,
                execution_time_ms: elapsed_ms(started),
            },
            Err(error) => ExecResponse {
                status: ExecStatus::Error,
                result: None,
                error: Some(error),
                execution_time_ms: elapsed_ms(started),
            },
        };
        self.send(Body::ExecResponse(response), Some(request)).await
    }

    fn serve_intent(self: &Arc<Self>, id: MessageId, intent: Intent, handlers: &Handlers) {
        let Some(slot) = self.admit() else {
            let link = Arc::clone(self);
            let refusal = self.too_many();
            self.spawn(async move {
                let _ = link.send(Body::Error(refusal), Some(id)).await;
            });
            return;
        };
        let reply = handlers.intent(self.remote, intent);
        let link = Arc::clone(self);
        self.spawn(async move {
            let _slot = slot;
            let body = match tokio::time::timeout(INTENT_DEADLINE, reply).await {
                Ok(reply) => Body::Intent(Intent::Reply(reply)),
                Err(_) => Body::Error(ErrorPayload::new(
                    ErrorCode::Timeout,
                    "the INTENT handler did not reply in time",
                )),
            };
            let _ = link.send(body, Some(id)).await;
        });
    }
}

/// A request being served; frees its place when dropped.
struct ServingSlot(Arc<Link>);

impl Drop for ServingSlot {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn now() -> ioap_protocol::Timestamp {
    ioap_protocol::Timestamp::from_system_time(std::time::SystemTime::now())
}
