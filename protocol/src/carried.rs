//! The signature of a CHUNK, and of an envelope carried in CHUNKs, between two 1.6 sides
//! (PROTOCOL_DESIGN.md §11.6, FEATURES `chunk_digest`).
//!
//! Such texts travel as exact bytes, so nothing on the way can re-encode them and their
//! signatures need not survive re-encoding (§5.3): they cover the SHA-256 of the text itself.
//! The text ends with its `signature` member — `,"signature":"` 86 characters `"}` — and
//!
//! signed bytes = `ioap/v1/carried\0` ‖ SHA-256(the text before that member)
//!
//! A megabyte then costs one SHA-256 pass on each side, where §5 costs a canonicalisation and
//! two SHA-512 passes to sign and one to verify.

use sha2::{Digest, Sha256};

use crate::body::MessageType;
use crate::envelope::{EncodeError, Envelope, SignedEnvelope};
use crate::identity::Identity;
use crate::json::MAX_ENVELOPE_BYTES;
use crate::signing::{self, Purpose};

/// What a carried text's `signature` member looks like before the signature …
const HEAD: &[u8] = br#","signature":""#;
/// … and after it, closing the envelope.
const TAIL: &[u8] = br#""}"#;
/// Length of a signature in base64url without padding.
const SIGNATURE_CHARS: usize = 86;
/// Length of the whole member at the end of a carried text.
pub const SUFFIX_BYTES: usize = HEAD.len() + SIGNATURE_CHARS + TAIL.len();

/// The bytes a carried text's signature covers (digested): the text without its last member,
/// `None` unless it ends with `signature` as written here. In valid JSON the quotes matched
/// here cannot sit inside a string, so the member found is the top-level `signature`.
pub fn signed_prefix(text: &[u8]) -> Option<&[u8]> {
    let start = text.len().checked_sub(SUFFIX_BYTES)?;
    let (prefix, suffix) = text.split_at(start);
    let (head, rest) = suffix.split_at(HEAD.len());
    let (chars, tail) = rest.split_at(SIGNATURE_CHARS);
    let base64url = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    (head == HEAD && tail == TAIL && chars.iter().all(base64url) && prefix.first() == Some(&b'{'))
        .then_some(prefix)
}

/// SHA-256 of a carried text's signed prefix.
pub fn digest(prefix: &[u8]) -> [u8; 32] {
    Sha256::digest(prefix).into()
}

impl Envelope {
    /// Signs an envelope for a link whose peer listed `chunk_digest` (1.6): a CHUNK, and a text
    /// over 64 KiB (one the link carries in CHUNKs), over the SHA-256 of its text
    /// ([`crate::carried`]); any other as §5 asks. Either way `signature` is the text's last
    /// member. Checks and
    /// limits are those of [`Envelope::sign_up_to`]; the receiver verifies a carried text with
    /// [`crate::ReceivedEnvelope::verify_carried`].
    pub fn sign_carried_up_to(
        self,
        identity: &Identity,
        limit: usize,
    ) -> Result<SignedEnvelope, EncodeError> {
        let object = self.checked_object(identity)?;
        let mut text = serde_json::to_string(&object).expect("a Map always serializes");
        let size = text.len() - 1 + SUFFIX_BYTES;
        if size > limit {
            return Err(EncodeError::TooLarge { size, limit });
        }
        text.pop(); // the closing brace: the signature goes before it
        let by_digest = size > MAX_ENVELOPE_BYTES || self.message_type() == MessageType::Chunk;
        let signature = if by_digest {
            signing::sign(identity, Purpose::Carried, &digest(text.as_bytes()))
        } else {
            let canonical = signing::canonicalize_object(&object);
            let purpose = Purpose::for_type(self.message_type());
            signing::sign(identity, purpose, &canonical)
        };
        text.reserve_exact(SUFFIX_BYTES);
        text.push_str(r#","signature":""#);
        text.push_str(&signing::encode_signature(&signature));
        text.push_str(r#""}"#);
        Ok(SignedEnvelope::from_parts(self, signature, text))
    }
}

#[cfg(test)]
mod tests;
