//! The WebRTC engine behind a trait: what a link needs of a peer connection (offer, answer,
//! trickled candidates, one reliable ordered text channel) and the events it reports. The
//! link's driver talks only to [`RtcEngine`] and [`RtcPeer`]; [`WebrtcEngine`] (webrtc-rs) is
//! the first implementation and the only code that names the `webrtc` crate, so another engine
//! plugs in with [`AgentBuilder::rtc_engine`](crate::AgentBuilder::rtc_engine) without touching
//! the link rules.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

mod webrtc_rs;

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
    /// A new peer connection and the ordered stream of its events.
    fn peer(&self) -> PeerFuture<'_>;
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
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(5),
            ice_keepalive: Duration::from_secs(1),
        }
    }
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
