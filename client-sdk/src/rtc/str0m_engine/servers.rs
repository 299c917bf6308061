//! The agent's STUN and TURN servers, shared by all its peer connections: STUN Binding for
//! the server-reflexive address, one TURN allocation per server and credential for the
//! relayed one. Sans-IO; the endpoint's loop carries datagrams and time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::Candidate as IceCandidate;

use super::stun::SrflxProbe;
use super::turn::{TurnClient, TurnEvent};
use crate::rtc::CandidateKind;

/// A server is asked again for the outside address after this long (a failed allocation is
/// retried after as long).
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Servers remembered (they come from settings and gateways: few).
const SERVERS_REMEMBERED: usize = 64;

/// A server to ask, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `host:port` (the port defaults to 3478).
    pub authority: String,
    /// TURN credentials; `None` for STUN (or a TURN URL the engine cannot use for relaying).
    pub turn: Option<(String, String)>,
}

impl ServerSpec {
    /// `stun:` and `turn:` (UDP) URLs; `turns:` and `?transport=tcp` are not spoken here
    /// (the server is still asked for the outside address when it is a `turn:` URL).
    pub fn parse(url: &str, username: &str, credential: &str) -> Option<ServerSpec> {
        let (rest, is_turn) = if let Some(rest) = url.strip_prefix("stun:") {
            (rest, false)
        } else {
            (url.strip_prefix("turn:")?, true)
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let udp = !query
            .split('&')
            .any(|p| p.eq_ignore_ascii_case("transport=tcp"));
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:3478")
        };
        let turn = (is_turn && udp && !username.is_empty())
            .then(|| (username.to_owned(), credential.to_owned()));
        Some(ServerSpec { authority, turn })
    }
}

/// What a datagram from a server was.
#[derive(Debug, PartialEq, Eq)]
pub enum FromServer {
    /// Not a server's (or not this side's business): a peer's datagram.
    NotMine,
    /// A server's answer, taken.
    Taken,
    /// Data a peer sent to a relayed address.
    Relayed {
        /// The peer.
        peer: SocketAddr,
        /// The relayed address it was sent to (the candidate's address).
        relayed: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
}

/// The servers and what they told.
#[derive(Debug, Default)]
pub struct Servers {
    asked: HashMap<String, Instant>,
    probes: Vec<SrflxProbe>,
    turns: Vec<TurnClient>,
    /// Local candidates learned (server-reflexive and relayed), with their kinds.
    candidates: Vec<(IceCandidate, CandidateKind)>,
    /// Those not yet handed to the peer connections.
    fresh: VecDeque<(IceCandidate, CandidateKind)>,
    /// The host address each TURN server is reached from, once it answered.
    bases: HashMap<SocketAddr, SocketAddr>,
}

impl Servers {
    /// Whether `spec` should be asked now (not asked lately, room to remember it).
    pub fn should_ask(&mut self, spec: &ServerSpec, now: Instant) -> bool {
        let key = Self::key(spec);
        if self
            .asked
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN_AFTER)
        {
            return false;
        }
        if self.asked.len() >= SERVERS_REMEMBERED {
            self.asked
                .retain(|_, at| now.duration_since(*at) < ASK_AGAIN_AFTER);
            if self.asked.len() >= SERVERS_REMEMBERED {
                return false;
            }
        }
        self.asked.insert(key, now);
        true
    }

    fn key(spec: &ServerSpec) -> String {
        match &spec.turn {
            Some((user, _)) => format!("{}#{user}", spec.authority),
            None => spec.authority.clone(),
        }
    }

    /// Asks the server at `addr`: a Binding, and an allocation if it is TURN (unless one with
    /// these credentials is alive).
    pub fn ask(&mut self, addr: SocketAddr, spec: &ServerSpec, id: [u8; 12], now: Instant) {
        self.probes.retain(|p| !p.is_done() && p.server() != addr);
        self.probes.push(SrflxProbe::new(addr, id, now));
        if let Some((username, password)) = &spec.turn {
            let alive = self
                .turns
                .iter()
                .any(|t| t.server() == addr && t.username() == username && !t.is_failed());
            if !alive {
                self.turns.retain(|t| !t.is_failed());
                self.turns.push(TurnClient::new(
                    addr,
                    username.clone(),
                    password.clone(),
                    now,
                ));
            }
        }
    }

    /// The local candidates learned so far.
    pub fn candidates(&self) -> &[(IceCandidate, CandidateKind)] {
        &self.candidates
    }

    /// A candidate learned since the last call.
    pub fn poll_candidate(&mut self) -> Option<(IceCandidate, CandidateKind)> {
        self.fresh.pop_front()
    }

