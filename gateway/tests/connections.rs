//! Connections before the WebSocket upgrade (PROTOCOL_DESIGN.md §10, *Connections*): every
//! accepted socket counts against the limits and must upgrade within the deadline; `/health`
//! stays answerable at the limit; out of descriptors, the gateway serves again as soon as
//! descriptors are free.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ioap_protocol::CloseCode;
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A TCP connection from `source` (another loopback address stands for another client) that
/// never sends a byte.
async fn silent(gateway: SocketAddr, source: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(gateway).await
}

/// Waits until the gateway closes `stream` (EOF or reset); `None` if it did not within WAIT.
async fn closed_by_gateway(mut stream: TcpStream) -> Option<Instant> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => Some(Instant::now()),
        Ok(Ok(_)) => panic!("the gateway sent bytes to a socket that never asked"),
        Err(_) => None,
    }
}

async fn status(gateway: &ioap_gateway::RunningGateway, path: &str) -> u16 {
    http()
        .get(format!("{}{path}", gateway.http_url()))
        .send()
        .await
        .expect("http get")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sockets_that_never_upgrade_are_closed_by_the_deadline_and_block_no_one() {
    let deadline = Duration::from_secs(1);
    let gateway = start(|c| c.upgrade_timeout = deadline).await;
    let opened = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..1000 {
        sockets.push(
            silent(gateway.local_addr(), [127, 0, 0, 2])
                .await
                .expect("connect"),
        );
    }
    let mut honest = register(&gateway.ws_url()).await;
    assert_eq!(status(&gateway, "/health").await, 200);
    let closes = futures_util::future::join_all(sockets.into_iter().map(closed_by_gateway)).await;
    let open = closes.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} silent sockets were never closed");
    let last = closes.iter().flatten().max().expect("closes");
    assert!(
        *last - opened < deadline + Duration::from_secs(4),
        "the last closed {:?} after opening",
        *last - opened
    );
    honest.ping_gateway(1).await;
    let metrics = metrics_text(&gateway).await;
    let timed_out = metrics
        .lines()
        .find(|l| l.starts_with("ioap_gateway_refusals_total{reason=\"upgrade_timeout\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("refusal metric");
    assert!(timed_out >= 1000.0, "{timed_out}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_count_against_the_limit_and_health_is_answered_from_the_reserve() {
    let gateway = start(|c| {
        c.max_connections = 4;
        c.upgrade_timeout = Duration::from_secs(60);
    })
    .await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(
            silent(gateway.local_addr(), [127, 0, 0, 3])
                .await
                .expect("connect"),
        );
    }
    // The limit is full of sockets that never upgraded: a WebSocket gets 1013 ...
    let mut ws = connect(&gateway.ws_url()).await;
    assert_eq!(
        expect_close(&mut ws).await,
        Some(CloseCode::TryAgainLater.code())
    );
    // ... /health is still answered, and the rest of the API is not.
    assert_eq!(status(&gateway, "/health").await, 200);
    assert_eq!(status(&gateway, "/agents").await, 503);
    drop(sockets);
    // Their slots are free as soon as they close.
    let mut registered = None;
    for _ in 0..50 {
        let mut ws = connect(&gateway.ws_url()).await;
        match next_event(&mut ws).await {
            Event::Text(_) => {
                registered = Some(());
                break;
            }
            Event::Closed(_) => tokio::task::yield_now().await,
        }
    }
    assert!(registered.is_some(), "a slot never came free");
    register(&gateway.ws_url()).await.ping_gateway(1).await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_capped_and_the_others_are_not() {
    let gateway = start(|c| {
        c.max_connections_per_ip = 3;
        c.upgrade_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = gateway.local_addr();
    let mut held = Vec::new();
    for _ in 0..5 {
        // Three within the cap, two in the reserve (served /health only).
        held.push(silent(addr, [127, 0, 0, 4]).await.expect("connect"));
    }
    let refused = silent(addr, [127, 0, 0, 4]).await.expect("connect");
    let at = Instant::now();
    let closed = closed_by_gateway(refused).await.expect("refused at accept");
    assert!(
        closed - at < Duration::from_secs(2),
        "closed after {:?}",
        closed - at
    );
    register(&gateway.ws_url()).await.ping_gateway(1).await;
    drop(held);
    gateway.shutdown().await;
}

/// This process's CPU time, read from `stat` (opened beforehand: no descriptor is needed).
fn cpu_seconds(stat: &mut std::fs::File) -> f64 {
    use std::io::{Read, Seek};
    let mut text = String::new();
    stat.rewind().expect("rewind");
    stat.read_to_string(&mut text).expect("stat");
    let stat = text;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// With the descriptor limit lowered under the gateway until `accept` fails, the accept loop
/// backs off instead of spinning, and serves an honest agent as soon as descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_gateway_backs_off_and_serves_again_once_they_free_up() {
    let gateway = start(|c| {
        c.max_connections_per_ip = 0;
        c.upgrade_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stat = std::fs::File::open("/proc/self/stat").expect("stat");
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("limit");
    let open_now = std::fs::read_dir("/proc/self/fd").expect("fds").count() as u64;
    rlimit::Resource::NOFILE
        .set(open_now + 64, hard)
        .expect("lower the limit");
    let mut sockets = Vec::new();
    while let Ok(socket) = silent(gateway.local_addr(), [127, 0, 0, 5]).await {
        sockets.push(socket);
        assert!(sockets.len() < 64, "the descriptor limit was never reached");
    }
    // The gateway holds the rest of the descriptors; connections wait in the backlog.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu_before = cpu_seconds(&mut stat);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_seconds(&mut stat) - cpu_before;
    assert!(
        cpu < 0.5,
        "{cpu:.2} s of CPU in one second without descriptors: spinning"
    );
    drop(sockets);
    let served = tokio::time::timeout(WAIT, async {
        loop {
            // Descriptors come free as the gateway sees the silent sockets close.
            let mut request = gateway.ws_url().into_client_request().expect("request");
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static("ioap.v1"),
            );
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_millis(500),
                tokio_tungstenite::connect_async(request),
            )
            .await
            {
                return;
            }
        }
    })
    .await;
    rlimit::Resource::NOFILE
        .set(soft, hard)
        .expect("restore the limit");
    assert!(
        served.is_ok(),
        "not served again after descriptors came free"
    );
    register(&gateway.ws_url()).await.ping_gateway(1).await;
    gateway.shutdown().await;
}
