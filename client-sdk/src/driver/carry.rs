//! Envelopes on a link, whole or, over 64 KiB, in CHUNKs (PROTOCOL_DESIGN.md §11.6): the order
//! ours go out in, one piece per turn of the link's task so it keeps hearing its peer while a
//! large message leaves, and the peer's large messages put back together.

use std::collections::VecDeque;

use ioap_protocol::chunks::{Cutter, Reassembled};
use ioap_protocol::json::MAX_ENVELOPE_BYTES;
use ioap_protocol::payload::Chunk;
use ioap_protocol::{Body, Did, Envelope, MessageId, MessageType};
use tracing::debug;

use super::receipts::Receipts;
use super::{Attempt, now, wall_now};
use crate::core::AgentCore;
use crate::machine::{Transmit, Unsent, UnsentCause};
use crate::verify::Signing;

/// Most messages that wait in a link's outbox. The peer's own traffic adds answers (a PONG per
/// PING) while a large message leaves; a peer that sends faster than the link drains makes the
/// link end (LINK_LOST), as a full data-channel send queue does, rather than grow it.
pub(super) const MAX_QUEUED: usize = 1024;

/// Messages waiting behind a large one, in the order the link's rules produced them.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Outgoing>,
}

/// The outbox holds [`MAX_QUEUED`] messages already.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct OutboxFull;

#[derive(Debug)]
enum Outgoing {
    Whole(String),
    Cut {
        cutter: Cutter,
        correlation: Option<MessageId>,
    },
}

impl Outbox {
    /// Whether something waits to go out.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push(&mut self, outgoing: Outgoing) -> Result<(), OutboxFull> {
        if self.queue.len() >= MAX_QUEUED {
            return Err(OutboxFull);
        }
        self.queue.push_back(outgoing);
        Ok(())
    }

    /// The next text to put on the channel: a whole envelope, or the next CHUNK of a large one,
    /// signed now.
    pub(super) fn next_wire(
        &mut self,
        core: &AgentCore,
        remote: Did,
        by_digest: bool,
    ) -> Option<Result<String, String>> {
        let front = self.queue.front_mut()?;
        let wire = match front {
            Outgoing::Whole(_) => match self.queue.pop_front() {
                Some(Outgoing::Whole(text)) => Ok(text),
                _ => return None,
            },
            Outgoing::Cut {
                cutter,
                correlation,
            } => {
                let correlation = *correlation;
                let chunk = cutter.next()?;
                if cutter.remaining() == 0 {
                    self.queue.pop_front();
                }
                sign_chunk(core, remote, chunk, correlation, by_digest)
            }
        };
        Some(wire)
    }
}

/// Signs a CHUNK: over its text's digest when both sides listed `chunk_digest`.
fn sign_chunk(
    core: &AgentCore,
    remote: Did,
    chunk: Chunk,
    correlation: Option<MessageId>,
    by_digest: bool,
) -> Result<String, String> {
    let mut envelope = Envelope::new(core.did, Some(remote), Body::Chunk(chunk), wall_now());
    envelope.correlation_id = correlation;
    let signed = if by_digest {
        envelope.sign_carried_up_to(&core.identity, MAX_ENVELOPE_BYTES)
    } else {
        envelope.sign(&core.identity)
    };
    signed
        .map(|signed| signed.into_string())
        .map_err(|error| error.to_string())
}

/// What to do with one of our envelopes.
pub(super) enum Send {
    /// Put it on the channel now.
    Now(String),
    /// It waits in the outbox (queued behind a large message, or itself large).
    Queued,
    /// It cannot go: the link's rules were told (the call fails, or the link ends when the
    /// outbox is full).
    Refused,
}

