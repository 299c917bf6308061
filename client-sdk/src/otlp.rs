//! Exporting the spans of calls (PROTOCOL_DESIGN.md §11.8) to an OpenTelemetry collector:
//! OTLP over HTTP with the JSON encoding (`POST {endpoint}/v1/traces`), batched by a task of
//! its own. Feature `otlp`.
//!
//! Each span keeps the ids that travel in `traceparent`, so a collector receiving the spans of
//! every agent in a chain A → B → C shows one trace: B's `ioap.serve` span is the child of A's
//! `ioap.call` span, and so on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::trace_context::{FinishedSpan, SpanKind, SpanSink, hex};

/// Spans waiting to be exported; beyond, a span is counted as dropped.
pub const OTLP_QUEUE: usize = 8192;
/// Spans per request.
const BATCH: usize = 512;
/// How long a span may wait for its batch.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Why an exporter could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("the OTLP endpoint {0:?} is not an http(s) URL")]
    Endpoint(String),
    /// The HTTP client could not be built.
    #[error("the OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Sends the spans of the agents given it ([`AgentBuilder::export_spans`]) to an
/// OpenTelemetry collector. Spans wait in a bounded queue ([`OTLP_QUEUE`]) and go in batches
/// at least every half second; a span that finds the queue full, or whose batch the collector
/// refuses or cannot be reached for, is counted in [`dropped`](Self::dropped) and a warning is
/// logged — never lost without a word.
///
/// [`AgentBuilder::export_spans`]: crate::AgentBuilder::export_spans
#[derive(Debug)]
pub struct OtlpExporter {
    sink: SpanSink,
    exported: Arc<AtomicU64>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl OtlpExporter {
    /// An exporter to the collector at `endpoint` (`http://host:4318`; `/v1/traces` is added),
    /// naming the process `service_name`. Must be called inside a Tokio runtime.
    pub fn new(endpoint: &str, service_name: impl Into<String>) -> Result<Self, OtlpError> {
        let base = endpoint.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(OtlpError::Endpoint(endpoint.to_owned()));
        }
        let url = format!("{base}/v1/traces");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(
                (*crate::trust::client_config(&[])
                    .map_err(|_| OtlpError::Endpoint(endpoint.to_owned()))?)
                .clone(),
            )
            .timeout(Duration::from_secs(10))
            .build()?;
        let (queue, spans) = mpsc::channel(OTLP_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let exported = Arc::new(AtomicU64::new(0));
        let batches = Batches {
            http,
            url,
            service: service_name.into(),
            dropped: Arc::clone(&dropped),
            exported: Arc::clone(&exported),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(batches.run(spans, stop.clone()));
        Ok(OtlpExporter {
            sink: SpanSink { queue, dropped },
            exported,
            stop,
            task,
        })
    }

    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans not exported: the queue was full, or the collector refused or missed their batch.
    pub fn dropped(&self) -> u64 {
        self.sink.dropped.load(Ordering::Relaxed)
    }

    /// Sends what waits, then stops (close the agents first, so that their last spans are
    /// among it). Spans ended later are counted as dropped.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    pub(crate) fn sink(&self) -> SpanSink {
        self.sink.clone()
    }
}

struct Batches {
    http: reqwest::Client,
    url: String,
    service: String,
    dropped: Arc<AtomicU64>,
    exported: Arc<AtomicU64>,
}

impl Batches {
    async fn run(self, mut spans: mpsc::Receiver<FinishedSpan>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let flush = tokio::time::sleep(FLUSH_EVERY);
            tokio::select! {
                () = stop.cancelled() => break,
                span = spans.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            self.send(&mut batch).await;
                        }
                    }
                    None => break,
                },
                () = flush, if !batch.is_empty() => self.send(&mut batch).await,
            }
        }
        spans.close();
        while let Some(span) = spans.recv().await {
            batch.push(span);
            if batch.len() >= BATCH {
                self.send(&mut batch).await;
            }
        }
        self.send(&mut batch).await;
    }

    async fn send(&self, batch: &mut Vec<FinishedSpan>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let body = request(&self.service, batch);
        batch.clear();
        let sent = self.http.post(&self.url).json(&body).send().await;
        match sent.and_then(reqwest::Response::error_for_status) {
            Ok(_) => {
                self.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                let dropped = self.dropped.fetch_add(count, Ordering::Relaxed) + count;
                warn!(url = %self.url, %error, dropped, "spans not exported");
            }
        }
    }
}

/// An OTLP `ExportTraceServiceRequest` in its JSON encoding.
fn request(service: &str, spans: &[FinishedSpan]) -> Value {
    let spans: Vec<Value> = spans.iter().map(span).collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", service)]},
        "scopeSpans": [{
            "scope": {"name": "ioap-client", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

fn span(span: &FinishedSpan) -> Value {
    let (name, kind, peer_key) = match span.kind {
        SpanKind::Call => ("ioap.call", 3, "ioap.peer"),
        SpanKind::Serve => ("ioap.serve", 2, "ioap.caller"),
    };
    let status = if span.outcome == "ok" {
        json!({"code": 1})
    } else {
        json!({"code": 2, "message": span.outcome})
    };
    let mut value = json!({
        "traceId": hex(&span.trace_id),
        "spanId": hex(&span.span_id),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": unix_nanos(span.started),
        "endTimeUnixNano": unix_nanos(span.ended),
        "attributes": [
            attribute(peer_key, &span.peer.to_string()),
            attribute("ioap.capability", &span.capability),
            attribute("ioap.outcome", span.outcome),
        ],
        "status": status,
    });
    if let Some(parent) = span.parent_id {
        value["parentSpanId"] = json!(hex(&parent));
    }
    value
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::Identity;

    #[test]
    fn a_span_is_encoded_as_otlp_json() {
        let peer = Identity::from_seed(&[1; 32]).did();
        let finished = FinishedSpan {
            kind: SpanKind::Serve,
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_id: Some([0x02; 8]),
            peer,
            capability: "sum".into(),
            outcome: "FORBIDDEN",
            started: UNIX_EPOCH + Duration::from_nanos(5),
            ended: UNIX_EPOCH + Duration::from_nanos(9),
        };
        let body = request("svc", &[finished]);
        let encoded = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(encoded["traceId"], "ab".repeat(16));
        assert_eq!(encoded["spanId"], "0101010101010101");
        assert_eq!(encoded["parentSpanId"], "0202020202020202");
        assert_eq!(encoded["kind"], 2);
        assert_eq!(encoded["startTimeUnixNano"], "5");
        assert_eq!(
            encoded["status"],
            json!({"code": 2, "message": "FORBIDDEN"})
        );
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "svc"
        );
    }
}
