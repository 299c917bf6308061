//! A cluster as operators run it: gateway processes sharing a real `redis-server`, SDK agents
//! on different nodes calling each other, a node killed (-9) under load and a node that hangs
//! (SIGSTOP): agents register elsewhere within the documented bound, links already open keep
//! working, and agents left on the dead node become UNKNOWN_AGENT.

#[allow(dead_code)]
#[path = "../gateway/tests/support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../gateway/tests/support/redis.rs"]
mod redis;
#[allow(dead_code)]
#[path = "../gateway/tests/support/tools.rs"]
mod tools;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ioap_client::{Agent, ConnectionEvent, ErrorCode, demo};
use redis::RedisServer;
use serde_json::json;

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(20);
/// The keepalive the agents here use: PING after 500 ms of quiet, give up 500 ms later.
const KEEPALIVE: Duration = Duration::from_millis(500);

struct Node {
    process: process::Process,
    url: String,
}

fn node(redis: &RedisServer, id: &str) -> Node {
    let process = process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--node-id",
            id,
        ],
        &[],
    );
    let url = format!("ws://{}/ws", process.address);
    Node { process, url }
}

fn signal(node: &Node, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &node.process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// An agent offering the demo capabilities, registered on `first`, with `others` to fail
/// over to.
async fn agent(first: &Node, others: &[&Node]) -> Agent {
    let mut builder = Agent::builder(&first.url)
        .loopback_only(true)
        .capabilities(demo::capabilities())
        .gateway_keepalive(KEEPALIVE, KEEPALIVE);
    for other in others {
        builder = builder.alternate_gateway(&other.url);
    }
    builder.connect().await.expect("registers")
}

/// The agent's connection events, with those of its first registration already read.
fn fresh_events(agent: &mut Agent) -> tokio::sync::mpsc::Receiver<ConnectionEvent> {
    let mut events = agent.take_events().expect("events");
    while events.try_recv().is_ok() {}
    events
}

/// Waits for the agent's next registration and returns the URL it registered at.
async fn registered_again(events: &mut tokio::sync::mpsc::Receiver<ConnectionEvent>) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Some(ConnectionEvent::Registered { url, .. }) => return url,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("registered again in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_open_link_and_its_agents_move() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (n1, n2, n3) = (node(&redis, "n1"), node(&redis, "n2"), node(&redis, "n3"));
    let mut alice = agent(&n1, &[&n2, &n3]).await;
    let bob = agent(&n2, &[&n3, &n1]).await;
    let carol = agent(&n1, &[]).await;
    let mut alice_events = fresh_events(&mut alice);

    // Across nodes: the OFFER goes n1 → Redis → n2, the call itself peer to peer.
    let to_bob = alice.peer(bob.did());
    let echoed = to_bob
        .exec_with_timeout("echo", json!({"n": 1}), WAIT)
        .await
        .expect("cross-node call");
    assert_eq!(echoed, json!({"n": 1}));

    // Load on the open link while alice's gateway dies.
    let calls = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (peer, calls) = (to_bob.clone(), Arc::clone(&calls));
        async move {
            loop {
                peer.exec_with_timeout("echo", json!({"load": true}), WAIT)
                    .await
                    .expect("a call on the open link fails while the gateway fails over");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // A second of load first: a session that ends sooner waits the backoff before it moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    signal(&n1, "-KILL");
    let url = registered_again(&mut alice_events).await;
    let failover = killed.elapsed();
    assert!(url == n2.url || url == n3.url, "{url}");
    let before = calls.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        calls.load(Ordering::Relaxed) > before,
        "calls go on over the open link"
    );
    assert!(!load.is_finished(), "no call failed");
    load.abort();
    println!(
        "failover: registered on {url} {:.0} ms after kill -9; {} calls on the open link meanwhile",
        failover.as_secs_f64() * 1e3,
        calls.load(Ordering::Relaxed)
    );
    assert!(failover < Duration::from_secs(3), "{failover:?}");

    // carol had no other gateway: she is gone from the cluster with her node.
    let to_carol = bob.peer(carol.did());
    let deadline = Instant::now() + WAIT;
    loop {
        let error = to_carol
            .exec_with_timeout("echo", json!({}), Duration::from_secs(2))
            .await
            .expect_err("carol is unreachable");
        if error.code() == ErrorCode::UnknownAgent {
            break;
        }
        assert!(Instant::now() < deadline, "still {error}");
    }
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_is_left_within_the_keepalive_bound_and_the_agent_is_reachable_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (n1, n2) = (node(&redis, "h1"), node(&redis, "h2"));
    let mut dave = agent(&n1, &[&n2]).await;
    let erin = agent(&n2, &[]).await;
    let mut events = fresh_events(&mut dave);
    signal(&n1, "-STOP");
    let stopped = Instant::now();
    let url = registered_again(&mut events).await;
    let noticed = stopped.elapsed();
    signal(&n1, "-CONT");
    assert_eq!(url, n2.url);
    println!(
        "hung gateway left and registered elsewhere after {:.0} ms",
        noticed.as_secs_f64() * 1e3
    );
    // Quiet (500 ms) + PING deadline (500 ms), plus the handshake and a loaded machine.
    assert!(noticed < Duration::from_secs(4), "{noticed:?}");
    let echoed = erin
        .peer(dave.did())
        .exec_with_timeout("echo", json!({"back": true}), WAIT)
        .await
        .expect("dave is reachable on his new node");
    assert_eq!(echoed, json!({"back": true}));
}
