//! Example messages of every type: used by the tests, the benchmarks, and the examples in
//! PROTOCOL_DESIGN.md. Deterministic: fixed seeds, fixed ids, fixed times.

use serde_json::json;

use crate::body::{Body, MessageType};
use crate::codes::ErrorCode;
use crate::envelope::Envelope;
use crate::identity::Identity;
use crate::message_id::MessageId;
use crate::payload::{
    Cancel, Capability, Challenge, Chunk, Cost, Credit, ErrorPayload, ExecRequest, ExecResponse,
    ExecStatus, FEATURE_CANCEL, FEATURE_FLOW, Features, IceCandidate, Intent, IntentReply,
    IntentStatus, Ping, Register, Registered, RelayAccept, RelayClose, RelayData, RelayOpen,
    SessionDescription, Unregister,
};
use crate::timestamp::Timestamp;

/// Seed of the example agent "alice" (RFC 8032 TEST 1's secret key).
pub const ALICE_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
/// Seed of the example agent "bob" (all bytes 0x02).
pub const BOB_SEED: [u8; 32] = [2; 32];
/// Seed of the example gateway (all bytes 0x03).
pub const GATEWAY_SEED: [u8; 32] = [3; 32];

/// The example agent "alice".
pub fn alice() -> Identity {
    Identity::from_seed(&ALICE_SEED)
}

/// The example agent "bob".
pub fn bob() -> Identity {
    Identity::from_seed(&BOB_SEED)
}

/// The example gateway.
pub fn gateway() -> Identity {
    Identity::from_seed(&GATEWAY_SEED)
}

/// 2026-01-01T00:00:00.000Z.
pub fn example_time() -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000).expect("in range")
}

/// A fixed message id: `00000000-0000-4000-8000-` followed by `n` in 12 hex digits.
pub fn example_id(n: u64) -> MessageId {
    let text = format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff);
    MessageId::parse(&text).expect("a valid v4 id")
}

/// A realistic data-channel-only SDP of about 1.5 KB, as the `webrtc` crate produces.
pub fn example_sdp() -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:Xk2B\r\na=ice-pwd:2fVZOl8ugVHYgpGsIzU6CNa4\r\n\
         a=ice-options:trickle\r\n\
         a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:\
         DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:79:F2\r\n\
         a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
    );
    let mut i = 0;
    while sdp.len() < 1400 {
        sdp.push_str(&format!(
            "a=candidate:{} 1 udp {} 127.0.0.1 {} typ host generation 0\r\n",
            1_000_000 + i,
            2_130_706_431 - i,
            50_000 + i
        ));
        i += 1;
    }
    sdp
}

