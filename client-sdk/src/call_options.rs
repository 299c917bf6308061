//! How one call is made: its deadline, idempotency key and retries, the grants it presents
//! and the trace it continues.

use std::time::Duration;

use ioap_protocol::MessageId;
use ioap_protocol::grant::Grant;
use ioap_protocol::trace::TraceParent;

/// Options of one EXEC ([`Peer::exec_with`](crate::Peer::exec_with)).
///
/// ```
/// use std::time::Duration;
/// use ioap_client::CallOptions;
/// let options = CallOptions::new().timeout(Duration::from_secs(20)).idempotent();
/// assert!(options.retry && options.idempotency_key.is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The whole call's deadline, from now (default: the agent's call timeout, and never
    /// later than the handler's deadline when called from a handler).
    pub timeout: Option<Duration>,
    /// The operation's idempotency key (PROTOCOL_DESIGN.md §11.10): the callee runs the
    /// handler at most once for it, and answers repeats with the recorded outcome. A callee
    /// that does not take keys fails the call with [`CallError::Invalid`](crate::CallError).
    pub idempotency_key: Option<String>,
    /// Whether the SDK sends the call again, with the same key, when the link is lost or
    /// cannot be set up, until the deadline (a key is made if none is given).
    pub retry: bool,
    /// The grant chain presented to a callee whose capability is restricted (§11.9).
    pub grants: Vec<Grant>,
    /// The trace to continue (default: the handler's when called from one, else a new one).
    pub trace: Option<TraceParent>,
    /// The W3C `tracestate` sent with [`trace`](Self::trace) (default: the handler's, when
    /// its trace is continued).
    pub tracestate: Option<String>,
}

impl CallOptions {
    /// The defaults: the agent's call timeout, no key, no retry, no grants.
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A fresh random idempotency key, and [`retry`](Self::retry) on. The key names one
    /// operation: make new options for the next one (a call reusing these is a repeat, answered
    /// with the first one's outcome — or INVALID_ARGS if its args differ).
    pub fn idempotent(mut self) -> Self {
        self.idempotency_key = Some(MessageId::random().to_string());
        self.retry = true;
        self
    }

    /// Sets [`idempotency_key`](Self::idempotency_key) (1–128 bytes of printable ASCII).
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets [`retry`](Self::retry).
    pub fn retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`grants`](Self::grants), first grant first.
    pub fn grants(mut self, chain: Vec<Grant>) -> Self {
        self.grants = chain;
        self
    }

    /// Sets [`trace`](Self::trace).
    pub fn trace(mut self, parent: TraceParent) -> Self {
        self.trace = Some(parent);
        self
    }

    /// Sets [`tracestate`](Self::tracestate) (1–512 bytes of printable ASCII).
    pub fn tracestate(mut self, state: impl Into<String>) -> Self {
        self.tracestate = Some(state.into());
        self
    }

    /// The `tracestate` to send: the given one with a given trace, else the handler's.
    pub(crate) fn state_to_send(&self) -> Option<String> {
        match self.trace {
            Some(_) => self.tracestate.clone(),
            None => self
                .tracestate
                .clone()
                .or_else(crate::serve::inherited_tracestate),
        }
    }

    /// The key to send: the given one, or a fresh one when retries are on.
    pub(crate) fn key(&self) -> Option<String> {
        self.idempotency_key
            .clone()
            .or_else(|| self.retry.then(|| MessageId::random().to_string()))
    }
}
