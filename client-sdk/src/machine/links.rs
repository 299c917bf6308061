//! The agent's links by peer DID (PROTOCOL_DESIGN.md §11.1): at most one per peer, a bound on
//! how many, and which link a signaling message from the gateway belongs to. Plain
//! bookkeeping over whatever the driver keeps per link (`T`), with no I/O.

use std::collections::HashMap;

use ioap_protocol::{Body, Did, Envelope, MessageId};

/// Where a signaling message from the gateway goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// To the link with this peer.
    Link(Did),
    /// An OFFER from a peer without a live link: start answering it, if the bound allows.
    Answer(Did),
    /// Nowhere: not signaling, an ERROR about no OFFER of ours, or an ANSWER or candidate
    /// for a peer we have no link with.
    Drop,
}

/// Why a new link was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    pub(crate) max_links: usize,
}

/// The links of one agent.
#[derive(Debug)]
pub(crate) struct LinkIndex<T> {
    slots: HashMap<Did, (u64, T)>,
    /// Our OFFERs not yet answered: the gateway's ERROR about one names it by id.
    offers: HashMap<MessageId, Did>,
    next_generation: u64,
    max_links: usize,
}

impl<T> LinkIndex<T> {
    /// An index holding at most `max_links` links.
    pub(crate) fn new(max_links: usize) -> Self {
        LinkIndex {
            slots: HashMap::new(),
            offers: HashMap::new(),
            next_generation: 0,
            max_links,
        }
    }

    /// The link with `remote`, if one is recorded.
    pub(crate) fn get(&self, remote: &Did) -> Option<&T> {
        self.slots.get(remote).map(|(_, slot)| slot)
    }

