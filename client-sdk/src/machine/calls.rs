//! Our calls in flight on one link and the credit of their streams (PROTOCOL_DESIGN.md §11.3,
//! §11.4): what the caller's side of a link remembers about each request it sent.

use std::collections::HashMap;
use std::time::Instant;

use ioap_protocol::MessageId;

/// Parts buffered per call for a peer that does not do flow control (1.0).
pub(crate) const UNFLOWED_PARTS: u32 = 1024;

/// What a call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// An EXEC_REQUEST; `stream` if it asked for parts.
    Exec { stream: bool },
    /// An INTENT request.
    Intent,
}

/// The credit of one streamed call, as the caller counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The window sent in the request.
    pub(crate) window: u32,
    /// Credit the callee still has (window, plus grants, minus parts received).
    pub(crate) granted: u32,
    /// Consumed by the application, not yet granted back.
    pub(crate) pending: u32,
}

/// One call in flight.
#[derive(Debug, Clone)]
pub(crate) struct OutCall {
    pub(crate) kind: CallKind,
    pub(crate) deadline: Instant,
    /// Parts handed to the application and not yet consumed.
    pub(crate) held: u32,
    /// `Some` when the callee does flow control.
    pub(crate) flow: Option<Flow>,
}

/// What a part received for a call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartCheck {
    /// Hand it to the application.
    Deliver,
    /// The call did not ask to stream.
    NotStreaming,
    /// The callee sent more than its credit, or more than the unflowed buffer holds.
    OverCredit,
}

impl OutCall {
    /// Counts one received part against the credit.
    pub(crate) fn receive_part(&mut self) -> PartCheck {
        if self.kind != (CallKind::Exec { stream: true }) {
            return PartCheck::NotStreaming;
        }
        match &mut self.flow {
            Some(flow) if flow.granted == 0 => return PartCheck::OverCredit,
            Some(flow) => flow.granted -= 1,
            None if self.held >= UNFLOWED_PARTS => return PartCheck::OverCredit,
            None => {}
        }
        self.held += 1;
        PartCheck::Deliver
    }

    /// The application consumed `parts`; returns the credit to grant now, if any. Credit goes
    /// back in batches of a quarter window, or at once when the callee has none left.
    pub(crate) fn consume(&mut self, parts: u32) -> Option<u32> {
        let parts = parts.min(self.held);
        self.held -= parts;
        let flow = self.flow.as_mut()?;
        flow.pending += parts;
        let batch = (flow.window / 4).max(1);
        if flow.pending == 0 || (flow.pending < batch && flow.granted > 0) {
            return None;
        }
        let grant = flow.pending;
        flow.granted += grant;
        flow.pending = 0;
        Some(grant)
    }
}

/// The calls in flight on one link, by request id.
#[derive(Debug, Default)]
pub(crate) struct OutCalls {
    calls: HashMap<MessageId, OutCall>,
}

impl OutCalls {
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn insert(&mut self, id: MessageId, call: OutCall) {
        self.calls.insert(id, call);
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut OutCall> {
        self.calls.get_mut(id)
    }

    pub(crate) fn remove(&mut self, id: &MessageId) -> Option<OutCall> {
        self.calls.remove(id)
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (MessageId, OutCall)> + '_ {
        self.calls.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(window: Option<u32>) -> OutCall {
        OutCall {
            kind: CallKind::Exec { stream: true },
            deadline: Instant::now(),
            held: 0,
            flow: window.map(|window| Flow {
                window,
                granted: window,
                pending: 0,
            }),
        }
    }

    #[test]
    fn a_callee_may_send_exactly_its_credit() {
        let mut call = streamed(Some(4));
        for _ in 0..4 {
            assert_eq!(call.receive_part(), PartCheck::Deliver);
        }
        assert_eq!(call.receive_part(), PartCheck::OverCredit);
        assert_eq!(call.held, 4);
    }

    #[test]
    fn credit_returns_in_quarter_windows_or_when_the_callee_is_dry() {
        let mut call = streamed(Some(8));
        for _ in 0..3 {
            call.receive_part();
        }
        assert_eq!(call.consume(1), None, "a quarter of 8 is 2");
        assert_eq!(call.consume(1), Some(2));
        for _ in 0..7 {
            call.receive_part();
        }
        // The callee has no credit left: the first part consumed goes back at once.
        assert_eq!(call.flow.map(|f| f.granted), Some(0));
        assert_eq!(call.consume(1), Some(1));
        let flow = call.flow.expect("flow");
        assert!(call.held + flow.granted + flow.pending <= flow.window);
    }

    #[test]
    fn an_unflowed_stream_is_bounded_and_a_plain_call_takes_no_parts() {
        let mut call = streamed(None);
        for _ in 0..UNFLOWED_PARTS {
            assert_eq!(call.receive_part(), PartCheck::Deliver);
        }
        assert_eq!(call.receive_part(), PartCheck::OverCredit);
        assert_eq!(
            call.consume(10),
            None,
            "no credit to grant without flow control"
        );
        let mut plain = streamed(None);
        plain.kind = CallKind::Exec { stream: false };
        assert_eq!(plain.receive_part(), PartCheck::NotStreaming);
    }
}
