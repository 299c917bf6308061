//! Who may call what, and repeats that do not run twice: `cargo run --example grants`.
//!
//! Bob offers `ledger` to Alice only, and accepts grants Alice issues. Alice delegates to
//! Carol a narrower right: `ledger` with `{"account": "ops"}`, for ten minutes. Carol calls
//! with that grant; the same grant for another account, and Dave without one, are refused with
//! FORBIDDEN. Then Carol sends one call twice with the same idempotency key, as a retry after
//! a lost link would: Bob's handler runs once and the repeat gets its recorded answer.
//! Everything runs in this process: a gateway on an ephemeral port and four agents.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ioap_client::{Agent, CallError, CallOptions, CapabilityHandler, Grant, GrantTerms};
use ioap_gateway::{Gateway, GatewayConfig};
use ioap_protocol::{Identity, Timestamp};
use serde_json::{Value, json};

async fn agent(url: &str, identity: &Identity) -> anyhow::Result<Agent> {
    Ok(Agent::builder(url)
        .identity(identity.clone())
        .loopback_only(true)
        .connect()
        .await?)
}

fn outcome(result: &Result<Value, CallError>) -> String {
    match result {
        Ok(value) => value.to_string(),
        Err(error) => format!("refused: {}", error.code()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gateway = Gateway::start(GatewayConfig::ephemeral()).await?;
    let url = gateway.ws_url();
    let (alice_id, carol_id, dave_id) = (
        Identity::generate()?,
        Identity::generate()?,
        Identity::generate()?,
    );

    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let ledger = CapabilityHandler::new("ledger", move |args: Value| {
        let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(json!({"account": args["account"], "balance": 42, "run": run})) }
    })
    .allow([alice_id.did()]);
    let bob = Agent::builder(&url)
        .loopback_only(true)
        .capability(ledger)
        .trust_grants_from(alice_id.did())
        .connect()
        .await?;
    println!("bob    offers ledger to alice, and to holders of grants she issues");

    let alice = agent(&url, &alice_id).await?;
    let direct = alice
        .peer(bob.did())
        .exec("ledger", json!({"account": "all"}))
        .await;
    println!("alice  ledger {{all}}            → {}", outcome(&direct));

    let terms = GrantTerms {
        subject: carol_id.did(),
        audience: bob.did(),
        capability: "ledger".into(),
        expires: Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(600)),
        args: json!({"account": "ops"}).as_object().cloned(),
    };
    let chain = vec![Grant::issue(&alice_id, terms, None)];
    println!("alice  grants carol ledger {{\"account\": \"ops\"}} for 10 minutes");

    let carol = agent(&url, &carol_id).await?;
    let with_grant = CallOptions::new().grants(chain);
    let to_bob = carol.peer(bob.did());
    let ops = to_bob
        .exec_with("ledger", json!({"account": "ops"}), &with_grant)
        .await;
    println!("carol  ledger {{ops}} + grant     → {}", outcome(&ops));
    let payroll = to_bob
        .exec_with("ledger", json!({"account": "payroll"}), &with_grant)
        .await;
    println!("carol  ledger {{payroll}} + grant → {}", outcome(&payroll));

    let dave = agent(&url, &dave_id).await?;
    let none = dave
        .peer(bob.did())
        .exec("ledger", json!({"account": "ops"}))
        .await;
    println!("dave   ledger {{ops}}             → {}", outcome(&none));

    let once = with_grant.idempotent();
    let first = to_bob
        .exec_with("ledger", json!({"account": "ops"}), &once)
        .await;
    let again = to_bob
        .exec_with("ledger", json!({"account": "ops"}), &once)
        .await;
    println!(
        "carol  the same call twice, one key → {} and {}",
        outcome(&first),
        outcome(&again)
    );
    println!(
        "bob    ran ledger {} times in all",
        runs.load(Ordering::SeqCst)
    );

    for agent in [alice, carol, dave, bob] {
        agent.close().await;
    }
    gateway.shutdown().await;
    Ok(())
}
