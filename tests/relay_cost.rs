//! What the gateway relay costs the gateway: a real `ioap-gateway` process relaying a
//! gateway-relayed link between two SDK agents, its CPU time read from /proc per MB carried
//! (`cargo nextest run --run-ignored only -E 'test(relay_cost)' --no-capture`; figures in
//! docs/networks.md). The always-run test checks the figures are read from a link that really
//! went over the gateway.

#[allow(dead_code)]
#[path = "../gateway/tests/support/process.rs"]
mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ioap_client::{Agent, GatewayRelay, PathKind, demo};
use serde_json::json;

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(20);

/// The gateway process's CPU time so far (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

async fn pair(url: &str) -> (Agent, Agent) {
    let caller = Agent::builder(url)
        .gateway_relay(GatewayRelay::Always)
        .connect()
        .await
        .expect("caller registers");
    let callee = Agent::builder(url)
        .capabilities(demo::capabilities())
        .connect()
        .await
        .expect("callee registers");
    (caller, callee)
}

/// Echo calls of `payload` characters, `concurrency` at a time, for `run`: bytes relayed
/// (each call carries its payload both ways) and the gateway's CPU seconds meanwhile.
async fn measure(
    gateway: &process::Process,
    caller: &Agent,
    callee: &Agent,
    payload: usize,
    concurrency: usize,
    run: Duration,
) -> (f64, f64, u64) {
    let peer = caller.peer(callee.did());
    let text = "x".repeat(payload);
    tokio::time::timeout(WAIT, peer.exec("echo", json!({"warm": true})))
        .await
        .expect("bounded")
        .expect("warm-up call");
    let calls = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds(gateway.child.id());
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (peer, text, calls) = (peer.clone(), text.clone(), Arc::clone(&calls));
        async move {
            while started.elapsed() < run {
                let echoed = tokio::time::timeout(WAIT, peer.exec("echo", json!({"t": text})))
                    .await
                    .expect("bounded")
                    .expect("echo over the gateway relay");
                assert_eq!(echoed["t"].as_str().map(str::len), Some(text.len()));
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(gateway.child.id()) - cpu_before;
    let calls = calls.load(Ordering::Relaxed);
    let bytes = (calls as f64) * 2.0 * payload as f64;
    (bytes / elapsed, cpu / elapsed, calls)
}

fn start_gateway() -> process::Process {
    process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--relay-bytes-per-did",
            "4000000000",
            "--relay-bytes-total",
            "0",
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_link_carries_calls_through_a_gateway_process() {
    let gateway = start_gateway();
    let url = format!("ws://{}/ws", gateway.address);
    let (caller, callee) = pair(&url).await;
    let (rate, _, calls) = measure(
        &gateway,
        &caller,
        &callee,
        10_000,
        4,
        Duration::from_millis(300),
    )
    .await;
    assert!(calls > 0 && rate > 0.0);
    let path = caller
        .peer(callee.did())
        .path()
        .await
        .expect("path")
        .expect("a path");
    assert_eq!(path.kind(), PathKind::Gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by name"]
async fn relay_cost() {
    let gateway = start_gateway();
    let url = format!("ws://{}/ws", gateway.address);
    let (caller, callee) = pair(&url).await;
    for (payload, concurrency) in [(1_000, 16), (30_000, 8), (60_000, 8)] {
        let (rate, cpu, calls) = measure(
            &gateway,
            &caller,
            &callee,
            payload,
            concurrency,
            Duration::from_secs(5),
        )
        .await;
        let mb = rate / 1e6;
        println!(
            "payload {payload} B x{concurrency}: {calls} calls, {mb:.2} MB/s relayed, gateway CPU \
             {:.1} % of a core, {:.1} ms CPU per MB",
            cpu * 100.0,
            cpu * 1e3 / mb
        );
    }
}
