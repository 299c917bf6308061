//! When each connection next needs the loop: one deadline per connection, the earliest found
//! at once and any one moved or removed without a scan of the others.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// The connections' deadlines.
#[derive(Default)]
pub struct Schedule {
    ordered: BTreeSet<(Instant, u64)>,
    by_id: HashMap<u64, Instant>,
}

impl Schedule {
    /// Sets (or moves) `id`'s deadline.
    pub fn set(&mut self, id: u64, at: Instant) {
        if let Some(old) = self.by_id.insert(id, at) {
            if old == at {
                return;
            }
            self.ordered.remove(&(old, id));
        }
        self.ordered.insert((at, id));
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: u64) {
        if let Some(old) = self.by_id.remove(&id) {
            self.ordered.remove(&(old, id));
        }
    }

    /// The earliest deadline.
    pub fn first(&self) -> Option<Instant> {
        self.ordered.first().map(|(at, _)| *at)
    }

    /// The connections due at `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<u64> {
        self.ordered
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_moved_deadline_replaces_the_old_one() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.set(1, t0 + Duration::from_secs(2));
        schedule.set(2, t0 + Duration::from_secs(1));
        assert_eq!(schedule.first(), Some(t0 + Duration::from_secs(1)));
        schedule.set(2, t0 + Duration::from_secs(3));
        assert_eq!(schedule.first(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(schedule.due(t0 + Duration::from_secs(2)), vec![1]);
        assert_eq!(schedule.due(t0 + Duration::from_secs(3)), vec![1, 2]);
        schedule.remove(1);
        schedule.remove(1);
        assert_eq!(schedule.due(t0 + Duration::from_secs(9)), vec![2]);
        schedule.remove(2);
        assert_eq!(schedule.first(), None);
    }
}
