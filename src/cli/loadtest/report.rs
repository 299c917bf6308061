//! The load test's report: a stable JSON document (schema `ioap.loadtest.v1`,
//! docs/load-testing.md) and the table printed for people.

use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{Failures, Percentiles, Tally};
use super::target::Usage;
use super::teardown::TeardownReport;

/// Operations not attempted because the run was interrupted.
pub const INTERRUPTED: &str = "INTERRUPTED";

/// The JSON schema's name; bumped on any incompatible change.
pub const SCHEMA: &str = "ioap.loadtest.v1";

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// No phase had a failure, and the run was not interrupted.
    pub passed: bool,
    /// Stopped early by SIGTERM or Ctrl-C (operations not attempted count as `INTERRUPTED`).
    pub interrupted: bool,
    /// What was asked for.
    pub config: RunConfig,
    /// Phase 1.
    pub registration: PhaseReport,
    /// Phase 2 (`None`: no links asked for).
    pub links: Option<PhaseReport>,
    /// Open links by path: `direct`, `punched` (through NAT), `turn`, `gateway`, `unknown`.
    pub link_paths: Option<super::links::Paths>,
    /// Phase 3 (`None`: no links open or no calls asked for).
    pub exec: Option<PhaseReport>,
    /// The hold after the calls (`None`: no `--hold`, or no links open).
    pub hold: Option<super::hold::HoldReport>,
    /// Phase 4 (`None`: no duration, or fewer than two signaling-only agents).
    pub relay: Option<RelayReport>,
    /// Phase 5.
    pub teardown: TeardownReport,
    /// Every phase's failures, by code.
    pub errors: Failures,
    /// The gateway's resource use.
    pub gateway: GatewayReport,
    /// This process's memory.
    pub process: ProcessReport,
}

/// The run's settings, as given.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// The gateway's WebSocket URL.
    pub gateway_url: String,
    /// Whether the gateway ran in this process.
    pub embedded: bool,
    /// Agents to register.
    pub agents: usize,
    /// Links to open.
    pub links: usize,
    /// Calls per link.
    pub calls: usize,
    /// Calls in flight per link.
    pub concurrency: usize,
    /// Bytes of data per call.
    pub payload_bytes: usize,
    /// Partial results per call (`None`: plain calls).
    pub stream_parts: Option<u64>,
    /// Registrations started per second (0: all at once).
    pub ramp_per_s: u32,
    /// Seconds of the relay phase.
    pub duration_s: u64,
    /// Each operation's time limit, in milliseconds.
    pub timeout_ms: u64,
    /// The agents' WebRTC engine (`webrtc-rs`, `str0m`).
    pub engine: &'static str,
    /// Seconds the links were held idle after the calls.
    pub hold_s: u64,
}

/// One phase's counts and timing.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Operations asked for.
    pub requested: u64,
    /// Operations that succeeded.
    pub succeeded: u64,
    /// Failures, by code.
    pub failed: Failures,
    /// The phase's time, in seconds (registration: from the start to the last success).
    pub seconds: f64,
    /// Successes per second over `seconds`.
    pub per_s: f64,
    /// Each success's latency (registration: connect to REGISTERED; links: dial to open;
    /// exec: call to final result).
    pub latency: Percentiles,
}

impl PhaseReport {
    /// A phase of `requested` operations counted in `tally` over `seconds`.
    pub fn new(requested: u64, tally: &Tally, seconds: f64) -> Self {
        PhaseReport {
            requested,
            succeeded: tally.succeeded(),
            failed: tally.failures().clone(),
            seconds,
            per_s: rate(tally.succeeded(), seconds),
            latency: tally.percentiles(),
        }
    }

    fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.succeeded == self.requested
    }
}

/// The relay phase's counts and timing.
#[derive(Debug, Clone, Serialize)]
pub struct RelayReport {
    /// Sender → receiver pairs.
    pub pairs: usize,
    /// Frames sent.
    pub sent: u64,
    /// Frames delivered.
    pub delivered: u64,
    /// Failures, by code (the gateway's ERROR codes, `LOST`, `SEND_FAILED`).
    pub failed: Failures,
    /// Seconds of sending.
    pub seconds: f64,
    /// Frames delivered per second.
    pub per_s: f64,
    /// Send → verified delivery.
    pub latency: Percentiles,
    /// Signaling agents' gateway connections that ended during the run (`CLOSED_<close
    /// code>`, e.g. `CLOSED_4006` for a sender closed for flooding, or `CONNECTION_LOST`).
    pub disconnections: Failures,
}

