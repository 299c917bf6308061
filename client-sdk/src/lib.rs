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
//! - [`gateway::GatewayClient`]: registration, reconnection with backoff, verified delivery;
//! - [`negotiation`], [`calls`], [`verify`]: sans-IO pieces of a link (which attempt is
//!   current and the glare rule; calls in flight; verification of what arrives);
//! - [`Agent`], [`Peer`]: the API built on them; [`Directory`] for discovery.

pub mod agent;
pub mod calls;
mod core;
pub mod demo;
pub mod directory;
mod driver;
pub mod gateway;
pub mod handlers;
mod link;
pub mod negotiation;
pub mod peer;
pub mod rtc;
mod table;
pub mod verify;

pub use agent::{Agent, AgentBuilder, AgentError};
pub use calls::CallError;
pub use core::LinkSettings;
pub use directory::{AgentInfo, Directory, DirectoryError, Health};
pub use gateway::{ConnectionEvent, ConnectionState, GatewayClient, GatewayClientConfig};
pub use handlers::{CapabilityHandler, ExecCall, ExecError, ExecResult, Parts};
pub use link::LinkLimits;
pub use peer::{ExecStream, Peer, StreamItem};
pub use rtc::{IceServer, RtcSettings};
