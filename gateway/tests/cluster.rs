//! Cluster mode with a real `redis-server`: gateways share presence, route signaling between
//! nodes, list the whole cluster, replace a DID's older session across nodes, and keep relaying
//! locally through a Redis outage.

mod support;

use std::time::{Duration, Instant};

use ioap_gateway::{ClusterConfig, RunningGateway};
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, CloseCode, ErrorCode, Identity, ReceivedEnvelope};
use support::redis::RedisServer;
use support::*;

fn offer() -> Body {
    Body::Offer(SessionDescription {
        sdp: ioap_protocol::samples::example_sdp(),
    })
}

async fn node(redis: &RedisServer, id: &str) -> RunningGateway {
    let cluster = ClusterConfig {
        redis_url: redis.url(),
        node_id: id.to_owned(),
    };
    start(|config| config.cluster = Some(cluster)).await
}

/// Polls `check` every 50 ms until it holds, failing the test after `WAIT`.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_crosses_nodes_byte_for_byte_and_every_node_lists_every_agent() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes = [
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    ];
    let mut alice = register_as(
        &nodes[0].ws_url(),
        Identity::generate().expect("rng"),
        capabilities(&["sum"]),
    )
    .await;
    let mut bob = register_as(
        &nodes[1].ws_url(),
        Identity::generate().expect("rng"),
        capabilities(&["echo"]),
    )
    .await;

    let sent = alice.send(bob.did(), offer()).await;
    assert_eq!(bob.next_text().await, sent, "the original bytes");
    let reply = bob.send(alice.did(), offer()).await;
    assert_eq!(alice.next_text().await, reply);

    for gateway in &nodes {
        let (status, page) = get_json(gateway, "/agents").await;
        assert_eq!(status, 200);
        assert_eq!(page["total"], 2, "{page}");
        let (status, echo) = get_json(gateway, "/agents?capability=echo").await;
        assert_eq!((status, echo["total"].clone()), (200, 1.into()), "{echo}");
        let (status, one) = get_json(gateway, &format!("/agents/{}", alice.did())).await;
        assert_eq!(
            (status, one["did"].clone()),
            (200, alice.did().to_string().into())
        );
        let (_, health) = get_json(gateway, "/health").await;
        assert_eq!(health["cluster"]["redis"], "up", "{health}");
    }
    eventually("every node counts 3 nodes and 2 agents", async || {
        let (_, health) = get_json(&nodes[2], "/health").await;
        health["cluster"]["nodes"] == 3 && health["cluster"]["agents"] == 2
    })
    .await;
    let metrics = metrics_text(&nodes[0]).await;
    assert!(
        metrics.contains("ioap_gateway_cluster_relays_total{direction=\"out\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_did_nobody_holds_is_unknown_agent_and_a_departed_one_too() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (one, two) = (node(&redis, "a1").await, node(&redis, "a2").await);
    let mut alice = register(&one.ws_url()).await;
    let nobody = Identity::generate().expect("rng").did();
    let wire = alice.send(nobody, offer()).await;
    let id = ReceivedEnvelope::decode(wire.as_bytes())
        .expect("own frame")
        .envelope()
        .id;
    assert_eq!(
        expect_error_code(&mut alice.ws, ErrorCode::UnknownAgent).await,
        Some(id)
    );

    // An agent on the other node that left: its presence goes with it.
    let bob = register(&two.ws_url()).await;
    let bob_did = bob.did();
    drop(bob);
    eventually("bob's presence is released", async || {
        redis.command(&format!("EXISTS ioap:agent:{bob_did}")) == ":0"
    })
    .await;
    alice.send(bob_did, offer()).await;
    expect_error_code(&mut alice.ws, ErrorCode::UnknownAgent).await;

    // A node that shuts down takes its agents' reachability with it at once.
    let carol = register(&two.ws_url()).await;
    two.shutdown().await;
    alice.send(carol.did(), offer()).await;
    expect_error_code(&mut alice.ws, ErrorCode::UnknownAgent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_session_of_a_did_wins_across_nodes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (one, two) = (node(&redis, "d1").await, node(&redis, "d2").await);
    let identity = Identity::generate().expect("rng");
    let mut first = register_as(
        &one.ws_url(),
        identity.clone(),
        ioap_protocol::handshake::Advertisement::default(),
    )
    .await;
    let mut second = register_as(
        &two.ws_url(),
        identity,
        ioap_protocol::handshake::Advertisement::default(),
    )
    .await;
    expect_error_code(&mut first.ws, ErrorCode::SessionReplaced).await;
    assert_eq!(
        expect_close(&mut first.ws).await,
        Some(CloseCode::SessionReplaced.code())
    );
    eventually("exactly one session holds the DID", async || {
        one.registered_agents() + two.registered_agents() == 1
    })
    .await;
    assert_eq!(two.registered_agents(), 1);
    second.ping_gateway(1).await;

    // Relays reach the surviving session.
    let mut caller = register(&one.ws_url()).await;
    let sent = caller.send(second.did(), offer()).await;
    assert_eq!(second.next_text().await, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_redis_outage_local_relay_goes_on_and_cluster_routing_comes_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (one, two) = (node(&redis, "o1").await, node(&redis, "o2").await);
    let mut alice = register(&one.ws_url()).await;
    let mut local = register(&one.ws_url()).await;
    let mut remote = register(&two.ws_url()).await;

    redis.kill();
    let sent = alice.send(local.did(), offer()).await;
    assert_eq!(local.next_text().await, sent, "local relay needs no Redis");
    alice.send(remote.did(), offer()).await;
    expect_error_code(&mut alice.ws, ErrorCode::RouteUnavailable).await;
    let (_, health) = get_json(&one, "/health").await;
    assert_eq!(health["cluster"]["redis"], "down", "{health}");
    let (status, _) = get_json(&one, "/agents").await;
    assert_eq!(status, 503);

    // Redis comes back empty: each node publishes its agents again by itself.
    redis.restart();
    eventually(
        "the remote agent's presence is published again",
        async || redis.command(&format!("EXISTS ioap:agent:{}", remote.did())) == ":1",
    )
    .await;
    eventually("a cross-node relay arrives", async || {
        let sent = alice.send(remote.did(), offer()).await;
        matches!(
            tokio::time::timeout(Duration::from_millis(500), remote.next_text()).await,
            Ok(text) if text == sent
        ) || {
            // Refused meanwhile: read the ERROR so the next try starts clean.
            let _ =
                tokio::time::timeout(Duration::from_millis(100), next_event(&mut alice.ws)).await;
            false
        }
    })
    .await;
}

#[tokio::test]
async fn a_gateway_whose_redis_cannot_be_reached_does_not_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("port")
        .port();
    let mut config = ioap_gateway::GatewayConfig::ephemeral();
    config.cluster = Some(ClusterConfig {
        redis_url: format!("redis://:secret@127.0.0.1:{port}"),
        node_id: "x1".into(),
    });
    let error = ioap_gateway::Gateway::start(config)
        .await
        .expect_err("no Redis, no start");
    let text = format!("{error:#}");
    assert!(text.contains("cannot reach Redis"), "{text}");
    assert!(
        !text.contains("secret"),
        "the password is never shown: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_read_is_receiver_busy_across_nodes_too() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cluster = |id: &str| ClusterConfig {
        redis_url: redis.url(),
        node_id: id.to_owned(),
    };
    let one = start(|c| c.cluster = Some(cluster("b1"))).await;
    let two = start(|c| {
        c.cluster = Some(cluster("b2"));
        c.queue_capacity = 2;
        c.rate_per_did = 0;
    })
    .await;
    let mut sender = register(&one.ws_url()).await;
    let sleeper = register(&two.ws_url()).await;
    // The sleeper never reads; once its socket buffers are full (their size is the kernel's
    // choice, so large frames go until the refusal comes), its queue on its own node fills and
    // the overflow comes back to the sender as RECEIVER_BUSY, correlated to the refused frame.
    let big = Body::Offer(SessionDescription {
        sdp: "a".repeat(60_000),
    });
    let mut sent = Vec::new();
    let mut refusal = None;
    'sending: for _ in 0..100 {
        for _ in 0..20 {
            let wire = sender.send(sleeper.did(), big.clone()).await;
            sent.push(
                ReceivedEnvelope::decode(wire.as_bytes())
                    .expect("own frame")
                    .envelope()
                    .id,
            );
        }
        if let Ok(event) =
            tokio::time::timeout(Duration::from_millis(50), next_event(&mut sender.ws)).await
        {
            refusal = Some(event);
            break 'sending;
        }
    }
    let Some(Event::Text(text)) = refusal else {
        panic!("no refusal after {} frames: {refusal:?}", sent.len())
    };
    let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
    let envelope = received.envelope();
    let Body::Error(error) = &envelope.body else {
        panic!("unexpected {:?}", envelope.body)
    };
    assert_eq!(error.code, ErrorCode::ReceiverBusy, "{}", error.message);
    let refused = envelope.correlation_id;
    assert!(refused.is_some_and(|id| sent.contains(&id)), "{refused:?}");
    drop(sleeper);
}
