//! Registration against a real gateway over real WebSockets.

mod support;

use std::time::Duration;

use ioap_gateway::Admission;
use ioap_protocol::handshake::Advertisement;
use ioap_protocol::payload::Register;
use ioap_protocol::signing::{self, Purpose};
use ioap_protocol::{Body, CloseCode, Envelope, ErrorCode, Identity};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn a_client_without_the_subprotocol_is_refused_with_a_clear_error() {
    let gateway = start(|_| {}).await;
    let error = tokio_tungstenite::connect_async(gateway.ws_url())
        .await
        .expect_err("refused");
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error:?}");
    };
    assert_eq!(response.status(), 400);
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).expect("utf8");
    assert!(body.contains("ioap.v1"), "{body}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_full_registration_makes_the_agent_routable() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (gateway_did, register) =
        answer_challenge(&mut ws, &url, &identity, &capabilities(&["echo"])).await;
    assert_eq!(
        gateway_did,
        gateway.did(),
        "CHALLENGE comes from the gateway's DID"
    );
    send_text(&mut ws, register.as_str()).await;
    let reply = next_envelope(&mut ws).await;
    let (_, registered) = register.handshake.on_reply(&reply).expect("REGISTERED");
    assert_eq!(registered.idle_timeout_ms, 300_000);
    assert_eq!(registered.max_frame_bytes, 65_536);
    assert_eq!(gateway.registered_agents(), 1);
    let (status, agent) = get_json(&gateway, &format!("/agents/{}", identity.did())).await;
    assert_eq!(status, 200);
    assert_eq!(agent["capabilities"][0]["name"], "echo");
    gateway.shutdown().await;
}

/// Sends `register` on a fresh connection and expects ERROR `code` then close 4002.
async fn expect_refused(ws: &mut Ws, register: &str, code: ErrorCode) {
    send_text(ws, register).await;
    expect_error_code(ws, code).await;
    assert_eq!(
        expect_close(ws).await,
        Some(CloseCode::RegistrationFailed.code())
    );
}

/// Reads the CHALLENGE on `ws` and forges a REGISTER claiming `victim`'s DID and key, signed
/// by `signer` (who does not hold the victim's key).
async fn forged_register(
    ws: &mut Ws,
    url: &str,
    gateway: ioap_protocol::Did,
    victim: &Identity,
    signer: &Identity,
) -> String {
    let challenge = next_envelope(ws).await;
    let Body::Challenge(payload) = &challenge.envelope().body else {
        panic!("no challenge")
    };
    let mut object = Envelope::new(
        victim.did(),
        Some(gateway),
        Body::Register(Register {
            public_key: victim.did().public_key_multibase(),
            nonce: payload.nonce.clone(),
            audience: url.to_owned(),
            capabilities: vec![],
            listed: true,
        }),
        now(),
    )
    .unsigned_object();
    let signature = signing::sign(
        signer,
        Purpose::Registration,
        &signing::canonicalize_object(&object),
    );
    object.insert(
        "signature".into(),
        json!(signing::encode_signature(&signature)),
    );
    Value::Object(object).to_string()
}

