//! Two link machines joined by a fake channel, with a clock advanced by hand (the style of
//! quinn-proto's `Pair`): every §11 rule of a link, deterministically, in microseconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ioap_protocol::payload::{Intent, IntentReply, MAX_WINDOW};
use ioap_protocol::samples::{alice, bob, example_time};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, MessageId};
use serde_json::{Value, json};

use super::events::Transmit;
use super::link::INTENT_DEADLINE;
use super::*;
use crate::error::{CallError, SetupError};

mod extras;
mod oversize;

const SECOND: Duration = Duration::from_secs(1);

fn config() -> LinkConfig {
    LinkConfig {
        heartbeat_interval: SECOND,
        link_timeout: 5 * SECOND,
        max_calls: 8,
        max_serving: 4,
        window: 8,
        chunk_digest: true,
    }
}

struct Side {
    did: Did,
    machine: LinkMachine,
    events: VecDeque<LinkEvent>,
    sent: Vec<Transmit>,
    /// Whether what this side sends reaches the other.
    connected: bool,
    /// Whether this side announces FEATURES (false: a 1.0 peer).
    features: bool,
}

struct Pair {
    now: Instant,
    a: Side,
    b: Side,
    next_id: u64,
}

impl Pair {
    fn new(config_a: LinkConfig, config_b: LinkConfig) -> Self {
        let now = Instant::now();
        let side = |did, config| Side {
            did,
            machine: LinkMachine::new(config, now + 10 * SECOND),
            events: VecDeque::new(),
            sent: Vec::new(),
            connected: true,
            features: true,
        };
        Pair {
            now,
            a: side(alice().did(), config_a),
            b: side(bob().did(), config_b),
            next_id: 1,
        }
    }

    /// A pair whose channel opened and whose first PINGs crossed.
    fn open() -> Self {
        let mut pair = Pair::new(config(), config());
        let now = pair.now;
        pair.a.machine.handle_channel_open(now);
        pair.drive();
        assert!(pair.a.machine.is_open() && pair.b.machine.is_open());
        pair.a.events.clear();
        pair.b.events.clear();
        pair
    }

    fn id(&mut self) -> MessageId {
        self.next_id += 1;
        MessageId::parse(&format!("00000000-0000-4000-8000-{:012x}", self.next_id)).expect("id")
    }

    /// Delivers everything in flight, both ways, until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            for from_a in [true, false] {
                let (from, to) = if from_a {
                    (&mut self.a, &mut self.b)
                } else {
                    (&mut self.b, &mut self.a)
                };
                while let Some(transmit) = from.machine.poll_transmit() {
                    moved = true;
                    from.sent.push(transmit.clone());
                    if !from.connected
                        || (!from.features && matches!(transmit.body, Body::Features(_)))
                    {
                        continue;
                    }
                    let id = transmit.id.unwrap_or_else(|| {
                        self.next_id += 1;
                        MessageId::parse(&format!("00000000-0000-4000-9000-{:012x}", self.next_id))
                            .expect("id")
                    });
                    let envelope = Envelope {
                        id,
                        from: from.did,
                        to: Some(to.did),
                        timestamp: example_time(),
                        correlation_id: transmit.correlation,
                        body: transmit.body,
                    };
                    to.machine.handle_message(self.now, envelope);
                }
                while let Some(event) = from.machine.poll_event() {
                    from.events.push_back(event);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances the clock to `now + by`, firing every timer on the way at its own time.
    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            let next = [self.a.machine.poll_timeout(), self.b.machine.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|at| *at <= target)
                .min();
            let Some(at) = next else { break };
            self.now = at.max(self.now);
            self.a.machine.handle_timeout(self.now);
            self.b.machine.handle_timeout(self.now);
            self.drive();
        }
        self.now = target;
        self.drive();
    }

    fn exec(&mut self, capability: &str, stream: bool, timeout: Duration) -> MessageId {
        let id = self.id();
        let spec = CallSpec::Exec {
            capability: capability.into(),
            args: json!({}),
            stream,
            extras: Box::default(),
        };
        self.a
            .machine
            .start_call(self.now, id, spec, self.now + timeout)
            .expect("call starts");
        self.drive();
        id
    }
}

