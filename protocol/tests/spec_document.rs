//! PROTOCOL_DESIGN.md against the code: the worked example byte for byte, every payload
//! example, and the error/close code tables.

use std::collections::BTreeSet;

use ioap_protocol::payload::ExecRequest;
use ioap_protocol::signing::{self, CARRIED_TAG, MESSAGE_TAG, REGISTRATION_TAG};
use ioap_protocol::{
    Body, CloseCode, Envelope, ErrorCode, Identity, MessageId, MessageType, ReceivedEnvelope,
    Timestamp,
};
use serde_json::{Value, json};

fn spec() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL_DESIGN.md");
    std::fs::read_to_string(path).expect("PROTOCOL_DESIGN.md")
}

/// The contents of every fenced block that directly follows `<!-- marker -->`.
fn blocks_after(spec: &str, marker: &str) -> Vec<String> {
    let tag = format!("<!-- {marker} -->");
    let mut found = Vec::new();
    let mut rest = spec;
    while let Some(at) = rest.find(&tag) {
        let after = &rest[at + tag.len()..];
        let fence = after.find("```").expect("a fenced block after the marker");
        assert!(
            after[..fence].trim().is_empty(),
            "text between {tag} and its block"
        );
        let body_start = fence + after[fence..].find('\n').expect("fence line") + 1;
        let body_len = after[body_start..].find("\n```").expect("closing fence");
        found.push(after[body_start..body_start + body_len].to_owned());
        rest = &after[body_start + body_len..];
    }
    found
}

fn single_block(spec: &str, marker: &str) -> String {
    let mut blocks = blocks_after(spec, marker);
    assert_eq!(blocks.len(), 1, "expected one block for {marker}");
    blocks.remove(0)
}

fn hex(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("32 bytes")
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn worked_example_matches_byte_for_byte() {
    let spec = spec();
    let seed = hex(single_block(&spec, "worked-example:seed").trim());
    let alice = Identity::from_seed(&seed);
    assert_eq!(
        alice.did().to_string(),
        single_block(&spec, "worked-example:did").trim()
    );

    let bob = Identity::from_seed(&[2; 32]);
    let mut envelope = Envelope::new(
        alice.did(),
        Some(bob.did()),
        Body::ExecRequest(ExecRequest {
            timeout_ms: 5000,
            ..ExecRequest::new("sum", json!({"values": [1, 2, 3.5]}))
        }),
        Timestamp::parse("2026-01-01T00:00:00.000Z").expect("time"),
    );
    envelope.id = MessageId::parse("00000000-0000-4000-8000-000000000001").expect("id");

    let canonical = signing::canonicalize_object(&envelope.unsigned_object());
    assert_eq!(
        String::from_utf8(canonical).expect("utf8"),
        single_block(&spec, "worked-example:canonical")
    );
    let wire = envelope.sign(&alice).expect("sign");
    assert_eq!(
        signing::encode_signature(wire.signature()),
        single_block(&spec, "worked-example:signature").trim()
    );
    let documented_wire = single_block(&spec, "worked-example:wire");
    assert_eq!(wire.as_str(), documented_wire);
    let received = ReceivedEnvelope::decode(documented_wire.as_bytes()).expect("decode");
    assert_eq!(received.verify(), Ok(()));

    assert!(spec.contains(&hex_string(MESSAGE_TAG)));
    assert!(spec.contains(&hex_string(REGISTRATION_TAG)));
    assert!(spec.contains(&hex_string(CARRIED_TAG)));
}

#[test]
fn every_payload_example_is_a_payload_of_its_type() {
    let spec = spec();
    let mut covered = BTreeSet::new();
    for ty in MessageType::ALL {
        for block in blocks_after(&spec, &format!("example:{ty}")) {
            let payload: Value = serde_json::from_str(&block)
                .unwrap_or_else(|e| panic!("{ty} example is not JSON: {e}"));
            Body::from_payload(*ty, &payload)
                .unwrap_or_else(|e| panic!("{ty} example does not parse: {e}"));
            covered.insert(ty.as_str());
        }
    }
    let all: BTreeSet<_> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(covered, all, "every message type has an example");
}

fn table_rows(spec: &str, marker: &str) -> Vec<String> {
    let tag = format!("<!-- {marker} -->");
    let start = spec.find(&tag).expect("table marker") + tag.len();
    spec[start..]
        .trim_start()
        .lines()
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('`')
                .to_owned()
        })
        .collect()
}

#[test]
fn error_code_table_lists_exactly_the_codes() {
    let documented: BTreeSet<String> = table_rows(&spec(), "table:error-codes")
        .into_iter()
        .collect();
    let implemented: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(documented, implemented);
}

#[test]
fn close_code_table_lists_exactly_the_codes() {
    let documented: BTreeSet<u16> = table_rows(&spec(), "table:close-codes")
        .iter()
        .map(|c| c.parse().expect("number"))
        .collect();
    let implemented: BTreeSet<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(documented, implemented);
}
