//! Two peer connections in virtual time (quinn-proto's `Pair` style): datagrams are handed
//! across with a chosen one-way delay, nothing touches a socket or the clock.

use std::collections::VecDeque;

use str0m::net::{Protocol, Receive};

use super::*;

const A: &str = "10.0.0.1:1000";
const B: &str = "10.0.0.2:2000";

struct End {
    slot: Slot,
    events: mpsc::Receiver<RtcEvent>,
    seen: Vec<RtcEvent>,
}

impl End {
    fn new(addr: &str, now: Instant) -> End {
        let (tx, events) = mpsc::channel(crate::rtc::EVENT_BUFFER);
        let host = IceCandidate::host(addr.parse().expect("addr"), "udp").expect("candidate");
        let slot = Slot::new(
            &RtcSettings::default(),
            &Shared::generate().expect("certificate"),
            str0m::IceCreds {
                ufrag: super::super::random_token(8).expect("random"),
                pass: super::super::random_token(24).expect("random"),
            },
            &[(host, CandidateKind::Host)],
            tx,
            now,
        );
        End {
            slot,
            events,
            seen: Vec::new(),
        }
    }

    fn collect(&mut self) {
        self.slot.flush_events();
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }

    fn opened(&self) -> bool {
        self.seen.iter().any(|e| matches!(e, RtcEvent::ChannelOpen))
    }

