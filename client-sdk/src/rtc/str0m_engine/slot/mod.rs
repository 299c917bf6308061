//! One peer connection inside the engine's loop: a str0m [`Rtc`], its data channel, the
//! events on their way to the link and the sends waiting for room. Sans-IO: time is an input
//! and datagrams go out through the caller.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::net::{Receive, Transmit};
use str0m::{Candidate as IceCandidate, Input, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use crate::rtc::{
    CHANNEL_LABEL, Candidate, CandidateKind, LinkPath, RtcError, RtcEvent, RtcSettings, RtcState,
};

/// Events held for a link that does not keep up before the peer connection is given up.
pub const EVENT_BACKLOG: usize = 4096;
/// Bytes of messages held for a link that does not keep up before the peer connection is
/// given up: the data channel has no receive window of its own here, so this bounds what a
/// fast peer can make this agent hold for a slow link.
pub const EVENT_BACKLOG_BYTES: usize = 16 << 20;
/// Below this many bytes buffered in the data channel, waiting sends are tried again.
const BUFFERED_LOW: usize = 64 * 1024;
/// Sends waiting for room in the data channel before further sends are refused.
pub const OUTBOX: usize = 256;

/// A send waiting for room: the text and who awaits it.
type PendingSend = (String, oneshot::Sender<Result<(), RtcError>>);

/// One peer connection's state.
pub struct Slot {
    rtc: Rtc,
    ufrag: String,
    events: mpsc::Sender<RtcEvent>,
    backlog: VecDeque<RtcEvent>,
    /// Bytes of the messages in `backlog`.
    backlog_bytes: usize,
    pending_offer: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    outbox: VecDeque<PendingSend>,
    local: Vec<(SocketAddr, CandidateKind)>,
    remote: Vec<(SocketAddr, CandidateKind)>,
    route: Option<(SocketAddr, SocketAddr)>,
    path_found: bool,
    channel_open: bool,
    /// The last datagram from the peer, and how long a silence may last: ICE checks the
    /// selected pair every 2 seconds each way (consent, RFC 7675), so a peer silent for this long
    /// is gone (str0m alone would wait its fixed 15 s grace first).
    last_heard: Instant,
    silence_limit: Duration,
    deadline: Instant,
    dead: bool,
}

/// What every peer connection of one agent shares: the crypto provider and one DTLS
/// certificate (its fingerprint goes in each signed offer and answer), made once per engine
/// rather than once per connection.
#[derive(Clone)]
pub struct Shared {
    crypto: Arc<CryptoProvider>,
    certificate: DtlsCert,
}

impl Shared {
    /// The crypto provider str0m was built with and a new self-signed certificate.
    pub fn generate() -> Result<Shared, RtcError> {
        let crypto = super::lazy_srtp::with_lazy_srtp(str0m::crypto::from_feature_flags());
        let certificate = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| RtcError::new("no DTLS certificate could be made"))?;
        Ok(Shared {
            crypto: Arc::new(crypto),
            certificate,
        })
    }
}

/// Builds the str0m configuration for one peer connection: ICE gives up a silent pair within
/// `ice_failed_timeout` (str0m's default waits ≈ 20 s).
fn config(settings: &RtcSettings, shared: &Shared, credentials: str0m::IceCreds) -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_crypto_provider(Arc::clone(&shared.crypto))
        .set_dtls_cert(shared.certificate.clone())
        .set_local_ice_credentials(credentials);
    config.set_initial_stun_rto(STUN_INITIAL_RTO);
    config.set_max_stun_rto(STUN_MAX_RTO);
    config.set_max_stun_retransmits(stun_retransmits(settings.ice_failed_timeout));
    config
}

const STUN_INITIAL_RTO: Duration = Duration::from_millis(250);
/// The longest wait between two checks of a pair (§11.3: at least every 2 s each way).
const STUN_MAX_RTO: Duration = Duration::from_secs(2);

/// The wait after a pair's `n`th remembered check before the next (str0m's rule: doubling
/// from the initial RTO, capped). str0m remembers a pair's last `retransmits` checks, so a
/// pair that answers is checked every `stun_wait(retransmits)`: the consent interval.
fn stun_wait(n: u32) -> Duration {
    (STUN_INITIAL_RTO * 2u32.pow(n.saturating_sub(1).min(16))).min(STUN_MAX_RTO)
}

