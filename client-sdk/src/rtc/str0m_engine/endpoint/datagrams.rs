//! The endpoint's datagrams: reading the socket, finding each datagram's connection (by the
//! ICE user name of a check, then by source address), keeping those that came before their
//! connection, and sending what the connections and servers produce.

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use tokio::io::Interest;

use super::Endpoint;
use super::batch::Batch;
use crate::rtc::str0m_engine::servers::FromServer;
use crate::rtc::str0m_engine::slot::Slot;
use crate::rtc::str0m_engine::stun::check_username;

/// Datagrams kept for a connection that does not exist yet …
const EARLY_DATAGRAMS: usize = 256;
/// … and for how long.
pub(super) const EARLY_WAIT: Duration = Duration::from_secs(2);
/// Socket reads per wake before commands and timers get their turn.
const READS_PER_WAKE: usize = 64;

thread_local! {
    /// One receive buffer per worker thread, shared by every endpoint it runs (reading never
    /// awaits): 64 KiB holds the largest datagram or GRO batch, and an agent does not carry
    /// one of its own.
    pub(super) static RECEIVE_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 1 << 16]);
}

/// A datagram that came before its connection.
pub(super) struct Early {
    pub(super) at: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: Vec<u8>,
}

impl Endpoint {
    /// Reads what the socket holds (at most [`READS_PER_WAKE`] datagrams). `asked_anyway`:
    /// ask the kernel even if the runtime has not yet reported the socket readable (a loop
    /// that woke late takes in what came meanwhile before it judges any silence).
    pub(super) fn read(&mut self, buf: &mut [u8], asked_anyway: bool) {
        for _ in 0..READS_PER_WAKE {
            let mut meta = [quinn_udp::RecvMeta::default()];
            let mut recv = || {
                self.udp.recv(
                    (&self.socket).into(),
                    &mut [IoSliceMut::new(buf)],
                    &mut meta,
                )
            };
            let received = if asked_anyway {
                recv()
            } else {
                self.socket.try_io(Interest::READABLE, recv)
            };
            match received {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "receive failed");
                    return;
                }
            }
            let meta = meta[0];
            let port = self.hosts.first().map_or(0, SocketAddr::port);
            let local_ip = meta.dst_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let destination = SocketAddr::new(local_ip, port);
            let now = Instant::now();
            for datagram in buf[..meta.len].chunks(meta.stride.max(1)) {
                self.on_datagram(now, meta.addr, destination, datagram);
            }
        }
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let delivered = match self.servers.handle(source, destination, data, now) {
            FromServer::Taken => {
                self.share_candidates();
                true
            }
            FromServer::Relayed {
                peer,
                relayed,
                data,
            } => {
                if !self.deliver(now, peer, relayed, &data) {
                    self.keep_early(now, peer, relayed, &data);
                }
                true
            }
            FromServer::NotMine => self.deliver(now, source, destination, data),
        };
        if !delivered {
            self.keep_early(now, source, destination, data);
        } else if !self.early.is_empty() {
            // A connection moved on (ICE found its pair): what it refused a moment ago, such
            // as a DTLS hello that outran the check, may be its now.
            self.replay_early(now);
        }
    }

    /// Keeps a datagram that found no connection (yet) for a while.
    pub(super) fn keep_early(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if self.early.len() >= EARLY_DATAGRAMS {
            self.early.pop_front();
            tracing::debug!("too many datagrams for no known connection; the oldest dropped");
        }
        self.early.push_back(Early {
            at: now,
            source,
            destination,
            data: data.to_vec(),
        });
    }

    /// Hands a datagram to its connection; false if none takes it.
    fn deliver(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            return true; // Not WebRTC at all: nobody's, and not worth keeping.
        };
        let input = str0m::Input::Receive(now, receive);
        let hello = is_client_hello(data);
        let by_name = check_username(data)
            .and_then(|ufrag| self.by_ufrag.get(ufrag))
            .copied();
        let by_address = self.by_remote.get(&source).copied();
        let found = by_name
            .or(by_address)
            .filter(|id| self.slots.get(id).is_some_and(|s| takes(s, &input, hello)))
            .or_else(|| {
                self.slots
                    .iter()
                    .find(|(_, s)| takes(s, &input, hello))
                    .map(|(id, _)| *id)
            });
        let (Some(peer), str0m::Input::Receive(_, receive)) = (found, input) else {
            return false;
        };
        let previous = self.by_remote.insert(source, peer);
        if let Some(slot) = self.slots.get_mut(&peer) {
            slot.handle_receive(now, receive, &mut self.out);
        }
        self.settle(peer);
        // One socket per agent: a check naming a new connection from an address an older
        // connection used means the peer behind it moved on (a re-dial, or a new agent on a
        // reused port); the older one would otherwise take the new one's DTLS.
        if let Some(old) = previous.filter(|old| *old != peer && by_name == Some(peer)) {
            if let Some(slot) = self.slots.get_mut(&old) {
                slot.superseded();
            }
            self.settle(old);
        }
        true
    }

    pub(super) fn replay_early(&mut self, now: Instant) {
        for early in std::mem::take(&mut self.early) {
            if !self.deliver(now, early.source, early.destination, &early.data) {
                self.early.push_back(early);
            }
        }
    }

    /// Sends what the connections and servers produced: consecutive datagrams to one
    /// destination in one system call where the socket offloads segmentation.
    pub(super) fn transmit(&mut self) {
        let now = Instant::now();
        let max_segments = self.udp.max_gso_segments();
        for transmit in self.out.drain(..) {
            let (source, destination) = (transmit.source, transmit.destination);
            match self
                .servers
                .relay(source, destination, &transmit.contents, now)
            {
                Some(true) => {}
                Some(false) => tracing::debug!(%destination, "the TURN relay refused a datagram"),
                None => {
                    let route = (destination, self.wildcard.then_some(source.ip()));
                    if !self.batch.add(route, &transmit.contents, max_segments) {
                        send_batch(&self.socket, &self.udp, &mut self.batch);
                        self.batch.add(route, &transmit.contents, max_segments);
                    }
                }
            }
        }
        send_batch(&self.socket, &self.udp, &mut self.batch);
        while let Some((server, datagram)) = self.servers.poll_transmit(now) {
            send(&self.socket, &self.udp, server, None, &datagram);
        }
    }
}