/// One example body of the given type.
pub fn example_body(ty: MessageType) -> Body {
    match ty {
        MessageType::Challenge => Body::Challenge(Challenge {
            nonce: "q2bJ7uVdzXJjH3tK2QfZCk1X6aW0nP5rL8sT4yE9oMc".into(),
            expires_at: Timestamp::from_unix_millis(1_767_225_630_000).expect("in range"),
        }),
        MessageType::Register => Body::Register(Register {
            public_key: alice().did().public_key_multibase(),
            nonce: "q2bJ7uVdzXJjH3tK2QfZCk1X6aW0nP5rL8sT4yE9oMc".into(),
            audience: "ws://127.0.0.1:8000/ws".into(),
            capabilities: vec![
                Capability::new("echo", "Returns its arguments"),
                Capability {
                    name: "sum".into(),
                    description: "Adds numbers".into(),
                    args_schema: Some(json!({
                        "type": "object",
                        "properties": {"values": {"type": "array", "items": {"type": "number"}}},
                        "required": ["values"]
                    })),
                },
            ],
            listed: true,
        }),
        MessageType::Registered => Body::Registered(Registered {
            session_id: "00000000-0000-4000-8000-00000000beef".into(),
            idle_timeout_ms: 300_000,
            max_frame_bytes: 65_536,
            ice_servers: Vec::new(),
            ice_servers_ttl_ms: None,
        }),
        MessageType::Unregister => Body::Unregister(Unregister {
            reason: Some("shutting down".into()),
        }),
        MessageType::Offer => Body::Offer(SessionDescription { sdp: example_sdp() }),
        MessageType::Answer => Body::Answer(SessionDescription { sdp: example_sdp() }),
        MessageType::IceCandidate => Body::IceCandidate(IceCandidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }),
        MessageType::Intent => Body::Intent(Intent::query(
            "Summarise this page in French",
            json!({"url": "https://example.org/"}),
        )),
        MessageType::ExecRequest => Body::ExecRequest(ExecRequest {
            timeout_ms: 5_000,
            ..ExecRequest::new("sum", json!({"values": [1, 2, 3.5]}))
        }),
        MessageType::ExecResponse => Body::ExecResponse(ExecResponse {
            status: ExecStatus::Ok,
            result: Some(json!(6.5)),
            error: None,
            execution_time_ms: 1,
        }),
        MessageType::Error => Body::Error(ErrorPayload {
            code: ErrorCode::UnknownAgent,
            message: "no agent with that DID is registered".into(),
            details: Some(json!({"to": bob().did().to_string()})),
        }),
        MessageType::Ping => Body::Ping(Ping { sequence: 42 }),
        MessageType::Pong => Body::Pong(Ping { sequence: 42 }),
        MessageType::Features => Body::Features(Features {
            features: vec![FEATURE_FLOW.into(), FEATURE_CANCEL.into()],
        }),
        MessageType::Credit => Body::Credit(Credit { parts: 16 }),
        MessageType::Cancel => Body::Cancel(Cancel {
            reason: Some("the caller stopped waiting".into()),
        }),
        MessageType::RelayOpen => Body::RelayOpen(RelayOpen {
            key: "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo".into(),
        }),
        MessageType::RelayAccept => Body::RelayAccept(RelayAccept {
            key: "3p7bfXt9wbTTW2HC7OQ1Nz-DQ8hbeGdNrfx-FG-IK08".into(),
        }),
        MessageType::RelayData => Body::RelayData(RelayData {
            seq: 0,
            data: "Qm9yZWFsaXMgc2VhbGVkIHJlY29yZCwgZmxhZyBhbmQgdGFn".into(),
        }),
        MessageType::RelayClose => Body::RelayClose(RelayClose {
            reason: Some("the agent closed".into()),
        }),
        MessageType::Chunk => Body::Chunk(Chunk {
            message: MessageId::parse("9b2f3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d").expect("a v4 id"),
            index: 0,
            count: 228,
            total_bytes: 10_486_133,
            data: "eyJpZCI6IjliMmYzYzRkLTVlNmYtNGExYi04YzJkLTNlNGY1YTZiN2M4ZCIs".into(),
        }),
    }
}

/// An INTENT reply example.
pub fn example_intent_reply() -> Body {
    Body::Intent(Intent::Reply(IntentReply {
        status: IntentStatus::Accepted,
        required_input: vec![],
        cost: Some(Cost {
            amount: 0.002,
            unit: "USD".into(),
        }),
        capability: Some("summarise".into()),
        message: None,
    }))
}

/// A complete, valid (unsigned) envelope of the given type, with the sender, recipient and
/// correlation the spec requires for it: CHALLENGE, REGISTERED and ERROR come from the gateway,
/// REGISTER and UNREGISTER go to it, everything else goes from alice to bob.
pub fn example_envelope(ty: MessageType) -> (Identity, Envelope) {
    let (alice, bob, gateway) = (alice(), bob(), gateway());
    let (signer, to) = match ty {
        MessageType::Challenge => (gateway, None),
        MessageType::Registered | MessageType::Error => (gateway, Some(alice.did())),
        MessageType::Register | MessageType::Unregister => (alice, Some(gateway.did())),
        _ => (alice, Some(bob.did())),
    };
    let mut envelope = Envelope::new(signer.did(), to, example_body(ty), example_time());
    envelope.id = example_id(1);
    // The example REGISTER and ERROR answer something too (a CHALLENGE, a refused frame).
    let needs_correlation = crate::envelope::needs_correlation(ty)
        || matches!(ty, MessageType::Register | MessageType::Error);
    if needs_correlation {
        envelope.correlation_id = Some(example_id(2));
    }
    (signer, envelope)
}
