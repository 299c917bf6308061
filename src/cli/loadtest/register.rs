//! Phase 1: register N agents at a ramped rate, each with its own did:key. The first
//! `2 × links` are full SDK agents (they open WebRTC links later); the others are
//! signaling-only gateway clients (no WebRTC), which the relay phase pairs up.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ioap_client::GatewayStreams;
use ioap_client::{
    Agent, AgentError, ConnectionEvent, GatewayClient, GatewayClientConfig, LinkSettings,
};
use ioap_protocol::{Envelope, ErrorCode, Identity};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::exec;
use super::progress::{Display, Progress};
use super::stats::Tally;
use super::{Plan, until_stopped};

/// No key could be generated for an agent (the OS random source failed).
const IDENTITY: &str = "IDENTITY";
/// The SDK refused to start an agent (e.g. a gateway URL it cannot use).
const START_FAILED: &str = "START_FAILED";

/// Registrations started and not yet finished, at most.
const MAX_PENDING: usize = 512;

/// A registered agent that only uses the gateway (no WebRTC).
#[derive(Debug)]
pub struct SignalingAgent {
    /// Its gateway connection.
    pub client: GatewayClient,
    /// What the gateway relays to it.
    pub inbound: mpsc::Receiver<Envelope>,
    /// Its connection's events (disconnections are counted by the relay phase).
    pub events: mpsc::Receiver<ConnectionEvent>,
}

/// The agents that registered, by position (`None`: that one failed).
#[derive(Debug, Default)]
pub struct Fleet {
    /// Full agents; links pair `2k` with `2k + 1`.
    pub full: Vec<Option<Agent>>,
    /// Signaling-only agents; relay pairs are `2k` → `2k + 1`.
    pub signaling: Vec<Option<SignalingAgent>>,
}

/// What the phase measured.
#[derive(Debug)]
pub struct Registration {
    /// Time to registered, and failures by code.
    pub tally: Tally,
    /// From the phase's start to the last registration.
    pub time_to_all: Duration,
}

enum Registered {
    Full(Agent),
    Signaling(Box<SignalingAgent>),
}

/// Registers the plan's agents; each has `plan.timeout` to register. Stops early (dropping
/// registrations in progress) when `stop` is cancelled.
pub async fn run(plan: &Plan, stop: &CancellationToken, display: Display) -> (Fleet, Registration) {
    let progress = Progress::start(display, "register", plan.agents as u64);
    let full_agents = plan.links * 2;
    let started = Instant::now();
    let mut outcomes = futures_util::stream::iter(0..plan.agents)
        .map(|index| async move {
            tokio::time::sleep_until(ramp_start(started, index, plan.ramp_per_s).into()).await;
            let begun = Instant::now();
            let outcome = register(plan, plan.url_for(index), index < full_agents).await;
            (index, outcome, begun.elapsed())
        })
        .buffer_unordered(MAX_PENDING);
    let mut fleet = Fleet {
        full: (0..full_agents).map(|_| None).collect(),
        signaling: (full_agents..plan.agents).map(|_| None).collect(),
    };
    let mut tally = Tally::default();
    let mut time_to_all = Duration::ZERO;
    while let Some((index, outcome, elapsed)) = until_stopped(stop, outcomes.next()).await.flatten()
    {
        match outcome {
            Ok(agent) => {
                match agent {
                    Registered::Full(agent) => fleet.full[index] = Some(agent),
                    Registered::Signaling(agent) => {
                        fleet.signaling[index - full_agents] = Some(*agent);
                    }
                }
                tally.success(elapsed);
                time_to_all = started.elapsed();
            }
            Err(code) => progress.failed(&mut tally, code),
        }
        progress.step();
    }
    progress.finish_tally(&tally, "registered");
    (fleet, Registration { tally, time_to_all })
}

/// When registration `index` starts, at `per_s` registrations per second (0: all at once).
fn ramp_start(started: Instant, index: usize, per_s: u32) -> Instant {
    if per_s == 0 {
        return started;
    }
    started + Duration::from_secs_f64(index as f64 / f64::from(per_s))
}

/// Registers one agent with the gateway at `url` and waits for its answer.
async fn register(plan: &Plan, url: &str, full: bool) -> Result<Registered, String> {
    let identity = Identity::generate().map_err(|_| IDENTITY.to_owned())?;
    let handshake = plan.timeout;
    let configure = |config: &mut GatewayClientConfig| {
        config.handshake_timeout = handshake;
    };
    if full {
        let mut agent = Agent::builder(url)
            .identity(identity)
            .loopback_only(true)
            .engine(plan.engine)
            .capabilities(exec::capabilities())
            .link_settings(
                LinkSettings::default()
                    .setup_timeout(plan.timeout)
                    .call_timeout(plan.timeout),
            )
            .gateway_settings(configure)
            .start()
            .map_err(|error| match error {
                AgentError::Identity(_) => IDENTITY.to_owned(),
                _ => START_FAILED.to_owned(),
            })?;
        let mut events = agent.take_events().ok_or(START_FAILED)?;
        match first_answer(&mut events, plan.timeout).await {
            Ok(()) => Ok(Registered::Full(agent)),
            Err(code) => {
                agent.close().await;
                Err(code)
            }
        }
    } else {
        let mut config = GatewayClientConfig::new(url, identity);
        configure(&mut config);
        let (
            client,
            GatewayStreams {
                inbound,
                mut events,
            },
        ) = GatewayClient::start(config);
        match first_answer(&mut events, plan.timeout).await {
            Ok(()) => Ok(Registered::Signaling(Box::new(SignalingAgent {
                client,
                inbound,
                events,
            }))),
            Err(code) => {
                client.close().await;
                Err(code)
            }
        }
    }
}

/// Waits for the first registration or refusal (the client would retry a refusal; the load
/// test counts it instead).
async fn first_answer(
    events: &mut mpsc::Receiver<ConnectionEvent>,
    timeout: Duration,
) -> Result<(), String> {
    let answer = tokio::time::timeout(timeout, async {
        loop {
            match events.recv().await {
                Some(ConnectionEvent::Registered { .. }) => return Ok(()),
                Some(ConnectionEvent::RegistrationFailed {
                    code, close_code, ..
                }) => return Err(failure_code(code, close_code)),
                Some(ConnectionEvent::Closed) | None => return Err("CLOSED".to_owned()),
                Some(_) => {}
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| Err(ErrorCode::Timeout.as_str().to_owned()))
}

/// The name a failed registration is counted under: the gateway's error code; else
/// `CLOSED_<close code>` when it closed without one (e.g. 1013 at its connection limit);
/// else `CONNECT_FAILED` (refused, reset, out of file descriptors…).
pub fn failure_code(code: Option<ErrorCode>, close_code: Option<u16>) -> String {
    match (code, close_code) {
        (Some(code), _) => code.as_str().to_owned(),
        (None, Some(close)) => format!("CLOSED_{close}"),
        (None, None) => "CONNECT_FAILED".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_by_code_then_close_code() {
        assert_eq!(
            failure_code(Some(ErrorCode::RateLimited), Some(1008)),
            "RATE_LIMITED"
        );
        assert_eq!(failure_code(None, Some(1013)), "CLOSED_1013");
        assert_eq!(failure_code(None, None), "CONNECT_FAILED");
    }

    #[test]
    fn the_ramp_spaces_starts_evenly() {
        let t0 = Instant::now();
        assert_eq!(ramp_start(t0, 0, 100), t0);
        assert_eq!(ramp_start(t0, 50, 100), t0 + Duration::from_millis(500));
        assert_eq!(ramp_start(t0, 50, 0), t0);
    }
}
