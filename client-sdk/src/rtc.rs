//! The WebRTC engine: the only module that uses the `webrtc` crate, so the engine can be
//! swapped without touching the rest of the SDK.
//!
//! It turns the crate's callbacks into one ordered stream of [`RtcEvent`]s per peer
//! connection and exposes what the signaling layer needs: offers, answers, trickled candidates
//! and a single reliable, ordered data channel carrying text.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

/// The label of the one data channel a link uses.
pub const CHANNEL_LABEL: &str = "ioap.v1";
/// Events buffered per peer connection before the engine waits for the link to catch up.
const EVENT_BUFFER: usize = 1024;

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

fn rtc_err(e: impl std::fmt::Display) -> RtcError {
    RtcError(e.to_string())
}

/// Creates peer connections with one configuration.
#[derive(Clone)]
pub struct RtcEngine {
    api: Arc<API>,
    config: RTCConfiguration,
}

impl std::fmt::Debug for RtcEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcEngine").finish_non_exhaustive()
    }
}

impl RtcEngine {
    /// An engine for `settings`: UDP over IPv4, loopback candidates included, no mDNS.
    pub fn new(settings: &RtcSettings) -> Self {
        let mut engine = SettingEngine::default();
        engine.set_network_types(vec![NetworkType::Udp4]);
        engine.set_include_loopback_candidate(true);
        engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        engine.set_ice_timeouts(
            Some(settings.ice_disconnected_timeout),
            Some(settings.ice_failed_timeout),
            Some(settings.ice_keepalive),
        );
        if settings.loopback_only {
            engine.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
        }
        let api = APIBuilder::new().with_setting_engine(engine).build();
        let config = RTCConfiguration {
            ice_servers: settings
                .ice_servers
                .iter()
                .map(|server| RTCIceServer {
                    urls: server.urls.clone(),
                    username: server.username.clone(),
                    credential: server.credential.clone(),
                })
                .collect(),
            ..Default::default()
        };
        RtcEngine {
            api: Arc::new(api),
            config,
        }
    }

    /// A new peer connection and the stream of its events.
    pub async fn peer(&self) -> Result<(RtcPeer, mpsc::Receiver<RtcEvent>), RtcError> {
        let pc = Arc::new(
            self.api
                .new_peer_connection(self.config.clone())
                .await
                .map_err(rtc_err)?,
        );
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let peer = RtcPeer {
            pc,
            channel: Arc::new(Mutex::new(None)),
            events,
        };
        peer.watch_connection();
        Ok((peer, receiver))
    }
}

/// One peer connection with (at most) one data channel.
#[derive(Clone)]
pub struct RtcPeer {
    pc: Arc<RTCPeerConnection>,
    channel: Arc<Mutex<Option<Arc<RTCDataChannel>>>>,
    events: mpsc::Sender<RtcEvent>,
}

impl std::fmt::Debug for RtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcPeer").finish_non_exhaustive()
    }
}

impl RtcPeer {
    fn watch_connection(&self) {
        let events = self.events.clone();
        self.pc
            .on_ice_candidate(Box::new(move |candidate: Option<RTCIceCandidate>| {
                let events = events.clone();
                Box::pin(async move {
                    let candidate = match candidate {
                        None => Candidate {
                            candidate: String::new(),
                            sdp_mid: None,
                            sdp_mline_index: None,
                        },
                        Some(candidate) => match candidate.to_json() {
                            Ok(init) => Candidate {
                                candidate: init.candidate,
                                sdp_mid: init.sdp_mid,
                                sdp_mline_index: init.sdp_mline_index,
                            },
                            Err(_) => return,
                        },
                    };
                    let _ = events.send(RtcEvent::LocalCandidate(candidate)).await;
                })
            }));
        let events = self.events.clone();
        self.pc
            .on_peer_connection_state_change(Box::new(move |state: RTCPeerConnectionState| {
                let events = events.clone();
                Box::pin(async move {
                    let state = match state {
                        RTCPeerConnectionState::Connected => RtcState::Connected,
                        RTCPeerConnectionState::Disconnected => RtcState::Disconnected,
                        RTCPeerConnectionState::Failed => RtcState::Failed,
                        RTCPeerConnectionState::Closed => RtcState::Closed,
                        _ => RtcState::Connecting,
                    };
                    let _ = events.send(RtcEvent::State(state)).await;
                })
            }));
        let events = self.events.clone();
        let slot = Arc::clone(&self.channel);
        self.pc
            .on_data_channel(Box::new(move |channel: Arc<RTCDataChannel>| {
                let events = events.clone();
                let slot = Arc::clone(&slot);
                Box::pin(async move {
                    if channel.label() != CHANNEL_LABEL {
                        let _ = channel.close().await;
                        return;
                    }
                    watch_channel(&channel, events);
                    *slot.lock().await = Some(channel);
                })
            }));
    }

