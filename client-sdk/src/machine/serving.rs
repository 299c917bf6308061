//! The peer's requests we are serving on one link, and the credit of their streams
//! (PROTOCOL_DESIGN.md §11.3, §11.4).

use std::collections::HashMap;
use std::time::Instant;

use ioap_protocol::MessageId;
use serde_json::Value;

/// What kind of request is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServedKind {
    /// An EXEC_REQUEST (answered with EXEC_RESPONSE).
    Exec,
    /// An INTENT request (answered with an INTENT reply or ERROR).
    Intent,
}

/// One request being served.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) kind: ServedKind,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    /// Whether the caller asked for parts.
    pub(crate) stream: bool,
    /// Credit left, when the caller does flow control.
    pub(crate) credit: Option<u32>,
    /// A part the handler is waiting to send until credit arrives.
    pub(crate) waiting: Option<Value>,
}

/// What becomes of a part a handler sends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PartPlan {
    /// Send it now.
    Send(Value),
    /// Hold it until credit arrives; the handler waits.
    Hold,
    /// The caller did not ask to stream: the part is not sent.
    Discard,
}

impl Served {
    /// Plans one part from the handler.
    pub(crate) fn offer_part(&mut self, part: Value) -> PartPlan {
        if !self.stream {
            return PartPlan::Discard;
        }
        match &mut self.credit {
            Some(0) => {
                self.waiting = Some(part);
                PartPlan::Hold
            }
            Some(credit) => {
                *credit -= 1;
                PartPlan::Send(part)
            }
            None => PartPlan::Send(part),
        }
    }

    /// CREDIT arrived; returns the held part if it may go now.
    pub(crate) fn add_credit(&mut self, parts: u32) -> Option<Value> {
        let credit = self.credit.as_mut()?;
        *credit = credit.saturating_add(parts);
        if *credit == 0 {
            return None;
        }
        let part = self.waiting.take()?;
        *credit -= 1;
        Some(part)
    }
}

/// The requests being served on one link, by request id.
#[derive(Debug, Default)]
pub(crate) struct ServedRequests {
    requests: HashMap<MessageId, Served>,
}

impl ServedRequests {
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    pub(crate) fn insert(&mut self, id: MessageId, served: Served) {
        self.requests.insert(id, served);
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut Served> {
        self.requests.get_mut(id)
    }

    pub(crate) fn remove(&mut self, id: &MessageId) -> Option<Served> {
        self.requests.remove(id)
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (MessageId, Served)> + '_ {
        self.requests.drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served(stream: bool, credit: Option<u32>) -> Served {
        Served {
            kind: ServedKind::Exec,
            started: Instant::now(),
            deadline: Instant::now(),
            stream,
            credit,
            waiting: None,
        }
    }

    #[test]
    fn parts_wait_for_credit_and_go_in_order() {
        let mut request = served(true, Some(1));
        assert_eq!(request.offer_part(json!(1)), PartPlan::Send(json!(1)));
        assert_eq!(request.offer_part(json!(2)), PartPlan::Hold);
        assert_eq!(request.add_credit(2), Some(json!(2)));
        assert_eq!(request.credit, Some(1));
        assert_eq!(request.add_credit(1), None, "nothing was waiting");
        assert_eq!(request.credit, Some(2));
    }

    #[test]
    fn without_flow_control_parts_go_at_once_and_unasked_parts_are_not_sent() {
        let mut request = served(true, None);
        assert_eq!(request.offer_part(json!(1)), PartPlan::Send(json!(1)));
        assert_eq!(request.add_credit(5), None);
        let mut plain = served(false, None);
        assert_eq!(plain.offer_part(json!(1)), PartPlan::Discard);
    }
}
