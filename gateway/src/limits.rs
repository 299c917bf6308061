//! Rate limits (token buckets from `governor`): frames per DID, frames per IP,
//! registrations per IP, and the bytes of gateway-relayed links per DID and in all.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::GatewayConfig;

/// Most client IPs whose buckets are kept; beyond it idle buckets are pruned at once.
const MAX_TRACKED_IPS: usize = 100_000;

/// Why a frame must wait before it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Until the budget has room again.
    pub duration: Duration,
    /// The session's own (per-DID) budget is empty, not only its address's.
    pub own: bool,
}

/// The gateway's shared limiters.
#[derive(Debug)]
pub struct Limits {
    clock: DefaultClock,
    per_did: Option<Quota>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    registrations: Option<DefaultKeyedRateLimiter<IpAddr>>,
    relay_per_did: Option<Quota>,
    relay_total: Option<DefaultDirectRateLimiter>,
}

/// A byte budget of `rate` per second with a burst of twice that, and at least two frames of
/// `max_frame` bytes (one frame must always fit).
fn bytes_per_second(rate: u32, max_frame: usize) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let frames = u32::try_from(max_frame.saturating_mul(2)).unwrap_or(u32::MAX);
    let burst = NonZeroU32::new(rate.get().saturating_mul(2).max(frames))?;
    Some(Quota::per_second(rate).allow_burst(burst))
}

