//! `ioap loadtest`: hundreds to thousands of real agents against a real gateway, in five
//! phases (register, links, exec, relay, teardown), with a report for people or as JSON
//! (docs/load-testing.md).

mod exec;
mod hold;
mod limits;
mod links;
mod progress;
mod readings;
mod register;
mod relay;
mod report;
mod stats;
mod system;
mod target;
mod teardown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ioap_client::Directory;
use tokio_util::sync::CancellationToken;

use progress::Display;
use readings::Readings;
use report::{GatewayReport, PhaseReport, ProcessReport, RelayReport, Report};
use system::Process;
use target::Target;

/// Largest `--payload-bytes`: a call's data and its envelope fit the SDK's default message
/// maximum (16 MiB); over 64 KiB they travel in CHUNKs (PROTOCOL_DESIGN.md §11.6).
const MAX_PAYLOAD_BYTES: usize = ioap_client::DEFAULT_MAX_MESSAGE_BYTES - 64 * 1024;
/// Largest `--relay-window`.
const MAX_RELAY_WINDOW: usize = 128;
/// Longest `--duration`.
const MAX_DURATION_S: u64 = 3600;

/// `ioap loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// The gateway's WebSocket URL (default: a gateway embedded in this process). Repeat it
    /// (or separate with commas) to spread agents over a cluster's gateways, round robin: the
    /// two agents of every link and relay pair are then on different gateways.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "embedded",
        value_delimiter = ','
    )]
    pub gateway: Vec<String>,
    /// Start a gateway in this process on an ephemeral loopback port (the default).
    #[arg(long)]
    pub embedded: bool,
    /// The gateway's process id, to report its RSS and CPU (with --gateway).
    #[arg(long, value_name = "PID", requires = "gateway")]
    pub gateway_pid: Option<u32>,
    /// Agents to register, each with its own did:key.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub agents: usize,
    /// WebRTC links to open, between distinct pairs (uses 2 × L of the agents).
    #[arg(long, value_name = "L", default_value_t = 20)]
    pub links: usize,
    /// EXEC calls per link.
    #[arg(long, value_name = "C", default_value_t = 10)]
    pub calls: usize,
    /// Calls in flight per link.
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub concurrency: usize,
    /// Bytes of data each call carries (and gets back), up to 16 MiB − 64 KiB; over 64 KiB a
    /// call travels in pieces.
    #[arg(long, value_name = "B", default_value_t = 64)]
    pub payload_bytes: usize,
    /// Streaming calls: each returns its data PARTS times as partial results.
    #[arg(long, value_name = "PARTS", num_args = 0..=1, default_missing_value = "4")]
    pub stream: Option<u64>,
    /// Registrations started per second (0: all at once, 512 pending at most).
    #[arg(long, value_name = "R", default_value_t = 500)]
    pub ramp_per_s: u32,
    /// Seconds of the signaling-only relay phase (0 skips it).
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub duration: u64,
    /// Seconds to hold the links open and idle after the calls (0: no hold), measuring what
    /// idle links cost the agents and whether any is lost.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub hold: u64,
    /// Frames in flight per relay pair.
    #[arg(long, value_name = "W", default_value_t = 8)]
    pub relay_window: usize,
    /// Frames per second per relay pair (0: as fast as the window allows).
    #[arg(long, value_name = "F", default_value_t = 0)]
    pub relay_rate: u32,
    /// The WebRTC engine of the agents: webrtc-rs or str0m (default: IOAP_ENGINE, else
    /// webrtc-rs).
    #[arg(long, value_name = "ENGINE", env = "IOAP_ENGINE")]
    pub engine: Option<ioap_client::Engine>,
    /// Links being dialed at once.
    #[arg(long, value_name = "D", default_value_t = 32)]
    pub dial_concurrency: usize,
    /// Time limit of each registration, link setup, call and close, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout: u64,
    /// Print the report as JSON (schema ioap.loadtest.v1) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The validated settings the phases read.
#[derive(Debug, Clone)]
pub struct Plan {
    url: String,
    /// Every gateway; agent `i` registers with `urls[i % len]`.
    urls: Vec<String>,
    agents: usize,
    links: usize,
    calls: usize,
    concurrency: usize,
    payload_bytes: usize,
    stream_parts: Option<u64>,
    ramp_per_s: u32,
    duration: Duration,
    relay_window: usize,
    relay_rate: u32,
    dial_concurrency: usize,
    timeout: Duration,
    engine: ioap_client::Engine,
    hold: Duration,
}

