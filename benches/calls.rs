//! What who-may-call-what and tracing cost per call (PROTOCOL_DESIGN.md §11.8, §11.9): EXEC
//! round trip and calls/s on one link to an open capability, to a restricted one whose caller
//! is on the allowlist, to one whose caller presents a grant chain of depth 2, and to the open
//! one with a tracing subscriber recording every call's span (`ioap_client::calls=info`,
//! formatted to a sink). Everything in this process on loopback UDP, with an embedded gateway.
//! Run: `cargo bench --bench calls`.
//!
//! Settings (environment): `IOAP_CALLS_BENCH_ENGINE` (default `webrtc-rs`),
//! `IOAP_CALLS_BENCH_CALLS` (sequential calls per case, default 3000),
//! `IOAP_CALLS_BENCH_PARALLEL` (calls in flight for calls/s, default 64),
//! `IOAP_CALLS_BENCH_ROUNDS` (rounds of all cases; the last is reported, default 3).

use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use ioap_client::{Agent, CallOptions, CapabilityHandler, Engine, Grant, GrantTerms, Peer};
use ioap_gateway::{Gateway, GatewayConfig};
use ioap_protocol::{Identity, Timestamp};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn echo(name: &str) -> CapabilityHandler {
    CapabilityHandler::new(name, |args: Value| async move { Ok(args) })
}

/// Round trip p50 / p99 (µs) of `calls` sequential calls, then calls/s with `parallel` in
/// flight.
async fn measure(
    peer: &Peer,
    capability: &str,
    options: &CallOptions,
    calls: usize,
    parallel: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    for _ in 0..100 {
        peer.exec_with(capability, json!(0), options).await?;
    }
    let mut round_trip = Histogram::<u64>::new(3)?;
    for i in 0..calls {
        let started = Instant::now();
        peer.exec_with(capability, json!({"i": i}), options).await?;
        round_trip.record(u64::try_from(started.elapsed().as_micros())?)?;
    }
    let total = calls * 2;
    let started = Instant::now();
    let (mut issued, mut done) = (0, 0);
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    while done < total {
        while issued < total && in_flight.len() < parallel {
            in_flight.push(peer.exec_with(capability, json!(issued), options));
            issued += 1;
        }
        if let Some(result) = in_flight.next().await {
            result?;
            done += 1;
        }
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    Ok((
        round_trip.value_at_quantile(0.5),
        round_trip.value_at_quantile(0.99),
        rate,
    ))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // Test runners list and run bench targets too: this runs only under `cargo bench`.
    if args.iter().any(|a| a == "--list") || !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let engine: Engine = std::env::var("IOAP_CALLS_BENCH_ENGINE")
        .unwrap_or_else(|_| "webrtc-rs".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let calls = env_or("IOAP_CALLS_BENCH_CALLS", 3000);
    let parallel = env_or("IOAP_CALLS_BENCH_PARALLEL", 64);
    let (filter, switch) = reload::Layer::new(EnvFilter::new("off"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gateway = Gateway::start(GatewayConfig::ephemeral()).await?;
        let url = gateway.ws_url();
        let (callee_id, caller_id, middle_id) = (
            Identity::generate()?,
            Identity::generate()?,
            Identity::generate()?,
        );
        let callee = Agent::builder(&url)
            .identity(callee_id.clone())
            .loopback_only(true)
            .engine(engine)
            .capability(echo("open"))
            .capability(echo("listed").allow([caller_id.did()]))
            .capability(echo("granted").restrict())
            .connect()
            .await?;
        let caller = Agent::builder(&url)
            .identity(caller_id.clone())
            .loopback_only(true)
            .engine(engine)
            .connect()
            .await?;
        let peer = caller.peer(callee.did());
        peer.connect().await?;

        let expires = Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(3600));
        let terms = |subject| GrantTerms {
            subject,
            audience: callee.did(),
            capability: "granted".into(),
            expires,
            args: None,
        };
        let root = Grant::issue(&callee_id, terms(middle_id.did()), None);
        let leaf = Grant::issue(&middle_id, terms(caller_id.did()), Some(&root));
        let chain = CallOptions::new().grants(vec![root, leaf]);
        let plain = CallOptions::new();

        let cases: [(&str, &str, &CallOptions, bool); 4] = [
            ("open", "open", &plain, false),
            ("allowlisted", "listed", &plain, false),
            ("grant chain, depth 2", "granted", &chain, false),
            ("open, spans recorded", "open", &plain, true),
        ];
        // Rounds of every case in turn: the first warms caches (the replay window fills over
        // the first 60 s of calls) and would flatter whichever case ran first; the last
        // round's figures are reported.
        let rounds = env_or("IOAP_CALLS_BENCH_ROUNDS", 3);
        let mut last = Vec::new();
        for round in 0..rounds {
            last.clear();
            for (name, capability, options, traced) in cases {
                let level = if traced {
                    "ioap_client::calls=info"
                } else {
                    "off"
                };
                switch.reload(EnvFilter::new(level))?;
                let figures = measure(&peer, capability, options, calls, parallel).await?;
                last.push((name, figures));
            }
            eprintln!("round {} of {rounds} done", round + 1);
        }
        for (name, (p50, p99, rate)) in last {
            println!(
                "{engine:<9} {name:<24} round trip p50 {p50:>5} µs  p99 {p99:>5} µs   \
                 {rate:>6.0} calls/s ({parallel} in flight)"
            );
        }
        caller.close().await;
        callee.close().await;
        gateway.shutdown().await;
        anyhow::Ok(())
    })
}