    /// Takes a datagram that came to `destination` (a host address) from `source`.
    pub fn handle(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> FromServer {
        if super::stun::is_stun(data) {
            for probe in &mut self.probes {
                if let Some(mapped) = probe.handle(source, data) {
                    self.learn_srflx(mapped, destination);
                    return FromServer::Taken;
                }
            }
        }
        let Some(i) = self.turns.iter().position(|t| t.server() == source) else {
            return FromServer::NotMine;
        };
        self.bases.insert(source, destination);
        let relayed = self.turns[i].relayed();
        let outcome = match self.turns[i].handle_datagram(data, now) {
            Some((peer, data)) => match relayed {
                Some(relayed) => FromServer::Relayed {
                    peer,
                    relayed,
                    data,
                },
                None => FromServer::Taken,
            },
            None if super::stun::is_stun(data) => FromServer::Taken,
            None => FromServer::NotMine,
        };
        self.take_events(i);
        outcome
    }

    fn take_events(&mut self, i: usize) {
        let server = self.turns[i].server();
        while let Some(event) = self.turns[i].poll_event() {
            match event {
                TurnEvent::Allocated { relayed, mapped } => {
                    let base = self.bases.get(&server).copied();
                    if let (Some(mapped), Some(base)) = (mapped, base) {
                        self.learn_srflx(mapped, base);
                    }
                    let local = base.unwrap_or(relayed);
                    if let Ok(candidate) = IceCandidate::relayed(relayed, local, "udp") {
                        tracing::debug!(%server, %relayed, "TURN allocation");
                        self.learn(candidate, CandidateKind::Relay);
                    }
                }
                TurnEvent::Failed(reason) => {
                    tracing::warn!(%server, %reason, "TURN allocation failed");
                }
            }
        }
    }

    fn learn_srflx(&mut self, mapped: SocketAddr, base: SocketAddr) {
        if mapped == base {
            return; // No NAT between us and the server: the host candidate says it all.
        }
        if let Ok(candidate) = IceCandidate::server_reflexive(mapped, base, "udp") {
            self.learn(candidate, CandidateKind::Srflx);
        }
    }

    fn learn(&mut self, candidate: IceCandidate, kind: CandidateKind) {
        if self
            .candidates
            .iter()
            .any(|(c, _)| c.addr() == candidate.addr())
        {
            return;
        }
        self.candidates.push((candidate.clone(), kind));
        self.fresh.push_back((candidate, kind));
    }

    /// Sends `data` from the relayed address `source` to `peer`, if `source` is one of ours:
    /// `Some(sent)`, else `None` (a host address: the caller sends it).
    pub fn relay(
        &mut self,
        source: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Option<bool> {
        let turn = self
            .turns
            .iter_mut()
            .find(|t| t.relayed() == Some(source))?;
        Some(turn.send_to(peer, data, now))
    }

    /// A datagram for a server: where to, and what.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        for probe in &mut self.probes {
            if let Some(request) = probe.poll_transmit(now) {
                return Some((probe.server(), request.to_vec()));
            }
        }
        self.turns
            .iter_mut()
            .find_map(|t| t.poll_transmit().map(|bytes| (t.server(), bytes)))
    }

    /// When [`Servers::handle_timeout`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        let probes = self.probes.iter().filter_map(SrflxProbe::deadline);
        let turns = self.turns.iter().filter_map(TurnClient::deadline);
        probes.chain(turns).min()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.probes.retain(|p| !p.is_done());
        for i in 0..self.turns.len() {
            self.turns[i].handle_timeout(now);
            self.take_events(i);
        }
        let lost: Vec<SocketAddr> = self
            .turns
            .iter()
            .filter(|t| t.is_failed())
            .filter_map(TurnClient::relayed_at_failure)
            .collect();
        if !lost.is_empty() {
            self.candidates.retain(|(c, _)| !lost.contains(&c.addr()));
        }
        self.turns.retain(|t| !t.is_failed());
    }

    /// Releases every allocation: (server, datagram) to send.
    pub fn release(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.turns
            .iter_mut()
            .filter_map(|t| t.release().map(|bytes| (t.server(), bytes)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::ServerSpec;

    fn spec(authority: &str, turn: Option<(&str, &str)>) -> ServerSpec {
        ServerSpec {
            authority: authority.into(),
            turn: turn.map(|(u, p)| (u.into(), p.into())),
        }
    }

    #[test]
    fn urls_parse_into_what_the_engine_asks() {
        assert_eq!(
            ServerSpec::parse("stun:10.0.0.1", "", ""),
            Some(spec("10.0.0.1:3478", None))
        );
        assert_eq!(
            ServerSpec::parse("turn:turn.example:3479?transport=udp", "u", "p"),
            Some(spec("turn.example:3479", Some(("u", "p"))))
        );
        assert_eq!(
            ServerSpec::parse("turn:10.0.0.1:3478?transport=tcp", "u", "p"),
            Some(spec("10.0.0.1:3478", None)),
            "TURN over TCP: asked for the outside address only"
        );
        assert_eq!(ServerSpec::parse("turns:10.0.0.1:5349", "u", "p"), None);
        assert_eq!(ServerSpec::parse("http://x", "", ""), None);
    }
}
