//! The idempotency keys a callee holds (PROTOCOL_DESIGN.md §11.10): per caller, the first
//! request's digest and, once its handler finished, the outcome, for a window; bounded in keys
//! per caller, keys in all and bytes of recorded outcomes. Time is an input.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ioap_protocol::{Did, ErrorCode};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::machine::ServeOutcome;

#[cfg(test)]
mod tests;

/// How many idempotency keys an agent holds, and for how long (PROTOCOL_DESIGN.md §11.10).
/// A request with a new key beyond a bound is refused with TOO_MANY_REQUESTS before its
/// handler runs; a key is never dropped before its window ends.
///
/// ```
/// use std::time::Duration;
/// use ioap_client::IdempotencyLimits;
/// let limits = IdempotencyLimits::default().window(Duration::from_secs(60));
/// assert_eq!(limits.max_keys, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyLimits {
    /// How long an outcome is kept after its handler finished.
    pub window: Duration,
    /// Keys held in all (running and recorded).
    pub max_keys: usize,
    /// Keys held for one caller.
    pub max_keys_per_caller: usize,
    /// Bytes of recorded outcomes (their JSON), in all. New keys are refused once reached;
    /// an outcome finishing beyond it is still recorded (by at most the outcomes running).
    pub max_bytes: usize,
}

impl Default for IdempotencyLimits {
    fn default() -> Self {
        IdempotencyLimits {
            window: Duration::from_secs(600),
            max_keys: 10_000,
            max_keys_per_caller: 1_000,
            max_bytes: 64 << 20,
        }
    }
}

