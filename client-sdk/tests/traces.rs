//! Trace context across agents over real WebRTC (PROTOCOL_DESIGN.md §11.8): a chain
//! A → B → C shares one trace id, each callee's span the child of its caller's.

mod support;

use std::sync::Arc;

use ioap_client::{Agent, CallOptions, CapabilityHandler, ExecCall, ExecError, TraceParent};
use ioap_protocol::Identity;
use serde_json::{Value, json};
use support::{agent, builder, gateway, within};
use tokio::sync::mpsc;

type Seen = mpsc::UnboundedReceiver<(TraceParent, Option<String>)>;

/// An agent whose `hop` reports the trace it was called in, then calls `args.next` (a DID)
/// if given, with the rest of the chain.
async fn hop(url: &str) -> (Agent, Seen) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let seen_tx = Arc::new(seen_tx);
    let handler = CapabilityHandler::with_call("hop", move |call: ExecCall| {
        let _ = seen_tx.send((call.trace, call.tracestate.clone()));
        async move {
            let rest: Vec<Value> = call.args.as_array().cloned().unwrap_or_default();
            let Some((next, rest)) = rest.split_first() else {
                return Ok(json!([]));
            };
            let next = next
                .as_str()
                .and_then(|did| did.parse().ok())
                .ok_or_else(|| ExecError::invalid_args("a DID"))?;
            let peer = call.peer(next);
            peer.exec("hop", Value::Array(rest.to_vec()))
                .await
                .map_err(|e| ExecError::handler(e.to_string()))
        }
    });
    let agent = builder(url, Identity::generate().expect("rng"))
        .capability(handler)
        .connect()
        .await
        .expect("registers");
    (agent, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_three_agents_shares_one_trace() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let (b, mut b_seen) = hop(&url).await;
    let (c, mut c_seen) = hop(&url).await;
    let a = agent(&url).await;

    let root = TraceParent::random();
    let options = CallOptions::new().trace(root).tracestate("vendor=a1");
    let chain = json!([c.did().to_string()]);
    within(a.peer(b.did()).exec_with("hop", chain, &options))
        .await
        .expect("the chain answers");
    let (at_b, state_b) = within(b_seen.recv()).await.expect("B served");
    let (at_c, state_c) = within(c_seen.recv()).await.expect("C served");
    assert_eq!(
        state_b.as_deref(),
        Some("vendor=a1"),
        "tracestate reaches B"
    );
    assert_eq!(
        state_c.as_deref(),
        Some("vendor=a1"),
        "and B passes it on to C"
    );
    assert_eq!(at_b.trace_id, root.trace_id, "B continues A's trace");
    assert_eq!(at_c.trace_id, root.trace_id, "C continues it too");
    let spans = [root.parent_id, at_b.parent_id, at_c.parent_id];
    assert!(
        spans[0] != spans[1] && spans[1] != spans[2] && spans[0] != spans[2],
        "each hop has its own span: {spans:?}"
    );

    // Without a trace given, a call starts a new one, which its callee continues.
    within(a.peer(c.did()).exec("hop", json!([])))
        .await
        .expect("answers");
    let (fresh, state) = within(c_seen.recv()).await.expect("C served");
    assert_eq!(state, None);
    assert_ne!(fresh.trace_id, root.trace_id);
    for agent in [a, b, c] {
        agent.close().await;
    }
    gateway.shutdown().await;
}
