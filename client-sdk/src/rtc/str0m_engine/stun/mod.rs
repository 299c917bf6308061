//! The few STUN messages the engine speaks outside ICE (RFC 8489): a Binding request to learn
//! the agent's address outside its NAT (a server-reflexive candidate), its answer, and the
//! USERNAME of an incoming connectivity check, which says which peer connection it is for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const HEADER: usize = 20;
const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A STUN transaction id.
pub type TransactionId = [u8; 12];

/// Whether `datagram` looks like STUN (RFC 7983: first byte 0–3, and the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER
        && datagram[0] < 4
        && u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) == MAGIC_COOKIE
}

/// A Binding request without attributes.
pub fn binding_request(id: TransactionId) -> [u8; HEADER] {
    let mut request = [0u8; HEADER];
    request[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    request[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    request[8..].copy_from_slice(&id);
    request
}

fn message_type(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[0], datagram[1]])
}

fn transaction_id(datagram: &[u8]) -> TransactionId {
    let mut id = [0u8; 12];
    id.copy_from_slice(&datagram[8..HEADER]);
    id
}

/// The attributes of a STUN message, as (type, value) pairs; stops at the first malformed one.
fn attributes(datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = &datagram[HEADER..datagram.len().min(HEADER + declared)];
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or_default();
        Some((kind, value))
    })
}

/// The address in a Binding success response to `id`, if `datagram` is one.
pub fn binding_success(datagram: &[u8], id: &TransactionId) -> Option<SocketAddr> {
    if !is_stun(datagram)
        || message_type(datagram) != BINDING_SUCCESS
        || &transaction_id(datagram) != id
    {
        return None;
    }
    let mut plain = None;
    for (kind, value) in attributes(datagram) {
        match kind {
            ATTR_XOR_MAPPED_ADDRESS => return address(value, Some(&datagram[4..HEADER])),
            ATTR_MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
    }
    plain
}

/// Decodes a (XOR-)MAPPED-ADDRESS value; `xor` is the cookie and transaction id to unmask with.
fn address(value: &[u8], xor: Option<&[u8]>) -> Option<SocketAddr> {
    let mask = |i: usize| xor.map_or(0, |x| x[i]);
    let port = u16::from_be_bytes([value.get(2)? ^ mask(0), value.get(3)? ^ mask(1)]);
    let ip = match value.get(1)? {
        0x01 => {
            let b: [u8; 4] = std::array::from_fn(|i| value.get(4 + i).map_or(0, |v| v ^ mask(i)));
            (value.len() >= 8).then_some(IpAddr::V4(Ipv4Addr::from(b)))?
        }
        0x02 => {
            let b: [u8; 16] = std::array::from_fn(|i| value.get(4 + i).map_or(0, |v| v ^ mask(i)));
            (value.len() >= 20).then_some(IpAddr::V6(Ipv6Addr::from(b)))?
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// This side's ICE user name fragment from an incoming connectivity check
/// (`USERNAME = "ours:theirs"`, RFC 8445 §7.2.2); `None` for anything else.
pub fn check_username(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) || message_type(datagram) != BINDING_REQUEST {
        return None;
    }
    let (_, value) = attributes(datagram).find(|(kind, _)| *kind == ATTR_USERNAME)?;
    let username = std::str::from_utf8(value).ok()?;
    Some(username.split_once(':').map_or(username, |(ours, _)| ours))
}

/// Asks one STUN server for this socket's address outside the NAT: a Binding request,
/// retransmitted after 250, 500 and 1,000 ms (RFC 8489 §6.2.1, shortened), then given up.
/// Time is an input; the engine's loop sends what [`SrflxProbe::poll_transmit`] returns.
#[derive(Debug)]
pub struct SrflxProbe {
    server: SocketAddr,
    id: TransactionId,
    sent: u32,
    next: Option<Instant>,
    mapped: Option<SocketAddr>,
}

/// Transmissions of one probe before it gives up.
const PROBE_ATTEMPTS: u32 = 4;
const PROBE_FIRST_RTO: Duration = Duration::from_millis(250);

impl SrflxProbe {
    /// A probe of `server` that starts at `now`.
    pub fn new(server: SocketAddr, id: TransactionId, now: Instant) -> Self {
        SrflxProbe {
            server,
            id,
            sent: 0,
            next: Some(now),
            mapped: None,
        }
    }

    /// The server asked.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The request to send now, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<[u8; HEADER]> {
        let due = self.next.filter(|next| *next <= now)?;
        if self.sent == PROBE_ATTEMPTS {
            self.next = None;
            return None;
        }
        self.sent += 1;
        let wait = PROBE_FIRST_RTO * 2u32.pow(self.sent - 1);
        self.next = Some(due.max(now) + wait);
        Some(binding_request(self.id))
    }

    /// When [`SrflxProbe::poll_transmit`] next has something (or gives up); `None` when done.
    pub fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Takes a datagram from the server; returns the mapped address the first time it answers.
    pub fn handle(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<SocketAddr> {
        if source != self.server || self.mapped.is_some() {
            return None;
        }
        let mapped = binding_success(datagram, &self.id)?;
        self.mapped = Some(mapped);
        self.next = None;
        Some(mapped)
    }

    /// Answered or given up.
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }
}

#[cfg(test)]
mod tests;
