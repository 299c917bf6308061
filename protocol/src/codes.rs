//! Stable error codes (carried in ERROR payloads) and WebSocket close codes.
//!
//! The string of each [`ErrorCode`] and the number of each [`CloseCode`] are part of the wire
//! protocol: they never change meaning within `ioap.v1`. PROTOCOL_DESIGN.md §9 is the normative
//! table; [`ErrorCode::ALL`] and [`CloseCode::ALL`] let tests check that the two agree.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal, )*) => {
        /// An error code, as carried in the `code` field of an ERROR payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the spec's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable wire string, e.g. `"INVALID_SIGNATURE"`.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $text, )* }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(ErrorCode::$variant), )*
                    _ => Err(UnknownErrorCode),
                }
            }
        }
    };
}

error_codes! {
    /// The frame is not a well-formed ioap envelope: invalid UTF-8 or JSON, a binary frame,
    /// a duplicate key, an unknown message type, or a payload that does not match its type.
    MalformedMessage => "MALFORMED_MESSAGE",
    /// The envelope's `version` is not one this peer speaks.
    UnsupportedVersion => "UNSUPPORTED_VERSION",
    /// The signature does not verify under the sender's key.
    InvalidSignature => "INVALID_SIGNATURE",
    /// `from` is not the DID this session or link is authenticated as.
    SenderMismatch => "SENDER_MISMATCH",
    /// The message's `timestamp` is outside the accepted window.
    StaleMessage => "STALE_MESSAGE",
    /// A message with this `(from, id)` was already accepted.
    Replayed => "REPLAYED",
    /// The encoded envelope exceeds the size limit.
    TooLarge => "TOO_LARGE",
    /// The sender exceeded a rate limit; retry later.
    RateLimited => "RATE_LIMITED",
    /// The operation needs a registered session, and this one is not registered.
    NotRegistered => "NOT_REGISTERED",
    /// REGISTER on a session that is already registered.
    AlreadyRegistered => "ALREADY_REGISTERED",
    /// The registration proof failed (wrong key, bad proof, admission policy refused the DID).
    Unauthorized => "UNAUTHORIZED",
    /// The REGISTER's nonce is not the outstanding one for this session, or it has expired.
    InvalidNonce => "INVALID_NONCE",
    /// The REGISTER's audience is not this gateway.
    WrongAudience => "WRONG_AUDIENCE",
    /// The session was replaced by a newer authenticated session for the same DID.
    SessionReplaced => "SESSION_REPLACED",
    /// The addressed agent is not registered (or not reachable) at this gateway.
    UnknownAgent => "UNKNOWN_AGENT",
    /// The gateway relays only signaling (OFFER, ANSWER, ICE_CANDIDATE) between agents.
    NotRelayed => "NOT_RELAYED",
    /// The receiver's outbound queue is full; the message was dropped.
    ReceiverBusy => "RECEIVER_BUSY",
    /// The receiver may be registered on another gateway of the cluster, but cross-node
    /// routing is unavailable now (the cluster's shared store cannot be reached); retry later.
    RouteUnavailable => "ROUTE_UNAVAILABLE",
    /// The peer refused or could not establish a connection.
    ConnectionRefused => "CONNECTION_REFUSED",
    /// An established peer link was lost while the operation was in flight.
    LinkLost => "LINK_LOST",
    /// The operation did not complete within its deadline.
    Timeout => "TIMEOUT",
    /// EXEC_REQUEST named a capability the receiver does not offer.
    UnknownCapability => "UNKNOWN_CAPABILITY",
    /// EXEC_REQUEST's `args` were rejected by the capability (e.g. schema validation).
    InvalidArgs => "INVALID_ARGS",
    /// The capability handler ran and returned an error.
    HandlerError => "HANDLER_ERROR",
    /// Too many requests are in flight on this link.
    TooManyRequests => "TOO_MANY_REQUESTS",
    /// 1.5: the callee's policy does not let the caller call this capability (no allowlist
    /// entry, no grant chain that admits the call). Says nothing else.
    Forbidden => "FORBIDDEN",
    /// The server is shutting down.
    ShuttingDown => "SHUTTING_DOWN",
    /// An unexpected internal failure.
    InternalError => "INTERNAL_ERROR",
}

/// A string that is not one of the [`ErrorCode`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format_args!("unknown error code {text:?}")))
    }
}

/// WebSocket close codes used by the gateway (RFC 6455 §7.4 plus the private 4000–4999 range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1000: orderly close after UNREGISTER.
    Normal = 1000,
    /// 1001: the gateway is shutting down; reconnect (possibly elsewhere).
    GoingAway = 1001,
    /// 1003: the client sent a binary frame after being told not to (reserved; binary frames
    /// currently get MALFORMED_MESSAGE and the session survives).
    UnsupportedData = 1003,
    /// 1007: a text frame was not valid UTF-8.
    InvalidPayload = 1007,
    /// 1008: policy violation — repeated malformed input.
    PolicyViolation = 1008,
    /// 1009: a frame exceeded the size limit.
    MessageTooBig = 1009,
    /// 1011: internal error.
    InternalError = 1011,
    /// 1013: the gateway is at its connection limit; try again later.
    TryAgainLater = 1013,
    /// 4001: no valid REGISTER arrived before the registration deadline.
    RegistrationTimeout = 4001,
    /// 4002: the registration proof was rejected.
    RegistrationFailed = 4002,
    /// 4003: a newer authenticated session for the same DID replaced this one.
    SessionReplaced = 4003,
    /// 4004: no traffic (including WebSocket pongs) within the idle timeout.
    IdleTimeout = 4004,
    /// 4005: the session's outbound queue overflowed (a receiver that does not read).
    SlowConsumer = 4005,
    /// 4006: the session kept exceeding its rate limit.
    RateLimited = 4006,
}

impl CloseCode {
    /// Every close code, in the order of the spec's table.
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::UnsupportedData,
        CloseCode::InvalidPayload,
        CloseCode::PolicyViolation,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::TryAgainLater,
        CloseCode::RegistrationTimeout,
        CloseCode::RegistrationFailed,
        CloseCode::SessionReplaced,
        CloseCode::IdleTimeout,
        CloseCode::SlowConsumer,
        CloseCode::RateLimited,
    ];

    /// The numeric code sent in the close frame.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The close code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// A short reason phrase for the close frame (≤ 123 bytes as RFC 6455 requires).
    pub const fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal => "unregistered",
            CloseCode::GoingAway => "gateway shutting down",
            CloseCode::UnsupportedData => "unsupported data",
            CloseCode::InvalidPayload => "invalid UTF-8",
            CloseCode::PolicyViolation => "policy violation",
            CloseCode::MessageTooBig => "frame too large",
            CloseCode::InternalError => "internal error",
            CloseCode::TryAgainLater => "connection limit reached",
            CloseCode::RegistrationTimeout => "registration timeout",
            CloseCode::RegistrationFailed => "registration failed",
            CloseCode::SessionReplaced => "session replaced",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::RateLimited => "rate limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_strings_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            let json = serde_json::to_string(code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, *code);
        }
        assert!("NOT_A_CODE".parse::<ErrorCode>().is_err());
        assert!(serde_json::from_str::<ErrorCode>("\"invalid_signature\"").is_err());
    }

    #[test]
    fn close_codes_are_unique_and_reasons_fit_a_close_frame() {
        let mut seen = std::collections::HashSet::new();
        for code in CloseCode::ALL {
            assert!(seen.insert(code.code()));
            assert_eq!(CloseCode::from_code(code.code()), Some(*code));
            assert!(code.reason().len() <= 123);
        }
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