    /// Offerer side: creates the data channel and the offer; returns the offer's SDP.
    pub async fn offer(&self) -> Result<String, RtcError> {
        let init = RTCDataChannelInit {
            ordered: Some(true),
            ..Default::default()
        };
        let channel = self
            .pc
            .create_data_channel(CHANNEL_LABEL, Some(init))
            .await
            .map_err(rtc_err)?;
        watch_channel(&channel, self.events.clone());
        *self.channel.lock().await = Some(channel);
        let offer = self.pc.create_offer(None).await.map_err(rtc_err)?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(offer)
            .await
            .map_err(rtc_err)?;
        Ok(sdp)
    }

    /// Answerer side: applies the offer and returns the answer's SDP.
    pub async fn answer(&self, offer_sdp: String) -> Result<String, RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(rtc_err)?;
        let answer = self.pc.create_answer(None).await.map_err(rtc_err)?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err)?;
        Ok(sdp)
    }

    /// Offerer side: applies the peer's answer.
    pub async fn accept_answer(&self, answer_sdp: String) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(answer_sdp).map_err(rtc_err)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(rtc_err)
    }

    /// Applies a candidate the peer trickled (an empty one is ignored).
    pub async fn add_candidate(&self, candidate: Candidate) -> Result<(), RtcError> {
        if candidate.candidate.is_empty() {
            return Ok(());
        }
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: None,
            })
            .await
            .map_err(rtc_err)
    }

    /// Sends text on the data channel.
    pub async fn send(&self, text: String) -> Result<(), RtcError> {
        let channel = self.channel.lock().await.clone();
        let channel = channel.ok_or_else(|| RtcError("no data channel yet".into()))?;
        channel.send_text(text).await.map(|_| ()).map_err(rtc_err)
    }

    /// Closes the connection (and its channel).
    pub async fn close(&self) {
        if let Some(channel) = self.channel.lock().await.take() {
            let _ = channel.close().await;
        }
        let _ = self.pc.close().await;
    }
}

fn watch_channel(channel: &Arc<RTCDataChannel>, events: mpsc::Sender<RtcEvent>) {
    let on_open = events.clone();
    channel.on_open(Box::new(move || {
        Box::pin(async move {
            let _ = on_open.send(RtcEvent::ChannelOpen).await;
        })
    }));
    let on_close = events.clone();
    channel.on_close(Box::new(move || {
        let on_close = on_close.clone();
        Box::pin(async move {
            let _ = on_close.send(RtcEvent::ChannelClosed).await;
        })
    }));
    channel.on_message(Box::new(move |message: DataChannelMessage| {
        let events = events.clone();
        Box::pin(async move {
            let event = if message.is_string {
                match String::from_utf8(message.data.to_vec()) {
                    Ok(text) => RtcEvent::Message(text),
                    Err(_) => RtcEvent::Binary(message.data.len()),
                }
            } else {
                RtcEvent::Binary(message.data.len())
            };
            let _ = events.send(event).await;
        })
    }));
}
