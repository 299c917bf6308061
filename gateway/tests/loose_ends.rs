//! The rules PROTOCOL_DESIGN.md states for the corners of the gateway protocol, each through a
//! real gateway: what is verified before the gateway acts, what a session survives, how an
//! ERROR is correlated, and the HTTP edges.

mod support;

use ioap_protocol::handshake::Advertisement;
use ioap_protocol::payload::{Ping, SessionDescription, Unregister};
use ioap_protocol::{Body, Envelope, ErrorCode, Identity, ReceivedEnvelope};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// `frame` with its signature replaced by a valid-looking one made for other bytes.
fn with_wrong_signature(agent: &Agent, frame: &str) -> String {
    let other = Envelope::new(
        agent.did(),
        Some(agent.gateway),
        Body::Ping(Ping { sequence: 424_242 }),
        now(),
    )
    .sign(&agent.identity)
    .expect("sign")
    .into_string();
    let signature = |text: &str| {
        let at = text.find("\"signature\":\"").expect("signature") + 13;
        text[at..at + 86].to_owned()
    };
    frame.replace(&signature(frame), &signature(&other))
}

fn signed(agent: &Agent, to: ioap_protocol::Did, body: Body) -> String {
    Envelope::new(agent.did(), Some(to), body, now())
        .sign(&agent.identity)
        .expect("sign")
        .into_string()
}

#[tokio::test]
async fn ping_and_unregister_with_bad_signatures_are_refused_and_change_nothing() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    let ping = signed(&alice, alice.gateway, Body::Ping(Ping { sequence: 1 }));
    let bye = signed(
        &alice,
        alice.gateway,
        Body::Unregister(Unregister::default()),
    );
    for frame in [ping, bye] {
        let forged = with_wrong_signature(&alice, &frame);
        alice.send_raw(&forged).await;
        let id = ReceivedEnvelope::decode(forged.as_bytes())
            .expect("decodes")
            .envelope()
            .id;
        let correlation = expect_error_code(&mut alice.ws, ErrorCode::InvalidSignature).await;
        assert_eq!(correlation, Some(id));
    }
    assert_eq!(gateway.registered_agents(), 1, "still registered");
    alice.ping_gateway(2).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_second_register_gets_already_registered_and_the_session_survives() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut alice = register(&url).await;
    let again = Envelope::new(
        alice.did(),
        Some(alice.gateway),
        Body::Register(ioap_protocol::payload::Register {
            public_key: alice.did().public_key_multibase(),
            nonce: "AAAA".into(),
            audience: url.clone(),
            capabilities: vec![],
            listed: true,
        }),
        now(),
    )
    .sign(&alice.identity)
    .expect("sign")
    .into_string();
    alice.send_raw(&again).await;
    expect_error_code(&mut alice.ws, ErrorCode::AlreadyRegistered).await;
    alice.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn signaling_to_oneself_and_other_types_to_the_gateway_get_not_relayed() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    let offer = Body::Offer(SessionDescription {
        sdp: ioap_protocol::samples::example_sdp(),
    });
    alice.send(alice.did(), offer.clone()).await;
    expect_error_code(&mut alice.ws, ErrorCode::NotRelayed).await;
    alice.send(alice.gateway, offer).await;
    expect_error_code(&mut alice.ws, ErrorCode::NotRelayed).await;
    alice.ping_gateway(1).await;
    gateway.shutdown().await;
}

/// §4 ERROR: an unknown envelope member with a valid `id` gets an ERROR correlated to it.
#[tokio::test]
async fn an_unknown_member_is_refused_with_the_frames_id() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    let ping = signed(&alice, alice.gateway, Body::Ping(Ping { sequence: 5 }));
    let id = ReceivedEnvelope::decode(ping.as_bytes())
        .expect("decodes")
        .envelope()
        .id;
    alice
        .send_raw(&ping.replacen('{', "{\"extra\":true,", 1))
        .await;
    let correlation = expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    assert_eq!(correlation, Some(id));
    gateway.shutdown().await;
}

/// Subprotocol names are compared exactly (RFC 6455 tokens are case-sensitive).
#[tokio::test]
async fn the_subprotocol_is_matched_case_sensitively() {
    let gateway = start(|_| {}).await;
    let mut request = gateway.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("IOAP.V1"),
    );
    let error = tokio_tungstenite::connect_async(request)
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error:?}");
    };
    assert_eq!(response.status(), 400);
    gateway.shutdown().await;
}

#[tokio::test]
async fn agents_limit_out_of_range_is_a_bad_request() {
    let gateway = start(|_| {}).await;
    let _alice = register_as(
        &gateway.ws_url(),
        Identity::generate().expect("rng"),
        Advertisement {
            listed: true,
            ..Advertisement::default()
        },
    )
    .await;
    for (limit, expected) in [(0, 400), (1, 200), (1000, 200), (1001, 400)] {
        let (status, body) = get_json(&gateway, &format!("/agents?limit={limit}")).await;
        assert_eq!(status, expected, "limit={limit}: {body}");
        if expected == 400 {
            assert_eq!(body["error"]["code"], "MALFORMED_MESSAGE");
        }
    }
    gateway.shutdown().await;
}
