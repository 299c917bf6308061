//! Rate limits (token buckets from `governor`): frames per DID, frames per IP, and
//! registrations per IP.

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
        }
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
