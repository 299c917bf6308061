//! The cluster's background work: the heartbeat (node record, presence refresh, resync after
//! an outage) and the reader of this node's channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use ioap_protocol::{ErrorCode, MessageId, MessageType};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::bus::BusMessage;
use super::{Cluster, REDIS_TIMEOUT, millis, now_ms, store};
use crate::metrics;
use crate::registry::{AgentRecord, Outbound, PushError};
use crate::state::GatewayState;

/// Presence writes per pipeline when refreshing or resyncing many agents.
const BATCH: usize = 500;

/// Starts the heartbeat and the channel reader; both end at shutdown.
pub fn spawn(state: &Arc<GatewayState>, cluster: &Arc<Cluster>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(heartbeat_loop(Arc::clone(state), Arc::clone(cluster))),
        tokio::spawn(bus_loop(Arc::clone(state), Arc::clone(cluster))),
    ]
}

async fn heartbeat_loop(state: Arc<GatewayState>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(store::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = Instant::now();
    let mut first = true;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        match heartbeat(&state, &cluster).await {
            Ok(found_own_record) => {
                if !found_own_record && !first {
                    info!(
                        "cluster: this node's record was missing from Redis; publishing every agent again"
                    );
                    cluster.resync.store(true, Ordering::Relaxed);
                }
                first = false;
            }
            Err(_) => continue,
        }
        if cluster.resync.swap(false, Ordering::Relaxed) {
            if resync(&state, &cluster).await.is_err() {
                cluster.resync.store(true, Ordering::Relaxed);
            }
            last_refresh = Instant::now();
        } else if last_refresh.elapsed() >= store::PRESENCE_REFRESH {
            let _ = refresh_presence(&state, &cluster).await;
            last_refresh = Instant::now();
        }
    }
    leave(&cluster).await;
}

/// Writes the node record and reads who else is alive. Returns whether Redis still held this
/// node's record (it does not after a Redis restart, or an outage longer than the TTL).
async fn heartbeat(state: &GatewayState, cluster: &Cluster) -> Result<bool, ErrorCode> {
    let record = store::NodeRecord {
        agents: state.registry.len() as u64,
        ..cluster.node.clone()
    };
    let text = serde_json::to_string(&record).unwrap_or_default();
    let now = now_ms();
    let ttl = millis(store::NODE_TTL);
    let id = &cluster.node.id;
    let (previous, live): (Option<String>, Vec<String>) = cluster
        .run("heartbeat", async |redis| {
            redis::pipe()
                .cmd("SET")
                .arg(store::node_key(id))
                .arg(&text)
                .arg("PX")
                .arg(ttl)
                .arg("GET")
                .cmd("ZADD")
                .arg(store::NODES)
                .arg(now + ttl as i64)
                .arg(id)
                .ignore()
                .pexpire(store::listing_key(id), ttl as i64)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(store::NODES)
                .arg("-inf")
                .arg(now)
                .ignore()
                .add_command(store::live_nodes(now))
                .query_async(redis)
                .await
        })
        .await?;
    let keys: Vec<String> = live.iter().map(|node| store::node_key(node)).collect();
    let records: Vec<Option<String>> = if keys.is_empty() {
        Vec::new()
    } else {
        cluster
            .run("node records", async |redis| {
                redis::cmd("MGET").arg(&keys).query_async(redis).await
            })
            .await?
    };
    let agents: u64 = records
        .iter()
        .flatten()
        .filter_map(|text| serde_json::from_str::<store::NodeRecord>(text).ok())
        .map(|node| node.agents)
        .sum();
    let nodes = records.iter().flatten().count() as u64;
    cluster.live_nodes.store(nodes, Ordering::Relaxed);
    cluster.cluster_agents.store(agents, Ordering::Relaxed);
    metrics::cluster_nodes(nodes);
    Ok(previous.is_some())
}

fn local_agents(state: &GatewayState) -> Vec<Arc<AgentRecord>> {
    state.registry.records()
}

/// Publishes every local agent again after Redis lost them: each DID is taken back unless a
/// newer session holds it elsewhere, in which case the local, older session is replaced.
async fn resync(state: &GatewayState, cluster: &Cluster) -> Result<(), ErrorCode> {
    let agents = local_agents(state);
    let mut replaced = 0;
    for record in &agents {
        if !cluster.claim(record, false).await? {
            record.replace();
            replaced += 1;
        }
    }
    info!(
        agents = agents.len(),
        replaced, "cluster: presence published again"
    );
    Ok(())
}