impl Side {
    fn take(&mut self, mut pick: impl FnMut(&LinkEvent) -> bool) -> Vec<LinkEvent> {
        let (taken, kept): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|event| pick(event));
        self.events = kept.into();
        taken
    }

    fn served(&mut self) -> Vec<(MessageId, ServeRequest)> {
        self.take(|e| matches!(e, LinkEvent::Serve { .. }))
            .into_iter()
            .filter_map(|e| match e {
                LinkEvent::Serve { id, request } => Some((id, request)),
                _ => None,
            })
            .collect()
    }

    fn call_events(&mut self, call: MessageId) -> Vec<CallEvent> {
        self.take(|e| matches!(e, LinkEvent::Call { id, .. } if *id == call))
            .into_iter()
            .filter_map(|e| match e {
                LinkEvent::Call { event, .. } => Some(event),
                _ => None,
            })
            .collect()
    }

    fn heartbeats(&self) -> usize {
        self.sent
            .iter()
            .filter(|t| matches!(t.body, Body::Ping(p) if p.sequence > 0))
            .count()
    }

    fn has(&self, wanted: &LinkEvent) -> bool {
        self.events.iter().any(|e| e == wanted)
    }
}

#[test]
fn the_link_opens_on_the_peers_first_ping_after_its_features() {
    let mut pair = Pair::new(config(), config());
    let now = pair.now;
    pair.a.machine.handle_channel_open(now);
    pair.drive();
    for side in [&pair.a, &pair.b] {
        let kinds: Vec<_> = side.sent.iter().map(|t| t.body.message_type()).collect();
        assert_eq!(
            kinds[..2],
            [
                ioap_protocol::MessageType::Features,
                ioap_protocol::MessageType::Ping
            ]
        );
        assert!(side.has(&LinkEvent::Opened));
    }
}

#[test]
fn nothing_before_the_first_ping_is_acted_on() {
    let mut pair = Pair::new(config(), config());
    let request = Envelope {
        id: pair.id(),
        from: pair.b.did,
        to: Some(pair.a.did),
        timestamp: example_time(),
        correlation_id: None,
        body: Body::ExecRequest(ioap_protocol::payload::ExecRequest::new("echo", json!(1))),
    };
    pair.a.machine.handle_message(pair.now, request);
    pair.drive();
    assert!(!pair.a.machine.is_open());
    assert_eq!(pair.a.take(|e| matches!(e, LinkEvent::Refused)).len(), 1);
    assert!(
        pair.a.served().is_empty(),
        "a request before the PING was served"
    );
}

#[test]
fn setup_fails_exactly_at_its_deadline() {
    let mut pair = Pair::new(config(), config());
    pair.a.connected = false;
    pair.b.connected = false;
    let now = pair.now;
    pair.a.machine.handle_channel_open(now);
    pair.advance(10 * SECOND - Duration::from_millis(1));
    assert!(pair.a.machine.ended().is_none());
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.a.machine.ended(), Some(&LinkEnd::SetupTimeout));
    assert!(pair.a.has(&LinkEvent::Ended(LinkEnd::SetupTimeout)));
    assert_eq!(
        LinkEnd::SetupTimeout.call_error(),
        CallError::Setup(SetupError::Timeout)
    );
}

