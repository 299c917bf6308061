//! The TURN client against a server's answers built here with the same codecs, in virtual
//! time. (The engine's tests run it against real TURN servers: the gateway's and coturn.)

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::{CODE_STALE_NONCE, CODE_UNAUTHORIZED, ErrorCodeAttribute};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_REQUEST, Getter, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
    Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;

use super::*;

const SERVER: &str = "192.0.2.1:3478";
const RELAYED: &str = "192.0.2.1:50000";
const MAPPED: &str = "198.51.100.7:40000";
const PEER: &str = "203.0.113.9:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn integrity() -> MessageIntegrity {
    MessageIntegrity::new_long_term_integrity("alice".into(), "ioap".into(), "secret".into())
}

/// The server's answer to `request` with `class` and attributes.
fn answer(
    request: &Message,
    class: stun::message::MessageClass,
    mut attrs: Vec<Box<dyn Setter>>,
) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(request.transaction_id),
        Box::new(MessageType::new(request.typ.method, class)),
    ];
    setters.append(&mut attrs);
    let mut message = Message::new();
    message.build(&setters).expect("build");
    message.raw
}

fn next_request(client: &mut TurnClient) -> Message {
    let bytes = client.poll_transmit().expect("a request");
    message::decode(&bytes).expect("stun")
}

fn challenge(request: &Message, code: stun::error_code::ErrorCode, nonce: &str) -> Vec<u8> {
    answer(
        request,
        CLASS_ERROR_RESPONSE,
        vec![
            Box::new(ErrorCodeAttribute {
                code,
                reason: vec![],
            }),
            Box::new(TextAttribute::new(ATTR_REALM, "ioap".into())),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())),
        ],
    )
}

/// A client whose allocation succeeded (after the 401 challenge), at `now`.
fn allocated(now: Instant) -> TurnClient {
    let mut client = TurnClient::new(addr(SERVER), "alice".into(), "secret".into(), now);
    let first = next_request(&mut client);
    assert_eq!(first.typ, MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
    assert!(
        !first.contains(ATTR_USERNAME),
        "the first Allocate is anonymous"
    );
    assert_eq!(
        client.handle_datagram(&challenge(&first, CODE_UNAUTHORIZED, "n1"), now),
        None
    );

    let mut second = next_request(&mut client);
    let user = TextAttribute::get_from_as(&second, ATTR_USERNAME).expect("username");
    assert_eq!(user.text, "alice");
    integrity()
        .check(&mut second)
        .expect("signed with the long-term key");
    let success = answer(
        &second,
        CLASS_SUCCESS_RESPONSE,
        vec![
            Box::new(RelayedAddress {
                ip: addr(RELAYED).ip(),
                port: addr(RELAYED).port(),
            }),
            Box::new(XorMappedAddress {
                ip: addr(MAPPED).ip(),
                port: addr(MAPPED).port(),
            }),
            Box::new(Lifetime(Duration::from_secs(600))),
            Box::new(integrity()),
        ],
    );
    assert_eq!(client.handle_datagram(&success, now), None);
    assert_eq!(
        client.poll_event(),
        Some(TurnEvent::Allocated {
            relayed: addr(RELAYED),
            mapped: Some(addr(MAPPED)),
        })
    );
    client
}

#[test]
fn an_allocation_answers_the_challenge_and_reports_its_addresses() {
    let client = allocated(Instant::now());
    assert_eq!(client.relayed(), Some(addr(RELAYED)));
}

#[test]
fn a_success_with_a_wrong_integrity_is_ignored() {
    let now = Instant::now();
    let mut client = TurnClient::new(addr(SERVER), "alice".into(), "secret".into(), now);
    let first = next_request(&mut client);
    client.handle_datagram(&challenge(&first, CODE_UNAUTHORIZED, "n1"), now);
    let second = next_request(&mut client);
    let wrong =
        MessageIntegrity::new_long_term_integrity("alice".into(), "ioap".into(), "guess".into());
    let forged = answer(
        &second,
        CLASS_SUCCESS_RESPONSE,
        vec![
            Box::new(RelayedAddress {
                ip: addr(PEER).ip(),
                port: 1,
            }),
            Box::new(wrong),
        ],
    );
    client.handle_datagram(&forged, now);
    assert_eq!(client.poll_event(), None);
    assert_eq!(client.relayed(), None);
}

#[test]
fn a_silent_server_fails_the_allocation_after_five_transmissions() {
    let start = Instant::now();
    let mut client = TurnClient::new(addr(SERVER), "alice".into(), "secret".into(), start);
    let mut sent_at = Vec::new();
    let mut now = start;
    loop {
        while client.poll_transmit().is_some() {
            sent_at.push((now - start).as_millis());
        }
        let Some(deadline) = client.deadline() else {
            break;
        };
        now = deadline;
        client.handle_timeout(now);
    }
    assert_eq!(sent_at, [0, 250, 750, 1750, 3750]);
    assert_eq!((now - start).as_millis(), 7750);
    assert!(matches!(client.poll_event(), Some(TurnEvent::Failed(_))));
    assert!(client.is_failed());
}

#[test]
fn refused_credentials_fail_after_a_few_challenges() {
    let now = Instant::now();
    let mut client = TurnClient::new(addr(SERVER), "alice".into(), "wrong".into(), now);
    for round in 0..10 {
        let Some(bytes) = client.poll_transmit() else {
            assert!(round > 1, "retried the challenge at least once");
            break;
        };
        let request = message::decode(&bytes).expect("stun");
        client.handle_datagram(&challenge(&request, CODE_UNAUTHORIZED, "n"), now);
    }
    assert!(matches!(client.poll_event(), Some(TurnEvent::Failed(_))));
}

#[test]
fn data_waits_for_its_permission_within_a_bound_then_flows() {
    let now = Instant::now();
    let mut client = allocated(now);
    let peer = addr(PEER);
    for i in 0..QUEUED_PER_PEER {
        assert!(client.send_to(peer, &[i as u8], now), "queued {i}");
    }
    assert!(
        !client.send_to(peer, b"one too many", now),
        "the queue is bounded"
    );
    let permission = next_request(&mut client);
    assert_eq!(
        permission.typ,
        MessageType::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST)
    );
    assert!(
        client.poll_transmit().is_none(),
        "no data before the permission"
    );
    let granted = answer(
        &permission,
        CLASS_SUCCESS_RESPONSE,
        vec![Box::new(integrity())],
    );
    client.handle_datagram(&granted, now);
    let mut sent = Vec::new();
    while let Some(bytes) = client.poll_transmit() {
        let message = message::decode(&bytes).expect("stun");
        assert_eq!(message.typ, MessageType::new(METHOD_SEND, CLASS_INDICATION));
        let mut data = Data::default();
        data.get_from(&message).expect("data");
        sent.push(data.0[0]);
    }
    assert_eq!(
        sent,
        (0..QUEUED_PER_PEER as u8).collect::<Vec<_>>(),
        "all, in order"
    );
    assert!(client.send_to(peer, b"now", now));
    assert!(client.poll_transmit().is_some(), "sent at once");
}

