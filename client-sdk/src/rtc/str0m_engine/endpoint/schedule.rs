//! When each connection next needs the loop: one deadline per connection, the earliest found
//! at once and any one moved or removed without a scan of the others; and when the loop wakes
//! for a deadline (near ones exactly, far ones on a shared grid).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The grid far deadlines are rounded up to, shared by every endpoint in the process.
const GRID: Duration = Duration::from_millis(16);
/// Deadlines nearer than this are kept exact (a connection being set up, a retransmission).
const EXACT_WITHIN: Duration = Duration::from_millis(64);

/// When to wake for `deadline`: a far one is rounded up to the process-wide grid, so the
/// idle checks of thousands of connections (ICE consent every 2 s, str0m's own timers) wake
/// the runtime in a few batches rather than one at a time; at most 16 ms late, on timers that
/// wait 64 ms or more.
pub fn wake_at(deadline: Instant, now: Instant) -> Instant {
    if deadline <= now + EXACT_WITHIN {
        return deadline;
    }
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now);
    let Some(since) = deadline.checked_duration_since(epoch) else {
        return deadline;
    };
    let grid = GRID.as_nanos();
    let steps = since.as_nanos().div_ceil(grid);
    u64::try_from(steps * grid).map_or(deadline, |nanos| epoch + Duration::from_nanos(nanos))
}

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
    use super::*;

    #[test]
    fn near_deadlines_are_exact_and_far_ones_land_on_the_grid() {
        let now = Instant::now();
        let near = now + Duration::from_millis(10);
        assert_eq!(wake_at(near, now), near);
        let a = wake_at(now + Duration::from_millis(1_001), now);
        let b = wake_at(now + Duration::from_millis(1_007), now);
        assert_eq!(a, b, "two connections' checks 6 ms apart wake together");
        assert!(a >= now + Duration::from_millis(1_007));
        assert!(a <= now + Duration::from_millis(1_001) + GRID);
        let past = now - Duration::from_secs(1);
        assert_eq!(wake_at(past, now), past);
    }

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
