//! The signed envelope: building and signing outgoing messages, decoding and verifying
//! incoming ones (PROTOCOL_DESIGN.md §3 and §5).

use ed25519_dalek::Signature;
use serde_json::{Map, Value};

use crate::body::{Body, MessageType, PayloadError};
use crate::codes::ErrorCode;
use crate::did::Did;
use crate::identity::Identity;
use crate::json::{self, JsonError, MAX_ENVELOPE_BYTES};
use crate::message_id::MessageId;
use crate::payload::Intent;
use crate::signing::{self, BadSignature, Purpose};
use crate::timestamp::Timestamp;

/// The envelope `version` this implementation speaks.
pub const PROTOCOL_VERSION: &str = "1.0";

/// An envelope's content: everything but the signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique per sender (UUID v4).
    pub id: MessageId,
    /// The sender, who signs.
    pub from: Did,
    /// The recipient; absent on CHALLENGE, and on an ERROR to a peer not yet identified.
    pub to: Option<Did>,
    /// When the sender made the message.
    pub timestamp: Timestamp,
    /// The `id` of the message this one answers.
    pub correlation_id: Option<MessageId>,
    /// The type and its payload.
    pub body: Body,
}

/// Why an envelope could not be signed and encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The signing identity is not the envelope's `from`.
    #[error("signing identity {signer} is not the envelope's sender {from}")]
    WrongSigner {
        /// The identity's DID.
        signer: String,
        /// The envelope's `from`.
        from: String,
    },
    /// The envelope breaks a rule of the spec (depth, integers, required fields).
    #[error("{0}")]
    Invalid(String),
    /// The encoded envelope is larger than the limit (§8; §11.6 for CHUNKed messages).
    #[error("encoded envelope is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
}

/// A signed envelope and its wire form.
#[derive(Debug, Clone)]
pub struct SignedEnvelope {
    envelope: Envelope,
    signature: Signature,
    json: String,
}

/// What went wrong decoding a frame, with the message id when it could be read (so that the
/// ERROR sent back can carry it as `correlation_id`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// The frame's `id`, if it was a valid one.
    pub id: Option<MessageId>,
}

