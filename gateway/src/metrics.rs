//! Prometheus metrics (through the `metrics` facade). The names are part of the operator's
//! interface and listed in docs/gateway.md.
//!
//! The recorder is process-wide: every gateway in one process reports into the same set.

use std::sync::OnceLock;
use std::time::Duration;

use ioap_protocol::{ErrorCode, MessageType};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::disconnects::Disconnect;
use crate::refusals::Reason;

/// Open WebSocket connections (gauge).
pub const CONNECTIONS_OPEN: &str = "ioap_gateway_connections_open";
/// WebSocket connections accepted (counter).
pub const CONNECTIONS_TOTAL: &str = "ioap_gateway_connections_total";
/// Connections refused at the connection limit (counter).
pub const CONNECTIONS_REFUSED: &str = "ioap_gateway_connections_refused_total";
/// Registered agents (gauge).
pub const AGENTS_REGISTERED: &str = "ioap_gateway_registered_agents";
/// Registrations by `result` (`ok` / `failed`) and `reason` (counter).
pub const REGISTRATIONS: &str = "ioap_gateway_registrations_total";
/// Relayed frames by `type` (counter).
pub const RELAYED: &str = "ioap_gateway_relayed_messages_total";
/// Bytes of gateway-relayed link records relayed (RELAY_DATA frames, PROTOCOL_DESIGN.md
/// §11.5) (counter).
pub const RELAYED_LINK_BYTES: &str = "ioap_gateway_relayed_link_bytes_total";
/// Times a session's relayed-link record waited for the relay byte budget (counter).
pub const RELAY_WAITS: &str = "ioap_gateway_relay_waits_total";
/// ERRORs sent by the gateway, by `code` (counter).
pub const ERRORS: &str = "ioap_gateway_errors_total";
/// Relays refused because the receiver's queue was full (counter).
pub const QUEUE_OVERFLOWS: &str = "ioap_gateway_queue_overflows_total";
/// Sessions closed, by `reason` (counter).
pub const DISCONNECTS: &str = "ioap_gateway_disconnects_total";
/// Seconds from a frame's arrival to its write to the receiver's socket (histogram).
pub const RELAY_LATENCY: &str = "ioap_gateway_relay_latency_seconds";
/// The gateway's version (gauge, always 1).
pub const BUILD_INFO: &str = "ioap_gateway_build_info";
/// Refusals by `reason` (counter): connections refused at accept or closed before upgrading,
/// registrations and frames over a rate limit, sessions closed for flooding.
pub const REFUSALS: &str = "ioap_gateway_refusals_total";

/// Live gateways in the cluster, as of the last heartbeat (gauge; 0 when not clustered).
pub const CLUSTER_NODES: &str = "ioap_gateway_cluster_nodes";
/// Frames between nodes of a cluster by `direction`: `out` (sent to another node), `in`
/// (received for a local agent), `bounced` (undeliverable, sent back) (counter).
pub const CLUSTER_RELAYS: &str = "ioap_gateway_cluster_relays_total";
/// Seconds per Redis request (histogram).
pub const REDIS_SECONDS: &str = "ioap_gateway_redis_request_seconds";
/// Redis requests that failed or timed out, and lost channel connections (counter).
pub const REDIS_ERRORS: &str = "ioap_gateway_redis_errors_total";

/// How often the recorder drains recorded samples into its histograms. Without it, samples
/// pile up until the next scrape: memory would grow with traffic on a gateway nobody scrapes.
/// Drained this often, the buffer holds at most a fifth of a second of relayed frames (8 bytes
/// each: about 0.5 MB at 300,000 frames/s).
pub const UPKEEP_INTERVAL: Duration = Duration::from_millis(200);

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Handles for the per-frame metrics, registered once so the relay path skips the key lookup.
struct HotPath {
    relayed: Vec<(MessageType, metrics::Counter)>,
    latency: metrics::Histogram,
    redis: metrics::Histogram,
}

static HOT: OnceLock<HotPath> = OnceLock::new();

/// The standard `process_*` metrics (CPU, memory, descriptors, threads), read at each scrape.
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RELAY_LATENCY.into()), LATENCY_BUCKETS)
                .expect("static buckets are valid")
                .set_buckets_for_metric(Matcher::Full(REDIS_SECONDS.into()), LATENCY_BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours
            // still renders what it is given (nothing), and theirs gets the data.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            register_at_zero();
            let process = PROCESS.get_or_init(metrics_process::Collector::default);
            process.describe();
            process.collect();
            let _ = HOT.set(HotPath {
                relayed: MessageType::ALL
                    .iter()
                    .map(|ty| (*ty, counter!(RELAYED, "type" => ty.as_str())))
                    .collect(),
                latency: histogram!(RELAY_LATENCY),
                redis: histogram!(REDIS_SECONDS),
            });
            handle
        })
        .clone()
}