/// Extends every local agent's presence and rewrites its listing entry (its last activity).
async fn refresh_presence(state: &GatewayState, cluster: &Cluster) -> Result<(), ErrorCode> {
    let agents = local_agents(state);
    let listing = store::listing_key(&cluster.node.id);
    for chunk in agents.chunks(BATCH) {
        let () = cluster
            .run("refresh", async |redis| {
                let mut pipe = redis::pipe();
                for record in chunk {
                    pipe.pexpire(
                        store::agent_key(&record.did_text),
                        millis(store::PRESENCE_TTL) as i64,
                    )
                    .ignore();
                    if record.listed {
                        let entry = serde_json::to_string(&record.summary()).unwrap_or_default();
                        pipe.hset(&listing, &*record.did_text, entry).ignore();
                    }
                }
                pipe.query_async(redis).await
            })
            .await?;
    }
    Ok(())
}

/// On shutdown: the node's record and listing go at once, so other nodes answer
/// UNKNOWN_AGENT for its agents without waiting for the TTL.
async fn leave(cluster: &Cluster) {
    let id = &cluster.node.id;
    let _: Result<(), _> = cluster
        .run("leave", async |redis| {
            redis::pipe()
                .del(store::node_key(id))
                .ignore()
                .del(store::listing_key(id))
                .ignore()
                .zrem(store::NODES, id)
                .ignore()
                .query_async(redis)
                .await
        })
        .await;
    info!(node = %id, "cluster: left");
}

/// Reads this node's channel, resubscribing with backoff whenever the connection is lost.
async fn bus_loop(state: Arc<GatewayState>, cluster: Arc<Cluster>) {
    let channel = store::bus_channel(&cluster.node.id);
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let mut subscribed_before = false;
    loop {
        let subscribed = tokio::time::timeout(REDIS_TIMEOUT * 2, async {
            let mut pubsub = cluster.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                delays = backoff();
                if subscribed_before {
                    info!("cluster: channel subscribed again");
                    cluster.resync.store(true, Ordering::Relaxed);
                }
                subscribed_before = true;
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        () = state.shutdown.cancelled() => return,
                        message = messages.next() => match message {
                            Some(message) => {
                                let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
                                    continue;
                                };
                                on_bus_message(&state, &cluster, text).await;
                            }
                            None => break,
                        },
                    }
                }
                metrics::redis_error();
                warn!("cluster: channel connection lost; resubscribing");
            }
            Ok(Err(error)) => debug!(%error, "cluster: cannot subscribe yet"),
            Err(_) => debug!("cluster: subscribing timed out"),
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(2));
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Acts on one message from another node.
async fn on_bus_message(state: &GatewayState, cluster: &Cluster, text: &str) {
    let Some(message) = BusMessage::decode(text) else {
        warn!("cluster: unreadable message on this node's channel, dropped");
        return;
    };
    match message {
        BusMessage::Relay {
            to,
            from_node,
            from,
            id,
            ty,
            frame,
        } => {
            metrics::cluster_relay("in");
            let lane = ty.parse::<MessageType>().unwrap_or(MessageType::Offer);
            let pushed = match state.registry.get(to) {
                Some(record) => record
                    .push_typed(
                        lane,
                        Outbound {
                            text: Utf8Bytes::from(frame),
                            received_at: None,
                        },
                    )
                    .map_err(|e| match e {
                        PushError::Full => {
                            metrics::queue_overflow();
                            ErrorCode::ReceiverBusy
                        }
                        PushError::Gone => ErrorCode::UnknownAgent,
                    }),
                None => Err(ErrorCode::UnknownAgent),
            };
            if let Err(code) = pushed {
                let bounce = BusMessage::Bounce {
                    to: from,
                    about: to,
                    id,
                    ty,
                    code: code.as_str(),
                };
                cluster.bounce(from_node, bounce).await;
            }
        }
        BusMessage::Bounce {
            to,
            about,
            id,
            ty,
            code,
        } => {
            let (Some(record), Ok(code)) = (state.registry.get(to), code.parse::<ErrorCode>())
            else {
                return;
            };
            let message = match code {
                ErrorCode::ReceiverBusy => format!("{about} is not reading; {ty} dropped"),
                _ => format!("no agent {about} is registered in the cluster"),
            };
            let error = state.error(Some(record.did), code, message, MessageId::parse(id).ok());
            if record
                .push(Outbound {
                    text: Utf8Bytes::from(error),
                    received_at: None,
                })
                .is_err()
            {
                metrics::queue_overflow();
            }
        }
        BusMessage::Replace { did, session } => {
            if let Some(record) = state.registry.get(did)
                && record.session_id == session
            {
                info!(did = %record.did, "cluster: a newer session registered on another node");
                record.replace();
            }
        }
    }
}
