//! `ioap serve | call | intent | agents` as a user runs them: the real binary in child
//! processes, a real gateway, real WebRTC links between processes. Also: a peer process
//! killed mid-call is noticed within the heartbeat bound.

mod serving;

use serving::serve;

use std::time::{Duration, Instant};

use ioap_client::Agent;
use ioap_gateway::{Gateway, GatewayConfig, RunningGateway};
use ioap_protocol::ErrorCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

async fn ioap(args: &[&str]) -> (i32, Vec<Value>, String) {
    ioap_with_env(args, &[]).await
}

/// `ioap args…` with these extra environment variables.
async fn ioap_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<Value>, String) {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_ioap"))
            .args(args)
            .envs(env.iter().copied())
            .output(),
    )
    .await
    .expect("in time")
    .expect("run ioap");
    let lines = String::from_utf8(output.stdout)
        .expect("utf8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each stdout line is JSON"))
        .collect();
    let stderr = String::from_utf8(output.stderr).expect("utf8");
    (output.status.code().unwrap_or(-1), lines, stderr)
}

async fn gateway() -> RunningGateway {
    Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_intent_and_agents_reach_a_serving_process() {
    let gateway = gateway().await;
    let (mut server, did) = serve(&gateway, &[]).await;
    let url = gateway.ws_url();
    let did_text = did.to_string();
    let g = ["--gateway", url.as_str()];

    let (code, out, err) = ioap(
        &[
            &["call", &did_text, "sum", r#"{"values":[1,2,3.5]}"#],
            &g[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!((code, out), (0, vec![json!(6.5)]), "{err}");

    let (code, out, err) = ioap(
        &[
            &["call", &did_text, "count", r#"{"to":3}"#, "--stream"],
            &g[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        vec![
            json!({"partial": 1}),
            json!({"partial": 2}),
            json!({"partial": 3}),
            json!({"counted": 3})
        ]
    );

    let (code, out, err) = ioap(&[&["call", &did_text, "fly", "{}"], &g[..]].concat()).await;
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["code"], "UNKNOWN_CAPABILITY");
    assert!(err.contains("UNKNOWN_CAPABILITY"), "{err}");

    let (code, out, err) = ioap(
        &[
            &[
                "call",
                &did_text,
                "sleep",
                r#"{"ms":5000}"#,
                "--timeout",
                "200",
            ],
            &g[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(out[0]["error"]["code"], "TIMEOUT");

    let (code, out, err) = ioap(&[&["intent", &did_text, "say hello"], &g[..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out[0]["status"], "accepted");

    let (code, out, err) = ioap(&[&["agents", "--capability", "sum"], &g[..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    let listed: Vec<_> = out[0]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["did"].clone())
        .collect();
    assert_eq!(listed, vec![json!(did_text)]);

    let (code, _, err) = ioap(&["call", "did:key:nope", "sum", "{}"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not a did:key"), "{err}");

    server.kill().await.expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_process_killed_mid_call_is_link_lost_within_the_heartbeat_bound() {
    let gateway = gateway().await;
    let (mut server, did) = serve(&gateway, &[]).await;
    let agent = Agent::builder(gateway.ws_url())
        .connect()
        .await
        .expect("registers");
    let peer = agent.peer(did);
    let pending = tokio::spawn({
        let peer = peer.clone();
        async move { peer.exec("sleep", json!({"ms": 60_000})).await }
    });
    // The link is ordered: once this answer is back, the sleep request has reached the server.
    let echoed = tokio::time::timeout(WAIT, peer.exec("echo", json!(1)))
        .await
        .expect("in time");
    assert_eq!(echoed, Ok(json!(1)));

    server.kill().await.expect("kill");
    let killed = Instant::now();
    let failed = tokio::time::timeout(WAIT, pending)
        .await
        .expect("in time")
        .expect("task")
        .expect_err("the peer is gone");
    let noticed = killed.elapsed();
    assert_eq!(failed.code(), ErrorCode::LinkLost, "{failed}");
    // PROTOCOL_DESIGN.md §11.3: no message for 5 s (ICE consent: 3 s) means lost. Allow slack
    // for a loaded test machine.
    assert!(
        noticed < Duration::from_secs(8),
        "noticed after {noticed:?}"
    );
    let again = tokio::time::timeout(WAIT, peer.exec("echo", json!(2)))
        .await
        .expect("in time");
    assert!(again.is_err(), "the next call re-dials a peer that is gone");
    agent.close().await;
}

/// Sends `signal` (`STOP`, `CONT`) to the child.
fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_outlives_its_deadline_while_the_callee_is_frozen_and_the_link_is_redialed() {
    const DEADLINE: Duration = Duration::from_secs(2);
    const SLACK: Duration = Duration::from_millis(250);
    let gateway = gateway().await;
    let (server, did) = serve(&gateway, &[]).await;
    let agent = Agent::builder(gateway.ws_url())
        .connect()
        .await
        .expect("registers");
    let peer = agent.peer(did);
    let echoed = tokio::time::timeout(WAIT, peer.exec("echo", json!(1))).await;
    assert_eq!(echoed.expect("in time"), Ok(json!(1)));

    signal(&server, "STOP");
    let frozen = Instant::now();
    // Twenty callers call in a loop for 10 s: the first calls wait on the open link, the link
    // is lost after 5 s of silence, and later calls must re-dial a peer that does not answer.
    let callers = (0..20).map(|_| {
        let peer = peer.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut calls = 0;
            while frozen.elapsed() < Duration::from_secs(10) {
                let started = Instant::now();
                let outcome = peer.exec_with_timeout("echo", json!(2), DEADLINE).await;
                worst = worst.max(started.elapsed());
                calls += 1;
                assert!(outcome.is_err(), "a frozen peer answered: {outcome:?}");
            }
            (worst, calls)
        })
    });
    let results = tokio::time::timeout(WAIT, futures_util::future::join_all(callers))
        .await
        .expect("in time");
    signal(&server, "CONT");
    let (worst, calls) = results
        .into_iter()
        .map(|r| r.expect("caller task"))
        .fold((Duration::ZERO, 0), |(w, n), (worst, calls)| {
            (w.max(worst), n + calls)
        });
    println!(
        "frozen callee: {calls} calls, slowest returned after {worst:?} (deadline {DEADLINE:?})"
    );
    assert!(
        worst <= DEADLINE + SLACK,
        "a call returned {:?} after its deadline",
        worst - DEADLINE
    );
    agent.close().await;
    drop(server);
}

/// `ioap call` through `url` fails at once with one JSON error on stdout: `code`, and a
/// message naming `cause`; the message is said once on stderr.
async fn fails_at_once(url: &str, code: &str, cause: &str) {
    let did = ioap_protocol::Identity::generate()
        .expect("rng")
        .did()
        .to_string();
    let started = Instant::now();
    let (exit, out, err) = ioap(&["call", &did, "echo", "{}", "--gateway", url]).await;
    let took = started.elapsed();
    assert_eq!(exit, 1, "{url}: {err}");
    assert_eq!(out.len(), 1, "{url}: one JSON line on stdout: {out:?}");
    assert_eq!(out[0]["error"]["code"], json!(code), "{url}: {out:?}");
    let message = out[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains(cause), "{url}: {message}");
    assert_eq!(err.matches("error:").count(), 1, "{url}: said once: {err}");
    assert!(
        took < Duration::from_secs(3),
        "{url}: reported after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_failing_to_reach_a_gateway_is_reported_at_once_on_stdout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    fails_at_once(
        &format!("ws://127.0.0.1:{port}/ws"),
        "CONNECT_FAILED",
        "Connection refused",
    )
    .await;

    let open = gateway().await;
    let address = open.local_addr();
    fails_at_once(&format!("http://{address}/ws"), "CONNECT_FAILED", "ws://").await;
    fails_at_once(&format!("ws://{address}/"), "CONNECT_FAILED", "HTTP 404").await;
    fails_at_once(&format!("wss://{address}/ws"), "CONNECT_FAILED", "TLS").await;

    let mut config = GatewayConfig::ephemeral();
    config.admission = ioap_gateway::Admission::Allowlist(Default::default());
    let closed = Gateway::start(config).await.expect("gateway");
    fails_at_once(&closed.ws_url(), "UNAUTHORIZED", "not admitted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_cert_lets_the_cli_use_a_gateway_with_a_private_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut config = GatewayConfig::ephemeral();
    config.tls = Some(ioap_gateway::TlsFiles {
        cert: cert.clone(),
        key,
    });
    let gateway = Gateway::start(config).await.expect("gateway");
    let url = format!("wss://localhost:{}/ws", gateway.local_addr().port());
    let cert = cert.to_str().expect("utf8");

    let (code, out, err) = ioap(&["agents", "--gateway", &url, "--ca-cert", cert]).await;
    assert_eq!((code, out.len()), (0, 1), "{err}");
    assert!(out[0].is_array(), "{out:?}");

    // The platform trust store is used too: SSL_CERT_FILE names it, as for OpenSSL.
    let (code, out, err) =
        ioap_with_env(&["agents", "--gateway", &url], &[("SSL_CERT_FILE", cert)]).await;
    assert_eq!((code, out.len()), (0, 1), "{err}");
    assert!(out[0].is_array(), "{out:?}");

    let did = ioap_protocol::Identity::generate()
        .expect("rng")
        .did()
        .to_string();
    // The agent itself registers over wss with it; the call then fails only for want of a
    // peer.
    let (code, out, err) = ioap_with_env(
        &["call", &did, "echo", "{}", "--gateway", &url],
        &[("SSL_CERT_FILE", cert)],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert_ne!(out[0]["error"]["code"], json!("CONNECT_FAILED"), "{out:?}");

    // Without either, the certificate problem is named at once.
    let (code, out, err) = ioap(&["call", &did, "echo", "{}", "--gateway", &url]).await;
    assert_eq!(code, 1, "{err}");
    let message = out[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("UnknownIssuer"), "{message}");
}
