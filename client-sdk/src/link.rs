//! What callers and handlers hand a link's driver: a cheap handle to its command queue.
//!
//! The driver owns the link's [`LinkMachine`](crate::machine::LinkMachine); everything else
//! talks to it through [`Command`]s. Every producer is bounded by the machine's own rules (a
//! caller has one call start in flight, a handler one part, a stream one credit notice per
//! part it received), so the queue is unbounded without being growable by the peer.

use std::time::Instant;

use ioap_protocol::MessageId;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::machine::{CallEvent, CallSpec, ServeOutcome};
use crate::rtc::LinkPath;

/// Bounds of one link.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LinkLimits {
    /// Our calls in flight on the link.
    pub max_calls: usize,
    /// The peer's requests being served at once; more are refused with TOO_MANY_REQUESTS.
    pub max_serving: usize,
    /// Parts of one streamed call we hold unread before the callee must wait (1–1024,
    /// PROTOCOL_DESIGN.md §11.4).
    pub window: u32,
    /// The largest message (a signed envelope's text) sent or taken on the link, in bytes; a
    /// message over 64 KiB travels in CHUNKs to a peer that takes them (PROTOCOL_DESIGN.md
    /// §11.6), and messages being reassembled on one link hold at most this much together.
    pub max_message_bytes: usize,
}

/// The default [`LinkLimits::max_message_bytes`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            max_calls: 256,
            max_serving: 64,
            window: 32,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl LinkLimits {
    /// Sets [`max_calls`](Self::max_calls).
    pub fn max_calls(mut self, calls: usize) -> Self {
        self.max_calls = calls;
        self
    }

    /// Sets [`max_serving`](Self::max_serving).
    pub fn max_serving(mut self, requests: usize) -> Self {
        self.max_serving = requests;
        self
    }

    /// Sets [`max_message_bytes`](Self::max_message_bytes), at least 64 KiB (one envelope).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.max(ioap_protocol::json::MAX_ENVELOPE_BYTES);
        self
    }

    /// Sets [`window`](Self::window), clamped to 1–1024.
    pub fn window(mut self, parts: u32) -> Self {
        self.window = parts.clamp(1, ioap_protocol::payload::MAX_WINDOW);
        self
    }
}

/// A request to a link's driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start a call; its events go to `events`.
    Call {
        id: MessageId,
        spec: CallSpec,
        deadline: Instant,
        events: mpsc::UnboundedSender<CallEvent>,
        /// Keep the signed request and answer for a receipt.
        receipt: bool,
    },
    /// The caller read `parts` parts of call `id`.
    Consumed { id: MessageId, parts: u32 },
    /// The caller stopped waiting for call `id`.
    Cancel { id: MessageId },
    /// A handler sends a part of request `id`; `sent` says whether it went out.
    Part {
        id: MessageId,
        part: Value,
        sent: oneshot::Sender<bool>,
    },
    /// A handler finished request `id`.
    Done {
        id: MessageId,
        outcome: ServeOutcome,
    },
    /// Report the candidate pair the link uses.
    Path(oneshot::Sender<Option<LinkPath>>),
    /// Send text as is (tests of the peer's refusals).
    #[cfg(feature = "test-hooks")]
    Raw(String),
    /// End the link at once, as a failed transport would (tests of what survives it).
    #[cfg(feature = "test-hooks")]
    Break,
}

/// A handle to an open link's driver. Its commands are queued boxed: tokio's queues allocate
/// room for 32 items at a time, and every open link keeps its queue.
#[derive(Debug, Clone)]
pub(crate) struct LinkHandle {
    commands: mpsc::UnboundedSender<Box<Command>>,
}

impl LinkHandle {
    pub(crate) fn new(commands: mpsc::UnboundedSender<Box<Command>>) -> Self {
        LinkHandle { commands }
    }

    /// Queues `command`; false once the driver has ended.
    pub(crate) fn send(&self, command: Command) -> bool {
        self.commands.send(Box::new(command)).is_ok()
    }
}
