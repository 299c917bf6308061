//! The link heartbeat (PROTOCOL_DESIGN.md §11.3; on a WebRTC link, its interval is
//! `webrtc_heartbeat_interval`): PINGs go out only on an idle link, so an
//! idle link carries about one PING and one PONG per interval (not one PING from each side),
//! a busy link none, and the link stays up either way.
//!
//! The waits below are measuring windows (how many PINGs a second of idling or of traffic
//! produces), not synchronisation; the bounds leave room for a slow machine.

mod support;

use std::time::{Duration, Instant};

use ioap_client::Agent;
use ioap_protocol::Identity;
use serde_json::json;
use support::{builder, gateway, within};

const INTERVAL: Duration = Duration::from_millis(100);
const WINDOW: Duration = Duration::from_secs(1);

async fn agent(url: &str) -> Agent {
    builder(url, Identity::generate().expect("rng"))
        .link_settings(support::link_settings().webrtc_heartbeat_interval(INTERVAL))
        .connect()
        .await
        .expect("registers")
}

fn heartbeats(a: &Agent, b: &Agent) -> u64 {
    a.heartbeats_sent() + b.heartbeats_sent()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_pings_from_one_side_at_a_time_and_a_busy_one_not_at_all() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let peer = alice.peer(bob.did());
    within(peer.connect()).await.expect("link");

    // Idle: ten intervals. Both sides pinging on every tick would send about 20.
    let before = heartbeats(&alice, &bob);
    tokio::time::sleep(WINDOW).await;
    let idle = heartbeats(&alice, &bob) - before;
    assert!(
        (3..=14).contains(&idle),
        "{idle} PINGs in ten idle intervals"
    );

    // Busy: calls back to back for the same time; our own traffic stands in for PINGs.
    let before = heartbeats(&alice, &bob);
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < WINDOW {
        within(peer.exec("echo", json!(calls))).await.expect("call");
        calls += 1;
    }
    let busy = heartbeats(&alice, &bob) - before;
    assert!(
        busy <= 2,
        "{busy} PINGs while {calls} calls kept the link busy"
    );

    assert_eq!(alice.open_links(), 1, "the link stayed up throughout");
    assert_eq!(
        within(peer.exec("echo", json!("still"))).await,
        Ok(json!("still"))
    );
    alice.close().await;
    bob.close().await;
    gateway.shutdown().await;
}
