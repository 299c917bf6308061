//! Settings from flags, `IOAP_*` environment variables and an optional TOML file, in that
//! order of precedence, resolved into a [`GatewayConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ioap_protocol::Identity;
use serde::Deserialize;

use crate::config::{Admission, GatewayConfig, TlsFiles};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `ioap-gateway`: the ioap rendezvous service. Every setting can be given as a flag, as the
/// `IOAP_*` environment variable shown, or as a key (the flag's name with underscores) in the
/// `--config` TOML file; flags win over the environment, which wins over the file.
#[derive(Debug, Default, Parser)]
#[command(name = "ioap-gateway", version, about, long_about = None)]
pub struct Settings {
    /// TOML file with settings (keys as the flag names with underscores).
    #[arg(long, env = "IOAP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "IOAP_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The gateway's own did:key (PKCS#8 PEM, mode 0600) [default: a new key each start].
    #[arg(long, env = "IOAP_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Seconds an accepted connection has to finish TLS, its HTTP request and the WebSocket
    /// upgrade before it is closed [default: 5].
    #[arg(long, env = "IOAP_UPGRADE_TIMEOUT_SECS", value_name = "SECS")]
    pub upgrade_timeout_secs: Option<u64>,
    /// Seconds a connection has to register [default: 10].
    #[arg(long, env = "IOAP_REGISTER_TIMEOUT_SECS", value_name = "SECS")]
    pub register_timeout_secs: Option<u64>,
    /// Seconds of silence (WebSocket pongs count) after which a session is closed [default: 300].
    #[arg(long, env = "IOAP_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds between WebSocket pings [default: 30].
    #[arg(long, env = "IOAP_PING_INTERVAL_SECS", value_name = "SECS")]
    pub ping_interval_secs: Option<u64>,
    /// Seconds one write to a client may block before it is dropped as a slow consumer
    /// [default: 10].
    #[arg(long, env = "IOAP_WRITE_TIMEOUT_SECS", value_name = "SECS")]
    pub write_timeout_secs: Option<u64>,
    /// Largest accepted frame in bytes [default: 65536].
    #[arg(long, env = "IOAP_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Most simultaneous connections [default: 16384].
    #[arg(long, env = "IOAP_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most simultaneous connections from one IP address; 0 = no cap [default: 1024].
    #[arg(long, env = "IOAP_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
    /// Frames queued per session before relays to it get RECEIVER_BUSY [default: 64].
    #[arg(long, env = "IOAP_QUEUE_CAPACITY", value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Frames per second per registered DID, burst twice that; 0 = unlimited [default: 200].
    #[arg(long, env = "IOAP_RATE_PER_DID", value_name = "N")]
    pub rate_per_did: Option<u32>,
    /// Frames per second per client IP, burst twice that; 0 = unlimited [default: 20000].
    #[arg(long, env = "IOAP_RATE_PER_IP", value_name = "N")]
    pub rate_per_ip: Option<u32>,
    /// Registrations per client IP per minute; 0 = unlimited [default: 1200].
    #[arg(long, env = "IOAP_REGISTRATIONS_PER_IP_PER_MIN", value_name = "N")]
    pub registrations_per_ip_per_min: Option<u32>,
    /// Seconds a session may stay over its own rate limit without a break (its frames
    /// waiting for budget) before it is closed with 4006 [default: 10].
    #[arg(long, env = "IOAP_FLOOD_CLOSE_AFTER_SECS", value_name = "SECS")]
    pub flood_close_after_secs: Option<u64>,
    /// Verify the signature of every relayed frame [default: false].
    #[arg(long, env = "IOAP_VERIFY_RELAYED", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub verify_relayed: Option<bool>,
    /// Public URL clients dial (e.g. wss://gw.example.com/ws), accepted as REGISTER audience;
    /// repeatable, comma-separated in the environment [default: none; the Host header is used].
    #[arg(
        long,
        env = "IOAP_PUBLIC_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub public_url: Vec<String>,
    /// Admit only the DIDs listed in FILE (one per line, # comments) [default: admit any].
    #[arg(long, env = "IOAP_ALLOWLIST", value_name = "FILE")]
    pub allowlist: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, serves wss:// and https://.
    #[arg(long, env = "IOAP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "IOAP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Log format [default: pretty].
    #[arg(long, env = "IOAP_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or ioap_gateway=debug [default: info; RUST_LOG also works].
    #[arg(long, env = "IOAP_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The TOML file: the same settings, keys with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    key: Option<PathBuf>,
    upgrade_timeout_secs: Option<u64>,
    register_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    ping_interval_secs: Option<u64>,
    write_timeout_secs: Option<u64>,
    max_frame_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<u32>,
    queue_capacity: Option<usize>,
    rate_per_did: Option<u32>,
    rate_per_ip: Option<u32>,
    registrations_per_ip_per_min: Option<u32>,
    flood_close_after_secs: Option<u64>,
    verify_relayed: Option<bool>,
    #[serde(default)]
    public_url: Vec<String>,
    allowlist: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// Logging choices, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Pretty or JSON.
    pub format: LogFormat,
    /// The `tracing` filter directive.
    pub filter: String,
}

