//! Phase 4, signaling only: signaling agent `2k` sends OFFERs with a realistic SDP (about
//! 1.9 KB on the wire) to `2k + 1` through the gateway for the duration, at most `window` in
//! flight per pair (and at most `rate` per second per pair when set). Latency runs from the
//! send to the receiving client's verified delivery; the gateway's ERRORs are counted by code;
//! frames neither delivered nor refused by the end of the drain are `LOST`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ioap_client::ConnectionEvent;
use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, Did, Envelope, MessageId};
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

use super::progress::{Display, Progress};
use super::register::{Fleet, SignalingAgent};
use super::report::INTERRUPTED;
use super::stats::{SharedTally, Tally};
use super::{Plan, until_stopped};

/// Frames neither delivered nor refused when the phase ended.
pub const LOST: &str = "LOST";
/// The gateway connection was gone when a frame was to be sent.
pub const SEND_FAILED: &str = "SEND_FAILED";
/// A signaling agent's gateway connection ended without a close code.
pub const CONNECTION_LOST: &str = "CONNECTION_LOST";
/// The SDP attribute that carries the frame's sequence number.
const SEQUENCE_ATTRIBUTE: &str = "a=x-ioap-loadtest-seq:";

/// What the phase measured.
#[derive(Debug)]
pub struct RelayOutcome {
    /// Sender → receiver pairs that ran.
    pub pairs: usize,
    /// Frames sent.
    pub sent: u64,
    /// Delivery latency, and failures by code (including `LOST`).
    pub tally: Tally,
    /// Signaling agents' gateway connections that ended during the run, by close code.
    pub disconnections: Tally,
    /// How long frames were sent for.
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy)]
struct PairPlan {
    window: usize,
    interval: Option<Duration>,
    stop_sending: Instant,
    give_up: Instant,
}

/// Runs the relay phase over the fleet's signaling agents (who are handed back afterwards).
/// When `stop` is cancelled, sending stops and frames in flight count as `INTERRUPTED`.
pub async fn run(
    plan: &Plan,
    fleet: &mut Fleet,
    stop: &CancellationToken,
    display: Display,
) -> RelayOutcome {
    let started = Instant::now();
    let pair_plan = PairPlan {
        window: plan.relay_window,
        interval: (plan.relay_rate > 0)
            .then(|| Duration::from_secs_f64(1.0 / f64::from(plan.relay_rate))),
        stop_sending: started + plan.duration,
        give_up: started + plan.duration + plan.timeout,
    };
    let counters = Counters {
        stop: stop.clone(),
        ..Counters::default()
    };
    let mut tasks = Vec::new();
    let pair_count = (fleet.signaling.len() / 2).max(1);
    for (index, pair) in fleet.signaling.chunks_exact_mut(2).enumerate() {
        if pair.iter().all(Option::is_some)
            && let [Some(from), Some(to)] = [pair[0].take(), pair[1].take()]
        {
            let ticker = pair_plan.interval.map(|period| {
                // Paced pairs start spread over one period, not all at once.
                let offset = period.mul_f64(index as f64 / pair_count as f64);
                tokio::time::interval_at((started + offset).into(), period)
            });
            let task = tokio::spawn(run_pair(from, to, pair_plan, ticker, counters.clone()));
            tasks.push((index, task));
        }
    }
    let pairs = tasks.len();
    let seconds = plan.duration.as_secs();
    let progress = Progress::start(display, "relay", seconds);
    for second in 1..=seconds {
        let next = tokio::time::sleep_until((started + Duration::from_secs(second)).into());
        if until_stopped(stop, next).await.is_none() {
            break;
        }
        progress.step();
        let delivered = counters.tally.snapshot().succeeded();
        progress.note(format!("{delivered} delivered"));
    }
    for (index, task) in tasks {
        if let Ok((from, to)) = task.await {
            fleet.signaling[2 * index] = Some(from);
            fleet.signaling[2 * index + 1] = Some(to);
        }
    }
    // Sending lasted the duration, or less when interrupted.
    let elapsed = started.elapsed().min(plan.duration);
    let tally = counters.tally.snapshot();
    let sent = counters.sent.load(Ordering::Relaxed);
    progress.finish(&format!(
        "{pairs} pairs, {sent} sent, {} delivered, {} failed",
        tally.succeeded(),
        tally.failed()
    ));
    RelayOutcome {
        pairs,
        sent,
        tally,
        disconnections: counters.disconnections.snapshot(),
        elapsed,
    }
}

/// Frames of one pair in flight: by sequence number, and by message id (for the gateway's
/// ERRORs, which name the id).
#[derive(Debug, Default)]
struct InFlight {
    by_sequence: HashMap<u64, (Instant, MessageId)>,
    by_id: HashMap<MessageId, u64>,
}

impl InFlight {
    fn len(&self) -> usize {
        self.by_sequence.len()
    }

    fn sent(&mut self, sequence: u64, id: MessageId, at: Instant) {
        self.by_sequence.insert(sequence, (at, id));
        self.by_id.insert(id, sequence);
    }

    /// Sent when, if `sequence` was in flight.
    fn delivered(&mut self, sequence: u64) -> Option<Instant> {
        let (at, id) = self.by_sequence.remove(&sequence)?;
        self.by_id.remove(&id);
        Some(at)
    }

    /// Whether `id` was in flight.
    fn refused(&mut self, id: MessageId) -> bool {
        let Some(sequence) = self.by_id.remove(&id) else {
            return false;
        };
        self.by_sequence.remove(&sequence);
        true
    }
}

/// What every pair adds to, and the run's stop signal.
#[derive(Debug, Clone, Default)]
struct Counters {
    tally: SharedTally,
    disconnections: SharedTally,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
}

