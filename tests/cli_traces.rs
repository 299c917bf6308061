//! Trace context between real processes (PROTOCOL_DESIGN.md §11.8): `ioap call` → B
//! (`ioap serve --forward`) → C (`ioap serve`) shares one trace id, which each agent logs
//! in its `ioap.serve` span.

mod serving;

use std::time::{Duration, Instant};

use ioap_gateway::{Gateway, GatewayConfig};
use serde_json::json;
use serving::{Served, ioap, serve_logged};

const LOG: [(&str, &str); 1] = [("RUST_LOG", "ioap_client::calls=info")];

/// Waits (bounded) until `served` has logged a line holding every one of `needles`.
async fn logged(served: &Served, needles: &[&str]) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let log = served.log();
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < until,
            "no line with {needles:?} in:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_two_agents_shares_one_trace_id() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let url = gateway.ws_url();
    let c = serve_logged(&gateway, &[], &LOG).await;
    let b = serve_logged(&gateway, &["--forward"], &LOG).await;
    let (b_did, c_did) = (b.did.to_string(), c.did.to_string());

    let args = json!({"to": c_did, "capability": "echo", "args": "hello"}).to_string();
    let (code, out, err) = ioap(&[
        "call",
        &b_did,
        "forward",
        &args,
        "--verbose",
        "--gateway",
        &url,
    ])
    .await;
    assert_eq!((code, out), (0, json!("hello")), "{err}");
    let trace_id = err
        .lines()
        .find_map(|line| line.strip_prefix("trace: "))
        .expect("--verbose prints the trace id")
        .to_owned();
    assert_eq!(trace_id.len(), 32);
    let needle = format!("trace_id={trace_id}");
    let at_b = logged(
        &b,
        &["ioap.serve", &needle, "call served", "outcome=\"ok\""],
    )
    .await;
    assert!(at_b.contains("capability=\"forward\""), "{at_b}");
    let at_c = logged(&c, &["ioap.serve", &needle, "call served"]).await;
    assert!(at_c.contains("capability=\"echo\""), "{at_c}");
    // B's outgoing call is a span of the same trace too.
    logged(&b, &["ioap.call", &needle, "call ended"]).await;

    // A caller-given trace is continued.
    let given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (code, _, err) = ioap(&[
        "call",
        &c_did,
        "echo",
        "1",
        "--traceparent",
        given,
        "--gateway",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    logged(
        &c,
        &["trace_id=0af7651916cd43dd8448eb211c80319c", "call served"],
    )
    .await;
    gateway.shutdown().await;
}
