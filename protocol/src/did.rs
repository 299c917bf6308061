//! `did:key` identifiers for Ed25519 keys, standard form only.
//!
//! `did:key:z` ‖ base58btc(0xed 0x01 ‖ 32-byte Ed25519 public key). Any other multibase, any
//! other multicodec, any other length, and any key that is not a canonical, non-small-order
//! curve point is refused with its own [`DidError`].

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The method prefix of every ioap DID.
pub const DID_KEY_PREFIX: &str = "did:key:";
/// The multicodec prefix of an Ed25519 public key (varint of 0xed).
pub const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// The multicodec prefix of an X25519 public key (varint of 0xec).
pub const X25519_MULTICODEC: [u8; 2] = [0xec, 0x01];
/// Length of a canonical `did:key` Ed25519 DID in characters (`did:key:z6Mk…`).
pub const DID_LEN: usize = 56;

/// Why a string is not a valid ioap `did:key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// The string does not start with `did:key:`.
    #[error("not a did:key (expected the prefix \"did:key:\")")]
    WrongPrefix,
    /// The method-specific id is not multibase base58btc (`z…`).
    #[error("did:key must use multibase base58btc ('z'), found prefix {0:?}")]
    WrongMultibase(char),
    /// The method-specific id is empty.
    #[error("did:key has an empty method-specific id")]
    Empty,
    /// The base58btc text contains characters outside the bitcoin alphabet.
    #[error("did:key is not valid base58btc: {0}")]
    InvalidBase58(String),
    /// The decoded bytes do not start with the Ed25519 multicodec 0xed 0x01.
    #[error("did:key multicodec is not Ed25519 (0xed01), found 0x{0:02x}{1:02x}")]
    WrongMulticodec(u8, u8),
    /// The key is not 32 bytes.
    #[error("Ed25519 public key must be 32 bytes, found {0}")]
    WrongLength(usize),
    /// The key's point encoding is not canonical (its y coordinate is not reduced mod p), so
    /// two different DIDs would name the same key.
    #[error("did:key holds a non-canonical Ed25519 point encoding")]
    NonCanonical,
    /// The 32 bytes are not a point on the curve.
    #[error("did:key does not hold a valid Ed25519 public key")]
    InvalidKey,
    /// The key is of small order (a weak key any signature can be forged for).
    #[error("did:key holds a weak (small-order) Ed25519 key")]
    WeakKey,
}

/// An Ed25519 `did:key` identifier, validated.
///
/// Holds the public key both as its 32 bytes and decompressed, so verification does not pay
/// for decompression again. Equality, ordering and hashing are on the bytes, which is the same
/// as on the canonical text.
#[derive(Clone, Copy)]
pub struct Did {
    key: [u8; 32],
    verifying: VerifyingKey,
}

impl PartialEq for Did {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Did {}

impl std::hash::Hash for Did {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for Did {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Did {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Did {
    /// Parses and validates a DID string (see [`DidError`] for every rejection).
    pub fn parse(text: &str) -> Result<Self, DidError> {
        Self::from_public_key_bytes(Self::key_bytes_of(text)?)
    }

    /// The 32 key bytes a DID text names, checking its form (prefix, multibase, multicodec,
    /// length) but *not* that the bytes are a valid, non-weak point: for looking a DID up
    /// among DIDs already validated. Use [`Did::parse`] for anything else.
    pub fn key_bytes_of(text: &str) -> Result<[u8; 32], DidError> {
        let suffix = text
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(DidError::WrongPrefix)?;
        decode_multibase_key(suffix, ED25519_MULTICODEC)
    }

    /// Parses the multibase public-key form used in REGISTER (`z6Mk…`, the DID without
    /// `did:key:`).
    pub fn from_multibase(text: &str) -> Result<Self, DidError> {
        Self::from_public_key_bytes(decode_multibase_key(text, ED25519_MULTICODEC)?)
    }

    /// Makes a DID from raw public-key bytes, refusing invalid and weak keys.
    pub fn from_public_key_bytes(key: [u8; 32]) -> Result<Self, DidError> {
        // from_bytes accepts a non-canonical y coordinate (y ≥ p) and keeps the bytes as given.
        if y_is_unreduced(&key) {
            return Err(DidError::NonCanonical);
        }
        let verifying = VerifyingKey::from_bytes(&key).map_err(|_| DidError::InvalidKey)?;
        // The other non-canonical encodings (x = 0 with the sign bit set) are the points
        // y = ±1, both of small order, so the weak-key check refuses them.
        if verifying.is_weak() {
            return Err(DidError::WeakKey);
        }
        Ok(Did { key, verifying })
    }

    /// Makes a DID from a verifying key, refusing weak keys.
    pub fn from_verifying_key(key: &VerifyingKey) -> Result<Self, DidError> {
        Self::from_public_key_bytes(key.to_bytes())
    }

    /// The 32 raw public-key bytes.
    pub fn public_key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The multibase public key, `z6Mk…` (the DID without `did:key:`).
    pub fn public_key_multibase(&self) -> String {
        encode_multibase_key(ED25519_MULTICODEC, &self.key)
    }

