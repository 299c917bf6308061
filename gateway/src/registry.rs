//! The live registry: registered agents by DID, each with the handle of its session.
//!
//! A sharded concurrent map (no global lock): relaying looks up the receiver's queue in O(1)
//! and pushes without waiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use ioap_protocol::payload::Capability;
use ioap_protocol::{Did, MessageType, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A frame waiting in a session's outbound queue.
#[derive(Debug)]
pub struct Outbound {
    /// The text to write (a relayed frame's original bytes, or a gateway message).
    pub text: Utf8Bytes,
    /// When the frame entered the gateway, for the relay latency histogram; `None` for the
    /// gateway's own messages.
    pub received_at: Option<Instant>,
}

/// Why pushing to a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue is full.
    Full,
    /// The session has ended.
    Gone,
}

/// One registered agent.
#[derive(Debug)]
pub struct AgentRecord {
    /// The agent.
    pub did: Did,
    /// Its canonical text (the registry's key).
    pub did_text: Box<str>,
    /// Unique per session in this process.
    pub session_id: u64,
    /// When it registered.
    pub connected_at: Timestamp,
    /// When it was last heard from (Unix milliseconds), updated by its session.
    pub last_activity: AtomicI64,
    /// The client's address (never exposed over HTTP).
    pub remote: SocketAddr,
    /// What it advertised.
    pub capabilities: Vec<Capability>,
    /// Whether `/agents` lists it.
    pub listed: bool,
    queue: mpsc::Sender<Outbound>,
    relay_lane: Option<mpsc::Sender<Outbound>>,
    replaced: CancellationToken,
}

fn try_push(queue: &mpsc::Sender<Outbound>, frame: Outbound) -> Result<(), PushError> {
    queue.try_send(frame).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => PushError::Full,
        mpsc::error::TrySendError::Closed(_) => PushError::Gone,
    })
}

impl AgentRecord {
    /// A record for a session that has just registered.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        did: Did,
        session_id: u64,
        connected_at: Timestamp,
        remote: SocketAddr,
        capabilities: Vec<Capability>,
        listed: bool,
        queue: mpsc::Sender<Outbound>,
        replaced: CancellationToken,
    ) -> Self {
        AgentRecord {
            did_text: did.to_string().into_boxed_str(),
            did,
            session_id,
            connected_at,
            last_activity: AtomicI64::new(connected_at.unix_millis()),
            remote,
            capabilities,
            listed,
            queue,
            relay_lane: None,
            replaced,
        }
    }

    /// Gives the records of gateway-relayed links a queue of their own (without it they share
    /// the signaling queue).
    pub fn with_relay_lane(mut self, lane: mpsc::Sender<Outbound>) -> Self {
        self.relay_lane = Some(lane);
        self
    }

    /// Queues a frame of type `ty` for this agent without waiting, in the lane for its type:
    /// relayed-link records apart from signaling (PROTOCOL_DESIGN.md §11.5).
    pub fn push_typed(&self, ty: MessageType, frame: Outbound) -> Result<(), PushError> {
        match &self.relay_lane {
            Some(lane) if crate::routing::is_relay_type(ty) => try_push(lane, frame),
            _ => self.push(frame),
        }
    }

    /// Queues a frame for this agent without waiting.
    pub fn push(&self, frame: Outbound) -> Result<(), PushError> {
        try_push(&self.queue, frame)
    }

    /// Tells the session to close with SESSION_REPLACED (a newer session holds the DID).
    pub fn replace(&self) {
        self.replaced.cancel();
    }

    /// Records activity now.
    pub fn touch(&self, now: Timestamp) {
        self.last_activity
            .store(now.unix_millis(), Ordering::Relaxed);
    }

    /// The public view of this agent.
    pub fn summary(&self) -> AgentSummary {
        let last = Timestamp::from_unix_millis(self.last_activity.load(Ordering::Relaxed))
            .unwrap_or(self.connected_at);
        AgentSummary {
            did: self.did_text.to_string(),
            connected_at: self.connected_at,
            last_activity: last,
            capabilities: self.capabilities.clone(),
        }
    }
}

/// What `/agents` shows of an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The DID.
    pub did: String,
    /// When it registered.
    pub connected_at: Timestamp,
    /// When it was last heard from.
    pub last_activity: Timestamp,
    /// What it offers.
    pub capabilities: Vec<Capability>,
}

/// One page of listed agents.
#[derive(Debug, Clone, Serialize)]
pub struct AgentPage {
    /// The agents, sorted by DID.
    pub agents: Vec<AgentSummary>,
    /// How many are on this page.
    pub count: usize,
    /// How many listed agents match the filter in all.
    pub total: usize,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The registry, keyed by the DIDs' canonical text (what frames carry, so routing needs no
/// decoding).
#[derive(Debug, Default)]
pub struct Registry {
    agents: DashMap<Box<str>, Arc<AgentRecord>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an agent. An existing session for the same DID is replaced: it is told to
    /// close (SESSION_REPLACED) and returned.
    pub fn insert(&self, record: Arc<AgentRecord>) -> Option<Arc<AgentRecord>> {
        let old = self.agents.insert(record.did_text.clone(), record);
        if let Some(old) = &old {
            old.replaced.cancel();
        }
        old
    }

    /// Removes the agent if `session_id` is still its session (a replaced session must not
    /// remove its replacement). Returns whether it removed.
    pub fn remove(&self, did: &str, session_id: u64) -> bool {
        self.agents
            .remove_if(did, |_, record| record.session_id == session_id)
            .is_some()
    }

