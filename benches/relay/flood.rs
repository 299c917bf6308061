//! The flood benchmark (`IOAP_RELAY_BENCH_FLOOD=1 cargo bench --bench relay`): a gateway with
//! its default limits, a bystander pair on 127.0.0.1 relaying 100 frames/s (half its limit),
//! first alone and then while one client on 127.0.0.2 floods OFFERs at
//! `IOAP_RELAY_BENCH_FLOOD_RATE` frames/s (default 20,000: a hundred times its limit; 0 = as
//! fast as it can write). Reports the gateway's CPU in each phase, what became of the flood,
//! and the bystander's throughput and latency in each phase.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ioap_protocol::{Body, ErrorCode, ReceivedEnvelope};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Agent, connect_from, offer};
use crate::servers::{Kind, Server};

const BYSTANDER_RATE: f64 = 100.0;
const FLOODER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// What a bystander pair saw over one phase.
struct Bystander {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
}

/// What the flooder achieved.
#[derive(Default)]
struct Flood {
    sent: AtomicU64,
    relayed: AtomicU64,
    rate_limited: AtomicU64,
    close: Mutex<Option<String>>,
}

/// Runs both phases and prints the report.
pub async fn run(seconds: Duration) -> anyhow::Result<()> {
    let flood_rate = crate::env_or("IOAP_RELAY_BENCH_FLOOD_RATE", 20_000.0f64);
    let server = Server::spawn(Kind::GatewayLimited)?;
    let url = format!("ws://{}/ws", server.address);
    let sender = connect_from(Kind::GatewayLimited, url.clone(), None).await?;
    let receiver = connect_from(Kind::GatewayLimited, url.clone(), None).await?;
    let frame = offer(&sender, &receiver)?;
    let (mut out, _sender_in) = sender.ws.split();
    let (_receiver_out, mut incoming) = receiver.ws.split();
    let sent_at: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let delivered = Arc::new(AtomicU64::new(0));
    let send_times = Arc::clone(&sent_at);
    let sending = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / BYSTANDER_RATE));
        loop {
            ticker.tick().await;
            if let Ok(mut times) = send_times.lock() {
                times.push_back(Instant::now());
            }
            if out.send(Message::Text(frame.clone())).await.is_err() {
                return;
            }
        }
    });
    let (latencies, count) = (Arc::clone(&histogram), Arc::clone(&delivered));
    let receiving = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            if !matches!(message, Message::Text(_)) {
                continue;
            }
            let at = sent_at.lock().ok().and_then(|mut times| times.pop_front());
            if let (Some(at), Ok(mut h)) = (at, latencies.lock()) {
                let _ = h.record(at.elapsed().as_micros() as u64);
            }
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let measure = |label: &'static str| {
        let (server, histogram, delivered) = (&server, &histogram, &delivered);
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(mut h) = histogram.lock() {
                h.reset();
            }
            let (start, cpu_before) = (delivered.load(Ordering::Relaxed), server.cpu_seconds()?);
            let started = Instant::now();
            tokio::time::sleep(seconds).await;
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = (server.cpu_seconds()? - cpu_before) / elapsed;
            let h = histogram.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let seen = Bystander {
                rate: (delivered.load(Ordering::Relaxed) - start) as f64 / elapsed,
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
            };
            println!(
                "{label:<22} gateway CPU {:>6.1} % of a core | bystander {:>6.1} frames/s, relay p50 {:>7} µs, p99 {:>7} µs",
                cpu * 100.0,
                seen.rate,
                seen.p50_us,
                seen.p99_us
            );
            anyhow::Ok(seen)
        }
    };
    println!(
        "flood benchmark: {seconds:?} per phase; bystander pair {BYSTANDER_RATE}/s; flood {} frames/s from {FLOODER}",
        if flood_rate > 0.0 {
            format!("{flood_rate:.0}")
        } else {
            "unpaced".into()
        }
    );
    let calm = measure("no flood").await?;
    let flood = Arc::new(Flood::default());
    let flooding = start_flood(&url, flood_rate, Arc::clone(&flood)).await?;
    let stormy = measure("one client flooding").await?;
    for task in flooding {
        task.abort();
    }
    sending.abort();
    receiving.abort();
    println!(
        "flooder: {} frames written, {} relayed, {} RATE_LIMITED received, connection {}",
        flood.sent.load(Ordering::Relaxed),
        flood.relayed.load(Ordering::Relaxed),
        flood.rate_limited.load(Ordering::Relaxed),
        flood
            .close
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_else(|| "open".into())
    );
    println!(
        "bystander during the flood: {:.0} % of its unflooded throughput, p99 {:.1} ms",
        stormy.rate / calm.rate * 100.0,
        stormy.p99_us as f64 / 1000.0
    );
    Ok(())
}

/// Registers the flooder and its sink on the flooding address and starts flooding.
async fn start_flood(
    url: &str,
    rate: f64,
    flood: Arc<Flood>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let flooder: Agent = connect_from(Kind::GatewayLimited, url.into(), Some(FLOODER)).await?;
    let sink: Agent = connect_from(Kind::GatewayLimited, url.into(), Some(FLOODER)).await?;
    let frame = offer(&flooder, &sink)?;
    let (mut out, mut answers) = flooder.ws.split();
    let (_sink_out, mut sink_in) = sink.ws.split();
    let counts = Arc::clone(&flood);
    let writing = tokio::spawn(async move {
        let mut ticker = (rate > 0.0).then(|| {
            let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            t
        });
        loop {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            if out.send(Message::Text(frame.clone())).await.is_err() {
                return;
            }
            counts.sent.fetch_add(1, Ordering::Relaxed);
        }
    });
    let counts = Arc::clone(&flood);
    let reading = tokio::spawn(async move {
        while let Some(Ok(message)) = answers.next().await {
            match message {
                Message::Text(text) => {
                    let limited = ReceivedEnvelope::decode(text.as_bytes()).is_ok_and(|r| {
                        matches!(&r.envelope().body, Body::Error(e) if e.code == ErrorCode::RateLimited)
                    });
                    if limited {
                        counts.rate_limited.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Message::Close(frame) => {
                    if let Ok(mut close) = counts.close.lock() {
                        *close = Some(format!("closed {:?}", frame.map(|f| u16::from(f.code))));
                    }
                }
                _ => {}
            }
        }
    });
    let counts = flood;
    let draining = tokio::spawn(async move {
        while let Some(Ok(message)) = sink_in.next().await {
            if matches!(message, Message::Text(_)) {
                counts.relayed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(vec![writing, reading, draining])
}
