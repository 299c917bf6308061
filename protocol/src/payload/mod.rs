//! One payload struct per message type (PROTOCOL_DESIGN.md §4): registration, signaling and
//! errors here; EXEC in `exec`, INTENT in `intent`.
//!
//! Every struct refuses unknown fields, so a payload can only ever be read as the type its
//! envelope names. [`Validate`] adds the checks serde cannot express (lengths, names, the
//! combinations EXEC_RESPONSE allows).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes::ErrorCode;
use crate::timestamp::Timestamp;

/// Longest capability name, in bytes.
pub const MAX_CAPABILITY_NAME: usize = 64;
/// Most capabilities one agent may advertise.
pub const MAX_CAPABILITIES: usize = 64;
/// Longest capability description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Default EXEC timeout when `timeout_ms` is not given.
pub const DEFAULT_EXEC_TIMEOUT_MS: u64 = 30_000;
/// Largest accepted `timeout_ms` (one hour).
pub const MAX_EXEC_TIMEOUT_MS: u64 = 3_600_000;

/// A payload that parsed but breaks a rule of the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload: {0}")]
pub struct InvalidPayload(pub String);

/// Checks beyond the shape of a payload.
pub trait Validate {
    /// `Ok` when the payload obeys every rule of its type.
    fn validate(&self) -> Result<(), InvalidPayload>;
}

fn invalid(why: impl Into<String>) -> Result<(), InvalidPayload> {
    Err(InvalidPayload(why.into()))
}

/// CHALLENGE (gateway → client, first frame): the nonce a REGISTER must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// 32 random bytes, base64url without padding (43 characters).
    pub nonce: String,
    /// When the nonce stops being accepted.
    pub expires_at: Timestamp,
}

/// One capability an agent offers for EXEC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    /// `[a-z0-9_.-]`, 1–64 bytes.
    pub name: String,
    /// Human-readable description (≤ 1024 bytes).
    #[serde(default)]
    pub description: String,
    /// Optional JSON Schema of the `args` object.
    #[serde(
        default,
        deserialize_with = "crate::json::strict_present",
        skip_serializing_if = "Option::is_none"
    )]
    pub args_schema: Option<Value>,
}

impl Capability {
    /// A capability with a name and description and no schema.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Capability {
            name: name.into(),
            description: description.into(),
            args_schema: None,
        }
    }
}

impl Validate for Capability {
    fn validate(&self) -> Result<(), InvalidPayload> {
        validate_capability_name(&self.name)?;
        if self.description.len() > MAX_DESCRIPTION {
            return invalid(format!(
                "description of {:?} is over {MAX_DESCRIPTION} bytes",
                self.name
            ));
        }
        if let Some(schema) = &self.args_schema
            && !schema.is_object()
            && !schema.is_boolean()
        {
            return invalid("args_schema must be a JSON Schema object");
        }
        Ok(())
    }
}

/// Checks a capability name: `[a-z0-9_.-]`, 1–64 bytes.
pub fn validate_capability_name(name: &str) -> Result<(), InvalidPayload> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CAPABILITY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "capability name {name:?} must be 1-{MAX_CAPABILITY_NAME} of [a-z0-9_.-]"
        ))
    }
}

/// REGISTER (client → gateway): proof of possession plus what the agent advertises.
/// Signed with the registration tag (PROTOCOL_DESIGN.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// The agent's public key, multibase `z6Mk…` (must be the key of `from`).
    pub public_key: String,
    /// The nonce from this session's CHALLENGE.
    pub nonce: String,
    /// The gateway URL the client dialed, e.g. `ws://127.0.0.1:8000/ws`.
    pub audience: String,
    /// Capabilities offered for EXEC.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Whether `/agents` lists this agent (default true).
    #[serde(default = "default_true")]
    pub listed: bool,
}

fn default_true() -> bool {
    true
}

