//! A TURN client (RFC 8656, UDP) in the sans-IO style of the rest of the engine: one
//! allocation per server for all of an agent's peer connections, permissions per peer
//! address, data in Send and Data indications. Time is an input; the engine's loop sends
//! what [`TurnClient::poll_transmit`] returns to [`TurnClient::server`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use stun::message::{CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_SUCCESS_RESPONSE, METHOD_DATA};

mod message;

pub use message::Credentials;
use message::Request;

/// Transmissions of a request before it counts as unanswered.
const ATTEMPTS: u32 = 5;
const FIRST_RTO: Duration = Duration::from_millis(250);
/// Permissions last 5 minutes (RFC 8656 §9) …
const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// … and those in use are renewed a minute early.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Peer addresses with a permission at once, per allocation.
pub const MAX_PERMISSIONS: usize = 1024;
/// Datagrams held per peer while its permission is being created.
pub const QUEUED_PER_PEER: usize = 32;
/// Challenges answered in a row before the server counts as refusing the credentials.
const MAX_CHALLENGES: u32 = 3;

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists: the relayed address, and this side's address as the server saw it.
    Allocated {
        /// The relayed transport address (a `relay` candidate).
        relayed: SocketAddr,
        /// The server-reflexive address, if the server said.
        mapped: Option<SocketAddr>,
    },
    /// The allocation failed or was lost, with the reason.
    Failed(String),
}

#[derive(Debug)]
struct Transaction {
    request: Request,
    bytes: Vec<u8>,
    sent: u32,
    next: Instant,
}

#[derive(Debug)]
struct Permission {
    granted_until: Option<Instant>,
    asking: bool,
    /// Last sent through: a permission nobody uses is let lapse, not renewed.
    used: Instant,
    queue: VecDeque<Vec<u8>>,
}

impl Permission {
    fn new(now: Instant) -> Self {
        Permission {
            granted_until: None,
            asking: false,
            used: now,
            queue: VecDeque::new(),
        }
    }

    /// When it is renewed (if still in use then) or else lapses.
    fn deadline(&self) -> Option<Instant> {
        let until = self.granted_until?;
        let renew_at = until.checked_sub(RENEW_BEFORE).unwrap_or(until);
        Some(if self.used_since_granted() {
            renew_at
        } else {
            until
        })
        .filter(|_| !self.asking)
    }

    /// Data went through it since it was granted (or last renewed).
    fn used_since_granted(&self) -> bool {
        self.granted_until
            .and_then(|until| until.checked_sub(PERMISSION_LIFETIME))
            .is_some_and(|granted| self.used > granted)
    }

    /// Granted, in use, and within a minute of lapsing: renew it.
    fn due(&self, now: Instant) -> bool {
        !self.asking
            && self.used_since_granted()
            && self
                .granted_until
                .is_some_and(|until| until.checked_sub(RENEW_BEFORE).is_none_or(|at| at <= now))
    }
}

/// One allocation on one TURN server.
#[derive(Debug)]
pub struct TurnClient {
    server: SocketAddr,
    credentials: Credentials,
    challenges: u32,
    relayed: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    failed: bool,
    transactions: HashMap<[u8; 12], Transaction>,
    permissions: HashMap<IpAddr, Permission>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
}

impl TurnClient {
    /// Starts allocating on `server` with a long-term credential.
    pub fn new(server: SocketAddr, username: String, password: String, now: Instant) -> Self {
        let mut client = TurnClient {
            server,
            credentials: Credentials {
                username,
                password,
                challenge: None,
            },
            challenges: 0,
            relayed: None,
            refresh_at: None,
            failed: false,
            transactions: HashMap::new(),
            permissions: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        client.start(Request::Allocate, now);
        client
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The TURN user name (which allocation this is).
    pub fn username(&self) -> &str {
        &self.credentials.username
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| !self.failed)
    }

    /// The relayed address it had, once it failed (its candidate is withdrawn).
    pub fn relayed_at_failure(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| self.failed)
    }