#[test]
fn an_idle_link_pings_every_other_second_each_way_and_a_busy_one_not_at_all() {
    let mut pair = Pair::open();
    pair.advance(10 * SECOND);
    // Both sides tick together: at each tick where neither sent, both PING; the PONGs that
    // answer count as traffic for the next tick, so each side PINGs on every other tick.
    assert_eq!(pair.a.heartbeats(), 5);
    assert_eq!(pair.b.heartbeats(), 5);
    assert!(pair.a.machine.is_open() && pair.b.machine.is_open());

    let before = (pair.a.heartbeats(), pair.b.heartbeats());
    for _ in 0..20 {
        let call = pair.exec("echo", false, 30 * SECOND);
        let (id, _) = pair.b.served().pop().expect("served");
        pair.b
            .machine
            .serve_done(pair.now, id, ServeOutcome::Value(json!(1)));
        pair.drive();
        assert_eq!(pair.a.call_events(call), [CallEvent::Done(Ok(json!(1)))]);
        pair.advance(SECOND / 2);
    }
    assert_eq!(
        (pair.a.heartbeats(), pair.b.heartbeats()),
        before,
        "a busy link PINGed"
    );
}

#[test]
fn silence_loses_the_link_exactly_after_the_link_timeout_and_fails_its_calls() {
    let mut pair = Pair::open();
    let call = pair.exec("slow", false, 60 * SECOND);
    pair.b.connected = false;
    let heard = pair.now;
    pair.advance(5 * SECOND - Duration::from_millis(1));
    assert!(pair.a.machine.is_open());
    pair.advance(Duration::from_millis(1));
    assert_eq!(pair.now - heard, 5 * SECOND);
    assert_eq!(pair.a.machine.ended(), Some(&LinkEnd::Silent(5 * SECOND)));
    let events = pair.a.call_events(call);
    assert!(matches!(
        events[..],
        [CallEvent::Done(Err(CallError::LinkLost { .. }))]
    ));
    assert!(matches!(
        pair.a.machine.start_call(
            pair.now,
            MessageId::random(),
            CallSpec::Intent(Intent::query("q", Value::Null)),
            pair.now + SECOND
        ),
        Err(CallError::LinkLost { .. })
    ));
}

#[test]
fn a_replaced_link_fails_calls_with_link_lost_and_stops_handlers() {
    let mut pair = Pair::open();
    let call = pair.exec("slow", false, 60 * SECOND);
    let (served, _) = pair.b.served().pop().expect("served");
    pair.a.machine.end(LinkEnd::Replaced);
    pair.b.machine.end(LinkEnd::Replaced);
    pair.drive();
    assert!(matches!(
        pair.a.call_events(call)[..],
        [CallEvent::Done(Err(CallError::LinkLost { .. }))]
    ));
    assert!(pair.b.has(&LinkEvent::StopServing { id: served }));
}

/// Serves one streamed EXEC on B producing `total` parts as fast as credit allows, while A
/// consumes one part every `every`. Returns the parts A received, in order, and its final.
fn stream_run(pair: &mut Pair, total: u64, every: Duration) -> (Vec<Value>, Vec<CallEvent>) {
    let call = pair.exec("count", true, 3600 * SECOND);
    let (id, _) = pair.b.served().pop().expect("served");
    let mut produced = 0;
    let mut received = Vec::new();
    let mut finals = Vec::new();
    let mut waiting = false;
    while finals.is_empty() {
        // The producer: as fast as it may.
        while !waiting && produced < total {
            let status = pair.b.machine.serve_part(pair.now, id, json!(produced));
            produced += 1;
            waiting = status == PartStatus::Held;
            assert_ne!(status, PartStatus::NotSent);
        }
        if produced == total && !waiting {
            pair.b
                .machine
                .serve_done(pair.now, id, ServeOutcome::Value(json!("done")));
            produced += 1;
        }
        pair.drive();
        if !pair
            .b
            .take(|e| matches!(e, LinkEvent::PartSent { id: sent } if *sent == id))
            .is_empty()
        {
            waiting = false;
        }
        let events = pair.a.call_events(call);
        let (held, window) = (events.len(), config().window as usize);
        assert!(
            held <= window + 1,
            "A holds {held} unread parts, window {window}"
        );
        // The consumer: one part per `every`.
        for event in events {
            match event {
                CallEvent::Part(part) => {
                    received.push(part);
                    pair.advance(every);
                    pair.a.machine.consume(call, 1);
                }
                done => finals.push(done),
            }
        }
        pair.drive();
    }
    (received, finals)
}