#[tokio::test]
async fn a_proof_signed_by_another_key_is_refused() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let victim = Identity::generate().expect("rng");
    let mallory = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    // Mallory claims the victim's DID and key, but can only sign with her own key.
    let forged = forged_register(&mut ws, &url, gateway.did(), &victim, &mallory).await;
    expect_refused(&mut ws, &forged, ErrorCode::InvalidSignature).await;
    assert_eq!(gateway.registered_agents(), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_expired_nonce_is_refused() {
    let gateway = start(|c| c.nonce_ttl = Duration::from_millis(200)).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    // Time passing is the input here: the nonce lives 200 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    expect_refused(&mut ws, register.as_str(), ErrorCode::InvalidNonce).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_replayed_register_is_refused_on_another_connection() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut first = connect(&url).await;
    let (_, register) =
        answer_challenge(&mut first, &url, &identity, &Advertisement::default()).await;
    send_text(&mut first, register.as_str()).await;
    register
        .handshake
        .on_reply(&next_envelope(&mut first).await)
        .expect("registered");
    // An eavesdropper replays the captured REGISTER on its own connection.
    let mut second = connect(&url).await;
    let _challenge = next_envelope(&mut second).await;
    expect_refused(&mut second, register.as_str(), ErrorCode::InvalidNonce).await;
    // The genuine session is untouched.
    let mut agent = Agent {
        identity,
        gateway: gateway.did(),
        ws: first,
    };
    agent.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_proof_for_another_audience_is_refused() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(
        &mut ws,
        "ws://gateway.elsewhere.example:8000/ws",
        &identity,
        &Advertisement::default(),
    )
    .await;
    expect_refused(&mut ws, register.as_str(), ErrorCode::WrongAudience).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_configured_public_url_is_an_accepted_audience() {
    let gateway = start(|c| c.public_urls = vec!["wss://gw.example.com/ws".into()]).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(
        &mut ws,
        "wss://gw.example.com/ws",
        &identity,
        &Advertisement::default(),
    )
    .await;
    send_text(&mut ws, register.as_str()).await;
    register
        .handshake
        .on_reply(&next_envelope(&mut ws).await)
        .expect("registered");
    gateway.shutdown().await;
}

#[tokio::test]
async fn anything_but_register_first_is_refused() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let challenge = next_envelope(&mut ws).await;
    let ping = Envelope::new(
        identity.did(),
        Some(challenge.envelope().from),
        Body::Ping(ioap_protocol::payload::Ping { sequence: 1 }),
        now(),
    )
    .sign(&identity)
    .expect("sign");
    expect_refused(&mut ws, ping.as_str(), ErrorCode::NotRegistered).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn no_register_before_the_deadline_closes_with_4001() {
    let gateway = start(|c| c.register_timeout = Duration::from_millis(300)).await;
    let mut ws = connect(&gateway.ws_url()).await;
    let _challenge = next_envelope(&mut ws).await;
    assert_eq!(
        expect_close(&mut ws).await,
        Some(CloseCode::RegistrationTimeout.code())
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_allowlist_admits_only_listed_dids() {
    let admitted = Identity::generate().expect("rng");
    let stranger = Identity::generate().expect("rng");
    let allowed = [admitted.did()].into_iter().collect();
    let gateway = start(|c| c.admission = Admission::Allowlist(allowed)).await;
    let url = gateway.ws_url();
    register_as(&url, admitted, Advertisement::default()).await;
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(&mut ws, &url, &stranger, &Advertisement::default()).await;
    expect_refused(&mut ws, register.as_str(), ErrorCode::Unauthorized).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn registrations_per_ip_are_rate_limited() {
    let gateway = start(|c| c.registrations_per_ip_per_min = 2).await;
    let url = gateway.ws_url();
    register(&url).await;
    register(&url).await;
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, pending) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, pending.as_str()).await;
    expect_error_code(&mut ws, ErrorCode::RateLimited).await;
    assert_eq!(
        expect_close(&mut ws).await,
        Some(CloseCode::RateLimited.code())
    );
    gateway.shutdown().await;
}

/// Registers a fresh identity through a connection claiming to forward `client`; the
/// gateway's answer: REGISTERED (`Ok`) or the ERROR's code.
async fn register_forwarded_for(url: &str, client: &str) -> Result<(), ErrorCode> {
    let identity = Identity::generate().expect("rng");
    let mut ws = connect_with_headers(url, &[("x-forwarded-for", client)]).await;
    let (_, pending) = answer_challenge(&mut ws, url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, pending.as_str()).await;
    match next_envelope(&mut ws).await.envelope().body.clone() {
        Body::Registered(_) => Ok(()),
        Body::Error(error) => Err(error.code),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_per_ip_limits_count_the_forwarded_client() {
    let gateway = start(|c| {
        c.registrations_per_ip_per_min = 1;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    })
    .await;
    let url = gateway.ws_url();
    assert_eq!(register_forwarded_for(&url, "203.0.113.1").await, Ok(()));
    assert_eq!(register_forwarded_for(&url, "203.0.113.2").await, Ok(()));
    assert_eq!(
        register_forwarded_for(&url, "203.0.113.1").await,
        Err(ErrorCode::RateLimited)
    );

    // From anyone not trusted, the header is ignored: a client cannot pick its address.
    let untrusted = start(|c| c.registrations_per_ip_per_min = 1).await;
    let url = untrusted.ws_url();
    assert_eq!(register_forwarded_for(&url, "203.0.113.1").await, Ok(()));
    assert_eq!(
        register_forwarded_for(&url, "203.0.113.2").await,
        Err(ErrorCode::RateLimited)
    );
}

#[tokio::test]
async fn the_newest_authenticated_session_wins_a_duplicate_did() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let identity = Identity::generate().expect("rng");
    let mut old = register_as(&url, identity.clone(), Advertisement::default()).await;

    // An unauthenticated client claiming the DID cannot displace it.
    let mallory = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let forged = forged_register(&mut ws, &url, gateway.did(), &identity, &mallory).await;
    expect_refused(&mut ws, &forged, ErrorCode::InvalidSignature).await;
    old.ping_gateway(1).await;

    // The same DID proving its key again replaces the old session.
    let mut new = register_as(&url, identity, Advertisement::default()).await;
    expect_error_code(&mut old.ws, ErrorCode::SessionReplaced).await;
    assert_eq!(
        expect_close(&mut old.ws).await,
        Some(CloseCode::SessionReplaced.code())
    );
    new.ping_gateway(2).await;
    assert_eq!(gateway.registered_agents(), 1);
    gateway.shutdown().await;
}
