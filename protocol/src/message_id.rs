//! Message ids: UUID v4 in lower-case hyphenated form, nothing else.

use std::fmt;

use uuid::Uuid;

/// The `id` (and `correlation_id`) of an envelope.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Uuid);

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message id must be a lower-case hyphenated UUID v4")]
pub struct BadMessageId;

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Self {
        MessageId(Uuid::new_v4())
    }

    /// A fixed id (for tests and worked examples); must be a v4 UUID.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, BadMessageId> {
        if uuid.get_version_num() == 4 && uuid.get_variant() == uuid::Variant::RFC4122 {
            Ok(MessageId(uuid))
        } else {
            Err(BadMessageId)
        }
    }

    /// Parses the canonical text form only (`xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`,
    /// lower case): `uuid` alone also accepts braces, `urn:uuid:` and upper case.
    pub fn parse(text: &str) -> Result<Self, BadMessageId> {
        if text.len() != 36 {
            return Err(BadMessageId);
        }
        let uuid = Uuid::try_parse(text).map_err(|_| BadMessageId)?;
        let id = Self::from_uuid(uuid)?;
        let mut buf = Uuid::encode_buffer();
        if uuid.hyphenated().encode_lower(&mut buf) != text {
            return Err(BadMessageId);
        }
        Ok(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        MessageId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_v4_text() {
        let id = MessageId::random();
        assert_eq!(MessageId::parse(&id.to_string()), Ok(id));
        let text = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(MessageId::parse(text).is_ok());
        for bad in [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            "0f8fad5bd9cb469fa16570867728950e",
            "0f8fad5b-d9cb-169f-a165-70867728950e",
            "0f8fad5b-d9cb-469f-c165-70867728950e",
            "",
        ] {
            assert_eq!(MessageId::parse(bad), Err(BadMessageId), "{bad}");
        }
    }
}
