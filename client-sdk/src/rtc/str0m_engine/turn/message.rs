//! TURN's messages (RFC 8656) built and read with the `stun` and `turn` crates' codecs.

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION,
    METHOD_REFRESH, METHOD_SEND, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use turn::proto::PROTO_UDP;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Allocate a relayed address (`lifetime` asked).
    Allocate,
    /// Keep the allocation (`Duration::ZERO`: release it).
    Refresh(Duration),
    /// Let the peer at this address send to the relayed address.
    Permission(SocketAddr),
}

/// The long-term credential and what the server said about its realm.
#[derive(Clone)]
pub struct Credentials {
    /// TURN user name.
    pub username: String,
    /// TURN password.
    pub password: String,
    /// REALM and NONCE from the server's last 401/438, once known.
    pub challenge: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn integrity(&self) -> Option<MessageIntegrity> {
        let (realm, _) = self.challenge.as_ref()?;
        Some(MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            realm.clone(),
            self.password.clone(),
        ))
    }

    /// Checks a response's MESSAGE-INTEGRITY, when it carries one.
    pub fn verify(&self, response: &mut Message) -> bool {
        if !response.contains(ATTR_MESSAGE_INTEGRITY) {
            return true;
        }
        self.integrity()
            .is_some_and(|integrity| integrity.check(response).is_ok())
    }
}

/// The lifetime an allocation asks for.
pub const ALLOCATION_LIFETIME: Duration = Duration::from_secs(600);

/// Encodes `request` with transaction id `id`, authenticated once a challenge is known.
pub fn request(
    request: Request,
    id: [u8; 12],
    credentials: &Credentials,
) -> Result<Vec<u8>, stun::Error> {
    let method: Method = match request {
        Request::Allocate => METHOD_ALLOCATE,
        Request::Refresh(_) => METHOD_REFRESH,
        Request::Permission(_) => METHOD_CREATE_PERMISSION,
    };
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(stun::agent::TransactionId(id)),
        Box::new(MessageType::new(method, CLASS_REQUEST)),
    ];
    match request {
        Request::Allocate => {
            setters.push(Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            }));
            setters.push(Box::new(Lifetime(ALLOCATION_LIFETIME)));
        }
        Request::Refresh(lifetime) => setters.push(Box::new(Lifetime(lifetime))),
        Request::Permission(peer) => setters.push(Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })),
    }
    if let (Some((realm, nonce)), Some(integrity)) =
        (&credentials.challenge, credentials.integrity())
    {
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            credentials.username.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.clone())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.clone())));
        setters.push(Box::new(integrity));
    }
    setters.push(Box::new(FINGERPRINT));
    let mut message = Message::new();
    message.build(&setters)?;
    Ok(message.raw)
}

/// A Send indication carrying `data` to `peer` (no authentication: RFC 8656 §11).
pub fn send_indication(peer: SocketAddr, data: &[u8]) -> Result<Vec<u8>, stun::Error> {
    let mut message = Message::new();
    message.build(&[
        Box::new(stun::agent::TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }),
        Box::new(Data(data.to_vec())),
    ])?;
    Ok(message.raw)
}

/// Decodes a STUN message.
pub fn decode(datagram: &[u8]) -> Option<Message> {
    let mut message = Message::new();
    message.unmarshal_binary(datagram).ok()?;
    Some(message)
}

/// The error code of an error response.
pub fn error_code(message: &Message) -> Option<u16> {
    let mut code = ErrorCodeAttribute::default();
    code.get_from(message).ok()?;
    Some(code.code.0)
}

/// REALM and NONCE of a challenge.
pub fn challenge(message: &Message) -> Option<(String, String)> {
    let realm = TextAttribute::get_from_as(message, ATTR_REALM).ok()?;
    let nonce = TextAttribute::get_from_as(message, ATTR_NONCE).ok()?;
    Some((realm.text, nonce.text))
}

/// NONCE alone (a 438 may not repeat the realm).
pub fn nonce(message: &Message) -> Option<String> {
    TextAttribute::get_from_as(message, ATTR_NONCE)
        .ok()
        .map(|n| n.text)
}

/// The relayed and reflexive addresses and the lifetime of an Allocate success.
pub fn allocation(message: &Message) -> Option<(SocketAddr, Option<SocketAddr>, Duration)> {
    let mut relayed = RelayedAddress::default();
    relayed.get_from(message).ok()?;
    let mut mapped = XorMappedAddress::default();
    let mapped = mapped
        .get_from(message)
        .ok()
        .map(|()| SocketAddr::new(mapped.ip, mapped.port));
    let mut lifetime = Lifetime::default();
    let lifetime = lifetime
        .get_from(message)
        .map_or(ALLOCATION_LIFETIME, |()| lifetime.0);
    Some((SocketAddr::new(relayed.ip, relayed.port), mapped, lifetime))
}

/// The lifetime a Refresh success granted.
pub fn lifetime(message: &Message) -> Option<Duration> {
    let mut lifetime = Lifetime::default();
    lifetime.get_from(message).ok()?;
    Some(lifetime.0)
}

/// The peer and data of a Data indication.
pub fn data_indication(message: &Message) -> Option<(SocketAddr, Vec<u8>)> {
    let mut peer = PeerAddress::default();
    peer.get_from(message).ok()?;
    let mut data = Data::default();
    data.get_from(message).ok()?;
    Some((SocketAddr::new(peer.ip, peer.port), data.0))
}
