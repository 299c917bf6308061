//! The agent's links by peer DID, shared by callers and link tasks: a [`LinkIndex`] of each
//! link's signaling queue and status behind a lock. Starting a link's task is the caller's
//! job (see `driver::link`), so this module knows nothing of tasks or the agent.

use std::sync::{Mutex, MutexGuard};

use ioap_protocol::{Did, Envelope, MessageId};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::error::CallError;
use crate::link::LinkHandle;
use crate::machine::{LinkIndex, Route};

/// Signaling messages queued per link; more (a flood) are dropped.
const SIGNAL_QUEUE: usize = 64;

/// Where a link stands, as callers see it.
#[derive(Clone)]
pub(crate) enum LinkStatus {
    /// Being set up.
    Connecting,
    /// Open: calls may go.
    Open(LinkHandle),
    /// Ended (setup failed, lost or closed); the next call dials anew.
    Closed(CallError),
}

/// What a link's task is given when it starts.
pub(crate) struct NewLink {
    pub(crate) generation: u64,
    pub(crate) signals: mpsc::Receiver<Box<Envelope>>,
    pub(crate) status: watch::Sender<LinkStatus>,
}

/// What a caller gets from [`LinkTable::claim`].
pub(crate) enum Claim {
    /// The link exists: wait on its status.
    Existing(watch::Receiver<LinkStatus>),
    /// A new link: start its task with `NewLink`, wait on the status.
    New(NewLink, watch::Receiver<LinkStatus>),
}

struct Slot {
    signals: mpsc::Sender<Box<Envelope>>,
    status: watch::Receiver<LinkStatus>,
}

fn live(slot: &Slot) -> bool {
    !matches!(&*slot.status.borrow(), LinkStatus::Closed(_)) && !slot.signals.is_closed()
}

/// The link table.
pub(crate) struct LinkTable {
    index: Mutex<LinkIndex<Slot>>,
}

impl LinkTable {
    /// A table of at most `max_links` links.
    pub(crate) fn new(max_links: usize) -> Self {
        LinkTable {
            index: Mutex::new(LinkIndex::new(max_links)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkIndex<Slot>> {
        // Every update is a single map operation: a poisoned lock holds consistent data.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live link to `remote`, or a new one to start.
    pub(crate) fn claim(&self, remote: Did) -> Result<Claim, CallError> {
        let mut index = self.lock();
        if let Some(slot) = index.get(&remote)
            && live(slot)
        {
            return Ok(Claim::Existing(slot.status.clone()));
        }
        let (new, status) = start(&mut index, remote)?;
        Ok(Claim::New(new, status))
    }

    /// Hands a signaling envelope from the gateway to its link; returns a new link to start
    /// for an OFFER from a peer without one.
    pub(crate) fn route(&self, envelope: Box<Envelope>) -> Option<(NewLink, Box<Envelope>)> {
        let mut index = self.lock();
        match index.route(&envelope, live) {
            Route::Drop => None,
            Route::Link(remote) => {
                let slot = index.get(&remote)?;
                if let Err(error) = slot.signals.try_send(envelope) {
                    debug!(peer = %remote, %error, "signaling message for a link dropped");
                }
                None
            }
            Route::Answer(remote) => match start(&mut index, remote) {
                Ok((new, _)) => Some((new, envelope)),
                Err(error) => {
                    debug!(peer = %remote, %error, "OFFER ignored");
                    None
                }
            },
        }
    }

    /// Remembers our OFFER `id` to `remote` until it is answered or abandoned.
    pub(crate) fn offer_sent(&self, id: MessageId, remote: Did) {
        self.lock().offer_sent(id, remote);
    }

    /// Forgets an OFFER.
    pub(crate) fn offer_done(&self, id: MessageId) {
        self.lock().offer_done(&id);
    }

    /// Removes link `generation` with `remote` (not a newer one).
    pub(crate) fn remove(&self, remote: Did, generation: u64) {
        self.lock().remove(&remote, generation);
    }

    /// The open link to `remote`, if there is one.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn open_link(&self, remote: &Did) -> Option<LinkHandle> {
        match &*self.lock().get(remote)?.status.borrow() {
            LinkStatus::Open(link) => Some(link.clone()),
            _ => None,
        }
    }

    /// Open links.
    pub(crate) fn open_links(&self) -> usize {
        self.lock()
            .values()
            .filter(|slot| matches!(&*slot.status.borrow(), LinkStatus::Open(_)))
            .count()
    }
}

fn start(
    index: &mut LinkIndex<Slot>,
    remote: Did,
) -> Result<(NewLink, watch::Receiver<LinkStatus>), CallError> {
    let (signals_tx, signals) = mpsc::channel(SIGNAL_QUEUE);
    let (status_tx, status) = watch::channel(LinkStatus::Connecting);
    let mut generation = 0;
    index
        .start(remote, |g| {
            generation = g;
            Slot {
                signals: signals_tx,
                status: status.clone(),
            }
        })
        .map_err(|full| CallError::local_busy(format!("{} links already open", full.max_links)))?;
    let new = NewLink {
        generation,
        signals,
        status: status_tx,
    };
    Ok((new, status))
}
