//! Phase 2: open WebRTC links between distinct pairs of full agents (`2k` dials `2k + 1`)
//! through the gateway's signaling; setup time runs from the dial to the link open (the
//! peer's first signed PING verified).

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use ioap_client::{PathKind, Peer};
use tokio_util::sync::CancellationToken;

use super::progress::{Display, Progress};
use super::register::Fleet;
use super::stats::Tally;
use super::{Plan, until_stopped};

/// Why a link was not attempted: one of its agents did not register.
pub const NOT_REGISTERED: &str = "NOT_REGISTERED";

/// Open links by the path they took: `direct`, `punched`, `turn`, `gateway` (the gateway
/// relay), or `unknown` (the engine did not say).
pub type Paths = BTreeMap<&'static str, u64>;

/// Opens the plan's links; each dial has the link setup deadline (`plan.timeout`). Stops
/// early when `stop` is cancelled.
pub async fn run(
    plan: &Plan,
    fleet: &Fleet,
    stop: &CancellationToken,
    display: Display,
) -> (Vec<Peer>, Tally, Paths) {
    let progress = Progress::start(display, "links", plan.links as u64);
    let mut tally = Tally::default();
    let mut dials = futures_util::stream::iter(fleet.full.chunks_exact(2))
        .map(|pair| async move {
            let (Some(caller), Some(callee)) = (&pair[0], &pair[1]) else {
                return Err(NOT_REGISTERED.to_owned());
            };
            let peer = caller.peer(callee.did());
            let started = Instant::now();
            match peer.connect().await {
                Ok(()) => {
                    let took = started.elapsed();
                    let path = peer.path().await.ok().flatten().map(|path| path.kind());
                    Ok((peer, took, path))
                }
                Err(error) => Err(error.code().as_str().to_owned()),
            }
        })
        .buffer_unordered(plan.dial_concurrency);
    let mut peers = Vec::new();
    let mut paths = Paths::new();
    while let Some(outcome) = until_stopped(stop, dials.next()).await.flatten() {
        match outcome {
            Ok((peer, took, path)) => {
                tally.success(took);
                peers.push(peer);
                let name = match path {
                    Some(PathKind::Direct) => "direct",
                    Some(PathKind::Punched) => "punched",
                    Some(PathKind::Turn) => "turn",
                    Some(PathKind::Gateway) => "gateway",
                    _ => "unknown",
                };
                *paths.entry(name).or_default() += 1;
            }
            Err(code) => progress.failed(&mut tally, code),
        }
        progress.step();
    }
    progress.finish_tally(&tally, "open");
    (peers, tally, paths)
}
