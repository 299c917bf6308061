//! Floods and runs of bad input (PROTOCOL_DESIGN.md §10, *Rate limits* and *Bad input after
//! registration*): the thresholds are exact, a frame over the rate limit is delayed (the
//! gateway stops reading) rather than dropped, a throttled session hears about it at most once
//! a second, and a session over its limit for the flood time is closed with 4006.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ioap_protocol::payload::Ping;
use ioap_protocol::{Body, CloseCode, Envelope, ErrorCode, ReceivedEnvelope};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// The default run of malformed frames (16) closes the session on the 16th, after its ERROR;
/// 15 leave it open.
#[tokio::test]
async fn malformed_frames_close_the_session_at_exactly_the_documented_count() {
    let gateway = start(|_| {}).await;
    let mut alice = register(&gateway.ws_url()).await;
    for _ in 0..15 {
        alice.send_raw("garbage").await;
        expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    }
    alice.ping_gateway(1).await; // N-1 in a row: still served; a good frame ends the run
    for _ in 0..16 {
        alice.send_raw("garbage").await;
        expect_error_code(&mut alice.ws, ErrorCode::MalformedMessage).await;
    }
    assert_eq!(
        expect_close(&mut alice.ws).await,
        Some(CloseCode::PolicyViolation.code()),
        "the 16th in a row closes"
    );
    gateway.shutdown().await;
}

fn ping(agent: &Agent, sequence: u64) -> String {
    Envelope::new(
        agent.did(),
        Some(agent.gateway),
        Body::Ping(Ping { sequence }),
        now(),
    )
    .sign(&agent.identity)
    .expect("sign")
    .into_string()
}

/// What came back from the gateway: PONG sequences, RATE_LIMITED notices, close code.
#[derive(Debug, Default)]
struct Heard {
    pongs: Vec<u64>,
    notices: u32,
    close: Option<u16>,
}

fn hear(heard: &mut Heard, text: &str) {
    let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
    received.verify().expect("gateway frames verify");
    match &received.envelope().body {
        Body::Pong(pong) => heard.pongs.push(pong.sequence),
        Body::Error(error) if error.code == ErrorCode::RateLimited => {
            assert_eq!(received.envelope().correlation_id, None, "a notice");
            heard.notices += 1;
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A burst of 60 PINGs at a limit of 20/s (burst 40): every PING is answered, in order, the
/// last 20 after the budget refills; one RATE_LIMITED notice (two if the wait spans a second).
#[tokio::test]
async fn a_burst_over_the_limit_is_delayed_not_dropped_with_one_notice() {
    let gateway = start(|c| c.rate_per_did = 20).await;
    let mut alice = register(&gateway.ws_url()).await;
    for sequence in 0..60 {
        let frame = ping(&alice, sequence);
        alice.send_raw(&frame).await;
    }
    let mut heard = Heard::default();
    while heard.pongs.len() < 60 {
        let text = alice.next_text().await;
        hear(&mut heard, &text);
    }
    assert_eq!(heard.pongs, (0..60).collect::<Vec<_>>(), "all, in order");
    assert!((1..=2).contains(&heard.notices), "{heard:?}");
    alice.ping_gateway(99).await;
    gateway.shutdown().await;
}

/// A sender that never stops (far beyond 10x its 20 frames/s) is throttled: the gateway
/// handles no more than its budget, sends at most one notice a second, and closes it with 4006
/// once it has been over its limit for the flood time (2 s here); the close frame reaches it
/// although it is still sending. A bystander keeps being served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flooding_far_over_its_limit_is_throttled_then_closed_with_4006() {
    let flood_time = Duration::from_secs(2);
    let gateway = start(|c| {
        c.rate_per_did = 20;
        c.flood_close_after = flood_time;
    })
    .await;
    let mut bystander = register(&gateway.ws_url()).await;
    let alice = register(&gateway.ws_url()).await;
    let frame = ping(&alice, 7);
    let (mut sink, mut stream) = alice.ws.split();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < 1_000_000
            && started.elapsed() < WAIT
            && sink.send(Message::text(frame.clone())).await.is_ok()
        {
            sent += 1;
        }
        sent
    });
    let mut heard = Heard::default();
    let mut bystander_pings = 0;
    let reading = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => hear(&mut heard, &text),
                Some(Ok(Message::Close(frame))) => {
                    heard.close = frame.map(|f| u16::from(f.code));
                    return started.elapsed();
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return started.elapsed(),
            }
        }
    };
    let serving_the_bystander = async {
        loop {
            bystander.ping_gateway(bystander_pings).await;
            bystander_pings += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed_after = tokio::select! {
        elapsed = tokio::time::timeout(WAIT, reading) => elapsed.expect("closed in time"),
        () = serving_the_bystander => unreachable!(),
    };
    assert_eq!(
        heard.close,
        Some(CloseCode::RateLimited.code()),
        "{heard:?}"
    );
    assert!(closed_after >= flood_time, "closed after {closed_after:?}");
    assert!(
        closed_after < flood_time + Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    let allowed = 40 + 20 * closed_after.as_secs_f64().ceil() as usize;
    assert!(
        heard.pongs.len() <= allowed,
        "{} PONGs: more than the budget of {allowed}",
        heard.pongs.len()
    );
    let notice_bound = flood_time.as_secs() as u32 + 1;
    assert!(
        (1..=notice_bound).contains(&heard.notices),
        "{} notices (bound {notice_bound})",
        heard.notices
    );
    let sent = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the flood stops once the connection is closed")
        .expect("flood task");
    assert!(sent as usize > allowed, "only {sent} frames were sent");
    assert!(
        bystander_pings >= 10,
        "the bystander was served {bystander_pings} times"
    );
    bystander.ping_gateway(1000).await;
    gateway.shutdown().await;
}
