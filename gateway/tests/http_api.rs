//! `/health`, `/agents`, `/agents/{did}` and `/metrics`.

mod support;

use std::collections::BTreeSet;

use ioap_protocol::handshake::Advertisement;
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, Identity};
use support::*;

#[tokio::test]
async fn health_reports_status_agents_version_and_uptime() {
    let gateway = start(|_| {}).await;
    let _a = register(&gateway.ws_url()).await;
    let (status, health) = get_json(&gateway, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["connected_agents"], 1);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_s"].is_u64());
    let timestamp = health["timestamp"].as_str().expect("timestamp");
    ioap_protocol::Timestamp::parse(timestamp).expect("RFC 3339 UTC");
    assert_eq!(health["gateway_did"], gateway.did().to_string());
    gateway.shutdown().await;
}

#[tokio::test]
async fn agents_lists_filters_pages_and_hides_unlisted() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut keep = Vec::new();
    let mut echo = BTreeSet::new();
    for i in 0..7 {
        let names: &[&str] = if i % 2 == 0 { &["echo"] } else { &["sum"] };
        let agent = register_as(
            &url,
            Identity::generate().expect("rng"),
            capabilities(names),
        )
        .await;
        if i % 2 == 0 {
            echo.insert(agent.did().to_string());
        }
        keep.push(agent);
    }
    let hidden = register_as(
        &url,
        Identity::generate().expect("rng"),
        Advertisement {
            capabilities: vec![],
            listed: false,
        },
    )
    .await;

    let (_, all) = get_json(&gateway, "/agents").await;
    assert_eq!(all["total"], 7, "the unlisted agent is hidden");
    assert_eq!(all["count"], 7);
    let first = &all["agents"][0];
    for field in ["did", "connected_at", "last_activity", "capabilities"] {
        assert!(!first[field].is_null(), "{field} missing");
    }
    assert!(
        first.get("remote").is_none(),
        "remote address is never exposed"
    );

    let (_, filtered) = get_json(&gateway, "/agents?capability=echo").await;
    let listed: BTreeSet<String> = filtered["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["did"].as_str().expect("did").to_owned())
        .collect();
    assert_eq!(listed, echo);

    let mut seen = Vec::new();
    let mut path = "/agents?limit=3".to_owned();
    loop {
        let (_, page) = get_json(&gateway, &path).await;
        for agent in page["agents"].as_array().expect("agents") {
            seen.push(agent["did"].as_str().expect("did").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/agents?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), 7, "pages do not overlap");

    let (status, one) = get_json(&gateway, &format!("/agents/{}", keep[0].did())).await;
    assert_eq!(status, 200);
    assert_eq!(one["did"], keep[0].did().to_string());
    let (status, missing) = get_json(&gateway, &format!("/agents/{}", hidden.did())).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "UNKNOWN_AGENT");
    let (status, bad) = get_json(&gateway, "/agents/did:key:nope").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "MALFORMED_MESSAGE");
    let (status, _) = get_json(&gateway, "/agents?limit=minus-one").await;
    assert_eq!(status, 400);
    gateway.shutdown().await;
}

/// The value of the first sample line of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(metric) && line.contains(labels))
        .find_map(|line| line.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_counters_move() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let before = metrics_text(&gateway).await;
    let mut alice = register(&url).await;
    let mut bob = register(&url).await;
    let offer = Body::Offer(SessionDescription { sdp: "v=0".into() });
    alice.send(bob.did(), offer.clone()).await;
    bob.next_text().await;
    alice
        .send(Identity::generate().expect("rng").did(), offer)
        .await;
    expect_error_code(&mut alice.ws, ioap_protocol::ErrorCode::UnknownAgent).await;
    let after = metrics_text(&gateway).await;

    let moved = |metric: &str, labels: &str| {
        sample(&after, metric, labels) - sample(&before, metric, labels)
    };
    assert_eq!(
        moved("ioap_gateway_registrations_total", "result=\"ok\""),
        2.0
    );
    assert_eq!(
        moved("ioap_gateway_relayed_messages_total", "type=\"OFFER\""),
        1.0
    );
    assert_eq!(
        moved("ioap_gateway_errors_total", "code=\"UNKNOWN_AGENT\""),
        1.0
    );
    assert!(moved("ioap_gateway_connections_total", "") >= 2.0);
    assert!(after.contains("ioap_gateway_relay_latency_seconds_bucket"));
    assert!(sample(&after, "ioap_gateway_registered_agents", "") >= 2.0);
    gateway.shutdown().await;
}
