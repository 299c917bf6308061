//! The two relays under test, each run in a child process of the benchmark executable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The ioap gateway (authenticated registration, validation, metrics), rate limits off.
    Gateway,
    /// The ioap gateway with its default limits (the flood benchmark).
    GatewayLimited,
    /// A bare tokio-tungstenite relay.
    Bare,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::GatewayLimited => "gateway-limited",
            Kind::Bare => "bare",
        }
    }

    /// Whether clients speak ioap to it.
    pub fn is_gateway(self) -> bool {
        self != Kind::Bare
    }

    /// Flags for an `ioap-gateway` binary, the same settings as the embedded child.
    fn binary_flags(self) -> Vec<&'static str> {
        let mut flags = vec![
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--max-connections",
            "100000",
            "--registrations-per-ip-per-min",
            "0",
            "--ping-interval-secs",
            "3600",
            "--register-timeout-secs",
            "60",
        ];
        if self == Kind::Gateway {
            flags.extend(["--rate-per-did", "0", "--rate-per-ip", "0"]);
        }
        flags
    }
}

/// The gateway's settings for `kind` (embedded child).
fn gateway_config(kind: Kind) -> ioap_gateway::GatewayConfig {
    let mut config = ioap_gateway::GatewayConfig {
        max_connections: 100_000,
        max_connections_per_ip: 0,
        registrations_per_ip_per_min: 0,
        ping_interval: Duration::from_secs(3600),
        register_timeout: Duration::from_secs(60),
        ..ioap_gateway::GatewayConfig::ephemeral()
    };
    if kind == Kind::Gateway {
        config.rate_per_did = 0;
        config.rate_per_ip = 0;
    }
    config
}

/// A running relay process.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
}

impl Server {
    /// Starts a relay process and waits for its address. With `IOAP_RELAY_BENCH_GATEWAY_BIN`
    /// set, the gateway is that `ioap-gateway` binary (another build, for before/after runs).
    pub fn spawn(kind: Kind) -> anyhow::Result<Server> {
        if kind.is_gateway()
            && let Ok(binary) = std::env::var("IOAP_RELAY_BENCH_GATEWAY_BIN")
        {
            return Self::spawn_binary(&binary, kind);
        }
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

    fn spawn_binary(binary: &str, kind: Kind) -> anyhow::Result<Server> {
        let mut child = Command::new(binary)
            .args(kind.binary_flags())
            .env("IOAP_MAX_CONNECTIONS_PER_IP", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {binary}"))?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().context("the gateway exited")??;
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["message"] == "ioap gateway listening" {
                break json["address"].as_str().unwrap_or("").to_owned();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Server { child, address })
    }

    /// CPU time (user + system) the relay has used, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .context("stat")?
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
            + fields.get(12).context("stime")?.parse::<f64>()?;
        Ok(ticks / 100.0)
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
            "gateway" | "gateway-limited" => {
                let kind = if kind == "gateway" {
                    Kind::Gateway
                } else {
                    Kind::GatewayLimited
                };
                let gateway = ioap_gateway::Gateway::start(gateway_config(kind)).await?;
                println!("{}", gateway.local_addr());
                std::future::pending::<()>().await;
                Ok(())
            }
            "bare" => crate::bare::serve().await,
            other => anyhow::bail!("unknown relay {other}"),
        }
    })
}