    fn messages(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                RtcEvent::Message(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Two ends, the datagrams in flight with their arrival times, and virtual time.
struct Pair {
    a: End,
    b: End,
    now: Instant,
    delay: Duration,
    in_flight: VecDeque<(Instant, Transmit)>,
    /// Datagrams to and from A are lost while this is set.
    a_unreachable: bool,
    /// Datagrams sent so far.
    sent: usize,
}

impl Pair {
    fn new(delay: Duration) -> Pair {
        let now = Instant::now();
        Pair {
            a: End::new(A, now),
            b: End::new(B, now),
            now,
            delay,
            in_flight: VecDeque::new(),
            a_unreachable: false,
            sent: 0,
        }
    }

    fn send(&mut self, out: Vec<Transmit>) {
        for transmit in out {
            self.sent += 1;
            self.in_flight.push_back((self.now + self.delay, transmit));
        }
    }

    /// Offer, answer and the trickled candidates, as the gateway would carry them.
    fn negotiate(&mut self) {
        let mut out = Vec::new();
        let offer = self.a.slot.offer(self.now, &mut out).expect("offer");
        let answer = self
            .b
            .slot
            .answer(&offer, self.now, &mut out)
            .expect("answer");
        self.a
            .slot
            .accept_answer(&answer, self.now, &mut out)
            .expect("accept");
        self.send(out);
        self.a.collect();
        self.b.collect();
        for (from, to) in [(true, false), (false, true)] {
            let candidates: Vec<Candidate> = {
                let end = if from { &self.a } else { &self.b };
                end.seen
                    .iter()
                    .filter_map(|e| match e {
                        RtcEvent::LocalCandidate(c) => Some(c.clone()),
                        _ => None,
                    })
                    .collect()
            };
            let target = if to { &mut self.a } else { &mut self.b };
            let mut out = Vec::new();
            for candidate in &candidates {
                target
                    .slot
                    .add_remote(candidate, self.now, &mut out)
                    .expect("candidate");
            }
            self.send(out);
        }
    }

    /// Advances to the next arrival or timer and handles it.
    fn step(&mut self) {
        let next_arrival = self.in_flight.front().map(|(at, _)| *at);
        let next_timer = self.a.slot.deadline().min(self.b.slot.deadline());
        let mut out = Vec::new();
        match next_arrival {
            Some(at) if at <= next_timer => {
                self.now = self.now.max(at);
                let (_, transmit) = self.in_flight.pop_front().expect("arrival");
                let a: SocketAddr = A.parse().expect("addr");
                let to_a = transmit.destination == a;
                if !(self.a_unreachable && (to_a || transmit.source == a)) {
                    let end = if to_a { &mut self.a } else { &mut self.b };
                    let receive = Receive::new(
                        Protocol::Udp,
                        transmit.source,
                        transmit.destination,
                        &transmit.contents,
                    )
                    .expect("datagram");
                    let input = Input::Receive(self.now, receive);
                    assert!(end.slot.accepts(&input), "the peer takes its own datagrams");
                    let Input::Receive(_, receive) = input else {
                        unreachable!()
                    };
                    end.slot.handle_receive(self.now, receive, &mut out);
                }
            }
            _ => {
                self.now = self.now.max(next_timer);
                self.a.slot.handle_timeout(self.now, &mut out);
                self.b.slot.handle_timeout(self.now, &mut out);
            }
        }
        self.send(out);
        self.a.collect();
        self.b.collect();
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> Duration {
        let start = self.now;
        while !done(self) {
            assert!(self.now - start < limit, "not done within {limit:?}");
            self.step();
        }
        self.now - start
    }
}

#[test]
fn a_channel_opens_within_a_few_round_trips_and_carries_text_both_ways() {
    let delay = Duration::from_millis(10);
    let mut pair = Pair::new(delay);
    pair.negotiate();
    let took = pair.run_until(Duration::from_secs(5), |p| p.a.opened() && p.b.opened());
    // ICE, DTLS and SCTP take a handful of 20 ms round trips; a lost first flight would
    // cost a 1 s retransmission.
    assert!(took < Duration::from_millis(300), "opened after {took:?}");
    for end in [&pair.a, &pair.b] {
        assert!(end.seen.iter().any(|e| matches!(e, RtcEvent::PathFound)));
        let path = end.slot.path().expect("a path once connected");
        assert_eq!(path.local, CandidateKind::Host);
    }

    let mut out = Vec::new();
    let (reply, mut sent) = oneshot::channel();
    pair.a.slot.send("hello".into(), reply, pair.now, &mut out);
    assert!(matches!(sent.try_recv(), Ok(Ok(()))));
    let (reply, _sent) = oneshot::channel();
    pair.b.slot.send("olleh".into(), reply, pair.now, &mut out);
    pair.send(out);
    pair.run_until(Duration::from_secs(1), |p| {
        !p.a.messages().is_empty() && !p.b.messages().is_empty()
    });
    assert_eq!(pair.b.messages(), ["hello"]);
    assert_eq!(pair.a.messages(), ["olleh"]);
}

#[test]
fn a_send_before_the_channel_opens_is_refused() {
    let mut pair = Pair::new(Duration::from_millis(1));
    let mut out = Vec::new();
    let (reply, mut sent) = oneshot::channel();
    pair.a.slot.send("early".into(), reply, pair.now, &mut out);
    assert!(matches!(sent.try_recv(), Ok(Err(_))));
}

/// str0m alone keeps a pair whose peer sent checks in the last 15 s (a fixed grace); the
/// slot's own silence limit notices a vanished peer within the failed timeout (5 s), as
/// PROTOCOL_DESIGN.md §11.3 asks of the transport.
#[test]
fn a_vanished_peer_is_noticed_within_the_failed_timeout() {
    let mut pair = Pair::new(Duration::from_millis(5));
    pair.negotiate();
    pair.run_until(Duration::from_secs(5), |p| p.a.opened() && p.b.opened());
    pair.a_unreachable = true;
    let took = pair.run_until(Duration::from_secs(60), |p| {
        p.b.seen
            .iter()
            .any(|e| matches!(e, RtcEvent::State(RtcState::Disconnected)))
    });
    let limit = RtcSettings::default().ice_failed_timeout;
    assert!(took <= limit, "noticed after {took:?}");
    assert!(
        took >= limit - Duration::from_secs(2),
        "noticed after {took:?}: too eager"
    );
    assert!(pair.b.slot.is_dead());
}

#[test]
fn an_idle_peer_that_answers_is_not_taken_for_gone() {
    let mut pair = Pair::new(Duration::from_millis(5));
    pair.negotiate();
    pair.run_until(Duration::from_secs(5), |p| p.a.opened() && p.b.opened());
    let start = pair.now;
    while pair.now - start < Duration::from_secs(30) {
        pair.step();
    }
    for end in [&pair.a, &pair.b] {
        assert!(!end.slot.is_dead());
        assert!(
            !end.seen
                .iter()
                .any(|e| matches!(e, RtcEvent::State(RtcState::Disconnected))),
            "30 s idle, consent checks answered: still connected"
        );
    }
}

#[test]
fn idle_links_wake_rarely() {
    let mut pair = Pair::new(Duration::from_millis(1));
    pair.negotiate();
    pair.run_until(Duration::from_secs(5), |p| p.a.opened() && p.b.opened());
    let (start, sent_before) = (pair.now, pair.sent);
    while pair.now - start < Duration::from_secs(60) {
        pair.step();
    }
    let datagrams = pair.sent - sent_before;
    assert!(!pair.a.slot.is_dead() && !pair.b.slot.is_dead());
    // ICE consent only, a check and its answer every 2 s each way (2 datagrams a second for
    // both ends), and SCTP's rare heartbeats; checks every second would make 240.
    assert!(datagrams < 140, "{datagrams} datagrams in 60 s idle");
}

#[test]
fn a_connected_pair_is_checked_every_two_seconds_and_a_longer_timeout_retransmits_more() {
    assert_eq!(stun_retransmits(Duration::from_secs(5)), 4);
    assert_eq!(stun_wait(4), STUN_MAX_RTO, "the consent interval");
    assert_eq!(
        stun_retransmits(Duration::ZERO),
        4,
        "never checked more often"
    );
    assert_eq!(ice_timeout(5), Duration::from_millis(7500));
    assert_eq!(stun_retransmits(Duration::from_millis(7499)), 4);
    assert_eq!(stun_retransmits(Duration::from_millis(7500)), 5);
}

#[test]
fn a_closed_connection_takes_no_more_datagrams_from_its_peer() {
    let mut pair = Pair::new(Duration::from_millis(1));
    pair.negotiate();
    pair.run_until(Duration::from_secs(5), |p| p.a.opened() && p.b.opened());
    let mut out = Vec::new();
    pair.b
        .slot
        .send("to a".into(), oneshot::channel().0, pair.now, &mut out);
    let a: SocketAddr = A.parse().expect("addr");
    let to_a = out
        .iter()
        .find(|t| t.destination == a)
        .expect("b sends a datagram to a");
    let receive = || {
        let receive = Receive::new(Protocol::Udp, to_a.source, a, &to_a.contents).expect("dtls");
        Input::Receive(pair.now, receive)
    };
    assert!(
        pair.a.slot.accepts(&receive()),
        "open: the peer's data is a's"
    );

    pair.a.slot.close();
    assert!(
        !pair.a.slot.accepts(&receive()),
        "closed: a re-dial from the same address must find its own connection"
    );
}

#[test]
fn a_link_that_does_not_take_its_messages_loses_its_connection_at_the_byte_bound() {
    let mut end = End::new(A, Instant::now());
    // The link's queue fills first; then the backlog, by bytes long before its count.
    let piece = "x".repeat(1 << 20);
    let room = end.slot.events.capacity();
    let mut emitted = 0;
    while !end.slot.dead {
        end.slot.emit(RtcEvent::Message(piece.clone()));
        emitted += 1;
        assert!(emitted < EVENT_BACKLOG, "given up by bytes, not by count");
    }
    let held = room + EVENT_BACKLOG_BYTES / piece.len();
    assert_eq!(emitted, held + 1, "the bound is exact");
    assert_eq!(end.slot.backlog_bytes, 0);
    assert!(!end.slot.has_backlog());
}