    /// The agent registered as `did` (its canonical text).
    pub fn get(&self, did: &str) -> Option<Arc<AgentRecord>> {
        self.agents.get(did).map(|entry| Arc::clone(entry.value()))
    }

    /// Every registered agent's record, in no order.
    pub fn records(&self) -> Vec<Arc<AgentRecord>> {
        self.agents
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// How many agents are registered (listed or not).
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent is registered.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Listed agents offering `capability` (if given), sorted by DID, after `cursor`, at most
    /// `limit`.
    pub fn list(&self, capability: Option<&str>, cursor: Option<&str>, limit: usize) -> AgentPage {
        let mut matching: Vec<(String, Arc<AgentRecord>)> = self
            .agents
            .iter()
            .filter(|entry| entry.listed)
            .filter(|entry| {
                capability.is_none_or(|name| entry.capabilities.iter().any(|c| c.name == name))
            })
            .map(|entry| (entry.key().to_string(), Arc::clone(entry.value())))
            .collect();
        matching.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (page, total, next_cursor) = page_of(&matching, |(did, _)| did, cursor, limit);
        let agents: Vec<AgentSummary> = page.iter().map(|(_, record)| record.summary()).collect();
        AgentPage {
            count: agents.len(),
            agents,
            total,
            next_cursor,
        }
    }

    /// The public view of one listed agent.
    pub fn listed(&self, did: &str) -> Option<AgentSummary> {
        self.get(did)
            .filter(|record| record.listed)
            .map(|record| record.summary())
    }
}

/// The page of `sorted` (ascending by `key`) after `cursor`, at most `limit` long; with the
/// number of items in all and the cursor of the next page (none on the last).
pub fn page_of<'a, T>(
    sorted: &'a [T],
    key: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    limit: usize,
) -> (&'a [T], usize, Option<String>) {
    let total = sorted.len();
    let start = cursor.map_or(0, |after| sorted.partition_point(|item| key(item) <= after));
    let end = total.min(start.saturating_add(limit));
    let page = &sorted[start..end];
    let next_cursor = (end < total)
        .then(|| page.last().map(|item| key(item).to_owned()))
        .flatten();
    (page, total, next_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::Identity;

    fn record(
        seed: u8,
        session_id: u64,
        listed: bool,
        caps: &[&str],
    ) -> (
        Arc<AgentRecord>,
        mpsc::Receiver<Outbound>,
        CancellationToken,
    ) {
        let (tx, rx) = mpsc::channel(2);
        let token = CancellationToken::new();
        let did = Identity::from_seed(&[seed; 32]).did();
        let now = Timestamp::from_unix_millis(1_000).expect("time");
        let record = AgentRecord::new(
            did,
            session_id,
            now,
            "127.0.0.1:1".parse().expect("addr"),
            caps.iter().map(|c| Capability::new(*c, "")).collect(),
            listed,
            tx,
            token.clone(),
        );
        (Arc::new(record), rx, token)
    }

    #[test]
    fn newest_session_wins_and_the_old_one_is_told() {
        let registry = Registry::new();
        let (first, _rx1, first_token) = record(1, 1, true, &[]);
        let (second, _rx2, second_token) = record(1, 2, true, &[]);
        assert!(registry.insert(first.clone()).is_none());
        let replaced = registry.insert(second).expect("replaced");
        assert_eq!(replaced.session_id, 1);
        assert!(first_token.is_cancelled());
        assert!(!second_token.is_cancelled());
        // The replaced session ending must not remove its replacement.
        assert!(!registry.remove(&first.did_text, 1));
        assert_eq!(registry.get(&first.did_text).map(|r| r.session_id), Some(2));
        assert!(registry.remove(&first.did_text, 2));
        assert!(registry.is_empty());
    }

    #[test]
    fn push_reports_full_and_gone() {
        let (rec, rx, _) = record(1, 1, true, &[]);
        let frame = || Outbound {
            text: "x".into(),
            received_at: None,
        };
        assert_eq!(rec.push(frame()), Ok(()));
        assert_eq!(rec.push(frame()), Ok(()));
        assert_eq!(rec.push(frame()), Err(PushError::Full));
        drop(rx);
        assert_eq!(rec.push(frame()), Err(PushError::Gone));
    }

    #[test]
    fn listing_filters_hides_unlisted_and_pages() {
        let registry = Registry::new();
        let mut keep = Vec::new();
        for seed in 1..=5u8 {
            let caps: &[&str] = if seed % 2 == 1 { &["echo"] } else { &["sum"] };
            let (rec, rx, token) = record(seed, u64::from(seed), seed != 5, caps);
            registry.insert(rec);
            keep.push((rx, token));
        }
        let all = registry.list(None, None, 100);
        assert_eq!(all.total, 4, "unlisted agent hidden");
        let mut dids: Vec<_> = all.agents.iter().map(|a| a.did.clone()).collect();
        let mut sorted = dids.clone();
        sorted.sort();
        assert_eq!(dids, sorted);
        let echo = registry.list(Some("echo"), None, 100);
        assert_eq!(echo.total, 2);
        let first = registry.list(None, None, 3);
        assert_eq!(first.count, 3);
        let next = first.next_cursor.clone().expect("more");
        let second = registry.list(None, Some(&next), 3);
        assert_eq!(second.count, 1);
        assert!(second.next_cursor.is_none());
        let mut paged: Vec<_> = first
            .agents
            .iter()
            .chain(&second.agents)
            .map(|a| a.did.clone())
            .collect();
        assert_eq!(paged.len(), 4);
        paged.dedup();
        dids.dedup();
        assert_eq!(paged, dids);
    }
}
