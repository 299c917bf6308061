//! Two agents against a gateway that is already running:
//!
//! ```sh
//! cargo run --bin ioap-gateway &                 # ws://127.0.0.1:8000/ws
//! cargo run --example two_agents -- --gateway ws://127.0.0.1:8000/ws
//! ```
//!
//! A server agent offers the demo capabilities; a client agent finds it in the gateway's
//! directory, then calls it directly over WebRTC.

use clap::Parser;
use ioap_client::{Agent, demo};
use serde_json::json;

/// Two agents against a running gateway.
#[derive(Debug, Parser)]
struct Args {
    /// The gateway's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws")]
    gateway: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Agent::builder(&args.gateway)
        .capabilities(demo::capabilities())
        .on_intent(demo::intent_responder)
        .connect()
        .await?;
    let client = Agent::builder(&args.gateway)
        .listed(false)
        .connect()
        .await?;
    println!("server {}\nclient {}", server.did(), client.did());

    let found = client.directory().with_capability("sum").await?;
    let target = found
        .iter()
        .find(|agent| agent.did == server.did())
        .map(|agent| agent.did)
        .ok_or_else(|| anyhow::anyhow!("the server is not in the directory"))?;
    let peer = client.peer(target);
    let total = peer.exec("sum", json!({"values": [1, 2, 3]})).await?;
    println!("sum(1, 2, 3) = {total}");
    let echoed = peer.exec("echo", json!({"hello": "world"})).await?;
    println!("echo = {echoed}");

    client.close().await;
    server.close().await;
    Ok(())
}
