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

/// Why something was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The connection limit and its reserve were full at accept.
    ConnectionLimit,
    /// The address held its maximum of connections at accept.
    PerIpConnectionLimit,
    /// The connection did not upgrade within the upgrade deadline.
    UpgradeTimeout,
    /// The TLS handshake failed.
    TlsHandshakeFailed,
    /// The address exceeded its registration rate.
    RegistrationRateLimited,
    /// A session was throttled (one per RATE_LIMITED notice).
    RateLimited,
    /// A session stayed over its limit for the flood time and was closed (4006).
    FloodClosed,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 7] = [
        Reason::ConnectionLimit,
        Reason::PerIpConnectionLimit,
        Reason::UpgradeTimeout,
        Reason::TlsHandshakeFailed,
        Reason::RegistrationRateLimited,
        Reason::RateLimited,
        Reason::FloodClosed,
    ];

    /// The name in the metric's `reason` label and in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectionLimit => "connection_limit",
            Reason::PerIpConnectionLimit => "per_ip_connection_limit",
            Reason::UpgradeTimeout => "upgrade_timeout",
            Reason::TlsHandshakeFailed => "tls_handshake_failed",
            Reason::RegistrationRateLimited => "registration_rate_limited",
            Reason::RateLimited => "rate_limited",
            Reason::FloodClosed => "flood_closed",
        }
    }
}

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
    tallies: Mutex<BTreeMap<Reason, Tally>>,
}

impl Refusals {
    /// Counts one refusal of `remote` for `reason`.
    pub fn note(&self, reason: Reason, remote: IpAddr) {
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
    pub fn take(&self) -> BTreeMap<Reason, Tally> {
        std::mem::take(&mut *self.tallies.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Writes one line per reason refused since the last call.
    pub fn log(&self) {
        for (reason, tally) in self.take() {
            warn!(
                reason = reason.as_str(),
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
            refusals.note(Reason::RateLimited, a);
        }
        refusals.note(Reason::RateLimited, b);
        refusals.note(Reason::UpgradeTimeout, b);
        let tallies = refusals.take();
        assert_eq!(tallies.len(), 2);
        assert_eq!(
            tallies[&Reason::RateLimited],
            Tally {
                count: 1001,
                sample: a
            }
        );
        assert_eq!(tallies[&Reason::UpgradeTimeout].count, 1);
        assert!(refusals.take().is_empty(), "each interval starts empty");
    }
}
