//! One payload struct per message type (PROTOCOL_DESIGN.md §4).
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

/// EXEC_REQUEST: run a capability of the receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The capability's name.
    pub capability: String,
    /// Arguments, passed to the handler as they are.
    #[serde(default, deserialize_with = "crate::json::strict_value")]
    pub args: Value,
    /// How long the caller waits for the final response.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Whether the caller accepts partial responses.
    #[serde(default)]
    pub stream: bool,
}

fn default_timeout() -> u64 {
    DEFAULT_EXEC_TIMEOUT_MS
}

impl Validate for ExecRequest {
    fn validate(&self) -> Result<(), InvalidPayload> {
        validate_capability_name(&self.capability)?;
        if self.timeout_ms == 0 || self.timeout_ms > MAX_EXEC_TIMEOUT_MS {
            return invalid(format!("timeout_ms must be 1-{MAX_EXEC_TIMEOUT_MS}"));
        }
        Ok(())
    }
}

/// The state an EXEC_RESPONSE reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Final: the call succeeded; `result` holds its value.
    Ok,
    /// Not final: one streamed part in `result`; more follow.
    Partial,
    /// Final: the call failed; `error` says why.
    Error,
}

/// EXEC_RESPONSE: a result, a streamed part, or an error, for the request named by
/// `correlation_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecResponse {
    /// Final success, partial, or final error.
    pub status: ExecStatus,
    /// The value (for `ok` and `partial`).
    #[serde(
        default,
        deserialize_with = "crate::json::strict_present",
        skip_serializing_if = "Option::is_none"
    )]
    pub result: Option<Value>,
    /// Why the call failed (for `error` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorPayload>,
    /// Time the handler had run when this response was sent.
    pub execution_time_ms: u64,
}

impl Validate for ExecResponse {
    fn validate(&self) -> Result<(), InvalidPayload> {
        match (self.status, &self.result, &self.error) {
            (ExecStatus::Error, None, Some(_)) => Ok(()),
            (ExecStatus::Error, _, _) => invalid("status error needs error and no result"),
            (_, _, Some(_)) => invalid("only status error may carry error"),
            (ExecStatus::Partial, None, _) => invalid("status partial needs result"),
            _ => Ok(()),
        }
    }
}

/// INTENT, in one of its three forms, told apart by the `kind` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Intent {
    /// A natural-language request: `{kind:"query", query, context}`.
    Query(IntentQuery),
    /// A structured request: `{kind:"task", task, params}`.
    Task(IntentTask),
    /// The receiver's answer to a request: `{kind:"reply", status, required_input, cost}`.
    Reply(IntentReply),
}

impl Intent {
    /// A natural-language intent.
    pub fn query(query: impl Into<String>, context: Value) -> Self {
        Intent::Query(IntentQuery {
            query: query.into(),
            context,
        })
    }

    /// A structured intent.
    pub fn task(task: impl Into<String>, params: Value) -> Self {
        Intent::Task(IntentTask {
            task: task.into(),
            params,
        })
    }
}

impl<'de> Deserialize<'de> for Intent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Strictly: a duplicate key must not slip through the detour via a JSON tree.
        let Value::Object(mut value) = crate::json::strict_value(deserializer)? else {
            return Err(D::Error::custom("INTENT payload must be an object"));
        };
        let kind = match value.remove("kind") {
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("INTENT kind must be a string")),
            None => return Err(D::Error::missing_field("kind")),
        };
        let rest = Value::Object(value);
        match kind.as_str() {
            "query" => IntentQuery::deserialize(rest).map(Intent::Query),
            "task" => IntentTask::deserialize(rest).map(Intent::Task),
            "reply" => IntentReply::deserialize(rest).map(Intent::Reply),
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["query", "task", "reply"],
                ));
            }
        }
        .map_err(D::Error::custom)
    }
}

/// INTENT `kind: "query"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentQuery {
    /// What the caller wants, in natural language.
    pub query: String,
    /// Anything that helps the receiver understand it.
    #[serde(default, deserialize_with = "crate::json::strict_value")]
    pub context: Value,
}

/// INTENT `kind: "task"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentTask {
    /// The task's name.
    pub task: String,
    /// The task's parameters.
    #[serde(default, deserialize_with = "crate::json::strict_value")]
    pub params: Value,
}

/// The receiver's verdict on an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    /// The receiver can do it (see `capability` for how to EXEC it).
    Accepted,
    /// The receiver can do it once it has `required_input`.
    NeedsInput,
    /// The receiver will not or cannot do it.
    Declined,
}

/// The price an agent quotes for an intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// The amount, in `unit`s.
    pub amount: f64,
    /// The unit, e.g. `"USD"` or `"credits"`.
    pub unit: String,
}

/// INTENT `kind: "reply"` (its `correlation_id` names the request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentReply {
    /// The verdict.
    pub status: IntentStatus,
    /// Names of inputs still needed (for `needs_input`).
    #[serde(default)]
    pub required_input: Vec<String>,
    /// The quoted cost, if any.
    #[serde(default)]
    pub cost: Option<Cost>,
    /// The capability to EXEC to fulfil the intent, if the receiver names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// A human-readable note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Validate for Intent {
    fn validate(&self) -> Result<(), InvalidPayload> {
        match self {
            Intent::Query(q) if q.query.is_empty() => invalid("query must not be empty"),
            Intent::Task(t) if t.task.is_empty() => invalid("task must not be empty"),
            Intent::Reply(IntentReply {
                capability: Some(name),
                ..
            }) => validate_capability_name(name),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intent_kinds_are_not_confused() {
        let q: Intent =
            serde_json::from_value(json!({"kind":"query","query":"hi","context":{}})).expect("ok");
        assert!(matches!(q, Intent::Query(_)));
        // A reply's fields under kind "query" are refused, not reinterpreted.
        assert!(
            serde_json::from_value::<Intent>(json!({"kind":"query","status":"accepted"})).is_err()
        );
        assert!(serde_json::from_value::<Intent>(json!({"query":"hi"})).is_err());
        assert!(serde_json::from_value::<Intent>(json!({"kind":"other"})).is_err());
        let back = serde_json::to_value(&q).expect("serialize");
        assert_eq!(back, json!({"kind":"query","query":"hi","context":{}}));
    }

    #[test]
    fn exec_response_combinations() {
        let ok = ExecResponse {
            status: ExecStatus::Ok,
            result: Some(json!(1)),
            error: None,
            execution_time_ms: 1,
        };
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.error = Some(ErrorPayload::new(ErrorCode::HandlerError, "x"));
        assert!(bad.validate().is_err());
        bad.status = ExecStatus::Error;
        assert!(bad.validate().is_err(), "error with a result");
        bad.result = None;
        assert!(bad.validate().is_ok());
        let partial = ExecResponse {
            status: ExecStatus::Partial,
            result: None,
            error: None,
            execution_time_ms: 0,
        };
        assert!(partial.validate().is_err());
    }

    #[test]
    fn capability_names() {
        assert!(validate_capability_name("echo").is_ok());
        assert!(validate_capability_name("math.sum_v2-beta").is_ok());
        for bad in ["", "Echo", "a b", "é", &"x".repeat(65)] {
            assert!(validate_capability_name(bad).is_err(), "{bad}");
        }
    }
}
