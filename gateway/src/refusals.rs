//! Refusals, counted per reason and logged in aggregate: one line per reason per interval
//! with the count and one sample address, never one line per refused frame or connection.
//! Each refusal also increments `ioap_gateway_refusals_total{reason}`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

use crate::metrics;

/// How often the aggregated lines are written.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Every refusal reason, as it appears in the metric's `reason` label and in the log.
pub const REASONS: &[&str] = &[
    "connection_limit",
    "per_ip_connection_limit",
    "upgrade_timeout",
    "tls_handshake_failed",
    "registration_rate_limited",
    "rate_limited",
    "flood_closed",
];

/// What was refused since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// One of the addresses refused (the first of the interval).
    pub sample: IpAddr,
}

/// The refusals of the current interval, by reason (a fixed set of names: bounded).
#[derive(Debug, Default)]
pub struct Refusals {
    tallies: Mutex<BTreeMap<&'static str, Tally>>,
}

impl Refusals {
    /// Counts one refusal of `remote` for `reason` (one of [`REASONS`]).
    pub fn note(&self, reason: &'static str, remote: IpAddr) {
        metrics::refused(reason);
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        tallies
            .entry(reason)
            .and_modify(|tally| tally.count += 1)
            .or_insert(Tally {
                count: 1,
                sample: remote,
            });
    }

    /// Takes the interval's tallies, leaving it empty.
    pub fn take(&self) -> BTreeMap<&'static str, Tally> {
        std::mem::take(&mut *self.tallies.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Writes one line per reason refused since the last call.
    pub fn log(&self) {
        for (reason, tally) in self.take() {
            warn!(
                reason,
                count = tally.count,
                sample_remote = %tally.sample,
                interval_s = LOG_INTERVAL.as_secs(),
                "refused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_aggregated_per_reason_with_the_first_address() {
        let refusals = Refusals::default();
        let a = IpAddr::from([127, 0, 0, 2]);
        let b = IpAddr::from([127, 0, 0, 3]);
        for _ in 0..1000 {
            refusals.note("rate_limited", a);
        }
        refusals.note("rate_limited", b);
        refusals.note("upgrade_timeout", b);
        let tallies = refusals.take();
        assert_eq!(tallies.len(), 2);
        assert_eq!(
            tallies["rate_limited"],
            Tally {
                count: 1001,
                sample: a
            }
        );
        assert_eq!(tallies["upgrade_timeout"].count, 1);
        assert!(refusals.take().is_empty(), "each interval starts empty");
    }
}
