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

/// A 1.2 peer (PING every second, a link lost after 5 s without a message) and a 1.3 peer
/// (PING every 15 s on a WebRTC link) keep an idle link up between them: the 1.3 side answers
/// every PING with a PONG, so the 1.2 side hears it every second (PROTOCOL_DESIGN.md §11.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_between_a_one_point_two_and_a_one_point_three_heartbeat_stays_up() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let old = builder(&url, Identity::generate().expect("rng"))
        .link_settings(
            support::link_settings()
                .webrtc_heartbeat_interval(Duration::from_secs(1))
                .webrtc_link_timeout(Duration::from_secs(5)),
        )
        .connect()
        .await
        .expect("registers");
    let new = builder(&url, Identity::generate().expect("rng"))
        .connect()
        .await
        .expect("registers");
    let peer = new.peer(old.did());
    within(peer.connect()).await.expect("link");
    let before = (old.heartbeats_sent(), new.heartbeats_sent());

    // Longer than the 1.2 side's silence limit: it would have lost a silent peer by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pings = (
        old.heartbeats_sent() - before.0,
        new.heartbeats_sent() - before.1,
    );
    assert!(pings.0 >= 5, "the 1.2 side pinged every second: {pings:?}");
    assert_eq!(
        pings.1, 0,
        "the 1.3 side's first tick is 15 s away: {pings:?}"
    );
    assert_eq!((old.open_links(), new.open_links()), (1, 1));
    assert_eq!(
        within(peer.exec("echo", json!("idle"))).await,
        Ok(json!("idle"))
    );
    old.close().await;
    new.close().await;
    gateway.shutdown().await;
}
