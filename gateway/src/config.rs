//! The gateway's resolved configuration (what [`crate::Gateway::start`] takes).
//!
//! `settings` turns flags, `IOAP_*` variables and the TOML file into this; embedders build it
//! directly, starting from [`GatewayConfig::default`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ioap_protocol::{Did, Identity};

pub use crate::cluster::ClusterConfig;
pub use crate::turn::TurnConfig;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The gateway's own identity (signs CHALLENGE, REGISTERED, PONG, ERROR). `None`: a fresh
    /// one each start.
    pub identity: Option<Identity>,
    /// Time an accepted TCP connection has to finish TLS, its HTTP request and the WebSocket
    /// upgrade; a connection that has not upgraded by then is closed (plain HTTP keep-alive
    /// connections too, once their response is written).
    pub upgrade_timeout: Duration,
    /// Time a connection has to complete registration.
    pub register_timeout: Duration,
    /// How long a CHALLENGE nonce is accepted (at most 60 s; PROTOCOL_DESIGN.md §6).
    pub nonce_ttl: Duration,
    /// A registered session silent this long (WebSocket pongs count) is closed.
    pub idle_timeout: Duration,
    /// How often the gateway sends a WebSocket ping.
    pub ping_interval: Duration,
    /// How long one write to a client may block before the client is dropped as a slow
    /// consumer.
    pub write_timeout: Duration,
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Most simultaneous connections, counted from accept (upgraded or not).
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (0: no per-address cap).
    pub max_connections_per_ip: u32,
    /// Frames queued for one session before relays to it are refused with RECEIVER_BUSY.
    pub queue_capacity: usize,
    /// Frames per second one registered DID may send (0: unlimited); burst is twice that.
    /// Records of gateway-relayed links do not count (see `relay_bytes_per_did`).
    pub rate_per_did: u32,
    /// Bytes per second of gateway-relayed link records (PROTOCOL_DESIGN.md §11.5) one
    /// registered DID may send; burst twice that, at least two frames. 0 turns gateway relay
    /// off (the RELAY_* types are refused with NOT_RELAYED).
    pub relay_bytes_per_did: u32,
    /// Bytes per second of relayed records the whole gateway carries (0: no gateway-wide
    /// cap); burst twice that, at least two frames.
    pub relay_bytes_total: u32,
    /// Relayed records queued for one session before more get RECEIVER_BUSY (a lane apart
    /// from `queue_capacity`, written after any signaling waiting).
    pub relay_queue_capacity: usize,
    /// Frames per second all sessions from one IP address may send (0: unlimited); burst is
    /// twice that.
    pub rate_per_ip: u32,
    /// Registrations one IP address may attempt per minute (0: unlimited).
    pub registrations_per_ip_per_min: u32,
    /// Malformed frames in a row that close a session (the last one gets its ERROR, then
    /// 1008).
    pub max_consecutive_malformed: u32,
    /// A session whose frames keep waiting for its own rate budget this long (each wait
    /// beginning within 1 s of the previous one's end) is closed with 4006
    /// (PROTOCOL_DESIGN.md §10, *Rate limits*).
    pub flood_close_after: Duration,
    /// On SIGTERM, how long the gateway drains before it closes every session: `/health`
    /// answers 503 `draining` and new connections to `/ws` are refused, while registered
    /// sessions go on (a load balancer's time to notice).
    pub drain_time: Duration,
    /// Verify the signature of every relayed frame (off by default: receivers verify end to
    /// end).
    pub verify_relayed: bool,
    /// Public URLs (e.g. `wss://gw.example.com/ws`) accepted as REGISTER audiences, besides
    /// the address in each connection's `Host` header.
    pub public_urls: Vec<String>,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client: per-IP
    /// registration and frame limits, and logs, then use the client's address. Empty: headers
    /// are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which DIDs may register.
    pub admission: Admission,
    /// Serve `wss://` and `https://` with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// Join a cluster of gateways sharing presence through Redis (`None`: stand alone).
    pub cluster: Option<ClusterConfig>,
    /// TURN servers offered to registered agents, with short-lived credentials.
    pub turn: Option<TurnConfig>,
    /// Run a TURN server in the gateway process (offered to agents unless `turn` names
    /// others; its secret is `turn`'s, or a random one).
    pub turn_server: Option<crate::turn_server::EmbeddedTurn>,
}

/// The admission policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Admission {
    /// Any DID that proves possession of its key.
    #[default]
    Open,
    /// Only these DIDs.
    Allowlist(HashSet<Did>),
}

impl Admission {
    /// Whether `did` may register.
    pub fn admits(&self, did: &Did) -> bool {
        match self {
            Admission::Open => true,
            Admission::Allowlist(allowed) => allowed.contains(did),
        }
    }

    /// Reads an allowlist: one DID per line; blank lines and `#` comments are ignored.
    pub fn load_allowlist(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("allowlist {}: {e}", path.display()))?;
        let mut allowed = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let did = Did::parse(line).map_err(|e| {
                anyhow::anyhow!("allowlist {} line {}: {e}", path.display(), number + 1)
            })?;
            allowed.insert(did);
        }
        Ok(Admission::Allowlist(allowed))
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8 or SEC1 or PKCS#1).
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            identity: None,
            upgrade_timeout: Duration::from_secs(5),
            register_timeout: Duration::from_secs(10),
            nonce_ttl: ioap_protocol::handshake::NONCE_TTL,
            idle_timeout: Duration::from_secs(300),
            ping_interval: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_frame_bytes: ioap_protocol::json::MAX_ENVELOPE_BYTES,
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
            queue_capacity: 64,
            rate_per_did: 200,
            relay_bytes_per_did: 1024 * 1024,
            relay_bytes_total: 64 * 1024 * 1024,
            relay_queue_capacity: 128,
            rate_per_ip: 20_000,
            registrations_per_ip_per_min: 1_200,
            max_consecutive_malformed: 16,
            flood_close_after: Duration::from_secs(10),
            drain_time: Duration::from_secs(5),
            verify_relayed: false,
            public_urls: Vec::new(),
            trusted_proxies: Vec::new(),
            admission: Admission::Open,
            tls: None,
            cluster: None,
            turn: None,
            turn_server: None,
        }
    }
}

impl GatewayConfig {
    /// A configuration for tests and embedding: an ephemeral port on 127.0.0.1, otherwise the
    /// defaults.
    pub fn ephemeral() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            ..Self::default()
        }
    }

    /// Checks values that would make the gateway misbehave.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1024..=16 * 1024 * 1024).contains(&self.max_frame_bytes),
            "max frame bytes must be 1024..=16777216"
        );
        anyhow::ensure!(self.max_connections > 0, "max connections must be > 0");
        anyhow::ensure!(self.queue_capacity > 0, "queue capacity must be > 0");
        anyhow::ensure!(
            self.relay_queue_capacity > 0,
            "relay queue capacity must be > 0"
        );
        anyhow::ensure!(
            self.nonce_ttl <= Duration::from_secs(60),
            "nonce lifetime must be at most 60 s"
        );
        anyhow::ensure!(
            self.max_consecutive_malformed > 0,
            "max consecutive malformed frames must be > 0"
        );
        for (name, value) in [
            ("upgrade timeout", self.upgrade_timeout),
            ("flood close time", self.flood_close_after),
            ("register timeout", self.register_timeout),
            ("nonce lifetime", self.nonce_ttl),
            ("idle timeout", self.idle_timeout),
            ("ping interval", self.ping_interval),
            ("write timeout", self.write_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{name} must be > 0");
        }
        Ok(())
    }
}
