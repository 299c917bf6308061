//! Relay benchmark: N registered agents in pairs send OFFER-sized frames through a relay;
//! messages/s and one-way relay latency, for the ioap gateway and, in the same run, a bare
//! tokio-tungstenite relay (no authentication, no validation) as the ceiling. Also the
//! gateway's RSS per registered idle agent.
//!
//! Both relays run as child processes of this executable (so their RSS is their own); the
//! load generator is this process. Run: `cargo bench --bench relay`.
//! Settings (environment): `IOAP_RELAY_BENCH_AGENTS` (default `100,1000,10000`),
//! `IOAP_RELAY_BENCH_SECS` (measured seconds per run, default 5), `IOAP_RELAY_BENCH_INFLIGHT`
//! (frames in flight across all pairs, default 512).

mod bare;
mod load;
mod servers;

use std::time::Duration;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(kind) = args
        .iter()
        .position(|a| a == "--child")
        .and_then(|i| args.get(i + 1))
    {
        return servers::run_child(kind);
    }
    // Test runners list and run bench targets too (`--list`, or no `--bench`): this harness
    // has no tests, and the benchmark runs only under `cargo bench`.
    if args.iter().any(|a| a == "--list") || !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    raise_fd_limit();
    let agents: Vec<usize> = std::env::var("IOAP_RELAY_BENCH_AGENTS")
        .unwrap_or_else(|_| "100,1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds = Duration::from_secs(env_or("IOAP_RELAY_BENCH_SECS", 5));
    let inflight = env_or("IOAP_RELAY_BENCH_INFLIGHT", 512usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "relay benchmark: {seconds:?} per run, {inflight} frames in flight, frame ≈ {} bytes",
            load::FRAME_BYTES
        );
        println!(
            "{:>7} {:>9} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10} {:>7} {:>14}",
            "agents", "relay", "msgs/s", "p50 µs", "p99 µs", "bare msgs/s", "bare p50", "bare p99",
            "ratio", "RSS/agent"
        );
        for n in agents {
            let ours = load::run(servers::Kind::Gateway, n, seconds, inflight).await?;
            let bare = load::run(servers::Kind::Bare, n, seconds, inflight).await?;
            println!(
                "{:>7} {:>9} {:>12.0} {:>10.0} {:>10.0} {:>12.0} {:>10.0} {:>10.0} {:>7.2} {:>11.1} KB",
                n,
                "ioap",
                ours.rate,
                ours.p50_us,
                ours.p99_us,
                bare.rate,
                bare.p50_us,
                bare.p99_us,
                ours.rate / bare.rate,
                ours.rss_per_agent_kb,
            );
        }
        Ok(())
    })
}

/// Raises the open-file soft limit to the hard limit (each agent is a socket).
pub fn raise_fd_limit() {
    if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}
