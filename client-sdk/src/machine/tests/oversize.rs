//! Messages a link cannot carry (PROTOCOL_DESIGN.md §11.6), in virtual time: whichever side
//! meets the limit, the call or request ends with a word.

use super::*;
use crate::machine::{Unsent, UnsentCause};

const LIMIT: u64 = 1 << 20;

fn too_large() -> UnsentCause {
    UnsentCause::TooLarge {
        size: LIMIT + 1,
        limit: LIMIT,
    }
}

fn over_the_limit() -> CallError {
    CallError::TooLarge {
        size: LIMIT + 1,
        limit: LIMIT,
    }
}

fn done(side: &mut Side, call: MessageId) -> Result<Value, CallError> {
    match side.call_events(call).pop() {
        Some(CallEvent::Done(outcome)) => outcome,
        other => panic!("call {call} not done: {other:?}"),
    }
}

#[test]
fn both_sides_announce_chunks_and_a_one_point_zero_peer_does_not() {
    let pair = Pair::open();
    assert!(pair.a.machine.peer_takes_chunks() && pair.b.machine.peer_takes_chunks());

    let mut old = Pair::new(config(), config());
    old.b.features = false;
    let now = old.now;
    old.a.machine.handle_channel_open(now);
    old.drive();
    assert!(!old.a.machine.peer_takes_chunks());
    assert!(old.b.machine.peer_takes_chunks());
}

#[test]
fn a_request_too_large_to_send_fails_its_call_here() {
    let mut pair = Pair::open();
    let call = pair.exec("echo", false, 5 * SECOND);
    pair.b.served();
    let now = pair.now;
    let unsent = Unsent {
        ty: ioap_protocol::MessageType::ExecRequest,
        id: Some(call),
        correlation: None,
        cause: too_large(),
    };
    pair.a.machine.unsendable(now, unsent);
    pair.drive();
    assert_eq!(done(&mut pair.a, call), Err(over_the_limit()));
    assert!(pair.a.machine.load().0 == 0, "the call's place is free");
}

#[test]
fn an_answer_too_large_to_send_is_replaced_by_too_large_and_its_handler_stopped() {
    let mut pair = Pair::open();
    let call = pair.exec("echo", true, 5 * SECOND);
    let (request, _) = pair.b.served().pop().expect("served");
    let now = pair.now;
    let unsent = Unsent {
        ty: ioap_protocol::MessageType::ExecResponse,
        id: None,
        correlation: Some(request),
        cause: too_large(),
    };
    pair.b.machine.unsendable(now, unsent);
    pair.drive();
    assert!(pair.b.has(&LinkEvent::StopServing { id: request }));
    let outcome = done(&mut pair.a, call);
    assert!(
        matches!(
            &outcome,
            Err(CallError::Remote {
                code: ErrorCode::TooLarge,
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[test]
fn a_refused_answer_ends_our_call_and_cancels_it_at_the_callee() {
    let mut pair = Pair::open();
    let call = pair.exec("echo", false, 5 * SECOND);
    let (request, _) = pair.b.served().pop().expect("served");
    let answer = pair.id();
    pair.a
        .machine
        .refuse_message(answer, Some(call), ErrorCode::TooLarge, LIMIT + 1, LIMIT);
    pair.drive();
    assert_eq!(done(&mut pair.a, call), Err(over_the_limit()));
    assert!(pair.b.has(&LinkEvent::StopServing { id: request }));
}

#[test]
fn a_refused_request_is_answered_with_its_code() {
    let mut pair = Pair::open();
    for code in [ErrorCode::TooLarge, ErrorCode::TooManyRequests] {
        let call = pair.exec("echo", false, 5 * SECOND);
        // The callee refused the request at its first piece, before serving anything.
        pair.b.served();
        pair.b
            .machine
            .refuse_message(call, None, code, LIMIT + 1, LIMIT);
        pair.drive();
        let outcome = done(&mut pair.a, call);
        assert!(
            matches!(&outcome, Err(CallError::Remote { code: c, .. }) if *c == code),
            "{outcome:?}"
        );
    }
}

#[test]
fn chunks_count_as_traffic() {
    let mut pair = Pair::open();
    pair.b.connected = false;
    for _ in 0..20 {
        pair.advance(SECOND);
        let now = pair.now;
        pair.a.machine.heard(now);
    }
    assert!(
        pair.a.machine.ended().is_none(),
        "a link that hears pieces is alive"
    );
}
