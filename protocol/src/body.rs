//! Message types and the typed body (`type` + `payload`) of an envelope.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::json::{JsonError, check_safe_f64, check_safe_u64, check_value_at};
use crate::payload::{
    Cancel, Challenge, Chunk, Credit, ErrorPayload, ExecRequest, ExecResponse, Features,
    IceCandidate, Intent, InvalidPayload, Ping, Register, Registered, RelayAccept, RelayClose,
    RelayData, RelayOpen, SessionDescription, Unregister, Validate,
};

macro_rules! message_types {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// The `type` of an envelope.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $( $(#[$doc])* $variant, )*
        }

        impl MessageType {
            /// Every message type.
            pub const ALL: &'static [MessageType] = &[$(MessageType::$variant,)*];

            /// The wire name, e.g. `"EXEC_REQUEST"`.
            pub const fn as_str(self) -> &'static str {
                match self { $( MessageType::$variant => $text, )* }
            }
        }

        impl FromStr for MessageType {
            type Err = UnknownMessageType;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(MessageType::$variant), )*
                    other => Err(UnknownMessageType(other.chars().take(64).collect())),
                }
            }
        }
    };
}

message_types! {
    /// Gateway → client: the nonce to sign (first frame of a session).
    Challenge => "CHALLENGE",
    /// Client → gateway: proof of possession and advertised capabilities.
    Register => "REGISTER",
    /// Gateway → client: registration accepted.
    Registered => "REGISTERED",
    /// Client → gateway: leave.
    Unregister => "UNREGISTER",
    /// Peer → peer via gateway: WebRTC offer.
    Offer => "OFFER",
    /// Peer → peer via gateway: WebRTC answer.
    Answer => "ANSWER",
    /// Peer → peer via gateway: trickled ICE candidate.
    IceCandidate => "ICE_CANDIDATE",
    /// Peer → peer: an intent or its reply.
    Intent => "INTENT",
    /// Peer → peer: run a capability.
    ExecRequest => "EXEC_REQUEST",
    /// Peer → peer: a capability's result, streamed part, or error.
    ExecResponse => "EXEC_RESPONSE",
    /// Any direction: a refusal or failure.
    Error => "ERROR",
    /// Any direction: liveness probe.
    Ping => "PING",
    /// Any direction: answer to PING.
    Pong => "PONG",
    /// Peer → peer (1.1): the 1.x additions the sender understands.
    Features => "FEATURES",
    /// Peer → peer (1.1): room for more streamed parts.
    Credit => "CREDIT",
    /// Peer → peer (1.1): the caller stopped waiting for a request.
    Cancel => "CANCEL",
    /// Peer → peer via gateway (1.2): open a gateway-relayed link.
    RelayOpen => "RELAY_OPEN",
    /// Peer → peer via gateway (1.2): accept a gateway-relayed link.
    RelayAccept => "RELAY_ACCEPT",
    /// Peer → peer via gateway (1.2): one encrypted record of a gateway-relayed link.
    RelayData => "RELAY_DATA",
    /// Peer → peer via gateway (1.2): the sender ended a gateway-relayed link.
    RelayClose => "RELAY_CLOSE",
    /// Peer → peer (1.4): one piece of a message larger than one envelope.
    Chunk => "CHUNK",
}

/// A `type` string that names no message type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown message type {0:?}")]
pub struct UnknownMessageType(pub String);

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload cannot be the payload of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The shape does not match the type's struct (missing, extra or mistyped fields).
    #[error("payload does not match {ty}: {reason}")]
    Shape {
        /// The envelope's type.
        ty: MessageType,
        /// serde's explanation.
        reason: String,
    },
    /// The shape matches but a rule is broken.
    #[error("{ty} {source}")]
    Invalid {
        /// The envelope's type.
        ty: MessageType,
        /// The rule.
        source: InvalidPayload,
    },
}

/// The typed content of an envelope: its type and the payload of exactly that type.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// CHALLENGE.
    Challenge(Challenge),
    /// REGISTER.
    Register(Register),
    /// REGISTERED.
    Registered(Registered),
    /// UNREGISTER.
    Unregister(Unregister),
    /// OFFER.
    Offer(SessionDescription),
    /// ANSWER.
    Answer(SessionDescription),
    /// ICE_CANDIDATE.
    IceCandidate(IceCandidate),
    /// INTENT.
    Intent(Intent),
    /// EXEC_REQUEST.
    ExecRequest(ExecRequest),
    /// EXEC_RESPONSE.
    ExecResponse(ExecResponse),
    /// ERROR.
    Error(ErrorPayload),
    /// PING.
    Ping(Ping),
    /// PONG.
    Pong(Ping),
    /// FEATURES (1.1).
    Features(Features),
    /// CREDIT (1.1).
    Credit(Credit),
    /// CANCEL (1.1).
    Cancel(Cancel),
    /// RELAY_OPEN (1.2).
    RelayOpen(RelayOpen),
    /// RELAY_ACCEPT (1.2).
    RelayAccept(RelayAccept),
    /// RELAY_DATA (1.2).
    RelayData(RelayData),
    /// RELAY_CLOSE (1.2).
    RelayClose(RelayClose),
    /// CHUNK (1.4).
    Chunk(Chunk),
}