/// The kinds of [`DecodeError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Size, syntax, duplicate keys, depth or integer range.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The top-level value is not an object.
    #[error("envelope must be a JSON object")]
    NotAnObject,
    /// A required member is missing.
    #[error("missing field {0:?}")]
    MissingField(&'static str),
    /// A member has the wrong form.
    #[error("field {field:?}: {reason}")]
    BadField {
        /// The member.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A member the spec does not define.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// `version` is not [`PROTOCOL_VERSION`].
    #[error("unsupported version {0:?} (this peer speaks {PROTOCOL_VERSION:?})")]
    UnsupportedVersion(String),
    /// `type` names no message type.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The payload is not a payload of `type`.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// `to` or `correlation_id` is missing or present against the type's rules.
    #[error("{0}")]
    Rule(String),
    /// `signature` is not 64 bytes of unpadded base64url.
    #[error("signature must be 64 bytes as unpadded base64url")]
    SignatureEncoding,
}

impl DecodeError {
    /// The ERROR code a receiver answers this failure with.
    pub fn code(&self) -> ErrorCode {
        match &self.kind {
            DecodeErrorKind::Json(JsonError::TooLarge { .. }) => ErrorCode::TooLarge,
            DecodeErrorKind::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            DecodeErrorKind::SignatureEncoding => ErrorCode::InvalidSignature,
            _ => ErrorCode::MalformedMessage,
        }
    }
}

/// A decoded incoming envelope whose signature has not been checked yet.
///
/// Keeps the received text so that verification covers exactly what was sent, whatever
/// defaults the typed form filled in.
#[derive(Debug, Clone)]
pub struct ReceivedEnvelope {
    envelope: Envelope,
    signature: Signature,
    received: Box<[u8]>,
    /// The size limit it was decoded under (its canonical form is parsed under the same).
    limit: usize,
}

impl Envelope {
    /// A new envelope with a random id and no correlation.
    pub fn new(from: Did, to: Option<Did>, body: Body, now: Timestamp) -> Self {
        Envelope {
            id: MessageId::random(),
            from,
            to,
            timestamp: now,
            correlation_id: None,
            body,
        }
    }

    /// Sets `correlation_id` (the id of the message this one answers).
    pub fn in_reply_to(mut self, id: MessageId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// The envelope's type.
    pub fn message_type(&self) -> MessageType {
        self.body.message_type()
    }

    /// The JSON object that is canonicalized and signed (everything but `signature`).
    pub fn unsigned_object(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.to_string()));
        map.insert(
            "type".into(),
            Value::String(self.message_type().as_str().into()),
        );
        map.insert("from".into(), Value::String(self.from.to_string()));
        if let Some(to) = &self.to {
            map.insert("to".into(), Value::String(to.to_string()));
        }
        map.insert(
            "timestamp".into(),
            Value::String(self.timestamp.to_string()),
        );
        if let Some(correlation) = &self.correlation_id {
            map.insert(
                "correlation_id".into(),
                Value::String(correlation.to_string()),
            );
        }
        map.insert("version".into(), Value::String(PROTOCOL_VERSION.into()));
        map.insert("payload".into(), self.body.payload_value());
        map
    }

    /// Checks the envelope against the spec, signs it and encodes it.
    pub fn sign(self, identity: &Identity) -> Result<SignedEnvelope, EncodeError> {
        self.sign_up_to(identity, MAX_ENVELOPE_BYTES)
    }

    /// [`Envelope::sign`] with another size limit for the encoded envelope: a message that a
    /// link carries in CHUNKs (PROTOCOL_DESIGN.md §11.6) may be larger than one envelope.
    pub fn sign_up_to(
        self,
        identity: &Identity,
        limit: usize,
    ) -> Result<SignedEnvelope, EncodeError> {
        let mut object = self.checked_object(identity)?;
        let canonical = signing::canonicalize_object(&object);
        let purpose = Purpose::for_type(self.message_type());
        let signature = signing::sign(identity, purpose, &canonical);
        object.insert(
            "signature".into(),
            Value::String(signing::encode_signature(&signature)),
        );
        let json = serde_json::to_string(&object).expect("a Map always serializes");
        if json.len() > limit {
            return Err(EncodeError::TooLarge {
                size: json.len(),
                limit,
            });
        }
        Ok(SignedEnvelope {
            envelope: self,
            signature,
            json,
        })
    }
}

impl Envelope {
    /// The envelope object without `signature`, once the envelope is checked against the spec
    /// and `identity` is its sender.
    pub(crate) fn checked_object(
        &self,
        identity: &Identity,
    ) -> Result<Map<String, Value>, EncodeError> {
        if identity.did() != self.from {
            return Err(EncodeError::WrongSigner {
                signer: identity.did().to_string(),
                from: self.from.to_string(),
            });
        }
        check_rules(self).map_err(EncodeError::Invalid)?;
        self.body
            .validate()
            .map_err(|e| EncodeError::Invalid(e.to_string()))?;
        let object = self.unsigned_object();
        for value in object.values() {
            // The envelope object is depth 1, so its members start at depth 1.
            json::check_value_at(value, 1).map_err(|e| EncodeError::Invalid(e.to_string()))?;
        }
        Ok(object)
    }
}

impl SignedEnvelope {
    /// A signed envelope from its parts (the signature already made over `json`).
    pub(crate) fn from_parts(envelope: Envelope, signature: Signature, json: String) -> Self {
        SignedEnvelope {
            envelope,
            signature,
            json,
        }
    }
}

/// The per-type rules for `to` and `correlation_id`.
pub(crate) fn check_rules(envelope: &Envelope) -> Result<(), String> {
    let ty = envelope.message_type();
    check_presence(ty, envelope.to.is_some(), envelope.correlation_id.is_some())?;
    let is_reply = matches!(&envelope.body, Body::Intent(Intent::Reply(_)));
    if is_reply && envelope.correlation_id.is_none() {
        return Err(format!("{ty} needs \"correlation_id\""));
    }
    Ok(())
}

/// Whether every message of `ty` answers another (§3: `correlation_id` required).
pub(crate) fn needs_correlation(ty: MessageType) -> bool {
    matches!(
        ty,
        MessageType::Registered
            | MessageType::Answer
            | MessageType::IceCandidate
            | MessageType::ExecResponse
            | MessageType::Pong
            | MessageType::Credit
            | MessageType::Cancel
            | MessageType::RelayAccept
            | MessageType::RelayData
            | MessageType::RelayClose
    )
}