    /// The derived X25519 key-agreement public key (birational map of the Ed25519 key).
    pub fn x25519_public_key(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.verifying_key().to_montgomery().to_bytes())
    }

    /// The X25519 key-agreement key in multibase form, `z6LS…`, as W3C did:key documents use.
    pub fn x25519_public_key_multibase(&self) -> String {
        encode_multibase_key(X25519_MULTICODEC, self.x25519_public_key().as_bytes())
    }
}

/// Whether the y coordinate in an encoded point (low 255 bits, little-endian) is ≥ p = 2^255 − 19.
fn y_is_unreduced(key: &[u8; 32]) -> bool {
    key[31] & 0x7f == 0x7f && key[1..31].iter().all(|b| *b == 0xff) && key[0] >= 0xed
}

/// `z` ‖ base58btc(multicodec ‖ key).
pub(crate) fn encode_multibase_key(codec: [u8; 2], key: &[u8; 32]) -> String {
    let mut bytes = [0u8; 34];
    bytes[..2].copy_from_slice(&codec);
    bytes[2..].copy_from_slice(key);
    multibase::encode(multibase::Base::Base58Btc, bytes)
}

fn decode_multibase_key(text: &str, codec: [u8; 2]) -> Result<[u8; 32], DidError> {
    let mut chars = text.chars();
    let base = chars.next().ok_or(DidError::Empty)?;
    if base != 'z' {
        return Err(DidError::WrongMultibase(base));
    }
    let body = chars.as_str();
    if body.is_empty() {
        return Err(DidError::Empty);
    }
    let bytes = bs58::decode(body)
        .into_vec()
        .map_err(|e| DidError::InvalidBase58(e.to_string()))?;
    if bytes.len() < 2 || bytes[..2] != codec {
        let first = bytes.first().copied().unwrap_or(0);
        let second = bytes.get(1).copied().unwrap_or(0);
        return Err(DidError::WrongMulticodec(first, second));
    }
    // base58btc is bijective once the multicodec pins the first byte (a leading '1' would be a
    // leading zero byte), so a successful decode here is the canonical text of its bytes.
    bytes[2..]
        .try_into()
        .map_err(|_| DidError::WrongLength(bytes.len() - 2))
}

impl FromStr for Did {
    type Err = DidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Did::parse(s)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DID_KEY_PREFIX)?;
        f.write_str(&self.public_key_multibase())
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({self})")
    }
}

impl Serialize for Did {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Did {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Did::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";

    #[test]
    fn parses_and_displays_canonically() {
        let did = Did::parse(VALID).expect("valid");
        assert_eq!(did.to_string(), VALID);
        assert_eq!(VALID.len(), DID_LEN);
        assert_eq!(Did::from_multibase(&VALID[8..]), Ok(did));
    }

    #[test]
    fn each_error_path_is_distinct() {
        assert_eq!(
            Did::parse("did:web:example.com"),
            Err(DidError::WrongPrefix)
        );
        assert_eq!(Did::parse("did:key:"), Err(DidError::Empty));
        assert_eq!(Did::parse("did:key:z"), Err(DidError::Empty));
        assert_eq!(
            Did::parse("did:key:f6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
            Err(DidError::WrongMultibase('f'))
        );
        assert!(matches!(
            Did::parse("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0"),
            Err(DidError::InvalidBase58(_))
        ));
        // A valid X25519 did:key (multicodec 0xec01) is not an Ed25519 DID.
        assert_eq!(
            Did::parse("did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F"),
            Err(DidError::WrongMulticodec(0xec, 0x01))
        );
        let short = encode_short(&[0xed, 0x01, 1, 2, 3]);
        assert_eq!(
            Did::parse(&format!("did:key:{short}")),
            Err(DidError::WrongLength(3))
        );
        // y = p + 1 is a non-canonical encoding of y = 1.
        let mut non_canonical_point = [0xffu8; 32];
        non_canonical_point[0] = 0xee;
        non_canonical_point[31] = 0x7f;
        assert_eq!(
            Did::from_public_key_bytes(non_canonical_point),
            Err(DidError::NonCanonical)
        );
        let off_curve = (2u8..=255)
            .map(|y| {
                let mut k = [0u8; 32];
                k[0] = y;
                k
            })
            .find(|k| VerifyingKey::from_bytes(k).is_err())
            .expect("some small y is not on the curve");
        assert_eq!(
            Did::from_public_key_bytes(off_curve),
            Err(DidError::InvalidKey)
        );
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1; // the neutral element: small order
        assert_eq!(
            Did::from_public_key_bytes(identity_point),
            Err(DidError::WeakKey)
        );
    }

    #[test]
    fn non_canonical_text_is_refused() {
        // An extra leading '1' is an extra leading zero byte: the multicodec no longer matches.
        let text = format!("did:key:z1{}", &VALID[9..]);
        assert_eq!(Did::parse(&text), Err(DidError::WrongMulticodec(0, 0xed)));
        assert_eq!(
            Did::parse(&VALID.to_uppercase()),
            Err(DidError::WrongPrefix)
        );
    }

    fn encode_short(bytes: &[u8]) -> String {
        format!("z{}", bs58::encode(bytes).into_string())
    }
}
