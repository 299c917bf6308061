//! Verification of what arrives on a link (PROTOCOL_DESIGN.md §11.3): a plain function of the
//! bytes, the two DIDs and a replay guard, so tests drive it without a data channel.

use ioap_protocol::json::MAX_ENVELOPE_BYTES;
use ioap_protocol::{Did, Envelope, MessageType, ReceivedEnvelope, ReplayGuard, Timestamp};

/// Why a message on a link was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a well-formed envelope (or not text).
    #[error("malformed envelope")]
    Malformed,
    /// The signature does not verify under `from`.
    #[error("bad signature")]
    BadSignature,
    /// Signed by someone other than the peer this link was signaled with.
    #[error("sender is not the link's peer")]
    WrongSender,
    /// Addressed to someone else.
    #[error("addressed to another agent")]
    WrongRecipient,
    /// Seen before, or outside the timestamp window.
    #[error("replayed or stale")]
    Replayed,
}

/// Checks messages from one peer to one agent.
#[derive(Debug)]
pub struct PeerVerifier {
    local: Did,
    remote: Did,
    remote_text: String,
    local_text: String,
    replay: ReplayGuard,
}

impl PeerVerifier {
    /// A verifier for messages from `remote` to `local`.
    pub fn new(local: Did, remote: Did) -> Self {
        PeerVerifier {
            local,
            remote,
            remote_text: remote.to_string(),
            local_text: local.to_string(),
            replay: ReplayGuard::default(),
        }
    }

    /// Decodes and verifies one message; accepted messages are remembered for replay checks.
    pub fn check(
        &mut self,
        bytes: &[u8],
        signing: Signing,
        now: Timestamp,
    ) -> Result<Envelope, Refusal> {
        self.check_up_to(bytes, MAX_ENVELOPE_BYTES, signing, now)
    }

    /// [`PeerVerifier::check`] of a message reassembled from CHUNKs, up to `limit` bytes
    /// (PROTOCOL_DESIGN.md §11.6).
    pub fn check_up_to(
        &mut self,
        bytes: &[u8],
        limit: usize,
        signing: Signing,
        now: Timestamp,
    ) -> Result<Envelope, Refusal> {
        let (remote, local) = (self.remote, self.local);
        let (remote_text, local_text) = (&self.remote_text, &self.local_text);
        let received = ReceivedEnvelope::decode_up_to(bytes, limit, |text| {
            if text == remote_text {
                Some(remote)
            } else if text == local_text {
                Some(local)
            } else {
                None
            }
        })
        .map_err(|_| Refusal::Malformed)?;
        if received.envelope().from != self.remote {
            return Err(Refusal::WrongSender);
        }
        if received.envelope().to != Some(self.local) {
            return Err(Refusal::WrongRecipient);
        }
        let by_digest = signing == Signing::Digest
            && (bytes.len() > MAX_ENVELOPE_BYTES
                || received.envelope().message_type() == MessageType::Chunk);
        let envelope = if by_digest {
            received.into_verified_carried()
        } else {
            received.into_verified()
        }
        .map_err(|_| Refusal::BadSignature)?;
        self.replay
            .check(&envelope.from, &envelope.id, envelope.timestamp, now)
            .map_err(|_| Refusal::Replayed)?;
        Ok(envelope)
    }
}

/// How the peer signs CHUNKs and the messages they carry (PROTOCOL_DESIGN.md §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Over their canonical form, as every message (§5).
    Canonical,
    /// Over their text's digest: both sides listed `chunk_digest` (1.6). Other messages are
    /// signed as §5 says.
    Digest,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::payload::Ping;
    use ioap_protocol::samples::{alice, bob, example_time};
    use ioap_protocol::{Body, Identity};

    fn ping(from: &Identity, to: Did) -> String {
        Envelope::new(
            from.did(),
            Some(to),
            Body::Ping(Ping { sequence: 1 }),
            example_time(),
        )
        .sign(from)
        .expect("sign")
        .into_string()
    }

    #[test]
    fn accepts_the_peer_once_and_refuses_everyone_else() {
        let (a, b) = (alice(), bob());
        let mut at_b = PeerVerifier::new(b.did(), a.did());
        let good = ping(&a, b.did());
        assert!(
            at_b.check(good.as_bytes(), Signing::Canonical, example_time())
                .is_ok()
        );
        assert_eq!(
            at_b.check(good.as_bytes(), Signing::Canonical, example_time())
                .err(),
            Some(Refusal::Replayed)
        );
        let stranger = Identity::from_seed(&[9; 32]);
        assert_eq!(
            at_b.check(
                ping(&stranger, b.did()).as_bytes(),
                Signing::Canonical,
                example_time()
            )
            .err(),
            Some(Refusal::WrongSender),
            "validly signed by someone else"
        );
        assert_eq!(
            at_b.check(
                ping(&a, stranger.did()).as_bytes(),
                Signing::Canonical,
                example_time()
            )
            .err(),
            Some(Refusal::WrongRecipient)
        );
        let forged = ping(&a, b.did()).replace("\"sequence\":1", "\"sequence\":2");
        assert_eq!(
            at_b.check(forged.as_bytes(), Signing::Canonical, example_time())
                .err(),
            Some(Refusal::BadSignature)
        );
        assert_eq!(
            at_b.check(b"{not json", Signing::Canonical, example_time())
                .err(),
            Some(Refusal::Malformed)
        );
    }

    fn chunk(from: &Identity, to: Did, by_digest: bool) -> String {
        let piece = ioap_protocol::payload::Chunk {
            message: ioap_protocol::MessageId::random(),
            index: 0,
            count: 2,
            total_bytes: 10,
            data: "AAAA".into(),
        };
        let envelope = Envelope::new(from.did(), Some(to), Body::Chunk(piece), example_time());
        let signed = if by_digest {
            envelope.sign_carried_up_to(from, MAX_ENVELOPE_BYTES)
        } else {
            envelope.sign(from)
        };
        signed.expect("sign").into_string()
    }

    #[test]
    fn between_1_6_sides_chunks_verify_by_digest_and_other_messages_as_section_5() {
        let (a, b) = (alice(), bob());
        let mut at_b = PeerVerifier::new(b.did(), a.did());
        let now = example_time();
        let digest = chunk(&a, b.did(), true);
        let canonical = chunk(&a, b.did(), false);
        assert!(at_b.check(digest.as_bytes(), Signing::Digest, now).is_ok());
        assert_eq!(
            at_b.check(canonical.as_bytes(), Signing::Digest, now).err(),
            Some(Refusal::BadSignature)
        );
        assert!(
            at_b.check(ping(&a, b.did()).as_bytes(), Signing::Digest, now)
                .is_ok()
        );
        let mut at_b = PeerVerifier::new(b.did(), a.did());
        assert_eq!(
            at_b.check(digest.as_bytes(), Signing::Canonical, now).err(),
            Some(Refusal::BadSignature)
        );
        assert!(
            at_b.check(canonical.as_bytes(), Signing::Canonical, now)
                .is_ok()
        );
    }
}