impl Body {
    /// The envelope `type` this body goes with.
    pub fn message_type(&self) -> MessageType {
        match self {
            Body::Challenge(_) => MessageType::Challenge,
            Body::Register(_) => MessageType::Register,
            Body::Registered(_) => MessageType::Registered,
            Body::Unregister(_) => MessageType::Unregister,
            Body::Offer(_) => MessageType::Offer,
            Body::Answer(_) => MessageType::Answer,
            Body::IceCandidate(_) => MessageType::IceCandidate,
            Body::Intent(_) => MessageType::Intent,
            Body::ExecRequest(_) => MessageType::ExecRequest,
            Body::ExecResponse(_) => MessageType::ExecResponse,
            Body::Error(_) => MessageType::Error,
            Body::Ping(_) => MessageType::Ping,
            Body::Pong(_) => MessageType::Pong,
            Body::Features(_) => MessageType::Features,
            Body::Credit(_) => MessageType::Credit,
            Body::Cancel(_) => MessageType::Cancel,
            Body::RelayOpen(_) => MessageType::RelayOpen,
            Body::RelayAccept(_) => MessageType::RelayAccept,
            Body::RelayData(_) => MessageType::RelayData,
            Body::RelayClose(_) => MessageType::RelayClose,
            Body::Chunk(_) => MessageType::Chunk,
        }
    }

    /// The payload as a JSON value.
    pub fn payload_value(&self) -> Value {
        fn to<T: Serialize>(payload: &T) -> Value {
            serde_json::to_value(payload).expect("payload structs always serialize")
        }
        match self {
            Body::Challenge(p) => to(p),
            Body::Register(p) => to(p),
            Body::Registered(p) => to(p),
            Body::Unregister(p) => to(p),
            Body::Offer(p) | Body::Answer(p) => to(p),
            Body::IceCandidate(p) => to(p),
            Body::Intent(p) => to(p),
            Body::ExecRequest(p) => to(p),
            Body::ExecResponse(p) => to(p),
            Body::Error(p) => to(p),
            Body::Ping(p) | Body::Pong(p) => to(p),
            Body::Features(p) => to(p),
            Body::Credit(p) => to(p),
            Body::Cancel(p) => to(p),
            Body::RelayOpen(p) => to(p),
            Body::RelayAccept(p) => to(p),
            Body::RelayData(p) => to(p),
            Body::RelayClose(p) => to(p),
            Body::Chunk(p) => to(p),
        }
    }

    /// Reads `payload` as the payload of `ty` — and only of `ty` — and checks its rules.
    pub fn from_payload(ty: MessageType, payload: &Value) -> Result<Self, PayloadError> {
        let body = read(ty, payload).map_err(|e| PayloadError::Shape {
            ty,
            reason: e.to_string(),
        })?;
        body.validate()
            .map_err(|source| PayloadError::Invalid { ty, source })?;
        Ok(body)
    }

    /// [`Body::from_payload`] from the payload's JSON text, without building a JSON tree.
    pub fn from_payload_json(ty: MessageType, payload: &str) -> Result<Self, PayloadError> {
        let shape = |e: serde_json::Error| PayloadError::Shape {
            ty,
            reason: e.to_string(),
        };
        let mut deserializer = serde_json::Deserializer::from_str(payload);
        let body = read(ty, &mut deserializer).map_err(shape)?;
        deserializer.end().map_err(shape)?;
        body.validate()
            .map_err(|source| PayloadError::Invalid { ty, source })?;
        Ok(body)
    }

    /// Checks the payload's rules (see [`Validate`]) and the limits of PROTOCOL_DESIGN.md §8
    /// that the typed form does not enforce by itself: nesting depth of free-form members and
    /// the integer range of numeric members.
    pub fn validate(&self) -> Result<(), InvalidPayload> {
        match self {
            Body::Register(p) => p.validate(),
            Body::Intent(p) => p.validate(),
            Body::ExecRequest(p) => p.validate(),
            Body::ExecResponse(p) => p.validate(),
            Body::Features(p) => p.validate(),
            Body::Credit(p) => p.validate(),
            Body::RelayOpen(p) => p.validate(),
            Body::RelayAccept(p) => p.validate(),
            Body::RelayData(p) => p.validate(),
            Body::RelayClose(p) => p.validate(),
            Body::Chunk(p) => p.validate(),
            _ => Ok(()),
        }?;
        self.check_limits()
    }

