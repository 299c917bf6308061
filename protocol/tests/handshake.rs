//! The registration handshake, driven without sockets.

use std::time::Duration;

use ioap_protocol::handshake::{
    Advertisement, ClientHandshake, ClientHandshakeError, NONCE_TTL, RegistrationError,
    ServerChallenge,
};
use ioap_protocol::payload::{Capability, ErrorPayload, Registered};
use ioap_protocol::samples::{alice, bob, example_time, gateway};
use ioap_protocol::signing::{self, Purpose};
use ioap_protocol::{
    Body, Envelope, ErrorCode, Identity, ReceivedEnvelope, SignedEnvelope, Timestamp,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "ws://127.0.0.1:8000/ws";

fn receive(wire: &SignedEnvelope) -> ReceivedEnvelope {
    ReceivedEnvelope::decode(wire.as_str().as_bytes()).expect("decode")
}

fn receive_text(text: &str) -> ReceivedEnvelope {
    ReceivedEnvelope::decode(text.as_bytes()).expect("decode")
}

fn advertisement() -> Advertisement {
    Advertisement {
        capabilities: vec![Capability::new("echo", "echoes")],
        listed: false,
    }
}

/// Challenge → REGISTER from `agent` for `audience`, at `now`.
fn start(agent: &Identity, audience: &str) -> (ServerChallenge, ClientHandshake, SignedEnvelope) {
    let now = example_time();
    let (server, challenge) = ServerChallenge::issue(&gateway(), now, NONCE_TTL).expect("rng");
    let mut client = ClientHandshake::new(audience, None);
    let register = client
        .on_challenge(&receive(&challenge), agent, &advertisement(), now)
        .expect("register");
    (server, client, register)
}

fn audience_is_ours(audience: &str) -> bool {
    audience == AUDIENCE
}

#[test]
fn full_registration() {
    let (server, client, register) = start(&alice(), AUDIENCE);
    let received = receive(&register);
    let registration = server
        .verify(&received, audience_is_ours, example_time())
        .expect("accepted");
    assert_eq!(registration.did, alice().did());
    assert_eq!(registration.capabilities, advertisement().capabilities);
    assert!(!registration.listed);
    assert_eq!(registration.register_id, register.envelope().id);

    let registered = Envelope::new(
        gateway().did(),
        Some(alice().did()),
        Body::Registered(Registered {
            session_id: "s".into(),
            idle_timeout_ms: 1000,
            max_frame_bytes: 65536,
            ice_servers: Vec::new(),
            ice_servers_ttl_ms: None,
        }),
        example_time(),
    )
    .in_reply_to(registration.register_id)
    .sign(&gateway())
    .expect("sign");
    let (gateway_did, payload) = client.on_reply(&receive(&registered)).expect("registered");
    assert_eq!(gateway_did, gateway().did());
    assert_eq!(payload.idle_timeout_ms, 1000);
}

#[test]
fn a_refusal_reaches_the_client_as_its_error() {
    let (_, client, register) = start(&alice(), AUDIENCE);
    let error = Envelope::new(
        gateway().did(),
        Some(alice().did()),
        Body::Error(ErrorPayload::new(ErrorCode::WrongAudience, "no")),
        example_time(),
    )
    .in_reply_to(register.envelope().id)
    .sign(&gateway())
    .expect("sign");
    match client.on_reply(&receive(&error)) {
        Err(ClientHandshakeError::Refused(e)) => assert_eq!(e.code, ErrorCode::WrongAudience),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_audience_is_refused() {
    let (server, _, register) = start(&alice(), "ws://evil.example:8000/ws");
    let err = server
        .verify(&receive(&register), audience_is_ours, example_time())
        .expect_err("wrong audience");
    assert!(matches!(err, RegistrationError::WrongAudience(_)));
    assert_eq!(err.code(), ErrorCode::WrongAudience);
}

#[test]
fn expired_nonce_is_refused() {
    let (server, _, register) = start(&alice(), AUDIENCE);
    let late = example_time().saturating_add(NONCE_TTL + Duration::from_millis(1));
    let err = server
        .verify(&receive(&register), audience_is_ours, late)
        .expect_err("expired");
    assert_eq!(err, RegistrationError::Expired);
    assert_eq!(err.code(), ErrorCode::InvalidNonce);
}

#[test]
fn a_register_replayed_to_another_session_is_refused() {
    let (_, _, register) = start(&alice(), AUDIENCE);
    // A second connection gets its own challenge; the captured REGISTER carries the old nonce.
    let (other_session, _) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let err = other_session
        .verify(&receive(&register), audience_is_ours, example_time())
        .expect_err("replay");
    assert_eq!(err, RegistrationError::WrongNonce);
    assert_eq!(err.code(), ErrorCode::InvalidNonce);
}

#[test]
fn a_register_for_another_gateway_is_refused() {
    let (_, _, register) = start(&alice(), AUDIENCE);
    let other_gateway = Identity::from_seed(&[9; 32]);
    let (server, _) =
        ServerChallenge::issue(&other_gateway, example_time(), NONCE_TTL).expect("rng");
    let err = server
        .verify(&receive(&register), audience_is_ours, example_time())
        .expect_err("addressed elsewhere");
    assert_eq!(err, RegistrationError::WrongRecipient);
}

/// An unsigned REGISTER from `from` carrying `public_key`, answering `challenge`.
fn register_claiming(
    challenge: &SignedEnvelope,
    from: ioap_protocol::Did,
    public_key: String,
) -> Envelope {
    let Body::Challenge(payload) = &challenge.envelope().body else {
        panic!("not a challenge")
    };
    Envelope::new(
        from,
        Some(gateway().did()),
        Body::Register(ioap_protocol::payload::Register {
            public_key,
            nonce: payload.nonce.clone(),
            audience: AUDIENCE.into(),
            capabilities: vec![],
            listed: true,
        }),
        example_time(),
    )
}

#[test]
fn a_foreign_did_without_its_key_is_refused() {
    // Mallory claims bob's DID and public key but can only sign with her own key.
    let mallory = Identity::from_seed(&[66; 32]);
    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let mut forged = register_claiming(&challenge, bob().did(), bob().did().public_key_multibase())
        .unsigned_object();
    let canonical = signing::canonicalize_object(&forged);
    let signature = signing::sign(&mallory, Purpose::Registration, &canonical);
    forged.insert(
        "signature".into(),
        json!(signing::encode_signature(&signature)),
    );
    let received = receive_text(&Value::Object(forged).to_string());
    let err = server
        .verify(&received, audience_is_ours, example_time())
        .expect_err("forged");
    assert_eq!(err, RegistrationError::BadSignature);
    assert_eq!(err.code(), ErrorCode::InvalidSignature);
}

#[test]
fn public_key_must_match_the_sender() {
    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let register = register_claiming(
        &challenge,
        alice().did(),
        bob().did().public_key_multibase(),
    )
    .sign(&alice())
    .expect("sign");
    let err = server
        .verify(&receive(&register), audience_is_ours, example_time())
        .expect_err("mismatch");
    assert_eq!(err, RegistrationError::KeyMismatch);
    assert_eq!(err.code(), ErrorCode::Unauthorized);
}

#[test]
fn a_register_with_a_far_off_clock_is_refused() {
    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let mut client = ClientHandshake::new(AUDIENCE, None);
    let skewed = Timestamp::from_unix_millis(example_time().unix_millis() - 120_000).expect("ok");
    let register = client
        .on_challenge(&receive(&challenge), &alice(), &advertisement(), skewed)
        .expect("register");
    let err = server
        .verify(&receive(&register), audience_is_ours, example_time())
        .expect_err("stale");
    assert_eq!(err, RegistrationError::Stale);
    assert_eq!(err.code(), ErrorCode::StaleMessage);
}

#[test]
fn another_message_instead_of_register_is_refused() {
    let (server, _) = ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let ping = Envelope::new(
        alice().did(),
        Some(gateway().did()),
        Body::Ping(ioap_protocol::payload::Ping { sequence: 1 }),
        example_time(),
    )
    .sign(&alice())
    .expect("sign");
    let err = server
        .verify(&receive(&ping), audience_is_ours, example_time())
        .expect_err("not a register");
    assert_eq!(err.code(), ErrorCode::NotRegistered);
}

#[test]
fn a_client_pinning_the_gateway_refuses_an_impostor() {
    let impostor = Identity::from_seed(&[13; 32]);
    let (_, challenge) = ServerChallenge::issue(&impostor, example_time(), NONCE_TTL).expect("rng");
    let mut client = ClientHandshake::new(AUDIENCE, Some(gateway().did()));
    let err = client
        .on_challenge(
            &receive(&challenge),
            &alice(),
            &advertisement(),
            example_time(),
        )
        .expect_err("impostor");
    assert!(matches!(err, ClientHandshakeError::WrongGateway { .. }));
}

#[test]
fn a_reply_not_signed_by_the_gateway_is_refused() {
    let (_, client, register) = start(&alice(), AUDIENCE);
    // bob pretends to be the gateway.
    let fake = Envelope::new(
        bob().did(),
        Some(alice().did()),
        Body::Registered(Registered {
            session_id: "s".into(),
            idle_timeout_ms: 1,
            max_frame_bytes: 1,
            ice_servers: Vec::new(),
            ice_servers_ttl_ms: None,
        }),
        example_time(),
    )
    .in_reply_to(register.envelope().id)
    .sign(&bob())
    .expect("sign");
    assert_eq!(
        client.on_reply(&receive(&fake)).expect_err("fake"),
        ClientHandshakeError::BadGatewaySignature
    );
}

#[test]
fn nonces_are_fresh() {
    let (_, a) = ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let (_, b) = ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let nonce = |e: &SignedEnvelope| match &e.envelope().body {
        Body::Challenge(c) => c.nonce.clone(),
        _ => panic!("not a challenge"),
    };
    assert_ne!(nonce(&a), nonce(&b));
    assert_eq!(nonce(&a).len(), 43);
}

#[test]
fn a_register_must_answer_this_sessions_challenge_by_its_id() {
    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let (_, other) = ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let claim = || {
        register_claiming(
            &challenge,
            alice().did(),
            alice().did().public_key_multibase(),
        )
    };
    let check = |envelope: Envelope, server: ServerChallenge| {
        let register = envelope.sign(&alice()).expect("sign");
        server.verify(&receive(&register), audience_is_ours, example_time())
    };
    let uncorrelated = check(claim(), server).expect_err("no correlation_id");
    assert_eq!(uncorrelated, RegistrationError::WrongChallenge);
    assert_eq!(uncorrelated.code(), ErrorCode::InvalidNonce);

    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let claim = || {
        register_claiming(
            &challenge,
            alice().did(),
            alice().did().public_key_multibase(),
        )
    };
    let wrong = check(claim().in_reply_to(other.envelope().id), server);
    assert_eq!(
        wrong.expect_err("another challenge's id"),
        RegistrationError::WrongChallenge
    );

    let (server, challenge) =
        ServerChallenge::issue(&gateway(), example_time(), NONCE_TTL).expect("rng");
    let answer = register_claiming(
        &challenge,
        alice().did(),
        alice().did().public_key_multibase(),
    )
    .in_reply_to(challenge.envelope().id);
    assert!(check(answer, server).is_ok(), "the CHALLENGE's own id");
}
