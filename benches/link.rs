//! Link benchmark, per WebRTC engine (each in a process of its own): link setup (OFFER sent
//! → channel open and the peer's signed PING verified), EXEC round trip and calls/s on one
//! link, a large echo's throughput (CHUNKs, PROTOCOL_DESIGN.md §11.6: the round trip, each
//! leg — request in, result back — timed from inside the callee's handler, and the CPU it
//! took), RSS per open link and
//! the CPU an idle link costs. Everything in this process on loopback UDP, with an embedded
//! gateway. Run: `cargo bench --bench link`.
//!
//! Settings (environment): `IOAP_LINK_BENCH_ENGINES` (comma-separated, default
//! `webrtc-rs,str0m`), `IOAP_LINK_BENCH_SETUPS` (links set up one after another, default 200),
//! `IOAP_LINK_BENCH_CALLS` (sequential calls for the round trip, default 5000),
//! `IOAP_LINK_BENCH_PARALLEL` (calls in flight for calls/s, default 64),
//! `IOAP_LINK_BENCH_LINKS` (links held open for the memory and idle figures, default 200),
//! `IOAP_LINK_BENCH_IDLE_S` (seconds they are held idle, default 10),
//! `IOAP_LINK_BENCH_HEARTBEAT_MS` (the WebRTC links' heartbeat interval; default the SDK's),
//! `IOAP_LINK_BENCH_LARGE_MIB` / `IOAP_LINK_BENCH_LARGE_ROUNDS` (the large echo: its size,
//! default 8 MiB, and how many times, default 5).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ioap_client::{Agent, CapabilityHandler, Engine, LinkSettings, demo};
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

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// One run's settings.
struct Bench {
    url: String,
    engine: Engine,
    links: LinkSettings,
    /// When the last `timed_echo` handler started and returned: splits a large echo's round
    /// trip into its two legs (both agents share this process's clock).
    handler: Arc<Mutex<(Instant, Instant)>>,
}

impl Bench {
    async fn agent(&self) -> anyhow::Result<Agent> {
        let times = self.handler.clone();
        let timed_echo = CapabilityHandler::new("timed_echo", move |args| {
            let times = times.clone();
            async move {
                times.lock().expect("not poisoned").0 = Instant::now();
                let echoed = Ok(args);
                times.lock().expect("not poisoned").1 = Instant::now();
                echoed
            }
        });
        let mut capabilities = demo::capabilities();
        capabilities.push(timed_echo);
        Ok(Agent::builder(&self.url)
            .loopback_only(true)
            .engine(self.engine)
            .link_settings(self.links.clone())
            .capabilities(capabilities)
            .connect()
            .await?)
    }

