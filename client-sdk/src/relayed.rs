//! Gateway-relayed links (PROTOCOL_DESIGN.md §11.5): when no UDP path joins two agents, the
//! link's messages travel as sealed RELAY_DATA records over both agents' gateway sessions.
//!
//! [`Relayed`] is the relay half of a link attempt: the handshake (RELAY_OPEN, RELAY_ACCEPT)
//! and the records this side receives. [`RelayPeer`] stands in for the peer connection, so
//! the link's driver sends on it exactly as on a data channel.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioap_protocol::json::MAX_ENVELOPE_BYTES;
use ioap_protocol::payload::{RelayAccept, RelayClose, RelayData, RelayOpen, decode_relay_key};
use ioap_protocol::relay::{EphemeralKey, RecordOpener, RecordSealer, RelayHandshake, RelayRole};
use ioap_protocol::{Body, Did, MessageId};
use tokio::sync::mpsc;

use crate::core::AgentCore;
use crate::error::{CallError, SetupError};
use crate::rtc::{Candidate, CandidateKind, LinkPath, RtcError, RtcEvent, RtcFuture, RtcPeer};

/// Where the handshake stands.
enum Stage {
    /// RELAY_OPEN sent; waiting for RELAY_ACCEPT.
    Opening(EphemeralKey),
    /// Keys derived: records flow.
    Open(RecordOpener),
}

/// The relay half of one link attempt.
pub(crate) struct Relayed {
    /// The RELAY_OPEN's id, naming the relayed link.
    pub(crate) link: MessageId,
    stage: Stage,
    peer: Arc<RelayPeer>,
    /// Keeps the attempt's event stream open: a relayed link has no engine events.
    _events: mpsc::Sender<RtcEvent>,
}

/// Longest wait for room in the relay lane for a RELAY_CLOSE.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// A relayed attempt's stand-in peer connection and its (silent) event stream.
pub(crate) type Transport = (Arc<dyn RtcPeer>, mpsc::Receiver<RtcEvent>);

fn setup_failed(why: impl std::fmt::Display) -> CallError {
    CallError::Setup(SetupError::Rtc(format!("gateway relay: {why}")))
}

impl Relayed {
    /// Opens a relayed link to `remote`: sends RELAY_OPEN.
    pub(crate) fn open(
        core: &Arc<AgentCore>,
        remote: Did,
    ) -> Result<(Relayed, Transport), CallError> {
        let key = EphemeralKey::generate().map_err(setup_failed)?;
        let open = Body::RelayOpen(RelayOpen {
            key: key.public_text(),
        });
        let link = core
            .gateway
            .try_send(remote, open, None)
            .map_err(|e| CallError::Setup(SetupError::Gateway(e.to_string())))?;
        Ok(Relayed::new(core, remote, link, Stage::Opening(key)))
    }

    /// Accepts the peer's RELAY_OPEN `link`: derives the keys and sends RELAY_ACCEPT.
    pub(crate) fn accept(
        core: &Arc<AgentCore>,
        remote: Did,
        link: MessageId,
        open: &RelayOpen,
    ) -> Result<(Relayed, Transport), CallError> {
        let peer_key = decode_relay_key(&open.key).map_err(setup_failed)?;
        let key = EphemeralKey::generate().map_err(setup_failed)?;
        let (sealer, opener) = handshake(core, &remote, link, RelayRole::Accepter, &peer_key)
            .keys(&key, MAX_ENVELOPE_BYTES)
            .map_err(setup_failed)?;
        let accept = Body::RelayAccept(RelayAccept {
            key: key.public_text(),
        });
        core.gateway
            .try_send(remote, accept, Some(link))
            .map_err(|e| CallError::Setup(SetupError::Gateway(e.to_string())))?;
        let (relayed, transport) = Relayed::new(core, remote, link, Stage::Open(opener));
        relayed.peer.keyed(sealer);
        Ok((relayed, transport))
    }

    fn new(core: &Arc<AgentCore>, remote: Did, link: MessageId, stage: Stage) -> (Self, Transport) {
        let (events_tx, events) = mpsc::channel(1);
        let peer = Arc::new(RelayPeer {
            core: Arc::clone(core),
            remote,
            link,
            sealer: Mutex::new(None),
            send_timeout: core.settings.link_timeout,
        });
        let relayed = Relayed {
            link,
            stage,
            peer: Arc::clone(&peer),
            _events: events_tx,
        };
        (relayed, (peer, events))
    }