/// The gateway's memory and CPU, when it can be read.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// Its process id (with `--gateway-pid`).
    pub pid: Option<u32>,
    /// A reading at the start and after each phase.
    pub samples: Vec<PhaseSample>,
    /// RSS growth per registered agent, KiB (only for a separate process).
    pub rss_per_agent_kib: Option<f64>,
}

/// A reading after a phase, with the CPU used during that phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSample {
    /// `start`, `register`, `links`, `exec`, `relay`, `teardown`.
    pub phase: &'static str,
    /// The reading.
    #[serde(flatten)]
    pub sample: Usage,
    /// Percent of one core used since the previous reading.
    pub cpu_percent: Option<f64>,
}

/// This process's memory.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    /// RSS before the first agent, KiB.
    pub rss_start_kib: Option<u64>,
    /// RSS with every link open (or after registration, without links), KiB.
    pub rss_loaded_kib: Option<u64>,
    /// RSS growth per registered agent, KiB (includes the gateway's share when embedded).
    pub rss_per_agent_kib: Option<f64>,
    /// RSS growth per open link (both ends), KiB.
    pub rss_per_link_kib: Option<f64>,
    /// Whether the figures include an embedded gateway.
    pub includes_gateway: bool,
    /// A reading at the start and after each phase (CPU of the agents, and of the gateway
    /// when embedded).
    pub samples: Vec<PhaseSample>,
}

/// `count / seconds`, 0 when no time passed.
pub fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `(after - before) / count`, when both readings exist and `count > 0`.
pub fn growth_per(before: Option<u64>, after: Option<u64>, count: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    (count > 0).then(|| after.saturating_sub(before) as f64 / count as f64)
}

impl Report {
    /// Whether every phase ran clean; fills in [`Report::passed`] and [`Report::errors`].
    pub fn conclude(&mut self) {
        if self.interrupted {
            let phases = [
                Some(&mut self.registration),
                self.links.as_mut(),
                self.exec.as_mut(),
            ];
            for phase in phases.into_iter().flatten() {
                let done = phase.succeeded + phase.failed.values().sum::<u64>();
                let missing = phase.requested.saturating_sub(done);
                if missing > 0 {
                    *phase.failed.entry(INTERRUPTED.to_owned()).or_default() += missing;
                }
            }
        }
        let mut errors = Failures::new();
        let phases = [
            Some(&self.registration),
            self.links.as_ref(),
            self.exec.as_ref(),
        ];
        let failures = phases
            .into_iter()
            .flatten()
            .map(|phase| &phase.failed)
            .chain(
                self.relay
                    .iter()
                    .flat_map(|r| [&r.failed, &r.disconnections]),
            );
        for failed in failures {
            for (code, count) in failed {
                *errors.entry(code.clone()).or_default() += count;
            }
        }
        let lost = self.hold.as_ref().map_or(0, |h| h.lost);
        if lost > 0 {
            *errors.entry("LINK_LOST".to_owned()).or_default() += lost;
        }
        let phases_clean = phases.into_iter().flatten().all(PhaseReport::is_clean);
        let relay_clean = self
            .relay
            .as_ref()
            .is_none_or(|r| r.failed.is_empty() && r.disconnections.is_empty() && r.delivered > 0);
        let teardown_clean = self.teardown.timed_out == 0 && self.teardown.agents_left == Some(0);
        self.errors = errors;
        self.passed =
            phases_clean && relay_clean && teardown_clean && lost == 0 && !self.interrupted;
    }

