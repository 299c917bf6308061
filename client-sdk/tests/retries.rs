//! Safe retries over real WebRTC (PROTOCOL_DESIGN.md §11.10): a call with an idempotency key
//! whose link is broken mid-call is sent again over a new link, and the handler runs once.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ioap_client::{Agent, CallError, CallOptions, CapabilityHandler, ErrorCode};
use ioap_protocol::Identity;
use serde_json::{Value, json};
use support::{agent, builder, gateway, within};
use tokio::sync::mpsc;

/// Sends on its channel if dropped before [`DropSignal::finished`]: the handler holding it
/// was stopped.
struct DropSignal(Option<mpsc::UnboundedSender<()>>);

impl DropSignal {
    fn finished(mut self) {
        self.0 = None;
    }
}

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(signal) = self.0.take() {
            let _ = signal.send(());
        }
    }
}

type Signals = mpsc::UnboundedReceiver<()>;

/// A callee whose `tally` reports each start, waits for `args.ms`, then answers how many
/// times it has started; the last channel reports a run stopped before it finished.
async fn tallying(url: &str) -> (Agent, Arc<AtomicUsize>, Signals, Signals) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (started_tx, started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let counted = Arc::clone(&runs);
    let tally = CapabilityHandler::new("tally", move |args: Value| {
        let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = started_tx.send(());
        let guard = DropSignal(Some(dropped_tx.clone()));
        async move {
            let ms = args["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.finished();
            Ok(json!({"run": run}))
        }
    });
    let agent = builder(url, Identity::generate().expect("rng"))
        .capability(tally)
        .connect()
        .await
        .expect("registers");
    (agent, runs, started, dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_whose_link_breaks_mid_call_is_retried_and_runs_once() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (bob, runs, mut started, _dropped) = tallying(&url).await;
    let alice = agent(&url).await;
    let peer = alice.peer(bob.did());
    within(peer.connect()).await.expect("link");

    let options = CallOptions::new()
        .timeout(Duration::from_secs(15))
        .idempotent();
    let call = {
        let peer = peer.clone();
        let options = options.clone();
        tokio::spawn(async move { peer.exec_with("tally", json!({"ms": 1500}), &options).await })
    };
    within(started.recv()).await.expect("the handler started");
    assert!(peer.break_link(), "the link was open");
    let result = within(call)
        .await
        .expect("joined")
        .expect("retried to success");
    assert_eq!(
        result,
        json!({"run": 1}),
        "the retry got the first run's outcome"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the handler ran exactly once"
    );

    // The same key again, after the outcome was recorded: answered without a run.
    let again = within(peer.exec_with("tally", json!({"ms": 1500}), &options)).await;
    assert_eq!(again.expect("recorded"), json!({"run": 1}));
    // The same key with other args is refused; a new key runs again.
    let other = within(peer.exec_with("tally", json!({"ms": 1}), &options)).await;
    assert!(
        matches!(
            &other,
            Err(CallError::Remote {
                code: ErrorCode::InvalidArgs,
                ..
            })
        ),
        "{other:?}"
    );
    let fresh = CallOptions::new().idempotent();
    let fresh = within(peer.exec_with("tally", json!({"ms": 1}), &fresh)).await;
    assert_eq!(fresh.expect("runs"), json!({"run": 2}));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    alice.close().await;
    bob.close().await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retry_a_broken_link_fails_the_call_and_a_cancelled_key_runs_again() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (bob, runs, mut started, mut dropped) = tallying(&url).await;
    let alice = agent(&url).await;
    let peer = alice.peer(bob.did());
    within(peer.connect()).await.expect("link");

    let keyed = CallOptions::new()
        .timeout(Duration::from_secs(10))
        .idempotency_key("order-7");
    let call = {
        let (peer, keyed) = (peer.clone(), keyed.clone());
        tokio::spawn(async move { peer.exec_with("tally", json!({"ms": 1000}), &keyed).await })
    };
    within(started.recv()).await.expect("started");
    assert!(peer.break_link());
    let lost = within(call).await.expect("joined");
    assert!(matches!(lost, Err(CallError::LinkLost { .. })), "{lost:?}");

    // Dropping a keyed call sends CANCEL: the operation stops and its key is forgotten.
    let slow = CallOptions::new().idempotency_key("order-8");
    let call = {
        let (peer, slow) = (peer.clone(), slow.clone());
        tokio::spawn(async move { peer.exec_with("tally", json!({"ms": 60000}), &slow).await })
    };
    within(started.recv()).await.expect("started");
    call.abort();
    within(dropped.recv()).await.expect("the run was stopped");
    let again = {
        let peer = peer.clone();
        tokio::spawn(async move { peer.exec_with("tally", json!({"ms": 60000}), &slow).await })
    };
    within(started.recv()).await.expect("the key ran anew");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    again.abort();
    alice.close().await;
    bob.close().await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_or_tracestate_fails_the_call_here_and_the_link_goes_on() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (bob, runs, _started, _dropped) = tallying(&url).await;
    let alice = agent(&url).await;
    let peer = alice.peer(bob.did());
    for bad in [
        CallOptions::new().idempotency_key("has space"),
        CallOptions::new().idempotency_key("k".repeat(129)),
        CallOptions::new().tracestate("bell\u{7}"),
    ] {
        let refused = within(peer.exec_with("tally", json!({}), &bad)).await;
        assert!(
            matches!(refused, Err(CallError::Invalid { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "nothing reached the handler"
    );
    let fine = within(peer.exec_with("tally", json!({}), &CallOptions::new())).await;
    assert_eq!(fine.expect("the link still works"), json!({"run": 1}));
    alice.close().await;
    bob.close().await;
    gateway.shutdown().await;
}
