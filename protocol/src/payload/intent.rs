//! INTENT payloads: a query, a task, or the reply to either.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{InvalidPayload, Validate, invalid, validate_capability_name};

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
    /// The request's trace context (`traceparent`, `tracestate`), if it is a query or task.
    pub fn trace_context_mut(&mut self) -> Option<(&mut Option<String>, &mut Option<String>)> {
        match self {
            Intent::Query(q) => Some((&mut q.traceparent, &mut q.tracestate)),
            Intent::Task(t) => Some((&mut t.traceparent, &mut t.tracestate)),
            Intent::Reply(_) => None,
        }
    }

    /// A natural-language intent.
    pub fn query(query: impl Into<String>, context: Value) -> Self {
        Intent::Query(IntentQuery {
            query: query.into(),
            context,
            traceparent: None,
            tracestate: None,
        })
    }

    /// A structured intent.
    pub fn task(task: impl Into<String>, params: Value) -> Self {
        Intent::Task(IntentTask {
            task: task.into(),
            params,
            traceparent: None,
            tracestate: None,
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
    /// 1.5, only to a receiver that announced `trace` (§11.8): W3C `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// 1.5, with `traceparent`: W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
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
    /// 1.5, only to a receiver that announced `trace` (§11.8): W3C `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// 1.5, with `traceparent`: W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
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

impl IntentReply {
    /// `accepted`, with no cost, capability or message.
    pub fn accepted() -> Self {
        IntentReply {
            status: IntentStatus::Accepted,
            required_input: Vec::new(),
            cost: None,
            capability: None,
            message: None,
        }
    }

    /// `needs_input`, naming the inputs still needed.
    pub fn needs_input(required_input: Vec<String>) -> Self {
        IntentReply {
            status: IntentStatus::NeedsInput,
            required_input,
            ..IntentReply::accepted()
        }
    }

    /// `declined`, with a reason.
    pub fn declined(message: impl Into<String>) -> Self {
        IntentReply {
            status: IntentStatus::Declined,
            message: Some(message.into()),
            ..IntentReply::accepted()
        }
    }

    /// The same reply, quoting `cost`.
    pub fn with_cost(mut self, amount: f64, unit: impl Into<String>) -> Self {
        self.cost = Some(Cost {
            amount,
            unit: unit.into(),
        });
        self
    }

    /// The same reply, naming the capability to EXEC to fulfil the intent.
    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }

    /// The same reply, with a note.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

impl Validate for Intent {
    fn validate(&self) -> Result<(), InvalidPayload> {
        match self {
            Intent::Query(q) if q.query.is_empty() => invalid("query must not be empty"),
            Intent::Task(t) if t.task.is_empty() => invalid("task must not be empty"),
            Intent::Query(q) => {
                super::exec::validate_trace(q.traceparent.as_deref(), q.tracestate.as_deref())
            }
            Intent::Task(t) => {
                super::exec::validate_trace(t.traceparent.as_deref(), t.tracestate.as_deref())
            }
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
}
