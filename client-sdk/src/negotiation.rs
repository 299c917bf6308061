//! Which link attempt with one peer is current, and what to do with each signaling message
//! (PROTOCOL_DESIGN.md §11.1): a sans-IO state machine the link manager drives.
//!
//! An attempt is named by its OFFER's id: the ANSWER and every ICE_CANDIDATE of the attempt
//! carry it as `correlation_id`; anything for another attempt is ignored. When both sides
//! offer at once (glare), the OFFER from the DID whose canonical text sorts lower wins, on
//! both sides, with no further message.

use ioap_protocol::{Did, MessageId};

/// Our role in the current attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// No attempt.
    Idle,
    /// We sent the OFFER with this id and wait for its ANSWER.
    Offering(MessageId),
    /// We answered the peer's OFFER with this id.
    Answering(MessageId),
}

/// What the link manager must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Answer this OFFER (create an answerer peer connection; drop any offer of ours).
    Answer(MessageId),
    /// Apply the ANSWER to our offerer peer connection.
    AcceptAnswer,
    /// Apply the candidate to the current peer connection.
    AddCandidate,
    /// Nothing: the message belongs to no current attempt, or our OFFER wins the glare.
    Ignore,
}

/// The negotiation with one peer.
#[derive(Debug, Clone)]
pub struct Negotiation {
    local: Did,
    remote: Did,
    attempt: Attempt,
}

impl Negotiation {
    /// A negotiation between `local` and `remote`, idle.
    pub fn new(local: Did, remote: Did) -> Self {
        Negotiation {
            local,
            remote,
            attempt: Attempt::Idle,
        }
    }

    /// The current attempt.
    #[cfg(test)]
    pub fn attempt(&self) -> Attempt {
        self.attempt
    }

    /// We send the OFFER `id` (a new attempt replaces any other).
    pub fn offered(&mut self, id: MessageId) {
        self.attempt = Attempt::Offering(id);
    }

    /// Whether our OFFER beats the peer's when both offer at once.
    pub fn local_offer_wins(&self) -> bool {
        self.local.to_string() < self.remote.to_string()
    }

    /// The peer's OFFER `id` arrived.
    pub fn on_offer(&mut self, id: MessageId) -> Step {
        if matches!(self.attempt, Attempt::Offering(_)) && self.local_offer_wins() {
            return Step::Ignore;
        }
        self.attempt = Attempt::Answering(id);
        Step::Answer(id)
    }

    /// The peer's ANSWER to OFFER `correlation` arrived.
    pub fn on_answer(&mut self, correlation: Option<MessageId>) -> Step {
        match (self.attempt, correlation) {
            (Attempt::Offering(ours), Some(id)) if id == ours => Step::AcceptAnswer,
            _ => Step::Ignore,
        }
    }

    /// A candidate for attempt `correlation` arrived.
    pub fn on_candidate(&self, correlation: Option<MessageId>) -> Step {
        match (self.attempt, correlation) {
            (Attempt::Offering(current) | Attempt::Answering(current), Some(id))
                if id == current =>
            {
                Step::AddCandidate
            }
            _ => Step::Ignore,
        }
    }

    /// The link closed or failed: the next message starts afresh.
    pub fn reset(&mut self) {
        self.attempt = Attempt::Idle;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::Identity;

    fn pair() -> (Did, Did) {
        let a = Identity::from_seed(&[1; 32]).did();
        let b = Identity::from_seed(&[2; 32]).did();
        if a.to_string() < b.to_string() {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn glare_resolves_to_the_lower_dids_offer_on_both_sides() {
        let (low, high) = pair();
        let mut at_low = Negotiation::new(low, high);
        let mut at_high = Negotiation::new(high, low);
        let (offer_low, offer_high) = (MessageId::random(), MessageId::random());
        at_low.offered(offer_low);
        at_high.offered(offer_high);
        // Both OFFERs cross in flight.
        assert_eq!(at_low.on_offer(offer_high), Step::Ignore);
        assert_eq!(at_high.on_offer(offer_low), Step::Answer(offer_low));
        assert_eq!(at_high.attempt(), Attempt::Answering(offer_low));
        // The low side's offer goes on: its ANSWER is accepted, candidates flow for it.
        assert_eq!(at_low.on_answer(Some(offer_low)), Step::AcceptAnswer);
        assert_eq!(at_low.on_candidate(Some(offer_low)), Step::AddCandidate);
        assert_eq!(at_high.on_candidate(Some(offer_low)), Step::AddCandidate);
        // The abandoned attempt's stragglers are ignored.
        assert_eq!(at_high.on_answer(Some(offer_high)), Step::Ignore);
        assert_eq!(at_low.on_candidate(Some(offer_high)), Step::Ignore);
    }

    #[test]
    fn messages_for_other_attempts_are_ignored() {
        let (low, high) = pair();
        let mut negotiation = Negotiation::new(low, high);
        assert_eq!(
            negotiation.on_answer(Some(MessageId::random())),
            Step::Ignore
        );
        assert_eq!(negotiation.on_candidate(None), Step::Ignore);
        let ours = MessageId::random();
        negotiation.offered(ours);
        assert_eq!(negotiation.on_answer(None), Step::Ignore);
        assert_eq!(
            negotiation.on_answer(Some(MessageId::random())),
            Step::Ignore
        );
        assert_eq!(negotiation.on_answer(Some(ours)), Step::AcceptAnswer);
    }

    #[test]
    fn an_idle_side_answers_and_a_reset_starts_afresh() {
        let (low, high) = pair();
        let mut negotiation = Negotiation::new(low, high);
        let theirs = MessageId::random();
        assert_eq!(negotiation.on_offer(theirs), Step::Answer(theirs));
        negotiation.reset();
        assert_eq!(negotiation.attempt(), Attempt::Idle);
        assert_eq!(negotiation.on_candidate(Some(theirs)), Step::Ignore);
    }
}
