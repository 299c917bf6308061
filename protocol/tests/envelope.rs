//! Envelopes end to end: every type round-trips, every bad input gets its error, and no change
//! to a signed message survives verification.

use ioap_protocol::envelope::DecodeErrorKind;
use ioap_protocol::payload::{Ping, SessionDescription};
use ioap_protocol::samples::{self, example_envelope, example_time};
use ioap_protocol::signing::{self, Purpose};
use ioap_protocol::{Body, ErrorCode, MessageType, ReceivedEnvelope};
use serde_json::{Map, Value, json};

fn signed_json(ty: MessageType) -> String {
    let (signer, envelope) = example_envelope(ty);
    envelope.sign(&signer).expect("sign").into_string()
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text).expect("json") {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn decode_err(text: &str) -> (ErrorCode, DecodeErrorKind) {
    let err = ReceivedEnvelope::decode(text.as_bytes()).expect_err("must be refused");
    (err.code(), err.kind)
}

#[test]
fn every_message_type_round_trips_and_verifies() {
    for ty in MessageType::ALL {
        let (signer, envelope) = example_envelope(*ty);
        let wire = envelope.clone().sign(&signer).expect("sign");
        let received = ReceivedEnvelope::decode(wire.as_str().as_bytes()).expect("decode");
        assert_eq!(received.envelope(), &envelope, "{ty}");
        assert_eq!(received.verify(), Ok(()), "{ty}");
        assert_eq!(wire.envelope(), &envelope);
        let parsed = object(wire.as_str());
        assert_eq!(parsed["type"], json!(ty.as_str()));
        assert_eq!(parsed["version"], json!("1.0"));
    }
    let reply = samples::example_intent_reply();
    let alice = samples::alice();
    let envelope = ioap_protocol::Envelope::new(
        alice.did(),
        Some(samples::bob().did()),
        reply,
        example_time(),
    )
    .in_reply_to(samples::example_id(9));
    let wire = envelope.clone().sign(&alice).expect("sign");
    let back = ReceivedEnvelope::decode(wire.as_str().as_bytes())
        .expect("decode")
        .into_verified()
        .expect("verify");
    assert_eq!(back, envelope);
}

#[test]
fn a_payload_of_another_type_is_malformed() {
    let mut map = object(&signed_json(MessageType::Intent));
    map.insert(
        "payload".into(),
        json!({"status":"ok","result":1,"execution_time_ms":3}),
    );
    let (code, kind) = decode_err(&Value::Object(map).to_string());
    assert_eq!(code, ErrorCode::MalformedMessage);
    assert!(matches!(kind, DecodeErrorKind::Payload(_)), "{kind:?}");
}

#[test]
fn each_envelope_error_has_its_code() {
    let good = object(&signed_json(MessageType::Offer));
    let with = |key: &str, value: Value| {
        let mut map = good.clone();
        map.insert(key.into(), value);
        Value::Object(map).to_string()
    };
    let without = |key: &str| {
        let mut map = good.clone();
        map.remove(key);
        Value::Object(map).to_string()
    };
    use DecodeErrorKind as K;
    use ErrorCode as C;
    type Case = (String, C, fn(&K) -> bool);
    let cases: Vec<Case> = vec![
        ("[]".into(), C::MalformedMessage, |k| {
            matches!(k, K::NotAnObject)
        }),
        ("{".into(), C::MalformedMessage, |k| matches!(k, K::Json(_))),
        (with("version", json!("2.0")), C::UnsupportedVersion, |k| {
            matches!(k, K::UnsupportedVersion(_))
        }),
        (with("type", json!("TELEPORT")), C::MalformedMessage, |k| {
            matches!(k, K::UnknownType(_))
        }),
        (with("extra", json!(1)), C::MalformedMessage, |k| {
            matches!(k, K::UnknownField(_))
        }),
        (without("from"), C::MalformedMessage, |k| {
            matches!(k, K::MissingField("from"))
        }),
        (without("signature"), C::MalformedMessage, |k| {
            matches!(k, K::MissingField("signature"))
        }),
        (with("signature", json!("AAAA")), C::InvalidSignature, |k| {
            matches!(k, K::SignatureEncoding)
        }),
        (
            with("from", json!("did:key:zNope")),
            C::MalformedMessage,
            |k| matches!(k, K::BadField { field: "from", .. }),
        ),
        (with("id", json!("not-a-uuid")), C::MalformedMessage, |k| {
            matches!(k, K::BadField { field: "id", .. })
        }),
        (with("timestamp", json!(12)), C::MalformedMessage, |k| {
            matches!(
                k,
                K::BadField {
                    field: "timestamp",
                    ..
                }
            )
        }),
        (without("to"), C::MalformedMessage, |k| {
            matches!(k, K::Rule(_))
        }),
        (
            with("payload", json!({"sdp": 5})),
            C::MalformedMessage,
            |k| matches!(k, K::Payload(_)),
        ),
        (
            format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000)),
            C::TooLarge,
            |k| matches!(k, K::Json(_)),
        ),
    ];
    for (text, code, kind_ok) in cases {
        let (got_code, got_kind) = decode_err(&text);
        assert_eq!(
            got_code,
            code,
            "{got_kind:?} for {}",
            &text[..text.len().min(80)]
        );
        assert!(kind_ok(&got_kind), "unexpected kind {got_kind:?}");
    }
}