    fn handler_times(&self) -> (Instant, Instant) {
        *self.handler.lock().expect("not poisoned")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn report(engine: Engine, name: &str, histogram: &Histogram<u64>) {
    println!(
        "{engine:<9} {name:<28} n={:<6} p50 {:>8} µs  p99 {:>8} µs  max {:>8} µs",
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
    let engines: Vec<Engine> = std::env::var("IOAP_LINK_BENCH_ENGINES")
        .unwrap_or_else(|_| "webrtc-rs,str0m".into())
        .split(',')
        .map(|name| name.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    if engines.len() > 1 {
        // Each engine in a process of its own: memory one engine freed must not flatter the
        // next one's RSS figure.
        for engine in engines {
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(&args[1..])
                .env("IOAP_LINK_BENCH_ENGINES", engine.name())
                .status()?;
            anyhow::ensure!(status.success(), "the {engine} run failed: {status}");
        }
        return Ok(());
    }
    let mut links = LinkSettings::default();
    if let Ok(ms) = std::env::var("IOAP_LINK_BENCH_HEARTBEAT_MS") {
        let interval = Duration::from_millis(ms.parse()?);
        links = links
            .webrtc_heartbeat_interval(interval)
            .webrtc_link_timeout((interval * 3).max(Duration::from_secs(5)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gateway = Gateway::start(GatewayConfig::ephemeral()).await?;
        for engine in engines {
            let bench = Bench {
                url: gateway.ws_url(),
                engine,
                links: links.clone(),
                handler: Arc::new(Mutex::new((Instant::now(), Instant::now()))),
            };
            run(&bench).await?;
        }
        gateway.shutdown().await;
        anyhow::Ok(())
    })
}

async fn run(bench: &Bench) -> anyhow::Result<()> {
    let setups = env_or("IOAP_LINK_BENCH_SETUPS", 200);
    let calls = env_or("IOAP_LINK_BENCH_CALLS", 5000);
    let parallel = env_or("IOAP_LINK_BENCH_PARALLEL", 64);
    let held = env_or("IOAP_LINK_BENCH_LINKS", 200);
    let idle_s = env_or("IOAP_LINK_BENCH_IDLE_S", 10) as u64;
    let engine = bench.engine;

    // Memory and idle CPU first, on a heap no earlier phase has grown (freed memory would be
    // reused and flatter the figure): hold `held` links open (both ends in this process).
    let before = rss_kib();
    let mut pairs = Vec::new();
    for _ in 0..held {
        let (a, b) = (bench.agent().await?, bench.agent().await?);
        pairs.push((a, b));
    }
    let agents_only = rss_kib();
    let cpu_agents = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(idle_s)).await;
    let agents_cpu = cpu_seconds() - cpu_agents;
    for (a, b) in &pairs {
        a.peer(b.did()).connect().await?;
    }
    let with_links = rss_kib();
    let per_link = (with_links.saturating_sub(agents_only)) as f64 / held as f64;
    println!(
        "{engine:<9} {:<28} {per_link:.0} KiB per link (both ends; {held} links, agents alone {} KiB)",
        "RSS",
        agents_only.saturating_sub(before)
    );
    let cpu_before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(idle_s)).await;
    let links_cpu = cpu_seconds() - cpu_before - agents_cpu;
    let lost = pairs
        .iter()
        .filter(|(a, b)| a.open_links() == 0 || b.open_links() == 0)
        .count();
    println!(
        "{engine:<9} {:<28} {:.3} ms per link per second (both ends; {held} links, {idle_s} s, \
         the agents' own share taken off; {lost} lost)",
        "idle CPU",
        links_cpu * 1e3 / (held as f64 * idle_s as f64),
    );
    for (a, b) in pairs {
        a.close().await;
        b.close().await;
    }

    // Link setup: one caller dials `setups` fresh agents in turn.
    let caller = bench.agent().await?;
    let mut setup = Histogram::<u64>::new(3)?;
    for _ in 0..setups {
        let callee = bench.agent().await?;
        let peer = caller.peer(callee.did());
        let started = Instant::now();
        peer.connect().await?;
        setup.record(micros(started.elapsed()))?;
        callee.close().await;
    }
    report(engine, "link setup", &setup);

    // EXEC round trip on one link, one call at a time.
    let callee = bench.agent().await?;
    let peer = caller.peer(callee.did());
    peer.connect().await?;
    let mut round_trip = Histogram::<u64>::new(3)?;
    for i in 0..calls {
        let started = Instant::now();
        peer.exec("echo", json!({"i": i})).await?;
        round_trip.record(micros(started.elapsed()))?;
    }
    report(engine, "EXEC round trip (echo)", &round_trip);

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
        "{engine:<9} {:<28} {rate:.0} calls/s ({parallel} in flight, {total} calls)",
        "EXEC throughput"
    );
    // A large echo on the same link: the payload goes out in CHUNKs and comes back the same way.
    let large = env_or("IOAP_LINK_BENCH_LARGE_MIB", 8) * 1024 * 1024;
    let rounds = env_or("IOAP_LINK_BENCH_LARGE_ROUNDS", 5);
    let blob = json!("x".repeat(large));
    peer.exec("timed_echo", json!("warm")).await?;
    let (mut there, mut back) = (Duration::ZERO, Duration::ZERO);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for _ in 0..rounds {
        let sent = Instant::now();
        let echoed = peer.exec("timed_echo", blob.clone()).await?;
        let returned = Instant::now();
        anyhow::ensure!(echoed == blob, "the large echo came back different");
        let (handler_in, handler_out) = bench.handler_times();
        there += handler_in.saturating_duration_since(sent);
        back += returned.saturating_duration_since(handler_out);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let rate = |total: Duration| (large * rounds) as f64 / total.as_secs_f64() / 1e6;
    println!(
        "{engine:<9} {:<28} {:.0} ms each, {:.0} MB/s echoed ({} MiB, {rounds} times); \
         there {:.0} ms ({:.0} MB/s), back {:.0} ms ({:.0} MB/s); {:.0} ms of CPU each",
        "large echo",
        seconds * 1e3 / rounds as f64,
        (large * rounds) as f64 / seconds / 1e6,
        large / (1024 * 1024),
        there.as_secs_f64() * 1e3 / rounds as f64,
        rate(there),
        back.as_secs_f64() * 1e3 / rounds as f64,
        rate(back),
        cpu * 1e3 / rounds as f64,
    );
    callee.close().await;
    caller.close().await;

    Ok(())
}
