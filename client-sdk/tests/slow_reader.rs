//! A slow reader of a fast stream gets every part, in order, then the final result, and
//! memory on both ends stays bounded by the window (PROTOCOL_DESIGN.md §11.4). Runs about
//! 100 s: 10,000 parts read one every 10 ms.

mod support;

use std::time::Duration;

use ioap_client::StreamItem;
use serde_json::json;
use support::{agent, gateway};

const PARTS: u64 = 10_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_taking_10_ms_a_part_gets_all_10_000_parts_in_order_then_the_final() {
    let gateway = gateway().await;
    let (caller, callee) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let peer = caller.peer(callee.did());
    let mut stream = peer
        .exec_stream_with_timeout("count", json!({"to": PARTS}), Duration::from_secs(600))
        .await
        .expect("the call starts");
    let mut next_part = 1;
    let mut samples = Vec::new();
    let outcome = loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an item within 30 s");
        match item {
            Some(Ok(StreamItem::Partial(part))) => {
                assert_eq!(
                    part,
                    json!(next_part),
                    "parts arrive in order, none missing"
                );
                next_part += 1;
                // The reader is slow: the producer must wait for it, not drop parts.
                tokio::time::sleep(Duration::from_millis(10)).await;
                if next_part % 1000 == 0 {
                    samples.push(rss_kib());
                }
            }
            other => break other,
        }
    };
    assert_eq!(next_part - 1, PARTS, "every part arrived");
    assert_eq!(
        outcome,
        Some(Ok(StreamItem::Final(json!({"counted": PARTS})))),
        "then the final result"
    );
    println!("slow reader: RSS (caller + callee + gateway) in KiB every 1,000 parts: {samples:?}");
    // Replay caches fill for their 60 s window (6,000 parts at this pace); after that, memory
    // depends on the window, not on how many parts went by.
    let settled = samples[6];
    let peak = samples[6..].iter().copied().max().unwrap_or(settled);
    let growth = peak.saturating_sub(settled);
    assert!(
        growth < 2048,
        "memory grew by {growth} KiB in the last 4,000 parts"
    );
    caller.close().await;
    callee.close().await;
}
