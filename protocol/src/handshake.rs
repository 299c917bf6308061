//! The registration handshake as two sans-IO state machines (PROTOCOL_DESIGN.md §6).
//!
//! ```text
//! gateway: ServerChallenge::issue ──CHALLENGE──▶ client: ClientHandshake::on_challenge
//! gateway: ServerChallenge::verify ◀──REGISTER── client
//! gateway ──REGISTERED or ERROR──▶ client: ClientHandshake::on_reply
//! ```
//!
//! The nonce is single-use by construction: [`ServerChallenge::verify`] consumes the challenge.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::body::{Body, MessageType};
use crate::codes::ErrorCode;
use crate::did::Did;
use crate::envelope::{EncodeError, Envelope, ReceivedEnvelope, SignedEnvelope};
use crate::identity::{Identity, IdentityError};
use crate::message_id::MessageId;
use crate::payload::{Capability, Challenge, ErrorPayload, Register, Registered};
use crate::timestamp::Timestamp;

/// How long a nonce is accepted after the CHALLENGE is issued (the proof's validity window).
pub const NONCE_TTL: Duration = Duration::from_secs(30);
/// Largest clock difference accepted between a REGISTER's timestamp and the gateway's clock.
pub const REGISTER_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The gateway's side: one outstanding challenge for one connection.
#[derive(Debug)]
pub struct ServerChallenge {
    gateway: Did,
    challenge_id: MessageId,
    nonce: String,
    expires_at: Timestamp,
}

/// A successful registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The authenticated agent.
    pub did: Did,
    /// What it advertised.
    pub capabilities: Vec<Capability>,
    /// Whether `/agents` lists it.
    pub listed: bool,
    /// The REGISTER's id (REGISTERED and ERROR answer it).
    pub register_id: MessageId,
    /// The audience the proof named.
    pub audience: String,
}

/// Why a REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The first message after CHALLENGE was not a REGISTER.
    #[error("expected REGISTER, got {0}")]
    NotRegister(MessageType),
    /// `to` is not this gateway's DID.
    #[error("REGISTER is addressed to another gateway")]
    WrongRecipient,
    /// `public_key` is not the key of `from`.
    #[error("public_key does not match the sender's DID")]
    KeyMismatch,
    /// The proof's signature does not verify.
    #[error("registration proof signature does not verify")]
    BadSignature,
    /// The nonce is not this session's.
    #[error("nonce is not the one this session was challenged with")]
    WrongNonce,
    /// `correlation_id` is not the CHALLENGE's `id`.
    #[error("correlation_id is not the id of the CHALLENGE this session was sent")]
    WrongChallenge,
    /// The nonce has expired.
    #[error("nonce expired")]
    Expired,
    /// The REGISTER's timestamp is too far from the gateway's clock.
    #[error("REGISTER timestamp too far from the gateway's clock")]
    Stale,
    /// The audience is not an address of this gateway.
    #[error("audience {0:?} is not this gateway")]
    WrongAudience(String),
}

impl RegistrationError {
    /// The ERROR code the gateway answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistrationError::NotRegister(_) => ErrorCode::NotRegistered,
            RegistrationError::WrongRecipient | RegistrationError::WrongAudience(_) => {
                ErrorCode::WrongAudience
            }
            RegistrationError::KeyMismatch => ErrorCode::Unauthorized,
            RegistrationError::BadSignature => ErrorCode::InvalidSignature,
            RegistrationError::WrongNonce
            | RegistrationError::WrongChallenge
            | RegistrationError::Expired => ErrorCode::InvalidNonce,
            RegistrationError::Stale => ErrorCode::StaleMessage,
        }
    }
}

impl ServerChallenge {
    /// Draws a fresh 32-byte nonce and signs a CHALLENGE with the gateway's identity.
    pub fn issue(
        gateway: &Identity,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<(Self, SignedEnvelope), IdentityError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| IdentityError::Rng(e.to_string()))?;
        let nonce = URL_SAFE_NO_PAD.encode(bytes);
        let expires_at = now.saturating_add(ttl);
        let challenge = Envelope::new(
            gateway.did(),
            None,
            Body::Challenge(Challenge {
                nonce: nonce.clone(),
                expires_at,
            }),
            now,
        )
        .sign(gateway)
        .expect("a CHALLENGE built here always encodes");
        let state = ServerChallenge {
            gateway: gateway.did(),
            challenge_id: challenge.envelope().id,
            nonce,
            expires_at,
        };
        Ok((state, challenge))
    }

    /// When the nonce expires.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Checks a REGISTER against this challenge. Consumes the challenge: whatever the outcome,
    /// the nonce cannot be used again.
    pub fn verify(
        self,
        register: &ReceivedEnvelope,
        audience_ok: impl FnOnce(&str) -> bool,
        now: Timestamp,
    ) -> Result<Registration, RegistrationError> {
        let envelope = register.envelope();
        let Body::Register(payload) = &envelope.body else {
            return Err(RegistrationError::NotRegister(envelope.message_type()));
        };
        if envelope.to != Some(self.gateway) {
            return Err(RegistrationError::WrongRecipient);
        }
        if Did::from_multibase(&payload.public_key).ok() != Some(envelope.from) {
            return Err(RegistrationError::KeyMismatch);
        }
        register
            .verify()
            .map_err(|_| RegistrationError::BadSignature)?;
        if payload.nonce != self.nonce {
            return Err(RegistrationError::WrongNonce);
        }
        if envelope.correlation_id != Some(self.challenge_id) {
            return Err(RegistrationError::WrongChallenge);
        }
        if now > self.expires_at {
            return Err(RegistrationError::Expired);
        }
        if envelope.timestamp.abs_diff(now) > REGISTER_CLOCK_SKEW {
            return Err(RegistrationError::Stale);
        }
        if !audience_ok(&payload.audience) {
            return Err(RegistrationError::WrongAudience(
                payload.audience.chars().take(128).collect(),
            ));
        }
        Ok(Registration {
            did: envelope.from,
            capabilities: payload.capabilities.clone(),
            listed: payload.listed,
            register_id: envelope.id,
            audience: payload.audience.clone(),
        })
    }
}