#[test]
fn data_indications_come_only_from_permitted_peers() {
    let now = Instant::now();
    let mut client = allocated(now);
    let indication = |peer: SocketAddr| {
        let mut message = Message::new();
        message
            .build(&[
                Box::new(stun::agent::TransactionId::new()),
                Box::new(MessageType::new(METHOD_DATA, CLASS_INDICATION)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
                Box::new(Data(b"hi".to_vec())),
            ])
            .expect("build");
        message.raw
    };
    assert_eq!(client.handle_datagram(&indication(addr(PEER)), now), None);
    client.send_to(addr(PEER), b"x", now);
    let permission = next_request(&mut client);
    client.handle_datagram(&answer(&permission, CLASS_SUCCESS_RESPONSE, vec![]), now);
    assert_eq!(
        client.handle_datagram(&indication(addr(PEER)), now),
        Some((addr(PEER), b"hi".to_vec()))
    );
}

#[test]
fn a_stale_nonce_is_renewed_and_the_allocation_refreshed_before_it_ends() {
    let start = Instant::now();
    let mut client = allocated(start);
    let refresh_at = client.deadline().expect("a refresh");
    assert_eq!(
        refresh_at - start,
        Duration::from_secs(300),
        "half the lifetime"
    );
    client.handle_timeout(refresh_at);
    let refresh = next_request(&mut client);
    assert_eq!(refresh.typ, MessageType::new(METHOD_REFRESH, CLASS_REQUEST));
    client.handle_datagram(&challenge(&refresh, CODE_STALE_NONCE, "n2"), refresh_at);
    let again = next_request(&mut client);
    let nonce = TextAttribute::get_from_as(&again, ATTR_NONCE).expect("nonce");
    assert_eq!(nonce.text, "n2");
    client.handle_datagram(
        &answer(
            &again,
            CLASS_SUCCESS_RESPONSE,
            vec![Box::new(Lifetime(Duration::from_secs(600)))],
        ),
        refresh_at,
    );
    assert!(!client.is_failed());
    assert_eq!(
        client.deadline(),
        Some(refresh_at + Duration::from_secs(300))
    );
}

#[test]
fn an_unused_permission_lapses_and_a_used_one_is_renewed() {
    let start = Instant::now();
    let mut client = allocated(start);
    let (used, unused) = (addr(PEER), addr("203.0.113.10:7000"));
    for peer in [used, unused] {
        client.send_to(peer, b"x", start);
        let permission = next_request(&mut client);
        client.handle_datagram(&answer(&permission, CLASS_SUCCESS_RESPONSE, vec![]), start);
        while client.poll_transmit().is_some() {}
    }
    let later = start + Duration::from_secs(200);
    client.send_to(used, b"y", later);
    while client.poll_transmit().is_some() {}
    client.handle_timeout(start + Duration::from_secs(240));
    let renewal = next_request(&mut client);
    let mut peer = PeerAddress::default();
    peer.get_from(&renewal).expect("peer");
    assert_eq!(peer.ip, used.ip(), "only the one in use is renewed");
    assert!(client.poll_transmit().is_none());
    client.handle_timeout(start + Duration::from_secs(300));
    assert!(
        !client.permissions.contains_key(&unused.ip()),
        "the other lapsed"
    );
}