#[test]
fn a_slow_consumer_slows_the_producer_and_gets_every_part_in_order_then_the_final() {
    let mut pair = Pair::open();
    let (received, finals) = stream_run(&mut pair, 10_000, Duration::from_millis(10));
    let expected: Vec<Value> = (0..10_000u64).map(|i| json!(i)).collect();
    assert_eq!(received, expected);
    assert_eq!(finals, [CallEvent::Done(Ok(json!("done")))]);
    let credits = pair
        .a
        .sent
        .iter()
        .filter(|t| matches!(t.body, Body::Credit(_)))
        .count();
    assert!(
        credits >= 10_000 / 2 / 8,
        "credit went back in quarter windows: {credits}"
    );
    assert!(
        pair.a.machine.is_open(),
        "the link survived 100 s of streaming"
    );
}

#[test]
fn a_streamed_call_to_a_one_point_zero_peer_carries_no_window_and_is_bounded() {
    let mut pair = Pair::new(config(), config());
    pair.b.features = false;
    let now = pair.now;
    pair.a.machine.handle_channel_open(now);
    pair.drive();
    let call = pair.exec("count", true, 60 * SECOND);
    let (id, request) = pair.b.served().pop().expect("served");
    let ServeRequest::Exec { request, .. } = request else {
        panic!("not an exec")
    };
    assert_eq!(request.window, None);
    for i in 0..1025u32 {
        assert_eq!(
            pair.b.machine.serve_part(pair.now, id, json!(i)),
            PartStatus::Sent,
            "unflowed parts go at once"
        );
    }
    pair.drive();
    let events = pair.a.call_events(call);
    assert_eq!(events.len(), 1025);
    assert!(matches!(
        events.last(),
        Some(CallEvent::Done(Err(CallError::Protocol { .. })))
    ));
    assert!(
        !pair
            .a
            .sent
            .iter()
            .any(|t| matches!(t.body, Body::Cancel(_))),
        "a 1.0 peer gets no CANCEL"
    );
}

#[test]
fn a_part_beyond_the_credit_ends_the_call_and_cancels_it() {
    let mut pair = Pair::open();
    let call = pair.exec("count", true, 60 * SECOND);
    let (id, _) = pair.b.served().pop().expect("served");
    // A rogue callee ignores its credit: the machine would hold the part, so forge sends.
    for i in 0..=config().window {
        let forged = Envelope {
            id: pair.id(),
            from: pair.b.did,
            to: Some(pair.a.did),
            timestamp: example_time(),
            correlation_id: Some(call),
            body: Body::ExecResponse(ioap_protocol::payload::ExecResponse {
                status: ioap_protocol::payload::ExecStatus::Partial,
                result: Some(json!(i)),
                error: None,
                execution_time_ms: 0,
            }),
        };
        pair.a.machine.handle_message(pair.now, forged);
    }
    pair.drive();
    let events = pair.a.call_events(call);
    assert_eq!(events.len(), config().window as usize + 1);
    assert!(matches!(
        events.last(),
        Some(CallEvent::Done(Err(CallError::Protocol { .. })))
    ));
    assert!(
        pair.b.has(&LinkEvent::StopServing { id }),
        "the callee was told to stop"
    );
}

#[test]
fn cancelling_a_call_stops_its_handler_and_frees_its_slot() {
    let mut pair = Pair::open();
    let call = pair.exec("slow", false, 60 * SECOND);
    let (id, _) = pair.b.served().pop().expect("served");
    assert_eq!(pair.b.machine.load().1, 1);
    pair.a.machine.cancel_call(call);
    pair.drive();
    assert!(pair.b.has(&LinkEvent::StopServing { id }));
    assert_eq!(pair.b.machine.load().1, 0);
    assert_eq!(pair.a.machine.load().0, 0);
    // The handler's late result goes nowhere.
    let before = pair.b.sent.len();
    pair.b
        .machine
        .serve_done(pair.now, id, ServeOutcome::Value(json!(1)));
    pair.drive();
    assert_eq!(pair.b.sent.len(), before);
    assert!(
        pair.a.call_events(call).is_empty(),
        "a cancelled call got an event"
    );
}

