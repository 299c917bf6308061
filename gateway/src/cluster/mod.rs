//! Cluster mode: gateways sharing presence and routing signaling through Redis
//! (PROTOCOL_DESIGN.md §10, *Clusters*; docs/cluster.md).
//!
//! Each gateway keeps its sessions in memory, as alone; Redis holds the node records, which
//! node holds each DID, and the listing, and carries relays between nodes over one channel per
//! node. [`store`] names the keys and holds the scripts; [`bus`] is what nodes send each other;
//! [`tasks`] runs the heartbeat and the channel reader.

pub mod bus;
mod directory;
pub mod store;
pub mod tasks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ioap_protocol::{ErrorCode, MessageId, MessageType};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::{info, warn};

pub use directory::Directory;

use crate::metrics;
use crate::registry::AgentRecord;
use bus::BusMessage;
use store::Owner;

/// Longest a Redis request may take before it counts as failed.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// How a gateway joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub redis_url: String,
    /// This node's id, unique in the cluster (`A-Z a-z 0-9 . _ -`, at most 64).
    pub node_id: String,
}

impl ClusterConfig {
    /// A node id for a gateway not given one: random, so two processes never share it.
    pub fn random_node_id() -> String {
        let mut bytes = [0u8; 6];
        // A node id needs uniqueness, not secrecy; the clock stands in if the RNG fails.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes.copy_from_slice(&nanos.to_le_bytes()[..6]);
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("gw-{hex}")
    }

    /// The Redis URL with any password replaced, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.redis_url)
    }
}

