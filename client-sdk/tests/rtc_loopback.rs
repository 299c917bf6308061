//! The WebRTC engines on their own: two peer connections over real UDP on 127.0.0.1, signaled
//! directly (no gateway), for every pair of engines — each with itself, and each with the
//! other (webrtc-rs ↔ str0m: interoperable WebRTC, not one implementation talking to itself).

use std::sync::Arc;
use std::time::Duration;

use ioap_client::Engine;
use ioap_client::rtc::{RtcEngine, RtcEvent, RtcPeer, RtcSettings, RtcState};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);
/// Far longer than a loopback setup takes (milliseconds).
const SETUP_DEADLINE: Duration = Duration::from_secs(3);

fn engine(kind: Engine) -> Arc<dyn RtcEngine> {
    let mut settings = RtcSettings::default();
    settings.loopback_only = true;
    kind.build(&settings)
}

/// Every (offerer, answerer) pair of engines.
fn pairs() -> Vec<(Engine, Engine)> {
    Engine::ALL
        .into_iter()
        .flat_map(|a| Engine::ALL.into_iter().map(move |b| (a, b)))
        .collect()
}

/// Forwards one side's local candidates to the other until the channel opens; returns
/// whether it opened.
async fn pump(events: &mut mpsc::Receiver<RtcEvent>, other: &dyn RtcPeer) -> Result<(), RtcState> {
    loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("events");
        match event {
            RtcEvent::LocalCandidate(candidate) => {
                other.add_candidate(candidate).await.expect("add candidate")
            }
            RtcEvent::ChannelOpen => return Ok(()),
            RtcEvent::State(state @ (RtcState::Failed | RtcState::Closed)) => return Err(state),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_data_channel_opens_over_loopback_and_carries_text_both_ways() {
    for (a, b) in pairs() {
        println!("offerer {a}, answerer {b}");
        channel_carries_text(&*engine(a), &*engine(b)).await;
    }
}

async fn channel_carries_text(offering: &dyn RtcEngine, answering: &dyn RtcEngine) {
    let (offerer, mut offerer_events) = offering.peer(&[]).await.expect("peer");
    let (answerer, mut answerer_events) = answering.peer(&[]).await.expect("peer");
    let offer = offerer.offer().await.expect("offer");
    assert!(offer.contains("a=fingerprint:sha-256"), "{offer}");
    let answer = answerer.answer(offer).await.expect("answer");
    offerer.accept_answer(answer).await.expect("accept");

    let (a, b) = tokio::join!(
        pump(&mut offerer_events, &*answerer),
        pump(&mut answerer_events, &*offerer)
    );
    a.expect("offerer's channel opens");
    b.expect("answerer's channel opens");

    offerer
        .send("hello from the offerer".into())
        .await
        .expect("send");
    answerer
        .send("hello from the answerer".into())
        .await
        .expect("send");
    let received = |events: &mut mpsc::Receiver<RtcEvent>| {
        let mut events = std::mem::replace(events, mpsc::channel(1).1);
        async move {
            loop {
                match tokio::time::timeout(WAIT, events.recv())
                    .await
                    .expect("in time")
                {
                    Some(RtcEvent::Message(text)) => return text,
                    Some(_) => {}
                    None => panic!("events ended"),
                }
            }
        }
    };
    assert_eq!(
        received(&mut answerer_events).await,
        "hello from the offerer"
    );
    assert_eq!(
        received(&mut offerer_events).await,
        "hello from the answerer"
    );
    offerer.close().await;
    answerer.close().await;
}

#[tokio::test]
async fn a_tampered_fingerprint_makes_the_connection_fail() {
    for (a, b) in pairs() {
        println!("offerer {a}, answerer {b}");
        forged_fingerprint_fails(&*engine(a), &*engine(b)).await;
    }
}

async fn forged_fingerprint_fails(offering: &dyn RtcEngine, answering: &dyn RtcEngine) {
    let (offerer, mut offerer_events) = offering.peer(&[]).await.expect("peer");
    let (answerer, mut answerer_events) = answering.peer(&[]).await.expect("peer");
    let offerer_for_answerer = offerer.clone();
    let answerer_for_offerer = answerer.clone();
    let offer = offerer.offer().await.expect("offer");
    let answer = answerer.answer(offer).await.expect("answer");
    // A man in the middle swaps the answerer's certificate fingerprint.
    let line = answer
        .lines()
        .find(|l| l.starts_with("a=fingerprint:sha-256 "))
        .expect("fingerprint line")
        .to_owned();
    let forged_hex: String = line["a=fingerprint:sha-256 ".len()..]
        .split(':')
        .map(|byte| if byte == "00" { "01" } else { "00" })
        .collect::<Vec<_>>()
        .join(":");
    let tampered = answer.replace(&line, &format!("a=fingerprint:sha-256 {forged_hex}"));
    offerer.accept_answer(tampered).await.expect("accept");
    // DTLS cannot complete against the forged fingerprint: the channel never opens (the
    // untampered setup above opens in milliseconds; the SDK's link-setup deadline turns this
    // into an error). The answerer keeps pumping so that ICE itself succeeds.
    let answerer_side = tokio::spawn(async move {
        let _ = tokio::time::timeout(
            SETUP_DEADLINE,
            pump(&mut answerer_events, &*offerer_for_answerer),
        )
        .await;
        answerer
    });
    let outcome = tokio::time::timeout(
        SETUP_DEADLINE,
        pump(&mut offerer_events, &*answerer_for_offerer),
    )
    .await;
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "the offerer's channel opened despite a forged fingerprint"
    );
    let answerer = answerer_side.await.expect("join");
    offerer.close().await;
    answerer.close().await;
}
