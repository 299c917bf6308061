//! The WebRTC engine behind a trait: what a link needs of a peer connection (offer, answer,
//! trickled candidates, one reliable ordered text channel) and the events it reports. The
//! link's driver talks only to [`RtcEngine`] and [`RtcPeer`]; [`WebrtcEngine`] (webrtc-rs) is
//! the first implementation and the only code that names the `webrtc` crate; [`Str0mEngine`]
//! (str0m, sans-IO: one socket and one task per agent) the second, the only code that names
//! `str0m`. [`Engine`] picks one by name; another engine plugs in with
//! [`AgentBuilder::rtc_engine`](crate::AgentBuilder::rtc_engine) without touching the link rules.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

mod choice;
mod str0m_engine;
mod webrtc_rs;

pub use choice::{ENGINE_ENV, Engine};
pub use str0m_engine::Str0mEngine;
pub use webrtc_rs::{WebrtcEngine, WebrtcPeer};

/// The label of the one data channel a link uses.
pub const CHANNEL_LABEL: &str = "ioap.v1";
/// Events buffered per peer connection before the engine waits for the link to catch up.
pub const EVENT_BUFFER: usize = 1024;

/// What an engine's operations return.
pub type RtcFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, RtcError>> + Send + 'a>>;
/// What [`RtcEngine::peer`] returns: a peer connection and the stream of its events.
pub type PeerFuture<'a> = RtcFuture<'a, (Arc<dyn RtcPeer>, mpsc::Receiver<RtcEvent>)>;

/// Creates peer connections.
pub trait RtcEngine: std::fmt::Debug + Send + Sync + 'static {
    /// A new peer connection and the ordered stream of its events; `extra_ice_servers` (those
    /// the gateway offered) are used besides the engine's own.
    fn peer<'a>(&'a self, extra_ice_servers: &'a [IceServer]) -> PeerFuture<'a>;

    /// Tries each of the engine's STUN/TURN servers and `extra_ice_servers`: a STUN binding,
    /// a TURN allocation with its credentials. Engines that cannot say return nothing.
    fn check_ice_servers<'a>(
        &'a self,
        extra_ice_servers: &'a [IceServer],
    ) -> Pin<Box<dyn Future<Output = Vec<IceServerCheck>> + Send + 'a>> {
        let _ = extra_ice_servers;
        Box::pin(async { Vec::new() })
    }
}

/// Whether one STUN/TURN URL works from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServerCheck {
    /// The URL tried.
    pub url: String,
    /// `Ok` with what the server said (the public address it saw, or the relayed address
    /// it allocated), or why it cannot be used.
    pub outcome: Result<String, String>,
}

/// One peer connection with (at most) one data channel, labelled [`CHANNEL_LABEL`], reliable
/// and ordered, carrying text.
pub trait RtcPeer: Send + Sync {
    /// Offerer side: creates the data channel and the offer; returns the offer's SDP.
    fn offer(&self) -> RtcFuture<'_, String>;
    /// Answerer side: applies the offer and returns the answer's SDP.
    fn answer(&self, offer_sdp: String) -> RtcFuture<'_, String>;
    /// Offerer side: applies the peer's answer.
    fn accept_answer(&self, answer_sdp: String) -> RtcFuture<'_, ()>;
    /// Applies a candidate the peer trickled (an empty one ends the candidates).
    fn add_candidate(&self, candidate: Candidate) -> RtcFuture<'_, ()>;
    /// Sends text on the data channel.
    fn send(&self, text: String) -> RtcFuture<'_, ()>;
    /// Closes the connection (and its channel).
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The candidate pair in use, once connected (`None`: not yet, or the engine cannot say).
    fn path(&self) -> RtcFuture<'_, Option<LinkPath>> {
        Box::pin(async { Ok(None) })
    }
}

/// What kind of address an ICE candidate is (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CandidateKind {
    /// An address of the agent's own interface.
    Host,
    /// The agent's address as a STUN server saw it (outside its NAT).
    Srflx,
    /// An address learned from the peer's connectivity checks.
    Prflx,
    /// An address on a TURN server that relays for the agent.
    Relay,
    /// No ICE candidate: the link travels over the agents' gateway sessions
    /// (PROTOCOL_DESIGN.md §11.5).
    Gateway,
}