    fn check_limits(&self) -> Result<(), InvalidPayload> {
        // Depths as `json::check_value_at` counts them: envelope 0, payload 1, its members 2.
        let limit =
            |result: Result<(), JsonError>| result.map_err(|e| InvalidPayload(e.to_string()));
        let free = |value: &Value, depth| limit(check_value_at(value, depth));
        match self {
            Body::Register(p) => p
                .capabilities
                .iter()
                .filter_map(|c| c.args_schema.as_ref())
                .try_for_each(|schema| free(schema, 4)),
            Body::Registered(p) => {
                limit(check_safe_u64(p.idle_timeout_ms))?;
                limit(check_safe_u64(p.max_frame_bytes))
            }
            Body::Intent(Intent::Query(q)) => free(&q.context, 2),
            Body::Intent(Intent::Task(t)) => free(&t.params, 2),
            Body::Intent(Intent::Reply(r)) => match &r.cost {
                Some(cost) => limit(check_safe_f64(cost.amount)),
                None => Ok(()),
            },
            Body::ExecRequest(p) => free(&p.args, 2),
            Body::ExecResponse(p) => {
                limit(check_safe_u64(p.execution_time_ms))?;
                if let Some(result) = &p.result {
                    free(result, 2)?;
                }
                match p.error.as_ref().and_then(|e| e.details.as_ref()) {
                    Some(details) => free(details, 3),
                    None => Ok(()),
                }
            }
            Body::Error(p) => match &p.details {
                Some(details) => free(details, 2),
                None => Ok(()),
            },
            Body::Ping(p) | Body::Pong(p) => limit(check_safe_u64(p.sequence)),
            Body::RelayData(p) => limit(check_safe_u64(p.seq)),
            Body::Challenge(_)
            | Body::Unregister(_)
            | Body::Offer(_)
            | Body::Answer(_)
            | Body::IceCandidate(_)
            | Body::Features(_)
            | Body::Credit(_)
            | Body::Cancel(_)
            | Body::RelayOpen(_)
            | Body::RelayAccept(_)
            | Body::RelayClose(_)
            | Body::Chunk(_) => Ok(()),
        }
    }
}

/// Reads the payload of `ty` from any deserializer (a JSON text or a JSON tree).
fn read<'de, D: Deserializer<'de>>(ty: MessageType, d: D) -> Result<Body, D::Error> {
    Ok(match ty {
        MessageType::Challenge => Body::Challenge(Deserialize::deserialize(d)?),
        MessageType::Register => Body::Register(Deserialize::deserialize(d)?),
        MessageType::Registered => Body::Registered(Deserialize::deserialize(d)?),
        MessageType::Unregister => Body::Unregister(Deserialize::deserialize(d)?),
        MessageType::Offer => Body::Offer(Deserialize::deserialize(d)?),
        MessageType::Answer => Body::Answer(Deserialize::deserialize(d)?),
        MessageType::IceCandidate => Body::IceCandidate(Deserialize::deserialize(d)?),
        MessageType::Intent => Body::Intent(Deserialize::deserialize(d)?),
        MessageType::ExecRequest => Body::ExecRequest(Deserialize::deserialize(d)?),
        MessageType::ExecResponse => Body::ExecResponse(Deserialize::deserialize(d)?),
        MessageType::Error => Body::Error(Deserialize::deserialize(d)?),
        MessageType::Ping => Body::Ping(Deserialize::deserialize(d)?),
        MessageType::Pong => Body::Pong(Deserialize::deserialize(d)?),
        MessageType::Features => Body::Features(Deserialize::deserialize(d)?),
        MessageType::Credit => Body::Credit(Deserialize::deserialize(d)?),
        MessageType::Cancel => Body::Cancel(Deserialize::deserialize(d)?),
        MessageType::RelayOpen => Body::RelayOpen(Deserialize::deserialize(d)?),
        MessageType::RelayAccept => Body::RelayAccept(Deserialize::deserialize(d)?),
        MessageType::RelayData => Body::RelayData(Deserialize::deserialize(d)?),
        MessageType::RelayClose => Body::RelayClose(Deserialize::deserialize(d)?),
        MessageType::Chunk => Body::Chunk(Deserialize::deserialize(d)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_names_round_trip() {
        for ty in MessageType::ALL {
            assert_eq!(ty.as_str().parse::<MessageType>(), Ok(*ty));
        }
        assert!("exec_request".parse::<MessageType>().is_err());
    }

    #[test]
    fn a_payload_is_read_only_as_its_own_type() {
        let exec_response = json!({"status":"ok","result":1,"execution_time_ms":3});
        assert!(Body::from_payload(MessageType::ExecResponse, &exec_response).is_ok());
        for ty in MessageType::ALL {
            if *ty != MessageType::ExecResponse {
                assert!(
                    Body::from_payload(*ty, &exec_response).is_err(),
                    "an EXEC_RESPONSE payload was accepted as {ty}"
                );
            }
        }
    }
}
