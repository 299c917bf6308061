//! Trace context across agents (PROTOCOL_DESIGN.md §11.8): a `tracing` span for each call
//! made and each call served, named by W3C trace and span ids, the caller's trace continued in
//! the callee and carried into the calls its handler makes.
//!
//! Spans: `ioap.call` (target `ioap_client::calls`, outgoing) and `ioap.serve` (incoming),
//! each with `trace_id`, `span_id`, `parent_id`, the peer's DID and the capability (or
//! `intent`); when the call ends an INFO event `call ended` / `call served` in the span gives
//! `outcome` (`ok`, the error code, or `stopped` for a call abandoned before its end: dropped
//! by its caller, or served on a link that ended) and `duration_ms`. With a span sink (the
//! `otlp` feature's exporter) each ended call is also handed over as a [`FinishedSpan`].

use std::time::{Instant, SystemTime};

use ioap_protocol::trace::TraceParent;
use ioap_protocol::{Did, ErrorCode};
use tokio::sync::mpsc;
use tracing::{Span, info, info_span};

/// A new random span id.
fn span_id() -> [u8; 8] {
    TraceParent::random().parent_id
}

/// Bytes as lower-case hex (OTLP's ids).
#[cfg(feature = "otlp")]
pub(crate) fn hex(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// Bytes as lower-case hex, written only when a subscriber records the field.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Whether a span is a call made or a call served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Call,
    Serve,
}

/// An ended call, for an exporter.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) struct FinishedSpan {
    pub(crate) kind: SpanKind,
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent_id: Option<[u8; 8]>,
    pub(crate) peer: Did,
    pub(crate) capability: String,
    pub(crate) outcome: &'static str,
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
}

/// Where ended calls go (bounded; a full queue counts the span as dropped).
#[derive(Debug, Clone)]
pub(crate) struct SpanSink {
    pub(crate) queue: mpsc::Sender<FinishedSpan>,
    pub(crate) dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SpanSink {
    fn hand_over(&self, span: FinishedSpan) {
        if self.queue.try_send(span).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// One traced call, made or served.
#[derive(Debug)]
pub(crate) struct CallTrace {
    /// The trace, with this call's span as the parent of what follows it.
    context: TraceParent,
    parent_id: Option<[u8; 8]>,
    kind: SpanKind,
    peer: Did,
    capability: String,
    span: Span,
    started: Instant,
    started_wall: SystemTime,
    sink: Option<SpanSink>,
    finished: bool,
}

impl CallTrace {
    /// A call we make to `peer`: continues `parent` (given, or the handler's we run in), or
    /// starts a new trace.
    pub(crate) fn outgoing(
        peer: Did,
        what: &str,
        parent: Option<TraceParent>,
        sink: Option<SpanSink>,
    ) -> Self {
        CallTrace::new(SpanKind::Call, peer, what, parent, sink)
    }

    /// A call `caller` made to us with `traceparent` (if it sent a well-formed one).
    pub(crate) fn incoming(
        caller: Did,
        what: &str,
        traceparent: Option<&str>,
        sink: Option<SpanSink>,
    ) -> Self {
        let parent = traceparent.and_then(|text| text.parse::<TraceParent>().ok());
        CallTrace::new(SpanKind::Serve, caller, what, parent, sink)
    }

    fn new(
        kind: SpanKind,
        peer: Did,
        what: &str,
        parent: Option<TraceParent>,
        sink: Option<SpanSink>,
    ) -> Self {
        let parent_id = parent.map(|p| p.parent_id);
        let context = parent
            .unwrap_or_else(TraceParent::random)
            .with_parent(span_id());
        let (trace_id, own_id) = (Hex(&context.trace_id), Hex(&context.parent_id));
        let parent_hex = Hex(parent_id.as_ref().map_or(&[][..], |p| &p[..]));
        let span = match kind {
            SpanKind::Call => info_span!(
                target: "ioap_client::calls",
                "ioap.call",
                %peer,
                capability = what,
                trace_id = %trace_id,
                span_id = %own_id,
                parent_id = %parent_hex,
            ),
            SpanKind::Serve => info_span!(
                target: "ioap_client::calls",
                "ioap.serve",
                caller = %peer,
                capability = what,
                trace_id = %trace_id,
                span_id = %own_id,
                parent_id = %parent_hex,
            ),
        };
        CallTrace {
            context,
            parent_id,
            kind,
            peer,
            capability: what.to_owned(),
            span,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            sink,
            finished: false,
        }
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

    fn log(&mut self, outcome: &'static str) {
        self.finished = true;
        let duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        {
            let _entered = self.span.enter();
            match self.kind {
                SpanKind::Serve => {
                    info!(target: "ioap_client::calls", outcome, duration_ms, "call served");
                }
                SpanKind::Call => {
                    info!(target: "ioap_client::calls", outcome, duration_ms, "call ended");
                }
            }
        }
        if let Some(sink) = &self.sink {
            sink.hand_over(FinishedSpan {
                kind: self.kind,
                trace_id: self.context.trace_id,
                span_id: self.context.parent_id,
                parent_id: self.parent_id,
                peer: self.peer,
                capability: std::mem::take(&mut self.capability),
                outcome,
                started: self.started_wall,
                ended: SystemTime::now(),
            });
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