/// How a link travels: the pair of candidates ICE selected.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkPath {
    /// This side's candidate kind and address.
    pub local: CandidateKind,
    /// `ip:port` of this side's candidate.
    pub local_address: String,
    /// The peer's candidate kind.
    pub remote: CandidateKind,
    /// `ip:port` of the peer's candidate.
    pub remote_address: String,
    /// The link's smoothed round trip (PING → PONG on the link), in milliseconds; `None`
    /// before the first PONG (or from an engine, which does not measure it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gateways_are_recognised() {
        for url in [
            "ws://127.0.0.1:8000/ws",
            "wss://localhost/ws",
            "ws://[::1]:80/ws",
            "ws://127.9.9.9/ws",
        ] {
            assert!(gateway_is_local(url), "{url}");
        }
        for url in [
            "ws://10.0.0.1:8000/ws",
            "wss://gw.example/ws",
            "ws://[2001:db8::1]/ws",
            "nonsense",
        ] {
            assert!(!gateway_is_local(url), "{url}");
        }
    }

    #[test]
    fn link_local_and_unspecified_addresses_are_not_offered() {
        for ip in ["169.254.1.1", "0.0.0.0", "fe80::1", "224.0.0.1"] {
            assert!(!routable_candidate(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["192.168.1.2", "10.0.0.1", "127.0.0.1", "2001:db8::1"] {
            assert!(routable_candidate(ip.parse().expect("ip")), "{ip}");
        }
    }
}

/// The path in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PathKind {
    /// Host (or peer-reflexive) candidates: the same host or LAN, or a peer whose NAT this
    /// side cannot see.
    Direct,
    /// Direct through NAT, on a server-reflexive candidate: hole punched.
    Punched,
    /// Through a TURN server.
    Turn,
    /// Over both agents' gateway sessions, end-to-end encrypted (no UDP path was found).
    Gateway,
}

impl LinkPath {
    /// Direct, punched through NAT, or relayed by TURN.
    pub fn kind(&self) -> PathKind {
        match (self.local, self.remote) {
            (CandidateKind::Gateway, _) | (_, CandidateKind::Gateway) => PathKind::Gateway,
            (CandidateKind::Relay, _) | (_, CandidateKind::Relay) => PathKind::Turn,
            (CandidateKind::Srflx, _) | (_, CandidateKind::Srflx) => PathKind::Punched,
            // Host or peer-reflexive: the addresses the sockets see. A LAN peer's host address
            // is often learned from its first check (peer-reflexive) before it is trickled.
            _ => PathKind::Direct,
        }
    }
}

impl LinkPath {
    fn write_rtt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rtt_ms {
            Some(rtt) => write!(f, ", RTT {rtt:.1} ms"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for LinkPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind() {
            PathKind::Direct => "direct",
            PathKind::Punched => "direct through NAT",
            PathKind::Turn => "relayed by TURN",
            PathKind::Gateway => {
                write!(f, "relayed by the gateway (encrypted end to end)")?;
                return self.write_rtt(f);
            }
        };
        write!(
            f,
            "{kind}: {:?} {} <-> {:?} {}",
            self.local, self.local_address, self.remote, self.remote_address
        )?;
        self.write_rtt(f)
    }
}

/// A STUN or TURN server for real deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, …
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: String,
    /// TURN credential.
    pub credential: String,
}

/// How peer connections gather candidates and notice a vanished peer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RtcSettings {
    /// STUN/TURN servers (none: host candidates only).
    pub ice_servers: Vec<IceServer>,
    /// Gather only loopback addresses (tests and single-host deployments).
    pub loopback_only: bool,
    /// Also offer loopback candidates: `None` (the default) offers them only when the gateway
    /// is on this host (its URL names a loopback address or `localhost`), where the peers may
    /// be too; agents of a remote gateway never signal 127.0.0.1 to their peers.
    pub loopback_candidates: Option<bool>,
    /// ICE consent lost for this long: the connection counts as disconnected.
    pub ice_disconnected_timeout: Duration,
    /// … and for this long after that: failed.
    pub ice_failed_timeout: Duration,
    /// ICE keep-alive period.
    pub ice_keepalive: Duration,
}

impl Default for RtcSettings {
    fn default() -> Self {
        RtcSettings {
            ice_servers: Vec::new(),
            loopback_only: false,
            loopback_candidates: None,
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(5),
            ice_keepalive: Duration::from_secs(1),
        }
    }
}

/// Whether `ip` is worth offering to a peer: not unspecified, multicast or link-local
/// (169.254/16, fe80::/10: valid on one link only, and TURN servers refuse them).
pub fn routable_candidate(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_link_local() || v4.is_broadcast())
        }
        std::net::IpAddr::V6(v6) => {
            !(v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local())
        }
    }
}

/// Whether a gateway URL names this host (a loopback address or `localhost`).
pub fn gateway_is_local(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A trickled ICE candidate, as ICE_CANDIDATE carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The candidate line; empty for end-of-candidates.
    pub candidate: String,
    /// Media stream tag.
    pub sdp_mid: Option<String>,
    /// M-line index.
    pub sdp_mline_index: Option<u16>,
}

/// The state of a peer connection, simplified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcState {
    /// Still negotiating.
    Connecting,
    /// ICE and DTLS are up.
    Connected,
    /// Consent lost for a while; may recover.
    Disconnected,
    /// Gone for good.
    Failed,
    /// Closed by either side.
    Closed,
}

/// What a peer connection reports.
#[derive(Debug)]
pub enum RtcEvent {
    /// A local candidate to trickle to the peer (`candidate` empty: gathering finished).
    LocalCandidate(Candidate),
    /// ICE found a working candidate pair (DTLS and the data channel may still be under way):
    /// the attempt is slow, not pathless, and does not fall back to the gateway relay on time.
    PathFound,
    /// The data channel opened.
    ChannelOpen,
    /// A text message arrived on the data channel.
    Message(String),
    /// A binary message arrived (not part of ioap.v1).
    Binary(usize),
    /// The data channel closed.
    ChannelClosed,
    /// The connection changed state.
    State(RtcState),
}

/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
#[error("webrtc: {0}")]
pub struct RtcError(String);

impl RtcError {
    /// An engine failure, in words.
    pub fn new(e: impl std::fmt::Display) -> Self {
        RtcError(e.to_string())
    }
}
