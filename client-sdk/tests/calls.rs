//! Calls end to end over real WebRTC: cancellation through a chain of agents, deadlines that
//! bound every step (setup included) and are inherited by nested calls, panicking handlers,
//! and what dropping an agent means for the handles that outlive it.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ioap_client::{
    Agent, CallError, CapabilityHandler, ErrorCode, ExecCall, GatewayClient, GatewayClientConfig,
    Peer,
};
use ioap_protocol::Identity;
use serde_json::json;
use support::{agent, builder, gateway, within};
use tokio::sync::mpsc;

/// Sends on `dropped` when the handler holding it is abandoned.
struct DropSignal(mpsc::UnboundedSender<Instant>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(Instant::now());
    }
}

/// C: `hold` reports that it started and when it was dropped, and runs for a minute.
async fn holder(
    url: &str,
) -> (
    Agent,
    mpsc::UnboundedReceiver<Instant>,
    mpsc::UnboundedReceiver<Instant>,
) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let hold = CapabilityHandler::with_call("hold", move |call: ExecCall| {
        let guard = DropSignal(dropped_tx.clone());
        let _ = started_tx.send(call.deadline);
        async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(json!("held"))
        }
    });
    let limits = ioap_client::LinkLimits::default().max_serving(1);
    let agent = builder(url, Identity::generate().expect("rng"))
        .capability(hold)
        .link_settings(support::link_settings().limits(limits))
        .connect()
        .await
        .expect("registers");
    (agent, started, dropped)
}

/// B: `relay` calls C's `hold` with the default timeout (so it inherits its caller's).
async fn relayer(url: &str, c: Arc<OnceLock<Peer>>) -> Agent {
    let relay = CapabilityHandler::new("relay", move |_args| {
        let c = Arc::clone(&c);
        async move {
            let peer = c.get().expect("C is known").clone();
            peer.exec("hold", json!(null))
                .await
                .map_err(|e| ioap_client::ExecError::handler(e.to_string()))
        }
    });
    builder(url, Identity::generate().expect("rng"))
        .capability(relay)
        .link_settings(
            support::link_settings().limits(ioap_client::LinkLimits::default().max_serving(1)),
        )
        .connect()
        .await
        .expect("registers")
}