async fn run_pair(
    mut from: SignalingAgent,
    mut to: SignalingAgent,
    plan: PairPlan,
    mut ticker: Option<Interval>,
    counters: Counters,
) -> (SignalingAgent, SignalingAgent) {
    let Counters {
        tally,
        disconnections,
        sent,
        stop,
    } = counters;
    let mut unfinished = LOST;
    let client = &from.client;
    let receiver = to.client.did();
    let mut in_flight = InFlight::default();
    let mut next_sequence = 0;
    let mut sending = true;
    let stop_sending = tokio::time::sleep_until(plan.stop_sending.into());
    let give_up = tokio::time::sleep_until(plan.give_up.into());
    tokio::pin!(stop_sending, give_up);
    loop {
        while sending && ticker.is_none() && in_flight.len() < plan.window {
            sending = send(client, receiver, &mut next_sequence, &mut in_flight, &tally);
            sent.fetch_add(u64::from(sending), Ordering::Relaxed);
        }
        if !sending && in_flight.len() == 0 {
            break;
        }
        let room = sending && in_flight.len() < plan.window;
        tokio::select! {
            Some(envelope) = to.inbound.recv() => {
                let delivered = sequence_of(&envelope).and_then(|s| in_flight.delivered(s));
                if let Some(at) = delivered {
                    tally.update(|t| t.success(at.elapsed()));
                }
            }
            Some(envelope) = from.inbound.recv() => {
                if let (Body::Error(error), Some(id)) = (&envelope.body, envelope.correlation_id)
                    && in_flight.refused(id)
                {
                    tally.update(|t| t.failure(error.code.as_str(), 1));
                }
            }
            () = tick(&mut ticker), if room => {
                sending = send(client, receiver, &mut next_sequence, &mut in_flight, &tally);
                sent.fetch_add(u64::from(sending), Ordering::Relaxed);
            }
            Some(event) = from.events.recv() => count_disconnection(&disconnections, &event),
            Some(event) = to.events.recv() => count_disconnection(&disconnections, &event),
            () = &mut stop_sending, if sending => sending = false,
            () = &mut give_up => break,
            () = stop.cancelled() => {
                unfinished = INTERRUPTED;
                break;
            }
        }
    }
    let unanswered = in_flight.len() as u64;
    tally.update(|t| t.failure(unfinished, unanswered));
    // A disconnection can be queued when the last frame is answered and the loop ends.
    for events in [&mut from.events, &mut to.events] {
        while let Ok(event) = events.try_recv() {
            count_disconnection(&disconnections, &event);
        }
    }
    (from, to)
}

/// A gateway connection that ended under an agent, by close code (`CLOSED_4006` when the
/// gateway closed a sender for flooding) or `CONNECTION_LOST`.
fn count_disconnection(disconnections: &SharedTally, event: &ConnectionEvent) {
    if let ConnectionEvent::Disconnected { close_code, .. } = event {
        let code = close_code.map_or_else(|| CONNECTION_LOST.to_owned(), |c| format!("CLOSED_{c}"));
        disconnections.update(|t| t.failure(code, 1));
    }
}

/// Sends the next frame; `false` when the connection cannot take it (sending stops).
fn send(
    client: &ioap_client::GatewayClient,
    to: Did,
    next_sequence: &mut u64,
    in_flight: &mut InFlight,
    tally: &SharedTally,
) -> bool {
    let sequence = *next_sequence;
    *next_sequence += 1;
    let sdp = format!(
        "{}{SEQUENCE_ATTRIBUTE}{sequence}\r\n",
        ioap_protocol::samples::example_sdp()
    );
    let at = Instant::now();
    match client.try_send(to, Body::Offer(SessionDescription { sdp }), None) {
        Ok(id) => {
            in_flight.sent(sequence, id, at);
            true
        }
        Err(_) => {
            tally.update(|t| t.failure(SEND_FAILED, 1));
            false
        }
    }
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The sequence number a relayed OFFER carries.
fn sequence_of(envelope: &Envelope) -> Option<u64> {
    let Body::Offer(offer) = &envelope.body else {
        return None;
    };
    let start = offer.sdp.rfind(SEQUENCE_ATTRIBUTE)? + SEQUENCE_ATTRIBUTE.len();
    offer.sdp[start..].trim_end().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioap_protocol::{Identity, Timestamp};

    #[test]
    fn the_sequence_number_rides_in_the_sdp() {
        let identity = Identity::from_seed(&[7; 32]);
        let sdp = format!("v=0\r\n{SEQUENCE_ATTRIBUTE}41\r\n");
        let envelope = Envelope::new(
            identity.did(),
            None,
            Body::Offer(SessionDescription { sdp }),
            Timestamp::from_system_time(std::time::SystemTime::now()),
        );
        assert_eq!(sequence_of(&envelope), Some(41));
        let other = Envelope::new(
            identity.did(),
            None,
            Body::Offer(SessionDescription { sdp: "v=0".into() }),
            envelope.timestamp,
        );
        assert_eq!(sequence_of(&other), None);
    }

    #[test]
    fn in_flight_frames_leave_once_by_either_door() {
        let mut in_flight = InFlight::default();
        let (a, b) = (MessageId::random(), MessageId::random());
        let now = Instant::now();
        in_flight.sent(0, a, now);
        in_flight.sent(1, b, now);
        assert_eq!(in_flight.delivered(0), Some(now));
        assert!(!in_flight.refused(a), "already delivered");
        assert!(in_flight.refused(b));
        assert_eq!(in_flight.delivered(1), None, "already refused");
        assert_eq!(in_flight.len(), 0);
    }
}
