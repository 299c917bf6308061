//! What the accept loop does when `accept` fails (out of descriptors, most often): wait a
//! little longer each time, never spin, and log once per interval, not once per failure.

use std::time::{Duration, Instant};

/// The first wait after a failed accept.
const FIRST_WAIT: Duration = Duration::from_millis(5);
/// The longest wait: a descriptor freed is used within this.
const LONGEST_WAIT: Duration = Duration::from_millis(100);
/// At most one log line per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Backoff state of the accept loop, with time as an input.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    wait: Option<Duration>,
    last_log: Option<Instant>,
    failures_since_log: u64,
}

/// What to do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFailure {
    /// How long to wait before accepting again.
    pub wait: Duration,
    /// `Some(n)`: log now, covering `n` failures.
    pub log: Option<u64>,
}

impl AcceptBackoff {
    /// An accept failed at `now`.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        let wait = self
            .wait
            .map_or(FIRST_WAIT, |wait| (wait * 2).min(LONGEST_WAIT));
        self.wait = Some(wait);
        self.failures_since_log += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL);
        let log = due.then(|| {
            self.last_log = Some(now);
            std::mem::take(&mut self.failures_since_log)
        });
        AfterFailure { wait, log }
    }

    /// An accept succeeded: the next failure starts from the first wait again.
    pub fn succeeded(&mut self) {
        self.wait = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_on_success() {
        let mut backoff = AcceptBackoff::default();
        let now = Instant::now();
        let waits: Vec<u64> = (0..8)
            .map(|_| backoff.failed(now).wait.as_millis() as u64)
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 100, 100, 100]);
        backoff.succeeded();
        assert_eq!(backoff.failed(now).wait, FIRST_WAIT);
    }

    #[test]
    fn one_log_line_per_interval_counts_the_failures_between() {
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        assert_eq!(backoff.failed(start).log, Some(1));
        for i in 1..=99u64 {
            let at = start + Duration::from_millis(i * 50);
            assert_eq!(backoff.failed(at).log, None, "failure {i} is not logged");
        }
        let later = start + LOG_INTERVAL;
        assert_eq!(backoff.failed(later).log, Some(100));
    }
}
