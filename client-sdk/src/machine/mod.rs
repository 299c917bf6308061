//! The link's protocol rules as state machines with time as an input (the quinn-proto and
//! str0m habit): no tokio, no clock, no randomness. The async driver feeds them and executes
//! what they ask.

mod calls;
mod events;
mod link;
mod links;
mod serving;
#[cfg(test)]
mod tests;

pub(crate) use events::{CallEvent, LinkEnd, LinkEvent, ServeRequest, Transmit};
pub(crate) use link::{
    CallSpec, ExecExtras, LinkConfig, LinkMachine, PartStatus, ServeOutcome, Unsent, UnsentCause,
};
pub(crate) use links::{LinkIndex, Route};
