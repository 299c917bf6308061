//! Hostile and broken input: each gets its documented error, the gateway keeps serving.

mod support;

use futures_util::SinkExt;
use ioap_protocol::payload::Ping;
use ioap_protocol::{Body, CloseCode, ErrorCode};
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