#[test]
fn deadlines_expire_on_both_sides_at_the_same_instant() {
    let mut pair = Pair::open();
    let call = pair.exec("slow", false, 2 * SECOND);
    let (id, request) = pair.b.served().pop().expect("served");
    let ServeRequest::Exec { deadline, .. } = request else {
        panic!("not an exec")
    };
    assert_eq!(
        deadline,
        pair.now + 2 * SECOND,
        "the handler sees the caller's deadline"
    );
    pair.advance(2 * SECOND - Duration::from_millis(1));
    assert!(pair.a.call_events(call).is_empty());
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.a.call_events(call),
        [CallEvent::Done(Err(CallError::Timeout))]
    );
    assert!(pair.b.has(&LinkEvent::StopServing { id }));
    assert_eq!(pair.b.machine.load(), (0, 0));
    assert_eq!(pair.a.machine.load(), (0, 0));
}

#[test]
fn a_deadline_between_milliseconds_is_never_shortened_for_the_callee() {
    let mut pair = Pair::open();
    // 1.4993 s left: the callee gets 1,500 ms, so its timeout cannot answer before ours.
    let call = pair.exec("slow", false, Duration::from_micros(1_499_300));
    let (_, request) = pair.b.served().pop().expect("served");
    let ServeRequest::Exec { deadline, .. } = request else {
        panic!("not an exec")
    };
    assert_eq!(deadline, pair.now + Duration::from_millis(1500));
    pair.advance(Duration::from_micros(1_499_300));
    assert_eq!(
        pair.a.call_events(call),
        [CallEvent::Done(Err(CallError::Timeout))],
        "the caller's own deadline comes first"
    );
}

#[test]
fn the_callee_bounds_what_it_serves_and_the_caller_what_it_calls() {
    let mut small = config();
    small.max_serving = 2;
    small.max_calls = 3;
    let mut pair = Pair::new(small, small);
    let now = pair.now;
    pair.a.machine.handle_channel_open(now);
    pair.drive();
    let calls: Vec<_> = (0..3)
        .map(|_| pair.exec("slow", false, 60 * SECOND))
        .collect();
    assert_eq!(pair.b.served().len(), 2);
    assert!(matches!(
        pair.a.call_events(calls[2])[..],
        [CallEvent::Done(Err(CallError::Remote {
            code: ErrorCode::TooManyRequests,
            ..
        }))]
    ));
    let spec = CallSpec::Exec {
        capability: "x".into(),
        args: Value::Null,
        stream: false,
        extras: Box::default(),
    };
    let (first, second) = (pair.id(), pair.id());
    pair.a
        .machine
        .start_call(pair.now, first, spec.clone(), pair.now + SECOND)
        .expect("room again");
    assert!(matches!(
        pair.a
            .machine
            .start_call(pair.now, second, spec, pair.now + SECOND),
        Err(CallError::Busy { .. })
    ));
}

#[test]
fn intents_are_answered_with_a_reply_or_an_error_and_remote_codes_stay_remote() {
    let mut pair = Pair::open();
    let id = pair.id();
    let spec = CallSpec::Intent(Intent::query("weather?", Value::Null));
    pair.a
        .machine
        .start_call(pair.now, id, spec, pair.now + 30 * SECOND)
        .expect("starts");
    pair.drive();
    let (served, request) = pair.b.served().pop().expect("served");
    assert!(
        matches!(request, ServeRequest::Intent { deadline, .. } if deadline == pair.now + INTENT_DEADLINE)
    );
    pair.b.machine.serve_done(
        pair.now,
        served,
        ServeOutcome::Reply(IntentReply::declined("no")),
    );
    pair.drive();
    assert!(matches!(
        pair.a.call_events(id)[..],
        [CallEvent::Done(Ok(_))]
    ));

    let call = pair.exec("echo", false, 30 * SECOND);
    let (served, _) = pair.b.served().pop().expect("served");
    let error = ioap_protocol::payload::ErrorPayload::new(ErrorCode::LinkLost, "a handler lying");
    pair.b
        .machine
        .serve_done(pair.now, served, ServeOutcome::Failed(error));
    pair.drive();
    let events = pair.a.call_events(call);
    assert!(matches!(&events[..], [CallEvent::Done(Err(e))] if e.is_remote()));
    assert!(
        pair.a.machine.is_open(),
        "a remote LINK_LOST does not end the link"
    );
}

