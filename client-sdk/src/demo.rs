//! Demonstration capabilities and INTENT responder, used by `ioap serve`, the examples and the
//! tests: `echo`, `sum`, `sleep`, `count` (streaming) and `fail`.

use std::time::Duration;

use ioap_protocol::Did;
use ioap_protocol::payload::{Intent, IntentReply};
use serde_json::{Value, json};

use crate::handlers::{CapabilityHandler, ExecCall, ExecError};

/// Longest `sleep` the demo accepts.
const MAX_SLEEP_MS: u64 = 600_000;
/// Most parts `count` sends.
const MAX_COUNT: u64 = 10_000;

/// `echo`, `sum`, `sleep`, `count`, `fail`.
pub fn capabilities() -> Vec<CapabilityHandler> {
    vec![
        CapabilityHandler::new("echo", |args| async move { Ok(args) })
            .description("Returns its arguments"),
        CapabilityHandler::new("sum", |args| async move { sum(&args) })
            .description("Adds numbers: {\"values\": [1, 2, 3.5]}")
            .args_schema(json!({
                "type": "object",
                "properties": {"values": {"type": "array", "items": {"type": "number"}}},
                "required": ["values"]
            })),
        CapabilityHandler::new("sleep", |args| async move {
            let ms = args["ms"]
                .as_u64()
                .filter(|ms| *ms <= MAX_SLEEP_MS)
                .ok_or_else(|| ExecError::invalid_args(format!("ms: 0..={MAX_SLEEP_MS}")))?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({"slept_ms": ms}))
        })
        .description("Waits {\"ms\": N} milliseconds, then answers"),
        CapabilityHandler::streaming("count", |args, parts| async move {
            let to = args["to"]
                .as_u64()
                .filter(|n| *n <= MAX_COUNT)
                .ok_or_else(|| ExecError::invalid_args(format!("to: 0..={MAX_COUNT}")))?;
            for i in 1..=to {
                parts.send(json!(i)).await;
            }
            Ok(json!({"counted": to}))
        })
        .description("Streams 1..=to as partial results, then {\"counted\": to}"),
        CapabilityHandler::new("fail", |args| async move {
            let message = args["message"].as_str().unwrap_or("failed as asked");
            Err(ExecError::handler(message))
        })
        .description("Fails with HANDLER_ERROR and {\"message\"}"),
    ]
}

/// `forward {"to": DID, "capability": NAME, "args": …}`: calls `capability` on `to` and
/// answers its result — a chain A → B → C from the command line (`ioap serve --forward`).
/// Not among [`capabilities`]: an agent offering it makes calls as itself for anyone who asks,
/// so offer it only where that is meant (restrict it with `CapabilityHandler::allow`).
pub fn forward() -> CapabilityHandler {
    CapabilityHandler::with_call("forward", |call: ExecCall| async move {
        let to = call.args["to"]
            .as_str()
            .and_then(|did| did.parse::<Did>().ok())
            .ok_or_else(|| ExecError::invalid_args("to: a did:key"))?;
        let capability = call.args["capability"]
            .as_str()
            .ok_or_else(|| ExecError::invalid_args("capability: a name"))?
            .to_owned();
        let args = call.args["args"].clone();
        call.peer(to)
            .exec(&capability, args)
            .await
            .map_err(|error| ExecError::handler(format!("{}: {error}", error.code())))
    })
    .description("Calls {\"to\", \"capability\", \"args\"} and answers its result")
}

fn sum(args: &Value) -> Result<Value, ExecError> {
    let values = args["values"]
        .as_array()
        .ok_or_else(|| ExecError::invalid_args("expected {\"values\": [numbers]}"))?;
    let mut total = 0.0;
    for value in values {
        total += value
            .as_f64()
            .ok_or_else(|| ExecError::invalid_args(format!("not a number: {value}")))?;
    }
    Ok(json!(total))
}

/// Accepts queries (pointing at `echo`) and tasks naming a demo capability; declines others.
pub async fn intent_responder(_caller: Did, intent: Intent) -> IntentReply {
    match intent {
        Intent::Query(query) => IntentReply::accepted()
            .with_capability("echo")
            .with_cost(0.0, "credits")
            .with_message(format!("I can echo {:?} back to you", query.query)),
        Intent::Task(task)
            if capabilities()
                .iter()
                .any(|c| c.advertised().name == task.task) =>
        {
            IntentReply::accepted()
                .with_capability(task.task)
                .with_cost(0.0, "credits")
        }
        Intent::Task(task) => IntentReply::declined(format!("no capability named {:?}", task.task)),
        Intent::Reply(_) => IntentReply::declined("a reply is not a request"),
    }
}