    /// Whether both sides hold the keys.
    pub(crate) fn is_keyed(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// The peer's RELAY_ACCEPT arrived (opener side): derives the keys. `Ok(false)`: not
    /// waiting for one (ignored).
    pub(crate) fn on_accept(
        &mut self,
        core: &AgentCore,
        remote: Did,
        accept: &RelayAccept,
    ) -> Result<bool, CallError> {
        let Stage::Opening(key) = &self.stage else {
            return Ok(false);
        };
        let peer_key = decode_relay_key(&accept.key).map_err(setup_failed)?;
        let (sealer, opener) = handshake(core, &remote, self.link, RelayRole::Opener, &peer_key)
            .keys(key, MAX_ENVELOPE_BYTES)
            .map_err(setup_failed)?;
        self.peer.keyed(sealer);
        self.stage = Stage::Open(opener);
        Ok(true)
    }

    /// A record from the peer: `Some(text)` when it completes a message. An error breaks the
    /// link (a record was lost, forged, or the message is too large).
    pub(crate) fn on_data(&mut self, record: &RelayData) -> Result<Option<String>, CallError> {
        let Stage::Open(opener) = &mut self.stage else {
            return Err(CallError::lost(
                "a relayed record arrived before RELAY_ACCEPT",
            ));
        };
        let message = opener
            .open(record)
            .map_err(|e| CallError::lost(e.to_string()))?;
        message
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| CallError::lost("a relayed message is not UTF-8 text"))
            })
            .transpose()
    }
}

fn handshake<'a>(
    core: &'a AgentCore,
    remote: &'a Did,
    link: MessageId,
    role: RelayRole,
    peer_key: &'a [u8; 32],
) -> RelayHandshake<'a> {
    RelayHandshake {
        role,
        identity: &core.identity,
        peer: remote,
        link,
        peer_key,
    }
}

/// The peer connection of a relayed link: sends seal each message into RELAY_DATA records
/// and queue them in the gateway connection's relay lane.
pub(crate) struct RelayPeer {
    core: Arc<AgentCore>,
    remote: Did,
    link: MessageId,
    sealer: Mutex<Option<RecordSealer>>,
    /// Longest wait for room in the relay lane (the gateway is slow or gone).
    send_timeout: Duration,
}

impl RelayPeer {
    fn keyed(&self, sealer: RecordSealer) {
        *self.sealer.lock().unwrap_or_else(|e| e.into_inner()) = Some(sealer);
    }

    fn seal(&self, text: &str) -> Result<Vec<RelayData>, RtcError> {
        let mut sealer = self.sealer.lock().unwrap_or_else(|e| e.into_inner());
        let sealer = sealer
            .as_mut()
            .ok_or_else(|| RtcError::new("the relayed link is not keyed yet"))?;
        sealer.seal(text.as_bytes()).map_err(RtcError::new)
    }
}

fn no_sdp<T>() -> RtcFuture<'static, T> {
    Box::pin(async {
        Err(RtcError::new(
            "a gateway-relayed link has no SDP or candidates",
        ))
    })
}

impl RtcPeer for RelayPeer {
    fn offer(&self) -> RtcFuture<'_, String> {
        no_sdp()
    }

    fn answer(&self, _offer_sdp: String) -> RtcFuture<'_, String> {
        no_sdp()
    }

    fn accept_answer(&self, _answer_sdp: String) -> RtcFuture<'_, ()> {
        no_sdp()
    }

    fn add_candidate(&self, _candidate: Candidate) -> RtcFuture<'_, ()> {
        no_sdp()
    }

    fn send(&self, text: String) -> RtcFuture<'_, ()> {
        Box::pin(async move {
            for record in self.seal(&text)? {
                let body = Body::RelayData(record);
                let sent = self
                    .core
                    .gateway
                    .send_relayed(self.remote, body, Some(self.link));
                match tokio::time::timeout(self.send_timeout, sent).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Err(RtcError::new(error)),
                    Err(_) => {
                        return Err(RtcError::new(
                            "the gateway connection took no relayed record within the link \
                             timeout",
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let close = Body::RelayClose(RelayClose {
                reason: Some("link closed".into()),
            });
            // In the relay lane, behind the link's last records; briefly, as the link is over.
            let sent = self
                .core
                .gateway
                .send_relayed(self.remote, close, Some(self.link));
            let _ = tokio::time::timeout(CLOSE_WAIT, sent).await;
        })
    }

    fn path(&self) -> RtcFuture<'_, Option<LinkPath>> {
        Box::pin(async {
            Ok(Some(LinkPath {
                local: CandidateKind::Gateway,
                local_address: "gateway".into(),
                remote: CandidateKind::Gateway,
                remote_address: "gateway".into(),
                rtt_ms: None,
            }))
        })
    }
}
