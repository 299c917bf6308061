//! Messages larger than one envelope, carried in CHUNKs (PROTOCOL_DESIGN.md §11.6): cutting a
//! signed envelope's text into CHUNK payloads, and putting it back together under a limit.
//! A plain data structure, like the rest of the crate: the caller verifies each CHUNK before it
//! comes here and verifies the reassembled envelope after.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::codes::ErrorCode;
use crate::message_id::MessageId;
use crate::payload::{Chunk, MAX_CHUNK_BYTES};

/// Most messages a receiver reassembles at once on one link.
pub const MAX_IN_PROGRESS: usize = 4;

/// The CHUNK payloads that carry `text`, the signed envelope whose `id` is `message`: at least
/// two pieces of at most [`MAX_CHUNK_BYTES`], of equal size but for the last. `text` has at
/// least 2 bytes (links cut only envelopes over 64 KiB). Each piece is encoded only when it is
/// asked for, so cutting holds the text and one piece.
#[derive(Debug)]
pub struct Cutter {
    message: MessageId,
    text: String,
    size: usize,
    count: u32,
    next: u32,
}

impl Cutter {
    /// Cuts `text`, the envelope whose `id` is `message`.
    pub fn new(message: MessageId, text: String) -> Self {
        let len = text.len();
        let pieces = len.div_ceil(MAX_CHUNK_BYTES).max(2);
        let size = len.div_ceil(pieces).max(1);
        let count = u32::try_from(len.div_ceil(size)).unwrap_or(u32::MAX);
        Cutter {
            message,
            text,
            size,
            count,
            next: 0,
        }
    }

    /// The carried envelope's id.
    pub fn message(&self) -> MessageId {
        self.message
    }

    /// Pieces not yet taken.
    pub fn remaining(&self) -> u32 {
        self.count - self.next
    }
}

impl Iterator for Cutter {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next >= self.count {
            return None;
        }
        let bytes = self.text.as_bytes();
        let start = self.next as usize * self.size;
        let piece = &bytes[start..(start + self.size).min(bytes.len())];
        let chunk = Chunk {
            message: self.message,
            index: self.next,
            count: self.count,
            total_bytes: bytes.len() as u64,
            data: URL_SAFE_NO_PAD.encode(piece),
        };
        self.next += 1;
        Some(chunk)
    }
}

/// What became of one CHUNK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembled {
    /// Taken; the message is not complete yet.
    Pending,
    /// The last piece: the whole envelope's text, to decode and verify.
    Complete(Vec<u8>),
    /// The message is refused with this code (TOO_LARGE or TOO_MANY_REQUESTS), nothing of it
    /// is held, and its later pieces will be dropped quietly.
    Refused(ErrorCode),
    /// A piece of a refused message, dropped as promised.
    Skipped,
    /// The piece breaks §11.6; whatever was held of its message is dropped.
    Malformed(&'static str),
}

/// Reassembles the CHUNKed messages of one link, holding at most `limit` bytes of them (the
/// sum of the `total_bytes` of the messages under way) and at most [`MAX_IN_PROGRESS`].
#[derive(Debug)]
pub struct Reassembly {
    limit: u64,
    held: u64,
    messages: HashMap<MessageId, Partial>,
}

#[derive(Debug)]
enum Partial {
    Filling {
        count: u32,
        total: u64,
        next: u32,
        bytes: Vec<u8>,
    },
    Refused {
        count: u32,
        next: u32,
    },
}

impl Reassembly {
    /// Reassembly of messages up to `limit` bytes each, and in total.
    pub fn new(limit: usize) -> Self {
        Reassembly {
            limit: limit as u64,
            held: 0,
            messages: HashMap::new(),
        }
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.messages
            .values()
            .map(|partial| match partial {
                Partial::Filling { bytes, .. } => bytes.len(),
                Partial::Refused { .. } => 0,
            })
            .sum()
    }

    /// Takes one verified CHUNK.
    pub fn accept(&mut self, chunk: &Chunk) -> Reassembled {
        if chunk.index == 0 {
            return self.start(chunk);
        }
        let Some(partial) = self.messages.get_mut(&chunk.message) else {
            return Reassembled::Malformed("a piece of no message under way");
        };
        match partial {
            Partial::Refused { count, next } => {
                if chunk.count != *count || chunk.index != *next {
                    self.messages.remove(&chunk.message);
                    return Reassembled::Malformed("a piece out of order");
                }
                *next += 1;
                if *next == *count {
                    self.messages.remove(&chunk.message);
                }
                Reassembled::Skipped
            }
            Partial::Filling {
                count,
                total,
                next,
                bytes,
            } => {
                if chunk.count != *count || chunk.total_bytes != *total || chunk.index != *next {
                    return self.drop_message(chunk.message, "a piece out of order");
                }
                if let Err(why) = append(bytes, *total, &chunk.data) {
                    return self.drop_message(chunk.message, why);
                }
                *next += 1;
                if *next < *count {
                    return Reassembled::Pending;
                }
                let complete = bytes.len() as u64 == *total;
                let total = *total;
                let whole = std::mem::take(bytes);
                self.messages.remove(&chunk.message);
                self.held -= total;
                if complete {
                    Reassembled::Complete(whole)
                } else {
                    Reassembled::Malformed("the pieces fall short of total_bytes")
                }
            }
        }
    }

    fn start(&mut self, chunk: &Chunk) -> Reassembled {
        if self.messages.contains_key(&chunk.message) {
            return self.drop_message(chunk.message, "a message started twice");
        }
        let refusal = if chunk.total_bytes > self.limit {
            Some(ErrorCode::TooLarge)
        } else if self.messages.len() >= MAX_IN_PROGRESS
            || self.held + chunk.total_bytes > self.limit
        {
            Some(ErrorCode::TooManyRequests)
        } else {
            None
        };
        if let Some(code) = refusal {
            if self.messages.len() < MAX_IN_PROGRESS {
                let skip = Partial::Refused {
                    count: chunk.count,
                    next: 1,
                };
                self.messages.insert(chunk.message, skip);
            }
            return Reassembled::Refused(code);
        }
        // The whole message fits the limit: room for it at once, rather than doubling to it.
        let mut bytes = Vec::with_capacity(usize::try_from(chunk.total_bytes).unwrap_or(0));
        if let Err(why) = append(&mut bytes, chunk.total_bytes, &chunk.data) {
            return Reassembled::Malformed(why);
        }
        self.held += chunk.total_bytes;
        let filling = Partial::Filling {
            count: chunk.count,
            total: chunk.total_bytes,
            next: 1,
            bytes,
        };
        self.messages.insert(chunk.message, filling);
        Reassembled::Pending
    }

    fn drop_message(&mut self, message: MessageId, why: &'static str) -> Reassembled {
        if let Some(Partial::Filling { total, .. }) = self.messages.remove(&message) {
            self.held -= total;
        }
        Reassembled::Malformed(why)
    }
}

/// Decodes `data` onto `bytes`, refusing to pass `total`.
fn append(bytes: &mut Vec<u8>, total: u64, data: &str) -> Result<(), &'static str> {
    // base64url without padding: every 4 characters are 3 bytes, a tail of n is n - 1.
    let decoded = data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1);
    if (bytes.len() + decoded) as u64 > total {
        return Err("the pieces overrun total_bytes");
    }
    URL_SAFE_NO_PAD
        .decode_vec(data, bytes)
        .map_err(|_| "a piece is not base64url")
}

#[cfg(test)]
mod tests;
