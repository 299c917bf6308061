//! The TURN server a gateway can embed (RFC 5766 over UDP, webrtc-rs's `turn` crate), so one
//! binary is a complete deployment: it accepts exactly the credentials the gateway hands out
//! in REGISTERED (coturn's REST scheme, [`crate::turn`]), so no TURN password is stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ioap_protocol::Did;
use tokio::net::UdpSocket;
use tracing::{debug, info};
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

mod capacity;

/// Relay allocations the embedded server holds at once by default (each is a UDP socket).
pub const DEFAULT_MAX_ALLOCATIONS: usize = 1024;

/// The realm of the embedded server's long-term credentials.
pub const REALM: &str = "ioap";

/// Where the embedded TURN server listens and which address its relays are reached at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedTurn {
    /// The UDP address it listens on (port 0: any free port).
    pub listen: SocketAddr,
    /// The address agents reach its relayed sockets at (the host's public address).
    pub relay_ip: IpAddr,
    /// Relay allocations held at once; more are refused (each is a UDP socket of the
    /// gateway process).
    pub max_allocations: usize,
}

/// A running embedded TURN server.
pub struct TurnServer {
    server: Server,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Checks a REST-scheme credential: `<expiry>:<did>`, not expired, the password the shared
/// secret gives it.
struct RestCredentials {
    secret: String,
}

impl AuthHandler for RestCredentials {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        src_addr: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        let refuse = |why: &str| {
            debug!(%src_addr, why, "TURN credential refused");
            turn::Error::Other(why.to_owned())
        };
        let (expiry, did) = username
            .split_once(':')
            .ok_or_else(|| refuse("user name is not <expiry>:<did>"))?;
        let expiry: u64 = expiry
            .parse()
            .map_err(|_| refuse("expiry is not a number"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expiry < now {
            return Err(refuse("credential expired"));
        }
        Did::parse(did).map_err(|_| refuse("user name does not end in a DID"))?;
        let password = crate::turn::password(&self.secret, username);
        Ok(generate_auth_key(username, realm, &password))
    }
}

impl TurnServer {
    /// Binds and starts the server; credentials are checked against `secret`.
    pub async fn start(config: EmbeddedTurn, secret: &str) -> anyhow::Result<TurnServer> {
        let socket = UdpSocket::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen for TURN on udp {}", config.listen))?;
        let local_addr = socket.local_addr()?;
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: Arc::new(socket),
                relay_addr_generator: Box::new(capacity::CappedRelays {
                    inner: RelayAddressGeneratorStatic {
                        relay_address: config.relay_ip,
                        address: config.listen.ip().to_string(),
                        net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
                    },
                    open: Arc::new(tokio::sync::Semaphore::new(config.max_allocations)),
                }),
            }],
            realm: REALM.to_owned(),
            auth_handler: Arc::new(RestCredentials {
                secret: secret.to_owned(),
            }),
            // The crate's default (10 minutes).
            channel_bind_timeout: Duration::ZERO,
            alloc_close_notify: None,
        })
        .await
        .context("starting the TURN server")?;
        info!(address = %local_addr, relay_ip = %config.relay_ip, "embedded TURN server listening");
        Ok(TurnServer { server, local_addr })
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL agents are offered: `turn:<relay ip>:<port>?transport=udp`.
    pub fn url(&self, relay_ip: IpAddr) -> String {
        match relay_ip {
            IpAddr::V4(ip) => format!("turn:{ip}:{}?transport=udp", self.local_addr.port()),
            IpAddr::V6(ip) => format!("turn:[{ip}]:{}?transport=udp", self.local_addr.port()),
        }
    }

    /// Stops it (its allocations end).
    pub async fn close(&self) {
        if let Err(error) = self.server.close().await {
            debug!(%error, "closing the TURN server");
        }
    }
}
