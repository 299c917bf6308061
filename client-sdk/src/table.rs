//! The agent's links by peer DID: at most one driver task per peer, a bound on how many, and
//! the routing of signaling (and the gateway's refusals of our OFFERs) to the right driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ioap_protocol::{Body, Did, Envelope, MessageId};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use crate::core::AgentCore;
use crate::driver::{self, Start};
use crate::error::CallError;
use crate::link::LinkHandle;

/// Signaling messages queued per driver; more (a flood) are dropped.
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

struct Slot {
    generation: u64,
    signals: mpsc::Sender<Box<Envelope>>,
    status: watch::Receiver<LinkStatus>,
}

#[derive(Default)]
struct Tables {
    slots: HashMap<Did, Slot>,
    /// Our OFFERs not yet answered: the gateway's ERROR about one names it by id.
    offers: HashMap<MessageId, Did>,
    next_generation: u64,
}

/// The link table.
#[derive(Default)]
pub(crate) struct LinkTable {
    tables: Mutex<Tables>,
}

impl LinkTable {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every update is a single map operation: a poisoned lock holds consistent data.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link to `remote`: the current one, or a new dial.
    pub(crate) fn link(
        &self,
        core: &Arc<AgentCore>,
        remote: Did,
    ) -> Result<watch::Receiver<LinkStatus>, CallError> {
        let mut tables = self.lock();
        if let Some(slot) = tables.slots.get(&remote)
            && !matches!(&*slot.status.borrow(), LinkStatus::Closed(_))
        {
            return Ok(slot.status.clone());
        }
        tables.slots.remove(&remote);
        if tables.slots.len() >= core.settings.max_links {
            return Err(CallError::local_busy(format!(
                "{} links already open",
                core.settings.max_links
            )));
        }
        Ok(spawn_driver(&mut tables, core, remote, Start::Dial))
    }

    /// Hands a signaling envelope from the gateway to its peer's driver; an OFFER from a peer
    /// without one starts an answering driver.
    pub(crate) fn route(&self, core: &Arc<AgentCore>, envelope: Box<Envelope>) {
        let mut tables = self.lock();
        let remote = match (&envelope.body, envelope.correlation_id) {
            (Body::Error(_), Some(offer)) => match tables.offers.get(&offer) {
                Some(remote) => *remote,
                None => return,
            },
            (Body::Offer(_) | Body::Answer(_) | Body::IceCandidate(_), _) => envelope.from,
            _ => return,
        };
        let is_offer = matches!(envelope.body, Body::Offer(_));
        let envelope = match tables.slots.get(&remote) {
            Some(slot) => match slot.signals.try_send(envelope) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(peer = %remote, "signaling queue full, message dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(envelope)) => envelope,
            },
            None => envelope,
        };
        if !is_offer {
            return;
        }
        tables.slots.remove(&remote);
        if tables.slots.len() >= core.settings.max_links {
            debug!(peer = %remote, "link table full, OFFER ignored");
            return;
        }
        spawn_driver(&mut tables, core, remote, Start::Answer(envelope));
    }

    /// Remembers our OFFER `id` to `remote` until it is answered or abandoned.
    pub(crate) fn offer_sent(&self, id: MessageId, remote: Did) {
        self.lock().offers.insert(id, remote);
    }

    /// Forgets an OFFER.
    pub(crate) fn offer_done(&self, id: MessageId) {
        self.lock().offers.remove(&id);
    }

    /// Removes the driver `generation` of `remote` (not a newer one).
    pub(crate) fn remove(&self, remote: Did, generation: u64) {
        let mut tables = self.lock();
        if tables
            .slots
            .get(&remote)
            .is_some_and(|slot| slot.generation == generation)
        {
            tables.slots.remove(&remote);
        }
    }

    /// Open links.
    pub(crate) fn open_links(&self) -> usize {
        self.lock()
            .slots
            .values()
            .filter(|slot| matches!(&*slot.status.borrow(), LinkStatus::Open(_)))
            .count()
    }
}

fn spawn_driver(
    tables: &mut Tables,
    core: &Arc<AgentCore>,
    remote: Did,
    start: Start,
) -> watch::Receiver<LinkStatus> {
    let generation = tables.next_generation;
    tables.next_generation += 1;
    let (signals, signal_rx) = mpsc::channel(SIGNAL_QUEUE);
    let (status_tx, status) = watch::channel(LinkStatus::Connecting);
    tables.slots.insert(
        remote,
        Slot {
            generation,
            signals,
            status: status.clone(),
        },
    );
    core.tasks.spawn(driver::run(
        Arc::clone(core),
        remote,
        generation,
        start,
        signal_rx,
        status_tx,
    ));
    status
}
