//! Settings from flags, `IOAP_*` environment variables and an optional TOML file, in that
//! order of precedence, resolved into a [`GatewayConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ioap_protocol::Identity;
use serde::{Deserialize, Serialize};

use crate::config::{Admission, ClusterConfig, GatewayConfig, TlsFiles, TurnConfig};
use crate::turn_server::{DEFAULT_MAX_ALLOCATIONS, EmbeddedTurn};

/// How long a TURN credential stays valid unless set: six hours.
const DEFAULT_TURN_TTL: Duration = crate::turn::DEFAULT_TTL;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize, Serialize)]
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
    /// Check every setting, print the effective settings as a TOML file, and exit.
    #[arg(long)]
    pub check_config: bool,
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
    /// Bytes per second of gateway-relayed links one agent may send (burst twice that);
    /// 0 turns gateway relay off [default: 1048576].
    #[arg(long, env = "IOAP_RELAY_BYTES_PER_DID", value_name = "BYTES")]
    pub relay_bytes_per_did: Option<u32>,
    /// Bytes per second of gateway-relayed links the whole gateway carries; 0 = no cap
    /// [default: 67108864].
    #[arg(long, env = "IOAP_RELAY_BYTES_TOTAL", value_name = "BYTES")]
    pub relay_bytes_total: Option<u32>,
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
    /// Seconds to drain on SIGTERM (/health answers 503, new connections refused, sessions
    /// go on) before every session is closed with 1001; 0 = none [default: 5].
    #[arg(long, env = "IOAP_DRAIN_SECS", value_name = "SECS")]
    pub drain_secs: Option<u64>,
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
    /// A reverse proxy (address or CIDR, e.g. 10.0.0.0/8) whose Forwarded / X-Forwarded-For
    /// headers name the client, for per-IP limits and logs; repeatable, comma-separated in
    /// the environment [default: none, the headers are ignored].
    #[arg(
        long,
        env = "IOAP_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,
    /// Admit only the DIDs listed in FILE (one per line, # comments) [default: admit any].
    #[arg(long, env = "IOAP_ALLOWLIST", value_name = "FILE")]
    pub allowlist: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, serves wss:// and https://.
    #[arg(long, env = "IOAP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "IOAP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Join a cluster of gateways through this Redis (`redis://[:password@]host:port[/db]`);
    /// see docs/cluster.md [default: none, the gateway stands alone].
    #[arg(long, env = "IOAP_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// This gateway's id in the cluster (1-64 of A-Z a-z 0-9 . _ -) [default: random].
    #[arg(long, env = "IOAP_NODE_ID", value_name = "ID", requires = "redis_url")]
    pub node_id: Option<String>,
    /// A TURN (or STUN) server URL offered to registered agents with short-lived credentials,
    /// e.g. turn:turn.example.com:3478?transport=udp; repeatable, comma-separated in the
    /// environment; needs --turn-secret [default: none].
    #[arg(
        long,
        env = "IOAP_TURN_URL",
        value_name = "URL",
        value_delimiter = ',',
        requires = "turn_secret"
    )]
    pub turn_url: Vec<String>,
    /// The secret shared with the TURN server (coturn static-auth-secret); better given in
    /// the environment than on the command line.
    #[arg(
        long,
        env = "IOAP_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Seconds each TURN credential stays valid [default: 21600].
    #[arg(long, env = "IOAP_TURN_TTL_SECS", value_name = "SECS")]
    pub turn_ttl_secs: Option<u64>,
    /// Run a TURN server (UDP) in the gateway on this address, e.g. 0.0.0.0:3478, offered to
    /// agents with short-lived credentials [default: none].
    #[arg(long, env = "IOAP_TURN_LISTEN", value_name = "ADDR")]
    pub turn_listen: Option<SocketAddr>,
    /// The address agents reach the embedded TURN server's relays at (this host's public
    /// address) [default: the --turn-listen address, which must then be specific].
    #[arg(
        long,
        env = "IOAP_TURN_RELAY_IP",
        value_name = "IP",
        requires = "turn_listen"
    )]
    pub turn_relay_ip: Option<std::net::IpAddr>,
    /// Relay allocations the embedded TURN server holds at once; more are refused
    /// [default: 1024].
    #[arg(
        long,
        env = "IOAP_TURN_MAX_ALLOCATIONS",
        value_name = "N",
        requires = "turn_listen"
    )]
    pub turn_max_allocations: Option<usize>,
    /// Log format [default: pretty].
    #[arg(long, env = "IOAP_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or ioap_gateway=debug [default: info; RUST_LOG also works].
    #[arg(long, env = "IOAP_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