    /// The table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let where_ = if c.embedded { "embedded" } else { "remote" };
        let _ = writeln!(
            out,
            "ioap loadtest: gateway {} ({where_}), engine {}",
            c.gateway_url, c.engine
        );
        let _ = writeln!(
            out,
            "{:<10} {:>13} {:>7} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "phase",
            "ok/asked",
            "failed",
            "seconds",
            "per second",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        );
        let mut row = |name: &str,
                       ok: u64,
                       asked: u64,
                       failed: u64,
                       s: f64,
                       rate: f64,
                       p: &Percentiles| {
            let _ = writeln!(
                out,
                "{name:<10} {:>13} {failed:>7} {s:>8.2} {rate:>11.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                format!("{ok}/{asked}"),
                p.p50_ms,
                p.p95_ms,
                p.p99_ms,
                p.max_ms
            );
        };
        let phases = [
            ("register", Some(&self.registration)),
            ("links", self.links.as_ref()),
            ("exec", self.exec.as_ref()),
        ];
        for (name, phase) in phases {
            if let Some(p) = phase {
                let failed = p.failed.values().sum();
                row(
                    name,
                    p.succeeded,
                    p.requested,
                    failed,
                    p.seconds,
                    p.per_s,
                    &p.latency,
                );
            }
        }
        if let Some(r) = &self.relay {
            let failed = r.failed.values().sum();
            row(
                "relay",
                r.delivered,
                r.sent,
                failed,
                r.seconds,
                r.per_s,
                &r.latency,
            );
        }
        if let Some(h) = &self.hold {
            let _ = writeln!(
                out,
                "hold: {} links idle for {:.1} s, {} lost; agents' CPU {} ms per link per second (both ends)",
                h.links_at_start,
                h.seconds,
                h.lost,
                h.cpu_ms_per_link_per_s
                    .map_or("?".into(), |ms| format!("{ms:.3}")),
            );
        }
        if let Some(paths) = &self.link_paths {
            let counts: Vec<String> = paths
                .iter()
                .map(|(path, n)| format!("{path} {n}"))
                .collect();
            let _ = writeln!(out, "link paths: {}", counts.join(", "));
        }
        let t = &self.teardown;
        let left = t.agents_left.map_or("unknown".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "teardown: {} closed, {} timed out in {:.2} s; agents left on the gateway: {left}",
            t.closed, t.timed_out, t.seconds
        );
        let _ = writeln!(out, "errors: {}", codes(&self.errors));
        let _ = writeln!(out, "gateway: {}", self.render_gateway());
        let p = &self.process;
        let _ = writeln!(
            out,
            "this process: RSS {} KiB loaded; {} KiB per agent{}, {} KiB per link (both ends)",
            p.rss_loaded_kib.map_or("?".into(), |k| k.to_string()),
            figure(p.rss_per_agent_kib),
            if p.includes_gateway {
                " (with the gateway's share)"
            } else {
                ""
            },
            figure(p.rss_per_link_kib),
        );
        let _ = writeln!(
            out,
            "this process: CPU (of one core) {}",
            cpu_by_phase(&p.samples)
        );
        let verdict = match (self.passed, self.interrupted) {
            (true, _) => "PASSED",
            (false, true) => "FAILED (interrupted)",
            (false, false) => "FAILED",
        };
        let _ = writeln!(out, "result: {verdict}");
        out
    }

    fn render_gateway(&self) -> String {
        let g = &self.gateway;
        let mut parts = Vec::new();
        if let Some(rss) = g.samples.iter().filter_map(|s| s.sample.rss_kib).max() {
            parts.push(format!("peak RSS {rss} KiB"));
        }
        if let Some(per_agent) = g.rss_per_agent_kib {
            parts.push(format!("{per_agent:.1} KiB per agent"));
        }
        if g.samples.iter().any(|s| s.cpu_percent.is_some()) {
            parts.push(format!("CPU (of one core) {}", cpu_by_phase(&g.samples)));
        }
        if parts.is_empty() {
            "not measured (remote; give --gateway-pid when it runs here)".into()
        } else {
            parts.join("; ")
        }
    }
}

fn cpu_by_phase(samples: &[PhaseSample]) -> String {
    let cpu: Vec<String> = samples
        .iter()
        .filter_map(|s| s.cpu_percent.map(|p| format!("{} {p:.0}%", s.phase)))
        .collect();
    if cpu.is_empty() {
        "?".into()
    } else {
        cpu.join(", ")
    }
}

fn figure(value: Option<f64>) -> String {
    value.map_or("?".into(), |v| format!("{v:.1}"))
}

fn codes(failures: &Failures) -> String {
    if failures.is_empty() {
        return "none".into();
    }
    let named: Vec<String> = failures.iter().map(|(c, n)| format!("{c} × {n}")).collect();
    named.join(", ")
}

#[cfg(test)]
mod tests;