/// `url` with the password of its user info replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// This gateway's membership of a cluster.
pub struct Cluster {
    node: store::NodeRecord,
    client: redis::Client,
    redis: ConnectionManager,
    redis_up: AtomicBool,
    /// Set when Redis may have lost this node's records (an outage, a restart): the next
    /// heartbeat writes every local agent again.
    resync: AtomicBool,
    live_nodes: AtomicU64,
    cluster_agents: AtomicU64,
    directory: Directory,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node.id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis and checks it answers; a gateway that cannot reach its Redis does
    /// not start.
    pub async fn connect(config: &ClusterConfig, url: String) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            store::valid_node_id(&config.node_id),
            "node id {:?}: use 1-64 of A-Z a-z 0-9 . _ -",
            config.node_id
        );
        let where_ = config.redacted_url();
        let client = redis::Client::open(config.redis_url.as_str())
            .with_context(|| format!("Redis URL {where_}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let mut redis = tokio::time::timeout(
            REDIS_TIMEOUT * 3,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", REDIS_TIMEOUT * 3))
        .and_then(|connected| connected.map_err(anyhow::Error::from))
        .with_context(|| format!("cannot reach Redis at {where_} (cluster mode)"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut redis)
            .await
            .with_context(|| format!("Redis at {where_} does not answer PING"))?;
        info!(node = %config.node_id, redis = %where_, "cluster: connected to Redis");
        Ok(Cluster {
            node: store::NodeRecord {
                id: config.node_id.clone(),
                url,
                started_at_ms: now_ms(),
                agents: 0,
            },
            client,
            redis,
            redis_up: AtomicBool::new(true),
            resync: AtomicBool::new(false),
            live_nodes: AtomicU64::new(1),
            cluster_agents: AtomicU64::new(0),
            directory: Directory::default(),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Whether the last Redis request succeeded.
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Live nodes and agents registered cluster-wide, as of the last heartbeat.
    pub fn size(&self) -> (u64, u64) {
        (
            self.live_nodes.load(Ordering::Relaxed),
            self.cluster_agents.load(Ordering::Relaxed),
        )
    }

    /// Runs one Redis request: timed, counted, and marking Redis up or down.
    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        request: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, ErrorCode> {
        let started = Instant::now();
        let mut redis = self.redis.clone();
        let outcome = tokio::time::timeout(REDIS_TIMEOUT, request(&mut redis)).await;
        metrics::redis_round_trip(started.elapsed());
        match outcome {
            Ok(Ok(value)) => {
                if !self.redis_up.swap(true, Ordering::Relaxed) {
                    info!("cluster: Redis is reachable again");
                    self.resync.store(true, Ordering::Relaxed);
                }
                Ok(value)
            }
            failed => {
                metrics::redis_error();
                if self.redis_up.swap(false, Ordering::Relaxed) {
                    match failed {
                        Ok(Err(error)) => warn!(%error, what, "cluster: Redis request failed"),
                        _ => warn!(what, "cluster: Redis request timed out"),
                    }
                }
                Err(ErrorCode::RouteUnavailable)
            }
        }
    }

    /// Records that `record`'s session holds its DID cluster-wide, and closes an older
    /// session for it on another node (the newest authenticated session wins).
    pub async fn announce(&self, record: &AgentRecord) {
        if let Err(code) = self.claim(record, true).await {
            // Said once when Redis went down (`run`); per agent only at debug.
            tracing::debug!(did = %record.did, %code, "cluster: presence not published; retried when Redis is back");
            self.resync.store(true, Ordering::Relaxed);
        }
    }

    /// Claims `record`'s DID (`force`: whatever holds it; else only from an older session)
    /// and lists it. Returns whether the claim held.
    async fn claim(&self, record: &AgentRecord, force: bool) -> Result<bool, ErrorCode> {
        let owner = self.owner_of(record);
        let entry = record
            .listed
            .then(|| serde_json::to_string(&record.summary()).unwrap_or_default());
        let node = self.node.id.clone();
        let (taken, previous): (bool, String) = self
            .run("claim", async |redis| {
                let claimed = scripts()
                    .claim
                    .key(store::agent_key(&record.did_text))
                    .arg(owner.encode())
                    .arg(owner.registered_ms)
                    .arg(millis(store::PRESENCE_TTL))
                    .arg(if force { "1" } else { "0" })
                    .invoke_async(redis)
                    .await?;
                if let Some(entry) = &entry {
                    let listing = store::listing_key(&node);
                    let () = redis::pipe()
                        .hset(&listing, &*record.did_text, entry)
                        .ignore()
                        .pexpire(&listing, millis(store::NODE_TTL) as i64)
                        .ignore()
                        .query_async(redis)
                        .await?;
                }
                Ok(claimed)
            })
            .await?;
        if let Some(previous) = Owner::decode(&previous)
            && previous.node != self.node.id
            && taken
        {
            let replace = BusMessage::Replace {
                did: &record.did_text,
                session: previous.session,
            };
            self.send(&previous.node, replace).await;
            info!(did = %record.did, node = %previous.node, "cluster: older session on another node replaced");
        }
        Ok(taken)
    }

    fn owner_of(&self, record: &AgentRecord) -> Owner {
        Owner {
            node: self.node.id.clone(),
            session: record.session_id,
            registered_ms: record.connected_at.unix_millis(),
        }
    }

    /// Gives up `record`'s DID (if its session still holds it) and its listing entry, in the
    /// background.
    pub fn withdraw(self: &Arc<Self>, record: &AgentRecord) {
        let cluster = Arc::clone(self);
        let owner = self.owner_of(record).encode();
        let did = record.did_text.to_string();
        tokio::spawn(async move {
            let released: Result<i64, _> = cluster
                .run("release", async |redis| {
                    scripts()
                        .release
                        .key(store::agent_key(&did))
                        .key(store::listing_key(&cluster.node.id))
                        .arg(owner)
                        .arg(&did)
                        .invoke_async(redis)
                        .await
                })
                .await;
            if released.is_err() {
                // Its presence expires on its own; a resync writes only live sessions.
                cluster.resync.store(true, Ordering::Relaxed);
            }
        });
    }

    /// Sends a frame to `to` on whichever node holds it. `Ok` means that node received it (it
    /// answers with a bounce if it cannot deliver); UNKNOWN_AGENT when no live node holds
    /// `to`; ROUTE_UNAVAILABLE when Redis cannot be reached. `id` is what a bounce's ERROR
    /// correlates to (the frame's id, or a relayed link's id).
    pub async fn relay(
        &self,
        to: &str,
        from: &str,
        id: MessageId,
        ty: MessageType,
        frame: &str,
    ) -> Result<(), ErrorCode> {
        let id = id.to_string();
        let message = BusMessage::Relay {
            to,
            from_node: &self.node.id,
            from,
            id: &id,
            ty: ty.as_str(),
            frame,
        }
        .encode();
        let delivered: i64 = self
            .run("route", async |redis| {
                scripts()
                    .route
                    .key(store::agent_key(to))
                    .arg(message)
                    .arg(&self.node.id)
                    .invoke_async(redis)
                    .await
            })
            .await?;
        if delivered > 0 {
            metrics::cluster_relay("out");
            Ok(())
        } else {
            Err(ErrorCode::UnknownAgent)
        }
    }

    /// Tells node `node` that one of its agents' frames could not be delivered.
    pub async fn bounce(&self, node: &str, message: BusMessage<'_>) {
        self.send(node, message).await;
        metrics::cluster_relay("bounced");
    }

    /// Publishes `message` on `node`'s channel. Whether anyone received it is not reported:
    /// a node that is gone has no session to tell.
    async fn send(&self, node: &str, message: BusMessage<'_>) {
        let channel = store::bus_channel(node);
        let text = message.encode();
        let _: Result<i64, _> = self
            .run("publish", async |redis| {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(text)
                    .query_async(redis)
                    .await
            })
            .await;
    }

    /// The cluster's listed agents, sorted by DID, at most 1 s old (`directory::FRESH`).
    pub async fn listing(&self) -> Result<Arc<Vec<crate::registry::AgentSummary>>, ErrorCode> {
        self.directory.get(self).await
    }
}

/// The scripts, loaded once (each is sent by its SHA-1, and in full only when Redis does not
/// know it yet).
struct Scripts {
    claim: redis::Script,
    release: redis::Script,
    route: redis::Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        claim: redis::Script::new(store::CLAIM),
        release: redis::Script::new(store::RELEASE),
        route: redis::Script::new(store::ROUTE),
    })
}

/// A duration in whole milliseconds, as Redis takes it.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(redact("redis://user:s3cret@host"), "redis://user:***@host");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn random_node_ids_are_valid_and_differ() {
        let (a, b) = (
            ClusterConfig::random_node_id(),
            ClusterConfig::random_node_id(),
        );
        assert!(store::valid_node_id(&a), "{a}");
        assert_ne!(a, b);
    }
}
