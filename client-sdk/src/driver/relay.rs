//! The link driver's part of gateway-relayed links (PROTOCOL_DESIGN.md §11.5): falling back
//! from a direct attempt, and the RELAY_* messages from the peer.

use std::sync::Arc;
use std::time::Instant;

use ioap_protocol::MessageId;
use ioap_protocol::payload::{RelayAccept, RelayData, RelayOpen};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{Driver, lost};
use crate::GatewayRelay;
use crate::machine::{LinkEnd, LinkMachine};
use crate::relayed::Relayed;
use crate::rtc::{RtcEvent, RtcPeer};

impl Driver {
    /// Whether this side would fall back to the gateway relay now: it dialed the current
    /// attempt, which is direct and not yet open, and relay is allowed.
    pub(super) fn may_relay(&self) -> bool {
        self.core.settings.gateway_relay == GatewayRelay::Fallback
            && self.attempt.as_ref().is_some_and(|attempt| {
                attempt.offered && attempt.relayed.is_none() && !attempt.machine.is_open()
            })
    }

    /// When the direct attempt has waited long enough to fall back (`None`: no fallback due,
    /// or ICE found a path and only DTLS or the channel is slow, e.g. under CPU load).
    pub(super) fn relay_deadline(&self) -> Option<Instant> {
        if !self.may_relay() {
            return None;
        }
        let attempt = self.attempt.as_ref()?;
        if attempt.path_found {
            return None;
        }
        Some(attempt.started + self.core.settings.relay_after)
    }

    /// Abandons the direct attempt and opens a gateway-relayed link in its place, within the
    /// same setup deadline.
    pub(super) async fn start_relay(&mut self) -> Result<(), LinkEnd> {
        if !self.may_relay() {
            return Ok(());
        }
        let Some(attempt) = self.attempt.as_mut() else {
            return Ok(());
        };
        info!(peer = %self.remote, "no direct path yet: falling back to the gateway relay");
        attempt.rtc.close().await;
        self.core.links.offer_done(attempt.id);
        // Late ANSWERs and candidates of the direct attempt are ignored from now on.
        self.negotiation.reset();
        let (relayed, (rtc, events)) =
            Relayed::open(&self.core, self.remote).map_err(LinkEnd::Failed)?;
        self.adopt(relayed, rtc, events);
        Ok(())
    }

    /// Starts a relayed attempt from scratch (relay-only dialing).
    pub(super) fn begin_relayed(
        &mut self,
        relayed: Relayed,
        rtc: Arc<dyn RtcPeer>,
        events: mpsc::Receiver<RtcEvent>,
        offered: bool,
    ) {
        self.begin(relayed.link, Arc::clone(&rtc), events, offered, true);
        if let Some(attempt) = self.attempt.as_mut() {
            self.core.links.offer_sent(relayed.link, self.remote);
            attempt.relayed = Some(relayed);
        }
    }

    /// Puts a relayed transport in place of the current attempt's peer connection, keeping
    /// its link machine (and setup deadline).
    fn adopt(&mut self, relayed: Relayed, rtc: Arc<dyn RtcPeer>, events: mpsc::Receiver<RtcEvent>) {
        let relay = self.link_config(true);
        let Some(attempt) = self.attempt.as_mut() else {
            return;
        };
        self.core.links.offer_sent(relayed.link, self.remote);
        attempt
            .machine
            .set_liveness(relay.heartbeat_interval, relay.link_timeout);
        attempt.id = relayed.link;
        attempt.rtc = rtc;
        attempt.events = events;
        attempt.relayed = Some(relayed);
    }

    /// The peer opens a relayed link: it replaces whatever attempt or link we had, as an OFFER
    /// does, unless our own RELAY_OPEN wins the glare.
    pub(super) async fn on_relay_open(
        &mut self,
        link: MessageId,
        open: &RelayOpen,
    ) -> Result<(), LinkEnd> {
        if self.core.settings.gateway_relay == GatewayRelay::Never {
            debug!(peer = %self.remote, "RELAY_OPEN ignored: gateway relay is off");
            return Ok(());
        }
        if let Some(attempt) = self.attempt.as_mut() {
            let opening = attempt
                .relayed
                .as_ref()
                .is_some_and(|relayed| attempt.offered && !relayed.is_keyed());
            if opening && self.negotiation.local_offer_wins() {
                debug!(peer = %self.remote, "relay glare: our RELAY_OPEN wins");
                return Ok(());
            }
            attempt.machine.end(LinkEnd::Replaced);
            self.flush().await;
        }
        self.negotiation.reset();
        let (relayed, (rtc, events)) =
            Relayed::accept(&self.core, self.remote, link, open).map_err(LinkEnd::Failed)?;
        self.begin_relayed(relayed, rtc, events, false);
        if let Some(attempt) = self.attempt.as_mut() {
            attempt
                .machine
                .handle_channel_open(std::time::Instant::now());
        }
        Ok(())
    }

    /// The peer accepted our RELAY_OPEN: the relayed link's channel is open.
    pub(super) fn on_relay_accept(
        &mut self,
        correlation: Option<MessageId>,
        accept: &RelayAccept,
    ) -> Result<(), LinkEnd> {
        let remote = self.remote;
        let core = Arc::clone(&self.core);
        let Some((machine, relayed)) = self.relayed_attempt(correlation) else {
            return Ok(());
        };
        if relayed
            .on_accept(&core, remote, accept)
            .map_err(LinkEnd::Failed)?
        {
            machine.handle_channel_open(std::time::Instant::now());
        }
        Ok(())
    }

    /// A record of the relayed link: a completed message goes on as a data-channel message.
    pub(super) fn on_relay_data(
        &mut self,
        correlation: Option<MessageId>,
        record: &RelayData,
    ) -> Result<(), LinkEnd> {
        let Some((_, relayed)) = self.relayed_attempt(correlation) else {
            return Ok(());
        };
        let message = relayed.on_data(record).map_err(LinkEnd::Failed)?;
        match message {
            Some(text) => self.on_rtc(RtcEvent::Message(text)),
            None => Ok(()),
        }
    }

    /// The peer ended the relayed link.
    pub(super) fn on_relay_close(&mut self, correlation: Option<MessageId>) -> Result<(), LinkEnd> {
        if self.relayed_attempt(correlation).is_none() {
            return Ok(());
        }
        Err(LinkEnd::Failed(lost(
            "the peer closed the gateway-relayed link",
        )))
    }

    /// The current attempt's machine and relay half, if the attempt is the relayed link
    /// `correlation` names.
    fn relayed_attempt(
        &mut self,
        correlation: Option<MessageId>,
    ) -> Option<(&mut LinkMachine, &mut Relayed)> {
        let attempt = self.attempt.as_mut()?;
        if correlation != Some(attempt.id) {
            return None;
        }
        let super::Attempt {
            machine, relayed, ..
        } = attempt;
        Some((machine, relayed.as_mut()?))
    }
}