impl LoadtestArgs {
    fn plan(&self, urls: Vec<String>) -> anyhow::Result<Plan> {
        anyhow::ensure!(self.agents > 0, "--agents must be at least 1");
        anyhow::ensure!(
            self.links.saturating_mul(2) <= self.agents,
            "--links {} needs {} agents (each link joins two agents of its own); --agents is {}",
            self.links,
            self.links.saturating_mul(2),
            self.agents
        );
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.dial_concurrency > 0,
            "--dial-concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.payload_bytes <= MAX_PAYLOAD_BYTES,
            "--payload-bytes must be at most {MAX_PAYLOAD_BYTES}"
        );
        anyhow::ensure!(
            self.stream.is_none_or(|parts| parts <= exec::MAX_PARTS),
            "--stream takes at most {} parts",
            exec::MAX_PARTS
        );
        anyhow::ensure!(
            (1..=MAX_RELAY_WINDOW).contains(&self.relay_window),
            "--relay-window must be 1..={MAX_RELAY_WINDOW}"
        );
        anyhow::ensure!(
            self.duration <= MAX_DURATION_S,
            "--duration must be at most {MAX_DURATION_S} s"
        );
        anyhow::ensure!(self.timeout > 0, "--timeout must be at least 1 ms");
        anyhow::ensure!(
            self.hold <= MAX_DURATION_S,
            "--hold must be at most {MAX_DURATION_S} s"
        );
        Ok(Plan {
            url: urls.first().cloned().unwrap_or_default(),
            urls,
            agents: self.agents,
            links: self.links,
            calls: self.calls,
            concurrency: self.concurrency,
            payload_bytes: self.payload_bytes,
            stream_parts: self.stream,
            ramp_per_s: self.ramp_per_s,
            duration: Duration::from_secs(self.duration),
            relay_window: self.relay_window,
            relay_rate: self.relay_rate,
            dial_concurrency: self.dial_concurrency,
            timeout: Duration::from_millis(self.timeout),
            engine: self.engine.unwrap_or_default(),
            hold: Duration::from_secs(self.hold),
        })
    }
}

