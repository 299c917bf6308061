//! The signed texts that calls asked to keep for a receipt (PROTOCOL_DESIGN.md §11.7): our
//! EXEC_REQUEST as it went out and the callee's final EXEC_RESPONSE as it came in. Only calls in
//! flight that asked have an entry, so the map is bounded by the link's calls.

use std::collections::HashMap;

use ioap_protocol::payload::ExecStatus;
use ioap_protocol::receipt::Receipt;
use ioap_protocol::{Body, Envelope, MessageId};

/// Receipts being gathered, by call.
#[derive(Debug, Default)]
pub(super) struct Receipts {
    calls: HashMap<MessageId, Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    request: Option<String>,
    response: Option<String>,
}

impl Receipts {
    /// Call `call` wants a receipt.
    pub(super) fn want(&mut self, call: MessageId) {
        self.calls.insert(call, Kept::default());
    }

    /// Our envelope `message` went out as `text`.
    pub(super) fn sent(&mut self, message: MessageId, text: &str) {
        if let Some(kept) = self.calls.get_mut(&message) {
            kept.request = Some(text.to_owned());
        }
    }

    /// A verified `envelope` came in as `text`: kept if it is the final answer to a call that
    /// wants a receipt.
    pub(super) fn received(&mut self, envelope: &Envelope, text: &[u8]) {
        let Body::ExecResponse(response) = &envelope.body else {
            return;
        };
        if response.status == ExecStatus::Partial {
            return;
        }
        if let Some(kept) = envelope
            .correlation_id
            .and_then(|call| self.calls.get_mut(&call))
        {
            kept.response = String::from_utf8(text.to_vec()).ok();
        }
    }

    /// The receipt of `call`, which has ended: both texts, when both were seen.
    pub(super) fn take(&mut self, call: MessageId) -> Option<Receipt> {
        let kept = self.calls.remove(&call)?;
        Some(Receipt::new(kept.request?, kept.response?))
    }

    /// `call` ended without a receipt.
    pub(super) fn forget(&mut self, call: MessageId) {
        self.calls.remove(&call);
    }
}
