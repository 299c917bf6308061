//! Spike (issue #12, run: `cargo run --release -- SETUPS PAIRS SECONDS`): str0m (sans-IO) data channels between two "agents", each with ONE UDP
//! socket for all its links, driven by one loop. Measures setup latency over sequential
//! setups, then idle CPU and RSS per link while N links are held open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

struct Link {
    rtc: Rtc,
    next: Instant,
    open: bool,
    channel: Option<ChannelId>,
}

struct Side {
    socket: UdpSocket,
    addr: SocketAddr,
    links: Vec<Link>,
}

impl Side {
    async fn new() -> Side {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        Side {
            socket,
            addr,
            links: Vec::new(),
        }
    }

    fn rtc(&self, now: Instant) -> Rtc {
        let mut rtc = Rtc::builder().build(now);
        rtc.add_local_candidate(Candidate::host(self.addr, "udp").unwrap());
        rtc
    }

    /// Drains link i's output: transmits, events; returns when it asks for a timeout.
    fn drain(&mut self, i: usize) {
        let link = &mut self.links[i];
        loop {
            match link.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    link.next = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::ChannelOpen(id, _))) => {
                    link.open = true;
                    link.channel = Some(id);
                }
                Ok(Output::Event(_)) => {}
                Err(e) => panic!("rtc: {e}"),
            }
        }
    }

    fn on_timeouts(&mut self, now: Instant) {
        for i in 0..self.links.len() {
            if self.links[i].next <= now {
                self.links[i].rtc.handle_input(Input::Timeout(now)).unwrap();
                self.drain(i);
            }
        }
    }

    fn on_packet(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        );
        if let Some(i) = self.links.iter().position(|l| l.rtc.accepts(&input)) {
            self.links[i].rtc.handle_input(input).unwrap();
            self.drain(i);
        }
    }

    fn next(&self) -> Option<Instant> {
        self.links.iter().map(|l| l.next).min()
    }
}

/// One turn of the loop: wait for a packet on either socket or the next timeout.
async fn turn(a: &mut Side, b: &mut Side, buf_a: &mut [u8], buf_b: &mut [u8]) {
    let next = [a.next(), b.next()]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
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
            a.on_timeouts(now);
            b.on_timeouts(now);
        }
    }
}

/// Sets up one link from a to b; returns how long until both channels opened.
async fn setup(a: &mut Side, b: &mut Side, buf_a: &mut [u8], buf_b: &mut [u8]) -> Duration {
    let start = Instant::now();
    let mut l = a.rtc(start);
    let mut r = b.rtc(start);
    let mut change = l.sdp_api();
    let cid = change.add_channel("ioap.v1".into());
    let (offer, pending) = change.apply().unwrap();
    let answer = r.sdp_api().accept_offer(offer).unwrap();
    l.sdp_api().accept_answer(pending, answer).unwrap();
    a.links.push(Link {
        rtc: l,
        next: start,
        open: false,
        channel: Some(cid),
    });
    b.links.push(Link {
        rtc: r,
        next: start,
        open: false,
        channel: None,
    });
    let (ia, ib) = (a.links.len() - 1, b.links.len() - 1);
    a.drain(ia);
    b.drain(ib);
    while !(a.links[ia].open && b.links[ib].open) {
        turn(a, b, buf_a, buf_b).await;
        assert!(start.elapsed() < Duration::from_secs(10), "setup stalled");
    }
    start.elapsed()
}

/// One agent's loop: its socket, its links' timers.
async fn run_side(
    mut side: Side,
    alive: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut buf = vec![0u8; 2048];
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let next = side
            .next()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            () = &mut stopped => break,
            r = side.socket.recv_from(&mut buf) => {
                let (n, src) = r.unwrap();
                let data = buf[..n].to_vec();
                side.on_packet(Instant::now(), src, &data);
            }
            () = tokio::time::sleep_until(next.into()) => side.on_timeouts(Instant::now()),
        }
    }
    if side.links.iter().all(|l| l.rtc.is_alive()) {
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
    str0m::crypto::from_feature_flags().install_process_default();
    let args: Vec<String> = std::env::args().collect();
    let setups: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let idle_pairs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let idle_secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);

    // 1. Sequential setups on fresh sides (links dropped after each).
    let mut a = Side::new().await;
    let mut b = Side::new().await;
    let mut times = Vec::new();
    for _ in 0..setups {
        times.push(setup(&mut a, &mut b, &mut buf_a, &mut buf_b).await);
        a.links.clear();
        b.links.clear();
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

    // 2. Idle links: each link between two agents of its own, each agent one socket and one
    // task (its loop), both ends in this process.
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
