//! Hostile and broken input: each gets its documented error, the gateway keeps serving.

mod support;

use futures_util::{SinkExt, StreamExt};
use ioap_protocol::payload::Ping;
use ioap_protocol::{Body, CloseCode, Envelope, ErrorCode};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn an_oversize_frame_gets_too_large_and_close_1009() {
    let gateway = start(|c| c.max_frame_bytes = 4096).await;
    let url = gateway.ws_url();
    let mut bystander = register(&url).await;
    let mut alice = register(&url).await;
    alice.send_raw(&"x".repeat(5000)).await;
    expect_error_code(&mut alice.ws, ErrorCode::TooLarge).await;
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::MessageTooBig.code())
    );
    bystander.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_binary_frame_gets_malformed_and_the_session_survives() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    alice
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    alice.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn invalid_json_unknown_types_and_wrong_payloads_get_malformed() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    let ping = alice
        .send(alice.gateway, Body::Ping(Ping { sequence: 5 }))
        .await;
    let _pong = alice.next_text().await;
    let cases = [
        "{not json".to_owned(),
        "[]".to_owned(),
        ping.replace("\"PING\"", "\"TELEPORT\""),
        ping.replace("\"sequence\":5", "\"sequence\":\"five\""),
        ping.replace("\"sequence\":5", "\"sequence\":5,\"sequence\":6"),
        ping.replace("\"sequence\":5", "\"sequence\":18446744073709551616"),
    ];
    for case in &cases {
        alice.send_raw(case).await;
        expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    }
    alice.send_raw(&ping.replace("\"1.0\"", "\"2.0\"")).await;
    expect_error_code(&mut alice.ws, ErrorCode::UnsupportedVersion).await;
    alice.ping_gateway(6).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_gets_malformed_and_close_1007() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();
    let mut bystander = register(&url).await;
    let mut alice = register(&url).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    alice.ws.send(Message::Frame(frame)).await.expect("send");
    expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::InvalidPayload.code())
    );
    bystander.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_stream_of_malformed_frames_is_closed_with_1008() {
    let gateway = start(|c| c.max_consecutive_malformed = 3).await;
    let mut alice = register(&gateway.ws_url()).await;
    for _ in 0..4 {
        alice.send_raw("garbage").await;
        expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    }
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::PolicyViolation.code())
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_the_session_recovers() {
    let gateway = start(|c| c.rate_per_did = 5).await;
    let mut alice = register(&gateway.ws_url()).await;
    // Burst is 10: twenty PINGs at once exceed it.
    for sequence in 0..20 {
        alice
            .send(alice.gateway, Body::Ping(Ping { sequence }))
            .await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..20 {
        let received = next_envelope(&mut alice.ws).await;
        match &received.envelope().body {
            Body::Pong(_) => pongs += 1,
            Body::Error(e) if e.code == ErrorCode::RateLimited => {
                assert!(received.envelope().correlation_id.is_some());
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited > 0, "no RATE_LIMITED in a burst of 20");
    assert!(pongs >= 10, "the burst allowance was not served ({pongs})");
    // Time refills the bucket (5 per second): the input here is time passing.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    alice.ping_gateway(99).await;
    gateway.shutdown().await;
}

/// A client that never stops sending is closed with 4006, and the close frame reaches it even
/// though its frames are still arriving: the gateway reads until the client's close (or its
/// grace period) instead of dropping a socket with unread input, which would reset the
/// connection and lose the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_never_stops_still_reads_its_4006() {
    let gateway = start(|c| c.rate_per_did = 1).await;
    let alice = register(&gateway.ws_url()).await;
    let ping = Envelope::new(
        alice.did(),
        Some(alice.gateway),
        Body::Ping(Ping { sequence: 0 }),
        now(),
    )
    .sign(&alice.identity)
    .expect("sign")
    .into_string();
    let (mut sink, mut stream) = alice.ws.split();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < 1_000_000 && sink.send(Message::text(ping.clone())).await.is_ok() {
            sent += 1;
        }
        sent
    });
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(CloseCode::RateLimited.code()));
    let sent = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the flood stops once the connection is closed")
        .expect("flood task");
    assert!(sent > 256, "only {sent} frames were sent");
    gateway.shutdown().await;
}
