//! Noticing a gateway that hangs (a stopped process, a dead path) and not only one that
//! closes: ping the gateway (a WebSocket ping) after a quiet spell and give up on it when
//! nothing comes back by a deadline (PROTOCOL_DESIGN.md §10). A plain state machine; time is
//! an input.

use std::time::{Duration, Instant};

/// What the connection should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Nothing yet; ask again at [`GatewayKeepalive::deadline`].
    Wait,
    /// Send a ping to the gateway.
    Ping,
    /// Nothing arrived by the deadline: the gateway is gone; reconnect (elsewhere).
    Dead,
}

/// The keepalive of one gateway connection.
#[derive(Debug, Clone)]
pub struct GatewayKeepalive {
    quiet: Duration,
    timeout: Duration,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl GatewayKeepalive {
    /// Ping after `quiet` without a frame from the gateway; dead when nothing arrives within
    /// `timeout` of the ping.
    pub fn new(quiet: Duration, timeout: Duration, now: Instant) -> Self {
        GatewayKeepalive {
            quiet,
            timeout,
            last_heard: now,
            ping_sent: None,
        }
    }

    /// Anything arrived from the gateway (a frame, a WebSocket ping): it is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_sent = None;
    }

    /// When [`poll`](Self::poll) next has something to say.
    pub fn deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.timeout,
            None => self.last_heard + self.quiet,
        }
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Keepalive {
        if now < self.deadline() {
            return Keepalive::Wait;
        }
        if self.ping_sent.is_some() {
            Keepalive::Dead
        } else {
            self.ping_sent = Some(now);
            Keepalive::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_quiet_gateway_is_pinged_once_and_declared_dead_at_the_deadline() {
        let start = Instant::now();
        let mut keepalive = GatewayKeepalive::new(QUIET, TIMEOUT, start);
        assert_eq!(keepalive.poll(start + QUIET / 2), Keepalive::Wait);
        assert_eq!(keepalive.deadline(), start + QUIET);
        assert_eq!(keepalive.poll(start + QUIET), Keepalive::Ping);
        assert_eq!(keepalive.deadline(), start + QUIET + TIMEOUT);
        assert_eq!(keepalive.poll(start + QUIET + TIMEOUT / 2), Keepalive::Wait);
        assert_eq!(keepalive.poll(start + QUIET + TIMEOUT), Keepalive::Dead);
    }

    #[test]
    fn anything_heard_answers_the_ping_and_restarts_the_quiet_spell() {
        let start = Instant::now();
        let mut keepalive = GatewayKeepalive::new(QUIET, TIMEOUT, start);
        assert_eq!(keepalive.poll(start + QUIET), Keepalive::Ping);
        let answered = start + QUIET + Duration::from_secs(1);
        keepalive.heard(answered);
        assert_eq!(keepalive.poll(answered + TIMEOUT), Keepalive::Wait);
        assert_eq!(keepalive.deadline(), answered + QUIET);
        assert_eq!(keepalive.poll(answered + QUIET), Keepalive::Ping);
    }

    #[test]
    fn a_busy_connection_never_pings() {
        let start = Instant::now();
        let mut keepalive = GatewayKeepalive::new(QUIET, TIMEOUT, start);
        for second in 1..100 {
            let now = start + Duration::from_secs(second);
            keepalive.heard(now);
            assert_eq!(keepalive.poll(now), Keepalive::Wait);
        }
    }
}
