//! A peer connection's output: running str0m until it wants time to pass, turning its events
//! into the link's [`RtcEvent`]s, and handing those over as far as the link has room.

use std::time::{Duration, Instant};

use str0m::net::Transmit;
use str0m::{Event, IceConnectionState, Output};
use tokio::sync::mpsc;

use super::{BUFFERED_LOW, EVENT_BACKLOG, EVENT_BACKLOG_BYTES, Slot};

/// What an event holds of the peer's data.
fn message_bytes(event: &RtcEvent) -> usize {
    match event {
        RtcEvent::Message(text) => text.len(),
        _ => 0,
    }
}
use crate::rtc::{CHANNEL_LABEL, RtcEvent, RtcState};

impl Slot {
    /// Hands waiting events to the link as far as it has room; false if the link does not
    /// keep up and the connection was given up.
    pub fn flush_events(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            let bytes = message_bytes(&event);
            match self.events.try_send(event) {
                Ok(()) => self.backlog_bytes -= bytes,
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    self.backlog_bytes = 0;
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// Events are waiting for the link.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    pub(super) fn emit(&mut self, event: RtcEvent) {
        let bytes = message_bytes(&event);
        if self.backlog.len() >= EVENT_BACKLOG || self.backlog_bytes + bytes > EVENT_BACKLOG_BYTES {
            // The link's events end here: it sees its connection end, not a gap.
            tracing::warn!(
                events = self.backlog.len(),
                bytes = self.backlog_bytes,
                "a link did not take its events; its peer connection is given up"
            );
            self.backlog.clear();
            self.backlog_bytes = 0;
            self.rtc.disconnect();
            self.dead = true;
            return;
        }
        self.backlog_bytes += bytes;
        self.backlog.push_back(event);
        self.flush_events();
    }

    pub(super) fn fail(&mut self) {
        self.emit(RtcEvent::State(RtcState::Failed));
        self.rtc.disconnect();
        self.dead = true;
    }

    /// Runs str0m until it wants time to pass: datagrams to `out`, events to the link.
    pub(super) fn drain(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        loop {
            if !self.rtc.is_alive() {
                if !self.dead {
                    // str0m ended it (DTLS failed, the peer closed SCTP): say so.
                    self.emit(RtcEvent::State(RtcState::Failed));
                    self.dead = true;
                }
                self.deadline = now + Duration::from_secs(3600);
                return;
            }
            match self.rtc.poll_output() {
                // str0m may end the connection while polling: the loop's head reports it.
                Ok(Output::Timeout(_)) if !self.rtc.is_alive() => {}
                Ok(Output::Timeout(at)) => {
                    self.deadline = at;
                    return;
                }
                Ok(Output::Transmit(transmit)) => {
                    if self.path_found {
                        self.route = Some((transmit.source, transmit.destination));
                    }
                    out.push(transmit);
                }
                Ok(Output::Event(event)) => self.on_event(event),
                Err(e) => {
                    tracing::debug!(error = %e, "peer connection failed");
                    self.fail();
                    return;
                }
            }
        }
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Connected | IceConnectionState::Completed
                    if !self.path_found =>
                {
                    self.path_found = true;
                    self.emit(RtcEvent::PathFound);
                }
                IceConnectionState::Disconnected => {
                    self.emit(RtcEvent::State(RtcState::Disconnected));
                    self.fail();
                }
                _ => {}
            },
            Event::Connected => self.emit(RtcEvent::State(RtcState::Connected)),
            Event::ChannelOpen(id, label) => {
                if label == CHANNEL_LABEL {
                    self.channel = Some(id);
                    self.channel_open = true;
                    if let Some(mut channel) = self.rtc.channel(id) {
                        channel.set_buffered_amount_low_threshold(BUFFERED_LOW);
                    }
                    self.emit(RtcEvent::ChannelOpen);
                    self.flush_outbox();
                } else {
                    self.rtc.direct_api().close_data_channel(id);
                }
            }
            Event::ChannelData(data) if Some(data.id) == self.channel => {
                if data.binary {
                    self.emit(RtcEvent::Binary(data.data.len()));
                } else {
                    match String::from_utf8(data.data) {
                        Ok(text) => self.emit(RtcEvent::Message(text)),
                        Err(e) => self.emit(RtcEvent::Binary(e.as_bytes().len())),
                    }
                }
            }
            Event::ChannelBufferedAmountLow(id) if Some(id) == self.channel => self.flush_outbox(),
            Event::ChannelClose(id) if Some(id) == self.channel => {
                self.channel_open = false;
                self.emit(RtcEvent::ChannelClosed);
            }
            _ => {}
        }
    }
}