/// How long str0m lets a pair go unanswered with `retransmits`: the waits before the 2nd …
/// last transmission and one more.
fn ice_timeout(retransmits: u32) -> Duration {
    (2..=retransmits).map(stun_wait).sum::<Duration>() + stun_wait(retransmits)
}

/// Enough retransmissions that a connected pair is checked every [`STUN_MAX_RTO`] rather than
/// more often, and more while their timeout stays within `limit`.
fn stun_retransmits(limit: Duration) -> usize {
    let mut retransmits = 2;
    while retransmits < 30
        && (stun_wait(retransmits) < STUN_MAX_RTO || ice_timeout(retransmits + 1) <= limit)
    {
        retransmits += 1;
    }
    retransmits as usize
}

impl Slot {
    /// A new peer connection with its local candidates, reporting to `events`.
    pub fn new(
        settings: &RtcSettings,
        shared: &Shared,
        credentials: str0m::IceCreds,
        local: &[(IceCandidate, CandidateKind)],
        events: mpsc::Sender<RtcEvent>,
        now: Instant,
    ) -> Slot {
        let ufrag = credentials.ufrag.clone();
        let rtc = config(settings, shared, credentials).build(now);
        let mut slot = Slot {
            rtc,
            ufrag,
            events,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            pending_offer: None,
            channel: None,
            outbox: VecDeque::new(),
            local: Vec::new(),
            remote: Vec::new(),
            route: None,
            path_found: false,
            channel_open: false,
            last_heard: now,
            silence_limit: settings.ice_failed_timeout,
            deadline: now,
            dead: false,
        };
        for (candidate, kind) in local {
            slot.add_local(candidate.clone(), *kind);
        }
        slot
    }

    /// The ICE user name fragment of this side (incoming checks name it).
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// When [`Slot::handle_timeout`] is next due.
    pub fn deadline(&self) -> Instant {
        if self.path_found {
            self.deadline.min(self.last_heard + self.silence_limit)
        } else {
            self.deadline
        }
    }

    /// Gone (closed, failed, or its link stopped listening) and its last events handed over.
    pub fn is_dead(&self) -> bool {
        self.events.is_closed() || (self.dead || !self.rtc.is_alive()) && self.backlog.is_empty()
    }

    /// Adds a local candidate and trickles it to the peer.
    pub fn add_local(&mut self, candidate: IceCandidate, kind: CandidateKind) {
        let addr = candidate.addr();
        if self.rtc.add_local_candidate(candidate.clone()).is_some() {
            self.local.push((addr, kind));
            self.emit(RtcEvent::LocalCandidate(Candidate {
                candidate: candidate.to_sdp_string(),
                sdp_mid: None,
                sdp_mline_index: Some(0),
            }));
        }
    }

    /// Its DTLS handshake is done and its data channel open.
    pub fn is_established(&self) -> bool {
        self.channel_open
    }

    /// Whether a datagram is this peer connection's. One that ended takes nothing more, though
    /// it lingers until its link took its last events: a new connection from the same address
    /// (a re-dial) gets its DTLS hello.
    pub fn accepts(&self, input: &Input) -> bool {
        !self.dead && self.rtc.is_alive() && self.rtc.accepts(input)
    }

