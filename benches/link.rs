//! Link benchmark: WebRTC link setup (OFFER sent → channel open and the peer's signed PING
//! verified), EXEC round trip and calls/s on one link, and RSS per open link. Everything in
//! this process on loopback UDP, with an embedded gateway. Run: `cargo bench --bench link`.
//!
//! Settings (environment): `IOAP_LINK_BENCH_SETUPS` (links set up one after another, default
//! 200), `IOAP_LINK_BENCH_CALLS` (sequential calls for the round trip, default 5000),
//! `IOAP_LINK_BENCH_PARALLEL` (calls in flight for calls/s, default 64),
//! `IOAP_LINK_BENCH_LINKS` (links held open for the memory figure, default 200).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ioap_client::{Agent, demo};
use ioap_gateway::{Gateway, GatewayConfig};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn agent(url: &str) -> anyhow::Result<Agent> {
    Ok(Agent::builder(url)
        .loopback_only(true)
        .capabilities(demo::capabilities())
        .connect()
        .await?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn report(name: &str, histogram: &Histogram<u64>) {
    println!(
        "{name:<28} n={:<6} p50 {:>8} µs  p99 {:>8} µs  max {:>8} µs",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max()
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // Test runners list and run bench targets too: this runs only under `cargo bench`.
    if args.iter().any(|a| a == "--list") || !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let setups = env_or("IOAP_LINK_BENCH_SETUPS", 200);
    let calls = env_or("IOAP_LINK_BENCH_CALLS", 5000);
    let parallel = env_or("IOAP_LINK_BENCH_PARALLEL", 64);
    let held = env_or("IOAP_LINK_BENCH_LINKS", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gateway = Gateway::start(GatewayConfig::ephemeral()).await?;
        let url = gateway.ws_url();

        // Link setup: one caller dials `setups` fresh agents in turn.
        let caller = agent(&url).await?;
        let mut setup = Histogram::<u64>::new(3)?;
        for _ in 0..setups {
            let callee = agent(&url).await?;
            let peer = caller.peer(callee.did());
            let started = Instant::now();
            peer.connect().await?;
            setup.record(micros(started.elapsed()))?;
            callee.close().await;
        }
        report("link setup", &setup);

        // EXEC round trip on one link, one call at a time.
        let callee = agent(&url).await?;
        let peer = caller.peer(callee.did());
        peer.connect().await?;
        let mut round_trip = Histogram::<u64>::new(3)?;
        for i in 0..calls {
            let started = Instant::now();
            peer.exec("echo", json!({"i": i})).await?;
            round_trip.record(micros(started.elapsed()))?;
        }
        report("EXEC round trip (echo)", &round_trip);

        // Calls/s on one link with `parallel` in flight.
        let total = calls * 2;
        let started = Instant::now();
        let mut done = 0;
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut issued = 0;
        use futures_util::StreamExt;
        while done < total {
            while issued < total && in_flight.len() < parallel {
                let peer = peer.clone();
                in_flight.push(async move { peer.exec("echo", json!(issued)).await });
                issued += 1;
            }
            if let Some(result) = in_flight.next().await {
                result?;
                done += 1;
            }
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        println!(
            "{:<28} {rate:.0} calls/s ({parallel} in flight, {total} calls)",
            "EXEC throughput"
        );
        callee.close().await;

        // Memory: hold `held` links open (both ends in this process).
        let before = rss_kib();
        let mut pairs = Vec::new();
        for _ in 0..held {
            let (a, b) = (agent(&url).await?, agent(&url).await?);
            pairs.push((a, b));
        }
        let agents_only = rss_kib();
        for (a, b) in &pairs {
            a.peer(b.did()).connect().await?;
        }
        let with_links = rss_kib();
        let per_link = (with_links.saturating_sub(agents_only)) as f64 / held as f64;
        println!(
            "{:<28} {per_link:.0} KiB per link (both ends; {held} links, agents alone {} KiB)",
            "RSS",
            agents_only.saturating_sub(before)
        );
        for (a, b) in pairs {
            a.close().await;
            b.close().await;
        }
        caller.close().await;
        gateway.shutdown().await;
        anyhow::Ok(())
    })
}
