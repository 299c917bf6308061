//! Phase 5: orderly teardown. Every agent closes its links and UNREGISTERs (waiting for the
//! gateway to confirm); then the gateway's `/health` must count no more agents than before
//! the load test began.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ioap_client::Directory;
use serde::Serialize;

use super::Plan;
use super::progress::{Display, Progress};
use super::register::Fleet;

/// Agents closing at once, at most.
const CLOSING_AT_ONCE: usize = 256;
/// How often `/health` is asked while waiting for the registry to empty.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// What the phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    /// Agents closed.
    pub closed: u64,
    /// Agents whose close did not finish within the time limit.
    pub timed_out: u64,
    /// Seconds to close them all.
    pub seconds: f64,
    /// Agents the gateway still counted afterwards, beyond those it had before the test
    /// (`None`: `/health` did not answer).
    pub agents_left: Option<u64>,
}

/// Closes the fleet; `baseline` is the gateway's agent count before the test.
pub async fn run(
    plan: &Plan,
    fleet: Fleet,
    directory: &Directory,
    baseline: Option<u64>,
    display: Display,
) -> TeardownReport {
    let full: Vec<_> = fleet.full.into_iter().flatten().collect();
    let signaling: Vec<_> = fleet.signaling.into_iter().flatten().collect();
    let total = (full.len() + signaling.len()) as u64;
    let progress = Progress::start(display, "teardown", total);
    let started = Instant::now();
    let closes = full
        .into_iter()
        .map(|agent| futures_util::future::Either::Left(agent.close()))
        .chain(signaling.into_iter().map(|agent| {
            futures_util::future::Either::Right(async move { agent.client.close().await })
        }))
        .map(|close| tokio::time::timeout(plan.timeout, close));
    let mut closing = futures_util::stream::iter(closes).buffer_unordered(CLOSING_AT_ONCE);
    let (mut closed, mut timed_out) = (0, 0);
    while let Some(outcome) = closing.next().await {
        match outcome {
            Ok(()) => closed += 1,
            Err(_) => timed_out += 1,
        }
        progress.step();
    }
    let seconds = started.elapsed().as_secs_f64();
    let agents_left = match baseline {
        Some(baseline) => left_behind(directory, baseline, plan.timeout).await,
        None => None,
    };
    progress.finish(&format!(
        "{closed} closed, {timed_out} timed out, {} left on the gateway",
        agents_left.map_or("?".to_owned(), |n| n.to_string())
    ));
    TeardownReport {
        closed,
        timed_out,
        seconds,
        agents_left,
    }
}

/// Agents beyond `baseline` still registered once the gateway settles (or at the deadline).
async fn left_behind(directory: &Directory, baseline: u64, wait: Duration) -> Option<u64> {
    let deadline = Instant::now() + wait;
    loop {
        let now = directory.health().await.ok()?.connected_agents as u64;
        let left = now.saturating_sub(baseline);
        if left == 0 || Instant::now() >= deadline {
            return Some(left);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}