    /// Offerer side: the data channel and the offer.
    pub fn offer(&mut self, now: Instant, out: &mut Vec<Transmit>) -> Result<String, RtcError> {
        let mut change = self.rtc.sdp_api();
        self.channel = Some(change.add_channel(CHANNEL_LABEL.to_owned()));
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| RtcError::new("nothing to offer"))?;
        self.pending_offer = Some(pending);
        self.drain(now, out);
        Ok(offer.to_sdp_string())
    }

    /// Answerer side: applies the offer and returns the answer.
    pub fn answer(
        &mut self,
        offer: &str,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Result<String, RtcError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(RtcError::new)?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(RtcError::new)?;
        self.drain(now, out);
        Ok(answer.to_sdp_string())
    }

    /// Offerer side: applies the answer.
    pub fn accept_answer(
        &mut self,
        answer: &str,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Result<(), RtcError> {
        let pending = self
            .pending_offer
            .take()
            .ok_or_else(|| RtcError::new("no offer pending"))?;
        let answer = SdpAnswer::from_sdp_string(answer).map_err(RtcError::new)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(RtcError::new)?;
        self.drain(now, out);
        Ok(())
    }

    /// A candidate the peer trickled (an empty one ends its candidates and is ignored).
    pub fn add_remote(
        &mut self,
        candidate: &Candidate,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> Result<(), RtcError> {
        let line = candidate.candidate.trim();
        if line.is_empty() {
            return Ok(());
        }
        let parsed = IceCandidate::from_sdp_string(line).map_err(RtcError::new)?;
        self.remote.push((parsed.addr(), kind_of(parsed.kind())));
        self.rtc.add_remote_candidate(parsed);
        self.drain(now, out);
        Ok(())
    }

    /// Sends text on the data channel: at once if there is room, else when there is.
    pub fn send(
        &mut self,
        text: String,
        reply: oneshot::Sender<Result<(), RtcError>>,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) {
        if !self.channel_open {
            let _ = reply.send(Err(RtcError::new("no data channel yet")));
            return;
        }
        if self.outbox.len() >= OUTBOX {
            let _ = reply.send(Err(RtcError::new("the data channel's send queue is full")));
            return;
        }
        self.outbox.push_back((text, reply));
        self.flush_outbox();
        self.drain(now, out);
    }

    fn flush_outbox(&mut self) {
        let Some(id) = self.channel else {
            return;
        };
        while let Some((text, _)) = self.outbox.front() {
            let Some(mut channel) = self.rtc.channel(id) else {
                return;
            };
            match channel.write(false, text.as_bytes()) {
                Ok(true) => {
                    if let Some((_, reply)) = self.outbox.pop_front() {
                        let _ = reply.send(Ok(()));
                    }
                }
                Ok(false) => return,
                Err(e) => {
                    if let Some((_, reply)) = self.outbox.pop_front() {
                        let _ = reply.send(Err(RtcError::new(e)));
                    }
                }
            }
        }
    }

    /// A datagram for this peer connection (one that [`Slot::accepts`]).
    pub fn handle_receive(&mut self, now: Instant, receive: Receive, out: &mut Vec<Transmit>) {
        self.last_heard = now;
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(error = %e, "peer connection refused a datagram");
        }
        self.drain(now, out);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        if self.path_found && !self.dead && now >= self.last_heard + self.silence_limit {
            tracing::debug!(silence = ?self.silence_limit, "the peer went silent");
            self.emit(RtcEvent::State(RtcState::Disconnected));
            self.fail();
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "peer connection failed");
            self.fail();
        }
        self.drain(now, out);
    }

    /// Another connection took over the peer's address: this one is over.
    pub fn superseded(&mut self) {
        if !self.dead {
            tracing::debug!("a newer connection took over the peer's address");
            self.fail();
        }
    }

    /// Closes the connection for good.
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.emit(RtcEvent::State(RtcState::Closed));
        self.dead = true;
    }

    /// The pair in use, once ICE nominated one.
    pub fn path(&self) -> Option<LinkPath> {
        let (source, destination) = self.route?;
        let remote = self
            .remote
            .iter()
            .find(|(addr, _)| *addr == destination)
            .map_or(CandidateKind::Prflx, |(_, kind)| *kind);
        let local = self
            .local
            .iter()
            .find(|(addr, _)| *addr == source)
            .map_or(CandidateKind::Host, |(_, kind)| *kind);
        // Through a NAT the pair's base is the host address; what the peer saw was ours
        // outside it.
        let local = match (local, remote) {
            (CandidateKind::Host, CandidateKind::Srflx | CandidateKind::Prflx)
                if self.local.iter().any(|(_, k)| *k == CandidateKind::Srflx) =>
            {
                CandidateKind::Srflx
            }
            (kind, _) => kind,
        };
        Some(LinkPath {
            local,
            local_address: source.to_string(),
            remote,
            remote_address: destination.to_string(),
            rtt_ms: None,
        })
    }
}

/// The ioap name of a str0m candidate kind.
pub fn kind_of(kind: str0m::CandidateKind) -> CandidateKind {
    match kind {
        str0m::CandidateKind::Host => CandidateKind::Host,
        str0m::CandidateKind::ServerReflexive => CandidateKind::Srflx,
        str0m::CandidateKind::PeerReflexive => CandidateKind::Prflx,
        str0m::CandidateKind::Relayed => CandidateKind::Relay,
    }
}

mod events;

#[cfg(test)]
mod tests;