impl Settings {
    /// Merges flags/environment (already in `self`) over the TOML file and the defaults.
    pub fn resolve(self) -> anyhow::Result<(GatewayConfig, LogSettings)> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let defaults = GatewayConfig::default();
        let secs = |flag: Option<u64>, file: Option<u64>, default: Duration| {
            flag.or(file).map(Duration::from_secs).unwrap_or(default)
        };
        let key = self.key.or(file.key);
        let identity = match key {
            Some(path) => Some(Identity::load(&path).context("gateway --key")?),
            None => None,
        };
        let allowlist = self.allowlist.or(file.allowlist);
        let admission = match allowlist {
            Some(path) => Admission::load_allowlist(&path)?,
            None => Admission::Open,
        };
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let public_urls = if self.public_url.is_empty() {
            file.public_url
        } else {
            self.public_url
        };
        let config = GatewayConfig {
            listen: self.listen.or(file.listen).unwrap_or(defaults.listen),
            identity,
            upgrade_timeout: secs(
                self.upgrade_timeout_secs,
                file.upgrade_timeout_secs,
                defaults.upgrade_timeout,
            ),
            register_timeout: secs(
                self.register_timeout_secs,
                file.register_timeout_secs,
                defaults.register_timeout,
            ),
            nonce_ttl: defaults.nonce_ttl,
            idle_timeout: secs(
                self.idle_timeout_secs,
                file.idle_timeout_secs,
                defaults.idle_timeout,
            ),
            ping_interval: secs(
                self.ping_interval_secs,
                file.ping_interval_secs,
                defaults.ping_interval,
            ),
            write_timeout: secs(
                self.write_timeout_secs,
                file.write_timeout_secs,
                defaults.write_timeout,
            ),
            max_frame_bytes: self
                .max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(defaults.max_frame_bytes),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(defaults.max_connections_per_ip),
            queue_capacity: self
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(defaults.queue_capacity),
            rate_per_did: self
                .rate_per_did
                .or(file.rate_per_did)
                .unwrap_or(defaults.rate_per_did),
            rate_per_ip: self
                .rate_per_ip
                .or(file.rate_per_ip)
                .unwrap_or(defaults.rate_per_ip),
            registrations_per_ip_per_min: self
                .registrations_per_ip_per_min
                .or(file.registrations_per_ip_per_min)
                .unwrap_or(defaults.registrations_per_ip_per_min),
            max_consecutive_malformed: defaults.max_consecutive_malformed,
            flood_close_after: secs(
                self.flood_close_after_secs,
                file.flood_close_after_secs,
                defaults.flood_close_after,
            ),
            verify_relayed: self
                .verify_relayed
                .or(file.verify_relayed)
                .unwrap_or(defaults.verify_relayed),
            public_urls,
            admission,
            tls,
        };
        config.validate()?;
        let log = LogSettings {
            format: self.log_format.or(file.log_format).unwrap_or_default(),
            filter: self
                .log_level
                .or(file.log_level)
                .or_else(|| std::env::var("RUST_LOG").ok())
                .unwrap_or_else(|| "info".into()),
        };
        Ok((config, log))
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("ioap-gateway").chain(args.iter().copied()))
            .expect("valid arguments")
    }

    #[test]
    fn defaults_without_arguments() {
        let (config, log) = parse(&[]).resolve().expect("resolve");
        assert_eq!(config.listen, "127.0.0.1:8000".parse().expect("addr"));
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.register_timeout, Duration::from_secs(10));
        assert_eq!(config.max_frame_bytes, 65_536);
        assert_eq!(log.format, LogFormat::Pretty);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nidle_timeout_secs = 42\nmax_connections = 7\n\
             log_format = \"json\"\npublic_url = [\"wss://gw.example/ws\"]\n",
        )
        .expect("write");
        let (config, log) = parse(&[
            "--config",
            path.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:9100",
        ])
        .resolve()
        .expect("resolve");
        assert_eq!(config.listen.port(), 9100, "flag wins");
        assert_eq!(config.idle_timeout, Duration::from_secs(42), "file wins");
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.ping_interval, Duration::from_secs(30), "default");
        assert_eq!(config.public_urls, vec!["wss://gw.example/ws".to_owned()]);
        assert_eq!(log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, "listen_addr = \"127.0.0.1:1\"\n").expect("write");
        let err = parse(&["--config", path.to_str().expect("utf8")])
            .resolve()
            .expect_err("unknown key");
        assert!(format!("{err:#}").contains("listen_addr"), "{err:#}");
        assert!(parse(&["--max-frame-bytes", "10"]).resolve().is_err());
        assert!(Settings::try_parse_from(["ioap-gateway", "--tls-cert", "x"]).is_err());
    }
}
