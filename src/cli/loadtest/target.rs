//! The gateway under load: embedded in this process (on its own runtime, so its CPU time can
//! be told apart from the agents'), or elsewhere by URL, optionally with its pid.

use std::time::{Duration, Instant};

use anyhow::Context;
use ioap_gateway::{Gateway, GatewayConfig, RunningGateway};
use serde::Serialize;

use super::system::Process;

/// Name prefix of the embedded gateway's worker threads.
const GATEWAY_THREADS: &str = "ioap-gw";

/// Where the gateway is.
#[derive(Debug)]
pub enum Target {
    /// Started by the load tool.
    Embedded {
        /// The gateway.
        gateway: RunningGateway,
        /// The runtime its tasks run on.
        runtime: tokio::runtime::Runtime,
    },
    /// Started by someone else.
    Remote {
        /// Its WebSocket URL.
        url: String,
        /// Its process, if local and given.
        pid: Option<u32>,
    },
}

/// A process's (or the embedded gateway's) resource use at one moment, when it can be read.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// When, since the load test started, in seconds.
    pub at_s: f64,
    /// Resident memory (KiB); for the gateway, `None` when embedded (shared with the agents)
    /// or not local.
    pub rss_kib: Option<u64>,
    /// CPU seconds used so far; `None` when not local.
    pub cpu_s: Option<f64>,
}

impl Usage {
    /// This process's use now.
    pub fn of_this_process(since: Instant) -> Self {
        Usage {
            at_s: since.elapsed().as_secs_f64(),
            rss_kib: Process::This.rss_kib(),
            cpu_s: Process::This.cpu_seconds(),
        }
    }
}

impl Target {
    /// Starts a gateway in this process on an ephemeral loopback port, sized for `agents`
    /// connections. Its per-IP connection cap and per-IP and per-DID rate limits are off: all
    /// the load comes from one address on purpose.
    pub fn embedded(agents: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(GATEWAY_THREADS)
            .enable_all()
            .build()
            .context("cannot start the gateway's runtime")?;
        let config = GatewayConfig {
            max_connections: agents.saturating_add(1024),
            max_connections_per_ip: 0,
            rate_per_did: 0,
            rate_per_ip: 0,
            registrations_per_ip_per_min: 0,
            ..GatewayConfig::ephemeral()
        };
        let gateway = runtime
            .block_on(Gateway::start(config))
            .context("cannot start the embedded gateway")?;
        Ok(Target::Embedded { gateway, runtime })
    }

    /// A gateway at `url`, with `pid` when it runs on this machine.
    pub fn remote(url: String, pid: Option<u32>) -> anyhow::Result<Self> {
        if let Some(pid) = pid {
            anyhow::ensure!(
                Process::Pid(pid).is_alive(),
                "no process {pid} (--gateway-pid)"
            );
        }
        Ok(Target::Remote { url, pid })
    }

    /// The WebSocket URL agents register at.
    pub fn url(&self) -> String {
        match self {
            Target::Embedded { gateway, .. } => gateway.ws_url(),
            Target::Remote { url, .. } => url.clone(),
        }
    }

    /// Whether the gateway runs in this process.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Target::Embedded { .. })
    }

    /// The gateway's pid when it is another local process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Target::Embedded { .. } => None,
            Target::Remote { pid, .. } => *pid,
        }
    }

    /// Reads the gateway's memory and CPU time now.
    pub fn sample(&self, since: Instant) -> Usage {
        let at_s = since.elapsed().as_secs_f64();
        match self {
            Target::Embedded { .. } => Usage {
                at_s,
                rss_kib: None,
                cpu_s: Process::threads_cpu_seconds(GATEWAY_THREADS),
            },
            Target::Remote { pid: Some(pid), .. } => Usage {
                at_s,
                rss_kib: Process::Pid(*pid).rss_kib(),
                cpu_s: Process::Pid(*pid).cpu_seconds(),
            },
            Target::Remote { pid: None, .. } => Usage {
                at_s,
                rss_kib: None,
                cpu_s: None,
            },
        }
    }

    /// Stops an embedded gateway (a remote one is left running).
    pub fn shutdown(self) {
        if let Target::Embedded { gateway, runtime } = self {
            runtime.block_on(gateway.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Percent of one core used between two samples.
pub fn cpu_percent(from: &Usage, to: &Usage) -> Option<f64> {
    let (Some(a), Some(b)) = (from.cpu_s, to.cpu_s) else {
        return None;
    };
    let wall = to.at_s - from.at_s;
    (wall > 0.0).then(|| ((b - a) / wall * 100.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, cpu_s: Option<f64>) -> Usage {
        Usage {
            at_s,
            rss_kib: None,
            cpu_s,
        }
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let percent = cpu_percent(&sample(1.0, Some(0.5)), &sample(3.0, Some(2.5)));
        assert_eq!(percent, Some(100.0));
        assert_eq!(
            cpu_percent(&sample(1.0, None), &sample(3.0, Some(1.0))),
            None
        );
        assert_eq!(
            cpu_percent(&sample(1.0, Some(0.0)), &sample(1.0, Some(1.0))),
            None
        );
    }

    #[test]
    fn an_embedded_gateway_serves_and_its_threads_are_measured() {
        let target = Target::embedded(10).expect("gateway");
        assert!(target.url().starts_with("ws://127.0.0.1:"));
        assert!(target.is_embedded());
        let sample = target.sample(Instant::now());
        assert!(sample.cpu_s.is_some());
        assert_eq!(sample.rss_kib, None);
        target.shutdown();
    }
}