impl IdempotencyLimits {
    /// Sets [`window`](Self::window).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets [`max_keys`](Self::max_keys) and [`max_keys_per_caller`](Self::max_keys_per_caller).
    pub fn max_keys(mut self, in_all: usize, per_caller: usize) -> Self {
        self.max_keys = in_all;
        self.max_keys_per_caller = per_caller;
        self
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// Where a running operation's outcome appears (`None` until it finishes; the sender is
/// dropped if it is cancelled).
pub(crate) type OutcomeWatch = watch::Receiver<Option<ServeOutcome>>;

/// What to do with a request carrying a key.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The first request: run the handler, publish through `outcome`, then call
    /// [`Operations::finish`] with `generation`.
    Run {
        generation: u64,
        outcome: watch::Sender<Option<ServeOutcome>>,
    },
    /// A repeat while the first run goes on: wait for its outcome.
    Wait(OutcomeWatch),
    /// A repeat after the outcome was recorded.
    Recorded(ServeOutcome),
    /// A repeat for another capability or other args.
    Conflict,
    /// A bound is reached; says which.
    Full(&'static str),
}

type Key = (Did, String);

#[derive(Debug)]
enum State {
    Running {
        outcome: OutcomeWatch,
        abort: Option<AbortHandle>,
    },
    Recorded {
        outcome: ServeOutcome,
        bytes: usize,
    },
}

#[derive(Debug)]
struct Entry {
    digest: [u8; 32],
    generation: u64,
    state: State,
}

/// The keys held, by caller and key.
#[derive(Debug, Default)]
pub(crate) struct Operations {
    limits: IdempotencyLimits,
    entries: HashMap<Key, Entry>,
    per_caller: HashMap<Did, usize>,
    bytes: usize,
    /// Recorded keys in the order their windows end (the window is the same for all).
    expiry: VecDeque<(Instant, Key, u64)>,
    next_generation: u64,
}

impl Operations {
    pub(crate) fn new(limits: IdempotencyLimits) -> Self {
        Operations {
            limits,
            ..Operations::default()
        }
    }

    /// A request from `caller` with `key` for the operation whose digest is `digest`.
    pub(crate) fn begin(
        &mut self,
        now: Instant,
        caller: Did,
        key: &str,
        digest: [u8; 32],
    ) -> Begin {
        self.expire(now);
        let id = (caller, key.to_owned());
        if let Some(entry) = self.entries.get(&id) {
            if entry.digest != digest {
                return Begin::Conflict;
            }
            return match &entry.state {
                State::Running { outcome, .. } => Begin::Wait(outcome.clone()),
                State::Recorded { outcome, .. } => Begin::Recorded(outcome.clone()),
            };
        }
        let held = self.per_caller.get(&caller).copied().unwrap_or(0);
        if held >= self.limits.max_keys_per_caller {
            return Begin::Full("idempotency keys held for this caller");
        }
        if self.entries.len() >= self.limits.max_keys {
            return Begin::Full("idempotency keys held");
        }
        if self.bytes >= self.limits.max_bytes {
            return Begin::Full("bytes of recorded outcomes");
        }
        let (sender, receiver) = watch::channel(None);
        self.next_generation += 1;
        let generation = self.next_generation;
        self.entries.insert(
            id,
            Entry {
                digest,
                generation,
                state: State::Running {
                    outcome: receiver,
                    abort: None,
                },
            },
        );
        *self.per_caller.entry(caller).or_default() += 1;
        Begin::Run {
            generation,
            outcome: sender,
        }
    }

    /// The task running `generation` of `(caller, key)`, for [`cancel`](Self::cancel).
    pub(crate) fn running(&mut self, caller: Did, key: &str, generation: u64, task: AbortHandle) {
        if let Some(entry) = self.entries.get_mut(&(caller, key.to_owned()))
            && entry.generation == generation
            && let State::Running { abort, .. } = &mut entry.state
        {
            *abort = Some(task);
        }
    }

    /// The handler of `generation` ended with `outcome`: recorded if the handler finished
    /// (§11.10 rule 3), otherwise the key is forgotten.
    pub(crate) fn finish(
        &mut self,
        now: Instant,
        caller: Did,
        key: &str,
        generation: u64,
        outcome: &ServeOutcome,
    ) {
        let id = (caller, key.to_owned());
        if self
            .entries
            .get(&id)
            .is_none_or(|e| e.generation != generation)
        {
            return;
        }
        if !is_recorded(outcome) {
            self.forget(&id);
            return;
        }
        let bytes = outcome_bytes(outcome);
        self.bytes += bytes;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.state = State::Recorded {
                outcome: outcome.clone(),
                bytes,
            };
        }
        self.expiry
            .push_back((now + self.limits.window, id, generation));
    }

    /// The caller cancelled a request with `key`: the operation stops and the key is
    /// forgotten.
    pub(crate) fn cancel(&mut self, caller: Did, key: &str) {
        let id = (caller, key.to_owned());
        if let Some(Entry {
            state: State::Running { abort, .. },
            ..
        }) = self.entries.get(&id)
        {
            if let Some(task) = abort {
                task.abort();
            }
            self.forget(&id);
        }
    }

    /// Keys held (running and recorded) and bytes of recorded outcomes.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.expiry.front() {
            if *at > now {
                break;
            }
            let Some((_, id, generation)) = self.expiry.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                self.forget(&id);
            }
        }
    }

    fn forget(&mut self, id: &Key) {
        let Some(entry) = self.entries.remove(id) else {
            return;
        };
        if let State::Recorded { bytes, .. } = entry.state {
            self.bytes -= bytes;
        }
        if let Some(count) = self.per_caller.get_mut(&id.0) {
            *count -= 1;
            if *count == 0 {
                self.per_caller.remove(&id.0);
            }
        }
    }
}

/// Whether the handler finished (its result, or its own HANDLER_ERROR / INVALID_ARGS), as
/// opposed to being stopped.
fn is_recorded(outcome: &ServeOutcome) -> bool {
    match outcome {
        ServeOutcome::Value(_) | ServeOutcome::Reply(_) => true,
        ServeOutcome::Failed(error) => {
            matches!(error.code, ErrorCode::HandlerError | ErrorCode::InvalidArgs)
        }
    }
}

fn outcome_bytes(outcome: &ServeOutcome) -> usize {
    let json = match outcome {
        ServeOutcome::Value(value) => serde_json::to_vec(value),
        ServeOutcome::Reply(reply) => serde_json::to_vec(reply),
        ServeOutcome::Failed(error) => serde_json::to_vec(error),
    };
    json.map_or(0, |bytes| bytes.len())
}
