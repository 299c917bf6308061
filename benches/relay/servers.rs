//! The two relays under test, each run in a child process of the benchmark executable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The ioap gateway (authenticated registration, validation, limits, metrics).
    Gateway,
    /// A bare tokio-tungstenite relay.
    Bare,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Bare => "bare",
        }
    }
}

/// A running relay process.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
}

impl Server {
    /// Starts a relay process and waits for its address.
    pub fn spawn(kind: Kind) -> anyhow::Result<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--child", kind.name()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn relay")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        Ok(Server {
            child,
            address: line.trim().to_owned(),
        })
    }

    /// The relay's resident set size in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Entry point of a child process: serve until killed.
pub fn run_child(kind: &str) -> anyhow::Result<()> {
    crate::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match kind {
            "gateway" => {
                let config = ioap_gateway::GatewayConfig {
                    max_connections: 100_000,
                    rate_per_did: 0,
                    rate_per_ip: 0,
                    registrations_per_ip_per_min: 0,
                    ping_interval: Duration::from_secs(3600),
                    register_timeout: Duration::from_secs(60),
                    ..ioap_gateway::GatewayConfig::ephemeral()
                };
                let gateway = ioap_gateway::Gateway::start(config).await?;
                println!("{}", gateway.local_addr());
                std::future::pending::<()>().await;
                Ok(())
            }
            "bare" => crate::bare::serve().await,
            other => anyhow::bail!("unknown relay {other}"),
        }
    })
}
