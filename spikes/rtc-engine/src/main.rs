//! Spike (issue #12, run: `cargo run --release -- SETUPS PAIRS SECONDS`): webrtc-rs's sans-IO
//! `rtc` data channels between two "agents", each with ONE UDP socket and one loop, the same
//! measurements as `../str0m-engine`: setup latency over sequential setups, then idle CPU and
//! RSS per link while N links are held open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;

struct Side {
    socket: UdpSocket,
    addr: SocketAddr,
    pc: Option<RTCPeerConnection>,
    open: bool,
    failed: bool,
}

impl Side {
    async fn new() -> Side {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        Side {
            socket,
            addr,
            pc: None,
            open: false,
            failed: false,
        }
    }

    fn candidate(&self) -> RTCIceCandidateInit {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.addr.ip().to_string(),
                port: self.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        RTCIceCandidate::from(&candidate).to_json().unwrap()
    }

    fn drain(&mut self) {
        let Some(pc) = self.pc.as_mut() else { return };
        while let Some(out) = pc.poll_write() {
            let data: BytesMut = out.message;
            let _ = self.socket.try_send_to(&data, out.transport.peer_addr);
        }
        while let Some(event) = pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) => {
                    self.open = true;
                }
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state)
                    if state == RTCPeerConnectionState::Failed =>
                {
                    self.failed = true;
                }
                _ => {}
            }
        }
        while pc.poll_read().is_some() {}
    }

    fn next(&mut self) -> Option<Instant> {
        self.pc.as_mut().and_then(|pc| pc.poll_timeout())
    }

    fn on_timeout(&mut self, now: Instant) {
        if let Some(pc) = self.pc.as_mut() {
            pc.handle_timeout(now).unwrap();
        }
        self.drain();
    }

    fn on_packet(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let local_addr = self.addr;
        if let Some(pc) = self.pc.as_mut() {
            let _ = pc.handle_read(TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr,
                    peer_addr: source,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(data),
            });
        }
        self.drain();
    }
}

async fn turn(a: &mut Side, b: &mut Side, buf_a: &mut [u8], buf_b: &mut [u8]) {
    let far = Instant::now() + Duration::from_secs(1);
    let next = [a.next(), b.next()]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
        .max(Instant::now());
    tokio::select! {
        r = a.socket.recv_from(buf_a) => {
            let (n, src) = r.unwrap();
            let data = buf_a[..n].to_vec();
            a.on_packet(Instant::now(), src, &data);
        }
        r = b.socket.recv_from(buf_b) => {
            let (n, src) = r.unwrap();
            let data = buf_b[..n].to_vec();
            b.on_packet(Instant::now(), src, &data);
        }
        () = tokio::time::sleep_until(next.into()) => {
            let now = Instant::now();
            a.on_timeout(now);
            b.on_timeout(now);
        }
    }
}

async fn setup(a: &mut Side, b: &mut Side, buf_a: &mut [u8], buf_b: &mut [u8]) -> Duration {
    let start = Instant::now();
    // The same ICE tuning as ioap's webrtc-rs 0.17 engine: accept the first working pair.
    let build = || {
        let settings = SettingEngineBuilder::new()
            .with_host_acceptance_min_wait(Some(Duration::ZERO))
            .with_srflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_ice_connection_attempts(Some(check_interval()), None)
            .build();
        RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .build(start)
            .unwrap()
    };
    let (mut l, mut r) = (build(), build());
    let _ = l.create_data_channel("ioap.v1", None).unwrap();
    let offer = l.create_offer(None).unwrap();
    l.set_local_description(start, offer.clone()).unwrap();
    l.add_local_candidate(a.candidate()).unwrap();
    r.set_remote_description(start, offer).unwrap();
    r.add_local_candidate(b.candidate()).unwrap();
    let answer = r.create_answer(None).unwrap();
    r.set_local_description(start, answer.clone()).unwrap();
    l.set_remote_description(start, answer).unwrap();
    l.add_remote_candidate(b.candidate()).unwrap();
    r.add_remote_candidate(a.candidate()).unwrap();
    a.pc = Some(l);
    b.pc = Some(r);
    a.open = false;
    b.open = false;
    a.drain();
    b.drain();
    while !(a.open && b.open) {
        turn(a, b, buf_a, buf_b).await;
        assert!(start.elapsed() < Duration::from_secs(10), "setup stalled");
        assert!(!a.failed && !b.failed, "setup failed");
    }
    start.elapsed()
}

/// ICE's pause between connectivity checks: `RTC_CHECK_INTERVAL_MS` (default: the crate's
/// 200 ms).
fn check_interval() -> Duration {
    let ms = std::env::var("RTC_CHECK_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    Duration::from_millis(ms)
}

async fn run_side(
    mut side: Side,
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut buf = vec![0u8; 2048];
    let stopped = stop.notified();
    tokio::pin!(stopped);
    let mut failed = false;
    loop {
        let far = Instant::now() + Duration::from_secs(1);
        let next = side.next().unwrap_or(far).max(Instant::now());
        tokio::select! {
            () = &mut stopped => break,
            r = side.socket.recv_from(&mut buf) => {
                let (n, src) = r.unwrap();
                let data = buf[..n].to_vec();
                side.on_packet(Instant::now(), src, &data);
            }
            () = tokio::time::sleep_until(next.into()) => side.on_timeout(Instant::now()),
        }
        failed |= side.failed;
    }
    if !failed {
        alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, spike());
}

async fn spike() {
    let args: Vec<String> = std::env::args().collect();
    let setups: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let idle_pairs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let idle_secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);

    let mut a = Side::new().await;
    let mut b = Side::new().await;
    let mut times = Vec::new();
    for _ in 0..setups {
        times.push(setup(&mut a, &mut b, &mut buf_a, &mut buf_b).await);
        a.pc = None;
        b.pc = None;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let q = |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "setup over {setups}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(q(0.5)),
        ms(q(0.95)),
        ms(q(0.99)),
        ms(q(1.0))
    );

    drop((a, b));
    let rss_before = rss_kib();
    let started = Instant::now();
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..idle_pairs {
        let mut a = Side::new().await;
        let mut b = Side::new().await;
        setup(&mut a, &mut b, &mut buf_a, &mut buf_b).await;
        for side in [a, b] {
            let (alive, stop) = (alive.clone(), stop.clone());
            tasks.push(tokio::task::spawn_local(run_side(side, alive, stop)));
        }
    }
    println!(
        "{idle_pairs} links opened in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rss_after = rss_kib();
    let cpu_before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu = cpu_seconds() - cpu_before;
    stop.notify_waiters();
    for task in tasks {
        let _ = task.await;
    }
    let still_open = alive.load(std::sync::atomic::Ordering::Relaxed) / 2;
    println!(
        "idle {idle_pairs} links for {idle_secs} s: CPU {:.3} s = {:.4} ms per link per second (both ends); \
         RSS +{} KiB = {:.1} KiB per link (both ends); alive {still_open}",
        cpu,
        cpu * 1e3 / (idle_pairs as f64 * idle_secs as f64),
        rss_after - rss_before,
        (rss_after - rss_before) as f64 / idle_pairs as f64,
    );
}
