//! The keys and records of a gateway-relayed link (PROTOCOL_DESIGN.md §11.5), as pure
//! functions: no sockets, no clock.
//!
//! Each side contributes an ephemeral X25519 key (RELAY_OPEN, RELAY_ACCEPT, both signed);
//! the link's keys come from HKDF-SHA256 over the ephemeral agreement and the agreement of the
//! two DIDs' own X25519 keys (§2), bound to the link's id, both DIDs and both ephemeral keys.
//! Records are ChaCha20-Poly1305 with the record number as nonce: one key per direction, and
//! a receiver takes records only in order, so a dropped, replayed or reordered record is
//! detected, never skipped.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::did::Did;
use crate::identity::Identity;
use crate::message_id::MessageId;
use crate::payload::{MAX_RELAY_CHUNK, RelayData};

/// The HKDF `info` prefix of relay keys.
const KEY_LABEL: &[u8] = b"ioap.v1 relay keys";
/// Flag byte of a record that ends a message.
const FINAL: u8 = 1;
/// Flag byte of a record that a later one continues.
const MORE: u8 = 0;
/// Records per direction before the link must be opened anew (integers stay JSON-safe).
const MAX_RECORDS: u64 = (1 << 53) - 1;

/// Why a relay key or record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A record arrived out of order: one was lost (or replayed) on the way.
    #[error("relay record {got} arrived where {expected} was due: a record was lost")]
    Gap {
        /// The record number due.
        expected: u64,
        /// The record number received.
        got: u64,
    },
    /// The record does not open with the link's key: altered or forged.
    #[error("relay record {0} does not authenticate")]
    Forged(u64),
    /// The record is not base64url, or its flag byte is unknown.
    #[error("relay record {0} is malformed")]
    Malformed(u64),
    /// A message grew beyond the receiver's limit.
    #[error("relayed message exceeds {0} bytes")]
    TooLarge(usize),
    /// An agreement gave the all-zero secret (a small-order key).
    #[error("relay key of small order refused")]
    WeakKey,
    /// This direction used up its record numbers.
    #[error("relay link used up its record numbers")]
    Exhausted,
    /// No randomness for an ephemeral key.
    #[error("no randomness for a relay key: {0}")]
    Rng(String),
}

/// Which end of a relayed link this side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRole {
    /// Sent RELAY_OPEN.
    Opener,
    /// Answered it with RELAY_ACCEPT.
    Accepter,
}

/// One side's ephemeral X25519 key for one relayed link.
pub struct EphemeralKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey")
            .field("public", &self.public_text())
            .finish_non_exhaustive()
    }
}

impl EphemeralKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, RelayError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| RelayError::Rng(e.to_string()))?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The key for fixed secret bytes (tests and examples).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        EphemeralKey { secret, public }
    }

    /// The public key as RELAY_OPEN / RELAY_ACCEPT carry it.
    pub fn public_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public.as_bytes())
    }
}

/// What one side needs to derive a relayed link's keys.
#[derive(Debug, Clone, Copy)]
pub struct RelayHandshake<'a> {
    /// This side's role.
    pub role: RelayRole,
    /// This side's identity.
    pub identity: &'a Identity,
    /// The peer's DID.
    pub peer: &'a Did,
    /// The RELAY_OPEN's id, which names the link.
    pub link: MessageId,
    /// The peer's ephemeral public key (decoded from its RELAY_OPEN or RELAY_ACCEPT).
    pub peer_key: &'a [u8; 32],
}

