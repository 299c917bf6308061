//! # ioap-gateway
//!
//! The ioap rendezvous service: agents connect over WebSocket (`/ws`, subprotocol `ioap.v1`),
//! prove they hold their `did:key`, and register; the gateway keeps the live registry and
//! relays WebRTC signaling (OFFER, ANSWER, ICE_CANDIDATE) between registered agents. HTTP
//! beside it: `/health`, `/agents`, `/agents/{did}`, `/metrics`. PROTOCOL_DESIGN.md §6 and §10
//! are the rules it implements; docs/gateway.md documents its flags, endpoints and metrics.
//!
//! Embedding:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let gateway = ioap_gateway::Gateway::start(ioap_gateway::GatewayConfig::ephemeral()).await?;
//! println!("agents connect to {}", gateway.ws_url());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

pub mod audience;
pub mod cluster;
pub mod config;
pub mod disconnects;
pub mod forwarded;
pub mod http;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod refusals;
pub mod registry;
pub mod routing;
pub mod server;
pub mod session;
pub mod settings;
pub mod state;
mod termination;
pub mod tls;
pub mod turn;
pub mod turn_server;

pub use config::{Admission, ClusterConfig, GatewayConfig, TlsFiles, TurnConfig};
pub use server::{Gateway, RunningGateway, ShutdownHandle};
pub use settings::{FileSettings, LogFormat, LogSettings, Settings};
pub use termination::{Termination, termination};

/// The README's examples, compiled and run as documentation tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
