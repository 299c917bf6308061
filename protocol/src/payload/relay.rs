//! Gateway-relay payloads (1.2, PROTOCOL_DESIGN.md §11.5): a link carried over both agents'
//! gateway WebSockets, end-to-end encrypted, for networks where no UDP path exists.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{InvalidPayload, Validate, invalid};

/// Length of an X25519 public key in base64url without padding.
pub const RELAY_KEY_CHARS: usize = 43;
/// Most plaintext bytes one RELAY_DATA record carries (before the flag byte and the tag), so
/// a record with its envelope stays well under the 64 KiB frame limit.
pub const MAX_RELAY_CHUNK: usize = 32 * 1024;
/// Longest `data` of a RELAY_DATA: one record (flag byte + chunk + 16-byte tag) in base64url.
pub const MAX_RELAY_DATA_CHARS: usize = (MAX_RELAY_CHUNK + 1 + 16).div_ceil(3) * 4;

/// RELAY_OPEN (agent → agent, via gateway): opens a gateway-relayed link; its `id` names the
/// relayed link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayOpen {
    /// The opener's ephemeral X25519 public key, base64url without padding (43 characters).
    pub key: String,
}

/// RELAY_ACCEPT (agent → agent, via gateway, `correlation_id` = the RELAY_OPEN's `id`): the
/// accepter's ephemeral key; both sides now hold the link's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAccept {
    /// The accepter's ephemeral X25519 public key, base64url without padding.
    pub key: String,
}

/// RELAY_DATA (agent → agent, via gateway, `correlation_id` = the RELAY_OPEN's `id`): one
/// encrypted record of the link's byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayData {
    /// The record's number in its direction: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// The sealed record (ChaCha20-Poly1305), base64url without padding.
    pub data: String,
}

/// RELAY_CLOSE (agent → agent, via gateway, `correlation_id` = the RELAY_OPEN's `id`): the
/// sender ended the relayed link.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayClose {
    /// Why, free text for logs (at most 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Decodes a relay key: 32 bytes in base64url without padding.
pub fn decode_relay_key(key: &str) -> Result<[u8; 32], InvalidPayload> {
    if key.len() != RELAY_KEY_CHARS {
        return Err(InvalidPayload(format!(
            "key must be {RELAY_KEY_CHARS} base64url characters"
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(key)
        .map_err(|_| InvalidPayload("key is not base64url without padding".into()))?;
    bytes
        .try_into()
        .map_err(|_| InvalidPayload("key is not 32 bytes".into()))
}

impl Validate for RelayOpen {
    fn validate(&self) -> Result<(), InvalidPayload> {
        decode_relay_key(&self.key).map(drop)
    }
}

impl Validate for RelayAccept {
    fn validate(&self) -> Result<(), InvalidPayload> {
        decode_relay_key(&self.key).map(drop)
    }
}

impl Validate for RelayData {
    fn validate(&self) -> Result<(), InvalidPayload> {
        if self.data.len() > MAX_RELAY_DATA_CHARS {
            return invalid(format!(
                "data longer than {MAX_RELAY_DATA_CHARS} characters"
            ));
        }
        if self.data.len() < 24 {
            return invalid("data shorter than a sealed record");
        }
        Ok(())
    }
}

impl Validate for RelayClose {
    fn validate(&self) -> Result<(), InvalidPayload> {
        match &self.reason {
            Some(reason) if reason.len() > 256 => invalid("reason longer than 256 bytes"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_43_base64url_characters_of_32_bytes() {
        let good = URL_SAFE_NO_PAD.encode([9u8; 32]);
        assert_eq!(decode_relay_key(&good), Ok([9u8; 32]));
        assert!(decode_relay_key(&good[..42]).is_err());
        assert!(decode_relay_key(&format!("{}=", &good[..42])).is_err());
        assert!(decode_relay_key(&"+".repeat(43)).is_err());
    }

    #[test]
    fn data_is_bounded() {
        let record = |len| RelayData {
            seq: 0,
            data: "A".repeat(len),
        };
        assert!(record(MAX_RELAY_DATA_CHARS).validate().is_ok());
        assert!(record(MAX_RELAY_DATA_CHARS + 1).validate().is_err());
        assert!(record(10).validate().is_err());
        let long = RelayClose {
            reason: Some("x".repeat(257)),
        };
        assert!(long.validate().is_err());
    }
}
