//! Calling another agent over the link to it: EXEC (single and streamed) and INTENT, each
//! bounded by its own deadline from the first step (link setup included) to the last.

use std::sync::Arc;
use std::time::Duration;

use ioap_protocol::payload::{Intent, IntentReply};
use ioap_protocol::receipt::Receipt;
use ioap_protocol::{Did, MessageId};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug};

use crate::call_options::CallOptions;
use crate::core::AgentCore;
use crate::error::{CallError, SetupError};
use crate::link::{Command, LinkHandle};
use crate::machine::{CallSpec, ExecExtras};
use crate::rtc::LinkPath;
use crate::serve::{inherited_deadline, inherited_trace};
use crate::table::LinkStatus;
use crate::trace_context::CallTrace;

mod stream;

use stream::CallGuard;
pub use stream::{ExecStream, StreamItem};

/// Another agent, reached over a WebRTC link that is opened on first use, reused while it
/// lives, and dialed again after it is lost. Cheap to clone.
///
/// # Links
///
/// The first call sends an OFFER through the gateway; OFFER, ANSWER and each ICE candidate
/// are signed and verified end to end, so the DTLS fingerprint in each SDP is bound to its
/// sender's DID. The link opens when the data channel is up and the peer's first message, a
/// signed PING, verifies. An OFFER to a DID that is not registered fails at once with
/// [`SetupError::UnknownAgent`]. When both sides dial at once, the OFFER from the DID whose
/// text sorts lower wins on both sides. Every envelope on the link is signed and verified.
///
/// # Deadlines
///
/// A call's timeout ([`LinkSettings::call_timeout`](crate::LinkSettings), default 30 s, or
/// [`Peer::exec_with_timeout`]) covers everything from the call to its result — opening or
/// re-dialing the link included — and is sent to the callee as `timeout_ms`. A call made
/// inside a handler ends by that handler's deadline unless given a sooner one.
///
/// # Streams and cancellation
///
/// [`Peer::exec_stream`] returns an [`ExecStream`], a `futures::Stream` of
/// [`StreamItem::Partial`] … [`StreamItem::Final`]. The caller grants the callee credit for
/// the window (32 parts, [`LinkLimits`](crate::LinkLimits)) and gives it back as it reads, so
/// no part is ever dropped and memory stays bounded however slow the reader. Dropping a
/// call's future or its stream sends CANCEL, and the callee drops its handler; a chain
/// A → B → C cancels end to end.
///
/// # Errors
///
/// [`CallError::Remote`] is what the peer answered (UNKNOWN_CAPABILITY, INVALID_ARGS,
/// HANDLER_ERROR, TIMEOUT for the peer's deadline, TOO_MANY_REQUESTS). Everything else
/// happened here: [`CallError::Setup`] (unknown agent, receiver busy, the gateway, ICE or
/// DTLS, the setup deadline), `LinkLost`, `Timeout` (our deadline), `Cancelled`,
/// `ShuttingDown`, `Busy` (256 calls in flight per link), `Protocol` (the peer broke the
/// rules). [`CallError::code`] names each with a protocol code.
///
/// # Liveness
///
/// Each side PINGs a link it has sent nothing on for a second; 5 s without a message, or
/// ICE reporting the peer gone, ends the link: calls in flight fail with LINK_LOST and the
/// next call dials again.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let gateway = ioap_gateway::Gateway::start(ioap_gateway::GatewayConfig::ephemeral()).await?;
/// # let url = gateway.ws_url();
/// use std::time::Duration;
/// use ioap_client::{Agent, CapabilityHandler, ExecError};
/// use serde_json::{Value, json};
/// let sum = CapabilityHandler::new("sum", |args: Value| async move {
///     let values = args["values"].as_array().ok_or_else(|| ExecError::invalid_args("values"))?;
///     Ok(json!(values.iter().filter_map(Value::as_f64).sum::<f64>()))
/// });
/// let bob = Agent::builder(&url).loopback_only(true).capability(sum).connect().await?;
/// let alice = Agent::builder(&url).loopback_only(true).connect().await?;
///
/// let peer = alice.peer(bob.did()); // the link opens on first use
/// let three = peer
///     .exec_with_timeout("sum", json!({"values": [1, 2]}), Duration::from_secs(10))
///     .await?;
/// assert_eq!(three, json!(3.0));
/// # alice.close().await;
/// # bob.close().await;
/// # gateway.shutdown().await;
/// # Ok(()) }
/// ```
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

    /// How the link to this peer travels (direct, punched through NAT, relayed by TURN), with
    /// the candidate addresses; opens the link first if needed, within the setup timeout.
    /// `None` when the engine cannot say.
    pub async fn path(&self) -> Result<Option<LinkPath>, CallError> {
        let deadline = Instant::now() + self.core.settings.setup_timeout;
        let handle = self.link(deadline).await?;
        let (reply, path) = tokio::sync::oneshot::channel();
        if !handle.send(Command::Path(reply)) {
            return Err(CallError::LinkLost {
                reason: "the link ended".into(),
            });
        }
        Ok(path.await.ok().flatten())
    }

    /// Opens the link (or returns at once if it is open), within the setup timeout.
    pub async fn connect(&self) -> Result<(), CallError> {
        let deadline = Instant::now() + self.core.settings.setup_timeout;
        self.link(deadline).await.map(|_| ())
    }

    async fn link(&self, deadline: Instant) -> Result<LinkHandle, CallError> {
        if self.core.stop.is_cancelled() {
            return Err(CallError::ShuttingDown);
        }
        if self.did == self.core.did {
            return Err(CallError::Setup(SetupError::SelfLink));
        }
        let status = crate::driver::link(&self.core, self.did)?;
        let opened = tokio::time::timeout_at(deadline, wait_open(status));
        tokio::select! {
            () = self.core.stop.cancelled() => Err(CallError::ShuttingDown),
            opened = opened => opened.unwrap_or(Err(CallError::Timeout)),
        }
    }

    /// The deadline of a call given `timeout`: no later than the request being served by the
    /// current task, if any.
    fn deadline(&self, timeout: Duration) -> Instant {
        let own = Instant::now() + timeout;
        inherited_deadline().map_or(own, |inherited| own.min(Instant::from_std(inherited)))
    }

    /// A call's deadline and its span: `options`' timeout (or the default), the trace it
    /// names (or the handler's, or a new one).
    fn begin(&self, capability: &str, options: &CallOptions) -> (Instant, CallTrace) {
        let timeout = options.timeout.unwrap_or(self.core.settings.call_timeout);
        let trace = CallTrace::outgoing(
            self.did,
            capability,
            options.trace.or_else(inherited_trace),
            self.core.spans.clone(),
        );
        (self.deadline(timeout), trace)
    }

    /// Runs `capability` on the peer with `args`; waits up to the default call timeout.
    pub async fn exec(&self, capability: &str, args: Value) -> Result<Value, CallError> {
        self.exec_with(capability, args, &CallOptions::new()).await
    }

    /// Runs `capability` on the peer, all of it (link setup included) within `timeout`.
    pub async fn exec_with_timeout(
        &self,
        capability: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let options = CallOptions::new().timeout(timeout);
        self.exec_with(capability, args, &options).await
    }

    /// Runs `capability` on the peer with `options`: its deadline, an idempotency key and
    /// retries across a lost link (PROTOCOL_DESIGN.md §11.10), grants (§11.9), the trace.
    ///
    /// With [`CallOptions::retry`], a call whose link is lost (or cannot be set up again) is
    /// sent again with the same key over a new link, after a short pause, until its deadline;
    /// the callee runs the handler at most once and answers the repeat with its outcome.
    pub async fn exec_with(
        &self,
        capability: &str,
        args: Value,
        options: &CallOptions,
    ) -> Result<Value, CallError> {
        self.exec_options(capability, args, options, false)
            .await
            .map(|(value, _)| value)
    }

    /// [`exec_with`](Self::exec_with), keeping the signed request and the callee's signed
    /// answer as a [`Receipt`] that anyone can verify later with the two DIDs alone
    /// ([`Receipt::verify`]; PROTOCOL_DESIGN.md §11.7).
    pub async fn exec_with_receipt(
        &self,
        capability: &str,
        args: Value,
        options: &CallOptions,
    ) -> Result<(Value, Receipt), CallError> {
        let (value, receipt) = self.exec_options(capability, args, options, true).await?;
        let receipt = receipt
            .ok_or_else(|| CallError::protocol("the answer came without its signed text"))?;
        Ok((value, *receipt))
    }

    async fn exec_options(
        &self,
        capability: &str,
        args: Value,
        options: &CallOptions,
        receipt: bool,
    ) -> Result<(Value, Option<Box<Receipt>>), CallError> {
        let (deadline, trace) = self.begin(capability, options);
        let key = options.key();
        let mut pauses = retry_pauses();
        let mut args = Some(args);
        let result = loop {
            let args = if options.retry {
                args.clone().unwrap_or_default()
            } else {
                args.take().unwrap_or_default()
            };
            let spec = exec_spec(capability, args, false, key.clone(), options, &trace);
            let attempt = async {
                let mut call = self.start(spec, deadline, receipt, None).await?;
                let value = call.final_value().await?;
                Ok((value, call.receipt.take()))
            }
            .instrument(trace.span().clone())
            .await;
            match attempt {
                Err(error) if options.retry && is_transient(&error) => {
                    let pause = pauses.next().unwrap_or(Duration::from_secs(1));
                    if Instant::now() + pause >= deadline {
                        break Err(error);
                    }
                    debug!(parent: trace.span(), %error, "sending the call again with its key");
                    tokio::time::sleep(pause).await;
                }
                other => break other,
            }
        };
        trace.finish(result.as_ref().err().map(CallError::code));
        result
    }

    /// Runs a streaming `capability`: partial results, then the final one, with the default
    /// call timeout for the whole call.
    pub async fn exec_stream(
        &self,
        capability: &str,
        args: Value,
    ) -> Result<ExecStream, CallError> {
        self.exec_stream_with(capability, args, &CallOptions::new())
            .await
    }

    /// [`exec_stream`](Self::exec_stream) with a timeout for the whole call.
    pub async fn exec_stream_with_timeout(
        &self,
        capability: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<ExecStream, CallError> {
        let options = CallOptions::new().timeout(timeout);
        self.exec_stream_with(capability, args, &options).await
    }

    /// [`exec_stream`](Self::exec_stream) with `options`. A stream is not sent again
    /// ([`CallOptions::retry`] is ignored: its parts would come twice); with a key, a repeat
    /// the application makes gets the final result only (§11.10).
    pub async fn exec_stream_with(
        &self,
        capability: &str,
        args: Value,
        options: &CallOptions,
    ) -> Result<ExecStream, CallError> {
        let (deadline, trace) = self.begin(capability, options);
        let key = options.idempotency_key.clone();
        let spec = exec_spec(capability, args, true, key, options, &trace);
        let started = self
            .start(spec, deadline, false, None)
            .instrument(trace.span().clone())
            .await;
        match started {
            Ok(mut stream) => {
                stream.trace = Some(trace);
                Ok(stream)
            }
            Err(error) => {
                trace.finish(Some(error.code()));
                Err(error)
            }
        }
    }

    async fn start(
        &self,
        spec: CallSpec,
        deadline: Instant,
        receipt: bool,
        trace: Option<CallTrace>,
    ) -> Result<ExecStream, CallError> {
        let link = self.link(deadline).await?;
        let id = MessageId::random();
        let (events_tx, events) = mpsc::unbounded_channel();
        let command = Command::Call {
            id,
            spec,
            deadline: deadline.into_std(),
            events: events_tx,
            receipt,
        };
        if !link.send(command) {
            return Err(CallError::lost("the link ended"));
        }
        Ok(ExecStream {
            call: CallGuard {
                link,
                id,
                done: false,
            },
            events,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            receipt: None,
            trace,
        })
    }

    /// Sends an INTENT (a query or a task) and waits for the peer's reply, up to the default
    /// call timeout.
    pub async fn intent(&self, mut intent: Intent) -> Result<IntentReply, CallError> {
        let trace = CallTrace::outgoing(
            self.did,
            "intent",
            inherited_trace(),
            self.core.spans.clone(),
        );
        let Some((traceparent, tracestate)) = intent.trace_context_mut() else {
            return Err(CallError::protocol(
                "a reply is sent by the SDK, not requested",
            ));
        };
        *traceparent = Some(trace.context().to_string());
        *tracestate = crate::serve::inherited_tracestate();
        let deadline = self.deadline(self.core.settings.call_timeout);
        let reply = async {
            self.start(CallSpec::Intent(intent), deadline, false, None)
                .await?
                .final_value()
                .await
        }
        .instrument(trace.span().clone())
        .await;
        trace.finish(reply.as_ref().err().map(CallError::code));
        serde_json::from_value(reply?)
            .map_err(|e| CallError::protocol(format!("INTENT reply: {e}")))
    }

    /// Sends `text` as is on the link (opening it if needed). For tests of what the peer
    /// refuses; real messages go through [`exec`](Self::exec) and [`intent`](Self::intent).
    #[cfg(feature = "test-hooks")]
    pub async fn send_raw(&self, text: String) -> Result<(), CallError> {
        let deadline = Instant::now() + self.core.settings.setup_timeout;
        let link = self.link(deadline).await?;
        if link.send(Command::Raw(text)) {
            Ok(())
        } else {
            Err(CallError::lost("the link ended"))
        }
    }
}

