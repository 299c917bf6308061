//! Links and the gateway: open links outlive the gateway; agents re-register after a restart;
//! a gateway that alters an SDP in transit gets no link; many agents and links in one process.

mod support;

use futures_util::{SinkExt, StreamExt};
use ioap_client::{ConnectionState, GatewayRelay, PathKind};
use ioap_gateway::GatewayConfig;
use ioap_protocol::{ErrorCode, Identity, SUBPROTOCOL};
use serde_json::json;
use support::{agent, builder, gateway, gateway_with, within};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn an_open_link_works_while_the_gateway_is_down_and_new_links_follow_its_restart() {
    let first = gateway().await;
    let address = first.local_addr();
    let url = first.ws_url();
    let (alice, bob) = (agent(&url).await, agent(&url).await);
    let bob_peer = alice.peer(bob.did());
    within(bob_peer.connect()).await.expect("link");

    first.shutdown().await;
    let calls = (0..20).map(|i| bob_peer.exec("sum", json!({"values": [i, 1]})));
    let results = within(futures_util::future::join_all(calls)).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(
            result,
            Ok(json!(i as f64 + 1.0)),
            "call {i} with the gateway down"
        );
    }
    assert_ne!(
        alice.connection_state(),
        ConnectionState::Closed,
        "the agent keeps trying to reconnect"
    );

    let second = gateway_with(GatewayConfig {
        listen: address,
        ..GatewayConfig::ephemeral()
    })
    .await;
    assert!(within(alice.registered()).await.is_some());
    assert!(within(bob.registered()).await.is_some());
    let carol = agent(&url).await;
    let fresh = within(alice.peer(carol.did()).exec("echo", json!("new link"))).await;
    assert_eq!(fresh, Ok(json!("new link")));
    let old = within(bob_peer.exec("echo", json!("old link"))).await;
    assert_eq!(old, Ok(json!("old link")));
    assert_eq!(second.registered_agents(), 3);
    for agent in [alice, bob, carol] {
        agent.close().await;
    }
}

/// A WebSocket relay between agents and the gateway that changes the DTLS fingerprint in every
/// SDP it forwards to its clients: a gateway trying to sit between two agents.
async fn tampering_proxy(listener: TcpListener, upstream: String) {
    while let Ok((tcp, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, accept_subprotocol).await
            else {
                return;
            };
            let mut request = upstream.into_client_request().expect("request");
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            let Ok((server, _)) = tokio_tungstenite::connect_async(request).await else {
                return;
            };
            let (mut client_tx, mut client_rx) = client.split();
            let (mut server_tx, mut server_rx) = server.split();
            let up = async {
                while let Some(Ok(message)) = client_rx.next().await {
                    if server_tx.send(message).await.is_err() {
                        break;
                    }
                }
            };
            let down = async {
                while let Some(Ok(message)) = server_rx.next().await {
                    let message = match message {
                        Message::Text(text) => Message::text(alter_fingerprint(text.as_str())),
                        other => other,
                    };
                    if client_tx.send(message).await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! { () = up => {}, () = down => {} }
        });
    }
}

/// Accepts the upgrade with the ioap subprotocol (the signature is tungstenite's callback).
#[allow(clippy::result_large_err)]
fn accept_subprotocol(
    _: &Request,
    mut response: Response,
) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

fn alter_fingerprint(frame: &str) -> String {
    const MARK: &str = "a=fingerprint:sha-256 ";
    match frame.find(MARK) {
        Some(at) => {
            let digit = at + MARK.len();
            let replacement = if &frame[digit..=digit] == "A" {
                "B"
            } else {
                "A"
            };
            format!("{}{replacement}{}", &frame[..digit], &frame[digit + 1..])
        }
        None => frame.to_owned(),
    }
}

/// A gateway, and the URL of a tampering proxy in front of it.
async fn gateway_behind_tampering_proxy() -> (ioap_gateway::RunningGateway, String) {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_url = format!("ws://{}/ws", proxy.local_addr().expect("address"));
    let gateway = gateway_with(GatewayConfig {
        public_urls: vec![proxy_url.clone()],
        ..GatewayConfig::ephemeral()
    })
    .await;
    tokio::spawn(tampering_proxy(proxy, gateway.ws_url()));
    (gateway, proxy_url)
}