/// Runs the load test; exit status 1 when any phase had a failure, 2 for an impossible plan.
pub fn loadtest(args: LoadtestArgs) -> anyhow::Result<ExitCode> {
    let embedded = args.gateway.is_empty();
    if let Err(error) = args.plan(Vec::new()) {
        eprintln!("error: {error:#}");
        return Ok(ExitCode::from(2));
    }
    limits::ensure(args.agents, args.links, embedded)?;
    let target = match args.gateway.first() {
        Some(url) => Target::remote(url.clone(), args.gateway_pid)?,
        None => Target::embedded(args.agents)?,
    };
    let urls = if embedded {
        vec![target.url()]
    } else {
        args.gateway.clone()
    };
    let plan = args.plan(urls)?;
    let display = if args.quiet {
        Display::Quiet
    } else {
        Display::detect()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(hold::AGENT_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stop = CancellationToken::new();
    let report = runtime.block_on(async {
        let interrupt = tokio::spawn(stop_on_termination(stop.clone()));
        let report = run(&plan, &target, &stop, display).await;
        interrupt.abort();
        report
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    target.shutdown();
    let report = report?;
    let json = serde_json::to_string_pretty(&report)?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.render());
    }
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Cancels `stop` on SIGTERM or Ctrl-C: the phase under way ends, teardown still runs, and
/// the report says the run was interrupted.
async fn stop_on_termination(stop: CancellationToken) {
    ioap_gateway::termination().await;
    eprintln!("loadtest: interrupted: ending the current phase, then tearing down");
    stop.cancel();
}

/// `future`'s output, or `None` once `stop` is cancelled.
pub(crate) async fn until_stopped<T>(
    stop: &CancellationToken,
    future: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        value = future => Some(value),
    }
}

/// The five phases, with readings between them; after an interruption only teardown runs.
async fn run(
    plan: &Plan,
    target: &Target,
    stop: &CancellationToken,
    display: Display,
) -> anyhow::Result<Report> {
    let t0 = Instant::now();
    let directory = Directory::new(&plan.url, None)?;
    let baseline = directory
        .health()
        .await
        .ok()
        .map(|h| h.connected_agents as u64);
    let mut readings = Readings::new(target, t0);
    let rss_start = Process::This.rss_kib();

    let (mut fleet, registration) = register::run(plan, stop, display).await;
    readings.take("register");
    let rss_registered = Process::This.rss_kib();
    let registered = registration.tally.succeeded();
    let registration = PhaseReport::new(
        plan.agents as u64,
        &registration.tally,
        registration.time_to_all.as_secs_f64(),
    );

    let go_on = || !stop.is_cancelled();
    let (peers, links, link_paths) = if plan.links > 0 && go_on() {
        let started = Instant::now();
        let (peers, tally, paths) = links::run(plan, &fleet, stop, display).await;
        readings.take("links");
        let seconds = started.elapsed().as_secs_f64();
        (
            peers,
            Some(PhaseReport::new(plan.links as u64, &tally, seconds)),
            Some(paths),
        )
    } else {
        (Vec::new(), None, None)
    };
    let rss_linked = Process::This.rss_kib();

    let exec = if !peers.is_empty() && plan.calls > 0 && go_on() {
        let outcome = exec::run(plan, &peers, stop, display).await;
        readings.take("exec");
        let requested = (peers.len() * plan.calls) as u64;
        Some(PhaseReport::new(
            requested,
            &outcome.tally,
            outcome.elapsed.as_secs_f64(),
        ))
    } else {
        None
    };
    let hold = if !plan.hold.is_zero() && !peers.is_empty() && go_on() {
        let report = hold::run(&fleet, plan.hold, stop).await;
        readings.take("hold");
        Some(report)
    } else {
        None
    };
    drop(peers);

    let relay_agents = fleet.signaling.iter().flatten().count();
    if !plan.duration.is_zero() && relay_agents < 2 && display != Display::Quiet {
        eprintln!(
            "loadtest: relay: skipped: it pairs the agents outside links, and only {relay_agents} \
             of those registered (--agents must exceed 2 × --links + 1)"
        );
    }
    let relay = if !plan.duration.is_zero() && relay_agents >= 2 && go_on() {
        let outcome = relay::run(plan, &mut fleet, stop, display).await;
        readings.take("relay");
        let seconds = outcome.elapsed.as_secs_f64();
        Some(RelayReport {
            pairs: outcome.pairs,
            sent: outcome.sent,
            delivered: outcome.tally.succeeded(),
            failed: outcome.tally.failures().clone(),
            seconds,
            per_s: report::rate(outcome.tally.succeeded(), seconds),
            latency: outcome.tally.percentiles(),
            disconnections: outcome.disconnections.failures().clone(),
        })
    } else {
        None
    };

    let teardown = teardown::run(plan, fleet, &directory, baseline, display).await;
    readings.take("teardown");

    let opened = links.as_ref().map_or(0, |l| l.succeeded);
    let mut report = Report {
        schema: report::SCHEMA,
        passed: false,
        interrupted: stop.is_cancelled(),
        config: plan.describe(target.is_embedded()),
        registration,
        links,
        link_paths,
        exec,
        hold,
        relay,
        teardown,
        errors: Default::default(),
        gateway: GatewayReport {
            pid: target.pid(),
            rss_per_agent_kib: readings.gateway_rss_per_agent(registered),
            samples: readings.gateway,
        },
        process: ProcessReport {
            rss_start_kib: rss_start,
            rss_loaded_kib: rss_linked,
            rss_per_agent_kib: report::growth_per(rss_start, rss_registered, registered),
            rss_per_link_kib: report::growth_per(rss_registered, rss_linked, opened),
            includes_gateway: target.is_embedded(),
            samples: readings.process,
        },
    };
    report.conclude();
    Ok(report)
}

impl Plan {
    /// The gateway agent `index` registers with.
    fn url_for(&self, index: usize) -> &str {
        &self.urls[index % self.urls.len().max(1)]
    }

    fn describe(&self, embedded: bool) -> report::RunConfig {
        report::RunConfig {
            gateway_url: self.urls.join(","),
            embedded,
            agents: self.agents,
            links: self.links,
            calls: self.calls,
            concurrency: self.concurrency,
            payload_bytes: self.payload_bytes,
            stream_parts: self.stream_parts,
            ramp_per_s: self.ramp_per_s,
            duration_s: self.duration.as_secs(),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            engine: self.engine.name(),
            hold_s: self.hold.as_secs(),
        }
    }
}
