//! Trace context between real processes (PROTOCOL_DESIGN.md §11.8): `ioap call` → B
//! (`ioap serve --forward`) → C (`ioap serve`) shares one trace id, which each agent logs
//! in its `ioap.serve` span; with `--otlp-endpoint` every agent's spans reach an OpenTelemetry
//! collector (OTLP/HTTP JSON) as one trace, parent by parent.

mod serving;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ioap_gateway::{Gateway, GatewayConfig};
use serde_json::{Value, json};
use serving::{Served, ioap, serve_logged};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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

/// A minimal OTLP/HTTP collector: answers every `POST` with 200 and keeps the spans of each
/// body. Its URL and the spans received so far.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_collector(stream, Arc::clone(&kept)));
        }
    });
    (url, spans)
}

async fn serve_collector(stream: TcpStream, spans: Arc<Mutex<Vec<Value>>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut path = String::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if path.is_empty() {
                path = line.to_owned();
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a length");
            }
        }
        assert!(path.starts_with("POST /v1/traces "), "{path}");
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.expect("body");
        let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
        for resource in request["resourceSpans"].as_array().expect("resourceSpans") {
            for scope in resource["scopeSpans"].as_array().expect("scopeSpans") {
                let mut kept = spans.lock().expect("spans");
                kept.extend(scope["spans"].as_array().expect("spans").iter().cloned());
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The span named `name` whose parent is `parent`, waiting (bounded) for it to arrive.
async fn span_of(spans: &Mutex<Vec<Value>>, name: &str, parent: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(span) = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s["name"] == name && s["parentSpanId"] == parent)
        {
            return span.clone();
        }
        assert!(Instant::now() < until, "no {name} span under {parent}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spans_of_a_chain_reach_an_otlp_collector_as_one_trace() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let url = gateway.ws_url();
    let (otlp, spans) = collector().await;
    let export = ["--otlp-endpoint", otlp.as_str()];
    let c = serve_logged(&gateway, &export, &[]).await;
    let b = serve_logged(&gateway, &["--forward", export[0], export[1]], &[]).await;
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let args = json!({"to": c.did.to_string(), "capability": "echo", "args": 2}).to_string();
    let b_did = b.did.to_string();
    let (code, out, err) = ioap(&[
        "call",
        &b_did,
        "forward",
        &args,
        "--traceparent",
        given,
        "--gateway",
        &url,
        export[0],
        export[1],
    ])
    .await;
    assert_eq!((code, out), (0, json!(2)), "{err}");

    // A's call → B serves it → B's call → C serves it: one trace, each span the child of the
    // one before.
    let a_call = span_of(&spans, "ioap.call", "00f067aa0ba902b7").await;
    let b_serve = span_of(&spans, "ioap.serve", a_call["spanId"].as_str().expect("id")).await;
    let b_call = span_of(&spans, "ioap.call", b_serve["spanId"].as_str().expect("id")).await;
    let c_serve = span_of(&spans, "ioap.serve", b_call["spanId"].as_str().expect("id")).await;
    for span in [&a_call, &b_serve, &b_call, &c_serve] {
        assert_eq!(
            span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{span}"
        );
        assert_eq!(span["status"]["code"], 1, "{span}");
    }
    assert_eq!(
        (a_call["kind"].clone(), b_serve["kind"].clone()),
        (json!(3), json!(2))
    );
    let capability = |span: &Value| {
        span["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == "ioap.capability"))
            .map(|kv| kv["value"]["stringValue"].clone())
    };
    assert_eq!(capability(&c_serve), Some(json!("echo")));
    assert_eq!(capability(&b_serve), Some(json!("forward")));
    gateway.shutdown().await;
}
