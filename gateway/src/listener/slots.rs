//! Connection slots: every accepted TCP connection holds one from accept until its socket is
//! closed (through the WebSocket session, if it upgrades), so the connection limit counts
//! connections that never upgrade too.
//!
//! Beyond the limit a small reserve keeps `/health` answerable: a connection admitted to the
//! reserve is served only `/health` (`/ws` is closed with 1013, anything else gets 503), with
//! at most [`RESERVE_PER_IP`] such connections per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::refusals::Reason;

/// Connections admitted beyond the limit, for `/health` and for the 1013 refusal.
pub const RESERVE: usize = 16;
/// Reserve connections one address may hold.
pub const RESERVE_PER_IP: u32 = 2;

/// What a new connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within the limits: served in full.
    Full,
    /// In the reserve: `/health` only.
    Reserve,
}

#[derive(Debug, Default)]
struct Counts {
    full: usize,
    reserve: usize,
    per_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerIp {
    full: u32,
    reserve: u32,
}

/// The gateway's connection counts.
#[derive(Debug)]
pub struct ConnectionSlots {
    max: usize,
    max_per_ip: u32,
    counts: Mutex<Counts>,
}

impl ConnectionSlots {
    /// Slots for at most `max` connections, `max_per_ip` from one address (0: no per-address
    /// limit).
    pub fn new(max: usize, max_per_ip: u32) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            max,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Reason> {
        let mut counts = self.counts();
        let counts = &mut *counts;
        let per_ip = counts.per_ip.entry(ip).or_default();
        let admission = if self.max_per_ip != 0 && per_ip.full >= self.max_per_ip {
            None
        } else if counts.full < self.max {
            Some(Admission::Full)
        } else {
            None
        };
        let admission = match admission {
            Some(admission) => admission,
            None if counts.reserve < RESERVE && per_ip.reserve < RESERVE_PER_IP => {
                Admission::Reserve
            }
            None => {
                let refusal = if self.max_per_ip != 0 && per_ip.full >= self.max_per_ip {
                    Reason::PerIpConnectionLimit
                } else {
                    Reason::ConnectionLimit
                };
                if per_ip.full == 0 && per_ip.reserve == 0 {
                    counts.per_ip.remove(&ip);
                }
                return Err(refusal);
            }
        };
        match admission {
            Admission::Full => {
                per_ip.full += 1;
                counts.full += 1;
            }
            Admission::Reserve => {
                per_ip.reserve += 1;
                counts.reserve += 1;
            }
        }
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
            admission,
        })
    }

    /// Connections holding a full slot now.
    pub fn open(&self) -> usize {
        self.counts().full
    }

    /// Addresses with at least one connection (bounded by the open connections).
    pub fn addresses(&self) -> usize {
        self.counts().per_ip.len()
    }

    fn release(&self, ip: IpAddr, admission: Admission) {
        let mut counts = self.counts();
        let counts = &mut *counts;
        match admission {
            Admission::Full => counts.full = counts.full.saturating_sub(1),
            Admission::Reserve => counts.reserve = counts.reserve.saturating_sub(1),
        }
        if let Some(per_ip) = counts.per_ip.get_mut(&ip) {
            match admission {
                Admission::Full => per_ip.full = per_ip.full.saturating_sub(1),
                Admission::Reserve => per_ip.reserve = per_ip.reserve.saturating_sub(1),
            }
            if per_ip.full == 0 && per_ip.reserve == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// One connection's slot; released when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    ip: IpAddr,
    admission: Admission,
}

impl Slot {
    /// How the connection was admitted.
    pub fn admission(&self) -> Admission {
        self.admission
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.ip, self.admission);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_limit_then_the_reserve_then_refusal() {
        let slots = ConnectionSlots::new(2, 0);
        let a = slots.admit(ip(1)).expect("first");
        let _b = slots.admit(ip(1)).expect("second");
        assert_eq!(a.admission(), Admission::Full);
        let reserve: Vec<_> = (0..RESERVE as u8)
            .map(|i| slots.admit(ip(10 + i / 2)).expect("reserve"))
            .collect();
        assert!(reserve.iter().all(|s| s.admission() == Admission::Reserve));
        assert_eq!(slots.admit(ip(99)).err(), Some(Reason::ConnectionLimit));
        drop(a);
        assert_eq!(
            slots.admit(ip(99)).map(|s| s.admission()).ok(),
            Some(Admission::Full),
            "a released slot is usable at once"
        );
    }

    #[test]
    fn one_address_gets_its_cap_and_two_reserve_slots() {
        let slots = ConnectionSlots::new(100, 3);
        let held: Vec<_> = (0..3).map(|_| slots.admit(ip(2)).expect("cap")).collect();
        let r1 = slots.admit(ip(2)).expect("reserve");
        let _r2 = slots.admit(ip(2)).expect("reserve");
        assert_eq!(r1.admission(), Admission::Reserve);
        assert_eq!(slots.admit(ip(2)).err(), Some(Reason::PerIpConnectionLimit));
        assert_eq!(
            slots.admit(ip(3)).map(|s| s.admission()).ok(),
            Some(Admission::Full),
            "other addresses are not affected"
        );
        assert_eq!(slots.open(), 3);
        drop(held);
        drop(r1);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn addresses_are_forgotten_when_their_last_connection_ends() {
        let slots = ConnectionSlots::new(1, 0);
        let slot = slots.admit(ip(4)).expect("slot");
        assert_eq!(slots.addresses(), 1);
        drop(slot);
        assert_eq!(slots.addresses(), 0);
        assert_eq!(slots.counts().reserve, 0);
    }
}
