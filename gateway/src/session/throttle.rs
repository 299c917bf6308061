//! The flood rules of PROTOCOL_DESIGN.md §10 (*Rate limits*) as a plain state machine with
//! time as an input: when a throttled session is told so (at most one RATE_LIMITED per
//! [`NOTICE_INTERVAL`]) and when a sustained flood closes it (4006).
//!
//! A frame that finds its budget empty is not dropped: the session stops reading until the
//! budget has room again, then handles the frame. The session is *over its own limit* while
//! its own (per-DID) budget keeps making it wait: a wait that begins within [`CONTINUITY`] of
//! the end of the previous one continues the stretch, a longer gap starts a new one. A stretch
//! that lasts the configured flood time closes the session. Waits caused by the
//! shared per-IP budget are noticed but never close a session: other sessions from the same
//! address may have used that budget.

use std::time::{Duration, Instant};

/// At most one RATE_LIMITED notice per session per this interval.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(1);
/// A wait for the session's own budget that begins less than this after the previous one
/// ended continues the stretch over the limit.
pub const CONTINUITY: Duration = Duration::from_secs(1);

/// What a session does about one wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Send a RATE_LIMITED notice now.
    pub notice: bool,
    /// Close the session with 4006.
    pub close: bool,
}

/// One session's throttling state.
#[derive(Debug)]
pub struct Throttle {
    close_after: Duration,
    over_since: Option<Instant>,
    /// When the last wait for the session's own budget ends.
    own_wait_ends: Option<Instant>,
    last_notice: Option<Instant>,
}

impl Throttle {
    /// A session that is closed after `close_after` over its own limit.
    pub fn new(close_after: Duration) -> Self {
        Throttle {
            close_after,
            over_since: None,
            own_wait_ends: None,
            last_notice: None,
        }
    }

    /// A frame must wait from `now` for `wait`, for the session's own budget (`own`) or its
    /// address's.
    pub fn waited(&mut self, now: Instant, wait: Duration, own: bool) -> Verdict {
        let mut verdict = Verdict::default();
        if own {
            let continues = self
                .own_wait_ends
                .is_some_and(|end| now.saturating_duration_since(end) < CONTINUITY);
            if !continues {
                self.over_since = Some(now);
            }
            self.own_wait_ends = Some(now + wait);
            verdict.close = self
                .over_since
                .is_some_and(|since| now.saturating_duration_since(since) >= self.close_after);
        }
        if !verdict.close
            && self
                .last_notice
                .is_none_or(|last| now.saturating_duration_since(last) >= NOTICE_INTERVAL)
        {
            self.last_notice = Some(now);
            verdict.notice = true;
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSE_AFTER: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A flooder at 10x a 200/s limit waits every 5 ms: one notice a second, closed at 10 s.
    #[test]
    fn a_sustained_flood_gets_one_notice_a_second_then_4006_at_the_flood_time() {
        let start = Instant::now();
        let mut throttle = Throttle::new(CLOSE_AFTER);
        let mut notices = 0;
        let mut closed_at = None;
        for i in 0..3000u64 {
            let at = start + ms(5 * i);
            let verdict = throttle.waited(at, ms(5), true);
            notices += u32::from(verdict.notice);
            if verdict.close {
                closed_at = Some(at - start);
                break;
            }
        }
        assert_eq!(closed_at, Some(CLOSE_AFTER));
        assert_eq!(notices, 10, "one per second from 0 s to 9 s");
    }

    #[test]
    fn a_gap_of_a_second_starts_a_new_stretch() {
        let start = Instant::now();
        let mut throttle = Throttle::new(CLOSE_AFTER);
        // Bursts over the limit for 900 ms of every 2.1 s: never ten seconds in a row.
        for stretch in 0..60u64 {
            for i in 0..90u64 {
                let at = start + ms(2100 * stretch + 10 * i);
                assert!(
                    !throttle.waited(at, ms(10), true).close,
                    "closed in stretch {stretch}"
                );
            }
        }
    }

    #[test]
    fn waits_for_the_address_budget_notice_but_never_close() {
        let start = Instant::now();
        let mut throttle = Throttle::new(CLOSE_AFTER);
        let mut notices = 0;
        for i in 0..=6000u64 {
            let verdict = throttle.waited(start + ms(5 * i), ms(5), false);
            assert!(!verdict.close);
            notices += u32::from(verdict.notice);
        }
        assert_eq!(
            notices, 31,
            "30 s of waiting: one notice a second, both ends counted"
        );
    }

    #[test]
    fn the_close_comes_at_the_flood_time_exactly_not_before() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(2));
        assert!(!throttle.waited(start, ms(1), true).close);
        assert!(!throttle.waited(start + ms(999), ms(1), true).close);
        assert!(!throttle.waited(start + ms(1998), ms(1), true).close);
        assert!(
            !throttle.waited(start + ms(1999), ms(1), true).close,
            "N-1 ms"
        );
        assert!(throttle.waited(start + ms(2000), ms(1), true).close, "N");
    }

    /// At 1 frame/s every wait lasts about a second and the next begins as it ends: one
    /// stretch, closed at the flood time.
    #[test]
    fn long_waits_at_a_low_limit_still_form_one_stretch() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(3));
        let closes: Vec<bool> = (0..4u64)
            .map(|i| throttle.waited(start + ms(1001 * i), ms(1000), true).close)
            .collect();
        assert_eq!(closes, [false, false, false, true]);
    }
}