/// Signs `transmit` and decides how it goes: whole now, queued, in CHUNKs, or not at all (over
/// `limit`, over 64 KiB to a peer that takes no CHUNKs, or breaking a rule of §8).
pub(super) fn prepare(
    attempt: &mut Attempt,
    core: &AgentCore,
    remote: Did,
    transmit: Transmit,
    limit: usize,
    receipts: &mut Receipts,
) -> Send {
    let (ty, id, correlation) = (
        transmit.body.message_type(),
        transmit.id,
        transmit.correlation,
    );
    let refuse = |attempt: &mut Attempt, cause| {
        let unsent = Unsent {
            ty,
            id,
            correlation,
            cause,
        };
        attempt.machine.unsendable(now(), unsent);
        Send::Refused
    };
    let mut envelope = Envelope::new(core.did, Some(remote), transmit.body, wall_now());
    if let Some(id) = id {
        envelope.id = id;
    }
    envelope.correlation_id = correlation;
    let message = envelope.id;
    let limit = if attempt.machine.peer_takes_chunks() {
        limit
    } else {
        MAX_ENVELOPE_BYTES
    };
    let signed = if attempt.machine.chunks_signed_by_digest() {
        envelope.sign_carried_up_to(&core.identity, limit)
    } else {
        envelope.sign_up_to(&core.identity, limit)
    };
    let text = match signed {
        Ok(signed) => signed.into_string(),
        Err(ioap_protocol::EncodeError::TooLarge { size, limit }) => {
            let cause = UnsentCause::TooLarge {
                size: size as u64,
                limit: limit as u64,
            };
            return refuse(attempt, cause);
        }
        Err(error) => return refuse(attempt, UnsentCause::Invalid(error.to_string())),
    };
    receipts.sent(message, &text);
    let queued = if text.len() > MAX_ENVELOPE_BYTES {
        let cutter = Cutter::new(message, text);
        attempt.outbox.push(Outgoing::Cut {
            cutter,
            correlation,
        })
    } else if attempt.outbox.is_empty() {
        return Send::Now(text);
    } else {
        attempt.outbox.push(Outgoing::Whole(text))
    };
    match queued {
        Ok(()) => Send::Queued,
        Err(OutboxFull) => {
            let lost = crate::error::CallError::lost("the link's send queue is full");
            attempt.machine.end(crate::machine::LinkEnd::Failed(lost));
            Send::Refused
        }
    }
}

/// How the peer signs CHUNKs and what they carry, by what both sides listed.
pub(super) fn signing(attempt: &Attempt) -> Signing {
    if attempt.machine.chunks_signed_by_digest() {
        Signing::Digest
    } else {
        Signing::Canonical
    }
}

/// Takes a verified CHUNK from the peer: a message it completes goes to the link's rules, a
/// message refused at its first piece is answered. Err: the piece broke §11.6 (dropped).
pub(super) fn take_chunk(
    attempt: &mut Attempt,
    correlation: Option<MessageId>,
    chunk: &Chunk,
    limit: usize,
    receipts: &mut Receipts,
) -> Result<(), &'static str> {
    attempt.machine.heard(now());
    match attempt.reassembly.accept(chunk) {
        Reassembled::Pending | Reassembled::Skipped => Ok(()),
        Reassembled::Refused(code) => {
            debug!(%code, bytes = chunk.total_bytes, "a large message from the peer refused");
            attempt.machine.refuse_message(
                chunk.message,
                correlation,
                code,
                chunk.total_bytes,
                limit as u64,
            );
            Ok(())
        }
        Reassembled::Malformed(why) => Err(why),
        Reassembled::Complete(bytes) => {
            let signing = signing(attempt);
            let envelope = attempt
                .verifier
                .check_up_to(&bytes, limit, signing, wall_now())
                .map_err(|_| "the reassembled message does not verify")?;
            let carried = matches!(
                envelope.message_type(),
                MessageType::ExecRequest | MessageType::ExecResponse | MessageType::Intent
            );
            if envelope.id != chunk.message || !carried {
                return Err("the reassembled message is not the one announced");
            }
            receipts.received(&envelope, &bytes);
            attempt.machine.handle_message(now(), envelope);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_refuses_beyond_its_bound_and_keeps_order() {
        let mut outbox = Outbox::default();
        for i in 0..MAX_QUEUED {
            assert_eq!(outbox.push(Outgoing::Whole(i.to_string())), Ok(()));
        }
        assert_eq!(
            outbox.push(Outgoing::Whole("one more".into())),
            Err(OutboxFull)
        );
        assert_eq!(outbox.queue.len(), MAX_QUEUED);
        match outbox.queue.front() {
            Some(Outgoing::Whole(first)) => assert_eq!(first, "0"),
            other => panic!("{other:?}"),
        }
    }
}
