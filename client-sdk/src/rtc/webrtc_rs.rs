//! The first [`RtcEngine`](super::RtcEngine): webrtc-rs 0.17. The only module that names the
//! `webrtc` crate; it turns the crate's callbacks into one ordered stream of [`RtcEvent`]s per
//! peer connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use super::{
    CHANNEL_LABEL, Candidate, EVENT_BUFFER, PeerFuture, RtcEngine, RtcError, RtcEvent, RtcPeer,
    RtcSettings, RtcState,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::data_channel::RTCDataChannel;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

/// How long a working relayed pair waits for a direct one before it is accepted: a direct
/// pair that works usually succeeds within a few round trips.
const RELAY_ACCEPTANCE_WAIT: Duration = Duration::from_millis(200);

/// Creates webrtc-rs peer connections with one configuration.
#[derive(Clone)]
pub struct WebrtcEngine {
    api: Arc<API>,
    config: RTCConfiguration,
}

impl std::fmt::Debug for WebrtcEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcEngine").finish_non_exhaustive()
    }
}

impl WebrtcEngine {
    /// An engine for `settings`: UDP over IPv4, loopback candidates included, no mDNS.
    pub fn new(settings: &RtcSettings) -> Self {
        let mut engine = SettingEngine::default();
        engine.set_network_types(vec![NetworkType::Udp4]);
        engine.set_include_loopback_candidate(
            settings.loopback_only || settings.loopback_candidates.unwrap_or(false),
        );
        engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
        engine.set_ice_timeouts(
            Some(settings.ice_disconnected_timeout),
            Some(settings.ice_failed_timeout),
            Some(settings.ice_keepalive),
        );
        // webrtc-ice waits before it accepts a working pair in case a better one appears:
        // 500 ms for server-reflexive, 1 s for peer-reflexive and 2 s for relayed pairs. A
        // link's first working pair is good enough (a LAN pair learned as peer-reflexive
        // otherwise opened about 1 s late); ICE still prefers a better pair found meanwhile.
        engine.set_host_acceptance_min_wait(Some(Duration::ZERO));
        engine.set_srflx_acceptance_min_wait(Some(Duration::ZERO));
        engine.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
        engine.set_relay_acceptance_min_wait(Some(RELAY_ACCEPTANCE_WAIT));
        if settings.loopback_only {
            engine.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
        } else {
            engine.set_ip_filter(Box::new(super::routable_candidate));
        }
        let api = APIBuilder::new().with_setting_engine(engine).build();
        let config = RTCConfiguration {
            ice_servers: settings.ice_servers.iter().map(ice_server).collect(),
            ..Default::default()
        };
        WebrtcEngine {
            api: Arc::new(api),
            config,
        }
    }

    async fn new_peer(
        &self,
        extra_ice_servers: &[super::IceServer],
    ) -> Result<(WebrtcPeer, mpsc::Receiver<RtcEvent>), RtcError> {
        let mut config = self.config.clone();
        config
            .ice_servers
            .extend(extra_ice_servers.iter().map(ice_server));
        let pc = Arc::new(
            self.api
                .new_peer_connection(config)
                .await
                .map_err(RtcError::new)?,
        );
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let peer = WebrtcPeer {
            pc,
            channel: Arc::new(Mutex::new(None)),
            events,
        };
        peer.watch_connection();
        Ok((peer, receiver))
    }
}

/// One webrtc-rs peer connection with (at most) one data channel.
#[derive(Clone)]
pub struct WebrtcPeer {
    pc: Arc<RTCPeerConnection>,
    channel: Arc<Mutex<Option<Arc<RTCDataChannel>>>>,
    events: mpsc::Sender<RtcEvent>,
}

impl std::fmt::Debug for WebrtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebrtcPeer").finish_non_exhaustive()
    }
}

