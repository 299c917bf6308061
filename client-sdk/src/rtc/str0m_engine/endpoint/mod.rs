//! The endpoint's loop: one UDP socket, one timer and every peer connection of an agent.
//! Datagrams find their connection by the ICE user name of a check, then by source address;
//! one that finds none yet (it came before its connection's offer or answer) waits briefly and
//! is tried again when connections change, rather than being lost to "no endpoint yet".

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::time::{Duration, Instant};

use str0m::Candidate as IceCandidate;
use str0m::net::Transmit;
use tokio::sync::mpsc;

mod batch;
mod datagrams;
mod schedule;

use datagrams::{EARLY_WAIT, Early, RECEIVE_BUFFER, send};
use schedule::{Schedule, wake_at};

use super::servers::{ServerSpec, Servers};
use super::slot::{Shared, Slot};
use super::{Command, Queued};
use crate::rtc::{CandidateKind, EVENT_BUFFER, IceServer, RtcError, RtcEvent, RtcSettings};

/// A timer that fires this late means a busy runtime, not a quiet peer.
const LATE: Duration = Duration::from_millis(100);
/// How often a link that does not keep up with its events is offered them again.
const BACKLOG_RETRY: Duration = Duration::from_millis(5);
/// The receive buffer asked for the engine's socket.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// The loop's state.
pub struct Endpoint {
    settings: RtcSettings,
    shared: Shared,
    socket: tokio::net::UdpSocket,
    udp: quinn_udp::UdpSocketState,
    wildcard: bool,
    hosts: Vec<SocketAddr>,
    servers: Servers,
    /// Boxed: a connection's state is kilobytes, and a map holds spare room for several.
    slots: HashMap<u64, Box<Slot>>,
    by_ufrag: HashMap<String, u64>,
    by_remote: HashMap<SocketAddr, u64>,
    timers: Schedule,
    /// Connections holding events their link has not taken yet.
    backlogged: BTreeSet<u64>,
    next_id: u64,
    early: VecDeque<Early>,
    commands: mpsc::Receiver<Queued>,
    to_self: mpsc::WeakSender<Queued>,
    out: Vec<Transmit>,
    /// Datagrams of `out` going out together.
    batch: batch::Batch,
}

impl Endpoint {
    /// Opens the socket (IPv4; loopback only if the settings say so) and lists the host
    /// candidates: every routable interface address on the socket's port.
    pub fn bind(
        settings: RtcSettings,
        commands: mpsc::Receiver<Queued>,
        to_self: mpsc::WeakSender<Queued>,
    ) -> Result<Endpoint, RtcError> {
        let shared = Shared::generate()?;
        let loopback_only = settings.loopback_only;
        let bind_ip = if loopback_only {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let std_socket = std::net::UdpSocket::bind((bind_ip, 0)).map_err(RtcError::new)?;
        std_socket.set_nonblocking(true).map_err(RtcError::new)?;
        let udp = quinn_udp::UdpSocketState::new((&std_socket).into()).map_err(RtcError::new)?;
        // Every link of the agent shares this socket, and a burst of a large message's pieces
        // overflows the default (≈ 208 KiB) receive buffer; each datagram lost there costs the
        // link a retransmission. Best effort: the kernel caps it at net.core.rmem_max.
        if let Err(e) = udp.set_recv_buffer_size((&std_socket).into(), SOCKET_BUFFER) {
            tracing::debug!(error = %e, "the engine's receive buffer stays at its default");
        }
        let port = std_socket.local_addr().map_err(RtcError::new)?.port();
        let socket = tokio::net::UdpSocket::from_std(std_socket).map_err(RtcError::new)?;
        let with_loopback = loopback_only || settings.loopback_candidates.unwrap_or(false);
        let hosts = if loopback_only {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]
        } else {
            if_addrs::get_if_addrs()
                .map_err(RtcError::new)?
                .into_iter()
                .map(|interface| interface.ip())
                .filter(|ip| ip.is_ipv4() && crate::rtc::routable_candidate(*ip))
                .filter(|ip| with_loopback || !ip.is_loopback())
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        };
        Ok(Endpoint {
            settings,
            shared,
            socket,
            udp,
            wildcard: !loopback_only,
            hosts,
            servers: Servers::default(),
            slots: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_remote: HashMap::new(),
            timers: Schedule::default(),
            backlogged: BTreeSet::new(),
            next_id: 0,
            early: VecDeque::new(),
            commands,
            to_self,
            out: Vec::new(),
            batch: batch::Batch::default(),
        })
    }

