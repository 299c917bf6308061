//! Gateway-relayed links (PROTOCOL_DESIGN.md §11.5) end to end on loopback: a real gateway,
//! real agents, real WebRTC engines whose ICE is made to find no path.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ioap_client::rtc::{PeerFuture, RtcEngine, RtcEvent, RtcSettings, WebrtcEngine};
use ioap_client::{ErrorCode, GatewayRelay, IceServer, PathKind, StreamItem};
use ioap_gateway::GatewayConfig;
use ioap_protocol::Identity;
use serde_json::json;
use support::{builder, gateway, gateway_with, link_settings, within};
use tokio::sync::mpsc;

/// A loopback WebRTC engine with a fault: `hide_candidates` never tells the peer its
/// candidates (no check can succeed, as between two symmetric NATs); `slow_open` delivers
/// the channel's opening a second late, after ICE found its path (a setup slowed by CPU
/// load, not a missing path).
#[derive(Debug)]
struct FaultyEngine {
    inner: WebrtcEngine,
    hide_candidates: bool,
    slow_open: bool,
}

impl RtcEngine for FaultyEngine {
    fn peer<'a>(&'a self, extra_ice_servers: &'a [IceServer]) -> PeerFuture<'a> {
        Box::pin(async move {
            let (peer, mut events) = self.inner.peer(extra_ice_servers).await?;
            let (tx, faulty) = mpsc::channel(64);
            let (hide_candidates, slow_open) = (self.hide_candidates, self.slow_open);
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match &event {
                        RtcEvent::LocalCandidate(c)
                            if hide_candidates && !c.candidate.is_empty() =>
                        {
                            continue;
                        }
                        RtcEvent::ChannelOpen if slow_open => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        _ => {}
                    }
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            });
            Ok((peer, faulty))
        })
    }
}

fn loopback_engine() -> WebrtcEngine {
    let mut settings = RtcSettings::default();
    settings.loopback_only = true;
    WebrtcEngine::new(&settings)
}

fn no_path_engine() -> Arc<dyn RtcEngine> {
    Arc::new(FaultyEngine {
        inner: loopback_engine(),
        hide_candidates: true,
        slow_open: false,
    })
}

#[tokio::test]
async fn relay_only_agents_link_over_the_gateway_and_carry_large_messages_both_ways() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let a = builder(&url, Identity::generate().expect("rng"))
        .gateway_relay(GatewayRelay::Always)
        .connect()
        .await
        .expect("a registers");
    let b = builder(&url, Identity::generate().expect("rng"))
        .connect()
        .await
        .expect("b registers");
    let to_b = a.peer(b.did());
    // Larger than one relay record (32 KiB): the message is split and reassembled.
    let big = "x".repeat(50_000);
    let echoed = within(to_b.exec("echo", json!({ "text": big }))).await;
    assert_eq!(echoed.expect("echo")["text"].as_str(), Some(big.as_str()));
    let path = to_b.path().await.expect("path").expect("a path");
    assert_eq!(path.kind(), PathKind::Gateway, "{path}");
    // The link carries streams, and calls the other way.
    let mut stream = to_b
        .exec_stream("count", json!({"to": 5}))
        .await
        .expect("stream starts");
    let mut parts = 0;
    while let Some(item) = within(stream.next()).await {
        match item.expect("stream item") {
            StreamItem::Partial(_) => parts += 1,
            _ => break,
        }
    }
    assert_eq!(parts, 5);
    let back = within(b.peer(a.did()).exec("sum", json!({"values": [1, 2]}))).await;
    assert_eq!(back.expect("sum"), json!(3.0));
    assert_eq!(b.open_links(), 1, "the reverse call used the relayed link");
}

#[tokio::test]
async fn a_pair_whose_ice_finds_no_path_falls_back_to_the_gateway_relay() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let fast_fallback = link_settings().relay_after(Duration::from_millis(300));
    let a = builder(&url, Identity::generate().expect("rng"))
        .rtc_engine(no_path_engine())
        .link_settings(fast_fallback.clone())
        .connect()
        .await
        .expect("a registers");
    let b = builder(&url, Identity::generate().expect("rng"))
        .rtc_engine(no_path_engine())
        .link_settings(fast_fallback)
        .connect()
        .await
        .expect("b registers");
    let started = Instant::now();
    let echoed = within(a.peer(b.did()).exec("echo", json!({"n": 1}))).await;
    assert_eq!(echoed.expect("echo over the relay"), json!({"n": 1}));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fell back after relay_after, not after the setup deadline: {:?}",
        started.elapsed()
    );
    let path = a.peer(b.did()).path().await.expect("path").expect("a path");
    assert_eq!(path.kind(), PathKind::Gateway);
}

#[tokio::test]
async fn without_fallback_the_same_pair_is_refused_with_no_path() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let settings = link_settings()
        .setup_timeout(Duration::from_secs(2))
        .gateway_relay(GatewayRelay::Never);
    let a = builder(&url, Identity::generate().expect("rng"))
        .rtc_engine(no_path_engine())
        .link_settings(settings.clone())
        .connect()
        .await
        .expect("a registers");
    let b = builder(&url, Identity::generate().expect("rng"))
        .rtc_engine(no_path_engine())
        .link_settings(settings)
        .connect()
        .await
        .expect("b registers");
    let refused = within(a.peer(b.did()).exec("echo", json!({})))
        .await
        .expect_err("no path");
    assert!(
        matches!(
            refused.code(),
            ErrorCode::Timeout | ErrorCode::ConnectionRefused
        ),
        "{refused}"
    );
}

#[tokio::test]
async fn a_gateway_that_does_not_relay_refuses_at_once_and_the_caller_says_no_path() {
    let config = GatewayConfig {
        relay_bytes_per_did: 0,
        ..GatewayConfig::ephemeral()
    };
    let gateway = gateway_with(config).await;
    let url = gateway.ws_url();
    let a = builder(&url, Identity::generate().expect("rng"))
        .gateway_relay(GatewayRelay::Always)
        .connect()
        .await
        .expect("a registers");
    let b = builder(&url, Identity::generate().expect("rng"))
        .connect()
        .await
        .expect("b registers");
    let started = Instant::now();
    let refused = within(a.peer(b.did()).exec("echo", json!({})))
        .await
        .expect_err("relay refused");
    assert_eq!(refused.code(), ErrorCode::ConnectionRefused, "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_setup_whose_ice_found_a_path_is_not_moved_to_the_relay() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let fast_fallback = link_settings().relay_after(Duration::from_millis(300));
    let a = builder(&url, Identity::generate().expect("rng"))
        .rtc_engine(Arc::new(FaultyEngine {
            inner: loopback_engine(),
            hide_candidates: false,
            slow_open: true,
        }))
        .link_settings(fast_fallback)
        .connect()
        .await
        .expect("a registers");
    let b = builder(&url, Identity::generate().expect("rng"))
        .connect()
        .await
        .expect("b registers");
    let started = Instant::now();
    let peer = a.peer(b.did());
    let echoed = within(peer.exec("echo", json!({"n": 2}))).await;
    assert_eq!(echoed.expect("echo"), json!({"n": 2}));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the open was held back"
    );
    let path = peer.path().await.expect("path").expect("a path");
    assert_eq!(path.kind(), PathKind::Direct, "{path}");
}
