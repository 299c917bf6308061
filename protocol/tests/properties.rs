//! Property tests: encode/decode/sign/verify round-trip, and no change survives verification.

use ioap_protocol::payload::{ErrorPayload, ExecRequest, Intent, Ping, SessionDescription};
use ioap_protocol::samples::{alice, bob, example_time};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, Identity, ReceivedEnvelope, Timestamp};
use proptest::prelude::*;
use serde_json::{Map, Value};

const SAFE: i64 = (1 << 53) - 1;

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-SAFE..=SAFE).prop_map(Value::from),
        (-1e15f64..1e15f64).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn body() -> impl Strategy<Value = Body> {
    let codes = ErrorCode::ALL.to_vec();
    prop_oneof![
        (
            "[a-z][a-z0-9_.-]{0,20}",
            json_value(),
            1u64..=3_600_000,
            any::<bool>()
        )
            .prop_map(|(capability, args, timeout_ms, stream)| Body::ExecRequest(
                ExecRequest {
                    timeout_ms,
                    stream,
                    window: stream.then_some(32),
                    ..ExecRequest::new(capability, args)
                }
            )),
        ("\\PC{1,64}", json_value()).prop_map(|(q, c)| Body::Intent(Intent::query(q, c))),
        ("\\PC{1,32}", json_value()).prop_map(|(t, p)| Body::Intent(Intent::task(t, p))),
        (0u64..=SAFE as u64).prop_map(|sequence| Body::Ping(Ping { sequence })),
        "\\PC{0,400}".prop_map(|sdp| Body::Offer(SessionDescription { sdp })),
        (
            prop::sample::select(codes),
            "\\PC{0,64}",
            proptest::option::of(json_value())
        )
            .prop_map(|(code, message, details)| Body::Error(ErrorPayload {
                code,
                message,
                details,
            })),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (body(), 0i64..253_402_300_799_999, any::<bool>()).prop_map(|(body, millis, correlate)| {
        let mut envelope = Envelope::new(
            alice().did(),
            Some(bob().did()),
            body,
            Timestamp::from_unix_millis(millis).expect("in range"),
        );
        if correlate {
            envelope.correlation_id = Some(ioap_protocol::MessageId::random());
        }
        envelope
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_encode_decode_verify_round_trips(envelope in envelope()) {
        let signer = alice();
        let wire = envelope.clone().sign(&signer).expect("sign");
        let received = ReceivedEnvelope::decode(wire.as_str().as_bytes()).expect("decode");
        prop_assert_eq!(received.envelope(), &envelope);
        prop_assert!(received.verify().is_ok());
    }

    #[test]
    fn any_byte_change_is_refused_or_means_the_same(
        envelope in envelope(),
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let wire = envelope.sign(&alice()).expect("sign").into_string();
        let original = ReceivedEnvelope::decode(wire.as_bytes()).expect("decode");
        let mut bytes = wire.into_bytes();
        let i = position.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        if let Ok(received) = ReceivedEnvelope::decode(&bytes)
            && received.verify().is_ok()
        {
            // Only a change that leaves the signed content identical may verify, e.g. a
            // different spelling of the same number.
            prop_assert_eq!(received.canonical_bytes(), original.canonical_bytes());
        }
    }

    #[test]
    fn did_text_round_trips(seed in any::<[u8; 32]>()) {
        let did = Identity::from_seed(&seed).did();
        let text = did.to_string();
        prop_assert!(text.starts_with("did:key:z6Mk"));
        prop_assert_eq!(Did::parse(&text), Ok(did));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ReceivedEnvelope::decode(&bytes);
    }

    #[test]
    fn decoding_arbitrary_json_never_panics(value in json_value()) {
        let _ = ReceivedEnvelope::decode(value.to_string().as_bytes());
    }
}

#[test]
fn example_time_is_stable() {
    // Guards the fixed clock the worked example and the samples rely on.
    assert_eq!(example_time().to_string(), "2026-01-01T00:00:00.000Z");
}