impl RelayHandshake<'_> {
    /// The link's sealer (records we send) and opener (records we receive), or an error when
    /// an agreement is degenerate.
    pub fn keys(
        &self,
        mine: &EphemeralKey,
        max_message: usize,
    ) -> Result<(RecordSealer, RecordOpener), RelayError> {
        let peer_ephemeral = PublicKey::from(*self.peer_key);
        let ephemeral = mine.secret.diffie_hellman(&peer_ephemeral);
        let identity = self
            .identity
            .x25519_secret()
            .diffie_hellman(&self.peer.x25519_public_key());
        if !ephemeral.was_contributory() || !identity.was_contributory() {
            return Err(RelayError::WeakKey);
        }
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(ephemeral.as_bytes());
        ikm[32..].copy_from_slice(identity.as_bytes());
        let me = self.identity.did();
        let (opener, accepter, opener_key, accepter_key) = match self.role {
            RelayRole::Opener => (me, *self.peer, mine.public.to_bytes(), *self.peer_key),
            RelayRole::Accepter => (*self.peer, me, *self.peer_key, mine.public.to_bytes()),
        };
        let link = self.link.to_string();
        let mut info = Vec::with_capacity(256);
        info.extend_from_slice(KEY_LABEL);
        for part in [
            link.as_bytes(),
            opener.to_string().as_bytes(),
            accepter.to_string().as_bytes(),
            &opener_key,
            &accepter_key,
        ] {
            info.push(0);
            info.extend_from_slice(part);
        }
        let mut okm = Zeroizing::new([0u8; 64]);
        Hkdf::<Sha256>::new(None, ikm.as_ref())
            .expand(&info, okm.as_mut())
            .map_err(|_| RelayError::WeakKey)?;
        let (to_accepter, to_opener) = okm.split_at(32);
        let (send, receive) = match self.role {
            RelayRole::Opener => (to_accepter, to_opener),
            RelayRole::Accepter => (to_opener, to_accepter),
        };
        let cipher = |key: &[u8]| ChaCha20Poly1305::new(Key::from_slice(key));
        Ok((
            RecordSealer {
                cipher: cipher(send),
                aad: link.clone(),
                next: 0,
            },
            RecordOpener {
                cipher: cipher(receive),
                aad: link,
                next: 0,
                partial: Vec::new(),
                max_message,
            },
        ))
    }
}

fn nonce(seq: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::from(bytes)
}

/// Seals the messages one side sends into numbered records.
pub struct RecordSealer {
    cipher: ChaCha20Poly1305,
    aad: String,
    next: u64,
}

impl std::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSealer")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// The records carrying `message`, in order: one per [`MAX_RELAY_CHUNK`] bytes, the last
    /// one flagged final.
    pub fn seal(&mut self, message: &[u8]) -> Result<Vec<RelayData>, RelayError> {
        let chunks: Vec<&[u8]> = if message.is_empty() {
            vec![&[]]
        } else {
            message.chunks(MAX_RELAY_CHUNK).collect()
        };
        let last = chunks.len() - 1;
        let mut records = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.into_iter().enumerate() {
            if self.next > MAX_RECORDS {
                return Err(RelayError::Exhausted);
            }
            let mut plain = Zeroizing::new(Vec::with_capacity(chunk.len() + 1));
            plain.push(if i == last { FINAL } else { MORE });
            plain.extend_from_slice(chunk);
            let sealed = self
                .cipher
                .encrypt(
                    &nonce(self.next),
                    Payload {
                        msg: &plain,
                        aad: self.aad.as_bytes(),
                    },
                )
                .map_err(|_| RelayError::Exhausted)?;
            records.push(RelayData {
                seq: self.next,
                data: URL_SAFE_NO_PAD.encode(sealed),
            });
            self.next += 1;
        }
        Ok(records)
    }
}

/// Opens the records one side receives, in order, and reassembles messages.
pub struct RecordOpener {
    cipher: ChaCha20Poly1305,
    aad: String,
    next: u64,
    partial: Vec<u8>,
    max_message: usize,
}

impl std::fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordOpener")
            .field("next", &self.next)
            .field("partial", &self.partial.len())
            .finish_non_exhaustive()
    }
}

impl RecordOpener {
    /// Opens the next record: `Some(message)` when it completes one. Any error breaks the
    /// link (the byte stream can no longer be trusted to be whole).
    pub fn open(&mut self, record: &RelayData) -> Result<Option<Vec<u8>>, RelayError> {
        let seq = record.seq;
        if seq != self.next {
            return Err(RelayError::Gap {
                expected: self.next,
                got: seq,
            });
        }
        let sealed = URL_SAFE_NO_PAD
            .decode(&record.data)
            .map_err(|_| RelayError::Malformed(seq))?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &nonce(seq),
                    Payload {
                        msg: &sealed,
                        aad: self.aad.as_bytes(),
                    },
                )
                .map_err(|_| RelayError::Forged(seq))?,
        );
        self.next += 1;
        let (&flag, chunk) = plain.split_first().ok_or(RelayError::Malformed(seq))?;
        if self.partial.len() + chunk.len() > self.max_message {
            return Err(RelayError::TooLarge(self.max_message));
        }
        self.partial.extend_from_slice(chunk);
        match flag {
            FINAL => Ok(Some(std::mem::take(&mut self.partial))),
            MORE => Ok(None),
            _ => Err(RelayError::Malformed(seq)),
        }
    }
}

#[cfg(test)]
mod tests;