    /// Runs until every handle on the engine and its connections is gone.
    pub async fn run(mut self) {
        let mut sleep = pin!(tokio::time::sleep_until(self.next_wake().into()));
        loop {
            let wake = self.next_wake().into();
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(*command),
                    None => break,
                },
                readable = self.socket.readable() => {
                    if let Err(e) = readable {
                        tracing::warn!(error = %e, "the engine's socket failed");
                        break;
                    }
                    RECEIVE_BUFFER.with_borrow_mut(|buf| self.read(buf, false));
                }
                () = &mut sleep => {
                    let late = Instant::now().saturating_duration_since(sleep.deadline().into_std());
                    if late > LATE {
                        // A busy runtime ran this loop late: what the peers sent meanwhile
                        // counts before their silence is judged.
                        RECEIVE_BUFFER.with_borrow_mut(|buf| self.read(buf, true));
                    }
                    self.on_timers(Instant::now());
                }
            }
            self.transmit();
        }
        for slot in self.slots.values_mut() {
            slot.close();
        }
        for (server, release) in self.servers.release() {
            send(&self.socket, &self.udp, server, None, &release);
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let timers = self.timers.first().map(|at| wake_at(at, Instant::now()));
        let servers = self.servers.deadline();
        let early = self.early.front().map(|e| e.at + EARLY_WAIT);
        let backlog = (!self.backlogged.is_empty()).then(|| Instant::now() + BACKLOG_RETRY);
        [timers, servers, early, backlog]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::NewPeer { ice_servers, reply } => {
                let _ = reply.send(self.new_peer(&ice_servers, now));
                self.replay_early(now);
            }
            Command::Offer { peer, reply } => {
                let _ = reply.send(self.with_slot(peer, now, |s, now, out| s.offer(now, out)));
            }
            Command::Answer { peer, offer, reply } => {
                let answer = self.with_slot(peer, now, |s, now, out| s.answer(&offer, now, out));
                let _ = reply.send(answer);
                self.replay_early(now);
            }
            Command::AcceptAnswer {
                peer,
                answer,
                reply,
            } => {
                let done =
                    self.with_slot(peer, now, |s, now, out| s.accept_answer(&answer, now, out));
                let _ = reply.send(done);
                self.replay_early(now);
            }
            Command::AddCandidate {
                peer,
                candidate,
                reply,
            } => {
                let done =
                    self.with_slot(peer, now, |s, now, out| s.add_remote(&candidate, now, out));
                let _ = reply.send(done);
                self.replay_early(now);
            }
            Command::Send { peer, text, reply } => match self.slots.get_mut(&peer) {
                Some(slot) => {
                    slot.send(text, reply, now, &mut self.out);
                    self.settle(peer);
                }
                None => {
                    let _ = reply.send(Err(gone()));
                }
            },
            Command::Path { peer, reply } => {
                let _ = reply.send(self.slots.get(&peer).and_then(|slot| slot.path()));
            }
            Command::Close { peer } => {
                if let Some(slot) = self.slots.get_mut(&peer) {
                    slot.close();
                    self.settle(peer);
                }
            }
            Command::Resolved { server, addr } => match addr {
                Some(addr) => self.ask_at(addr, &server, now),
                None => {
                    tracing::debug!(server = %server.authority, "STUN/TURN server did not resolve");
                }
            },
        }
    }

    fn new_peer(
        &mut self,
        ice_servers: &[IceServer],
        now: Instant,
    ) -> Result<(u64, mpsc::Receiver<RtcEvent>), RtcError> {
        let specs: Vec<ServerSpec> =
            self.settings
                .ice_servers
                .iter()
                .chain(ice_servers)
                .flat_map(|server| {
                    server.urls.iter().filter_map(|url| {
                        ServerSpec::parse(url, &server.username, &server.credential)
                    })
                })
                .collect();
        for spec in specs {
            self.ask_server(spec, now);
        }
        let credentials = str0m::IceCreds {
            ufrag: super::random_token(16)?,
            pass: super::random_token(24)?,
        };
        let mut local: Vec<(IceCandidate, CandidateKind)> = Vec::new();
        for host in &self.hosts {
            if let Ok(candidate) = IceCandidate::host(*host, "udp") {
                local.push((candidate, CandidateKind::Host));
            }
        }
        local.extend(self.servers.candidates().iter().cloned());
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let slot = Slot::new(
            &self.settings,
            &self.shared,
            credentials,
            &local,
            events,
            now,
        );
        let id = self.next_id;
        self.next_id += 1;
        self.by_ufrag.insert(slot.ufrag().to_owned(), id);
        self.timers.set(id, slot.deadline());
        self.slots.insert(id, Box::new(slot));
        Ok((id, receiver))
    }

    /// Asks a STUN or TURN server (TURN servers answer Binding too) for this socket's outside
    /// address, and a TURN server for a relayed one, unless it was asked lately.
    fn ask_server(&mut self, spec: ServerSpec, now: Instant) {
        if !self.servers.should_ask(&spec, now) {
            return;
        }
        if let Ok(addr) = spec.authority.parse::<SocketAddr>() {
            self.ask_at(addr, &spec, now);
            return;
        }
        let Some(to_self) = self.to_self.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let lookup = tokio::net::lookup_host(spec.authority.clone());
            let addr = match tokio::time::timeout(Duration::from_secs(2), lookup).await {
                Ok(Ok(mut addrs)) => addrs.find(SocketAddr::is_ipv4),
                _ => None,
            };
            let _ = to_self
                .send(Box::new(Command::Resolved { server: spec, addr }))
                .await;
        });
    }

    fn ask_at(&mut self, addr: SocketAddr, spec: &ServerSpec, now: Instant) {
        if !addr.is_ipv4() || self.settings.loopback_only && !addr.ip().is_loopback() {
            return;
        }
        let mut id = [0u8; 12];
        if getrandom::fill(&mut id).is_ok() {
            self.servers.ask(addr, spec, id, now);
        }
    }

    /// Runs `f` on a connection, then reschedules it (and forgets it if it ended).
    fn with_slot<T>(
        &mut self,
        peer: u64,
        now: Instant,
        f: impl FnOnce(&mut Slot, Instant, &mut Vec<Transmit>) -> Result<T, RtcError>,
    ) -> Result<T, RtcError> {
        let slot = self.slots.get_mut(&peer).ok_or_else(gone)?;
        let result = f(slot, now, &mut self.out);
        self.settle(peer);
        result
    }

    /// After a connection changed: its timer, or its removal if it ended.
    fn settle(&mut self, peer: u64) {
        let Some(slot) = self.slots.get(&peer) else {
            return;
        };
        if slot.is_dead() {
            self.timers.remove(peer);
            self.backlogged.remove(&peer);
            if let Some(slot) = self.slots.remove(&peer) {
                self.by_ufrag.remove(slot.ufrag());
            }
            self.by_remote.retain(|_, id| *id != peer);
        } else {
            self.timers.set(peer, slot.deadline());
            if slot.has_backlog() {
                self.backlogged.insert(peer);
            } else {
                self.backlogged.remove(&peer);
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        for peer in self.timers.due(now) {
            if let Some(slot) = self.slots.get_mut(&peer) {
                slot.handle_timeout(now, &mut self.out);
                self.settle(peer);
            }
        }
        if !self.early.is_empty() {
            self.replay_early(now);
        }
        let backlogged: Vec<u64> = self.backlogged.iter().copied().collect();
        for peer in backlogged {
            if let Some(slot) = self.slots.get_mut(&peer) {
                slot.flush_events();
            }
            self.settle(peer);
        }
        self.servers.handle_timeout(now);
        self.share_candidates();
        while self
            .early
            .front()
            .is_some_and(|e| now.duration_since(e.at) >= EARLY_WAIT)
        {
            self.early.pop_front();
            tracing::debug!("a datagram for no known connection expired");
        }
    }

    /// Hands the candidates the servers told of to every connection.
    fn share_candidates(&mut self) {
        while let Some((candidate, kind)) = self.servers.poll_candidate() {
            let peers: Vec<u64> = self.slots.keys().copied().collect();
            for peer in peers {
                if let Some(slot) = self.slots.get_mut(&peer) {
                    slot.add_local(candidate.clone(), kind);
                }
                self.settle(peer);
            }
        }
    }
}

fn gone() -> RtcError {
    RtcError::new("the peer connection is closed")
}
