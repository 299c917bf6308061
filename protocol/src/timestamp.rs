//! RFC 3339 UTC timestamps with millisecond precision, e.g. `2026-11-21T14:32:12.123Z`.
//!
//! The protocol crate never reads a clock: callers pass "now" in, made with
//! [`Timestamp::from_system_time`] or [`Timestamp::from_unix_millis`].

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, held as milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a string is not an ioap timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp must be RFC 3339 UTC like 2026-01-01T00:00:00.000Z: {0}")]
pub struct TimestampError(String);

/// Earliest accepted timestamp: 1970-01-01T00:00:00Z.
const MIN_MILLIS: i64 = 0;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// From milliseconds since the Unix epoch; `None` outside years 1970–9999.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        (MIN_MILLIS..=MAX_MILLIS)
            .contains(&millis)
            .then_some(Timestamp(millis))
    }

    /// From a `SystemTime` (clamped to the representable range).
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS))
            .unwrap_or(MIN_MILLIS);
        Timestamp(millis.clamp(MIN_MILLIS, MAX_MILLIS))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// This time plus `d` (saturating at the end of year 9999).
    pub fn saturating_add(self, d: Duration) -> Self {
        let add = i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS);
        Timestamp(self.0.saturating_add(add).min(MAX_MILLIS))
    }

    /// This time minus `d` (saturating at the epoch).
    pub fn saturating_sub(self, d: Duration) -> Self {
        let sub = i64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS);
        Timestamp(self.0.saturating_sub(sub).max(MIN_MILLIS))
    }

    /// The absolute distance between two timestamps.
    pub fn abs_diff(self, other: Timestamp) -> Duration {
        Duration::from_millis(self.0.abs_diff(other.0))
    }

    /// Parses the strict form: `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (upper-case `T` and `Z`,
    /// no offsets). Sub-millisecond digits are accepted and truncated.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let bad = |why: &str| TimestampError(why.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() < 20 || bytes.len() > 30 {
            return Err(bad("wrong length"));
        }
        if bytes[10] != b'T' || bytes[bytes.len() - 1] != b'Z' {
            return Err(bad("expected upper-case 'T' and a trailing 'Z'"));
        }
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| bad(&e.to_string()))?;
        let millis = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| bad("out of range"))?;
        Self::from_unix_millis(millis).ok_or_else(|| bad("outside years 1970-9999"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000_000;
        let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123).expect("in range");
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse("2023-11-14T22:13:20.123Z"), Ok(t));
        assert_eq!(
            Timestamp::parse("2023-11-14T22:13:20.123456Z"),
            Ok(t),
            "sub-millisecond digits truncate"
        );
        assert_eq!(
            Timestamp::parse("2023-11-14T22:13:20Z").map(|t| t.unix_millis()),
            Ok(1_700_000_000_000)
        );
    }

    #[test]
    fn refuses_offsets_and_lowercase() {
        for bad in [
            "2023-11-14T22:13:20.123+00:00",
            "2023-11-14t22:13:20.123Z",
            "2023-11-14T22:13:20.123z",
            "2023-11-14 22:13:20.123Z",
            "2023-11-14T22:13:20.Z",
            "2023-13-14T22:13:20.123Z",
            "1969-12-31T23:59:59.999Z",
            "",
            "yesterday",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(1_000).expect("in range");
        assert_eq!(t.saturating_sub(Duration::from_secs(5)).unix_millis(), 0);
        assert_eq!(
            t.saturating_add(Duration::from_secs(u64::MAX))
                .unix_millis(),
            MAX_MILLIS
        );
        assert_eq!(
            t.abs_diff(Timestamp::from_unix_millis(3_500).expect("in range")),
            Duration::from_millis(2_500)
        );
    }
}
