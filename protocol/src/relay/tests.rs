use super::*;
use crate::samples::{alice, bob};

const MAX: usize = 64 * 1024;

fn pair() -> (RecordSealer, RecordOpener, RecordSealer, RecordOpener) {
    let (a, b) = (alice(), bob());
    let link = MessageId::random();
    let (ea, eb) = (
        EphemeralKey::from_bytes([1; 32]),
        EphemeralKey::from_bytes([2; 32]),
    );
    let key = |k: &EphemeralKey| crate::payload::decode_relay_key(&k.public_text()).expect("key");
    let (kb, ka) = (key(&eb), key(&ea));
    let opener = RelayHandshake {
        role: RelayRole::Opener,
        identity: &a,
        peer: &b.did(),
        link,
        peer_key: &kb,
    };
    let accepter = RelayHandshake {
        role: RelayRole::Accepter,
        identity: &b,
        peer: &a.did(),
        link,
        peer_key: &ka,
    };
    let (a_send, a_receive) = opener.keys(&ea, MAX).expect("opener keys");
    let (b_send, b_receive) = accepter.keys(&eb, MAX).expect("accepter keys");
    (a_send, b_receive, b_send, a_receive)
}

#[test]
fn messages_cross_in_both_directions_and_large_ones_are_split() {
    let (mut a_send, mut b_receive, mut b_send, mut a_receive) = pair();
    let big = vec![7u8; MAX];
    let records = a_send.seal(&big).expect("seal");
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.data.len() <= crate::payload::MAX_RELAY_DATA_CHARS)
    );
    assert_eq!(b_receive.open(&records[0]), Ok(None));
    assert_eq!(b_receive.open(&records[1]), Ok(Some(big)));
    let empty = b_send.seal(b"").expect("seal");
    assert_eq!(a_receive.open(&empty[0]), Ok(Some(Vec::new())));
    let hello = a_send.seal(b"hello").expect("seal");
    assert_eq!(hello[0].seq, 2);
    assert_eq!(b_receive.open(&hello[0]), Ok(Some(b"hello".to_vec())));
}

#[test]
fn a_lost_replayed_or_altered_record_breaks_the_stream() {
    let (mut send, mut receive, _, _) = pair();
    let first = send.seal(b"one").expect("seal");
    let second = send.seal(b"two").expect("seal");
    assert_eq!(
        receive.open(&second[0]),
        Err(RelayError::Gap {
            expected: 0,
            got: 1
        })
    );
    assert!(receive.open(&first[0]).is_ok());
    assert!(matches!(
        receive.open(&first[0]),
        Err(RelayError::Gap { .. })
    ));
    let mut altered = second[0].clone();
    let mut bytes = URL_SAFE_NO_PAD.decode(&altered.data).expect("b64");
    bytes[0] ^= 1;
    altered.data = URL_SAFE_NO_PAD.encode(bytes);
    assert_eq!(receive.open(&altered), Err(RelayError::Forged(1)));
}

#[test]
fn a_record_for_the_other_direction_or_link_does_not_open() {
    let (mut a_send, _, _, mut a_receive) = pair();
    let own = a_send.seal(b"mine").expect("seal");
    assert_eq!(a_receive.open(&own[0]), Err(RelayError::Forged(0)));
    let (_, mut other_link, _, _) = pair();
    assert_eq!(other_link.open(&own[0]), Err(RelayError::Forged(0)));
}

#[test]
fn a_message_over_the_limit_is_refused_before_it_is_buffered() {
    let (mut s, mut r, _, _) = pair();
    r.max_message = 40 * 1024;
    let records = s.seal(&vec![1u8; 50 * 1024]).expect("seal");
    assert_eq!(r.open(&records[0]), Ok(None));
    assert_eq!(r.open(&records[1]), Err(RelayError::TooLarge(40 * 1024)));
    assert!(r.partial.len() <= 40 * 1024);
}

#[test]
fn a_small_order_key_is_refused() {
    let a = alice();
    let zero = [0u8; 32];
    let handshake = RelayHandshake {
        role: RelayRole::Opener,
        identity: &a,
        peer: &bob().did(),
        link: MessageId::random(),
        peer_key: &zero,
    };
    let refused = handshake.keys(&EphemeralKey::from_bytes([3; 32]), MAX);
    assert!(matches!(refused, Err(RelayError::WeakKey)));
}
