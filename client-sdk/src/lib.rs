//! # ioap-client
//!
//! The client SDK. **Work in progress**: what exists today is
//!
//! - [`gateway::GatewayClient`]: connect (`ws://` or `wss://`), register, keep registered
//!   (reconnection with exponential backoff and jitter, re-registration), send signed
//!   envelopes and receive verified ones;
//! - [`calls`]: the table of calls in flight on a link (correlation, streaming, bounds, link
//!   loss), as a plain data structure;
//! - [`negotiation`]: which link attempt is current and the glare rule, as a state machine;
//! - [`rtc`]: the WebRTC engine (the only module that uses the `webrtc` crate): peer
//!   connections with one reliable, ordered data channel over UDP, loopback-capable, no mDNS.
//!
//! The agent API (`Agent`, `peer(did)`, EXEC and INTENT over the data channel) builds on these
//! and is not written yet.

pub mod calls;
pub mod gateway;
pub mod negotiation;
pub mod rtc;

pub use gateway::{ConnectionEvent, ConnectionState, GatewayClient, GatewayClientConfig};
