//! Phase 3: C EXEC calls per link, K in flight per link, all links at once; each reply is
//! checked against what was sent. Also the capabilities the load agents serve.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ioap_client::{CallError, CapabilityHandler, ExecError, Peer, StreamItem};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::progress::{Display, Progress};
use super::stats::Tally;
use super::{Plan, until_stopped};

/// Returns `{"data": …}` as given.
pub const ECHO: &str = "echo";
/// Streams `data` back `parts` times as partial results, then `{"parts": n}`.
pub const CHUNKS: &str = "chunks";
/// Most parts `chunks` sends.
pub const MAX_PARTS: u64 = 1000;
/// A reply that differs from what was sent (wrong data, or a wrong number of parts).
pub const MISMATCH: &str = "MISMATCH";

/// The load agents' capabilities: [`ECHO`] and [`CHUNKS`].
pub fn capabilities() -> Vec<CapabilityHandler> {
    vec![
        CapabilityHandler::new(ECHO, |args| async move { Ok(args) })
            .description("Returns its arguments"),
        CapabilityHandler::streaming(CHUNKS, |args, parts| async move {
            let count = args["parts"]
                .as_u64()
                .filter(|n| *n <= MAX_PARTS)
                .ok_or_else(|| ExecError::invalid_args(format!("parts: 0..={MAX_PARTS}")))?;
            for _ in 0..count {
                if !parts.send(args["data"].clone()).await {
                    break;
                }
            }
            Ok(json!({ "parts": count }))
        })
        .description("Streams {\"data\"} back {\"parts\"} times, then {\"parts\": n}"),
    ]
}

/// What the phase measured.
#[derive(Debug)]
pub struct ExecOutcome {
    /// Round trips and failures by code.
    pub tally: Tally,
    /// The phase's wall time.
    pub elapsed: Duration,
}

/// Runs `plan.calls` calls on every link, `plan.concurrency` in flight on each; calls in
/// flight are dropped (and so cancelled) when `stop` is cancelled.
pub async fn run(
    plan: &Plan,
    peers: &[Peer],
    stop: &CancellationToken,
    display: Display,
) -> ExecOutcome {
    let total = (peers.len() * plan.calls) as u64;
    let progress = Progress::start(display, "exec", total);
    let data = Value::String("x".repeat(plan.payload_bytes));
    let tally = RefCell::new(Tally::default());
    let started = Instant::now();
    let calls = futures_util::future::join_all(peers.iter().map(|peer| {
        futures_util::stream::iter(0..plan.calls)
            .map(|_| call(peer, plan, &data))
            .buffer_unordered(plan.concurrency)
            .for_each(|outcome| {
                match outcome {
                    Ok(took) => tally.borrow_mut().success(took),
                    Err(code) => tally.borrow_mut().failure(code, 1),
                }
                progress.step();
                std::future::ready(())
            })
    }));
    until_stopped(stop, calls).await;
    let elapsed = started.elapsed();
    let tally = tally.into_inner();
    progress.finish_tally(&tally, "succeeded");
    ExecOutcome { tally, elapsed }
}

/// One call; `Ok` holds its round trip (to the final result when streaming).
async fn call(peer: &Peer, plan: &Plan, data: &Value) -> Result<Duration, String> {
    let code = |error: CallError| error.code().as_str().to_owned();
    let started = Instant::now();
    match plan.stream_parts {
        None => {
            let reply = peer
                .exec_with_timeout(ECHO, json!({ "data": data }), plan.timeout)
                .await
                .map_err(code)?;
            if reply["data"] != *data {
                return Err(MISMATCH.to_owned());
            }
        }
        Some(parts) => {
            let args = json!({ "data": data, "parts": parts });
            let mut stream = peer
                .exec_stream_with_timeout(CHUNKS, args, plan.timeout)
                .await
                .map_err(code)?;
            let mut received = 0;
            loop {
                match stream.next().await {
                    Some(Ok(StreamItem::Partial(part))) if part == *data => received += 1,
                    Some(Ok(StreamItem::Final(end)))
                        if received == parts && end["parts"] == parts =>
                    {
                        break;
                    }
                    Some(Ok(_)) => return Err(MISMATCH.to_owned()),
                    Some(Err(error)) => return Err(code(error)),
                    None => return Err(ioap_protocol::ErrorCode::LinkLost.as_str().to_owned()),
                }
            }
        }
    }
    Ok(started.elapsed())
}
