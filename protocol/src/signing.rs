//! Domain-separated Ed25519 signatures over RFC 8785 (JCS) canonical JSON.
//!
//! signed bytes = tag ‖ JCS(envelope object without its `signature` member)
//!
//! The tag names the purpose, so a signature made for one purpose can never be accepted for
//! another, nor for any other protocol that signs JSON with the same key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde_json::{Map, Value};

use crate::body::MessageType;
use crate::did::Did;
use crate::identity::Identity;

/// Tag for every envelope except REGISTER.
pub const MESSAGE_TAG: &[u8] = b"ioap/v1/message\0";
/// Tag for REGISTER envelopes (the registration proof).
pub const REGISTRATION_TAG: &[u8] = b"ioap/v1/register\0";
/// Tag for grants (PROTOCOL_DESIGN.md §11.9), which are not envelopes.
pub const GRANT_TAG: &[u8] = b"ioap/v1/grant\0";
/// Tag for envelopes carried in CHUNKs whose signature covers a digest of their text
/// (PROTOCOL_DESIGN.md §11.6, 1.6).
pub const CARRIED_TAG: &[u8] = b"ioap/v1/carried\0";

/// What a signature is for; selects the domain-separation tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An ordinary protocol message.
    Message,
    /// A registration proof (REGISTER).
    Registration,
    /// A grant letting another agent call a capability.
    Grant,
    /// A large envelope carried in CHUNKs, signed over the SHA-256 of its text.
    Carried,
}

impl Purpose {
    /// The purpose an envelope of this type is signed for.
    pub fn for_type(ty: MessageType) -> Self {
        if ty == MessageType::Register {
            Purpose::Registration
        } else {
            Purpose::Message
        }
    }

    /// The tag prepended to the canonical bytes.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Message => MESSAGE_TAG,
            Purpose::Registration => REGISTRATION_TAG,
            Purpose::Grant => GRANT_TAG,
            Purpose::Carried => CARRIED_TAG,
        }
    }
}

/// The signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify under the sender's key")]
pub struct BadSignature;

/// The RFC 8785 canonical form of a JSON value.
pub fn canonicalize(value: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(value).expect("a serde_json::Value always canonicalizes")
}

/// The RFC 8785 canonical form of a JSON object.
pub fn canonicalize_object(object: &Map<String, Value>) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(object).expect("a serde_json::Map always canonicalizes")
}

/// tag ‖ canonical bytes.
pub fn signing_input(purpose: Purpose, canonical: &[u8]) -> Vec<u8> {
    let tag = purpose.tag();
    let mut input = Vec::with_capacity(tag.len() + canonical.len());
    input.extend_from_slice(tag);
    input.extend_from_slice(canonical);
    input
}

/// Signs canonical bytes for a purpose.
pub fn sign(identity: &Identity, purpose: Purpose, canonical: &[u8]) -> Signature {
    identity.sign_raw(&signing_input(purpose, canonical))
}

/// Verifies with `verify_strict` (rejects non-canonical signatures and small-order keys).
pub fn verify(
    signer: &Did,
    purpose: Purpose,
    canonical: &[u8],
    signature: &Signature,
) -> Result<(), BadSignature> {
    signer
        .verifying_key()
        .verify_strict(&signing_input(purpose, canonical), signature)
        .map_err(|_| BadSignature)
}

/// The wire form of a signature: base64url without padding (86 characters).
pub fn encode_signature(signature: &Signature) -> String {
    URL_SAFE_NO_PAD.encode(signature.to_bytes())
}

/// Parses the wire form of a signature; `None` unless it is exactly 64 bytes in canonical
/// unpadded base64url.
pub fn decode_signature(text: &str) -> Option<Signature> {
    if text.len() != 86 {
        return None;
    }
    let bytes: [u8; 64] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_and_none_prefixes_another() {
        let tags = [MESSAGE_TAG, REGISTRATION_TAG, GRANT_TAG, CARRIED_TAG];
        for (i, a) in tags.iter().enumerate() {
            for (j, b) in tags.iter().enumerate() {
                assert!(i == j || !a.starts_with(b), "{i} {j}");
            }
        }
    }

    #[test]
    fn a_signature_for_one_purpose_fails_for_the_other() {
        let id = Identity::from_seed(&[1; 32]);
        let canonical = br#"{"a":1}"#;
        let sig = sign(&id, Purpose::Message, canonical);
        assert_eq!(verify(&id.did(), Purpose::Message, canonical, &sig), Ok(()));
        assert_eq!(
            verify(&id.did(), Purpose::Registration, canonical, &sig),
            Err(BadSignature)
        );
    }

    #[test]
    fn signature_encoding_is_strict() {
        let id = Identity::from_seed(&[1; 32]);
        let sig = sign(&id, Purpose::Message, b"x");
        let text = encode_signature(&sig);
        assert_eq!(text.len(), 86);
        assert_eq!(decode_signature(&text), Some(sig));
        assert_eq!(decode_signature(&format!("{text}==")), None);
        assert_eq!(decode_signature(&text[..85]), None);
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.to_bytes());
        if standard != text {
            assert_eq!(
                decode_signature(&standard),
                None,
                "standard alphabet refused"
            );
        }
        // 86 characters carry 516 bits for 512: the last character's 4 low bits must be zero.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = text.clone().into_bytes();
        let last = ALPHABET
            .iter()
            .position(|c| *c == bytes[85])
            .expect("in alphabet");
        assert_eq!(last % 16, 0);
        bytes[85] = ALPHABET[last + 1];
        let tweaked = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            decode_signature(&tweaked),
            None,
            "non-zero spare bits refused"
        );
    }
}
