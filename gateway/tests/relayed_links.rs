//! Records of gateway-relayed links (PROTOCOL_DESIGN.md §11.5) at the gateway: a lane of their
//! own per receiver, errors that name the link, and byte budgets that delay, never drop.

mod support;

use std::time::{Duration, Instant};

use ioap_protocol::payload::{RelayData, SessionDescription};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, MessageId, ReceivedEnvelope};
use support::*;

/// A RELAY_DATA of about `chars` bytes for link `link`, signed by `agent`.
fn record(agent: &Agent, to: Did, link: MessageId, seq: u64, chars: usize) -> String {
    let mut envelope = Envelope::new(
        agent.did(),
        Some(to),
        Body::RelayData(RelayData {
            seq,
            data: "A".repeat(chars),
        }),
        now(),
    );
    envelope.correlation_id = Some(link);
    envelope.sign(&agent.identity).expect("sign").into_string()
}

fn offer() -> Body {
    Body::Offer(SessionDescription {
        sdp: ioap_protocol::samples::example_sdp(),
    })
}

#[tokio::test]
async fn a_full_relay_lane_is_refused_naming_the_link_while_signaling_still_gets_through() {
    let gateway = start(|c| {
        c.relay_queue_capacity = 4;
        c.relay_bytes_total = 0;
        c.relay_bytes_per_did = 100_000_000;
    })
    .await;
    let url = gateway.ws_url();
    let mut sender = register(&url).await;
    let stalled = register(&url).await; // never reads
    let mut alice = register(&url).await;
    let link = MessageId::random();
    let mut busy = None;
    'sending: for batch in 0..100u64 {
        for i in 0..20 {
            let wire = record(&sender, stalled.did(), link, batch * 20 + i, 40_000);
            sender.send_raw(&wire).await;
        }
        if let Ok(Event::Text(text)) =
            tokio::time::timeout(Duration::from_millis(20), next_event(&mut sender.ws)).await
        {
            busy = Some(text);
            break 'sending;
        }
    }
    let text = busy.expect("the relay lane filled up");
    let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
    let envelope = received.envelope();
    let Body::Error(error) = &envelope.body else {
        panic!("unexpected {:?}", envelope.body)
    };
    assert_eq!(error.code, ErrorCode::ReceiverBusy, "{}", error.message);
    assert_eq!(
        envelope.correlation_id,
        Some(link),
        "the error names the relayed link, not one record"
    );
    // The stalled receiver's signaling lane is apart: an OFFER to it is still queued. Had it
    // been refused, its RECEIVER_BUSY would arrive before the PONG.
    alice.send(stalled.did(), offer()).await;
    alice.ping_gateway(7).await;
}

#[tokio::test]
async fn records_over_the_byte_budget_wait_and_all_arrive_in_order() {
    let gateway = start(|c| {
        c.relay_bytes_per_did = 100_000;
        c.relay_bytes_total = 0;
    })
    .await;
    let url = gateway.ws_url();
    let mut sender = register(&url).await;
    let mut receiver = register(&url).await;
    let link = MessageId::random();
    let started = Instant::now();
    let mut sent = Vec::new();
    for seq in 0..10 {
        let wire = record(&sender, receiver.did(), link, seq, 43_000);
        sender.send_raw(&wire).await;
        sent.push(wire);
    }
    for wire in &sent {
        assert_eq!(&receiver.next_text().await, wire, "in order, byte for byte");
    }
    // ≈ 430 kB at 100 kB/s after a 200 kB burst: at least 2.3 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Nothing was refused: the sender's next message is the PONG.
    sender.ping_gateway(1).await;
    let metrics = metrics_text(&gateway).await;
    let waits = metrics
        .lines()
        .find(|line| line.starts_with("ioap_gateway_relay_waits_total"))
        .expect("relay waits series");
    assert_ne!(waits.split_whitespace().last(), Some("0"), "{waits}");
    let bytes = metrics
        .lines()
        .find(|line| line.starts_with("ioap_gateway_relayed_link_bytes_total"))
        .expect("relayed bytes series");
    let bytes: f64 = bytes
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(bytes >= 430_000.0, "{bytes}");
}