/// The §3 rules on `to` and `correlation_id` that follow from the type alone (an INTENT
/// reply's `correlation_id` depends on its payload, so [`check_rules`] checks that).
pub(crate) fn check_presence(
    ty: MessageType,
    has_to: bool,
    has_correlation: bool,
) -> Result<(), String> {
    match (ty, has_to) {
        (MessageType::Challenge, true) => return Err("CHALLENGE must not have \"to\"".into()),
        // CHALLENGE precedes knowing the peer; an ERROR may answer a peer not yet known.
        (MessageType::Challenge | MessageType::Error, false) | (_, true) => {}
        (_, false) => return Err(format!("{ty} needs \"to\"")),
    }
    if needs_correlation(ty) && !has_correlation {
        return Err(format!("{ty} needs \"correlation_id\""));
    }
    Ok(())
}

impl SignedEnvelope {
    /// The envelope's content.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The wire form (JSON text).
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// The wire form, consuming the envelope.
    pub fn into_string(self) -> String {
        self.json
    }
}

impl ReceivedEnvelope {
    /// Decodes a frame: limits, shape, version, type, typed payload, per-type rules. Does not
    /// verify the signature: call [`ReceivedEnvelope::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, |_| None)
    }

    /// [`ReceivedEnvelope::decode`], with a resolver for DIDs the caller already holds
    /// validated (its own, its peer's, a registry's): a DID text the resolver recognises skips
    /// parsing and point validation (about 4 µs each). The resolver must return only a `Did`
    /// whose canonical text is exactly the text it was given.
    pub fn decode_with(
        bytes: &[u8],
        known: impl Fn(&str) -> Option<Did>,
    ) -> Result<Self, DecodeError> {
        Self::decode_up_to(bytes, MAX_ENVELOPE_BYTES, known)
    }

    /// [`ReceivedEnvelope::decode_with`] with another size limit: a message reassembled from
    /// CHUNKs (PROTOCOL_DESIGN.md §11.6).
    pub fn decode_up_to(
        bytes: &[u8],
        limit: usize,
        known: impl Fn(&str) -> Option<Did>,
    ) -> Result<Self, DecodeError> {
        let (envelope, signature) = crate::decode::decode(bytes, limit, &known)?;
        Ok(ReceivedEnvelope {
            envelope,
            signature,
            received: bytes.into(),
            limit,
        })
    }

    /// The decoded content (not yet verified).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Verifies the signature under `from`'s key, with the tag of the envelope's type.
    pub fn verify(&self) -> Result<(), BadSignature> {
        let canonical = self.canonical_bytes();
        let purpose = Purpose::for_type(self.envelope.message_type());
        signing::verify(&self.envelope.from, purpose, &canonical, &self.signature)
    }

    /// Verifies the 1.6 signature of an envelope carried in CHUNKs (PROTOCOL_DESIGN.md §11.6):
    /// `signature` is the text's last member and covers the SHA-256 of the text before it.
    pub fn verify_carried(&self) -> Result<(), BadSignature> {
        let prefix = crate::carried::signed_prefix(&self.received).ok_or(BadSignature)?;
        let digest = crate::carried::digest(prefix);
        signing::verify(
            &self.envelope.from,
            Purpose::Carried,
            &digest,
            &self.signature,
        )
    }

    /// The decoded envelope, unverified: for a caller that has verified it already.
    pub(crate) fn into_envelope(self) -> Envelope {
        self.envelope
    }

    /// [`ReceivedEnvelope::verify_carried`], then yields the envelope.
    pub fn into_verified_carried(self) -> Result<Envelope, BadSignature> {
        self.verify_carried()?;
        Ok(self.envelope)
    }

    /// Verifies, then yields the envelope.
    pub fn into_verified(self) -> Result<Envelope, BadSignature> {
        self.verify()?;
        Ok(self.envelope)
    }

    /// The canonical bytes the signature covers (JCS of the received object without
    /// `signature`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // The frame decoded once already, so it parses again under the same rules.
        match json::parse_strict_up_to(&self.received, self.limit) {
            Ok(Value::Object(mut object)) => {
                object.remove("signature");
                signing::canonicalize_object(&object)
            }
            _ => Vec::new(),
        }
    }
}