    /// Records a new link with `remote` (replacing any recorded for it), made by `make` from
    /// its generation; refuses when `max_links` other links are recorded.
    pub(crate) fn start(&mut self, remote: Did, make: impl FnOnce(u64) -> T) -> Result<&T, Full> {
        self.slots.remove(&remote);
        if self.slots.len() >= self.max_links {
            return Err(Full {
                max_links: self.max_links,
            });
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let (_, slot) = self
            .slots
            .entry(remote)
            .insert_entry((generation, make(generation)))
            .into_mut();
        Ok(slot)
    }

    /// Where `envelope` from the gateway goes; `live` says whether a recorded link still runs.
    pub(crate) fn route(&self, envelope: &Envelope, live: impl Fn(&T) -> bool) -> Route {
        let remote = match (&envelope.body, envelope.correlation_id) {
            (Body::Error(_), Some(offer)) => match self.offers.get(&offer) {
                Some(remote) => *remote,
                None => return Route::Drop,
            },
            (
                Body::Offer(_)
                | Body::Answer(_)
                | Body::IceCandidate(_)
                | Body::RelayOpen(_)
                | Body::RelayAccept(_)
                | Body::RelayData(_)
                | Body::RelayClose(_),
                _,
            ) => envelope.from,
            _ => return Route::Drop,
        };
        let has_live_link = self.get(&remote).is_some_and(live);
        match (&envelope.body, has_live_link) {
            (_, true) => Route::Link(remote),
            (Body::Offer(_) | Body::RelayOpen(_), false) => Route::Answer(remote),
            _ => Route::Drop,
        }
    }

    /// Remembers our OFFER `id` to `remote` until it is answered or abandoned.
    pub(crate) fn offer_sent(&mut self, id: MessageId, remote: Did) {
        self.offers.insert(id, remote);
    }

    /// Forgets an OFFER.
    pub(crate) fn offer_done(&mut self, id: &MessageId) {
        self.offers.remove(id);
    }

    /// Removes link `generation` with `remote` (not a newer one).
    pub(crate) fn remove(&mut self, remote: &Did, generation: u64) {
        if self
            .slots
            .get(remote)
            .is_some_and(|(current, _)| *current == generation)
        {
            self.slots.remove(remote);
        }
    }

    /// The recorded links.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.values().map(|(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::payload::{ErrorPayload, IceCandidate, SessionDescription};
    use ioap_protocol::samples::{alice, bob, example_time};
    use ioap_protocol::{ErrorCode, Identity};

    fn from(sender: Did, body: Body, correlation: Option<MessageId>) -> Envelope {
        let mut envelope = Envelope::new(sender, Some(alice().did()), body, example_time());
        envelope.correlation_id = correlation;
        envelope
    }

    fn offer() -> Body {
        Body::Offer(SessionDescription { sdp: "v=0".into() })
    }

    /// A slot is "live" unless it is `false`.
    fn live(slot: &bool) -> bool {
        *slot
    }

    #[test]
    fn an_offer_from_a_stranger_is_answered_and_one_from_a_linked_peer_goes_to_its_link() {
        let mut index = LinkIndex::new(8);
        let peer = bob().did();
        assert_eq!(
            index.route(&from(peer, offer(), None), live),
            Route::Answer(peer)
        );
        index.start(peer, |_| true).expect("room");
        assert_eq!(
            index.route(&from(peer, offer(), None), live),
            Route::Link(peer)
        );
    }

    #[test]
    fn signaling_other_than_an_offer_needs_a_live_link() {
        let mut index = LinkIndex::new(8);
        let peer = bob().did();
        let candidate = Body::IceCandidate(IceCandidate {
            candidate: String::new(),
            sdp_mid: None,
            sdp_mline_index: None,
        });
        let answer = Body::Answer(SessionDescription { sdp: "v=0".into() });
        let id = Some(MessageId::random());
        assert_eq!(
            index.route(&from(peer, candidate.clone(), id), live),
            Route::Drop
        );
        assert_eq!(
            index.route(&from(peer, answer.clone(), id), live),
            Route::Drop
        );
        index.start(peer, |_| false).expect("room");
        assert_eq!(
            index.route(&from(peer, answer, id), live),
            Route::Drop,
            "ended link"
        );
        index.start(peer, |_| true).expect("room");
        assert_eq!(
            index.route(&from(peer, candidate, id), live),
            Route::Link(peer)
        );
    }

    #[test]
    fn a_gateway_error_reaches_the_link_whose_offer_it_names() {
        let mut index = LinkIndex::new(8);
        let peer = bob().did();
        let gateway = Identity::from_seed(&[9; 32]).did();
        let ours = MessageId::random();
        index.start(peer, |_| true).expect("room");
        index.offer_sent(ours, peer);
        let refusal = Body::Error(ErrorPayload::new(ErrorCode::UnknownAgent, "gone"));
        assert_eq!(
            index.route(&from(gateway, refusal.clone(), Some(ours)), live),
            Route::Link(peer)
        );
        assert_eq!(
            index.route(
                &from(gateway, refusal.clone(), Some(MessageId::random())),
                live
            ),
            Route::Drop,
            "an ERROR about no OFFER of ours"
        );
        index.offer_done(&ours);
        assert_eq!(
            index.route(&from(gateway, refusal, Some(ours)), live),
            Route::Drop
        );
    }

    #[test]
    fn the_bound_counts_links_and_an_ended_one_makes_room_for_its_peer() {
        let mut index = LinkIndex::new(2);
        let peers: Vec<Did> = (1..=3u8)
            .map(|n| Identity::from_seed(&[n; 32]).did())
            .collect();
        index.start(peers[0], |_| true).expect("room");
        index.start(peers[1], |_| true).expect("room");
        assert_eq!(
            index.start(peers[2], |_| true).err(),
            Some(Full { max_links: 2 })
        );
        // A new link with a peer already counted replaces its old one.
        index.start(peers[1], |_| true).expect("replaces");
        assert_eq!(index.values().count(), 2);
    }

    #[test]
    fn only_the_current_generation_is_removed() {
        let mut index = LinkIndex::new(8);
        let peer = bob().did();
        let mut generations = Vec::new();
        index
            .start(peer, |g| {
                generations.push(g);
                true
            })
            .expect("room");
        index
            .start(peer, |g| {
                generations.push(g);
                true
            })
            .expect("room");
        index.remove(&peer, generations[0]);
        assert!(
            index.get(&peer).is_some(),
            "an old link's end removed its successor"
        );
        index.remove(&peer, generations[1]);
        assert!(index.get(&peer).is_none());
    }
}
