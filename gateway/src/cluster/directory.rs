//! The cluster-wide listing behind `/agents`: every live node's listed agents, read from
//! Redis at most once per [`FRESH`] however many requests arrive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioap_protocol::ErrorCode;

use super::{Cluster, now_ms, store};
use crate::registry::AgentSummary;

/// Longest a listing is served from the cache.
pub const FRESH: Duration = Duration::from_secs(1);

/// The cached listing (one reader refreshes it at a time; the others wait and share it).
#[derive(Debug, Default)]
pub struct Directory {
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Vec<AgentSummary>>)>>,
}

impl Directory {
    /// The listing, read again if the cached one is older than [`FRESH`].
    pub(super) async fn get(&self, cluster: &Cluster) -> Result<Arc<Vec<AgentSummary>>, ErrorCode> {
        let mut cached = self.cached.lock().await;
        if let Some((at, listing)) = &*cached
            && at.elapsed() < FRESH
        {
            return Ok(Arc::clone(listing));
        }
        let listing = Arc::new(fetch(cluster).await?);
        *cached = Some((Instant::now(), Arc::clone(&listing)));
        Ok(listing)
    }
}

/// Every live node's listing hash, merged (a DID on two nodes, for the moment of a handover:
/// the newer registration), sorted by DID.
async fn fetch(cluster: &Cluster) -> Result<Vec<AgentSummary>, ErrorCode> {
    let now = now_ms();
    let nodes: Vec<String> = cluster
        .run("live nodes", async |redis| {
            store::live_nodes(now).query_async(redis).await
        })
        .await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<HashMap<String, String>> = cluster
        .run("listing", async |redis| {
            let mut pipe = redis::pipe();
            for node in &nodes {
                pipe.hgetall(store::listing_key(node));
            }
            pipe.query_async(redis).await
        })
        .await?;
    let mut merged: BTreeMap<String, AgentSummary> = BTreeMap::new();
    for entry in hashes.into_iter().flat_map(HashMap::into_values) {
        let Ok(summary) = serde_json::from_str::<AgentSummary>(&entry) else {
            continue;
        };
        match merged.get(&summary.did) {
            Some(held) if held.connected_at >= summary.connected_at => {}
            _ => {
                merged.insert(summary.did.clone(), summary);
            }
        }
    }
    Ok(merged.into_values().collect())
}
