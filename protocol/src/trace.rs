//! W3C Trace Context (PROTOCOL_DESIGN.md §11.8): the `traceparent` and `tracestate` an
//! EXEC_REQUEST or INTENT may carry so that a chain of calls across agents shares one trace.
//!
//! `traceparent` is `00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>`, lower case,
//! neither id all zeros (W3C Trace Context, level 1, version 00).

use std::fmt;
use std::str::FromStr;

/// Longest `tracestate` accepted, in bytes (W3C: 32 members of at most 256 bytes; we keep
/// messages small).
pub const MAX_TRACESTATE: usize = 512;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace all calls of a chain share.
    pub trace_id: [u8; 16],
    /// The span of the caller that made this call.
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// A `traceparent` or `tracestate` that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad trace context: {0}")]
pub struct BadTraceContext(&'static str);

impl TraceParent {
    /// A new trace, with random ids, sampled.
    pub fn random() -> Self {
        let mut bytes = [0u8; 24];
        loop {
            getrandom::fill(&mut bytes).expect("the system's random source works");
            let parent = TraceParent {
                trace_id: bytes[..16].try_into().expect("16 bytes"),
                parent_id: bytes[16..].try_into().expect("8 bytes"),
                flags: 1,
            };
            if parent.ids_valid() {
                return parent;
            }
        }
    }

    /// The same trace, with `span_id` as the parent of what follows (a call made inside the
    /// span `span_id`).
    pub fn with_parent(self, span_id: [u8; 8]) -> Self {
        TraceParent {
            parent_id: span_id,
            ..self
        }
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    fn ids_valid(&self) -> bool {
        self.trace_id != [0; 16] && self.parent_id != [0; 8]
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = BadTraceContext;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, parent, flags] = parts[..] else {
            return Err(BadTraceContext("traceparent has four fields"));
        };
        if version != "00" {
            return Err(BadTraceContext("traceparent version must be 00"));
        }
        let parsed = TraceParent {
            trace_id: unhex(trace).ok_or(BadTraceContext("trace-id is 32 lower-case hex"))?,
            parent_id: unhex(parent).ok_or(BadTraceContext("parent-id is 16 lower-case hex"))?,
            flags: unhex::<1>(flags).ok_or(BadTraceContext("flags are 2 lower-case hex"))?[0],
        };
        if !parsed.ids_valid() {
            return Err(BadTraceContext(
                "trace-id and parent-id must not be all zeros",
            ));
        }
        Ok(parsed)
    }
}

/// Checks a `traceparent` field's text.
pub fn validate_traceparent(text: &str) -> Result<(), BadTraceContext> {
    text.parse::<TraceParent>().map(|_| ())
}

/// Checks a `tracestate` field's text: 1–512 bytes of printable ASCII (its members are the
/// vendors' business and are passed on as they are).
pub fn validate_tracestate(text: &str) -> Result<(), BadTraceContext> {
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if text.is_empty() || text.len() > MAX_TRACESTATE || !printable {
        return Err(BadTraceContext(
            "tracestate is 1-512 bytes of printable ASCII",
        ));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != 2 * N || !text.bytes().all(lower_hex) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_example_round_trips() {
        let parsed: TraceParent = SAMPLE.parse().expect("valid");
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_string(), SAMPLE);
        let child = parsed.with_parent([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(child.trace_id, parsed.trace_id);
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(validate_traceparent(bad).is_err(), "{bad:?}");
        }
        assert!(validate_traceparent(&TraceParent::random().to_string()).is_ok());
    }

    #[test]
    fn tracestate_is_bounded_printable_text() {
        assert!(validate_tracestate("vendor=abc,other=1").is_ok());
        assert!(validate_tracestate("").is_err());
        assert!(validate_tracestate("a\u{7}").is_err());
        assert!(validate_tracestate(&"a".repeat(MAX_TRACESTATE + 1)).is_err());
    }
}