fn per_second_with_double_burst(rate: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is non-zero"));
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limits {
    /// Limiters for the configured rates (0 disables a limit).
    pub fn new(config: &GatewayConfig) -> Self {
        Limits {
            clock: DefaultClock::default(),
            per_did: per_second_with_double_burst(config.rate_per_did),
            per_ip: per_second_with_double_burst(config.rate_per_ip).map(RateLimiter::keyed),
            registrations: NonZeroU32::new(config.registrations_per_ip_per_min)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            relay_per_did: bytes_per_second(config.relay_bytes_per_did, config.max_frame_bytes),
            relay_total: bytes_per_second(config.relay_bytes_total, config.max_frame_bytes)
                .map(RateLimiter::direct),
        }
    }

    /// Whether gateway relay is offered (a per-DID relay budget is configured).
    pub fn relay_offered(&self) -> bool {
        self.relay_per_did.is_some()
    }

    /// A fresh relay byte bucket for a new session (`None`: relay is off).
    pub fn relay_limiter(&self) -> Option<DefaultDirectRateLimiter> {
        self.relay_per_did.map(RateLimiter::direct)
    }

    /// Takes a relayed record of `bytes` from the session's relay budget and then the
    /// gateway's, or says how long to wait for room.
    pub fn take_relay(
        &self,
        session: Option<&DefaultDirectRateLimiter>,
        bytes: usize,
    ) -> Result<(), Duration> {
        let Some(cells) = NonZeroU32::new(u32::try_from(bytes).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        for limiter in [session, self.relay_total.as_ref()].into_iter().flatten() {
            match limiter.check_n(cells) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => return Err(not_until.wait_time_from(self.clock.now())),
                // Larger than any burst: cannot happen, a burst holds two of the largest frames.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// A fresh per-DID bucket for a new session (`None`: unlimited).
    pub fn session_limiter(&self) -> Option<DefaultDirectRateLimiter> {
        self.per_did.map(RateLimiter::direct)
    }

    /// Takes one frame from the session's bucket and then from `ip`'s, or says how long to
    /// wait for room.
    pub fn take_frame(
        &self,
        session: Option<&DefaultDirectRateLimiter>,
        ip: IpAddr,
    ) -> Result<(), Wait> {
        if let Some(Err(not_until)) = session.map(RateLimiter::check) {
            return Err(Wait {
                duration: not_until.wait_time_from(self.clock.now()),
                own: true,
            });
        }
        if let Some(Err(not_until)) = self.per_ip.as_ref().map(|l| l.check_key(&ip)) {
            return Err(Wait {
                duration: not_until.wait_time_from(self.clock.now()),
                own: false,
            });
        }
        Ok(())
    }

    /// Takes one registration from `ip`'s bucket; false when it is empty.
    pub fn allow_registration_from(&self, ip: IpAddr) -> bool {
        self.registrations
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(&ip).is_ok())
    }

    /// Forgets buckets that are full again (idle clients), keeping the maps bounded.
    pub fn prune(&self) {
        for limiter in [&self.per_ip, &self.registrations].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Whether a keyed map grew past its bound (then [`Limits::prune`] should run now).
    pub fn over_bound(&self) -> bool {
        [&self.per_ip, &self.registrations]
            .into_iter()
            .flatten()
            .any(|limiter| limiter.len() > MAX_TRACKED_IPS)
    }
}

/// How often idle buckets are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_disables_a_limit_and_buckets_are_per_ip() {
        let config = GatewayConfig {
            rate_per_ip: 1,
            registrations_per_ip_per_min: 0,
            rate_per_did: 0,
            ..GatewayConfig::default()
        };
        let limits = Limits::new(&config);
        assert!(limits.session_limiter().is_none());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(limits.take_frame(None, a).is_ok());
        assert!(limits.take_frame(None, a).is_ok());
        let wait = limits.take_frame(None, a).expect_err("burst of 2 used up");
        assert!(!wait.own, "the address's budget, not the session's");
        assert!(wait.duration > Duration::ZERO && wait.duration <= Duration::from_secs(1));
        assert!(
            limits.take_frame(None, b).is_ok(),
            "another IP has its own bucket"
        );
        for _ in 0..1000 {
            assert!(limits.allow_registration_from(a));
        }
    }

    #[test]
    fn relay_bytes_have_their_own_budgets_and_zero_turns_relay_off() {
        let config = GatewayConfig {
            relay_bytes_per_did: 100_000,
            relay_bytes_total: 1_000_000,
            rate_per_did: 1,
            ..GatewayConfig::default()
        };
        let limits = Limits::new(&config);
        assert!(limits.relay_offered());
        let relay = limits.relay_limiter();
        // Burst: twice the rate (200,000 bytes), which exceeds two 64 KiB frames.
        assert!(limits.take_relay(relay.as_ref(), 150_000).is_ok());
        let wait = limits
            .take_relay(relay.as_ref(), 60_000)
            .expect_err("over the session's relay budget");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // The frame budget is untouched by relayed bytes.
        let frames = limits.session_limiter();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(limits.take_frame(frames.as_ref(), ip).is_ok());
        // A second session has its own relay budget but shares the gateway's.
        let other = limits.relay_limiter();
        assert!(limits.take_relay(other.as_ref(), 150_000).is_ok());
        let off = Limits::new(&GatewayConfig {
            relay_bytes_per_did: 0,
            ..GatewayConfig::default()
        });
        assert!(!off.relay_offered());
        assert!(off.relay_limiter().is_none());
    }

    #[test]
    fn the_gateway_wide_relay_budget_is_shared() {
        let limits = Limits::new(&GatewayConfig {
            relay_bytes_per_did: 1_000_000,
            relay_bytes_total: 70_000,
            ..GatewayConfig::default()
        });
        let (a, b) = (limits.relay_limiter(), limits.relay_limiter());
        // Burst of the total: two 64 KiB frames (131,072 bytes).
        assert!(limits.take_relay(a.as_ref(), 65_536).is_ok());
        assert!(limits.take_relay(b.as_ref(), 65_536).is_ok());
        assert!(limits.take_relay(b.as_ref(), 65_536).is_err());
    }

    #[test]
    fn an_empty_session_bucket_says_how_long_to_wait() {
        let config = GatewayConfig {
            rate_per_did: 10,
            rate_per_ip: 0,
            ..GatewayConfig::default()
        };
        let limits = Limits::new(&config);
        let session = limits.session_limiter();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..20 {
            assert!(
                limits.take_frame(session.as_ref(), ip).is_ok(),
                "burst of 20"
            );
        }
        let wait = limits
            .take_frame(session.as_ref(), ip)
            .expect_err("over the limit");
        assert!(wait.own);
        assert!(wait.duration <= Duration::from_millis(100), "{wait:?}");
    }
}
