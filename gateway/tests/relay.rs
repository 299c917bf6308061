//! Relaying signaling between registered agents.

mod support;

use std::time::Duration;

use ioap_protocol::payload::{ExecRequest, IceCandidate, Ping, SessionDescription, Unregister};
use ioap_protocol::{Body, CloseCode, Envelope, ErrorCode, Identity, ReceivedEnvelope};
use support::*;

fn offer() -> Body {
    Body::Offer(SessionDescription {
        sdp: ioap_protocol::samples::example_sdp(),
    })
}

#[tokio::test]
async fn offer_answer_and_ice_are_relayed_byte_for_byte() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut alice = register(&url).await;
    let mut bob = register(&url).await;

    let sent_offer = alice.send(bob.did(), offer()).await;
    assert_eq!(bob.next_text().await, sent_offer);
    let offer_id = ReceivedEnvelope::decode(sent_offer.as_bytes())
        .expect("decode")
        .envelope()
        .id;

    let answer = Envelope::new(
        bob.did(),
        Some(alice.did()),
        Body::Answer(SessionDescription {
            sdp: "v=0\r\n".into(),
        }),
        now(),
    )
    .in_reply_to(offer_id)
    .sign(&bob.identity)
    .expect("sign")
    .into_string();
    bob.send_raw(&answer).await;
    assert_eq!(alice.next_text().await, answer);

    // A frame whose members are in an unusual order and spacing arrives exactly as sent.
    let candidate = Envelope::new(
        alice.did(),
        Some(bob.did()),
        Body::IceCandidate(IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }),
        now(),
    )
    .in_reply_to(offer_id)
    .sign(&alice.identity)
    .expect("sign");
    let value: serde_json::Value = serde_json::from_str(candidate.as_str()).expect("json");
    let pretty = serde_json::to_string_pretty(&value).expect("pretty");
    alice.send_raw(&pretty).await;
    let relayed = bob.next_text().await;
    assert_eq!(relayed, pretty);
    ReceivedEnvelope::decode(relayed.as_bytes())
        .expect("decode")
        .verify()
        .expect("the end-to-end signature survives the relay");
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_offline_target_gets_unknown_agent_correlated_to_the_frame() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    let nobody = Identity::generate().expect("rng").did();
    let sent = alice.send(nobody, offer()).await;
    let sent_id = ReceivedEnvelope::decode(sent.as_bytes())
        .expect("decode")
        .envelope()
        .id;
    let correlation = expect_error_code(&mut alice.ws, ErrorCode::UnknownAgent).await;
    assert_eq!(correlation, Some(sent_id));
    alice.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_spoofed_sender_is_refused_and_the_session_kept() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut alice = register(&url).await;
    let mut bob = register(&url).await;
    // Alice sends a frame claiming to be from bob (validly signed by bob, even).
    let spoofed = Envelope::new(bob.did(), Some(bob.did()), offer(), now())
        .sign(&bob.identity)
        .expect("sign")
        .into_string();
    alice.send_raw(&spoofed).await;
    expect_error_code(&mut alice.ws, ErrorCode::SenderMismatch).await;
    alice.ping_gateway(2).await;
    // Nothing reached bob: his next frame is the answer to his own PING.
    bob.ping_gateway(3).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn ping_gets_pong_with_the_same_sequence() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    for sequence in [0, 1, 9_007_199_254_740_991] {
        alice.ping_gateway(sequence).await;
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn application_messages_are_not_relayed() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut alice = register(&url).await;
    let bob = register(&url).await;
    alice
        .send(
            bob.did(),
            Body::ExecRequest(ExecRequest {
                timeout_ms: 1000,
                ..ExecRequest::new("echo", serde_json::json!({}))
            }),
        )
        .await;
    expect_error_code(&mut alice.ws, ErrorCode::NotRelayed).await;
    alice
        .send(bob.did(), Body::Ping(Ping { sequence: 1 }))
        .await;
    expect_error_code(&mut alice.ws, ErrorCode::NotRelayed).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn unregister_removes_the_agent_and_closes_normally() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut alice = register(&url).await;
    let mut bob = register(&url).await;
    let alice_did = alice.did();
    alice
        .send(alice.gateway, Body::Unregister(Unregister::default()))
        .await;
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::Normal.code())
    );
    let (status, _) = get_json(&gateway, &format!("/agents/{alice_did}")).await;
    assert_eq!(status, 404);
    bob.send(alice_did, offer()).await;
    expect_error_code(&mut bob.ws, ErrorCode::UnknownAgent).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_does_not_delay_another_pair() {
    let gateway = start(|c| {
        c.queue_capacity = 8;
        c.rate_per_did = 0;
    })
    .await;
    let url = gateway.ws_url();
    let mut sender = register(&url).await;
    let stalled = register(&url).await; // never reads again
    let mut alice = register(&url).await;
    let mut bob = register(&url).await;

    // Large frames fill the stalled receiver's socket buffers, then its queue, quickly.
    let big = Body::Offer(SessionDescription {
        sdp: "a".repeat(60_000),
    });
    let mut busy = false;
    'sending: for _ in 0..100 {
        for _ in 0..20 {
            sender.send(stalled.did(), big.clone()).await;
        }
        if let Ok(event) =
            tokio::time::timeout(Duration::from_millis(20), next_event(&mut sender.ws)).await
        {
            let Event::Text(text) = event else {
                panic!("sender closed")
            };
            let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
            let Body::Error(error) = &received.envelope().body else {
                panic!("unexpected {:?}", received.envelope().body)
            };
            assert_eq!(error.code, ErrorCode::ReceiverBusy, "{}", error.message);
            busy = true;
            break 'sending;
        }
    }
    assert!(busy, "the stalled receiver's queue never filled");

    // Meanwhile another pair relays as usual.
    for _ in 0..20 {
        let sent = alice.send(bob.did(), offer()).await;
        assert_eq!(bob.next_text().await, sent);
    }
    let metrics = metrics_text(&gateway).await;
    let overflows = metrics
        .lines()
        .find(|l| l.starts_with("ioap_gateway_queue_overflows_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("overflow counter present");
    assert!(overflows >= 1.0);
    drop(stalled);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_receiver_blocked_past_the_write_timeout_is_dropped() {
    let gateway = start(|c| {
        c.queue_capacity = 4;
        c.rate_per_did = 0;
        c.write_timeout = Duration::from_millis(200);
    })
    .await;
    let url = gateway.ws_url();
    let mut sender = register(&url).await;
    let stalled = register(&url).await; // never reads
    let big = Body::Offer(SessionDescription {
        sdp: "a".repeat(60_000),
    });
    let mut dropped = false;
    'sending: for _ in 0..200 {
        for _ in 0..10 {
            sender.send(stalled.did(), big.clone()).await;
        }
        while let Ok(event) =
            tokio::time::timeout(Duration::from_millis(50), next_event(&mut sender.ws)).await
        {
            let Event::Text(text) = event else {
                panic!("sender closed")
            };
            let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
            if let Body::Error(error) = &received.envelope().body
                && error.code == ErrorCode::UnknownAgent
            {
                dropped = true;
                break 'sending;
            }
        }
    }
    assert!(dropped, "the blocked receiver was never dropped");
    let metrics = metrics_text(&gateway).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ioap_gateway_disconnects_total") && l.contains("slow_consumer")),
        "slow consumer disconnect counted"
    );
    drop(stalled);
    gateway.shutdown().await;
}
