//! What an agent offers: capability handlers for EXEC and a handler for INTENT.
//!
//! A capability is a name, a description, an optional JSON Schema of its `args` (all three are
//! advertised at registration) and an async function from `args` to a JSON result. A streaming
//! capability also gets a [`Parts`] sink for partial results.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use ioap_protocol::MessageId;
use ioap_protocol::payload::{Capability, Intent, IntentReply};
use ioap_protocol::{Did, ErrorCode};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::access::Access;
use crate::core::AgentCore;
use crate::link::{Command, LinkHandle};
use crate::peer::Peer;
use ioap_protocol::trace::TraceParent;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a capability handler returns.
pub type ExecResult = Result<Value, ExecError>;

/// Why a capability handler failed; sent to the caller in an `error` EXEC_RESPONSE.
///
/// A handler speaks for itself only: HANDLER_ERROR and INVALID_ARGS reach the caller as they
/// are; any other code (LINK_LOST, TIMEOUT, …) is the SDK's to send, so it reaches the caller
/// as HANDLER_ERROR with the code kept in the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ExecError {
    /// HANDLER_ERROR or INVALID_ARGS.
    pub code: ErrorCode,
    /// Passed through to the caller as is: never put secrets here.
    pub message: String,
}

impl ExecError {
    /// The handler ran and failed (HANDLER_ERROR).
    pub fn handler(message: impl Into<String>) -> Self {
        ExecError {
            code: ErrorCode::HandlerError,
            message: message.into(),
        }
    }

    /// The arguments are not what the capability takes (INVALID_ARGS).
    pub fn invalid_args(message: impl Into<String>) -> Self {
        ExecError {
            code: ErrorCode::InvalidArgs,
            message: message.into(),
        }
    }
}

/// Where a streaming handler sends its partial results, in order.
///
/// When the caller did not ask to stream, parts are discarded and only the final result is
/// sent (PROTOCOL_DESIGN.md §11.3). When the caller does flow control (§11.4), [`send`]
/// waits while the caller has no room, so a slow consumer slows the handler instead of
/// losing parts.
///
/// [`send`]: Parts::send
#[derive(Debug, Clone)]
pub struct Parts {
    sink: Option<(LinkHandle, MessageId)>,
}

impl Parts {
    pub(crate) fn new(sink: Option<(LinkHandle, MessageId)>) -> Self {
        Parts { sink }
    }

    /// Sends one part; waits until it has gone out. Returns false if it was not sent: the
    /// caller did not ask to stream, or the request is no longer served (cancelled, timed out,
    /// link gone).
    pub async fn send(&self, part: Value) -> bool {
        let Some((link, id)) = &self.sink else {
            return false;
        };
        let (sent, outcome) = oneshot::channel();
        let command = Command::Part {
            id: *id,
            part,
            sent,
        };
        link.send(command) && outcome.await.unwrap_or(false)
    }

    /// Whether the caller asked for parts.
    pub fn is_streaming(&self) -> bool {
        self.sink.is_some()
    }
}

/// One EXEC_REQUEST as a handler sees it.
#[non_exhaustive]
pub struct ExecCall {
    /// The caller (verified).
    pub caller: Did,
    /// The request's `args`.
    pub args: Value,
    /// The partial-result sink.
    pub parts: Parts,
    /// When the caller stops waiting (`timeout_ms` after the request arrived). The handler is
    /// abandoned then; calls it makes to other agents end by this time by default.
    pub deadline: Instant,
    /// The trace the call belongs to (the caller's, continued), with this handler's span as
    /// the parent: the calls the handler makes carry it (PROTOCOL_DESIGN.md §11.8).
    pub trace: TraceParent,
    /// The caller's W3C `tracestate`, if it sent one; calls the handler makes pass it on.
    pub tracestate: Option<String>,
    core: Arc<AgentCore>,
}

impl std::fmt::Debug for ExecCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecCall")
            .field("caller", &self.caller)
            .field("args", &self.args)
            .field("deadline", &self.deadline)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

impl ExecCall {
    pub(crate) fn new(
        core: Arc<AgentCore>,
        caller: Did,
        args: Value,
        parts: Parts,
        deadline: Instant,
        trace: (TraceParent, Option<String>),
    ) -> Self {
        ExecCall {
            caller,
            args,
            parts,
            deadline,
            trace: trace.0,
            tracestate: trace.1,
            core,
        }
    }

    /// Another agent, to call from this handler: its calls end by this call's deadline and
    /// continue its trace.
    pub fn peer(&self, did: Did) -> Peer {
        Peer::new(Arc::clone(&self.core), did)
    }
}

type ExecFn = dyn Fn(ExecCall) -> BoxFuture<ExecResult> + Send + Sync;
type IntentFn = dyn Fn(Did, Intent) -> BoxFuture<IntentReply> + Send + Sync;

