//! Strict JSON parsing with the protocol's limits (PROTOCOL_DESIGN.md §8).
//!
//! `serde_json` on its own keeps the last of duplicate keys and turns huge integers into floats
//! silently; both would let two parties read one signed message differently. This parser
//! refuses them, and bounds size and nesting before any allocation can grow with them.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Maximum encoded size of one envelope, in bytes (64 KiB).
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Maximum nesting depth of arrays and objects, counting the envelope object as 1.
pub const MAX_DEPTH: usize = 32;
/// Largest integer magnitude accepted: 2^53 − 1, the largest every JSON implementation holds
/// exactly (RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a byte string is not acceptable JSON for ioap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// More than [`MAX_ENVELOPE_BYTES`].
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// The message's size.
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// Not UTF-8 JSON, or trailing characters after the value.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// An object has the same key twice.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// Arrays/objects nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// An integer-valued number of magnitude above 2^53 − 1.
    #[error("number {0} is an integer beyond ±(2^53 − 1)")]
    UnsafeInteger(String),
}

/// Parses `bytes` as one JSON value under the ioap limits.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    parse_strict_up_to(bytes, MAX_ENVELOPE_BYTES)
}

/// [`parse_strict`] with another size limit (a message carried in CHUNKs, §11.6).
pub fn parse_strict_up_to(bytes: &[u8], limit: usize) -> Result<Value, JsonError> {
    if bytes.len() > limit {
        return Err(JsonError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let violation = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = StrictValue {
        depth: 0,
        violation: &violation,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (result, violation.take()) {
        (_, Some(v)) => Err(v),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(JsonError::Syntax(e.to_string())),
    }
}

/// Checks a value built in memory against the same rules [`parse_strict`] applies (depth and
/// integer range; duplicate keys cannot exist in a `Value`).
pub fn check_value(value: &Value) -> Result<(), JsonError> {
    check_value_at(value, 0)
}

/// [`check_value`] for a value nested `depth` levels deep in its document.
pub fn check_value_at(value: &Value, depth: usize) -> Result<(), JsonError> {
    fn walk(value: &Value, depth: usize) -> Result<(), JsonError> {
        match value {
            Value::Array(items) => {
                enter(depth)?;
                items.iter().try_for_each(|v| walk(v, depth + 1))
            }
            Value::Object(map) => {
                enter(depth)?;
                map.values().try_for_each(|v| walk(v, depth + 1))
            }
            Value::Number(n) => check_number(n),
            _ => Ok(()),
        }
    }
    walk(value, depth)
}

/// `deserialize_with` for free-form JSON members of payloads: the strict rules (duplicate keys,
/// integer range, a nesting bound) while the typed payload is read. The exact depth within the
/// envelope is checked afterwards by the payload's validation (see [`check_value_at`]).
pub fn strict_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let violation = Cell::new(None);
    let seed = StrictValue {
        depth: 0,
        violation: &violation,
    };
    seed.deserialize(deserializer)
        .map_err(|e| match violation.take() {
            Some(v) => serde::de::Error::custom(v),
            None => e,
        })
}

/// [`strict_value`] for an optional member: present (even as `null`) is `Some`, so that
/// `Some(Value::Null)` and an absent member stay distinct through a round trip.
pub fn strict_present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    strict_value(deserializer).map(Some)
}

/// Checks that an integer-valued number is within ±(2^53 − 1) (for typed numeric members).
pub fn check_safe_u64(value: u64) -> Result<(), JsonError> {
    check_number(&Number::from(value))
}

/// Checks a typed float member under the same rule as parsed numbers.
pub fn check_safe_f64(value: f64) -> Result<(), JsonError> {
    match Number::from_f64(value) {
        Some(n) => check_number(&n),
        None => Err(JsonError::UnsafeInteger(value.to_string())),
    }
}

fn enter(depth: usize) -> Result<(), JsonError> {
    if depth >= MAX_DEPTH {
        Err(JsonError::TooDeep)
    } else {
        Ok(())
    }
}

fn check_number(n: &Number) -> Result<(), JsonError> {
    let safe = if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        let f = n.as_f64().unwrap_or(f64::INFINITY);
        f.is_finite() && (f.fract() != 0.0 || f.abs() <= MAX_SAFE_INTEGER as f64)
    };
    if safe {
        Ok(())
    } else {
        Err(JsonError::UnsafeInteger(n.to_string()))
    }
}

struct StrictValue<'a> {
    depth: usize,
    violation: &'a Cell<Option<JsonError>>,
}

impl StrictValue<'_> {
    fn fail<E: serde::de::Error>(&self, violation: JsonError) -> E {
        let message = violation.to_string();
        self.violation.set(Some(violation));
        E::custom(message)
    }

    fn child(&self) -> Self {
        StrictValue {
            depth: self.depth + 1,
            violation: self.violation,
        }
    }

    fn number<E: serde::de::Error>(&self, n: Number) -> Result<Value, E> {
        check_number(&n).map_err(|v| self.fail(v))?;
        Ok(Value::Number(n))
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.number(Number::from(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.number(Number::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        match Number::from_f64(v) {
            Some(n) => self.number(n),
            None => Err(self.fail(JsonError::UnsafeInteger(v.to_string()))),
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        enter(self.depth).map_err(|v| self.fail(v))?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        enter(self.depth).map_err(|v| self.fail(v))?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(self.fail(JsonError::DuplicateKey(key)));
            }
            let value = access.next_value_seed(self.child())?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2.5,-3,"x",null,true,{"b":{}}]}"#).expect("valid");
        assert_eq!(v["a"][1], serde_json::json!(2.5));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey("a".into()))
        );
        assert_eq!(
            parse_strict(br#"{"x":[{"k":1,"k":1}]}"#),
            Err(JsonError::DuplicateKey("k".into()))
        );
        // Escapes that decode to the same key are the same key.
        assert_eq!(
            parse_strict(br#"{"a":1,"\u0061":2}"#),
            Err(JsonError::DuplicateKey("a".into()))
        );
    }

    #[test]
    fn integer_range_is_enforced_however_written() {
        assert!(parse_strict(b"9007199254740991").is_ok());
        assert!(parse_strict(b"-9007199254740991").is_ok());
        for bad in [
            &b"9007199254740992"[..],
            b"-9007199254740992",
            b"18446744073709551616",
            b"1e300",
            b"[9007199254740993.0]",
        ] {
            assert!(
                matches!(parse_strict(bad), Err(JsonError::UnsafeInteger(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_strict(b"1.5e10").is_ok());
        assert!(parse_strict(b"0.1").is_ok());
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse_strict(deep.as_bytes()), Err(JsonError::TooDeep));
        let very_deep = "[".repeat(60_000);
        assert_eq!(parse_strict(very_deep.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn size_syntax_and_utf8_errors() {
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            parse_strict(&big),
            Err(JsonError::TooLarge { size, .. }) if size == MAX_ENVELOPE_BYTES + 1
        ));
        assert!(matches!(parse_strict(b"{"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse_strict(b"{} {}"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse_strict(b"\"\xff\xfe\""),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(
            parse_strict(br#""\ud800""#),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn check_value_matches_parser_rules() {
        assert!(check_value(&serde_json::json!({"a": [1, 2.5]})).is_ok());
        assert!(matches!(
            check_value(&serde_json::json!({"a": u64::MAX})),
            Err(JsonError::UnsafeInteger(_))
        ));
        let mut deep = serde_json::json!(1);
        for _ in 0..MAX_DEPTH + 1 {
            deep = serde_json::json!([deep]);
        }
        assert_eq!(check_value(&deep), Err(JsonError::TooDeep));
    }
}
