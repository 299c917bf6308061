//! Trace context across agents (PROTOCOL_DESIGN.md §11.8): a `tracing` span for each call
//! made and each call served, named by W3C trace and span ids, the caller's trace continued in
//! the callee and carried into the calls its handler makes.
//!
//! Spans: `ioap.call` (target `ioap_client::calls`, outgoing) and `ioap.serve` (incoming),
//! each with `trace_id`, `span_id`, `parent_id`, the peer's DID and the capability (or
//! `intent`); when the call ends an INFO event `call ended` / `call served` in the span gives
//! `outcome` (`ok`, the error code, or `stopped` for a call abandoned before its end: dropped
//! by its caller, or served on a link that ended) and `duration_ms`.

use std::time::Instant;

use ioap_protocol::trace::TraceParent;
use ioap_protocol::{Did, ErrorCode};
use tracing::{Span, info, info_span};

/// A new random span id.
fn span_id() -> [u8; 8] {
    TraceParent::random().parent_id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One traced call, made or served.
#[derive(Debug)]
pub(crate) struct CallTrace {
    /// The trace, with this call's span as the parent of what follows it.
    context: TraceParent,
    span: Span,
    started: Instant,
    served: bool,
    finished: bool,
}

impl CallTrace {
    /// A call we make to `peer`: continues `parent` (given, or the handler's we run in), or
    /// starts a new trace.
    pub(crate) fn outgoing(peer: Did, what: &str, parent: Option<TraceParent>) -> Self {
        let (parent, parent_hex) = match parent {
            Some(parent) => (parent, hex(&parent.parent_id)),
            None => (TraceParent::random(), String::new()),
        };
        let context = parent.with_parent(span_id());
        let span = info_span!(
            target: "ioap_client::calls",
            "ioap.call",
            %peer,
            capability = what,
            trace_id = %context.trace_id_hex(),
            span_id = %hex(&context.parent_id),
            parent_id = %parent_hex,
        );
        CallTrace {
            context,
            span,
            started: Instant::now(),
            served: false,
            finished: false,
        }
    }

    /// A call `caller` made to us with `traceparent` (if it sent a well-formed one).
    pub(crate) fn incoming(caller: Did, what: &str, traceparent: Option<&str>) -> Self {
        let parent = traceparent.and_then(|text| text.parse::<TraceParent>().ok());
        let mut trace = CallTrace::outgoing(caller, what, parent);
        trace.span = info_span!(
            target: "ioap_client::calls",
            "ioap.serve",
            %caller,
            capability = what,
            trace_id = %trace.context.trace_id_hex(),
            span_id = %hex(&trace.context.parent_id),
            parent_id = %parent.map(|p| hex(&p.parent_id)).unwrap_or_default(),
        );
        trace.served = true;
        trace
    }

    /// The `traceparent` that names this call's span as the parent.
    pub(crate) fn context(&self) -> TraceParent {
        self.context
    }

    /// The span, to run the call's work in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The call ended: `None` for success, or its error code.
    pub(crate) fn finish(mut self, failure: Option<ErrorCode>) {
        self.log(failure.map_or("ok", ErrorCode::as_str));
    }

    fn log(&mut self, outcome: &str) {
        self.finished = true;
        let duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let _entered = self.span.enter();
        if self.served {
            info!(target: "ioap_client::calls", outcome, duration_ms, "call served");
        } else {
            info!(target: "ioap_client::calls", outcome, duration_ms, "call ended");
        }
    }
}

impl Drop for CallTrace {
    fn drop(&mut self) {
        if !self.finished {
            self.log("stopped");
        }
    }
}
