//! Receipts (PROTOCOL_DESIGN.md §11.7): a caller keeps the EXEC_REQUEST it signed and the final
//! EXEC_RESPONSE the callee signed, exactly as they travelled, and anyone holding the pair can
//! later check what was asked and answered with the two DIDs alone (a `did:key` is its key).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::Body;
use crate::did::Did;
use crate::envelope::ReceivedEnvelope;
use crate::payload::{ErrorPayload, ExecStatus};
use crate::timestamp::Timestamp;

/// The `format` of a receipt.
pub const RECEIPT_FORMAT: &str = "ioap.receipt.v1";
/// The largest envelope a receipt may hold (1 GiB): receipts are read from files, not links.
pub const MAX_RECEIPT_ENVELOPE_BYTES: usize = 1 << 30;

/// A request and its final answer, each the signed envelope text as it travelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Always [`RECEIPT_FORMAT`].
    pub format: String,
    /// The caller's signed EXEC_REQUEST.
    pub request: String,
    /// The callee's signed final EXEC_RESPONSE (`ok` or `error`) to it.
    pub response: String,
}

/// What a receipt proves, once [`Receipt::verify`] has checked it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VerifiedReceipt {
    /// Who asked (signed the request).
    pub caller: Did,
    /// Who answered (signed the response).
    pub callee: Did,
    /// The capability called.
    pub capability: String,
    /// Its arguments.
    pub args: Value,
    /// When the caller says it asked.
    pub requested_at: Timestamp,
    /// When the callee says it answered.
    pub answered_at: Timestamp,
    /// `ok` or `error`.
    pub status: ExecStatus,
    /// The result, with `ok`.
    pub result: Option<Value>,
    /// The error, with `error`.
    pub error: Option<ErrorPayload>,
}

/// Why a receipt proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a receipt of this format.
    #[error("not an {RECEIPT_FORMAT} receipt")]
    Format,
    /// The request or the response is not a well-formed envelope of the right type.
    #[error("the {0} is not a well-formed envelope of its type")]
    Malformed(&'static str),
    /// A signature does not verify under its signer's DID.
    #[error("the {0}'s signature does not verify")]
    BadSignature(&'static str),
    /// The response does not answer this request between these two agents.
    #[error("the response does not answer the request: {0}")]
    Mismatch(&'static str),
}

impl Receipt {
    /// A receipt of `request` and `response`, the envelope texts as they travelled.
    pub fn new(request: String, response: String) -> Self {
        Receipt {
            format: RECEIPT_FORMAT.to_owned(),
            request,
            response,
        }
    }

    /// Checks both signatures and that the response is the callee's final answer to this
    /// request, from the callee to the caller.
    pub fn verify(&self) -> Result<VerifiedReceipt, ReceiptError> {
        if self.format != RECEIPT_FORMAT {
            return Err(ReceiptError::Format);
        }
        let request = open(&self.request, "request")?;
        let response = open(&self.response, "response")?;
        let Body::ExecRequest(asked) = request.body else {
            return Err(ReceiptError::Malformed("request"));
        };
        let Body::ExecResponse(answered) = response.body else {
            return Err(ReceiptError::Malformed("response"));
        };
        if response.correlation_id != Some(request.id) {
            return Err(ReceiptError::Mismatch("it names another request"));
        }
        if request.to != Some(response.from) || response.to != Some(request.from) {
            return Err(ReceiptError::Mismatch("it is between other agents"));
        }
        if answered.status == ExecStatus::Partial {
            return Err(ReceiptError::Mismatch(
                "it is a partial response, not the answer",
            ));
        }
        Ok(VerifiedReceipt {
            caller: request.from,
            callee: response.from,
            capability: asked.capability,
            args: asked.args,
            requested_at: request.timestamp,
            answered_at: response.timestamp,
            status: answered.status,
            result: answered.result,
            error: answered.error,
        })
    }
}

fn open(text: &str, what: &'static str) -> Result<crate::Envelope, ReceiptError> {
    let received =
        ReceivedEnvelope::decode_up_to(text.as_bytes(), MAX_RECEIPT_ENVELOPE_BYTES, |_| None)
            .map_err(|_| ReceiptError::Malformed(what))?;
    // A message carried in CHUNKs between 1.6 sides is signed over its text's digest (§11.6),
    // any other over its canonical form (§5) — which a text of that shape may also be.
    let carried = crate::carried::signed_prefix(text.as_bytes()).is_some();
    if carried && received.verify_carried().is_ok() || received.verify().is_ok() {
        Ok(received.into_envelope())
    } else {
        Err(ReceiptError::BadSignature(what))
    }
}

#[cfg(test)]
mod tests;