macro_rules! file_settings {
    ($( $(#[$doc:meta])* $name:ident: $ty:ty, )*) => {
        /// Every setting as the TOML file spells it (keys as the flag names with
        /// underscores). Resolved settings have every value but the optional paths.
        #[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileSettings {
            $( $(#[$doc])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $name: Option<$ty>, )*
            /// Public URLs accepted as REGISTER audiences.
            #[serde(default)]
            pub public_url: Vec<String>,
            /// Trusted reverse proxies.
            #[serde(default)]
            pub trusted_proxy: Vec<String>,
            /// TURN servers offered to agents.
            #[serde(default)]
            pub turn_url: Vec<String>,
        }

        impl FileSettings {
            /// `self` with `over`'s values where `over` has them.
            fn overlay(self, over: FileSettings) -> FileSettings {
                FileSettings {
                    $( $name: over.$name.or(self.$name), )*
                    public_url: if over.public_url.is_empty() { self.public_url } else { over.public_url },
                    trusted_proxy: if over.trusted_proxy.is_empty() { self.trusted_proxy } else { over.trusted_proxy },
                    turn_url: if over.turn_url.is_empty() { self.turn_url } else { over.turn_url },
                }
            }
        }

        impl Settings {
            /// The flags and environment variables given, as file settings.
            fn given(&self) -> FileSettings {
                FileSettings {
                    $( $name: self.$name.clone(), )*
                    public_url: self.public_url.clone(),
                    trusted_proxy: self.trusted_proxy.clone(),
                    turn_url: self.turn_url.clone(),
                }
            }
        }
    };
}

file_settings! {
    /// Address to listen on.
    listen: SocketAddr,
    /// The gateway's key file.
    key: PathBuf,
    /// Seconds to finish TLS, HTTP and the upgrade.
    upgrade_timeout_secs: u64,
    /// Seconds to register.
    register_timeout_secs: u64,
    /// Seconds of silence before a session is closed.
    idle_timeout_secs: u64,
    /// Seconds between WebSocket pings.
    ping_interval_secs: u64,
    /// Seconds one write may block.
    write_timeout_secs: u64,
    /// Largest accepted frame.
    max_frame_bytes: usize,
    /// Most simultaneous connections.
    max_connections: usize,
    /// Most simultaneous connections per IP address.
    max_connections_per_ip: u32,
    /// Frames queued per session.
    queue_capacity: usize,
    /// Frames per second per DID.
    rate_per_did: u32,
    /// Frames per second per IP address.
    rate_per_ip: u32,
    /// Relayed bytes per second per DID (0: relay off).
    relay_bytes_per_did: u32,
    /// Relayed bytes per second, whole gateway.
    relay_bytes_total: u32,
    /// Registrations per IP address per minute.
    registrations_per_ip_per_min: u32,
    /// Seconds over the own rate limit before 4006.
    flood_close_after_secs: u64,
    /// Seconds to drain on SIGTERM.
    drain_secs: u64,
    /// Verify relayed frames' signatures.
    verify_relayed: bool,
    /// The allowlist file.
    allowlist: PathBuf,
    /// TLS certificate chain.
    tls_cert: PathBuf,
    /// TLS private key.
    tls_key: PathBuf,
    /// The cluster's Redis.
    redis_url: String,
    /// This gateway's id in the cluster.
    node_id: String,
    /// The TURN server's shared secret.
    turn_secret: String,
    /// Seconds each TURN credential stays valid.
    turn_ttl_secs: u64,
    /// The embedded TURN server's address.
    turn_listen: SocketAddr,
    /// The embedded TURN server's relay address.
    turn_relay_ip: std::net::IpAddr,
    /// The embedded TURN server's allocation bound.
    turn_max_allocations: usize,
    /// Log format.
    log_format: LogFormat,
    /// Log filter.
    log_level: String,
}

impl FileSettings {
    /// The defaults, every value present but the optional paths.
    pub fn defaults() -> FileSettings {
        let config = GatewayConfig::default();
        let secs = |d: Duration| Some(d.as_secs());
        FileSettings {
            listen: Some(config.listen),
            upgrade_timeout_secs: secs(config.upgrade_timeout),
            register_timeout_secs: secs(config.register_timeout),
            idle_timeout_secs: secs(config.idle_timeout),
            ping_interval_secs: secs(config.ping_interval),
            write_timeout_secs: secs(config.write_timeout),
            max_frame_bytes: Some(config.max_frame_bytes),
            max_connections: Some(config.max_connections),
            max_connections_per_ip: Some(config.max_connections_per_ip),
            queue_capacity: Some(config.queue_capacity),
            rate_per_did: Some(config.rate_per_did),
            rate_per_ip: Some(config.rate_per_ip),
            relay_bytes_per_did: Some(config.relay_bytes_per_did),
            relay_bytes_total: Some(config.relay_bytes_total),
            registrations_per_ip_per_min: Some(config.registrations_per_ip_per_min),
            flood_close_after_secs: secs(config.flood_close_after),
            drain_secs: secs(config.drain_time),
            verify_relayed: Some(config.verify_relayed),
            log_format: Some(LogFormat::default()),
            log_level: Some("info".into()),
            turn_ttl_secs: Some(DEFAULT_TURN_TTL.as_secs()),
            ..FileSettings::default()
        }
    }
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
    /// The effective settings: flags and environment over the TOML file over the defaults
    /// (`RUST_LOG` stands in for an unset log level). What `--check-config` prints.
    pub fn effective(&self) -> anyhow::Result<FileSettings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let rust_log = FileSettings {
            log_level: std::env::var("RUST_LOG").ok(),
            ..FileSettings::default()
        };
        Ok(FileSettings::defaults()
            .overlay(rust_log)
            .overlay(file)
            .overlay(self.given()))
    }

    /// Merges flags/environment (already in `self`) over the TOML file and the defaults, and
    /// checks every value.
    pub fn resolve(self) -> anyhow::Result<(GatewayConfig, LogSettings)> {
        self.effective()?.resolve()
    }
}

impl FileSettings {
    /// The gateway configuration and log settings these settings describe, every value
    /// checked (files readable, durations positive, the log filter and public URLs valid).
    pub fn resolve(self) -> anyhow::Result<(GatewayConfig, LogSettings)> {
        let defaults = GatewayConfig::default();
        let secs = |value: Option<u64>, default: Duration| {
            value.map(Duration::from_secs).unwrap_or(default)
        };
        let identity = match &self.key {
            Some(path) => Some(Identity::load(path).context("gateway --key")?),
            None => None,
        };
        let admission = match &self.allowlist {
            Some(path) => Admission::load_allowlist(path)?,
            None => Admission::Open,
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        for url in &self.public_url {
            check_public_url(url)?;
        }
        let trusted_proxies = self
            .trusted_proxy
            .iter()
            .map(|text| parse_proxy(text))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let turn = match (self.turn_url.is_empty(), self.turn_secret) {
            (true, None) => None,
            (false, Some(secret)) if !secret.is_empty() => {
                for url in &self.turn_url {
                    anyhow::ensure!(
                        ["turn:", "turns:", "stun:", "stuns:"]
                            .iter()
                            .any(|scheme| url.starts_with(scheme)),
                        "TURN URL {url:?} must start with turn:, turns:, stun: or stuns:"
                    );
                }
                let ttl = self
                    .turn_ttl_secs
                    .map_or(DEFAULT_TURN_TTL, Duration::from_secs);
                anyhow::ensure!(!ttl.is_zero(), "the TURN credential lifetime must be > 0");
                Some(TurnConfig {
                    urls: self.turn_url,
                    secret,
                    ttl,
                })
            }
            (true, Some(secret)) if self.turn_listen.is_some() && !secret.is_empty() => {
                Some(TurnConfig {
                    urls: Vec::new(),
                    secret,
                    ttl: self
                        .turn_ttl_secs
                        .map_or(DEFAULT_TURN_TTL, Duration::from_secs),
                })
            }
            (true, Some(_)) => anyhow::bail!("--turn-secret needs --turn-url or --turn-listen"),
            (false, _) => anyhow::bail!("--turn-url needs --turn-secret (IOAP_TURN_SECRET)"),
        };
        let max_allocations = self.turn_max_allocations.unwrap_or(DEFAULT_MAX_ALLOCATIONS);
        anyhow::ensure!(max_allocations > 0, "--turn-max-allocations must be > 0");
        let turn_server = match (self.turn_listen, self.turn_relay_ip) {
            (None, _) => None,
            (Some(listen), Some(relay_ip)) => Some(EmbeddedTurn {
                listen,
                relay_ip,
                max_allocations,
            }),
            (Some(listen), None) => {
                anyhow::ensure!(
                    !listen.ip().is_unspecified(),
                    "--turn-listen {listen} listens on every address: name the one agents \
                     reach with --turn-relay-ip"
                );
                Some(EmbeddedTurn {
                    listen,
                    relay_ip: listen.ip(),
                    max_allocations,
                })
            }
        };
        let cluster = match (self.redis_url, self.node_id) {
            (Some(redis_url), node_id) => {
                let node_id = node_id.unwrap_or_else(ClusterConfig::random_node_id);
                anyhow::ensure!(
                    crate::cluster::store::valid_node_id(&node_id),
                    "node id {node_id:?}: use 1-64 of A-Z a-z 0-9 . _ -"
                );
                redis::parse_redis_url(&redis_url).ok_or_else(|| {
                    anyhow::anyhow!(
                        "Redis URL {:?} is not a redis:// URL",
                        crate::cluster::redact(&redis_url)
                    )
                })?;
                Some(ClusterConfig { redis_url, node_id })
            }
            (None, Some(_)) => anyhow::bail!("--node-id needs --redis-url"),
            (None, None) => None,
        };
        let config = GatewayConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            identity,
            upgrade_timeout: secs(self.upgrade_timeout_secs, defaults.upgrade_timeout),
            register_timeout: secs(self.register_timeout_secs, defaults.register_timeout),
            nonce_ttl: defaults.nonce_ttl,
            idle_timeout: secs(self.idle_timeout_secs, defaults.idle_timeout),
            ping_interval: secs(self.ping_interval_secs, defaults.ping_interval),
            write_timeout: secs(self.write_timeout_secs, defaults.write_timeout),
            max_frame_bytes: self.max_frame_bytes.unwrap_or(defaults.max_frame_bytes),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            queue_capacity: self.queue_capacity.unwrap_or(defaults.queue_capacity),
            rate_per_did: self.rate_per_did.unwrap_or(defaults.rate_per_did),
            rate_per_ip: self.rate_per_ip.unwrap_or(defaults.rate_per_ip),
            relay_bytes_per_did: self
                .relay_bytes_per_did
                .unwrap_or(defaults.relay_bytes_per_did),
            relay_bytes_total: self.relay_bytes_total.unwrap_or(defaults.relay_bytes_total),
            relay_queue_capacity: defaults.relay_queue_capacity,
            registrations_per_ip_per_min: self
                .registrations_per_ip_per_min
                .unwrap_or(defaults.registrations_per_ip_per_min),
            max_consecutive_malformed: defaults.max_consecutive_malformed,
            flood_close_after: secs(self.flood_close_after_secs, defaults.flood_close_after),
            drain_time: self
                .drain_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.drain_time),
            verify_relayed: self.verify_relayed.unwrap_or(defaults.verify_relayed),
            public_urls: self.public_url,
            trusted_proxies,
            admission,
            tls,
            cluster,
            turn,
            turn_server,
        };
        config.validate()?;
        let filter = self.log_level.unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&filter)
            .map_err(|e| anyhow::anyhow!("log level {filter:?} is not a tracing filter: {e}"))?;
        let log = LogSettings {
            format: self.log_format.unwrap_or_default(),
            filter,
        };
        Ok((config, log))
    }
}

