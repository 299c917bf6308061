//! Decoding a frame into a typed envelope in one pass, without building a JSON tree
//! (PROTOCOL_DESIGN.md §3, §4, §8).
//!
//! The top-level members are read as borrowed raw JSON (a custom visitor refuses duplicate
//! and unknown members), then each member is read as its type, and the payload straight into
//! the struct its `type` names. Free-form JSON inside payloads goes through the strict
//! parser's rules (`json::strict_value`). Verification re-parses the frame into a tree only
//! when it is asked for.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use ed25519_dalek::Signature;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::body::{Body, MessageType};
use crate::did::Did;
use crate::envelope::{
    DecodeError, DecodeErrorKind, Envelope, PROTOCOL_VERSION, check_presence, check_rules,
};
use crate::json::{JsonError, MAX_ENVELOPE_BYTES};
use crate::message_id::MessageId;
use crate::signing;
use crate::timestamp::Timestamp;

/// The envelope's members as raw JSON text.
#[derive(Default)]
struct Members<'a> {
    id: Option<&'a RawValue>,
    ty: Option<&'a RawValue>,
    from: Option<&'a RawValue>,
    to: Option<&'a RawValue>,
    timestamp: Option<&'a RawValue>,
    correlation_id: Option<&'a RawValue>,
    version: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
    signature: Option<&'a RawValue>,
    /// `id` appeared more than once: no `id` can be trusted to correlate a refusal.
    duplicate_id: bool,
}

impl<'a> Members<'a> {
    fn slot(&mut self, name: &str) -> Option<&mut Option<&'a RawValue>> {
        Some(match name {
            "id" => &mut self.id,
            "type" => &mut self.ty,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "timestamp" => &mut self.timestamp,
            "correlation_id" => &mut self.correlation_id,
            "version" => &mut self.version,
            "payload" => &mut self.payload,
            "signature" => &mut self.signature,
            _ => return None,
        })
    }
}

/// Reads the top-level object, recording the precise problem in `problem`.
struct MembersSeed<'p> {
    problem: &'p Cell<Option<DecodeErrorKind>>,
}

impl<'de> DeserializeSeed<'de> for MembersSeed<'_> {
    type Value = Members<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Members<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed<'_> {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        // An unknown or repeated member is recorded, and the rest is still read, so that a
        // refusal can carry the frame's `id` (§4 ERROR).
        let mut members = Members::default();
        let note = |kind| {
            let first = self.problem.take().unwrap_or(kind);
            self.problem.set(Some(first));
        };
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let Some(slot) = members.slot(&name) else {
                note(DecodeErrorKind::UnknownField(
                    name.chars().take(64).collect(),
                ));
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if slot.is_some() {
                map.next_value::<IgnoredAny>()?;
                members.duplicate_id |= name == "id";
                note(DecodeErrorKind::Json(JsonError::DuplicateKey(
                    name.into_owned(),
                )));
                continue;
            }
            *slot = Some(map.next_value()?);
        }
        Ok(members)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Members<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.problem.set(Some(DecodeErrorKind::NotAnObject));
        Err(serde::de::Error::custom("not an object"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Members<'de>, E> {
        self.not_an_object()
    }
}

impl MembersSeed<'_> {
    fn not_an_object<T, E: serde::de::Error>(&self) -> Result<T, E> {
        self.problem.set(Some(DecodeErrorKind::NotAnObject));
        Err(E::custom("not an object"))
    }
}

/// A string member's text (`None` for JSON `null`).
fn string_member<'a>(
    raw: &'a RawValue,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, DecodeErrorKind> {
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    let bad = || DecodeErrorKind::BadField {
        field,
        reason: "must be a string".into(),
    };
    if !text.starts_with('"') {
        return Err(bad());
    }
    match serde_json::from_str::<&str>(text) {
        Ok(borrowed) => Ok(Some(Cow::Borrowed(borrowed))),
        Err(_) => serde_json::from_str::<String>(text)
            .map(|owned| Some(Cow::Owned(owned)))
            .map_err(|_| bad()),
    }
}

fn required<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Cow<'a, str>, DecodeErrorKind> {
    raw.map(|raw| string_member(raw, field))
        .transpose()?
        .flatten()
        .ok_or(DecodeErrorKind::MissingField(field))
}

fn optional<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, DecodeErrorKind> {
    Ok(raw
        .map(|raw| string_member(raw, field))
        .transpose()?
        .flatten())
}

fn parsed<T, E: fmt::Display>(
    text: &str,
    field: &'static str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, DecodeErrorKind> {
    parse(text).map_err(|e| DecodeErrorKind::BadField {
        field,
        reason: e.to_string(),
    })
}

