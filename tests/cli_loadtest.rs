//! `ioap loadtest` as an operator runs it: the real binary, a real gateway (embedded, or one
//! in this test process), real WebRTC links on loopback. The small run is the CI gate the
//! issue asks for; the others check that failures are counted by code and fail the exit
//! status.

use std::time::Duration;

use ioap_gateway::{Gateway, GatewayConfig};
use serde_json::Value;
use tokio::process::Command;

/// Longest a run may take here (the small run takes a few seconds).
const WAIT: Duration = Duration::from_secs(120);

struct Run {
    code: i32,
    report: Value,
    stderr: String,
}

async fn loadtest(args: &[&str]) -> Run {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_ioap"))
            .arg("loadtest")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("in time")
    .expect("run ioap loadtest");
    let stderr = String::from_utf8(output.stderr).expect("utf8");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    Run {
        code: output.status.code().unwrap_or(-1),
        report,
        stderr,
    }
}

fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_twenty_links_ten_calls_each_all_succeed() {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let out_path = out.path().to_str().expect("utf8 path");
    let run = loadtest(&[
        "--agents",
        "50",
        "--links",
        "20",
        "--calls",
        "10",
        "--concurrency",
        "4",
        "--payload-bytes",
        "256",
        "--duration",
        "2",
        "--json",
        "--out",
        out_path,
    ])
    .await;
    let r = &run.report;
    assert_eq!(run.code, 0, "report: {r:#}\nstderr: {}", run.stderr);
    assert_eq!(r["schema"], "ioap.loadtest.v1");
    assert_eq!(r["passed"], true);
    assert_eq!(r["config"]["embedded"], true);
    assert_eq!(count(&r["registration"]["succeeded"]), 50);
    assert_eq!(count(&r["links"]["succeeded"]), 20);
    assert_eq!(count(&r["exec"]["succeeded"]), 200);
    assert_eq!(count(&r["exec"]["latency"]["count"]), 200);
    assert!(r["exec"]["per_s"].as_f64().is_some_and(|rate| rate > 0.0));
    let relay = &r["relay"];
    assert_eq!(
        count(&relay["pairs"]),
        5,
        "the 10 agents outside links pair up"
    );
    assert!(count(&relay["delivered"]) > 0);
    assert_eq!(relay["delivered"], relay["sent"], "nothing lost: {relay:#}");
    assert_eq!(count(&r["teardown"]["closed"]), 50);
    assert_eq!(count(&r["teardown"]["agents_left"]), 0);
    assert!(r["errors"].as_object().is_some_and(|e| e.is_empty()));
    let samples = r["gateway"]["samples"].as_array().expect("samples");
    let phases: Vec<&str> = samples.iter().filter_map(|s| s["phase"].as_str()).collect();
    assert_eq!(
        phases,
        ["start", "register", "links", "exec", "relay", "teardown"]
    );
    assert!(
        samples[1]["cpu_s"].as_f64().is_some(),
        "embedded gateway CPU is measured"
    );
    assert!(r["process"]["rss_per_link_kib"].as_f64().is_some());
    let own = r["process"]["samples"].as_array().expect("process samples");
    assert_eq!(own.len(), samples.len());
    assert!(
        own[2]["cpu_percent"].as_f64().is_some(),
        "this process's CPU per phase"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path()).expect("--out written"))
            .expect("--out holds JSON");
    assert_eq!(&written, r, "--out holds the same report");
    assert!(
        run.stderr.contains("loadtest: links: 20 open, 0 failed"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_calls_and_the_human_table() {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_ioap"))
            .args(["loadtest", "--agents", "4", "--links", "2", "--calls", "5"])
            .args(["--stream", "3", "--duration", "0", "--quiet"])
            .output(),
    )
    .await
    .expect("in time")
    .expect("run");
    let table = String::from_utf8(output.stdout).expect("utf8");
    assert!(output.status.success(), "{table}");
    assert!(table.contains("exec") && table.contains("10/10"), "{table}");
    assert!(
        !table.contains("relay "),
        "no relay phase without duration: {table}"
    );
    assert!(table.contains("result: PASSED"), "{table}");
    assert!(output.stderr.is_empty(), "--quiet prints nothing on stderr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_the_gateways_code_and_fail_the_run() {
    let gateway = Gateway::start(GatewayConfig {
        registrations_per_ip_per_min: 6,
        rate_per_did: 0,
        rate_per_ip: 0,
        ..GatewayConfig::ephemeral()
    })
    .await
    .expect("gateway");
    let url = gateway.ws_url();
    let run = loadtest(&[
        "--gateway",
        &url,
        "--agents",
        "10",
        "--links",
        "2",
        "--calls",
        "3",
        "--ramp-per-s",
        "0",
        "--duration",
        "1",
        "--json",
        "--quiet",
    ])
    .await;
    let r = &run.report;
    assert_eq!(run.code, 1, "{r:#}\n{}", run.stderr);
    assert_eq!(r["passed"], false);
    assert_eq!(count(&r["registration"]["succeeded"]), 6);
    assert_eq!(count(&r["registration"]["failed"]["RATE_LIMITED"]), 4);
    assert_eq!(count(&r["errors"]["RATE_LIMITED"]), 4);
    let links = &r["links"];
    let not_registered = links["failed"]["NOT_REGISTERED"].as_u64().unwrap_or(0);
    assert_eq!(count(&links["succeeded"]) + not_registered, 2);
    assert_eq!(r["gateway"]["pid"], Value::Null);
    assert_eq!(
        count(&r["teardown"]["agents_left"]),
        0,
        "the gateway kept serving"
    );
    assert_eq!(gateway.registered_agents(), 0);
    gateway.shutdown().await;
}

/// Four signaling-only agents (two relay pairs) against a gateway allowing `per_s` frames/s
/// per DID and closing a session over that limit for `flood_secs`; returns the run's exit code
/// and relay report after checking what every such run must show: some frames delivered,
/// every frame accounted for, and the gateway still serving (teardown leaves nothing
/// registered).
async fn relay_through_a_throttling_gateway(
    per_s: u32,
    flood_secs: u64,
    args: &[&str],
) -> (i32, Value) {
    let gateway = Gateway::start(GatewayConfig {
        rate_per_did: per_s,
        flood_close_after: std::time::Duration::from_secs(flood_secs),
        ..GatewayConfig::ephemeral()
    })
    .await
    .expect("gateway");
    let url = gateway.ws_url();
    let mut all = vec![
        "--gateway",
        &url,
        "--agents",
        "4",
        "--links",
        "0",
        "--json",
        "--quiet",
    ];
    all.extend_from_slice(args);
    let run = loadtest(&all).await;
    let r = &run.report;
    assert_eq!(count(&r["registration"]["succeeded"]), 4);
    assert_eq!(r["links"], Value::Null);
    let relay = &r["relay"];
    assert_eq!(count(&relay["pairs"]), 2);
    assert!(count(&relay["delivered"]) > 0, "{relay:#}");
    let failed: u64 = relay["failed"]
        .as_object()
        .expect("map")
        .values()
        .map(count)
        .sum();
    assert_eq!(
        count(&relay["delivered"]) + failed,
        count(&relay["sent"]),
        "every frame is delivered, refused with a code, or LOST: {relay:#}"
    );
    for (code, n) in relay["disconnections"].as_object().expect("map") {
        assert_eq!(&r["errors"][code], n, "disconnections are errors too");
    }
    assert_eq!(count(&r["teardown"]["agents_left"]), 0);
    assert_eq!(gateway.registered_agents(), 0);
    gateway.shutdown().await;
    (run.code, relay.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_frames_over_the_gateways_limit_are_delayed_not_dropped() {
    // Paced at three times the limit for 2 s: the gateway stops reading the senders until
    // their budget refills, so frames arrive late but every one arrives.
    let (code, relay) = relay_through_a_throttling_gateway(
        20,
        10,
        &["--duration", "2", "--relay-rate", "60", "--timeout", "8000"],
    )
    .await;
    assert_eq!(code, 0, "{relay:#}");
    assert_eq!(
        count(&relay["delivered"]),
        count(&relay["sent"]),
        "{relay:#}"
    );
    assert!(relay["failed"].as_object().is_some_and(|f| f.is_empty()));
    assert!(
        relay["disconnections"]
            .as_object()
            .is_some_and(|d| d.is_empty())
    );
    let p99 = relay["latency"]["p99_ms"].as_f64().expect("p99");
    assert!(p99 > 250.0, "frames were not held back: p99 {p99} ms");
}

/// A flood at one frame per second allowed: the gateway throttles, then closes senders that
/// stay over their limit for the flood time (4006, after 1 s here); frames in flight on a
/// closed connection are LOST. Every disconnection carries the code: the gateway finishes the
/// closing handshake even with the sender's frames still arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_sender_closed_by_the_gateway_is_counted_with_its_close_code() {
    let (code, relay) = relay_through_a_throttling_gateway(
        1,
        1,
        &[
            "--duration",
            "2",
            "--timeout",
            "2000",
            "--relay-window",
            "64",
        ],
    )
    .await;
    assert_eq!(code, 1, "{relay:#}");
    let disconnections = relay["disconnections"].as_object().expect("map");
    assert_eq!(
        disconnections.keys().collect::<Vec<_>>(),
        ["CLOSED_4006"],
        "{relay:#}"
    );
    assert!(count(&disconnections["CLOSED_4006"]) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_fails_every_registration_and_the_run() {
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("address").port()
    };
    let url = format!("ws://127.0.0.1:{port}/ws");
    let run = loadtest(&[
        "--gateway",
        &url,
        "--agents",
        "3",
        "--links",
        "1",
        "--duration",
        "1",
        "--timeout",
        "3000",
        "--json",
        "--quiet",
    ])
    .await;
    let r = &run.report;
    assert_eq!(run.code, 1, "{r:#}\n{}", run.stderr);
    assert_eq!(count(&r["registration"]["failed"]["CONNECT_FAILED"]), 3);
    assert_eq!(count(&r["links"]["failed"]["NOT_REGISTERED"]), 1);
    assert_eq!(r["exec"], Value::Null, "no calls without links");
    assert_eq!(
        r["teardown"]["agents_left"],
        Value::Null,
        "/health did not answer"
    );
}

/// Ctrl-C (SIGINT) in the middle of the relay phase: the phase ends, teardown still
/// unregisters every agent, and the report says the run was interrupted (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_still_tears_down_and_reports() {
    use tokio::io::AsyncBufReadExt;
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let url = gateway.ws_url();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ioap"))
        .args([
            "loadtest",
            "--gateway",
            &url,
            "--agents",
            "6",
            "--links",
            "1",
        ])
        .args([
            "--calls",
            "3",
            "--duration",
            "30",
            "--relay-rate",
            "10",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.starts_with("loadtest: relay: 3/30") {
                return;
            }
        }
        panic!("stderr ended before the relay phase ran for a second");
    })
    .await
    .expect("the relay phase started in time");
    let pid = child.id().expect("running").to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().await;
    assert!(kill.expect("kill").success());
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("stopped in time")
        .expect("output");
    let r: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(output.status.code(), Some(1), "{r:#}");
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["passed"], false);
    assert_eq!(
        count(&r["exec"]["succeeded"]),
        3,
        "phases before the interruption are whole"
    );
    assert!(count(&r["relay"]["delivered"]) > 0, "{r:#}");
    let relayed_for = r["relay"]["seconds"].as_f64().expect("seconds");
    assert!(
        relayed_for < 30.0,
        "the relay's time is what it ran, not --duration: {relayed_for}"
    );
    assert_eq!(count(&r["teardown"]["closed"]), 6);
    assert_eq!(count(&r["teardown"]["agents_left"]), 0);
    assert_eq!(gateway.registered_agents(), 0);
    gateway.shutdown().await;
}

/// Under a hard open-file limit too low for the run, the tool stops before starting and says
/// how many agents fit.
#[tokio::test]
async fn a_low_open_file_limit_is_explained_before_anything_starts() {
    let output = tokio::time::timeout(
        WAIT,
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 300 && exec \"$0\" loadtest --agents 1000 --links 0 --duration 0")
            .arg(env!("CARGO_BIN_EXE_ioap"))
            .output(),
    )
    .await
    .expect("in time")
    .expect("run");
    let stderr = String::from_utf8(output.stderr).expect("utf8");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the open-file limit is 300"), "{stderr}");
    assert!(stderr.contains("at most 22 agents fit"), "{stderr}");
    assert!(output.stdout.is_empty(), "no report: nothing ran");
}

#[tokio::test]
async fn impossible_plans_are_refused_before_anything_starts() {
    let run = loadtest(&["--agents", "10", "--links", "6"]).await;
    assert_eq!(run.code, 2, "an impossible plan is a usage error");
    assert!(
        run.stderr.contains("--links 6 needs 12 agents"),
        "{}",
        run.stderr
    );
    let run = loadtest(&["--gateway-pid", "1"]).await;
    assert_eq!(run.code, 2, "clap: --gateway-pid needs --gateway");
    let run = loadtest(&["--relay-window", "0"]).await;
    assert!(
        run.stderr.contains("--relay-window must be"),
        "{}",
        run.stderr
    );
}
