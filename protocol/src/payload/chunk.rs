//! CHUNK (1.4): one piece of a peer-to-peer message too large for one envelope
//! (PROTOCOL_DESIGN.md §11.6).

use serde::{Deserialize, Serialize};

use super::{InvalidPayload, Validate, invalid};
use crate::MessageId;
use crate::json::MAX_SAFE_INTEGER;

/// The 1.4 feature: the sender takes messages larger than one envelope, in CHUNKs.
pub const FEATURE_CHUNKS: &str = "chunks";
/// The 1.6 feature: between two sides that both list it, an envelope carried in CHUNKs is
/// signed over the SHA-256 of its text rather than its canonical form ([`crate::carried`]).
pub const FEATURE_CHUNK_DIGEST: &str = "chunk_digest";
/// Most bytes of the whole message one CHUNK carries (46 KiB: with base64url and the
/// envelope around it, a CHUNK stays under the 64 KiB envelope limit).
pub const MAX_CHUNK_BYTES: usize = 46 * 1024;
/// Longest `data` of a CHUNK: [`MAX_CHUNK_BYTES`] in base64url without padding.
pub const MAX_CHUNK_DATA_CHARS: usize = (MAX_CHUNK_BYTES * 4).div_ceil(3);

/// CHUNK (agent → agent, on a link): bytes `index` of `count` of the signed envelope text whose
/// `id` is `message` and whose length is `total_bytes`. Its own `correlation_id` is the carried
/// envelope's, when that has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// The `id` of the envelope being carried.
    pub message: MessageId,
    /// This piece's place, from 0.
    pub index: u32,
    /// How many pieces the envelope is cut into (at least 2).
    pub count: u32,
    /// The length of the carried envelope's text in bytes (1 – 2^53 − 1).
    pub total_bytes: u64,
    /// This piece's bytes, base64url without padding (1 – [`MAX_CHUNK_BYTES`] bytes).
    pub data: String,
}

impl Validate for Chunk {
    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.count < 2 {
            return invalid("count must be at least 2");
        }
        if self.index >= self.count {
            return invalid("index must be below count");
        }
        if self.total_bytes == 0 || self.total_bytes > MAX_SAFE_INTEGER {
            return invalid("total_bytes must be 1 - 2^53 - 1");
        }
        if self.data.is_empty() || self.data.len() > MAX_CHUNK_DATA_CHARS {
            return invalid(format!("data must be 1-{MAX_CHUNK_DATA_CHARS} characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> Chunk {
        Chunk {
            message: MessageId::random(),
            index: 0,
            count: 2,
            total_bytes: 10,
            data: "aGVsbG8".into(),
        }
    }

    #[test]
    fn rules() {
        assert!(chunk().validate().is_ok());
        for bad in [
            Chunk {
                count: 1,
                ..chunk()
            },
            Chunk {
                index: 2,
                ..chunk()
            },
            Chunk {
                total_bytes: 0,
                ..chunk()
            },
            Chunk {
                total_bytes: MAX_SAFE_INTEGER + 1,
                ..chunk()
            },
            Chunk {
                data: String::new(),
                ..chunk()
            },
            Chunk {
                data: "a".repeat(MAX_CHUNK_DATA_CHARS + 1),
                ..chunk()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_full_chunk_stays_under_the_envelope_limit() {
        use crate::samples::{alice, bob, example_time};
        use crate::{Body, Envelope};
        let full = Chunk {
            data: "A".repeat(MAX_CHUNK_DATA_CHARS),
            count: u32::MAX,
            index: u32::MAX - 1,
            total_bytes: MAX_SAFE_INTEGER,
            ..chunk()
        };
        let signed = Envelope::new(
            alice().did(),
            Some(bob().did()),
            Body::Chunk(full),
            example_time(),
        )
        .in_reply_to(MessageId::random())
        .sign(&alice());
        assert!(signed.is_ok(), "{signed:?}");
    }
}