impl Validate for Register {
    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.capabilities.len() > MAX_CAPABILITIES {
            return invalid(format!("more than {MAX_CAPABILITIES} capabilities"));
        }
        let mut names = std::collections::HashSet::new();
        for capability in &self.capabilities {
            capability.validate()?;
            if !names.insert(capability.name.as_str()) {
                return invalid(format!("capability {:?} listed twice", capability.name));
            }
        }
        if self.audience.is_empty() || self.audience.len() > 512 {
            return invalid("audience must be 1-512 bytes");
        }
        Ok(())
    }
}

/// REGISTERED (gateway → client): registration succeeded; the agent is routable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    /// Identifies this session in the gateway's logs.
    pub session_id: String,
    /// Idle timeout after which the gateway drops a silent session.
    pub idle_timeout_ms: u64,
    /// Largest frame the gateway accepts.
    pub max_frame_bytes: u64,
    /// STUN/TURN servers the gateway offers for links (1.1; absent when it offers none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServerOffer>,
    /// How long the offered credentials stay valid, from now (1.1; with `ice_servers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_servers_ttl_ms: Option<u64>,
}

/// A STUN or TURN server offered in REGISTERED, with short-lived credentials for TURN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerOffer {
    /// `stun:…`, `turn:…`, `turns:…` URLs.
    pub urls: Vec<String>,
    /// TURN user name (coturn's REST scheme: `expiry:did`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// UNREGISTER (client → gateway): leave the registry and close.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unregister {
    /// Free-form reason, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// OFFER or ANSWER: a WebRTC session description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDescription {
    /// The SDP text (carries the DTLS fingerprint that the signature binds to `from`).
    pub sdp: String,
}

/// ICE_CANDIDATE: one trickled candidate; `candidate: ""` ends the candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceCandidate {
    /// The candidate line (`candidate:…`), or empty for end-of-candidates.
    pub candidate: String,
    /// The media stream identification tag.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The m-line index.
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

/// PING / PONG: liveness probe; PONG echoes the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Chosen by the pinger; echoed in the PONG.
    pub sequence: u64,
}

/// ERROR: something the receiver of a message refused, or a failure of the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPayload {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable explanation (never secrets).
    pub message: String,
    /// Optional structured details.
    #[serde(
        default,
        deserialize_with = "crate::json::strict_present",
        skip_serializing_if = "Option::is_none"
    )]
    pub details: Option<Value>,
}

impl ErrorPayload {
    /// An error with a code and message and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorPayload {
            code,
            message: message.into(),
            details: None,
        }
    }
}

mod chunk;
mod exec;
mod intent;
mod link;
mod relay;

pub use chunk::{
    Chunk, FEATURE_CHUNK_DIGEST, FEATURE_CHUNKS, MAX_CHUNK_BYTES, MAX_CHUNK_DATA_CHARS,
};
pub use exec::{
    ExecRequest, ExecResponse, ExecStatus, MAX_IDEMPOTENCY_KEY, validate_idempotency_key,
};
pub use intent::{Cost, Intent, IntentQuery, IntentReply, IntentStatus, IntentTask};
pub use link::{
    Cancel, Credit, FEATURE_CANCEL, FEATURE_FLOW, FEATURE_GRANTS, FEATURE_IDEMPOTENCY,
    FEATURE_TRACE, Features, MAX_FEATURES, MAX_WINDOW,
};
pub use relay::{
    MAX_RELAY_CHUNK, MAX_RELAY_DATA_CHARS, RELAY_KEY_CHARS, RelayAccept, RelayClose, RelayData,
    RelayOpen, decode_relay_key,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        assert!(validate_capability_name("echo").is_ok());
        assert!(validate_capability_name("math.sum_v2-beta").is_ok());
        for bad in ["", "Echo", "a b", "é", &"x".repeat(65)] {
            assert!(validate_capability_name(bad).is_err(), "{bad}");
        }
    }
}
