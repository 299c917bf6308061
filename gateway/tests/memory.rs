//! Memory follows connections, not traffic: a million frames relayed through a gateway that
//! nobody scrapes leave its resident memory where the first 200,000 put it.

mod support;

use futures_util::{SinkExt, StreamExt};
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, Envelope};
use support::process::spawn;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const PAIRS: u64 = 8;
const BATCH: u64 = 32;
const WARM_UP: u64 = 200_000;
const TOTAL: u64 = 1_000_000;
/// What the gateway's RSS may grow by from the warm-up to the end. Before the metrics
/// recorder's upkeep ran on its own, 800,000 frames grew it by about 15 MiB.
const GROWTH_BOUND_KIB: u64 = 4 * 1024;

/// Relays `frames` frames through each pair (batches of 32: within the receiver's queue).
async fn relay(pairs: &mut [(Agent, Agent, String)], frames: u64) {
    let runs = pairs
        .iter_mut()
        .map(|(sender, receiver, frame)| async move {
            for _ in 0..frames / BATCH {
                for _ in 0..BATCH {
                    sender
                        .ws
                        .feed(Message::text(frame.as_str()))
                        .await
                        .expect("feed");
                }
                sender.ws.flush().await.expect("flush");
                let mut received = 0;
                while received < BATCH {
                    match tokio::time::timeout(WAIT, receiver.ws.next()).await {
                        Ok(Some(Ok(Message::Text(_)))) => received += 1,
                        Ok(Some(Ok(_))) => {}
                        other => panic!("relay stopped: {other:?}"),
                    }
                }
            }
        });
    futures_util::future::join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_frames_through_a_gateway_never_scraped_leave_its_memory_flat() {
    let process = spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--rate-per-did",
            "0",
            "--rate-per-ip",
            "0",
        ],
        &[],
    );
    let url = format!("ws://{}/ws", process.address);
    let mut pairs = Vec::new();
    for _ in 0..PAIRS {
        let sender = register(&url).await;
        let receiver = register(&url).await;
        let frame = Envelope::new(
            sender.did(),
            Some(receiver.did()),
            Body::Offer(SessionDescription {
                sdp: ioap_protocol::samples::example_sdp(),
            }),
            now(),
        )
        .sign(&sender.identity)
        .expect("sign")
        .into_string();
        pairs.push((sender, receiver, frame));
    }
    relay(&mut pairs, WARM_UP / PAIRS).await;
    let warm = process.rss_kib();
    relay(&mut pairs, (TOTAL - WARM_UP) / PAIRS).await;
    let after = process.rss_kib();
    let growth = after.saturating_sub(warm);
    println!("gateway RSS: {warm} KiB after {WARM_UP} frames, {after} KiB after {TOTAL}");
    assert!(
        growth <= GROWTH_BOUND_KIB,
        "RSS grew by {growth} KiB over {} frames ({warm} -> {after} KiB)",
        TOTAL - WARM_UP
    );
}
