//! Protocol hot paths for a typical OFFER (≈1.5 KB SDP) and EXEC_REQUEST:
//! canonicalize, sign, encode (build + canonicalize + sign + serialize), decode, verify.
//!
//! Run: `cargo bench --bench protocol`. Figures are in docs/performance.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ioap_protocol::samples::example_envelope;
use ioap_protocol::signing::{self, Purpose};
use ioap_protocol::{MessageType, ReceivedEnvelope};

fn protocol(c: &mut Criterion) {
    for (name, ty) in [
        ("offer", MessageType::Offer),
        ("exec_request", MessageType::ExecRequest),
    ] {
        let (signer, envelope) = example_envelope(ty);
        let object = envelope.unsigned_object();
        let canonical = signing::canonicalize_object(&object);
        let wire = envelope.clone().sign(&signer).expect("sign").into_string();
        let received = ReceivedEnvelope::decode(wire.as_bytes()).expect("decode");
        let mut group = c.benchmark_group(name);
        group.throughput(criterion::Throughput::Bytes(wire.len() as u64));
        group.bench_function("canonicalize", |b| {
            b.iter(|| signing::canonicalize_object(black_box(&object)))
        });
        group.bench_function("sign", |b| {
            b.iter(|| signing::sign(&signer, Purpose::Message, black_box(&canonical)))
        });
        group.bench_function("encode", |b| {
            b.iter(|| black_box(envelope.clone()).sign(&signer).expect("sign"))
        });
        group.bench_function("decode", |b| {
            b.iter(|| ReceivedEnvelope::decode(black_box(wire.as_bytes())).expect("decode"))
        });
        let (from, to) = (envelope.from, envelope.to);
        let known = move |text: &str| {
            [Some(from), to]
                .into_iter()
                .flatten()
                .find(|did| did.to_string() == text)
        };
        let from_text = from.to_string();
        let to_text = to.map(|d| d.to_string()).unwrap_or_default();
        let cached = |text: &str| {
            if text == from_text {
                Some(from)
            } else if text == to_text {
                to
            } else {
                None
            }
        };
        let _ = known;
        group.bench_function("decode_known_dids", |b| {
            b.iter(|| {
                ReceivedEnvelope::decode_with(black_box(wire.as_bytes()), cached).expect("decode")
            })
        });
        group.bench_function("parse_json_only", |b| {
            b.iter(|| ioap_protocol::json::parse_strict(black_box(wire.as_bytes())).expect("json"))
        });
        group.bench_function("verify", |b| {
            b.iter(|| black_box(&received).verify().expect("verify"))
        });
        group.bench_function("decode_and_verify", |b| {
            b.iter(|| {
                ReceivedEnvelope::decode(black_box(wire.as_bytes()))
                    .expect("decode")
                    .verify()
                    .expect("verify")
            })
        });
        group.finish();
    }
}

/// Checking a grant chain as a callee does for each call to a restricted capability.
fn grants(c: &mut Criterion) {
    use ioap_protocol::grant::{self, Grant, GrantTerms, GrantedCall};
    use ioap_protocol::samples::{alice, bob, example_time};
    let (callee, caller) = (bob(), alice());
    let middle = ioap_protocol::Identity::from_seed(&[7; 32]);
    let terms = |subject| GrantTerms {
        subject,
        audience: callee.did(),
        capability: "sum".into(),
        expires: example_time().saturating_add(std::time::Duration::from_secs(3600)),
        args: None,
    };
    let direct = vec![Grant::issue(&callee, terms(caller.did()), None)];
    let root = Grant::issue(&callee, terms(middle.did()), None);
    let leaf = Grant::issue(&middle, terms(caller.did()), Some(&root));
    let delegated = vec![root, leaf];
    let args = serde_json::json!({"values": [1, 2]});
    let (callee_did, caller_did) = (callee.did(), caller.did());
    let call = GrantedCall {
        caller: &caller_did,
        callee: &callee_did,
        capability: "sum",
        args: &args,
        now: example_time(),
    };
    let mut group = c.benchmark_group("grant");
    for (name, chain) in [("admits_depth_1", &direct), ("admits_depth_2", &delegated)] {
        group.bench_function(name, |b| {
            b.iter(|| grant::admits(black_box(chain), &call, &|_| false).expect("admits"))
        });
    }
    group.finish();
}

criterion_group!(benches, protocol, grants);
criterion_main!(benches);
