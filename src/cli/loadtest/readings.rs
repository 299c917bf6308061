//! Readings of resource use between phases: the gateway's (see [`Target::sample`]) and this
//! process's, each with the CPU used during the phase it closes.

use std::time::Instant;

use super::report::{self, PhaseSample};
use super::target::{self, Target, Usage};

/// Readings of the gateway and of this process: one at the start, one after each phase.
pub struct Readings<'a> {
    target: &'a Target,
    t0: Instant,
    /// The gateway's.
    pub gateway: Vec<PhaseSample>,
    /// This process's.
    pub process: Vec<PhaseSample>,
}

impl<'a> Readings<'a> {
    /// The readings at the start.
    pub fn new(target: &'a Target, t0: Instant) -> Self {
        let first = |sample| {
            vec![PhaseSample {
                phase: "start",
                sample,
                cpu_percent: None,
            }]
        };
        Readings {
            target,
            t0,
            gateway: first(target.sample(t0)),
            process: first(Usage::of_this_process(t0)),
        }
    }

    /// The readings after `phase`.
    pub fn take(&mut self, phase: &'static str) {
        let gateway = self.target.sample(self.t0);
        let process = Usage::of_this_process(self.t0);
        for (samples, sample) in [(&mut self.gateway, gateway), (&mut self.process, process)] {
            let previous = samples.last().map(|s| s.sample);
            samples.push(PhaseSample {
                phase,
                sample,
                cpu_percent: previous.and_then(|p| target::cpu_percent(&p, &sample)),
            });
        }
    }

    /// The gateway's RSS growth per agent registered, when its RSS can be read.
    pub fn gateway_rss_per_agent(&self, registered: u64) -> Option<f64> {
        let start = self.gateway.first()?;
        let after = self.gateway.iter().find(|s| s.phase == "register")?;
        report::growth_per(start.sample.rss_kib, after.sample.rss_kib, registered)
    }
}