#[test]
fn the_window_setting_is_clamped_to_the_protocol_bound() {
    let limits = crate::link::LinkLimits::default();
    assert_eq!(limits.window(0).window, 1);
    assert_eq!(limits.window(MAX_WINDOW + 1).window, MAX_WINDOW);
    assert_eq!(limits.window(7).window, 7);
}

#[test]
fn an_answer_after_the_deadline_is_a_timeout_even_before_the_timer_fires() {
    let mut pair = Pair::open();
    let call = pair.exec("echo", false, 2 * SECOND);
    let (id, _) = pair.b.served().pop().expect("served");
    // The clock passes the deadline, but A's timer has not been handled yet.
    pair.now += 2 * SECOND;
    pair.b
        .machine
        .serve_done(pair.now, id, ServeOutcome::Value(json!(1)));
    pair.drive();
    assert_eq!(
        pair.a.call_events(call),
        [CallEvent::Done(Err(CallError::Timeout))]
    );
}

#[test]
fn the_round_trip_is_measured_from_ping_to_its_pong_and_smoothed() {
    let mut pair = Pair::new(config(), config());
    let from_b = |pair: &mut Pair, body: Body| Envelope {
        id: pair.id(),
        from: pair.b.did,
        to: Some(pair.a.did),
        timestamp: example_time(),
        correlation_id: None,
        body,
    };
    let start = pair.now;
    pair.a.machine.handle_channel_open(start);
    let ping = from_b(
        &mut pair,
        Body::Ping(ioap_protocol::payload::Ping { sequence: 0 }),
    );
    pair.a
        .machine
        .handle_message(start + Duration::from_millis(10), ping);
    assert!(pair.a.machine.is_open());
    assert_eq!(pair.a.machine.rtt(), None, "no PONG yet");
    // A PONG to a PING never sent changes nothing; the PONG to ours is one 40 ms sample.
    let stray = from_b(
        &mut pair,
        Body::Pong(ioap_protocol::payload::Ping { sequence: 9 }),
    );
    pair.a
        .machine
        .handle_message(start + Duration::from_millis(20), stray);
    assert_eq!(pair.a.machine.rtt(), None);
    let pong = from_b(
        &mut pair,
        Body::Pong(ioap_protocol::payload::Ping { sequence: 0 }),
    );
    pair.a
        .machine
        .handle_message(start + Duration::from_millis(40), pong);
    assert_eq!(pair.a.machine.rtt(), Some(Duration::from_millis(40)));
    // Idle: the heartbeat PINGs (sequence 1); its PONG 80 ms later moves the estimate 1/8.
    while pair.a.machine.poll_transmit().is_some() {}
    let mut now = start + Duration::from_millis(40);
    let mut sequence = None;
    while sequence.is_none() {
        now = pair.a.machine.poll_timeout().expect("heartbeat timer");
        pair.a.machine.handle_timeout(now);
        while let Some(transmit) = pair.a.machine.poll_transmit() {
            if let Body::Ping(ping) = transmit.body {
                sequence = Some(ping.sequence);
            }
        }
    }
    let sequence = sequence.expect("a heartbeat PING");
    let pong = from_b(
        &mut pair,
        Body::Pong(ioap_protocol::payload::Ping { sequence }),
    );
    pair.a
        .machine
        .handle_message(now + Duration::from_millis(80), pong);
    assert_eq!(pair.a.machine.rtt(), Some(Duration::from_millis(45)));
}