/// What the agent advertises when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Capabilities offered for EXEC.
    pub capabilities: Vec<Capability>,
    /// Whether `/agents` lists the agent.
    pub listed: bool,
}

impl Default for Advertisement {
    fn default() -> Self {
        Advertisement {
            capabilities: Vec::new(),
            listed: true,
        }
    }
}

/// The client's side of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    audience: String,
    expected_gateway: Option<Did>,
    sent: Option<(Did, MessageId)>,
}

/// Why the client's handshake failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientHandshakeError {
    /// The gateway sent something other than the expected message.
    #[error("unexpected {0} during registration")]
    Unexpected(MessageType),
    /// A gateway message did not verify, or came from an unexpected DID.
    #[error("gateway message is not signed by the gateway")]
    BadGatewaySignature,
    /// The gateway is not the pinned one.
    #[error("gateway is {found}, expected {expected}")]
    WrongGateway {
        /// The DID that was pinned.
        expected: String,
        /// The DID the gateway has.
        found: String,
    },
    /// The REGISTER could not be built.
    #[error("cannot build REGISTER: {0}")]
    Encode(#[from] EncodeError),
    /// The gateway refused the registration.
    #[error("registration refused: {} {}", .0.code, .0.message)]
    Refused(ErrorPayload),
}

impl ClientHandshake {
    /// A handshake for the gateway at `audience` (the URL dialed). With `expected_gateway`,
    /// the gateway must prove it holds that DID's key.
    pub fn new(audience: impl Into<String>, expected_gateway: Option<Did>) -> Self {
        ClientHandshake {
            audience: audience.into(),
            expected_gateway,
            sent: None,
        }
    }

    /// Answers a CHALLENGE with a signed REGISTER.
    pub fn on_challenge(
        &mut self,
        challenge: &ReceivedEnvelope,
        identity: &Identity,
        advertisement: &Advertisement,
        now: Timestamp,
    ) -> Result<SignedEnvelope, ClientHandshakeError> {
        let envelope = challenge.envelope();
        let Body::Challenge(payload) = &envelope.body else {
            return Err(ClientHandshakeError::Unexpected(envelope.message_type()));
        };
        let gateway = envelope.from;
        if let Some(expected) = self.expected_gateway
            && expected != gateway
        {
            return Err(ClientHandshakeError::WrongGateway {
                expected: expected.to_string(),
                found: gateway.to_string(),
            });
        }
        challenge
            .verify()
            .map_err(|_| ClientHandshakeError::BadGatewaySignature)?;
        let register = Envelope::new(
            identity.did(),
            Some(gateway),
            Body::Register(Register {
                public_key: identity.did().public_key_multibase(),
                nonce: payload.nonce.clone(),
                audience: self.audience.clone(),
                capabilities: advertisement.capabilities.clone(),
                listed: advertisement.listed,
            }),
            now,
        )
        .in_reply_to(envelope.id)
        .sign(identity)?;
        self.sent = Some((gateway, register.envelope().id));
        Ok(register)
    }

    /// Reads the gateway's answer to REGISTER: REGISTERED, or the ERROR that refused it.
    pub fn on_reply(
        &self,
        reply: &ReceivedEnvelope,
    ) -> Result<(Did, Registered), ClientHandshakeError> {
        let envelope = reply.envelope();
        let Some((gateway, register_id)) = self.sent else {
            return Err(ClientHandshakeError::Unexpected(envelope.message_type()));
        };
        if envelope.from != gateway || reply.verify().is_err() {
            return Err(ClientHandshakeError::BadGatewaySignature);
        }
        match &envelope.body {
            Body::Registered(registered) if envelope.correlation_id == Some(register_id) => {
                Ok((gateway, registered.clone()))
            }
            Body::Error(error) => Err(ClientHandshakeError::Refused(error.clone())),
            _ => Err(ClientHandshakeError::Unexpected(envelope.message_type())),
        }
    }
}