/// The codes of the ERRORs a gateway sends (PROTOCOL_DESIGN.md §6, §8, §10).
const GATEWAY_ERROR_CODES: [ErrorCode; 19] = [
    ErrorCode::MalformedMessage,
    ErrorCode::UnsupportedVersion,
    ErrorCode::InvalidSignature,
    ErrorCode::SenderMismatch,
    ErrorCode::StaleMessage,
    ErrorCode::TooLarge,
    ErrorCode::RateLimited,
    ErrorCode::NotRegistered,
    ErrorCode::AlreadyRegistered,
    ErrorCode::Unauthorized,
    ErrorCode::InvalidNonce,
    ErrorCode::WrongAudience,
    ErrorCode::SessionReplaced,
    ErrorCode::UnknownAgent,
    ErrorCode::NotRelayed,
    ErrorCode::ReceiverBusy,
    ErrorCode::RouteUnavailable,
    ErrorCode::Timeout,
    ErrorCode::ShuttingDown,
];

/// The codes a registration can fail with: a REGISTER that does not decode or verify, the
/// handshake's own refusals, the admission policy, the rate limit and the deadline.
const REGISTRATION_FAILURE_CODES: [ErrorCode; 11] = [
    ErrorCode::MalformedMessage,
    ErrorCode::UnsupportedVersion,
    ErrorCode::InvalidSignature,
    ErrorCode::StaleMessage,
    ErrorCode::TooLarge,
    ErrorCode::RateLimited,
    ErrorCode::NotRegistered,
    ErrorCode::Unauthorized,
    ErrorCode::InvalidNonce,
    ErrorCode::WrongAudience,
    ErrorCode::Timeout,
];

/// Every documented series exists from the start: unlabelled ones at 0, labelled families
/// with each label value the gateway can report.
fn register_at_zero() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(CONNECTIONS_OPEN).set(0.0);
    gauge!(AGENTS_REGISTERED).set(0.0);
    gauge!(CLUSTER_NODES).set(0.0);
    for direction in ["out", "in", "bounced"] {
        counter!(CLUSTER_RELAYS, "direction" => direction).absolute(0);
    }
    for name in [
        CONNECTIONS_TOTAL,
        CONNECTIONS_REFUSED,
        QUEUE_OVERFLOWS,
        REDIS_ERRORS,
        RELAYED_LINK_BYTES,
        RELAY_WAITS,
    ] {
        counter!(name).absolute(0);
    }
    counter!(REGISTRATIONS, "result" => "ok", "reason" => "ok").absolute(0);
    for code in REGISTRATION_FAILURE_CODES {
        counter!(REGISTRATIONS, "result" => "failed", "reason" => code.as_str()).absolute(0);
    }
    for reason in Reason::ALL {
        counter!(REFUSALS, "reason" => reason.as_str()).absolute(0);
    }
    for reason in Disconnect::ALL {
        counter!(DISCONNECTS, "reason" => reason.as_str()).absolute(0);
    }
    for code in GATEWAY_ERROR_CODES {
        counter!(ERRORS, "code" => code.as_str()).absolute(0);
    }
}

fn describe() {
    metrics::describe_gauge!(BUILD_INFO, "The gateway's version (label), always 1");
    metrics::describe_gauge!(CONNECTIONS_OPEN, "Open WebSocket connections");
    metrics::describe_counter!(CONNECTIONS_TOTAL, "WebSocket connections accepted");
    metrics::describe_counter!(CONNECTIONS_REFUSED, "Connections refused at the limit");
    metrics::describe_gauge!(AGENTS_REGISTERED, "Registered agents");
    metrics::describe_counter!(REGISTRATIONS, "Registration attempts by result and reason");
    metrics::describe_counter!(RELAYED, "Relayed signaling frames by type");
    metrics::describe_counter!(
        RELAYED_LINK_BYTES,
        metrics::Unit::Bytes,
        "Bytes of gateway-relayed link records (RELAY_DATA) relayed"
    );
    metrics::describe_counter!(
        RELAY_WAITS,
        "Relayed-link records delayed by the byte budget"
    );
    metrics::describe_counter!(ERRORS, "ERROR messages sent, by code");
    metrics::describe_counter!(QUEUE_OVERFLOWS, "Relays refused: receiver queue full");
    metrics::describe_counter!(DISCONNECTS, "Sessions closed, by reason");
    metrics::describe_counter!(REFUSALS, "Refusals by reason");
    metrics::describe_gauge!(CLUSTER_NODES, "Live gateways in the cluster");
    metrics::describe_counter!(CLUSTER_RELAYS, "Frames between cluster nodes by direction");
    metrics::describe_counter!(REDIS_ERRORS, "Failed Redis requests and lost channels");
    metrics::describe_histogram!(REDIS_SECONDS, metrics::Unit::Seconds, "Redis request time");
    metrics::describe_histogram!(
        RELAY_LATENCY,
        metrics::Unit::Seconds,
        "Frame arrival to write on the receiver's socket"
    );
}

