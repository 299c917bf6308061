use serde_json::json;

use super::*;
use crate::ReceivedEnvelope;
use crate::body::{Body, MessageType};
use crate::samples::{alice, bob, example_body, example_time};

const LIMIT: usize = 1 << 20;

/// An EXEC_REQUEST of about `bytes` bytes from alice to bob.
fn large_request(bytes: usize) -> Envelope {
    let Body::ExecRequest(mut request) = example_body(MessageType::ExecRequest) else {
        unreachable!("an EXEC_REQUEST sample")
    };
    request.args = json!({ "text": "x".repeat(bytes) });
    Envelope::new(
        alice().did(),
        Some(bob().did()),
        Body::ExecRequest(request),
        example_time(),
    )
}

fn received(text: &[u8]) -> ReceivedEnvelope {
    ReceivedEnvelope::decode_up_to(text, LIMIT, |_| None).expect("decodes")
}

#[test]
fn a_carried_text_ends_with_its_signature_and_verifies_only_as_carried() {
    let envelope = large_request(100_000);
    let signed = envelope
        .clone()
        .sign_carried_up_to(&alice(), LIMIT)
        .expect("signs");
    let text = signed.into_string();
    assert!(text.ends_with(r#""}"#));
    assert!(signed_prefix(text.as_bytes()).is_some());
    let received = received(text.as_bytes());
    assert_eq!(received.envelope(), &envelope);
    assert_eq!(received.verify_carried(), Ok(()));
    assert!(received.verify().is_err(), "not a §5 signature");
}

#[test]
fn one_byte_changed_or_another_signer_fails() {
    let text = large_request(70_000)
        .sign_carried_up_to(&alice(), LIMIT)
        .expect("signs")
        .into_string();
    let tampered = text.replacen("xxxx", "xxxy", 1);
    assert!(received(tampered.as_bytes()).verify_carried().is_err());
    // bob's signature over alice's envelope: `from` names alice, so it fails.
    let mut forged = large_request(70_000);
    forged.from = bob().did();
    let forged = forged
        .sign_carried_up_to(&bob(), LIMIT)
        .expect("signs")
        .into_string();
    let claimed = forged.replace(&bob().did().to_string(), &alice().did().to_string());
    assert!(received(claimed.as_bytes()).verify_carried().is_err());
}

#[test]
fn a_section_5_text_is_not_taken_as_carried() {
    // §5 texts put `signature` in key order, before `timestamp`: not last.
    let text = large_request(70_000)
        .sign_up_to(&alice(), LIMIT)
        .expect("signs")
        .into_string();
    assert_eq!(signed_prefix(text.as_bytes()), None);
    let received = received(text.as_bytes());
    assert_eq!(received.verify(), Ok(()));
    assert!(received.verify_carried().is_err());
}

#[test]
fn the_suffix_is_matched_exactly() {
    let text = large_request(70_000)
        .sign_carried_up_to(&alice(), LIMIT)
        .expect("signs")
        .into_string();
    let spaced = text.replacen(r#","signature":""#, r#", "signature":""#, 1);
    assert_eq!(signed_prefix(spaced.as_bytes()), None);
    assert_eq!(signed_prefix(b"{}"), None);
    assert_eq!(signed_prefix(&text.as_bytes()[..text.len() - 1]), None);
}

#[test]
fn the_limit_counts_the_signature() {
    let envelope = large_request(70_000);
    let size = envelope
        .clone()
        .sign_carried_up_to(&alice(), LIMIT)
        .expect("signs")
        .into_string()
        .len();
    assert!(envelope.clone().sign_carried_up_to(&alice(), size).is_ok());
    assert_eq!(
        envelope
            .sign_carried_up_to(&alice(), size - 1)
            .map(|_| ())
            .expect_err("over the limit"),
        EncodeError::TooLarge {
            size,
            limit: size - 1
        }
    );
}

#[test]
fn a_text_that_fits_one_envelope_is_signed_as_section_5_with_its_signature_last() {
    let text = large_request(1_000)
        .sign_carried_up_to(&alice(), LIMIT)
        .expect("signs")
        .into_string();
    assert!(signed_prefix(text.as_bytes()).is_some());
    let received = received(text.as_bytes());
    assert_eq!(received.verify(), Ok(()));
    assert!(received.verify_carried().is_err());
}

#[test]
fn a_chunk_is_signed_by_digest_whatever_its_size() {
    let piece = crate::payload::Chunk {
        message: crate::MessageId::random(),
        index: 0,
        count: 2,
        total_bytes: 10,
        data: "AAAA".into(),
    };
    let text = Envelope::new(
        alice().did(),
        Some(bob().did()),
        Body::Chunk(piece),
        example_time(),
    )
    .sign_carried_up_to(&alice(), LIMIT)
    .expect("signs")
    .into_string();
    let received = received(text.as_bytes());
    assert_eq!(received.verify_carried(), Ok(()));
    assert!(received.verify().is_err());
}
