//! Relay benchmark: N registered agents in pairs send OFFER-sized frames through a relay;
//! messages/s and one-way relay latency, for the ioap gateway and, in the same run, a bare
//! tokio-tungstenite relay (no authentication, no validation) as the ceiling. Also the
//! gateway's RSS per registered idle agent.
//!
//! Both relays run as child processes of this executable (so their RSS is their own); the
//! load generator is this process. Run: `cargo bench --bench relay`.
//! Each size runs saturating and paced, and reports the relay's CPU time per delivered frame
//! beside the bare relay's.
//! Settings (environment): `IOAP_RELAY_BENCH_AGENTS` (default `100,1000,10000`),
//! `IOAP_RELAY_BENCH_SECS` (measured seconds per run, default 5), `IOAP_RELAY_BENCH_INFLIGHT`
//! (frames in flight across all pairs, default 512), `IOAP_RELAY_BENCH_PACED` (total frames/s
//! of the paced runs, default 10000), `IOAP_RELAY_BENCH_GATEWAY_BIN` (measure that
//! `ioap-gateway` binary instead of this build's gateway), `IOAP_RELAY_BENCH_FLOOD=1` (the
//! flood benchmark instead: see `flood.rs`).

mod bare;
mod flood;
mod load;
mod servers;

use std::time::Duration;

use load::Pace;
use servers::Kind;

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
    let paced = env_or("IOAP_RELAY_BENCH_PACED", 10_000.0f64);
    runtime.block_on(async {
        if std::env::var("IOAP_RELAY_BENCH_FLOOD").is_ok_and(|v| v == "1") {
            return flood::run(seconds).await;
        }
        println!(
            "relay benchmark: {seconds:?} per run, {inflight} frames in flight, frame ≈ {} bytes",
            load::FRAME_BYTES
        );
        println!(
            "{:>7} {:>11} {:>10} {:>8} {:>8} {:>9} {:>10} {:>8} {:>8} {:>9} {:>9} {:>11}",
            "agents", "load", "msgs/s", "p50 µs", "p99 µs", "CPU µs/f", "bare/s",
            "bare p50", "bare p99", "bare µs/f", "CPU ratio", "RSS/agent"
        );
        for n in agents {
            for pace in [Pace::Saturating, Pace::PerSecond(paced)] {
                let ours = load::run(Kind::Gateway, n, seconds, inflight, pace).await?;
                let bare = load::run(Kind::Bare, n, seconds, inflight, pace).await?;
                let load = match pace {
                    Pace::Saturating => "saturating".to_owned(),
                    Pace::PerSecond(rate) => format!("{rate:.0}/s"),
                };
                println!(
                    "{:>7} {:>11} {:>10.0} {:>8.0} {:>8.0} {:>9.1} {:>10.0} {:>8.0} {:>8.0} {:>9.1} {:>9.2} {:>8.1} KB",
                    n,
                    load,
                    ours.rate,
                    ours.p50_us,
                    ours.p99_us,
                    ours.cpu_us_per_frame,
                    bare.rate,
                    bare.p50_us,
                    bare.p99_us,
                    bare.cpu_us_per_frame,
                    ours.cpu_us_per_frame / bare.cpu_us_per_frame,
                    ours.rss_per_agent_kb,
                );
            }
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
