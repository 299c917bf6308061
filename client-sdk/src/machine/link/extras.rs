//! What a 1.5 call carries beyond its capability and args (PROTOCOL_DESIGN.md §11.8–§11.10),
//! sent only as far as the peer's FEATURES say it takes them.

use ioap_protocol::ErrorCode;
use ioap_protocol::grant::Grant;
use ioap_protocol::payload::{
    ErrorPayload, ExecRequest, FEATURE_CANCEL, FEATURE_CHUNK_DIGEST, FEATURE_CHUNKS, FEATURE_FLOW,
    FEATURE_GRANTS, FEATURE_IDEMPOTENCY, FEATURE_TRACE, Features, Intent,
};

use super::{LinkMachine, PeerFeatures};
use crate::error::CallError;

/// What this side lists in FEATURES; `chunk_digest`: the 1.6 name too.
pub(super) fn ours(chunk_digest: bool) -> Features {
    let names = [
        FEATURE_FLOW,
        FEATURE_CANCEL,
        FEATURE_CHUNKS,
        FEATURE_IDEMPOTENCY,
        FEATURE_TRACE,
        FEATURE_GRANTS,
    ];
    let newer = chunk_digest.then_some(FEATURE_CHUNK_DIGEST);
    Features {
        features: names
            .iter()
            .chain(&newer)
            .map(|name| (*name).to_owned())
            .collect(),
    }
}

impl PeerFeatures {
    pub(super) fn from_announced(features: &Features) -> Self {
        PeerFeatures {
            flow: features.has(FEATURE_FLOW),
            cancel: features.has(FEATURE_CANCEL),
            chunks: features.has(FEATURE_CHUNKS),
            chunk_digest: features.has(FEATURE_CHUNK_DIGEST),
            idempotency: features.has(FEATURE_IDEMPOTENCY),
            trace: features.has(FEATURE_TRACE),
            grants: features.has(FEATURE_GRANTS),
        }
    }
}

/// An EXEC's 1.5 fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ExecExtras {
    /// The operation's idempotency key (§11.10).
    pub(crate) idempotency_key: Option<String>,
    /// W3C `traceparent` (§11.8).
    pub(crate) traceparent: Option<String>,
    /// W3C `tracestate`, with `traceparent`.
    pub(crate) tracestate: Option<String>,
    /// The grant chain presented (§11.9).
    pub(crate) grants: Vec<Grant>,
}

impl LinkMachine {
    /// Puts `extras` on `request`. A key or grants the peer would not understand fail the call
    /// (sending without them would lose what the caller asked for); trace context is advisory
    /// and is left out.
    pub(super) fn add_extras(
        &self,
        request: &mut ExecRequest,
        extras: ExecExtras,
    ) -> Result<(), CallError> {
        if extras.idempotency_key.is_some() && !self.peer.idempotency {
            return Err(unsupported("idempotency keys", FEATURE_IDEMPOTENCY));
        }
        if !extras.grants.is_empty() && !self.peer.grants {
            return Err(unsupported("grants", FEATURE_GRANTS));
        }
        request.idempotency_key = extras.idempotency_key;
        request.grants = extras.grants;
        if self.peer.trace {
            request.traceparent = extras.traceparent;
            request.tracestate = extras.tracestate;
        }
        Ok(())
    }

    /// Leaves an INTENT's trace context out for a peer that did not list `trace`.
    pub(super) fn fit_intent(&self, intent: &mut Intent) {
        if !self.peer.trace
            && let Some((parent, state)) = intent.trace_context_mut()
        {
            *parent = None;
            *state = None;
        }
    }

    /// A refusal as the peer can read it: FORBIDDEN to a peer that did not list `grants`
    /// becomes HANDLER_ERROR with the code in its message (§12).
    pub(super) fn readable_error(&self, error: ErrorPayload) -> ErrorPayload {
        if error.code == ErrorCode::Forbidden && !self.peer.grants {
            let message = format!("{}: {}", ErrorCode::Forbidden, error.message);
            return ErrorPayload::new(ErrorCode::HandlerError, message);
        }
        error
    }
}

fn unsupported(what: &str, feature: &str) -> CallError {
    CallError::Invalid {
        reason: format!("the peer does not take {what} (its FEATURES lack {feature:?})"),
    }
}