    /// Failed for good (a new client must be made).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// A datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// What happened.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] is next due.
    pub fn deadline(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let retransmit = self.transactions.values().map(|t| t.next).min();
        let permission = self
            .permissions
            .values()
            .filter_map(Permission::deadline)
            .min();
        [retransmit, self.refresh_at, permission]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: retransmissions, the allocation's and the permissions' refreshes.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        let due: Vec<[u8; 12]> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.next <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(transaction) = self.transactions.get_mut(&id) else {
                continue;
            };
            if transaction.sent >= ATTEMPTS {
                let request = transaction.request;
                self.transactions.remove(&id);
                self.unanswered(request);
                continue;
            }
            transaction.sent += 1;
            transaction.next = now + FIRST_RTO * 2u32.pow(transaction.sent - 1);
            self.out.push_back(transaction.bytes.clone());
        }
        if self.refresh_at.is_some_and(|at| at <= now) {
            self.refresh_at = None;
            self.start(Request::Refresh(message::ALLOCATION_LIFETIME), now);
        }
        self.permissions.retain(|_, p| {
            p.asking || p.granted_until.is_some_and(|until| until > now) || !p.queue.is_empty()
        });
        let renew: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, p)| p.due(now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in renew {
            self.ask_permission(ip, now);
        }
    }

    /// Sends `data` to `peer` through the relay (after creating a permission if needed);
    /// false if it was refused (no allocation, or too many peers or queued datagrams).
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8], now: Instant) -> bool {
        if self.relayed().is_none() {
            return false;
        }
        if !self.permissions.contains_key(&peer.ip()) && self.permissions.len() >= MAX_PERMISSIONS {
            return false;
        }
        let permission = self
            .permissions
            .entry(peer.ip())
            .or_insert_with(|| Permission::new(now));
        permission.used = now;
        if permission.granted_until.is_some_and(|until| until > now) {
            return match message::send_indication(peer, data) {
                Ok(bytes) => {
                    self.out.push_back(bytes);
                    true
                }
                Err(_) => false,
            };
        }
        if permission.queue.len() >= QUEUED_PER_PEER {
            return false;
        }
        let Ok(bytes) = message::send_indication(peer, data) else {
            return false;
        };
        permission.queue.push_back(bytes);
        if !permission.asking {
            self.ask_permission(peer.ip(), now);
        }
        true
    }

    /// Takes a datagram from the server: a response, or a Data indication whose peer and
    /// payload it returns. `None` for anything else (not for this client, or consumed).
    pub fn handle_datagram(&mut self, data: &[u8], now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let mut message = message::decode(data)?;
        if message.typ.class == CLASS_INDICATION && message.typ.method == METHOD_DATA {
            let (peer, payload) = message::data_indication(&message)?;
            let permitted = self
                .permissions
                .get(&peer.ip())
                .is_some_and(|p| p.granted_until.is_some());
            return permitted.then_some((peer, payload));
        }
        let id = message.transaction_id.0;
        let request = self.transactions.get(&id)?.request;
        if message.typ.class == CLASS_SUCCESS_RESPONSE {
            if !self.credentials.verify(&mut message) {
                return None;
            }
            self.transactions.remove(&id);
            self.challenges = 0;
            self.on_success(request, &message, now);
        } else if message.typ.class == CLASS_ERROR_RESPONSE {
            self.transactions.remove(&id);
            self.on_error(request, &message, now);
        }
        None
    }

    fn on_success(&mut self, request: Request, message: &stun::message::Message, now: Instant) {
        match request {
            Request::Allocate => match message::allocation(message) {
                Some((relayed, mapped, lifetime)) => {
                    self.relayed = Some(relayed);
                    self.refresh_at = Some(now + lifetime / 2);
                    self.events
                        .push_back(TurnEvent::Allocated { relayed, mapped });
                }
                None => self.fail("the Allocate answer carried no relayed address".into()),
            },
            Request::Refresh(_) => {
                let lifetime = message::lifetime(message).unwrap_or(message::ALLOCATION_LIFETIME);
                self.refresh_at = Some(now + lifetime / 2);
            }
            Request::Permission(peer) => {
                if let Some(permission) = self.permissions.get_mut(&peer.ip()) {
                    permission.asking = false;
                    permission.granted_until = Some(now + PERMISSION_LIFETIME);
                    self.out.extend(permission.queue.drain(..));
                }
            }
        }
    }

    fn on_error(&mut self, request: Request, message: &stun::message::Message, now: Instant) {
        let code = message::error_code(message).unwrap_or(0);
        let challenged = match code {
            401 => message::challenge(message),
            438 => message::nonce(message).and_then(|nonce| {
                let realm = self.credentials.challenge.as_ref()?.0.clone();
                Some((realm, nonce))
            }),
            _ => None,
        };
        if let Some(challenge) = challenged
            && self.challenges < MAX_CHALLENGES
        {
            // 401 first time (no credentials sent yet), or a stale nonce: answer it.
            self.challenges += 1;
            self.credentials.challenge = Some(challenge);
            self.start(request, now);
            return;
        }
        let reason = format!("the TURN server answered {code} to {request:?}");
        match request {
            Request::Permission(peer) => {
                if let Some(permission) = self.permissions.remove(&peer.ip()) {
                    tracing::debug!(%reason, dropped = permission.queue.len(), "no TURN permission");
                }
            }
            Request::Allocate | Request::Refresh(_) => self.fail(reason),
        }
    }

    fn unanswered(&mut self, request: Request) {
        match request {
            Request::Permission(peer) => {
                if let Some(permission) = self.permissions.remove(&peer.ip()) {
                    tracing::debug!(
                        dropped = permission.queue.len(),
                        "the TURN server did not answer a permission"
                    );
                }
            }
            Request::Allocate | Request::Refresh(_) => {
                self.fail(format!("the TURN server {} did not answer", self.server));
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.transactions.clear();
            self.permissions.clear();
            self.events.push_back(TurnEvent::Failed(reason));
        }
    }

    fn ask_permission(&mut self, ip: IpAddr, now: Instant) {
        if let Some(permission) = self.permissions.get_mut(&ip) {
            permission.asking = true;
        }
        self.start(Request::Permission(SocketAddr::new(ip, 0)), now);
    }

    /// Releases the allocation (best effort: one Refresh with lifetime 0, not retransmitted).
    pub fn release(&mut self) -> Option<Vec<u8>> {
        self.relayed?;
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).ok()?;
        message::request(Request::Refresh(Duration::ZERO), id, &self.credentials).ok()
    }

    fn start(&mut self, request: Request, now: Instant) {
        let mut id = [0u8; 12];
        if getrandom::fill(&mut id).is_err() {
            self.fail("no randomness for a transaction id".into());
            return;
        }
        match message::request(request, id, &self.credentials) {
            Ok(bytes) => {
                self.out.push_back(bytes.clone());
                self.transactions.insert(
                    id,
                    Transaction {
                        request,
                        bytes,
                        sent: 1,
                        next: now + FIRST_RTO,
                    },
                );
            }
            Err(e) => self.fail(format!("cannot encode a TURN request: {e}")),
        }
    }
}

#[cfg(test)]
mod tests;
