//! Shared setup: a real gateway on an ephemeral port and real agents on loopback UDP.
#![allow(dead_code)]

use std::time::Duration;

use ioap_client::{Agent, AgentBuilder, LinkSettings, demo};
use ioap_gateway::{Gateway, GatewayConfig, RunningGateway};
use ioap_protocol::Identity;

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A gateway with default settings.
pub async fn gateway() -> RunningGateway {
    gateway_with(GatewayConfig::ephemeral()).await
}

/// A gateway with `config`.
pub async fn gateway_with(config: GatewayConfig) -> RunningGateway {
    Gateway::start(config).await.expect("gateway starts")
}

/// Link settings for tests: a short setup deadline so failures show quickly.
pub fn link_settings() -> LinkSettings {
    LinkSettings::default().setup_timeout(Duration::from_secs(5))
}

/// A builder for a demo agent (echo, sum, sleep, count, fail, intent responder) on loopback.
pub fn builder(url: &str, identity: Identity) -> AgentBuilder {
    Agent::builder(url)
        .identity(identity)
        .loopback_only(true)
        .capabilities(demo::capabilities())
        .on_intent(demo::intent_responder)
        .link_settings(link_settings())
        .gateway_settings(|config| {
            config.reconnect_min_delay = Duration::from_millis(50);
            config.reconnect_max_delay = Duration::from_millis(500);
        })
}

/// A registered demo agent.
pub async fn agent(url: &str) -> Agent {
    agent_as(url, Identity::generate().expect("rng")).await
}

/// A registered demo agent with `identity`.
pub async fn agent_as(url: &str, identity: Identity) -> Agent {
    builder(url, identity)
        .connect()
        .await
        .expect("agent registers")
}

/// Runs `future` with the test bound.
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("finished within the test bound")
}
