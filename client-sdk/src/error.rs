//! Why a call failed: what the remote side answered, kept apart from what happened here.

use std::fmt;

use ioap_protocol::ErrorCode;

/// Why a call (EXEC, INTENT) or a link setup failed.
///
/// [`CallError::Remote`] is the peer's own answer about the request; every other variant is
/// something that happened on this side or to the link, so a handler can never make its
/// caller believe its link died.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The peer answered the request with an error: UNKNOWN_CAPABILITY, INVALID_ARGS,
    /// HANDLER_ERROR (the handler's message), TIMEOUT (the peer's deadline passed),
    /// TOO_MANY_REQUESTS.
    #[error("the peer answered {code}: {message}")]
    Remote {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's explanation.
        message: String,
    },
    /// The link to the peer could not be set up.
    #[error("no link to the peer: {0}")]
    Setup(SetupError),
    /// The link was lost while the call was in flight.
    #[error("the link was lost: {reason}")]
    LinkLost {
        /// What ended it.
        reason: String,
    },
    /// The call's own deadline passed (this side gave up).
    #[error("no answer within the call's deadline")]
    Timeout,
    /// The call was cancelled (explicitly, or because the call it was made for was).
    #[error("the call was cancelled")]
    Cancelled,
    /// The agent is closing.
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// A bound of this side was reached (calls in flight on the link, links open).
    #[error("{reason}")]
    Busy {
        /// Which bound.
        reason: String,
    },
    /// A message of the call was larger than a side takes (PROTOCOL_DESIGN.md §11.6): our
    /// request over our own maximum (or over 64 KiB to a peer that takes no larger messages),
    /// or the peer's answer over ours. A callee's refusal of our request is
    /// [`CallError::Remote`] with TOO_LARGE.
    #[error("a message of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The message's size in bytes (its signed envelope's text).
        size: u64,
        /// The limit it passed.
        limit: u64,
    },
    /// The request breaks a rule of the protocol and was not sent (nesting deeper than 32,
    /// an integer beyond 2^53 − 1: PROTOCOL_DESIGN.md §8).
    #[error("the request cannot be sent: {reason}")]
    Invalid {
        /// The rule it breaks.
        reason: String,
    },
    /// The peer broke the protocol (a part beyond its credit, a part for a call that did not
    /// stream, a reply that does not parse).
    #[error("the peer broke the protocol: {reason}")]
    Protocol {
        /// What it did.
        reason: String,
    },
}

/// Why a link could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupError {
    /// The gateway does not know the peer (UNKNOWN_AGENT).
    UnknownAgent,
    /// The gateway could not queue our signaling to the peer (RECEIVER_BUSY).
    ReceiverBusy,
    /// Our gateway connection could not carry the signaling (not registered, queue full).
    Gateway(String),
    /// The gateway refused our signaling with another code.
    Refused {
        /// The gateway's code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// ICE found no working path to the peer (CONNECTION_REFUSED): typically both agents are
    /// behind NATs that do not allow hole punching, or UDP is blocked, and no TURN server is
    /// configured.
    NoPath,
    /// The local WebRTC engine failed.
    Rtc(String),
    /// The link did not open within the setup deadline (or the call's, if sooner).
    Timeout,
    /// An agent does not link to itself.
    SelfLink,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::UnknownAgent => f.write_str("the gateway does not know the peer"),
            SetupError::ReceiverBusy => f.write_str("the peer's gateway queue is full"),
            SetupError::Gateway(why) => write!(f, "gateway: {why}"),
            SetupError::Refused { code, message } => write!(f, "gateway refused {code}: {message}"),
            SetupError::NoPath => f.write_str(
                "ICE found no working network path (NATs that do not allow hole punching, \
                 or UDP blocked?); configure a TURN server \
                 (--ice-server turn:USER:PASS@HOST:PORT, AgentBuilder::ice_server)",
            ),
            SetupError::Rtc(why) => write!(f, "webrtc: {why}"),
            SetupError::Timeout => f.write_str("the link did not open in time"),
            SetupError::SelfLink => f.write_str("an agent cannot link to itself"),
        }
    }
}

impl CallError {
    /// The protocol code that names this failure (for logs, exit statuses and JSON output).
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::Remote { code, .. } => *code,
            CallError::Setup(setup) => match setup {
                SetupError::UnknownAgent | SetupError::SelfLink => ErrorCode::UnknownAgent,
                SetupError::ReceiverBusy => ErrorCode::ReceiverBusy,
                SetupError::Refused { code, .. } => *code,
                SetupError::Timeout => ErrorCode::Timeout,
                SetupError::Gateway(_) | SetupError::Rtc(_) | SetupError::NoPath => {
                    ErrorCode::ConnectionRefused
                }
            },
            CallError::LinkLost { .. } => ErrorCode::LinkLost,
            CallError::Timeout | CallError::Cancelled => ErrorCode::Timeout,
            CallError::ShuttingDown => ErrorCode::ShuttingDown,
            CallError::Busy { .. } => ErrorCode::TooManyRequests,
            CallError::TooLarge { .. } => ErrorCode::TooLarge,
            CallError::Invalid { .. } => ErrorCode::MalformedMessage,
            CallError::Protocol { .. } => ErrorCode::MalformedMessage,
        }
    }

    /// Whether the peer answered (as opposed to a failure on this side or of the link).
    pub fn is_remote(&self) -> bool {
        matches!(self, CallError::Remote { .. })
    }

    pub(crate) fn remote(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError::Remote {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn local_busy(reason: impl Into<String>) -> Self {
        CallError::Busy {
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        CallError::Protocol {
            reason: reason.into(),
        }
    }

    pub(crate) fn lost(reason: impl Into<String>) -> Self {
        CallError::LinkLost {
            reason: reason.into(),
        }
    }
}