/// A capability: what is advertised and the function that runs it.
///
/// A handler sees the caller's DID and its deadline ([`ExecCall`]); it is abandoned (its future
/// dropped) when the caller cancels or the deadline passes, and a panic in it is answered with
/// HANDLER_ERROR.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let gateway = ioap_gateway::Gateway::start(ioap_gateway::GatewayConfig::ephemeral()).await?;
/// # let url = gateway.ws_url();
/// use ioap_client::{Agent, CallError, CapabilityHandler, ErrorCode, ExecCall, ExecError};
/// use serde_json::json;
/// let greet = CapabilityHandler::with_call("greet", |call: ExecCall| async move {
///     let name = call.args["name"].as_str().ok_or_else(|| ExecError::invalid_args("name"))?;
///     Ok(json!(format!("hello {name}, from {}", call.caller)))
/// })
/// .description("Greets the caller")
/// .args_schema(json!({"type": "object", "required": ["name"]}));
/// let bob = Agent::builder(&url).loopback_only(true).capability(greet).connect().await?;
/// let alice = Agent::builder(&url).loopback_only(true).connect().await?;
///
/// let peer = alice.peer(bob.did());
/// let hello = peer.exec("greet", json!({"name": "alice"})).await?;
/// assert!(hello.as_str().is_some_and(|text| text.starts_with("hello alice")));
/// let refused = peer.exec("greet", json!({})).await.expect_err("no name");
/// assert!(matches!(refused, CallError::Remote { code: ErrorCode::InvalidArgs, .. }));
/// # alice.close().await;
/// # bob.close().await;
/// # gateway.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CapabilityHandler {
    advertised: Capability,
    access: Access,
    run: Arc<ExecFn>,
}

impl std::fmt::Debug for CapabilityHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapabilityHandler")
            .field("advertised", &self.advertised)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl CapabilityHandler {
    /// A capability computing one result from `args`.
    pub fn new<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ExecResult> + Send + 'static,
    {
        Self::with_call(name, move |call: ExecCall| handler(call.args))
    }

    /// A capability that may send partial results before its final one.
    pub fn streaming<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Value, Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ExecResult> + Send + 'static,
    {
        Self::with_call(name, move |call: ExecCall| handler(call.args, call.parts))
    }

    /// A capability that sees the whole call (including the caller's DID).
    pub fn with_call<F, Fut>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(ExecCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ExecResult> + Send + 'static,
    {
        CapabilityHandler {
            advertised: Capability::new(name, ""),
            access: Access::Open,
            run: Arc::new(move |call| Box::pin(handler(call))),
        }
    }

    /// Sets the advertised description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.advertised.description = description.into();
        self
    }

    /// Sets the advertised JSON Schema of `args` (advertised only; the handler validates).
    pub fn args_schema(mut self, schema: Value) -> Self {
        self.advertised.args_schema = Some(schema);
        self
    }

    /// What is advertised at registration.
    pub fn advertised(&self) -> &Capability {
        &self.advertised
    }

    /// Restricts the capability to `callers` (added to any already allowed) and to callers
    /// presenting a grant chain that admits the call (PROTOCOL_DESIGN.md §11.9); anyone else
    /// is answered FORBIDDEN.
    pub fn allow(mut self, callers: impl IntoIterator<Item = Did>) -> Self {
        self.access = std::mem::take(&mut self.access).allowing(callers);
        self
    }

    /// Restricts the capability to callers presenting a grant chain that admits the call
    /// (and any DIDs given to [`allow`](Self::allow)).
    pub fn restrict(self) -> Self {
        self.allow([])
    }

    /// Who may call the capability.
    pub fn access(&self) -> &Access {
        &self.access
    }

    pub(crate) fn run(&self, call: ExecCall) -> BoxFuture<ExecResult> {
        (self.run)(call)
    }
}

/// Everything an agent answers: capabilities by name and the INTENT handler.
#[derive(Clone)]
pub struct Handlers {
    /// Shared: every request served clones the handlers, not the map.
    capabilities: Arc<BTreeMap<String, CapabilityHandler>>,
    intent: Arc<IntentFn>,
    /// Issuers whose grant chains restricted capabilities accept, besides this agent.
    trusted_issuers: Arc<BTreeSet<Did>>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("capabilities", &self.capabilities.keys())
            .finish_non_exhaustive()
    }
}

impl Default for Handlers {
    /// No capabilities; every intent declined.
    fn default() -> Self {
        Handlers {
            capabilities: Arc::new(BTreeMap::new()),
            intent: Arc::new(|_, _| {
                Box::pin(async { IntentReply::declined("this agent takes no intents") })
            }),
            trusted_issuers: Arc::default(),
        }
    }
}

impl Handlers {
    /// Adds (or replaces) a capability.
    pub fn insert(&mut self, capability: CapabilityHandler) {
        Arc::make_mut(&mut self.capabilities)
            .insert(capability.advertised.name.clone(), capability);
    }

    /// Sets the INTENT handler.
    pub fn set_intent<F, Fut>(&mut self, handler: F)
    where
        F: Fn(Did, Intent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IntentReply> + Send + 'static,
    {
        self.intent = Arc::new(move |from, intent| Box::pin(handler(from, intent)));
    }

    /// Accepts grant chains whose first grant `issuer` signed (besides this agent's own).
    pub fn trust_grants_from(&mut self, issuer: Did) {
        Arc::make_mut(&mut self.trusted_issuers).insert(issuer);
    }

    /// The issuers trusted besides this agent.
    pub fn trusted_issuers(&self) -> &BTreeSet<Did> {
        &self.trusted_issuers
    }

    /// The capability named `name`.
    pub fn capability(&self, name: &str) -> Option<&CapabilityHandler> {
        self.capabilities.get(name)
    }

    /// What is advertised at registration, in name order.
    pub fn advertised(&self) -> Vec<Capability> {
        self.capabilities
            .values()
            .map(|c| c.advertised.clone())
            .collect()
    }

    pub(crate) fn intent(&self, from: Did, intent: Intent) -> BoxFuture<IntentReply> {
        (self.intent)(from, intent)
    }
}