/// Decodes `bytes` into an envelope and its signature.
pub(crate) fn decode(
    bytes: &[u8],
    limit: usize,
    known: &dyn Fn(&str) -> Option<Did>,
) -> Result<(Envelope, Signature), DecodeError> {
    let members = read_object(bytes, limit)?;
    let id = message_id(&members);
    let fail = |kind| DecodeError { kind, id };
    let head = read_head(&members, known).map_err(fail)?;
    let payload = members
        .payload
        .ok_or(DecodeErrorKind::MissingField("payload"))
        .map_err(fail)?;
    let body = Body::from_payload_json(head.ty, payload.get()).map_err(|e| fail(e.into()))?;
    let envelope = Envelope {
        id: head.id,
        from: head.from,
        to: head.to,
        timestamp: head.timestamp,
        correlation_id: head.correlation_id,
        body,
    };
    check_rules(&envelope).map_err(|rule| fail(DecodeErrorKind::Rule(rule)))?;
    let signature = read_signature(&members).map_err(fail)?;
    Ok((envelope, signature))
}

/// Decodes everything of `bytes` but the payload, which must only be a JSON object.
pub(crate) fn decode_header(
    bytes: &[u8],
    known: &dyn Fn(&str) -> Option<Did>,
) -> Result<Head, DecodeError> {
    let members = read_object(bytes, MAX_ENVELOPE_BYTES)?;
    let id = message_id(&members);
    let fail = |kind| DecodeError { kind, id };
    let head = read_head(&members, known).map_err(fail)?;
    match members.payload {
        None => return Err(fail(DecodeErrorKind::MissingField("payload"))),
        Some(payload) if !payload.get().starts_with('{') => {
            return Err(fail(DecodeErrorKind::BadField {
                field: "payload",
                reason: "must be an object".into(),
            }));
        }
        Some(_) => {}
    }
    check_presence(head.ty, head.to.is_some(), head.correlation_id.is_some())
        .map_err(|rule| fail(DecodeErrorKind::Rule(rule)))?;
    read_signature(&members).map_err(fail)?;
    Ok(head)
}

/// Reads the top-level object's members as raw JSON, refusing oversize frames, bad syntax and
/// unknown or repeated members.
fn read_object(bytes: &[u8], limit: usize) -> Result<Members<'_>, DecodeError> {
    let without_id = |kind| DecodeError { kind, id: None };
    if bytes.len() > limit {
        return Err(without_id(DecodeErrorKind::Json(JsonError::TooLarge {
            size: bytes.len(),
            limit,
        })));
    }
    let problem = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let members = MembersSeed { problem: &problem }
        .deserialize(&mut deserializer)
        .and_then(|members| deserializer.end().map(|()| members));
    match (members, problem.take()) {
        (Ok(members), Some(kind)) => Err(DecodeError {
            kind,
            id: message_id(&members),
        }),
        (Err(_), Some(kind)) => Err(without_id(kind)),
        (Ok(members), None) => Ok(members),
        (Err(e), None) => Err(without_id(DecodeErrorKind::Json(JsonError::Syntax(
            e.to_string(),
        )))),
    }
}

fn read_signature(members: &Members<'_>) -> Result<Signature, DecodeErrorKind> {
    required(members.signature, "signature")
        .map_err(|kind| match kind {
            DecodeErrorKind::BadField { .. } => DecodeErrorKind::SignatureEncoding,
            other => other,
        })
        .and_then(|text| signing::decode_signature(&text).ok_or(DecodeErrorKind::SignatureEncoding))
}

/// The frame's `id`, when it has exactly one and it is a valid message id.
fn message_id(members: &Members<'_>) -> Option<MessageId> {
    if members.duplicate_id {
        return None;
    }
    members
        .id
        .and_then(|raw| string_member(raw, "id").ok().flatten())
        .and_then(|text| MessageId::parse(&text).ok())
}

/// The envelope's members other than the payload and signature, decoded.
pub(crate) struct Head {
    pub(crate) id: MessageId,
    pub(crate) ty: MessageType,
    pub(crate) from: Did,
    pub(crate) to: Option<Did>,
    pub(crate) timestamp: Timestamp,
    pub(crate) correlation_id: Option<MessageId>,
}

fn read_head(
    members: &Members<'_>,
    known: &dyn Fn(&str) -> Option<Did>,
) -> Result<Head, DecodeErrorKind> {
    let did = |text: &str| match known(text) {
        Some(did) => {
            debug_assert_eq!(did.to_string(), text, "resolver returned another DID");
            Ok(did)
        }
        None => Did::parse(text),
    };
    let version = required(members.version, "version")?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeErrorKind::UnsupportedVersion(
            version.chars().take(32).collect(),
        ));
    }
    let type_name = required(members.ty, "type")?;
    let ty: MessageType = type_name
        .parse()
        .map_err(|_| DecodeErrorKind::UnknownType(type_name.chars().take(64).collect()))?;
    let id = parsed(&required(members.id, "id")?, "id", MessageId::parse)?;
    let from = parsed(&required(members.from, "from")?, "from", did)?;
    let to = optional(members.to, "to")?
        .map(|text| parsed(&text, "to", did))
        .transpose()?;
    let timestamp = parsed(
        &required(members.timestamp, "timestamp")?,
        "timestamp",
        Timestamp::parse,
    )?;
    let correlation_id = optional(members.correlation_id, "correlation_id")?
        .map(|text| parsed(&text, "correlation_id", MessageId::parse))
        .transpose()?;
    Ok(Head {
        id,
        ty,
        from,
        to,
        timestamp,
        correlation_id,
    })
}