impl WebrtcPeer {
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
        self.pc
            .on_ice_connection_state_change(Box::new(move |state: RTCIceConnectionState| {
                let events = events.clone();
                Box::pin(async move {
                    if state == RTCIceConnectionState::Connected {
                        let _ = events.send(RtcEvent::PathFound).await;
                    }
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
    async fn offer_impl(&self) -> Result<String, RtcError> {
        let init = RTCDataChannelInit {
            ordered: Some(true),
            ..Default::default()
        };
        let channel = self
            .pc
            .create_data_channel(CHANNEL_LABEL, Some(init))
            .await
            .map_err(RtcError::new)?;
        watch_channel(&channel, self.events.clone());
        *self.channel.lock().await = Some(channel);
        let offer = self.pc.create_offer(None).await.map_err(RtcError::new)?;
        let sdp = offer.sdp.clone();
        self.pc
            .set_local_description(offer)
            .await
            .map_err(RtcError::new)?;
        Ok(sdp)
    }

    /// Answerer side: applies the offer and returns the answer's SDP.
    async fn answer_impl(&self, offer_sdp: String) -> Result<String, RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(RtcError::new)?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(RtcError::new)?;
        let answer = self.pc.create_answer(None).await.map_err(RtcError::new)?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(RtcError::new)?;
        Ok(sdp)
    }

    /// Offerer side: applies the peer's answer.
    async fn accept_answer_impl(&self, answer_sdp: String) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(answer_sdp).map_err(RtcError::new)?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(RtcError::new)
    }

    /// Applies a candidate the peer trickled (an empty one is ignored).
    async fn add_candidate_impl(&self, candidate: Candidate) -> Result<(), RtcError> {
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
            .map_err(RtcError::new)
    }

    /// Sends text on the data channel.
    async fn send_impl(&self, text: String) -> Result<(), RtcError> {
        let channel = self.channel.lock().await.clone();
        let channel = channel.ok_or_else(|| RtcError::new("no data channel yet"))?;
        channel
            .send_text(text)
            .await
            .map(|_| ())
            .map_err(RtcError::new)
    }

    /// Closes the connection (and its channel).
    async fn close_impl(&self) {
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

impl RtcEngine for WebrtcEngine {
    fn peer<'a>(&'a self, extra_ice_servers: &'a [super::IceServer]) -> PeerFuture<'a> {
        Box::pin(async move {
            let (peer, events) = self.new_peer(extra_ice_servers).await?;
            Ok((Arc::new(peer) as Arc<dyn RtcPeer>, events))
        })
    }

    fn check_ice_servers<'a>(
        &'a self,
        extra_ice_servers: &'a [super::IceServer],
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<super::IceServerCheck>> + Send + 'a>> {
        Box::pin(async move {
            let mut checks = Vec::new();
            let servers = self
                .config
                .ice_servers
                .iter()
                .cloned()
                .chain(extra_ice_servers.iter().map(ice_server));
            for server in servers {
                for url in &server.urls {
                    let outcome = check_url(url, &server.username, &server.credential).await;
                    checks.push(super::IceServerCheck {
                        url: url.clone(),
                        outcome,
                    });
                }
            }
            checks
        })
    }
}

/// How long one STUN or TURN check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A STUN binding (`stun:`) or a TURN allocation (`turn:`, UDP) through `url`.
async fn check_url(url: &str, username: &str, credential: &str) -> Result<String, String> {
    let (scheme, rest) = url.split_once(':').ok_or("not a STUN or TURN URL")?;
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    if scheme.ends_with('s') || query.contains("transport=tcp") {
        return Err("TURN over TCP or TLS is not supported by this engine".into());
    }
    let address = if address.contains(':') {
        address.to_owned()
    } else {
        format!("{address}:3478")
    };
    let conn = Arc::new(
        tokio::net::UdpSocket::bind("0.0.0.0:0")
            .await
            .map_err(|e| e.to_string())?,
    );
    let is_turn = scheme == "turn";
    let client = webrtc::turn::client::Client::new(webrtc::turn::client::ClientConfig {
        stun_serv_addr: if is_turn {
            String::new()
        } else {
            address.clone()
        },
        turn_serv_addr: if is_turn {
            address.clone()
        } else {
            String::new()
        },
        username: username.to_owned(),
        password: credential.to_owned(),
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, async {
        if is_turn {
            use webrtc::util::Conn as _;
            let relay = client.allocate().await.map_err(|e| e.to_string())?;
            let relayed = relay.local_addr().map_err(|e| e.to_string())?;
            let _ = relay.close().await;
            Ok(format!("relay {relayed}"))
        } else {
            let mapped = client
                .send_binding_request()
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("public address {mapped}"))
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")));
    let _ = client.close().await;
    outcome
}

impl RtcPeer for WebrtcPeer {
    fn offer(&self) -> super::RtcFuture<'_, String> {
        Box::pin(self.offer_impl())
    }

    fn answer(&self, offer_sdp: String) -> super::RtcFuture<'_, String> {
        Box::pin(self.answer_impl(offer_sdp))
    }

    fn accept_answer(&self, answer_sdp: String) -> super::RtcFuture<'_, ()> {
        Box::pin(self.accept_answer_impl(answer_sdp))
    }

    fn add_candidate(&self, candidate: Candidate) -> super::RtcFuture<'_, ()> {
        Box::pin(self.add_candidate_impl(candidate))
    }

    fn send(&self, text: String) -> super::RtcFuture<'_, ()> {
        Box::pin(self.send_impl(text))
    }

    fn close(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.close_impl())
    }

    fn path(&self) -> super::RtcFuture<'_, Option<super::LinkPath>> {
        Box::pin(async move {
            let pair = self
                .pc
                .sctp()
                .transport()
                .ice_transport()
                .get_selected_candidate_pair()
                .await;
            Ok(pair.and_then(|pair| {
                Some(super::LinkPath {
                    local: kind(pair.local.typ)?,
                    local_address: format!("{}:{}", pair.local.address, pair.local.port),
                    remote: kind(pair.remote.typ)?,
                    remote_address: format!("{}:{}", pair.remote.address, pair.remote.port),
                    rtt_ms: None,
                })
            }))
        })
    }
}

fn ice_server(server: &super::IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.clone(),
        username: server.username.clone(),
        credential: server.credential.clone(),
    }
}

fn kind(typ: RTCIceCandidateType) -> Option<super::CandidateKind> {
    use super::CandidateKind;
    match typ {
        RTCIceCandidateType::Host => Some(CandidateKind::Host),
        RTCIceCandidateType::Srflx => Some(CandidateKind::Srflx),
        RTCIceCandidateType::Prflx => Some(CandidateKind::Prflx),
        RTCIceCandidateType::Relay => Some(CandidateKind::Relay),
        RTCIceCandidateType::Unspecified => None,
    }
}
