//! The SDK's gateway connection against a real gateway: registration, verified relay,
//! reconnection with re-registration after a restart, and a clean close.

use std::time::Duration;

use ioap_client::{ConnectionEvent, GatewayClient, GatewayClientConfig};
use ioap_gateway::{Gateway, GatewayConfig};
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, Identity};

const WAIT: Duration = Duration::from_secs(15);

fn client(url: &str) -> (GatewayClient, ioap_client::GatewayStreams) {
    let mut config = GatewayClientConfig::new(url, Identity::generate().expect("rng"));
    config.reconnect_min_delay = Duration::from_millis(50);
    config.reconnect_max_delay = Duration::from_millis(500);
    GatewayClient::start(config)
}

#[tokio::test]
async fn clients_register_exchange_signaling_and_survive_a_gateway_restart() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let address = gateway.local_addr();
    let url = gateway.ws_url();
    let gateway_did = gateway.did();
    let (alice, mut alice_streams) = client(&url);
    let (bob, mut bob_streams) = client(&url);
    assert_eq!(
        tokio::time::timeout(WAIT, alice.registered())
            .await
            .expect("in time"),
        Some(gateway_did)
    );
    assert_eq!(
        tokio::time::timeout(WAIT, bob.registered())
            .await
            .expect("in time"),
        Some(gateway_did)
    );

    let offer = Body::Offer(SessionDescription { sdp: "v=0".into() });
    let id = alice
        .send(bob.did(), offer.clone(), None)
        .await
        .expect("send");
    let received = tokio::time::timeout(WAIT, bob_streams.inbound.recv())
        .await
        .expect("in time")
        .expect("envelope");
    assert_eq!(received.id, id);
    assert_eq!(received.from, alice.did());
    assert_eq!(received.body, offer);

    // Restart the gateway on the same address: both clients reconnect and re-register.
    gateway.shutdown().await;
    let event = tokio::time::timeout(WAIT, alice_streams.events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert!(
        matches!(event, ConnectionEvent::Registered { .. }),
        "first event is the registration, got {event:?}"
    );
    let disconnected = tokio::time::timeout(WAIT, alice_streams.events.recv())
        .await
        .expect("in time")
        .expect("event");
    assert_eq!(
        disconnected,
        ConnectionEvent::Disconnected {
            close_code: Some(1001),
            reason: "gateway shutting down".into()
        }
    );
    let restarted = Gateway::start(GatewayConfig {
        listen: address,
        ..GatewayConfig::ephemeral()
    })
    .await
    .expect("restart");
    loop {
        let event = tokio::time::timeout(WAIT, alice_streams.events.recv())
            .await
            .expect("in time")
            .expect("event");
        match event {
            ConnectionEvent::Registered { gateway, .. } => {
                assert_eq!(gateway, restarted.did());
                break;
            }
            ConnectionEvent::Reconnecting { .. } | ConnectionEvent::RegistrationFailed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::timeout(WAIT, bob.registered())
        .await
        .expect("in time");
    let id = bob
        .send(alice.did(), offer.clone(), None)
        .await
        .expect("send");
    let received = tokio::time::timeout(WAIT, alice_streams.inbound.recv())
        .await
        .expect("in time")
        .expect("envelope");
    assert_eq!(received.id, id);

    alice.close().await;
    bob.close().await;
    assert_eq!(restarted.registered_agents(), 0, "close unregisters");
    restarted.shutdown().await;
}

/// A refused registration reaches the embedder as an event naming the gateway's code, and the
/// gateway's `/health` counts only registered agents.
#[tokio::test]
async fn a_refused_registration_is_reported_with_the_gateways_code() {
    let admitted = Identity::generate().expect("rng");
    let gateway = Gateway::start(GatewayConfig {
        admission: ioap_gateway::Admission::Allowlist([admitted.did()].into()),
        ..GatewayConfig::ephemeral()
    })
    .await
    .expect("gateway");
    let (stranger, mut streams) = client(&gateway.ws_url());
    let event = tokio::time::timeout(WAIT, streams.events.recv())
        .await
        .expect("in time")
        .expect("event");
    match event {
        ConnectionEvent::RegistrationFailed { code, reason, .. } => {
            assert_eq!(
                code,
                Some(ioap_protocol::ErrorCode::Unauthorized),
                "{reason}"
            );
        }
        other => panic!("expected a refused registration, got {other:?}"),
    }
    let directory = ioap_client::Directory::new(&gateway.ws_url(), None).expect("directory");
    assert_eq!(
        directory.health().await.expect("health").connected_agents,
        0
    );

    let mut config = GatewayClientConfig::new(gateway.ws_url(), admitted);
    config.reconnect_min_delay = Duration::from_millis(50);
    let (member, _streams) = GatewayClient::start(config);
    tokio::time::timeout(WAIT, member.registered())
        .await
        .expect("in time");
    let health = directory.health().await.expect("health");
    assert_eq!(health.connected_agents, 1);
    assert_eq!(health.gateway_did, gateway.did());
    stranger.close().await;
    member.close().await;
    gateway.shutdown().await;
}

/// The keepalive pings a quiet gateway with WebSocket pings (no signature on either side,
/// PROTOCOL_DESIGN.md §10) and the gateway's pongs keep the connection: with a 100 ms quiet
/// spell and a 200 ms deadline, a ping left unanswered would end it within 300 ms.
#[tokio::test]
async fn a_quiet_gateway_answers_the_keepalive_and_the_connection_stays() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let mut config = GatewayClientConfig::new(gateway.ws_url(), Identity::generate().expect("rng"));
    config.keepalive = Duration::from_millis(100);
    config.keepalive_timeout = Duration::from_millis(200);
    let (client, mut streams) = GatewayClient::start(config);
    assert!(
        tokio::time::timeout(WAIT, client.registered())
            .await
            .expect("in time")
            .is_some()
    );
    let event = tokio::time::timeout(WAIT, streams.events.recv()).await;
    assert!(
        matches!(event, Ok(Some(ConnectionEvent::Registered { .. }))),
        "{event:?}"
    );

    // Ten keepalive rounds with nothing else on the connection.
    let event = tokio::time::timeout(Duration::from_secs(3), streams.events.recv()).await;
    assert!(event.is_err(), "the connection changed: {event:?}");
    assert_eq!(gateway.registered_agents(), 1);
    client.close().await;
    gateway.shutdown().await;
}
