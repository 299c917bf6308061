//! Data-channel payloads added in protocol 1.1 (PROTOCOL_DESIGN.md §11.4): the feature
//! announcement, credit for streamed parts, and cancellation.

use serde::{Deserialize, Serialize};

use super::{InvalidPayload, Validate, invalid};

/// Most entries a FEATURES list may carry.
pub const MAX_FEATURES: usize = 32;
/// Largest `window` of an EXEC_REQUEST and largest `parts` of a CREDIT.
pub const MAX_WINDOW: u32 = 1024;

/// The 1.1 feature: EXEC streams are flow-controlled (EXEC_REQUEST `window`, CREDIT).
pub const FEATURE_FLOW: &str = "flow";
/// The 1.1 feature: CANCEL ends a request the caller no longer waits for.
pub const FEATURE_CANCEL: &str = "cancel";
/// The 1.5 feature: EXEC_REQUEST `idempotency_key` (§11.10).
pub const FEATURE_IDEMPOTENCY: &str = "idempotency";
/// The 1.5 feature: `traceparent` / `tracestate` on EXEC_REQUEST and INTENT (§11.8).
pub const FEATURE_TRACE: &str = "trace";
/// The 1.5 feature: EXEC_REQUEST `grants` and the code FORBIDDEN (§11.9).
pub const FEATURE_GRANTS: &str = "grants";

/// FEATURES (agent → agent, data channel, before the first PING): the 1.x additions the
/// sender understands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Feature names (`[a-z0-9_.-]`, 1–64 bytes each, at most 32); unknown names are ignored.
    pub features: Vec<String>,
}

impl Features {
    /// Whether `feature` is listed.
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

impl Validate for Features {
    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.features.len() > MAX_FEATURES {
            return invalid(format!("at most {MAX_FEATURES} features"));
        }
        for name in &self.features {
            super::validate_capability_name(name)
                .map_err(|_| InvalidPayload(format!("bad feature name {name:?}")))?;
        }
        Ok(())
    }
}

/// CREDIT (caller → callee): the caller has room for `parts` more partial responses of the
/// streamed EXEC named by `correlation_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    /// How many more parts may be sent (1–1024).
    pub parts: u32,
}

impl Validate for Credit {
    fn validate(&self) -> Result<(), InvalidPayload> {
        check_window("parts", self.parts)
    }
}

/// CANCEL (caller → callee): the caller no longer waits for the request named by
/// `correlation_id`; the callee stops serving it and answers nothing more for it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Why, for logs (OPTIONAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub(super) fn check_window(field: &str, value: u32) -> Result<(), InvalidPayload> {
    if value == 0 || value > MAX_WINDOW {
        return invalid(format!("{field} must be 1-{MAX_WINDOW}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_lists_are_bounded_and_named() {
        let ok = Features {
            features: vec![FEATURE_FLOW.into(), FEATURE_CANCEL.into()],
        };
        assert!(ok.validate().is_ok());
        assert!(ok.has(FEATURE_FLOW) && !ok.has("teleport"));
        let long = Features {
            features: vec!["x".into(); MAX_FEATURES + 1],
        };
        assert!(long.validate().is_err());
        let bad = Features {
            features: vec!["Flow Control".into()],
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn credit_is_between_one_and_the_window_bound() {
        assert!(Credit { parts: 1 }.validate().is_ok());
        assert!(Credit { parts: MAX_WINDOW }.validate().is_ok());
        assert!(Credit { parts: 0 }.validate().is_err());
        assert!(
            Credit {
                parts: MAX_WINDOW + 1
            }
            .validate()
            .is_err()
        );
    }
}
