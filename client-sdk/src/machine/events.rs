//! What a [`LinkMachine`](super::LinkMachine) hands its driver.

use std::time::{Duration, Instant};

use ioap_protocol::payload::{ExecRequest, Intent};
use ioap_protocol::{Body, MessageId};
use serde_json::Value;

use crate::error::CallError;

/// An envelope to sign and send to the peer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transmit {
    /// The id to use (a request's, chosen by its caller); `None`: any fresh id.
    pub(crate) id: Option<MessageId>,
    pub(crate) body: Body,
    pub(crate) correlation: Option<MessageId>,
}

/// What a call's caller receives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallEvent {
    /// A streamed part.
    Part(Value),
    /// The final outcome; nothing follows.
    Done(Result<Value, CallError>),
    /// Just before `Done`, for a call that asked for one: the signed request and answer.
    Receipt(Box<ioap_protocol::receipt::Receipt>),
}

/// A request from the peer for a handler.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServeRequest {
    /// Run a capability until `deadline`.
    Exec {
        request: ExecRequest,
        deadline: Instant,
    },
    /// Answer an INTENT until `deadline`.
    Intent { intent: Intent, deadline: Instant },
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LinkEnd {
    /// The channel did not open, or the peer's first PING did not come, in time.
    SetupTimeout,
    /// Nothing heard from the peer for this long.
    Silent(Duration),
    /// The transport failed (channel closed, ICE failed) or setup failed.
    Failed(CallError),
    /// The peer started a new link.
    Replaced,
    /// The agent is closing.
    ShuttingDown,
}

impl LinkEnd {
    /// What calls on the link fail with.
    pub(crate) fn call_error(&self) -> CallError {
        match self {
            LinkEnd::SetupTimeout => CallError::Setup(crate::error::SetupError::Timeout),
            LinkEnd::Silent(after) => CallError::LinkLost {
                reason: format!("nothing heard from the peer for {} ms", after.as_millis()),
            },
            LinkEnd::Failed(error) => error.clone(),
            LinkEnd::Replaced => CallError::LinkLost {
                reason: "the peer started a new link while this one was in use".into(),
            },
            LinkEnd::ShuttingDown => CallError::ShuttingDown,
        }
    }
}

/// Something the driver acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LinkEvent {
    /// The peer's first PING arrived: calls may go.
    Opened,
    /// The link ended; nothing more happens on it.
    Ended(LinkEnd),
    /// For the caller of call `id`.
    Call { id: MessageId, event: CallEvent },
    /// Start a handler for the peer's request `id`.
    Serve {
        id: MessageId,
        request: ServeRequest,
    },
    /// The part the handler of `id` was waiting to send went out.
    PartSent { id: MessageId },
    /// Stop the handler of `id` (cancelled, timed out, or the link ended).
    StopServing { id: MessageId },
    /// The peer sent CANCEL for `id` (`StopServing` follows): an operation with an
    /// idempotency key stops for good rather than running on for a repeat.
    CancelledByPeer { id: MessageId },
    /// A message from the peer was dropped.
    Refused,
    /// A heartbeat PING went out.
    HeartbeatSent,
}
