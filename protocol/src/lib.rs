//! # ioap-protocol
//!
//! The ioap wire protocol, pure: no sockets, no async runtime, and no clock (callers pass the
//! time in). PROTOCOL_DESIGN.md at the repository root is the normative specification; each
//! module names the section it implements.
//!
//! - [`did`]: `did:key` identifiers (Ed25519, standard form only).
//! - [`identity`]: signing keys, PKCS#8 PEM key files, X25519 key agreement.
//! - [`envelope`]: typed, signed envelopes; decoding and verification.
//! - [`body`] and [`payload`]: message types and their payloads, one struct per type.
//! - [`signing`]: domain-separated Ed25519 over RFC 8785 canonical JSON.
//! - [`handshake`]: the registration handshake as state machines.
//! - [`replay`]: the replay window and `(from, id)` cache.
//! - [`receipt`]: a request and its signed answer, verifiable later by anyone.
//! - [`grant`]: signed, delegable permission to call a capability.
//! - [`trace`]: W3C trace context carried by calls.
//! - [`chunks`]: messages larger than one envelope, cut into CHUNKs and put back together.
//! - [`carried`]: the 1.6 signature of such a message, over the digest of its text.
//! - [`codes`]: error codes and WebSocket close codes.
//! - [`json`]: strict JSON parsing under the protocol's limits.
//!
//! ```
//! use ioap_protocol::{Body, Envelope, Identity, ReceivedEnvelope, Timestamp};
//! use ioap_protocol::payload::Ping;
//!
//! let alice = Identity::from_seed(&[1; 32]);
//! let bob = Identity::from_seed(&[2; 32]);
//! let now = Timestamp::from_unix_millis(1_767_225_600_000).unwrap();
//! let wire = Envelope::new(alice.did(), Some(bob.did()), Body::Ping(Ping { sequence: 7 }), now)
//!     .sign(&alice)?
//!     .into_string();
//!
//! let received = ReceivedEnvelope::decode(wire.as_bytes())?;
//! let envelope = received.into_verified()?;
//! assert_eq!(envelope.from, alice.did());
//! assert_eq!(envelope.body, Body::Ping(Ping { sequence: 7 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod body;
pub mod carried;
pub mod chunks;
pub mod codes;
mod decode;
pub mod did;
pub mod envelope;
pub mod grant;
pub mod handshake;
mod header;
pub mod identity;
pub mod json;
pub mod message_id;
pub mod payload;
pub mod receipt;
pub mod relay;
pub mod replay;
#[cfg(any(test, feature = "samples"))]
pub mod samples;
pub mod signing;
pub mod timestamp;
pub mod trace;

pub use body::{Body, MessageType};
pub use codes::{CloseCode, ErrorCode};
pub use did::{Did, DidError};
pub use envelope::{
    DecodeError, EncodeError, Envelope, PROTOCOL_VERSION, ReceivedEnvelope, SignedEnvelope,
};
pub use header::FrameHeader;
pub use identity::{Identity, IdentityError};
pub use message_id::MessageId;
pub use replay::{ReplayError, ReplayGuard};
pub use timestamp::Timestamp;

/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "ioap.v1";

/// The README's examples, compiled and run as documentation tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
