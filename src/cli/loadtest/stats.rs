//! Counting outcomes: successes with their latency (an HDR histogram, microsecond
//! resolution) and failures by code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Failures by code (e.g. `TIMEOUT`, `RATE_LIMITED`), in name order.
pub type Failures = BTreeMap<String, u64>;

/// Largest latency the histograms hold: 1 hour (longer values are clamped to it).
const MAX_MICROS: u64 = 3_600_000_000;

/// Latency percentiles, in milliseconds (microsecond resolution).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// What one phase counted.
#[derive(Debug, Clone)]
pub struct Tally {
    latency: Histogram<u64>,
    failures: Failures,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
            failures: Failures::new(),
        }
    }
}

impl Tally {
    /// One success that took `elapsed`.
    pub fn success(&mut self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// One failure (or `count`) with `code`.
    pub fn failure(&mut self, code: impl Into<String>, count: u64) {
        if count > 0 {
            *self.failures.entry(code.into()).or_default() += count;
        }
    }

    /// Successes counted.
    pub fn succeeded(&self) -> u64 {
        self.latency.len()
    }

    /// Failures counted.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Failures by code.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// The successes' latency percentiles.
    pub fn percentiles(&self) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.latency.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: self.latency.len(),
            p50_ms: ms(self.latency.value_at_quantile(0.50)),
            p95_ms: ms(self.latency.value_at_quantile(0.95)),
            p99_ms: ms(self.latency.value_at_quantile(0.99)),
            max_ms: ms(self.latency.max()),
        }
    }
}

/// A tally shared by the tasks of one phase.
#[derive(Debug, Clone, Default)]
pub struct SharedTally(Arc<Mutex<Tally>>);

impl SharedTally {
    /// Runs `update` on the tally.
    pub fn update(&self, update: impl FnOnce(&mut Tally)) {
        update(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the tally so far.
    pub fn snapshot(&self) -> Tally {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_recorded_successes() {
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.success(Duration::from_millis(ms));
        }
        tally.failure("TIMEOUT", 2);
        tally.failure("TIMEOUT", 1);
        tally.failure("LINK_LOST", 0);
        let p = tally.percentiles();
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        assert_eq!(tally.failed(), 3);
        assert_eq!(tally.failures().len(), 1, "zero counts are not recorded");
    }

    #[test]
    fn latencies_beyond_an_hour_are_clamped() {
        let mut tally = Tally::default();
        tally.success(Duration::from_secs(7200));
        tally.success(Duration::ZERO);
        assert_eq!(tally.succeeded(), 2);
        assert!(tally.percentiles().max_ms <= 3_600_000.0 * 1.001);
    }

    #[test]
    fn an_empty_tally_has_zero_percentiles() {
        assert_eq!(Tally::default().percentiles(), Percentiles::default());
    }
}
