//! The 1.5 fields of a call (PROTOCOL_DESIGN.md §11.8–§11.10), in virtual time: sent to a
//! peer that listed them; to one that did not, a key or grants fail the call here, trace
//! context is left out, and FORBIDDEN arrives as HANDLER_ERROR.

use ioap_protocol::grant::{Grant, GrantTerms};
use ioap_protocol::payload::ErrorPayload;
use ioap_protocol::samples::alice;

use super::*;
use crate::machine::ServeOutcome;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn old_peer() -> Pair {
    let mut pair = Pair::new(config(), config());
    pair.b.features = false;
    let now = pair.now;
    pair.a.machine.handle_channel_open(now);
    pair.drive();
    pair.a.events.clear();
    pair
}

fn keyed_spec(key: Option<&str>, grants: Vec<Grant>) -> CallSpec {
    CallSpec::Exec {
        capability: "sum".into(),
        args: json!({"values": [1]}),
        stream: false,
        extras: Box::new(ExecExtras {
            idempotency_key: key.map(str::to_owned),
            traceparent: Some(TRACEPARENT.into()),
            tracestate: Some("v=1".into()),
            grants,
        }),
    }
}

fn a_grant() -> Grant {
    let terms = GrantTerms {
        subject: alice().did(),
        audience: bob().did(),
        capability: "sum".into(),
        expires: example_time(),
        args: None,
    };
    Grant::issue(&bob(), terms, None)
}

#[test]
fn a_peer_that_listed_them_gets_the_key_trace_and_grants() {
    let mut pair = Pair::open();
    let (id, now) = (pair.id(), pair.now);
    let spec = keyed_spec(Some("op-1"), vec![a_grant()]);
    pair.a
        .machine
        .start_call(now, id, spec, now + SECOND)
        .expect("sent");
    pair.drive();
    let (_, ServeRequest::Exec { request, .. }) = pair.b.served().pop().expect("served") else {
        panic!("not an exec");
    };
    assert_eq!(request.idempotency_key.as_deref(), Some("op-1"));
    assert_eq!(request.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(request.tracestate.as_deref(), Some("v=1"));
    assert_eq!(request.grants, vec![a_grant()]);
}

#[test]
fn to_a_peer_that_did_not_a_key_or_grants_fail_here_and_trace_is_left_out() {
    let mut pair = old_peer();
    let now = pair.now;
    for spec in [
        keyed_spec(Some("op-1"), vec![]),
        keyed_spec(None, vec![a_grant()]),
    ] {
        let id = pair.id();
        let refused = pair.a.machine.start_call(now, id, spec, now + SECOND);
        assert!(
            matches!(refused, Err(CallError::Invalid { .. })),
            "{refused:?}"
        );
    }
    let id = pair.id();
    pair.a
        .machine
        .start_call(now, id, keyed_spec(None, vec![]), now + SECOND)
        .expect("a plain call goes");
    pair.drive();
    let (_, ServeRequest::Exec { request, .. }) = pair.b.served().pop().expect("served") else {
        panic!("not an exec");
    };
    assert_eq!((request.traceparent, request.tracestate), (None, None));

    let mut intent = Intent::query("hello", Value::Null);
    if let Some((parent, _)) = intent.trace_context_mut() {
        *parent = Some(TRACEPARENT.into());
    }
    let id = pair.id();
    pair.a
        .machine
        .start_call(now, id, CallSpec::Intent(intent), now + SECOND)
        .expect("sent");
    pair.drive();
    let (_, ServeRequest::Intent { mut intent, .. }) = pair.b.served().pop().expect("served")
    else {
        panic!("not an intent");
    };
    assert_eq!(
        intent.trace_context_mut().map(|(p, _)| p.clone()),
        Some(None)
    );
}

#[test]
fn forbidden_reaches_a_caller_that_knows_it_and_is_a_handler_error_for_one_that_does_not() {
    for knows in [true, false] {
        let mut pair = Pair::new(config(), config());
        pair.a.features = knows;
        let now = pair.now;
        pair.a.machine.handle_channel_open(now);
        pair.drive();
        let call = pair.exec("secret", false, 10 * SECOND);
        let (id, _) = pair.b.served().pop().expect("served");
        let refusal = ErrorPayload::new(ErrorCode::Forbidden, "no");
        pair.b
            .machine
            .serve_done(pair.now, id, ServeOutcome::Failed(refusal));
        pair.drive();
        let events = pair.a.call_events(call);
        let Some(CallEvent::Done(Err(CallError::Remote { code, message }))) = events.last() else {
            panic!("{events:?}");
        };
        if knows {
            assert_eq!((*code, message.as_str()), (ErrorCode::Forbidden, "no"));
        } else {
            assert_eq!(*code, ErrorCode::HandlerError);
            assert_eq!(message, "FORBIDDEN: no");
        }
    }
}

#[test]
fn a_cancel_says_so_before_the_handler_is_stopped() {
    let mut pair = Pair::open();
    let call = pair.exec("slow", false, 10 * SECOND);
    let (id, _) = pair.b.served().pop().expect("served");
    pair.a.machine.cancel_call(call);
    pair.drive();
    let stops: Vec<_> = pair.b.take(|e| {
        matches!(
            e,
            LinkEvent::CancelledByPeer { .. } | LinkEvent::StopServing { .. }
        )
    });
    assert_eq!(
        stops,
        [
            LinkEvent::CancelledByPeer { id },
            LinkEvent::StopServing { id }
        ]
    );
}
