//! # ioap-client
//!
//! The client SDK: a Rust program embeds it to become an agent that other agents reach by
//! DID, **directly, peer to peer**, over WebRTC data channels (PROTOCOL_DESIGN.md §11).
//!
//! ```no_run
//! use ioap_client::{Agent, CapabilityHandler, ExecError};
//! use serde_json::{Value, json};
//!
//! # async fn demo(other: ioap_protocol::Did) -> Result<(), Box<dyn std::error::Error>> {
//! let agent = Agent::builder("ws://127.0.0.1:8000/ws")
//!     .capability(
//!         CapabilityHandler::new("sum", |args: Value| async move {
//!             let values = args["values"].as_array().ok_or_else(|| ExecError::invalid_args("values"))?;
//!             Ok(json!(values.iter().filter_map(Value::as_f64).sum::<f64>()))
//!         })
//!         .description("Adds numbers"),
//!     )
//!     .connect()
//!     .await?;
//! let result = agent.peer(other).exec("sum", json!({"values": [1, 2]})).await?;
//! agent.close().await;
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up:
//! - [`rtc`]: the WebRTC engine (the only module that uses the `webrtc` crate);
//! - [`GatewayClient`]: registration, reconnection with backoff, verified delivery;
//! - the link's rules (PROTOCOL_DESIGN.md §11) as a state machine with time as an input, and
//!   one driver task per link that feeds it and executes what it asks;
//! - [`Agent`], [`Peer`], [`ExecStream`], [`CapabilityHandler`]: the API built on them;
//!   [`Directory`] for discovery.

mod access;
mod agent;
mod call_options;
mod connect_error;
mod core;
#[cfg(feature = "demo")]
pub mod demo;
mod dial;
mod directory;
mod driver;
mod error;
mod gateway;
mod handlers;
mod keepalive;
mod link;
mod machine;
mod negotiation;
mod operations;
#[cfg(feature = "otlp")]
mod otlp;
mod peer;
mod relayed;
pub mod rtc;
mod serve;
mod table;
mod trace_context;
mod trust;
mod verify;

pub use access::Access;
pub use agent::{Agent, AgentBuilder, AgentError};
pub use call_options::CallOptions;
pub use connect_error::ConnectError;
pub use core::{GatewayRelay, LinkSettings};
pub use directory::{AgentInfo, Directory, DirectoryError, Health};
pub use error::{CallError, SetupError};
pub use gateway::{
    ConnectionEvent, ConnectionState, GatewayClient, GatewayClientConfig, GatewayStreams, SendError,
};
pub use handlers::{BoxFuture, CapabilityHandler, ExecCall, ExecError, ExecResult, Parts};
pub use ioap_protocol::grant::{Grant, GrantError, GrantTerms};
pub use ioap_protocol::payload::{Intent, IntentQuery, IntentReply, IntentStatus, IntentTask};
pub use ioap_protocol::receipt::{Receipt, ReceiptError, VerifiedReceipt};
pub use ioap_protocol::trace::TraceParent;
pub use ioap_protocol::{Did, ErrorCode, Identity};
pub use link::{DEFAULT_MAX_MESSAGE_BYTES, LinkLimits};
pub use operations::IdempotencyLimits;
#[cfg(feature = "otlp")]
pub use otlp::{OTLP_QUEUE, OtlpError, OtlpExporter};
pub use peer::{ExecStream, Peer, StreamItem};
pub use rtc::{
    CandidateKind, ENGINE_ENV, Engine, IceServer, IceServerCheck, LinkPath, PathKind, RtcSettings,
};
pub use trust::{TrustError, client_config as tls_client_config};

/// The README's examples, compiled and run as documentation tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
