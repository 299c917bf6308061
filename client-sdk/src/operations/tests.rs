use ioap_protocol::Identity;
use ioap_protocol::payload::ErrorPayload;
use serde_json::json;

use super::*;

fn caller(seed: u8) -> Did {
    Identity::from_seed(&[seed; 32]).did()
}

fn run(begin: Begin) -> (u64, watch::Sender<Option<ServeOutcome>>) {
    match begin {
        Begin::Run {
            generation,
            outcome,
        } => (generation, outcome),
        other => panic!("expected Run, got {other:?}"),
    }
}

#[test]
fn a_repeat_waits_for_the_first_run_then_gets_its_recorded_outcome() {
    let mut ops = Operations::new(IdempotencyLimits::default());
    let (t0, alice) = (Instant::now(), caller(1));
    let (generation, sender) = run(ops.begin(t0, alice, "k", [1; 32]));
    let Begin::Wait(mut waiting) = ops.begin(t0, alice, "k", [1; 32]) else {
        panic!("a repeat while running waits");
    };
    let result = ServeOutcome::Value(json!({"ran": 1}));
    sender.send_replace(Some(result.clone()));
    ops.finish(t0, alice, "k", generation, &result);
    assert_eq!(*waiting.borrow_and_update(), Some(result.clone()));
    assert!(matches!(ops.begin(t0, alice, "k", [1; 32]), Begin::Recorded(r) if r == result));
    assert!(matches!(
        ops.begin(t0, alice, "k", [2; 32]),
        Begin::Conflict
    ));
    // Keys are the caller's: another caller's same key is a new operation.
    assert!(matches!(
        ops.begin(t0, caller(2), "k", [1; 32]),
        Begin::Run { .. }
    ));
}

#[test]
fn outcomes_are_kept_for_the_window_and_then_forgotten() {
    let limits = IdempotencyLimits::default().window(Duration::from_secs(60));
    let mut ops = Operations::new(limits);
    let (t0, alice) = (Instant::now(), caller(1));
    let (generation, _sender) = run(ops.begin(t0, alice, "k", [1; 32]));
    let done = ServeOutcome::Value(json!("x"));
    ops.finish(t0, alice, "k", generation, &done);
    assert_eq!(ops.held(), (1, 3));
    let before = t0 + Duration::from_secs(59);
    assert!(matches!(
        ops.begin(before, alice, "k", [1; 32]),
        Begin::Recorded(_)
    ));
    let after = t0 + Duration::from_secs(60);
    assert!(matches!(
        ops.begin(after, alice, "k", [1; 32]),
        Begin::Run { .. }
    ));
    assert_eq!(ops.held(), (1, 0), "the old outcome's bytes are released");
}

#[test]
fn a_stopped_run_records_nothing_and_the_key_is_served_anew() {
    let mut ops = Operations::new(IdempotencyLimits::default());
    let (t0, alice) = (Instant::now(), caller(1));
    let (generation, _sender) = run(ops.begin(t0, alice, "k", [1; 32]));
    let timed_out = ServeOutcome::Failed(ErrorPayload::new(ErrorCode::Timeout, "late"));
    ops.finish(t0, alice, "k", generation, &timed_out);
    assert_eq!(ops.held(), (0, 0));
    let (second, _sender) = run(ops.begin(t0, alice, "k", [1; 32]));
    // The stale first run finishing later does not touch the new one.
    ops.finish(t0, alice, "k", generation, &ServeOutcome::Value(json!(1)));
    assert!(matches!(ops.begin(t0, alice, "k", [1; 32]), Begin::Wait(_)));
    let failed = ServeOutcome::Failed(ErrorPayload::new(ErrorCode::HandlerError, "no"));
    ops.finish(t0, alice, "k", second, &failed);
    assert!(
        matches!(ops.begin(t0, alice, "k", [1; 32]), Begin::Recorded(r) if r == failed),
        "a handler's own failure is its outcome"
    );
}

#[test]
fn cancel_forgets_a_running_key_and_drops_its_outcome_channel() {
    let mut ops = Operations::new(IdempotencyLimits::default());
    let (t0, alice) = (Instant::now(), caller(1));
    let (_generation, sender) = run(ops.begin(t0, alice, "k", [1; 32]));
    let Begin::Wait(waiting) = ops.begin(t0, alice, "k", [1; 32]) else {
        panic!("waits");
    };
    ops.cancel(alice, "k");
    drop(sender);
    assert!(
        waiting.has_changed().is_err(),
        "waiters learn the run is gone"
    );
    assert_eq!(ops.held(), (0, 0));
}

#[test]
fn new_keys_beyond_a_bound_are_refused_never_evicted() {
    let limits = IdempotencyLimits::default().max_keys(3, 2).max_bytes(10);
    let mut ops = Operations::new(limits);
    let (t0, alice, bob) = (Instant::now(), caller(1), caller(2));
    let (a1, _s1) = run(ops.begin(t0, alice, "1", [1; 32]));
    let _a2 = run(ops.begin(t0, alice, "2", [1; 32]));
    assert!(
        matches!(ops.begin(t0, alice, "3", [1; 32]), Begin::Full(_)),
        "per caller"
    );
    let _b1 = run(ops.begin(t0, bob, "1", [1; 32]));
    assert!(
        matches!(ops.begin(t0, caller(3), "1", [1; 32]), Begin::Full(_)),
        "in all"
    );
    // Alice's first key is still answered: nothing was evicted to make room.
    ops.finish(
        t0,
        alice,
        "1",
        a1,
        &ServeOutcome::Value(json!("a result over ten bytes")),
    );
    assert!(matches!(
        ops.begin(t0, alice, "1", [1; 32]),
        Begin::Recorded(_)
    ));
    ops.cancel(bob, "1");
    assert!(
        matches!(
            ops.begin(t0, caller(3), "1", [1; 32]),
            Begin::Full("bytes of recorded outcomes")
        ),
        "bytes"
    );
}
