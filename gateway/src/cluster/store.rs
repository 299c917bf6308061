//! The cluster's records in Redis and the scripts that change them atomically.
//!
//! Keys (one cluster per Redis database):
//! - `ioap:node:{node}`: the node's record (JSON), expiring [`NODE_TTL`] after its last
//!   heartbeat; `ioap:nodes`: a sorted set of node ids scored by that expiry.
//! - `ioap:agent:{did}`: which session holds the DID, `{node}/{session}/{registered_ms}`,
//!   expiring [`PRESENCE_TTL`] after its node last refreshed it.
//! - `ioap:listing:{node}`: a hash of the node's listed agents (DID → `/agents` entry), expiring
//!   with the node.
//! - channel `ioap:bus:{node}`: what other nodes send the node ([`super::bus`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a node's record outlives its last heartbeat: a node that dies is gone from the
/// cluster (its agents unreachable, UNKNOWN_AGENT) within this.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How often a node writes its record.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a presence key outlives its last refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(30);
/// How often a node refreshes its agents' presence and listing entries.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(10);

/// The sorted set of node ids.
pub const NODES: &str = "ioap:nodes";

/// The key of a node's record.
pub fn node_key(node: &str) -> String {
    format!("ioap:node:{node}")
}

/// The presence key of a DID.
pub fn agent_key(did: &str) -> String {
    format!("ioap:agent:{did}")
}

/// The listing hash of a node.
pub fn listing_key(node: &str) -> String {
    format!("ioap:listing:{node}")
}

/// The channel a node reads.
pub fn bus_channel(node: &str) -> String {
    format!("ioap:bus:{node}")
}

/// The ids of the nodes alive at `now_ms` (their records not yet expired).
pub fn live_nodes(now_ms: i64) -> redis::Cmd {
    let mut command = redis::cmd("ZRANGEBYSCORE");
    command.arg(NODES).arg(now_ms).arg("+inf");
    command
}

/// Whether `id` can name a node: 1–64 of `A-Z a-z 0-9 . _ -` (it is part of keys, channels
/// and the `/`-separated owner value).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A node's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub id: String,
    /// The URL agents dial.
    pub url: String,
    /// When it started (Unix milliseconds).
    pub started_at_ms: i64,
    /// Agents registered on it at its last heartbeat.
    pub agents: u64,
}

/// Who holds a DID: a session on a node, registered at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The node.
    pub node: String,
    /// The session on it.
    pub session: u64,
    /// When the session registered (Unix milliseconds): the newest wins.
    pub registered_ms: i64,
}

impl Owner {
    /// The stored text, `{node}/{session}/{registered_ms}`.
    pub fn encode(&self) -> String {
        format!("{}/{}/{}", self.node, self.session, self.registered_ms)
    }

    /// Reads a stored text.
    pub fn decode(text: &str) -> Option<Owner> {
        let mut parts = text.split('/');
        let owner = Owner {
            node: parts.next().filter(|node| valid_node_id(node))?.to_owned(),
            session: parts.next()?.parse().ok()?,
            registered_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(owner)
    }
}

/// Takes a DID for a session. KEYS: the presence key. ARGV: the owner text, its registration
/// time, the TTL in ms, and `1` to take it whatever holds it (a registration) or `0` to take it
/// only from an older session (a resync after an outage). Returns `{taken, previous owner or ""}`.
pub const CLAIM: &str = r"
local old = redis.call('GET', KEYS[1])
if ARGV[4] == '0' and old then
  local since = tonumber(string.match(old, '/(%-?%d+)$'))
  if since and since > tonumber(ARGV[2]) then return {0, old} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1, old or ''}
";

/// Gives a DID up if this session still holds it. KEYS: the presence key, the node's listing.
/// ARGV: the owner text, the DID.
pub const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
";

/// Sends a bus message to the node holding a DID. KEYS: the presence key. ARGV: the message,
/// this node's id. Returns -1 when nobody holds the DID, -2 when this node does (stale), -3
/// when the holding node is gone, else the number of subscribers that received it (0: the
/// node is not listening).
pub const ROUTE: &str = r"
local owner = redis.call('GET', KEYS[1])
if not owner then return -1 end
local node = string.match(owner, '^([^/]+)/')
if node == ARGV[2] then return -2 end
if redis.call('EXISTS', 'ioap:node:' .. node) == 0 then return -3 end
return redis.call('PUBLISH', 'ioap:bus:' .. node, ARGV[1])
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_bad_text_is_refused() {
        let owner = Owner {
            node: "gw-1".into(),
            session: 7,
            registered_ms: 1_700_000_000_000,
        };
        assert_eq!(Owner::decode(&owner.encode()), Some(owner));
        for text in ["", "gw/1", "gw/x/1", "gw/1/2/3", "g w/1/2", "/1/2"] {
            assert_eq!(Owner::decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn node_ids_are_safe_in_keys_and_owner_text() {
        assert!(valid_node_id("gw-1.eu_west"));
        for bad in ["", "a/b", "a b", "a:b", &"x".repeat(65)] {
            assert!(!valid_node_id(bad), "{bad:?}");
        }
    }
}
