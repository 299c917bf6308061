//! EXEC_REQUEST and EXEC_RESPONSE payloads.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::grant::{Grant, MAX_GRANT_CHAIN};

use super::{
    DEFAULT_EXEC_TIMEOUT_MS, ErrorPayload, InvalidPayload, MAX_EXEC_TIMEOUT_MS, Validate, invalid,
    validate_capability_name,
};

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
    /// 1.1, with `stream` and only to a callee that announced `flow`: how many partial
    /// responses the callee may send before it waits for CREDIT (1–1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// 1.5, only to a callee that announced `idempotency` (§11.10): the caller's name for
    /// this operation; a repeat with the same key is answered with the recorded outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// 1.5, only to a callee that announced `trace` (§11.8): W3C `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// 1.5, with `traceparent`: W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// 1.5, only to a callee that announced `grants` (§11.9): the chain of grants that lets
    /// the caller call this capability, first grant first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

impl ExecRequest {
    /// A request to run `capability` with `args`: default timeout, not streamed.
    pub fn new(capability: impl Into<String>, args: Value) -> Self {
        ExecRequest {
            capability: capability.into(),
            args,
            timeout_ms: DEFAULT_EXEC_TIMEOUT_MS,
            stream: false,
            window: None,
            idempotency_key: None,
            traceparent: None,
            tracestate: None,
            grants: Vec::new(),
        }
    }

    /// What requests with one idempotency key must agree on (§11.10): the SHA-256 of the
    /// canonical JSON of `{"capability", "args"}`.
    pub fn operation_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let operation = serde_json::json!({"capability": self.capability, "args": self.args});
        Sha256::digest(crate::signing::canonicalize(&operation)).into()
    }
}

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Checks an idempotency key: 1–128 bytes of printable ASCII without spaces.
pub fn validate_idempotency_key(key: &str) -> Result<(), InvalidPayload> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} bytes of printable ASCII"
        ))
    }
}

/// Checks `traceparent` and `tracestate`: each well formed, `tracestate` only with
/// `traceparent`.
pub(super) fn validate_trace(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Result<(), InvalidPayload> {
    let bad = |e: crate::trace::BadTraceContext| InvalidPayload(e.to_string());
    match (traceparent, tracestate) {
        (None, Some(_)) => invalid("tracestate needs traceparent"),
        (None, None) => Ok(()),
        (Some(parent), state) => {
            crate::trace::validate_traceparent(parent).map_err(bad)?;
            state.map_or(Ok(()), |s| {
                crate::trace::validate_tracestate(s).map_err(bad)
            })
        }
    }
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
        match self.window {
            Some(_) if !self.stream => invalid("window needs stream"),
            Some(window) => super::link::check_window("window", window),
            None => Ok(()),
        }?;
        if let Some(key) = &self.idempotency_key {
            validate_idempotency_key(key)?;
        }
        validate_trace(self.traceparent.as_deref(), self.tracestate.as_deref())?;
        if self.grants.len() > MAX_GRANT_CHAIN {
            return invalid(format!("at most {MAX_GRANT_CHAIN} grants"));
        }
        for grant in &self.grants {
            grant.validate().map_err(|why| InvalidPayload(why.into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use serde_json::json;

    #[test]
    fn a_window_needs_stream_and_stays_within_its_bounds() {
        let mut request = ExecRequest::new("count", json!(null));
        request.window = Some(8);
        assert!(request.validate().is_err(), "window without stream");
        request.stream = true;
        assert!(request.validate().is_ok());
        for bad in [0, crate::payload::MAX_WINDOW + 1] {
            request.window = Some(bad);
            assert!(request.validate().is_err(), "window {bad}");
        }
    }

    #[test]
    fn keys_trace_context_and_grants_are_checked() {
        let mut request = ExecRequest::new("sum", json!(null));
        request.idempotency_key = Some("order-42:v1".into());
        request.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        request.tracestate = Some("vendor=1".into());
        assert!(request.validate().is_ok());
        for bad in ["", "has space", &"k".repeat(MAX_IDEMPOTENCY_KEY + 1)] {
            let mut keyed = request.clone();
            keyed.idempotency_key = Some(bad.into());
            assert!(keyed.validate().is_err(), "{bad:?}");
        }
        let mut untraced = request.clone();
        untraced.traceparent = None;
        assert!(untraced.validate().is_err(), "tracestate alone");
        let mut bad_trace = request.clone();
        bad_trace.traceparent = Some("00-xyz".into());
        assert!(bad_trace.validate().is_err());
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
}