/// Whether `slot` takes a datagram. A DTLS ClientHello starts a new association, so one from
/// the address of a connection whose channel is open belongs to a newer connection (a re-dial,
/// or a new agent on a reused port) that ICE has not matched yet: it waits among the early
/// datagrams rather than being swallowed by the old one (which cost a 250 ms retransmission).
fn takes(slot: &Slot, input: &str0m::Input, hello: bool) -> bool {
    slot.accepts(input) && !(hello && slot.is_established())
}

/// A DTLS ClientHello: a handshake record of epoch 0 whose message is `client_hello`
/// (RFC 6347 §4.1, §4.2.2).
fn is_client_hello(datagram: &[u8]) -> bool {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    datagram.len() > 13
        && datagram[0] == HANDSHAKE
        && datagram[3..5] == [0, 0]
        && datagram[13] == CLIENT_HELLO
}

/// Sends one datagram; UDP may lose it anyway, so a full socket buffer only costs a
/// retransmission (ICE, DTLS and SCTP all retransmit).
pub(super) fn send(
    socket: &tokio::net::UdpSocket,
    udp: &quinn_udp::UdpSocketState,
    destination: SocketAddr,
    source: Option<IpAddr>,
    contents: &[u8],
) {
    send_segments(socket, udp, destination, source, contents, None);
}

/// Sends what `batch` holds, if anything.
fn send_batch(socket: &tokio::net::UdpSocket, udp: &quinn_udp::UdpSocketState, batch: &mut Batch) {
    if let Some(ready) = batch.take() {
        let (to, from) = (ready.destination, ready.source);
        send_segments(socket, udp, to, from, ready.contents, ready.segment_size);
    }
}

/// Sends `contents` as datagrams of `segment_size` bytes (the last may be shorter), or as one.
fn send_segments(
    socket: &tokio::net::UdpSocket,
    udp: &quinn_udp::UdpSocketState,
    destination: SocketAddr,
    source: Option<IpAddr>,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    let transmit = quinn_udp::Transmit {
        destination,
        ecn: None,
        contents,
        segment_size,
        src_ip: source.filter(|ip| !ip.is_unspecified()),
    };
    if let Err(e) = udp.try_send(socket.into(), &transmit) {
        tracing::debug!(error = %e, %destination, "datagrams not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::is_client_hello;

    #[test]
    fn a_client_hello_is_told_from_other_dtls_records() {
        // Record header: handshake (22), DTLS 1.2 (254 253), epoch, sequence, length; then the
        // handshake header's type.
        let mut hello = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1];
        hello.resize(54, 0);
        assert!(is_client_hello(&hello));
        let mut server_hello = hello.clone();
        server_hello[13] = 2;
        assert!(!is_client_hello(&server_hello));
        let mut later_epoch = hello.clone();
        later_epoch[4] = 1;
        assert!(
            !is_client_hello(&later_epoch),
            "encrypted, not a new association"
        );
        let mut application = hello.clone();
        application[0] = 23;
        assert!(!is_client_hello(&application));
        assert!(!is_client_hello(&hello[..13]));
    }
}
