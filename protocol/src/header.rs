//! What a relay reads of a frame (PROTOCOL_DESIGN.md §10): every envelope member decoded and
//! checked as [`ReceivedEnvelope`](crate::ReceivedEnvelope) checks it, except the payload,
//! which must only be a JSON object. The receiver decodes the payload and verifies the
//! signature end to end; the relay needs neither to bind the sender and pick the receiver.

use crate::body::MessageType;
use crate::decode::decode_header;
use crate::did::Did;
use crate::envelope::DecodeError;
use crate::message_id::MessageId;
use crate::timestamp::Timestamp;

/// A frame's envelope members other than its payload and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameHeader {
    /// The frame's `id`.
    pub id: MessageId,
    /// Its `type`.
    pub ty: MessageType,
    /// The sender it claims.
    pub from: Did,
    /// The recipient, if any.
    pub to: Option<Did>,
    /// When the sender made it.
    pub timestamp: Timestamp,
    /// The message it answers, if any.
    pub correlation_id: Option<MessageId>,
}

impl FrameHeader {
    /// Reads `bytes` under the rules of [`ReceivedEnvelope::decode_with`](crate::ReceivedEnvelope::decode_with)
    /// (size, strict syntax of the envelope object, members, version, type, ids, DIDs,
    /// timestamp, `to` / `correlation_id` by type, signature encoding), except that the
    /// payload is checked only for being a JSON object: its members, their depth and their
    /// integers are not looked at, nor whether an INTENT is a reply.
    ///
    /// `known` resolves DID texts already validated (a registry), as in `decode_with`.
    pub fn decode_with(
        bytes: &[u8],
        known: impl Fn(&str) -> Option<Did>,
    ) -> Result<Self, DecodeError> {
        let head = decode_header(bytes, &known)?;
        Ok(FrameHeader {
            id: head.id,
            ty: head.ty,
            from: head.from,
            to: head.to,
            timestamp: head.timestamp,
            correlation_id: head.correlation_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use crate::envelope::{DecodeErrorKind, Envelope, ReceivedEnvelope};
    use crate::payload::SessionDescription;
    use crate::samples::{alice, bob, example_time};

    fn offer_frame() -> String {
        let alice = alice();
        let envelope = Envelope::new(
            alice.did(),
            Some(bob().did()),
            Body::Offer(SessionDescription {
                sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".into(),
            }),
            example_time(),
        );
        envelope.sign(&alice).expect("signs").into_string()
    }

    #[test]
    fn reads_what_the_full_decode_reads() {
        let frame = offer_frame();
        let header = FrameHeader::decode_with(frame.as_bytes(), |_| None).expect("decodes");
        let full = ReceivedEnvelope::decode_with(frame.as_bytes(), |_| None).expect("decodes");
        let envelope = full.envelope();
        assert_eq!(header.id, envelope.id);
        assert_eq!(header.ty, MessageType::Offer);
        assert_eq!(header.from, envelope.from);
        assert_eq!(header.to, envelope.to);
        assert_eq!(header.timestamp, envelope.timestamp);
        assert_eq!(header.correlation_id, None);
    }

    #[test]
    fn refuses_envelope_faults_with_the_frame_id() {
        let frame = offer_frame();
        let mut value: serde_json::Value = serde_json::from_str(&frame).expect("json");
        value["from"] = "did:key:zNotAKey".into();
        let bad = value.to_string();
        let error = FrameHeader::decode_with(bad.as_bytes(), |_| None).expect_err("refused");
        assert!(matches!(
            error.kind,
            DecodeErrorKind::BadField { field: "from", .. }
        ));
        assert_eq!(
            error.id.map(|id| id.to_string()),
            value["id"].as_str().map(String::from)
        );
    }

    #[test]
    fn needs_an_object_payload_and_a_well_formed_signature() {
        let frame = offer_frame();
        let mut value: serde_json::Value = serde_json::from_str(&frame).expect("json");
        value["payload"] = serde_json::json!([1]);
        let error =
            FrameHeader::decode_with(value.to_string().as_bytes(), |_| None).expect_err("refused");
        assert!(matches!(
            error.kind,
            DecodeErrorKind::BadField {
                field: "payload",
                ..
            }
        ));

        let mut value: serde_json::Value = serde_json::from_str(&frame).expect("json");
        value["signature"] = "not base64url!".into();
        let error =
            FrameHeader::decode_with(value.to_string().as_bytes(), |_| None).expect_err("refused");
        assert_eq!(error.kind, DecodeErrorKind::SignatureEncoding);
    }

    #[test]
    fn applies_the_presence_rules_of_the_type() {
        let alice = alice();
        let answer = Envelope::new(
            alice.did(),
            Some(bob().did()),
            Body::Answer(SessionDescription {
                sdp: "v=0\r\n".into(),
            }),
            example_time(),
        )
        .in_reply_to(MessageId::random());
        let frame = answer.sign(&alice).expect("signs").into_string();
        let mut value: serde_json::Value = serde_json::from_str(&frame).expect("json");
        value
            .as_object_mut()
            .expect("object")
            .remove("correlation_id");
        let error =
            FrameHeader::decode_with(value.to_string().as_bytes(), |_| None).expect_err("refused");
        assert!(matches!(error.kind, DecodeErrorKind::Rule(_)));
    }

    #[test]
    fn leaves_the_payload_members_to_the_receiver() {
        let frame = offer_frame();
        let mut value: serde_json::Value = serde_json::from_str(&frame).expect("json");
        value["payload"] = serde_json::json!({"sdp": 5});
        let bytes = value.to_string();
        assert!(FrameHeader::decode_with(bytes.as_bytes(), |_| None).is_ok());
        assert!(ReceivedEnvelope::decode_with(bytes.as_bytes(), |_| None).is_err());
    }
}