/// An EXEC's spec, with its 1.5 fields.
fn exec_spec(
    capability: &str,
    args: Value,
    stream: bool,
    idempotency_key: Option<String>,
    options: &CallOptions,
    trace: &CallTrace,
) -> CallSpec {
    CallSpec::Exec {
        capability: capability.to_owned(),
        args,
        stream,
        extras: Box::new(ExecExtras {
            idempotency_key,
            traceparent: Some(trace.context().to_string()),
            tracestate: options.state_to_send(),
            grants: options.grants.clone(),
        }),
    }
}

/// Whether sending a keyed call again may help: the link was lost, or could not be set up.
fn is_transient(error: &CallError) -> bool {
    match error {
        CallError::LinkLost { .. } => true,
        CallError::Setup(setup) => matches!(
            setup,
            SetupError::Timeout | SetupError::NoPath | SetupError::Rtc(_) | SetupError::Gateway(_)
        ),
        _ => false,
    }
}

/// Pauses between attempts of a call sent again: 50 ms doubling to 1 s, with jitter.
fn retry_pauses() -> impl Iterator<Item = Duration> {
    use backon::{BackoffBuilder, ExponentialBuilder};
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(feature = "test-hooks")]
impl Peer {
    /// Ends the open link to this peer at once, as a failed transport would: calls in flight
    /// fail with LINK_LOST and the connection is closed. For tests of what survives that.
    pub fn break_link(&self) -> bool {
        self.core
            .links
            .open_link(&self.did)
            .is_some_and(|link| link.send(Command::Break))
    }
}

/// Waits for a link to open or fail.
async fn wait_open(mut status: watch::Receiver<LinkStatus>) -> Result<LinkHandle, CallError> {
    loop {
        match &*status.borrow_and_update() {
            LinkStatus::Open(link) => return Ok(link.clone()),
            LinkStatus::Closed(error) => return Err(error.clone()),
            LinkStatus::Connecting => {}
        }
        if status.changed().await.is_err() {
            return Err(CallError::lost("the link's task ended"));
        }
    }
}
