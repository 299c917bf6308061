//! The load generator: connect and register N agents, pair them, and stream OFFER-sized
//! frames from each pair's first agent to its second through the relay under test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ioap_protocol::handshake::{Advertisement, ClientHandshake};
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, Envelope, Identity, ReceivedEnvelope, Timestamp};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::servers::{Kind, Server};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;
type Stream = SplitStream<Ws>;

/// Size of one relayed frame (an OFFER with a realistic SDP).
pub const FRAME_BYTES: usize = 1_950;
/// Most frames one pair has in flight.
const PAIR_WINDOW: usize = 32;
/// Registrations in progress at once.
const CONNECT_CONCURRENCY: usize = 128;
/// Warm-up before measuring.
const WARM_UP: Duration = Duration::from_secs(1);

/// One run's figures.
#[derive(Debug)]
pub struct Outcome {
    /// Frames delivered per second.
    pub rate: f64,
    /// Median one-way latency (µs).
    pub p50_us: f64,
    /// 99th percentile one-way latency (µs).
    pub p99_us: f64,
    /// Relay RSS growth per registered idle agent (KiB).
    pub rss_per_agent_kb: f64,
    /// The relay's CPU time per delivered frame (µs), over the measured seconds.
    pub cpu_us_per_frame: f64,
}

/// How hard the pairs send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the windows allow.
    Saturating,
    /// This many frames per second in total, spread evenly over the pairs.
    PerSecond(f64),
}

/// A registered client of the relay.
pub struct Agent {
    /// Its identity.
    pub identity: Identity,
    /// Its WebSocket.
    pub ws: Ws,
}

async fn connect(kind: Kind, url: String) -> anyhow::Result<Agent> {
    connect_from(kind, url, None).await
}

