//! Messages larger than one envelope over real WebRTC (PROTOCOL_DESIGN.md §11.6): streamed
//! parts and results of several MiB, and a result over the caller's own maximum.

mod support;

use ioap_client::{Agent, CallError, CapabilityHandler, StreamItem};
use ioap_protocol::Identity;
use serde_json::{Value, json};
use support::{agent, builder, gateway, link_settings, within};

/// `blob` returns a string of `args` bytes; `parts` streams three of `args` bytes each.
fn handlers() -> Vec<CapabilityHandler> {
    let blob = CapabilityHandler::new("blob", |args: Value| async move {
        let len = args.as_u64().unwrap_or(0) as usize;
        Ok(json!("x".repeat(len)))
    });
    let parts = CapabilityHandler::streaming("parts", |args: Value, parts| async move {
        let len = args.as_u64().unwrap_or(0) as usize;
        for i in 0..3u8 {
            let fill = char::from(b'a' + i).to_string().repeat(len);
            parts.send(json!(fill)).await;
        }
        Ok(json!("done"))
    });
    vec![blob, parts]
}

async fn callee(url: &str) -> Agent {
    builder(url, Identity::generate().expect("rng"))
        .capabilities(handlers())
        .connect()
        .await
        .expect("callee")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_large_streamed_parts_arrive_whole_and_in_order() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let callee = callee(&url).await;
    let caller = agent(&url).await;
    let peer = caller.peer(callee.did());

    let result = within(peer.exec("blob", json!(3 * 1024 * 1024)))
        .await
        .expect("3 MiB");
    assert_eq!(result.as_str().map(str::len), Some(3 * 1024 * 1024));

    let mut stream = within(peer.exec_stream("parts", json!(200 * 1024)))
        .await
        .expect("stream");
    let mut parts = Vec::new();
    let mut last = None;
    while let Some(item) = within(stream.next()).await {
        match item.expect("item") {
            StreamItem::Partial(part) => parts.push(part),
            StreamItem::Final(value) => last = Some(value),
            _ => {}
        }
    }
    let firsts: Vec<char> = parts
        .iter()
        .map(|p| p.as_str().and_then(|s| s.chars().next()).unwrap_or('?'))
        .collect();
    assert_eq!(firsts, ['a', 'b', 'c'], "every part, in order");
    assert!(
        parts
            .iter()
            .all(|p| p.as_str().map(str::len) == Some(200 * 1024))
    );
    assert_eq!(last, Some(json!("done")));
    caller.close().await;
    callee.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_callers_maximum_is_refused_by_the_caller() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let callee = callee(&url).await;
    let caller = builder(&url, Identity::generate().expect("rng"))
        .max_message_bytes(1024 * 1024)
        .connect()
        .await
        .expect("caller");
    let peer = caller.peer(callee.did());
    let error = within(peer.exec("blob", json!(4 * 1024 * 1024)))
        .await
        .expect_err("4 MiB is over the caller's 1 MiB");
    assert!(matches!(error, CallError::TooLarge { .. }), "{error:?}");
    // The link stays, and what fits still comes.
    let fits = within(peer.exec("blob", json!(512 * 1024)))
        .await
        .expect("512 KiB");
    assert_eq!(fits.as_str().map(str::len), Some(512 * 1024));
    caller.close().await;
    callee.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_in_pieces_still_makes_a_receipt_that_verifies() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let callee = callee(&url).await;
    let caller = agent(&url).await;
    let peer = caller.peer(callee.did());
    let options = ioap_client::CallOptions::new().timeout(std::time::Duration::from_secs(20));
    let (value, receipt) = within(peer.exec_with_receipt("blob", json!(300 * 1024), &options))
        .await
        .expect("a receipt");
    assert_eq!(value.as_str().map(str::len), Some(300 * 1024));
    let proof = receipt.verify().expect("the receipt verifies");
    assert_eq!((proof.caller, proof.callee), (caller.did(), callee.did()));
    assert_eq!(proof.result, Some(value));
    caller.close().await;
    callee.close().await;
}

/// Whether a receipt's text was signed over its digest (1.6) rather than as §5 says.
fn signed_by_digest(text: &str) -> bool {
    ioap_protocol::ReceivedEnvelope::decode_up_to(text.as_bytes(), 1 << 30, |_| None)
        .expect("decodes")
        .verify_carried()
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_are_signed_by_digest_between_1_6_sides_only() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let old = |url: &str| {
        builder(url, Identity::generate().expect("rng"))
            .link_settings(link_settings().as_of_1_5())
            .capabilities(handlers())
            .connect()
    };
    let new_callee = callee(&url).await;
    let old_callee = old(&url).await.expect("a 1.5 callee");
    let new_caller = agent(&url).await;
    let old_caller = old(&url).await.expect("a 1.5 caller");
    let options = ioap_client::CallOptions::new().timeout(std::time::Duration::from_secs(20));
    let args = json!("7".repeat(200_000));
    for (caller, callee, digest) in [
        (&new_caller, &new_callee, true),
        (&new_caller, &old_callee, false),
        (&old_caller, &new_callee, false),
    ] {
        let peer = caller.peer(callee.did());
        // echo: a 200 KB request and a 200 KB answer, each carried in CHUNKs.
        let (echoed, receipt) = within(peer.exec_with_receipt("echo", args.clone(), &options))
            .await
            .expect("the echo");
        assert_eq!(echoed, args);
        receipt.verify().expect("the receipt verifies");
        assert_eq!(signed_by_digest(&receipt.request), digest, "the request");
        assert_eq!(signed_by_digest(&receipt.response), digest, "the answer");
    }
    for agent in [new_caller, old_caller, new_callee, old_callee] {
        agent.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_crosses_the_gateway_relay_too() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let callee = callee(&url).await;
    let caller = builder(&url, Identity::generate().expect("rng"))
        .gateway_relay(ioap_client::GatewayRelay::Always)
        .connect()
        .await
        .expect("caller");
    let peer = caller.peer(callee.did());
    let sent = json!("r".repeat(1024 * 1024));
    let echoed = within(peer.exec("echo", sent.clone()))
        .await
        .expect("1 MiB");
    assert!(echoed == sent, "the echo differs");
    let path = within(peer.path()).await.expect("path").expect("a path");
    assert_eq!(path.kind(), ioap_client::PathKind::Gateway, "{path}");
    caller.close().await;
    callee.close().await;
}
