//! Liveness, shutdown, limits and TLS.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use ioap_gateway::TlsFiles;
use ioap_protocol::handshake::Advertisement;
use ioap_protocol::{CloseCode, Identity};
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_silent_session_is_closed_and_removed_at_the_idle_timeout() {
    let gateway = start(|c| {
        c.idle_timeout = Duration::from_millis(400);
        c.ping_interval = Duration::from_secs(3600);
    })
    .await;
    let mut alice = register(&gateway.ws_url()).await;
    assert_eq!(gateway.registered_agents(), 1);
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::IdleTimeout.code())
    );
    // The session leaves the registry before it sends its close frame.
    assert_eq!(gateway.registered_agents(), 0);
    let (_, health) = get_json(&gateway, "/health").await;
    assert_eq!(health["connected_agents"], 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn websocket_pongs_keep_a_session_alive() {
    let gateway = start(|c| {
        c.idle_timeout = Duration::from_millis(600);
        c.ping_interval = Duration::from_millis(100);
    })
    .await;
    let mut alice = register(&gateway.ws_url()).await;
    // The client sends no message of its own, only the automatic pongs to the gateway's
    // pings, for well over the idle timeout.
    let mut pings = 0;
    while pings < 15 {
        match tokio::time::timeout(WAIT, alice.ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    alice.ping_gateway(1).await;
    assert_eq!(gateway.registered_agents(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_session_with_1001() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut agents = Vec::new();
    for _ in 0..5 {
        agents.push(register(&url).await);
    }
    let mut unregistered = connect(&url).await;
    let _challenge = next_envelope(&mut unregistered).await;
    let stop = tokio::spawn(gateway.shutdown());
    for agent in &mut agents {
        assert_eq!(
            expect_close(&mut agent.ws).await,
            Some(CloseCode::GoingAway.code())
        );
    }
    assert_eq!(
        expect_close(&mut unregistered).await,
        Some(CloseCode::GoingAway.code())
    );
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_with_1013() {
    let gateway = start(|c| c.max_connections = 2).await;
    let url = gateway.ws_url();
    let mut first = register(&url).await;
    let _second = register(&url).await;
    let mut third = connect(&url).await;
    assert_eq!(
        expect_close(&mut third).await,
        Some(CloseCode::TryAgainLater.code())
    );
    first.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_gateway_can_keep_its_identity_in_a_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.pem");
    let identity = Identity::generate().expect("rng");
    identity.save(&path, false).expect("save");
    let loaded = Identity::load(&path).expect("load");
    let gateway = start(|c| c.identity = Some(loaded)).await;
    assert_eq!(gateway.did(), identity.did());
    let agent = register(&gateway.ws_url()).await;
    assert_eq!(agent.gateway, identity.did());
    gateway.shutdown().await;
}

#[tokio::test]
async fn wss_and_https_with_a_generated_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let gateway = start(|c| {
        c.tls = Some(TlsFiles {
            cert: cert_path,
            key: key_path,
        })
    })
    .await;
    let port = gateway.local_addr().port();
    let url = format!("wss://localhost:{port}/ws");
    assert_eq!(gateway.ws_url(), format!("wss://127.0.0.1:{port}/ws"));
    let tls = trusting(certified.cert.der());

    let identity = Identity::generate().expect("rng");
    let mut ws = connect_with(&url, Some(tls.clone())).await;
    let (_, register) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, register.as_str()).await;
    register
        .handshake
        .on_reply(&next_envelope(&mut ws).await)
        .expect("registered over wss");

    // A plain ws:// audience is refused on the TLS listener.
    let other = Identity::generate().expect("rng");
    let mut ws = connect_with(&url, Some(tls.clone())).await;
    let plain = format!("ws://localhost:{port}/ws");
    let (_, register) = answer_challenge(&mut ws, &plain, &other, &Advertisement::default()).await;
    send_text(&mut ws, register.as_str()).await;
    expect_error_code(&mut ws, ioap_protocol::ErrorCode::WrongAudience).await;

    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .expect("client");
    let health: serde_json::Value = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .expect("https")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["connected_agents"], 1);
    gateway.shutdown().await;
}
