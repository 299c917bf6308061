//! Agents calling each other over real WebRTC data channels (UDP on 127.0.0.1), set up
//! through a real gateway: EXEC, streaming, INTENT, errors, timeouts, refusals, glare.

mod support;

use std::time::Duration;

use ioap_client::{CallError, StreamItem};
use ioap_protocol::payload::{ExecRequest, Intent, IntentStatus};
use ioap_protocol::{Body, Envelope, ErrorCode, Identity, Timestamp};
use serde_json::json;
use support::{agent, agent_as, gateway, within};

#[tokio::test]
async fn exec_round_trip_over_a_link() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let bob_peer = alice.peer(bob.did());
    let sum = within(bob_peer.exec("sum", json!({"values": [1, 2, 3.5]}))).await;
    assert_eq!(sum, Ok(json!(6.5)));
    let echo = within(bob_peer.exec("echo", json!({"nested": [true, null]}))).await;
    assert_eq!(echo, Ok(json!({"nested": [true, null]})));
    assert_eq!(alice.open_links(), 1, "the second call reused the link");
    assert_eq!(bob.open_links(), 1);
    // Calls go the other way on the same link.
    let back = within(bob.peer(alice.did()).exec("echo", json!("hi"))).await;
    assert_eq!(back, Ok(json!("hi")));
    assert_eq!(bob.open_links(), 1);
    assert_eq!(alice.refused_messages() + bob.refused_messages(), 0);
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn errors_come_back_typed() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let bob_peer = alice.peer(bob.did());
    let unknown = within(bob_peer.exec("fly", json!(null)))
        .await
        .expect_err("no such capability");
    assert_eq!(unknown.code(), ErrorCode::UnknownCapability);
    assert!(unknown.is_remote());
    assert!(unknown.to_string().contains("fly"), "{unknown}");
    let failed = within(bob_peer.exec("fail", json!({"message": "disk full"})))
        .await
        .expect_err("the handler fails");
    assert_eq!(
        failed,
        CallError::Remote {
            code: ErrorCode::HandlerError,
            message: "disk full".into()
        },
        "the handler's message passes through"
    );
    let invalid = within(bob_peer.exec("sum", json!({"values": "x"})))
        .await
        .expect_err("bad args");
    assert_eq!(invalid.code(), ErrorCode::InvalidArgs);
    let stranger = Identity::generate().expect("rng").did();
    let absent = within(alice.peer(stranger).exec("echo", json!(1)))
        .await
        .expect_err("nobody there");
    assert_eq!(absent.code(), ErrorCode::UnknownAgent, "{absent}");
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_call_times_out_and_the_link_goes_on() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let bob_peer = alice.peer(bob.did());
    within(bob_peer.connect()).await.expect("link");
    let slow = within(bob_peer.exec_with_timeout(
        "sleep",
        json!({"ms": 10_000}),
        Duration::from_millis(200),
    ))
    .await
    .expect_err("too slow");
    assert_eq!(slow.code(), ErrorCode::Timeout);
    let next = within(bob_peer.exec("echo", json!(2))).await;
    assert_eq!(next, Ok(json!(2)));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn streamed_parts_arrive_in_order_then_the_final_result() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let mut stream = within(
        alice
            .peer(bob.did())
            .exec_stream("count", json!({"to": 50})),
    )
    .await
    .expect("stream starts");
    let mut items = Vec::new();
    while let Some(item) = within(stream.next()).await {
        items.push(item.expect("no error"));
    }
    let mut expected: Vec<_> = (1..=50).map(|i| StreamItem::Partial(json!(i))).collect();
    expected.push(StreamItem::Final(json!({"counted": 50})));
    assert_eq!(items, expected);
    // Without `stream`, the same capability answers with the final result only.
    let single = within(alice.peer(bob.did()).exec("count", json!({"to": 3}))).await;
    assert_eq!(single, Ok(json!({"counted": 3})));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn intents_get_the_receivers_reply() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let bob_peer = alice.peer(bob.did());
    let reply = within(bob_peer.intent(Intent::query("say hi", json!({"lang": "en"}))))
        .await
        .expect("reply");
    assert_eq!(reply.status, IntentStatus::Accepted);
    assert_eq!(reply.capability.as_deref(), Some("echo"));
    assert!(reply.message.expect("a message").contains("say hi"));
    let declined = within(bob_peer.intent(Intent::task("fly", json!(null))))
        .await
        .expect("reply");
    assert_eq!(declined.status, IntentStatus::Declined);
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn forged_messages_on_the_link_are_refused_silently() {
    let gateway = gateway().await;
    let alice_identity = Identity::generate().expect("rng");
    let alice = agent_as(&gateway.ws_url(), alice_identity.clone()).await;
    let bob = agent(&gateway.ws_url()).await;
    let bob_peer = alice.peer(bob.did());
    within(bob_peer.connect()).await.expect("link");
    let request = |from: &Identity| {
        let body = Body::ExecRequest(ExecRequest {
            timeout_ms: 1000,
            ..ExecRequest::new("echo", json!("forged?"))
        });
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        Envelope::new(from.did(), Some(bob.did()), body, now)
            .sign(from)
            .expect("sign")
            .into_string()
    };
    // Validly signed, but by someone who is not the link's peer.
    let mallory = Identity::generate().expect("rng");
    within(bob_peer.send_raw(request(&mallory)))
        .await
        .expect("sent");
    // Alice's own message, altered after signing.
    let tampered = request(&alice_identity).replace("forged?", "altered");
    within(bob_peer.send_raw(tampered)).await.expect("sent");
    // A genuine message, then the same bytes again.
    let genuine = request(&alice_identity);
    within(bob_peer.send_raw(genuine.clone()))
        .await
        .expect("sent");
    within(bob_peer.send_raw(genuine)).await.expect("sent");
    within(bob_peer.send_raw("{not json".into()))
        .await
        .expect("sent");
    // The channel is ordered and Bob handles it in order: once this call is answered, Bob
    // has judged everything sent before it.
    let after = within(bob_peer.exec("echo", json!("still fine"))).await;
    assert_eq!(after, Ok(json!("still fine")));
    assert_eq!(
        bob.refused_messages(),
        4,
        "wrong sender, bad signature, replay, malformed"
    );
    assert_eq!(bob.open_links(), 1, "refusals do not end the link");
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn both_sides_dialing_at_once_end_with_one_link() {
    let gateway = gateway().await;
    let (alice, bob) = (
        agent(&gateway.ws_url()).await,
        agent(&gateway.ws_url()).await,
    );
    let (to_bob, to_alice) = (alice.peer(bob.did()), bob.peer(alice.did()));
    let (a, b) = within(async { tokio::join!(to_bob.connect(), to_alice.connect()) }).await;
    assert_eq!((a, b), (Ok(()), Ok(())));
    assert_eq!(within(to_bob.exec("echo", json!(1))).await, Ok(json!(1)));
    assert_eq!(within(to_alice.exec("echo", json!(2))).await, Ok(json!(2)));
    assert_eq!((alice.open_links(), bob.open_links()), (1, 1));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_closed_peer_fails_calls_in_flight_and_the_next_call_dials_again() {
    let gateway = gateway().await;
    let alice = agent(&gateway.ws_url()).await;
    let bob_identity = Identity::generate().expect("rng");
    let bob = agent_as(&gateway.ws_url(), bob_identity.clone()).await;
    let bob_peer = alice.peer(bob.did());
    within(bob_peer.connect()).await.expect("link");
    let pending = tokio::spawn({
        let bob_peer = bob_peer.clone();
        async move { bob_peer.exec("sleep", json!({"ms": 60_000})).await }
    });
    // Let the request reach Bob before he goes.
    within(bob_peer.exec("echo", json!(0))).await.expect("echo");
    bob.close().await;
    let failed = within(pending).await.expect("task").expect_err("link lost");
    assert_eq!(failed.code(), ErrorCode::LinkLost, "{failed}");
    let bob = agent_as(&gateway.ws_url(), bob_identity).await;
    let again = within(bob_peer.exec("echo", json!("back"))).await;
    assert_eq!(again, Ok(json!("back")));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn the_directory_lists_agents_and_finds_capabilities() {
    let gateway = gateway().await;
    let alice = agent(&gateway.ws_url()).await;
    let quiet = support::builder(&gateway.ws_url(), Identity::generate().expect("rng"))
        .listed(false)
        .connect()
        .await
        .expect("registers");
    let listed = within(alice.directory().agents()).await.expect("directory");
    assert_eq!(listed.len(), 1, "the unlisted agent is hidden");
    assert_eq!(listed[0].did, alice.did());
    let names: Vec<_> = listed[0]
        .capabilities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["count", "echo", "fail", "sleep", "sum"]);
    let summers = within(alice.directory().with_capability("sum"))
        .await
        .expect("directory");
    assert_eq!(summers.len(), 1);
    assert!(
        within(alice.directory().with_capability("fly"))
            .await
            .expect("directory")
            .is_empty()
    );
    let one = within(alice.directory().agent(&alice.did()))
        .await
        .expect("directory");
    assert_eq!(one.map(|a| a.did), Some(alice.did()));
    assert_eq!(
        within(alice.directory().agent(&quiet.did()))
            .await
            .expect("directory"),
        None
    );
    quiet.close().await;
    alice.close().await;
    assert_eq!(gateway.registered_agents(), 0, "close unregisters");
}

#[tokio::test]
async fn requests_beyond_the_serving_bound_are_refused_with_too_many_requests() {
    let gateway = gateway().await;
    let alice = agent(&gateway.ws_url()).await;
    let bob = support::builder(&gateway.ws_url(), Identity::generate().expect("rng"))
        .link_settings(
            support::link_settings().limits(ioap_client::LinkLimits::default().max_serving(2)),
        )
        .connect()
        .await
        .expect("registers");
    let peer = alice.peer(bob.did());
    within(peer.connect()).await.expect("link");
    let calls = (0..4).map(|_| peer.exec("sleep", json!({"ms": 500})));
    let results = within(futures_util::future::join_all(calls)).await;
    let served = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(served, 2, "{results:?}");
    assert!(
        refused
            .iter()
            .all(|e| e.code() == ErrorCode::TooManyRequests),
        "{refused:?}"
    );
    assert_eq!(
        within(peer.exec("echo", json!(1))).await,
        Ok(json!(1)),
        "room again"
    );
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_timed_out_intent_frees_its_place_on_the_link() {
    let gateway = gateway().await;
    // Alice may have one call in flight; her INTENT deadline is short.
    let alice = support::builder(&gateway.ws_url(), Identity::generate().expect("rng"))
        .link_settings(
            support::link_settings()
                .call_timeout(Duration::from_millis(200))
                .limits(ioap_client::LinkLimits::default().max_calls(1)),
        )
        .connect()
        .await
        .expect("registers");
    let slow = support::builder(&gateway.ws_url(), Identity::generate().expect("rng"))
        .on_intent(|_, _| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ioap_protocol::payload::IntentReply::accepted()
        })
        .connect()
        .await
        .expect("registers");
    let peer = alice.peer(slow.did());
    let late = within(peer.intent(Intent::query("anyone?", json!(null))))
        .await
        .expect_err("no reply in time");
    assert_eq!(late.code(), ErrorCode::Timeout);
    assert_eq!(
        within(peer.exec("echo", json!("next"))).await,
        Ok(json!("next")),
        "the timed-out INTENT no longer holds the only place"
    );
    alice.close().await;
    slow.close().await;
}