#[tokio::test]
async fn dropping_a_call_cancels_the_whole_chain_and_frees_every_slot() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (c, mut c_started, mut c_dropped) = holder(&url).await;
    let c_for_b = Arc::new(OnceLock::new());
    let b = relayer(&url, Arc::clone(&c_for_b)).await;
    c_for_b.set(b.peer(c.did())).expect("set once");
    let a = agent(&url).await;
    let b_peer = a.peer(b.did());

    let call = tokio::spawn({
        let b_peer = b_peer.clone();
        async move { b_peer.exec("relay", json!(null)).await }
    });
    within(c_started.recv()).await.expect("C's handler started");
    let dropped_at = Instant::now();
    call.abort();
    let c_gone = within(c_dropped.recv()).await.expect("C's handler dropped");
    let cancel_latency = c_gone.saturating_duration_since(dropped_at);
    println!("chain cancel: A drops → C's handler dropped in {cancel_latency:?}");
    assert!(
        cancel_latency < Duration::from_secs(2),
        "cancellation took {cancel_latency:?}"
    );

    // Each of B and C serves one request at a time: both slots are free again.
    let b_free = within(b_peer.exec_with_timeout("echo", json!(1), Duration::from_secs(5))).await;
    assert!(
        !matches!(&b_free, Err(e) if e.code() == ErrorCode::TooManyRequests),
        "B's slot is still taken: {b_free:?}"
    );
    let c_peer = c_for_b.get().expect("set").clone();
    let c_free = within(c_peer.exec_with_timeout("echo", json!(1), Duration::from_secs(5))).await;
    assert!(
        !matches!(&c_free, Err(e) if e.code() == ErrorCode::TooManyRequests),
        "C's slot is still taken: {c_free:?}"
    );
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test]
async fn a_nested_call_inherits_the_remaining_deadline() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (c, mut c_started, mut c_dropped) = holder(&url).await;
    let c_for_b = Arc::new(OnceLock::new());
    let b = relayer(&url, Arc::clone(&c_for_b)).await;
    c_for_b.set(b.peer(c.did())).expect("set once");
    let a = agent(&url).await;
    let b_peer = a.peer(b.did());
    within(b_peer.connect()).await.expect("link A-B");
    within(c_for_b.get().expect("set").connect())
        .await
        .expect("link B-C");

    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let outcome = within(b_peer.exec_with_timeout("relay", json!(null), timeout)).await;
    let took = started.elapsed();
    assert_eq!(outcome, Err(CallError::Timeout));
    assert!(
        took < timeout + Duration::from_millis(250),
        "returned after {took:?}"
    );
    let c_deadline = within(c_started.recv()).await.expect("C's handler started");
    assert!(
        c_deadline <= started + timeout + Duration::from_millis(50),
        "C's handler was given {:?} instead of at most A's {timeout:?}",
        c_deadline.saturating_duration_since(started)
    );
    within(c_dropped.recv())
        .await
        .expect("C's handler abandoned at the inherited deadline");
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_handler_error_at_once() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let boom = CapabilityHandler::new("boom", |_args| async move {
        if true {
            panic!("the handler fell over");
        }
        Ok(json!(null))
    });
    // This one panics making its future, before it runs.
    let boom_now = CapabilityHandler::new("boom_now", |args: serde_json::Value| {
        let n = args["n"].as_u64().expect("the handler insists on n");
        async move { Ok(json!(n)) }
    });
    let b = builder(&url, Identity::generate().expect("rng"))
        .capability(boom)
        .capability(boom_now)
        .connect()
        .await
        .expect("registers");
    let a = agent(&url).await;
    let peer = a.peer(b.did());
    within(peer.connect()).await.expect("link");
    let started = Instant::now();
    let outcome = within(peer.exec("boom", json!(null))).await;
    let took = started.elapsed();
    assert!(
        matches!(
            &outcome,
            Err(CallError::Remote {
                code: ErrorCode::HandlerError,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "HANDLER_ERROR after {took:?}"
    );
    let outcome = within(peer.exec("boom_now", json!(null))).await;
    assert!(
        matches!(
            &outcome,
            Err(CallError::Remote {
                code: ErrorCode::HandlerError,
                ..
            })
        ),
        "a panic making the handler's future: {outcome:?}"
    );
    assert_eq!(
        within(peer.exec("echo", json!(2))).await,
        Ok(json!(2)),
        "B still serves"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn link_setup_is_bounded_by_the_calls_deadline() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    // A registered agent that never answers an OFFER.
    let silent_identity = Identity::generate().expect("rng");
    let silent_did = silent_identity.did();
    let (silent, _streams) = GatewayClient::start(GatewayClientConfig::new(&url, silent_identity));
    within(silent.registered()).await.expect("registers");
    let a = agent(&url).await;
    let started = Instant::now();
    let outcome = within(a.peer(silent_did).exec_with_timeout(
        "echo",
        json!(1),
        Duration::from_millis(300),
    ))
    .await;
    let took = started.elapsed();
    assert_eq!(outcome, Err(CallError::Timeout));
    assert!(
        took < Duration::from_millis(300 + 250),
        "the setup deadline (5 s) was waited for: {took:?}"
    );
    a.close().await;
    silent.close().await;
}

#[tokio::test]
async fn dropping_the_agent_unregisters_it_and_fails_the_handles_that_outlive_it() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let b = agent(&url).await;
    let a = agent(&url).await;
    let peer = a.peer(b.did());
    within(peer.connect()).await.expect("link");
    assert_eq!(gateway.registered_agents(), 2);
    drop(a);
    let unregistered = within(async {
        while gateway.registered_agents() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    unregistered.await;
    assert_eq!(
        within(peer.exec("echo", json!(1))).await,
        Err(CallError::ShuttingDown)
    );
    b.close().await;
}

#[tokio::test]
async fn handlers_see_their_deadline() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let seen = Arc::new(Mutex::new(None));
    let probe = CapabilityHandler::with_call("probe", {
        let seen = Arc::clone(&seen);
        move |call: ExecCall| {
            *seen.lock().expect("lock") = Some(call.deadline);
            async move { Ok(json!(null)) }
        }
    });
    let b = builder(&url, Identity::generate().expect("rng"))
        .capability(probe)
        .connect()
        .await
        .expect("registers");
    let a = agent(&url).await;
    let peer = a.peer(b.did());
    within(peer.connect()).await.expect("link");
    let sent = Instant::now();
    within(peer.exec_with_timeout("probe", json!(null), Duration::from_secs(7)))
        .await
        .expect("answers");
    let deadline = seen.lock().expect("lock").expect("the handler ran");
    let given = deadline.saturating_duration_since(sent);
    // The caller sends its remaining time rounded up to the millisecond, so the handler's
    // deadline is never before the caller's own: at most a millisecond and the one-way
    // latency after it.
    assert!(
        given <= Duration::from_millis(7_100) && given > Duration::from_secs(6),
        "the handler's deadline was {given:?} after the call"
    );
    a.close().await;
    b.close().await;
}