/// Connects from `source` (another loopback address stands for another client machine) and
/// registers.
pub async fn connect_from(
    kind: Kind,
    url: String,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<Agent> {
    let identity = Identity::generate()?;
    let mut request = url.as_str().into_client_request()?;
    if kind.is_gateway() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("ioap.v1"),
        );
    }
    let (mut ws, _) = match source {
        None => tokio_tungstenite::connect_async_with_config(request, None, true).await?,
        Some(source) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(source, 0))?;
            let host = request.uri().authority().context("address")?.as_str();
            let stream = socket.connect(host.parse()?).await?;
            stream.set_nodelay(true)?;
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?
        }
    };
    match kind {
        Kind::Bare => {
            ws.send(Message::text(identity.did().to_string())).await?;
        }
        Kind::Gateway | Kind::GatewayLimited => {
            let challenge = next_text(&mut ws).await?;
            let challenge = ReceivedEnvelope::decode(challenge.as_bytes())?;
            let mut handshake = ClientHandshake::new(url, None);
            let now = Timestamp::from_system_time(SystemTime::now());
            let register =
                handshake.on_challenge(&challenge, &identity, &Advertisement::default(), now)?;
            ws.send(Message::text(register.into_string())).await?;
            let reply = next_text(&mut ws).await?;
            handshake.on_reply(&ReceivedEnvelope::decode(reply.as_bytes())?)?;
        }
    }
    Ok(Agent { identity, ws })
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<Utf8Bytes> {
    loop {
        match ws.next().await.context("closed")?? {
            Message::Text(text) => return Ok(text),
            Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Runs one configuration and reports its figures.
pub async fn run(
    kind: Kind,
    agents: usize,
    seconds: Duration,
    inflight: usize,
    pace: Pace,
) -> anyhow::Result<Outcome> {
    let agents = agents.max(2) & !1;
    let server = Server::spawn(kind)?;
    let url = format!("ws://{}/ws", server.address);
    let rss_before = server.rss_kib()?;
    let connected: Vec<Agent> =
        futures_util::stream::iter((0..agents).map(|_| connect(kind, url.clone())))
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let rss_after = server.rss_kib()?;
    let rss_per_agent_kb = (rss_after.saturating_sub(rss_before)) as f64 * 1.024 / agents as f64;

    let global = Arc::new(Semaphore::new(inflight));
    let measuring = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut receivers = Vec::new();
    let pairs = agents / 2;
    let mut agents_iter = connected.into_iter();
    while let (Some(from), Some(to)) = (agents_iter.next(), agents_iter.next()) {
        let frame = offer(&from, &to)?;
        let fifo: Arc<Mutex<VecDeque<(Instant, OwnedSemaphorePermit, OwnedSemaphorePermit)>>> =
            Arc::default();
        let (sink, from_stream) = from.ws.split();
        let (_unused_sink, to_stream) = to.ws.split();
        let period = match pace {
            Pace::Saturating => None,
            Pace::PerSecond(rate) => Some(Duration::from_secs_f64(pairs as f64 / rate)),
        };
        tasks.push(tokio::spawn(send_loop(
            sink,
            frame,
            Arc::clone(&global),
            Arc::clone(&fifo),
            period,
        )));
        tasks.push(tokio::spawn(count_refusals(
            from_stream,
            Arc::clone(&refused),
        )));
        let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        receivers.push(Arc::clone(&histogram));
        tasks.push(tokio::spawn(receive_loop(
            to_stream,
            fifo,
            Arc::clone(&measuring),
            Arc::clone(&delivered),
            histogram,
        )));
        tasks.push(tokio::spawn(async move {
            let _keep = _unused_sink;
            std::future::pending::<()>().await
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    let start_count = delivered.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    tokio::time::sleep(seconds).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let count = delivered.load(Ordering::Relaxed) - start_count;
    let cpu = server.cpu_seconds()? - cpu_before;
    for task in &tasks {
        task.abort();
    }
    let mut histogram = Histogram::<u64>::new(3)?;
    for receiver in receivers {
        if let Ok(part) = receiver.lock() {
            histogram.add(&*part)?;
        }
    }
    drop(server);
    let lost = refused.load(Ordering::Relaxed);
    if lost > 0 {
        eprintln!("warning: {kind:?} refused {lost} frames");
    }
    Ok(Outcome {
        rate: count as f64 / elapsed.as_secs_f64(),
        p50_us: histogram.value_at_quantile(0.5) as f64,
        p99_us: histogram.value_at_quantile(0.99) as f64,
        rss_per_agent_kb,
        cpu_us_per_frame: cpu * 1e6 / count.max(1) as f64,
    })
}

async fn send_loop(
    mut sink: Sink,
    frame: Utf8Bytes,
    global: Arc<Semaphore>,
    fifo: Arc<Mutex<VecDeque<(Instant, OwnedSemaphorePermit, OwnedSemaphorePermit)>>>,
    period: Option<Duration>,
) {
    let window = Arc::new(Semaphore::new(PAIR_WINDOW));
    let mut ticker = period.map(|period| {
        // Pairs start spread over one period, so the paced load is even, not bursts.
        let offset = period.mul_f64(rand_fraction());
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let Ok(pair_permit) = Arc::clone(&window).acquire_owned().await else {
            return;
        };
        let Ok(global_permit) = Arc::clone(&global).acquire_owned().await else {
            return;
        };
        if let Ok(mut queue) = fifo.lock() {
            queue.push_back((Instant::now(), pair_permit, global_permit));
        }
        if sink.send(Message::Text(frame.clone())).await.is_err() {
            return;
        }
    }
}

async fn receive_loop(
    mut stream: Stream,
    fifo: Arc<Mutex<VecDeque<(Instant, OwnedSemaphorePermit, OwnedSemaphorePermit)>>>,
    measuring: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    histogram: Arc<Mutex<Histogram<u64>>>,
) {
    while let Some(Ok(message)) = stream.next().await {
        if !matches!(message, Message::Text(_)) {
            continue;
        }
        let sent = fifo.lock().ok().and_then(|mut q| q.pop_front());
        if let Some((at, _pair, _global)) = sent {
            delivered.fetch_add(1, Ordering::Relaxed);
            if measuring.load(Ordering::Relaxed)
                && let Ok(mut h) = histogram.lock()
            {
                let _ = h.record(at.elapsed().as_micros() as u64);
            }
        }
    }
}

async fn count_refusals(mut stream: Stream, refused: Arc<AtomicU64>) {
    while let Some(Ok(message)) = stream.next().await {
        if matches!(message, Message::Text(_)) {
            refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A fraction in [0, 1) from the clock's nanoseconds (spreading start times needs no more).
fn rand_fraction() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// A signed OFFER from `from` to `to` (the relayed frame of every benchmark).
pub fn offer(from: &Agent, to: &Agent) -> anyhow::Result<Utf8Bytes> {
    Ok(Envelope::new(
        from.identity.did(),
        Some(to.identity.did()),
        Body::Offer(SessionDescription {
            sdp: ioap_protocol::samples::example_sdp(),
        }),
        Timestamp::from_system_time(SystemTime::now()),
    )
    .sign(&from.identity)?
    .into_string()
    .into())
}
