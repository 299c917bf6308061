//! The hold phase (`--hold S`): every open link left idle for S seconds. It measures what idle
//! links cost the load tool's agents (heartbeats, ICE consent, timers) and whether any is
//! lost meanwhile.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::register::Fleet;
use super::system::Process;
use super::until_stopped;

/// The thread-name prefix of the load tool's own runtime (its agents), as opposed to an
/// embedded gateway's.
pub const AGENT_THREADS: &str = "ioap-load";

/// What the hold phase measured.
#[derive(Debug, Clone, Serialize)]
pub struct HoldReport {
    /// Seconds held.
    pub seconds: f64,
    /// Links open when the hold began.
    pub links_at_start: u64,
    /// Links still open at its end.
    pub links_at_end: u64,
    /// Links lost meanwhile (`links_at_start - links_at_end`).
    pub lost: u64,
    /// CPU of the agents' threads per open link per second, both ends, in milliseconds
    /// (the embedded gateway's threads are not counted).
    pub cpu_ms_per_link_per_s: Option<f64>,
}

/// Open links between the fleet's agents (each counted once, by both ends).
fn open_links(fleet: &Fleet) -> u64 {
    let ends: usize = fleet.full.iter().flatten().map(|a| a.open_links()).sum();
    ends as u64 / 2
}

/// Holds the links open for `hold`, or until `stop`.
pub async fn run(fleet: &Fleet, hold: Duration, stop: &CancellationToken) -> HoldReport {
    let links_at_start = open_links(fleet);
    let cpu_before = Process::threads_cpu_seconds(AGENT_THREADS);
    let started = Instant::now();
    let _ = until_stopped(stop, tokio::time::sleep(hold)).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(Process::threads_cpu_seconds(AGENT_THREADS))
        .map(|(before, after)| after - before);
    let links_at_end = open_links(fleet);
    HoldReport {
        seconds,
        links_at_start,
        links_at_end,
        lost: links_at_start.saturating_sub(links_at_end),
        cpu_ms_per_link_per_s: cpu
            .filter(|_| links_at_start > 0 && seconds > 0.0)
            .map(|cpu| cpu * 1e3 / (links_at_start as f64 * seconds)),
    }
}
