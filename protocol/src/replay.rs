//! Replay protection: a timestamp window plus a bounded `(from, id)` cache
//! (PROTOCOL_DESIGN.md §7). A plain data structure: the caller passes the time in.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use crate::codes::ErrorCode;
use crate::did::Did;
use crate::message_id::MessageId;
use crate::timestamp::Timestamp;

/// Default accepted clock difference, either way.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// Default number of remembered `(from, id)` pairs.
pub const DEFAULT_REPLAY_CAPACITY: usize = 8192;

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The timestamp is further than the window from now, or older than what the cache can
    /// still vouch for.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// This `(from, id)` was seen within the window.
    #[error("message already received")]
    Replayed,
}

impl ReplayError {
    /// The ERROR code for this refusal.
    pub fn code(self) -> ErrorCode {
        match self {
            ReplayError::Stale => ErrorCode::StaleMessage,
            ReplayError::Replayed => ErrorCode::Replayed,
        }
    }
}

/// Remembers recently accepted messages so that each is accepted once.
///
/// A message is accepted when its timestamp is within `window` of now, it is newer than the
/// cache's floor, and its `(from, id)` is not remembered. Entries are forgotten when they fall
/// out of the window. When the cache is full, the earliest-inserted entry is evicted early and the
/// floor rises to its timestamp: anything at or before the floor is refused as stale, so eviction can
/// never let a replay through. Under a flood the guard therefore refuses old-but-valid messages
/// rather than grow or forget.
#[derive(Debug)]
pub struct ReplayGuard {
    window: Duration,
    capacity: usize,
    seen: HashSet<(Did, MessageId)>,
    /// Insertion order with timestamps. Timestamps are not monotone, so expiry pops from the
    /// front only while the front has expired; the capacity bounds what stays behind it.
    order: VecDeque<(Timestamp, Did, MessageId)>,
    floor: Option<Timestamp>,
}

impl ReplayGuard {
    /// A guard with the given window and capacity (at least 1).
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayGuard {
            window,
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            floor: None,
        }
    }

    /// Checks a message and, if accepted, remembers it.
    pub fn check(
        &mut self,
        from: &Did,
        id: &MessageId,
        timestamp: Timestamp,
        now: Timestamp,
    ) -> Result<(), ReplayError> {
        self.expire(now);
        if timestamp.abs_diff(now) > self.window {
            return Err(ReplayError::Stale);
        }
        if self.floor.is_some_and(|floor| timestamp <= floor) {
            return Err(ReplayError::Stale);
        }
        if self.seen.contains(&(*from, *id)) {
            return Err(ReplayError::Replayed);
        }
        if self.order.len() >= self.capacity {
            self.evict_oldest();
        }
        self.seen.insert((*from, *id));
        self.order.push_back((timestamp, *from, *id));
        Ok(())
    }

    /// How many pairs are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn expire(&mut self, now: Timestamp) {
        let horizon = now.saturating_sub(self.window);
        while let Some((ts, _, _)) = self.order.front() {
            if *ts >= horizon {
                break;
            }
            self.evict_front();
        }
        if self.floor.is_some_and(|floor| floor < horizon) {
            self.floor = None;
        }
    }

    /// Evicts the earliest-inserted entry before it expires; the floor rises to its timestamp.
    fn evict_oldest(&mut self) {
        if let Some((ts, from, id)) = self.order.pop_front() {
            self.seen.remove(&(from, id));
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }

    fn evict_front(&mut self) {
        if let Some((_, from, id)) = self.order.pop_front() {
            self.seen.remove(&(from, id));
        }
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_WINDOW, DEFAULT_REPLAY_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).expect("in range")
    }

    #[test]
    fn accepts_once_then_refuses_replay() {
        let did = Identity::from_seed(&[1; 32]).did();
        let mut guard = ReplayGuard::new(Duration::from_secs(60), 10);
        let id = MessageId::random();
        assert_eq!(guard.check(&did, &id, at(100_000), at(100_000)), Ok(()));
        assert_eq!(
            guard.check(&did, &id, at(100_000), at(100_500)),
            Err(ReplayError::Replayed)
        );
        // The same id from another sender is another message.
        let other = Identity::from_seed(&[2; 32]).did();
        assert_eq!(guard.check(&other, &id, at(100_000), at(100_500)), Ok(()));
    }

    #[test]
    fn refuses_outside_the_window_either_way() {
        let did = Identity::from_seed(&[1; 32]).did();
        let mut guard = ReplayGuard::new(Duration::from_secs(60), 10);
        let now = at(1_000_000);
        assert_eq!(
            guard.check(&did, &MessageId::random(), at(1_000_000 - 60_001), now),
            Err(ReplayError::Stale)
        );
        assert_eq!(
            guard.check(&did, &MessageId::random(), at(1_000_000 + 60_001), now),
            Err(ReplayError::Stale)
        );
        assert!(
            guard
                .check(&did, &MessageId::random(), at(1_000_000 - 60_000), now)
                .is_ok()
        );
    }

    #[test]
    fn entries_expire_so_memory_stays_bounded_by_the_window() {
        let did = Identity::from_seed(&[1; 32]).did();
        let mut guard = ReplayGuard::new(Duration::from_secs(1), 1000);
        for i in 0..100 {
            let t = at(10_000 + i * 100);
            guard
                .check(&did, &MessageId::random(), t, t)
                .expect("fresh");
        }
        assert!(guard.len() <= 11, "{} entries", guard.len());
    }

    #[test]
    fn a_full_cache_never_lets_a_replay_through() {
        let did = Identity::from_seed(&[1; 32]).did();
        let mut guard = ReplayGuard::new(Duration::from_secs(60), 3);
        let now = at(500_000);
        let ids: Vec<_> = (0..5).map(|_| MessageId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            let ts = at(490_000 + i as i64);
            guard.check(&did, id, ts, now).expect("fresh");
        }
        assert_eq!(guard.len(), 3);
        // ids[0] and ids[1] were evicted early; replaying them is refused as stale.
        for (i, id) in ids.iter().enumerate() {
            let ts = at(490_000 + i as i64);
            assert!(
                guard.check(&did, id, ts, now).is_err(),
                "replay {i} accepted"
            );
        }
        // A new message newer than the floor is still accepted.
        assert_eq!(
            guard.check(&did, &MessageId::random(), at(499_000), now),
            Ok(())
        );
    }
}
