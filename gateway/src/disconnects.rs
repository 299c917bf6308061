//! Why a session ended: the `reason` of its log line and of
//! `ioap_gateway_disconnects_total`, as an enum so every reason is documented and its series
//! exists from the start.

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The client closed the WebSocket.
    ClientClosed,
    /// The connection failed or ended without a close.
    ClientGone,
    /// Refused at the connection limit (1013).
    ConnectionLimit,
    /// Silent for the idle timeout (4004).
    Idle,
    /// The gateway failed (1011).
    InternalError,
    /// A run of malformed frames (1008).
    Malformed,
    /// A text frame that is not UTF-8 (1007).
    InvalidUtf8,
    /// A sustained flood (4006).
    RateLimited,
    /// The registration was refused (4002).
    RegistrationFailed,
    /// No registration within the deadline (4001).
    RegistrationTimeout,
    /// A newer session registered the same DID (4003).
    Replaced,
    /// The gateway shut down (1001).
    Shutdown,
    /// The client did not read in time (4005).
    SlowConsumer,
    /// A frame over the size limit (1009).
    TooLarge,
    /// The agent unregistered (1000).
    Unregistered,
}

impl Disconnect {
    /// Every reason.
    pub const ALL: [Disconnect; 15] = [
        Disconnect::ClientClosed,
        Disconnect::ClientGone,
        Disconnect::ConnectionLimit,
        Disconnect::Idle,
        Disconnect::InternalError,
        Disconnect::Malformed,
        Disconnect::InvalidUtf8,
        Disconnect::RateLimited,
        Disconnect::RegistrationFailed,
        Disconnect::RegistrationTimeout,
        Disconnect::Replaced,
        Disconnect::Shutdown,
        Disconnect::SlowConsumer,
        Disconnect::TooLarge,
        Disconnect::Unregistered,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Disconnect::ClientClosed => "client_closed",
            Disconnect::ClientGone => "client_gone",
            Disconnect::ConnectionLimit => "connection_limit",
            Disconnect::Idle => "idle",
            Disconnect::InternalError => "internal_error",
            Disconnect::Malformed => "malformed",
            Disconnect::InvalidUtf8 => "invalid_utf8",
            Disconnect::RateLimited => "rate_limited",
            Disconnect::RegistrationFailed => "registration_failed",
            Disconnect::RegistrationTimeout => "registration_timeout",
            Disconnect::Replaced => "replaced",
            Disconnect::Shutdown => "shutdown",
            Disconnect::SlowConsumer => "slow_consumer",
            Disconnect::TooLarge => "too_large",
            Disconnect::Unregistered => "unregistered",
        }
    }
}
