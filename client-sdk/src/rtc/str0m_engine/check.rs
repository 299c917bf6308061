//! `check_ice_servers` for the str0m engine: each STUN server asked for this host's outside
//! address, each TURN server for an allocation (released at once), over a socket of the
//! check's own, with the same sans-IO clients the engine uses.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::servers::ServerSpec;
use super::stun::SrflxProbe;
use super::turn::{TurnClient, TurnEvent};

/// How long one server has to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the server at `url` works from here: what it said, or why not.
pub async fn check_url(url: &str, username: &str, credential: &str) -> Result<String, String> {
    if url.starts_with("turns:") || url.contains("transport=tcp") {
        return Err("TURN over TCP or TLS is not supported by this engine".into());
    }
    let spec = ServerSpec::parse(url, username, credential).ok_or("not a STUN or TURN URL")?;
    if url.starts_with("turn:") && spec.turn.is_none() {
        return Err("a TURN server needs a user name and credential".into());
    }
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let lookup = tokio::net::lookup_host(spec.authority.clone());
    let server = tokio::time::timeout_at(deadline.into(), lookup)
        .await
        .map_err(|_| "the server's name did not resolve in time".to_owned())?
        .map_err(|e| format!("cannot resolve {}: {e}", spec.authority))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{} has no IPv4 address", spec.authority))?;
    let socket = UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    let outcome = match spec.turn {
        Some((username, password)) => {
            let client = TurnClient::new(server, username, password, Instant::now());
            allocate(&socket, client, deadline).await
        }
        None => binding(&socket, server, deadline).await,
    };
    outcome.map_err(|e| e.unwrap_or_else(|| format!("no answer within {CHECK_TIMEOUT:?}")))
}

/// Receives one datagram from `server` before `deadline` (`None`: the time is up).
async fn receive(socket: &UdpSocket, server: SocketAddr, until: Instant) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    loop {
        let received = tokio::time::timeout_at(until.into(), socket.recv_from(&mut buf)).await;
        match received {
            Ok(Ok((len, from))) if from == server => return Some(buf[..len].to_vec()),
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

async fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
    deadline: Instant,
) -> Result<String, Option<String>> {
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).map_err(|e| Some(e.to_string()))?;
    let mut probe = SrflxProbe::new(server, id, Instant::now());
    while !probe.is_done() && Instant::now() < deadline {
        if let Some(request) = probe.poll_transmit(Instant::now()) {
            let _ = socket.send_to(&request, server).await;
        }
        let until = probe.deadline().unwrap_or(deadline).min(deadline);
        if let Some(datagram) = receive(socket, server, until).await
            && let Some(mapped) = probe.handle(server, &datagram)
        {
            return Ok(format!("public address {mapped}"));
        }
    }
    Err(None)
}

async fn allocate(
    socket: &UdpSocket,
    mut client: TurnClient,
    deadline: Instant,
) -> Result<String, Option<String>> {
    while Instant::now() < deadline {
        while let Some(datagram) = client.poll_transmit() {
            let _ = socket.send_to(&datagram, client.server()).await;
        }
        match client.poll_event() {
            Some(TurnEvent::Allocated { relayed, .. }) => {
                if let Some(release) = client.release() {
                    let _ = socket.send_to(&release, client.server()).await;
                }
                return Ok(format!("relay {relayed}"));
            }
            Some(TurnEvent::Failed(reason)) => return Err(Some(reason)),
            None => {}
        }
        let until = client.deadline().unwrap_or(deadline).min(deadline);
        match receive(socket, client.server(), until).await {
            Some(datagram) => {
                client.handle_datagram(&datagram, Instant::now());
            }
            None => client.handle_timeout(Instant::now()),
        }
    }
    Err(None)
}
