//! One command shows the whole system: `cargo run --example quickstart`.
//!
//! Starts a gateway in this process on an ephemeral port, registers two agents, opens a
//! WebRTC data channel between them through the gateway's signaling, and sends INTENT, EXEC
//! and a streamed EXEC over it, peer to peer.

use std::time::Instant;

use ioap_client::{Agent, CapabilityHandler, ExecError, StreamItem};
use ioap_gateway::{Gateway, GatewayConfig};
use ioap_protocol::payload::{Intent, IntentReply};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gateway = Gateway::start(GatewayConfig::ephemeral()).await?;
    println!("gateway   {} ({})", gateway.ws_url(), gateway.did());

    let bob = Agent::builder(gateway.ws_url())
        .loopback_only(true)
        .capability(
            CapabilityHandler::new("sum", |args: Value| async move {
                let values = args["values"]
                    .as_array()
                    .ok_or_else(|| ExecError::invalid_args("expected {\"values\": [numbers]}"))?;
                Ok(json!(values.iter().filter_map(Value::as_f64).sum::<f64>()))
            })
            .description("Adds numbers"),
        )
        .capability(
            CapabilityHandler::streaming("countdown", |args: Value, parts| async move {
                let from = args["from"].as_u64().unwrap_or(3).min(100);
                for n in (1..=from).rev() {
                    parts.send(json!(n)).await;
                }
                Ok(json!("liftoff"))
            })
            .description("Counts down, one part per number"),
        )
        .on_intent(|caller, intent| async move {
            let what = match &intent {
                Intent::Query(query) => format!("query \"{}\"", query.query),
                Intent::Task(task) => format!("task \"{}\"", task.task),
                Intent::Reply(_) => "reply".to_owned(),
            };
            println!(
                "bob       received an INTENT {what} from {}",
                short(&caller)
            );
            IntentReply::accepted()
                .with_capability("sum")
                .with_cost(0.0, "credits")
        })
        .connect()
        .await?;
    println!("bob       {} registered", bob.did());

    let alice = Agent::builder(gateway.ws_url())
        .loopback_only(true)
        .connect()
        .await?;
    println!("alice     {} registered", alice.did());

    let summers = alice.directory().with_capability("sum").await?;
    println!("directory agents offering \"sum\": {}", summers.len());

    let peer = alice.peer(bob.did());
    let started = Instant::now();
    peer.connect().await?;
    println!(
        "link      alice ⇄ bob open in {} (WebRTC data channel, DTLS bound to both DIDs)",
        millis(started.elapsed())
    );

    let reply = peer
        .intent(Intent::query(
            "Add up my expenses",
            json!({"currency": "EUR"}),
        ))
        .await?;
    let status = serde_json::to_value(reply.status)?;
    println!(
        "INTENT    bob replied {}, use capability \"{}\"",
        status.as_str().unwrap_or("?"),
        reply.capability.as_deref().unwrap_or("none")
    );

    let started = Instant::now();
    let total = peer
        .exec("sum", json!({"values": [12.5, 7.25, 30]}))
        .await?;
    println!(
        "EXEC      sum = {total} (round trip {})",
        millis(started.elapsed())
    );

    let mut countdown = peer.exec_stream("countdown", json!({"from": 3})).await?;
    while let Some(item) = countdown.next().await {
        match item? {
            StreamItem::Partial(n) => println!("STREAM    part {n}"),
            StreamItem::Final(done) => println!("STREAM    final {done}"),
            _ => {}
        }
    }

    let error = peer
        .exec("fly", json!(null))
        .await
        .expect_err("bob cannot fly");
    println!("EXEC      fly → {error}");

    alice.close().await;
    bob.close().await;
    gateway.shutdown().await;
    println!("done      agents unregistered, links closed, gateway stopped");
    Ok(())
}

/// A duration in milliseconds, e.g. `5.7 ms`.
fn millis(elapsed: std::time::Duration) -> String {
    format!("{:.1} ms", elapsed.as_secs_f64() * 1000.0)
}

/// The start of a DID, for a one-line log.
fn short(did: &ioap_client::Did) -> String {
    let text = did.to_string();
    format!("{}…", &text[..text.len().min(16)])
}