#[tokio::test]
async fn an_sdp_altered_in_transit_yields_no_link() {
    let (gateway, proxy_url) = gateway_behind_tampering_proxy().await;
    // Direct links only here: the DTLS binding of §11.2 is what is tested.
    let direct_only = |url: &str| {
        builder(url, Identity::generate().expect("rng"))
            .gateway_relay(GatewayRelay::Never)
            .connect()
    };
    let alice = direct_only(&gateway.ws_url()).await.expect("alice");
    // Bob reaches the gateway only through the tampering proxy.
    let bob = direct_only(&proxy_url).await.expect("bob");
    let refused = within(alice.peer(bob.did()).connect())
        .await
        .expect_err("no link through an altered SDP");
    assert_eq!(refused.code(), ErrorCode::Timeout, "{refused}");
    assert!(
        bob.refused_messages() >= 1,
        "Bob refused the altered OFFER (its signature no longer verifies)"
    );
    assert_eq!((alice.open_links(), bob.open_links()), (0, 0));
    // The other way round, Bob's OFFER reaches Alice intact but Alice's ANSWER does not.
    let refused = within(bob.peer(alice.did()).connect())
        .await
        .expect_err("no link through an altered SDP");
    assert_eq!(refused.code(), ErrorCode::Timeout, "{refused}");
    assert_eq!((alice.open_links(), bob.open_links()), (0, 0));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn with_fallback_a_tampered_pair_links_over_the_sealed_gateway_relay() {
    let (gateway, proxy_url) = gateway_behind_tampering_proxy().await;
    let fast = support::link_settings().relay_after(std::time::Duration::from_millis(300));
    let alice = builder(&gateway.ws_url(), Identity::generate().expect("rng"))
        .link_settings(fast.clone())
        .connect()
        .await
        .expect("alice");
    let bob = builder(&proxy_url, Identity::generate().expect("rng"))
        .link_settings(fast)
        .connect()
        .await
        .expect("bob");
    // The altered OFFER yields no direct link; the relayed link is sealed end to end and
    // bound to both DIDs, so the tampering relay can only pass it on.
    let peer = alice.peer(bob.did());
    let echoed = within(peer.exec("echo", json!({"through": "the relay"}))).await;
    assert_eq!(echoed.expect("echo"), json!({"through": "the relay"}));
    let path = peer.path().await.expect("path").expect("a path");
    assert_eq!(path.kind(), PathKind::Gateway, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_agents_fifty_links_every_call_succeeds() {
    const AGENTS: usize = 100;
    const CALLS_PER_LINK: usize = 5;
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let agents = within(futures_util::future::join_all(
        (0..AGENTS).map(|_| agent(&url)),
    ))
    .await;
    assert_eq!(gateway.registered_agents(), AGENTS);
    let (callers, callees) = agents.split_at(AGENTS / 2);
    let work = callers.iter().zip(callees).map(|(caller, callee)| {
        let peer = caller.peer(callee.did());
        async move {
            let mut results = Vec::new();
            for i in 0..CALLS_PER_LINK {
                results.push(peer.exec("sum", json!({"values": [i, 1]})).await);
            }
            results
        }
    });
    let results = within(futures_util::future::join_all(work)).await;
    let mut succeeded = 0;
    for (link, calls) in results.iter().enumerate() {
        for (i, result) in calls.iter().enumerate() {
            assert_eq!(result, &Ok(json!(i as f64 + 1.0)), "link {link} call {i}");
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, AGENTS / 2 * CALLS_PER_LINK);
    let open: usize = agents.iter().map(|a| a.open_links()).sum();
    assert_eq!(open, AGENTS, "fifty links, counted at both ends");
    futures_util::future::join_all(agents.into_iter().map(|a| a.close())).await;
    assert_eq!(gateway.registered_agents(), 0);
}

#[tokio::test]
async fn an_agent_key_file_keeps_its_did_across_restarts() {
    let gateway = gateway().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    let first = ioap_client::Agent::builder(gateway.ws_url())
        .key_file(&path)
        .connect()
        .await
        .expect("registers");
    let did = first.did();
    first.close().await;
    let again = ioap_client::Agent::builder(gateway.ws_url())
        .key_file(&path)
        .connect()
        .await
        .expect("registers");
    assert_eq!(again.did(), did);
    assert_eq!(Identity::load(&path).expect("key file").did(), did);
    again.close().await;
}