/// A trusted proxy: an address (one host) or a CIDR block.
fn parse_proxy(text: &str) -> anyhow::Result<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow::anyhow!("trusted proxy {text:?} is not an address or CIDR block"))
}

/// A public URL must be what clients dial: `ws://` or `wss://`, a host, a path.
fn check_public_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| anyhow::anyhow!("public URL {url:?} must start with ws:// or wss://"))?;
    let (host, _path) = rest
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("public URL {url:?} needs a path, e.g. /ws"))?;
    anyhow::ensure!(!host.is_empty(), "public URL {url:?} has no host");
    Ok(())
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

    #[test]
    fn cluster_proxy_and_turn_settings_are_checked() {
        let refused = |args: &[&str], naming: &str| {
            let error = parse(args).resolve().expect_err("refused");
            assert!(format!("{error:#}").contains(naming), "{args:?}: {error:#}");
        };
        refused(&["--trusted-proxy", "not-an-address"], "not-an-address");
        refused(&["--redis-url", "http://x", "--node-id", "n1"], "redis://");
        refused(
            &["--redis-url", "redis://127.0.0.1", "--node-id", "a/b"],
            "a/b",
        );
        refused(&["--turn-secret", "s"], "--turn-url");
        refused(&["--turn-listen", "0.0.0.0:3478"], "--turn-relay-ip");
        let (config, _) = parse(&[
            "--turn-listen",
            "0.0.0.0:3478",
            "--turn-relay-ip",
            "192.0.2.7",
        ])
        .resolve()
        .expect("valid");
        assert_eq!(
            config.turn_server.map(|turn| turn.relay_ip.to_string()),
            Some("192.0.2.7".to_owned())
        );
        let (config, _) = parse(&["--turn-listen", "192.0.2.8:3478", "--turn-secret", "s"])
            .resolve()
            .expect("an embedded server with the operator's secret");
        assert_eq!(config.turn.map(|turn| turn.secret), Some("s".to_owned()));
        refused(
            &["--turn-url", "http://turn", "--turn-secret", "s"],
            "http://turn",
        );
        refused(
            &[
                "--turn-url",
                "turn:t:3478",
                "--turn-secret",
                "s",
                "--turn-ttl-secs",
                "0",
            ],
            "lifetime",
        );
        let (config, _) = parse(&[
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.1",
            "--turn-url",
            "turn:t:3478",
            "--turn-secret",
            "s",
            "--redis-url",
            "redis://127.0.0.1:6379/2",
        ])
        .resolve()
        .expect("valid");
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.turn.map(|turn| turn.ttl.as_secs()), Some(21_600));
        let node = config.cluster.expect("cluster").node_id;
        assert!(crate::cluster::store::valid_node_id(&node), "{node}");
    }
}