#[test]
fn duplicate_keys_in_an_envelope_are_refused() {
    let text = signed_json(MessageType::Ping);
    let dup = text.replacen("{", r#"{"type":"PONG","#, 1);
    let (code, kind) = decode_err(&dup);
    assert_eq!(code, ErrorCode::MalformedMessage);
    assert!(matches!(kind, DecodeErrorKind::Json(_)), "{kind:?}");
}

#[test]
fn unsafe_integers_are_refused_on_receive_and_on_send() {
    let mut map = object(&signed_json(MessageType::Ping));
    map.insert(
        "payload".into(),
        json!({"sequence": 9_007_199_254_740_993u64}),
    );
    let (code, _) = decode_err(&Value::Object(map).to_string());
    assert_eq!(code, ErrorCode::MalformedMessage);
    let (signer, mut envelope) = example_envelope(MessageType::Ping);
    envelope.body = Body::Ping(Ping { sequence: 1 << 60 });
    assert!(envelope.sign(&signer).is_err());
}

#[test]
fn decode_errors_carry_the_message_id_when_readable() {
    let mut map = object(&signed_json(MessageType::Offer));
    map.insert("type".into(), json!("NOPE"));
    let err = ReceivedEnvelope::decode(Value::Object(map).to_string().as_bytes())
        .expect_err("unknown type");
    assert_eq!(err.id, Some(samples::example_id(1)));
}

#[test]
fn a_forged_sender_fails_verification() {
    // Signed by alice, claims to be from bob.
    let alice = samples::alice();
    let (_, mut envelope) = example_envelope(MessageType::ExecRequest);
    let wire = envelope.clone().sign(&alice).expect("sign");
    let mut map = object(wire.as_str());
    map.insert("from".into(), json!(samples::bob().did().to_string()));
    let forged = ReceivedEnvelope::decode(Value::Object(map).to_string().as_bytes()).expect("ok");
    assert!(forged.verify().is_err());
    // And an identity cannot sign for another sender.
    envelope.from = samples::bob().did();
    assert!(envelope.sign(&alice).is_err());
}

#[test]
fn every_field_change_breaks_verification() {
    let text = signed_json(MessageType::ExecRequest);
    let good = object(&text);
    let replacements = [
        ("id", json!(samples::example_id(77).to_string())),
        ("to", json!(samples::gateway().did().to_string())),
        ("timestamp", json!("2026-01-01T00:00:01.000Z")),
        ("correlation_id", json!(samples::example_id(3).to_string())),
        (
            "payload",
            json!({"capability":"sum","args":{"values":[1,2,3.25]},"timeout_ms":5000,"stream":false}),
        ),
        ("type", json!("EXEC_REQUEST")),
    ];
    for (key, value) in replacements {
        let mut map = good.clone();
        let changed = map.get(key) != Some(&value);
        map.insert(key.into(), value);
        let received = ReceivedEnvelope::decode(Value::Object(map).to_string().as_bytes())
            .expect("still well-formed");
        assert_eq!(received.verify().is_ok(), !changed, "changing {key}");
    }
}

#[test]
fn a_register_signed_with_the_message_tag_is_refused() {
    let (alice, envelope) = example_envelope(MessageType::Register);
    let mut map = envelope.unsigned_object();
    let canonical = signing::canonicalize_object(&map);
    let wrong = signing::sign(&alice, Purpose::Message, &canonical);
    map.insert("signature".into(), json!(signing::encode_signature(&wrong)));
    let received = ReceivedEnvelope::decode(Value::Object(map.clone()).to_string().as_bytes())
        .expect("well-formed");
    assert!(received.verify().is_err());
    let right = signing::sign(&alice, Purpose::Registration, &canonical);
    map.insert("signature".into(), json!(signing::encode_signature(&right)));
    let received =
        ReceivedEnvelope::decode(Value::Object(map).to_string().as_bytes()).expect("well-formed");
    assert_eq!(received.verify(), Ok(()));
}

#[test]
fn verification_covers_what_was_sent_not_what_defaults_fill_in() {
    // An EXEC_REQUEST without timeout_ms/stream (defaults apply) still verifies, because the
    // signature covers the received members, not the typed re-encoding.
    let alice = samples::alice();
    let (_, envelope) = example_envelope(MessageType::ExecRequest);
    let mut map = envelope.unsigned_object();
    map.insert("payload".into(), json!({"capability":"echo"}));
    let canonical = signing::canonicalize_object(&map);
    let sig = signing::sign(&alice, Purpose::Message, &canonical);
    map.insert("signature".into(), json!(signing::encode_signature(&sig)));
    let received = ReceivedEnvelope::decode(Value::Object(map).to_string().as_bytes())
        .expect("defaults fill in");
    assert_eq!(received.verify(), Ok(()));
    let Body::ExecRequest(request) = &received.envelope().body else {
        panic!("not an EXEC_REQUEST")
    };
    assert_eq!(request.timeout_ms, 30_000);
    assert!(!request.stream);
}

#[test]
fn oversize_envelopes_are_refused_when_signing() {
    let (alice, mut envelope) = example_envelope(MessageType::Offer);
    envelope.body = Body::Offer(SessionDescription {
        sdp: "a".repeat(70_000),
    });
    assert!(envelope.sign(&alice).is_err());
}

/// §4 ERROR: a refusal carries the frame's `id` whenever the frame is JSON whose one `id`
/// member is a valid message id, whatever else is wrong with it.
#[test]
fn a_refusal_carries_the_frames_id_when_it_has_one_valid_id() {
    let text = signed_json(MessageType::Ping);
    let id = object(&text)["id"].as_str().expect("id").to_owned();
    let refused_id = |text: &str| {
        ReceivedEnvelope::decode(text.as_bytes())
            .expect_err("refused")
            .id
            .map(|id| id.to_string())
    };
    let mut unknown_member = object(&text);
    unknown_member.insert("extra".into(), json!(1));
    let unknown_member = Value::Object(unknown_member).to_string();
    let mut unknown_payload_member = object(&text);
    unknown_payload_member.insert("payload".into(), json!({"sequence": 1, "x": 2}));
    let unknown_payload_member = Value::Object(unknown_payload_member).to_string();
    let unknown_first = text.replacen('{', r#"{"zzz":[1,{"a":2}],"#, 1);
    let duplicate_type = text.replacen('{', r#"{"type":"PONG","#, 1);
    for frame in [
        &unknown_member,
        &unknown_payload_member,
        &unknown_first,
        &duplicate_type,
    ] {
        assert_eq!(refused_id(frame).as_deref(), Some(id.as_str()), "{frame}");
    }
    let duplicate_id = text.replacen('{', &format!(r#"{{"id":"{id}","#), 1);
    assert_eq!(
        refused_id(&duplicate_id),
        None,
        "two ids: neither is trusted"
    );
    assert_eq!(refused_id(&text.replace(&id, "not-an-id")), None);
    assert_eq!(refused_id(&text[..text.len() - 1]), None, "not JSON");
}

/// §3/§5.2: a member sent as `null` is treated as absent when read, but it is part of the
/// object as received, so it is part of the signed bytes.
#[test]
fn a_member_sent_as_null_is_part_of_the_signed_bytes() {
    let (signer, envelope) = example_envelope(MessageType::Ping);
    let mut with_null = envelope.unsigned_object();
    with_null.insert("correlation_id".into(), Value::Null);
    let sign = |object: &Map<String, Value>| {
        let canonical = signing::canonicalize_object(object);
        signing::encode_signature(&signing::sign(&signer, Purpose::Message, &canonical))
    };
    let mut signed_with_null = with_null.clone();
    signed_with_null.insert("signature".into(), json!(sign(&with_null)));
    let received = ReceivedEnvelope::decode(
        Value::Object(signed_with_null.clone())
            .to_string()
            .as_bytes(),
    )
    .expect("decodes");
    assert_eq!(
        received.envelope().correlation_id,
        None,
        "null reads as absent"
    );
    assert!(
        received.verify().is_ok(),
        "signed with the null member: verifies"
    );

    signed_with_null.remove("correlation_id");
    let stripped = ReceivedEnvelope::decode(Value::Object(signed_with_null).to_string().as_bytes())
        .expect("decodes");
    assert!(stripped.verify().is_err(), "the null member was signed");
}

/// §8: a number of magnitude over 2^53 − 1 is refused, integer or not.
#[test]
fn numbers_beyond_two_to_the_53_are_refused_even_when_not_integers() {
    let with_number = |number: &str| {
        let mut map = object(&signed_json(MessageType::ExecRequest));
        let mut payload = map["payload"].as_object().expect("payload").clone();
        let args = serde_json::from_str(&format!("{{\"x\":{number}}}")).expect("json");
        payload.insert("args".into(), args);
        map.insert("payload".into(), Value::Object(payload));
        Value::Object(map).to_string()
    };
    assert!(
        ReceivedEnvelope::decode(with_number("1.5").as_bytes()).is_ok(),
        "a small fraction is fine"
    );
    for number in ["9007199254740993.5", "-1.5e16", "1e300"] {
        let (code, _) = decode_err(&with_number(number));
        assert_eq!(code, ErrorCode::MalformedMessage, "{number}");
    }
}
