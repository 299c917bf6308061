//! Why one attempt to register with a gateway failed, in terms a user can act on: the URL,
//! the network, HTTP, TLS, or the gateway's own refusal.

use std::time::Duration;

use ioap_protocol::ErrorCode;
use ioap_protocol::handshake::ClientHandshakeError;
use tokio_tungstenite::tungstenite;

/// Why one attempt to reach and register with a gateway failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a gateway's WebSocket URL (scheme, host).
    #[error("not a gateway URL: {reason} (expected ws://host:port/ws or wss://host/ws)")]
    BadUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered: connection refused, no route, name not resolved.
    #[error("cannot reach the gateway: {reason}")]
    Unreachable {
        /// The network's answer.
        reason: String,
    },
    /// An HTTP server answered, but did not upgrade to a WebSocket.
    #[error("the server answered HTTP {status}{hint}", hint = http_hint(*status))]
    Http {
        /// The HTTP status.
        status: u16,
    },
    /// TLS failed: a plain port behind `wss://`, or a certificate that is not trusted.
    #[error("TLS: {reason}")]
    Tls {
        /// The TLS library's explanation (names the certificate problem).
        reason: String,
    },
    /// The gateway refused the registration with an ERROR.
    #[error("the gateway refused the registration: {code}: {message}")]
    Refused {
        /// The gateway's code (UNAUTHORIZED, WRONG_AUDIENCE, RATE_LIMITED, …).
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The gateway closed the connection without an ERROR (e.g. 1013 at its connection limit).
    #[error("the gateway closed the connection{}: {reason}", close_code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed {
        /// The close code, if any.
        close_code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// No registration within the handshake timeout.
    #[error("no registration within {0:?}")]
    Timeout(Duration),
    /// Something answered that does not speak ioap.v1 as a gateway.
    #[error("not an ioap gateway: {reason}")]
    Protocol {
        /// What it did.
        reason: String,
    },
}

fn http_hint(status: u16) -> &'static str {
    match status {
        404 => " (is the path /ws?)",
        400 | 426 => " (not a WebSocket endpoint?)",
        _ => "",
    }
}

impl ConnectError {
    /// The gateway's refusal code, or TIMEOUT, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ConnectError::Refused { code, .. } => Some(*code),
            ConnectError::Timeout(_) => Some(ErrorCode::Timeout),
            _ => None,
        }
    }

    /// The close code, when the gateway closed without an ERROR.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ConnectError::Closed { close_code, .. } => *close_code,
            _ => None,
        }
    }
}

impl From<tungstenite::Error> for ConnectError {
    fn from(error: tungstenite::Error) -> Self {
        use tungstenite::Error;
        match error {
            Error::Url(url) => ConnectError::BadUrl {
                reason: url.to_string(),
            },
            Error::Http(response) => ConnectError::Http {
                status: response.status().as_u16(),
            },
            Error::Tls(tls) => ConnectError::Tls {
                reason: tls.to_string(),
            },
            Error::Io(io) => from_io(io),
            other => ConnectError::Protocol {
                reason: other.to_string(),
            },
        }
    }
}

/// A TLS failure surfaces as an I/O error wrapping rustls's: name it as TLS.
fn from_io(io: std::io::Error) -> ConnectError {
    match io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => ConnectError::Tls {
            reason: tls.to_string(),
        },
        None => ConnectError::Unreachable {
            reason: io.to_string(),
        },
    }
}

impl From<ClientHandshakeError> for ConnectError {
    fn from(error: ClientHandshakeError) -> Self {
        match error {
            ClientHandshakeError::Refused(refusal) => ConnectError::Refused {
                code: refusal.code,
                message: refusal.message,
            },
            other => ConnectError::Protocol {
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause_once() {
        let http = ConnectError::Http { status: 404 };
        assert_eq!(
            http.to_string(),
            "the server answered HTTP 404 (is the path /ws?)"
        );
        let closed = ConnectError::Closed {
            close_code: Some(1013),
            reason: "try again later".into(),
        };
        assert_eq!(
            closed.to_string(),
            "the gateway closed the connection (1013): try again later"
        );
        assert_eq!(closed.close_code(), Some(1013));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            from_io(io).to_string(),
            "cannot reach the gateway: Connection refused"
        );
        let refused = ConnectError::Refused {
            code: ErrorCode::Unauthorized,
            message: "not on the allowlist".into(),
        };
        assert_eq!(refused.code(), Some(ErrorCode::Unauthorized));
    }

    #[test]
    fn a_wrapped_rustls_error_is_tls() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(
            matches!(from_io(io), ConnectError::Tls { reason } if reason.contains("UnknownIssuer") || reason.contains("unknown issuer"))
        );
    }
}