/// A connection was accepted.
pub fn connection_opened() {
    counter!(CONNECTIONS_TOTAL).increment(1);
    gauge!(CONNECTIONS_OPEN).increment(1.0);
}

/// A connection ended.
pub fn connection_closed(reason: Disconnect) {
    gauge!(CONNECTIONS_OPEN).decrement(1.0);
    counter!(DISCONNECTS, "reason" => reason.as_str()).increment(1);
}

/// A connection was refused at the limit.
pub fn connection_refused() {
    counter!(CONNECTIONS_REFUSED).increment(1);
}

/// A registration succeeded.
pub fn registered() {
    counter!(REGISTRATIONS, "result" => "ok", "reason" => "ok").increment(1);
    gauge!(AGENTS_REGISTERED).increment(1.0);
}

/// A registered agent left the registry.
pub fn unregistered() {
    gauge!(AGENTS_REGISTERED).decrement(1.0);
}

/// A registration failed with `code`.
pub fn registration_failed(code: ErrorCode) {
    counter!(REGISTRATIONS, "result" => "failed", "reason" => code.as_str()).increment(1);
}

/// A frame of type `ty` was queued for its receiver.
pub fn relayed(ty: MessageType) {
    match HOT
        .get()
        .and_then(|hot| hot.relayed.iter().find(|(t, _)| *t == ty))
    {
        Some((_, counter)) => counter.increment(1),
        None => counter!(RELAYED, "type" => ty.as_str()).increment(1),
    }
}

/// The gateway sent an ERROR with `code`.
pub fn error_sent(code: ErrorCode) {
    counter!(ERRORS, "code" => code.as_str()).increment(1);
}

/// A relay was refused because the receiver's queue was full.
pub fn queue_overflow() {
    counter!(QUEUE_OVERFLOWS).increment(1);
}

/// A RELAY_DATA frame of `bytes` was relayed.
pub fn relayed_link_bytes(bytes: usize) {
    counter!(RELAYED_LINK_BYTES).increment(bytes as u64);
}

/// A relayed-link record waited for the relay byte budget.
pub fn relay_wait() {
    counter!(RELAY_WAITS).increment(1);
}

/// A relayed frame reached its receiver's socket after `elapsed`.
pub fn relay_latency(elapsed: Duration) {
    match HOT.get() {
        Some(hot) => hot.latency.record(elapsed.as_secs_f64()),
        None => histogram!(RELAY_LATENCY).record(elapsed.as_secs_f64()),
    }
}

/// Live nodes in the cluster.
pub fn cluster_nodes(nodes: u64) {
    gauge!(CLUSTER_NODES).set(nodes as f64);
}

/// A frame crossed between nodes (`out`, `in`, `bounced`).
pub fn cluster_relay(direction: &'static str) {
    counter!(CLUSTER_RELAYS, "direction" => direction).increment(1);
}

/// A Redis request took `elapsed`.
pub fn redis_round_trip(elapsed: Duration) {
    match HOT.get() {
        Some(hot) => hot.redis.record(elapsed.as_secs_f64()),
        None => histogram!(REDIS_SECONDS).record(elapsed.as_secs_f64()),
    }
}

/// A Redis request failed, or the channel connection was lost.
pub fn redis_error() {
    counter!(REDIS_ERRORS).increment(1);
}

/// A refusal for `reason`.
pub fn refused(reason: Reason) {
    counter!(REFUSALS, "reason" => reason.as_str()).increment(1);
}

/// The text of `/metrics`, with the process metrics read now.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
    handle.render()
}

/// Drains recorded samples into the histograms (call every [`UPKEEP_INTERVAL`]).
pub fn upkeep(handle: &PrometheusHandle) {
    handle.run_upkeep();
}
