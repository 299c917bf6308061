//! The second [`RtcEngine`](super::RtcEngine): str0m, a sans-IO WebRTC core. Every peer
//! connection of an agent shares **one UDP socket and one task** (the endpoint's loop), which
//! owns the socket, the clock and all the connections; a datagram finds its connection by the
//! ICE user name of a check or by its source address. No task, socket or timer per connection.
//!
//! The agent's STUN and TURN servers are shared the same way: one Binding per server for the
//! server-reflexive candidate, one TURN allocation (UDP) per server for the relayed one, with
//! permissions per peer; TURN over TCP/TLS is not spoken.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{
    Candidate, IceServer, IceServerCheck, LinkPath, PeerFuture, RtcEngine, RtcError, RtcEvent,
    RtcFuture, RtcPeer, RtcSettings,
};

mod check;
mod endpoint;
mod lazy_srtp;
mod servers;
mod slot;
mod stun;
mod turn;

use endpoint::Endpoint;

/// Commands queued to the endpoint's loop before callers wait.
const COMMAND_QUEUE: usize = 1024;

/// What a peer connection handle asks of the endpoint's loop.
enum Command {
    NewPeer {
        ice_servers: Vec<IceServer>,
        reply: oneshot::Sender<Result<(u64, mpsc::Receiver<RtcEvent>), RtcError>>,
    },
    Offer {
        peer: u64,
        reply: oneshot::Sender<Result<String, RtcError>>,
    },
    Answer {
        peer: u64,
        offer: String,
        reply: oneshot::Sender<Result<String, RtcError>>,
    },
    AcceptAnswer {
        peer: u64,
        answer: String,
        reply: oneshot::Sender<Result<(), RtcError>>,
    },
    AddCandidate {
        peer: u64,
        candidate: Candidate,
        reply: oneshot::Sender<Result<(), RtcError>>,
    },
    Send {
        peer: u64,
        text: String,
        reply: oneshot::Sender<Result<(), RtcError>>,
    },
    Path {
        peer: u64,
        reply: oneshot::Sender<Option<LinkPath>>,
    },
    Close {
        peer: u64,
    },
    /// A STUN/TURN server's name resolved (by a helper task).
    Resolved {
        server: servers::ServerSpec,
        addr: Option<std::net::SocketAddr>,
    },
}

/// A queued [`Command`], boxed: tokio's queues allocate room for 32 items at a time, and an
/// agent keeps its queue for as long as it has connections.
type Queued = Box<Command>;

/// Peer connections on str0m, all of an agent's on one UDP socket driven by one task.
pub struct Str0mEngine {
    settings: RtcSettings,
    commands: Mutex<Option<mpsc::Sender<Queued>>>,
}

impl std::fmt::Debug for Str0mEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Str0mEngine").finish_non_exhaustive()
    }
}

impl Str0mEngine {
    /// An engine for `settings`; its socket opens with the first peer connection.
    pub fn new(settings: &RtcSettings) -> Self {
        Str0mEngine {
            settings: settings.clone(),
            commands: Mutex::new(None),
        }
    }

    /// The endpoint's command queue, starting its loop if it is not running.
    fn endpoint(&self) -> Result<mpsc::Sender<Queued>, RtcError> {
        let mut commands = self
            .commands
            .lock()
            .map_err(|_| RtcError::new("engine lock poisoned"))?;
        if let Some(sender) = commands.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
        let endpoint = Endpoint::bind(self.settings.clone(), receiver, sender.downgrade())?;
        tokio::spawn(endpoint.run());
        *commands = Some(sender.clone());
        Ok(sender)
    }

    async fn new_peer(
        &self,
        extra_ice_servers: &[IceServer],
    ) -> Result<(Arc<dyn RtcPeer>, mpsc::Receiver<RtcEvent>), RtcError> {
        let commands = self.endpoint()?;
        let (reply, answer) = oneshot::channel();
        let ice_servers = extra_ice_servers.to_vec();
        commands
            .send(Box::new(Command::NewPeer { ice_servers, reply }))
            .await
            .map_err(|_| stopped())?;
        let (id, events) = answer.await.map_err(|_| stopped())??;
        let peer: Arc<dyn RtcPeer> = Arc::new(Str0mPeer { id, commands });
        Ok((peer, events))
    }
}

impl RtcEngine for Str0mEngine {
    fn peer<'a>(&'a self, extra_ice_servers: &'a [IceServer]) -> PeerFuture<'a> {
        Box::pin(self.new_peer(extra_ice_servers))
    }

    fn check_ice_servers<'a>(
        &'a self,
        extra_ice_servers: &'a [IceServer],
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<IceServerCheck>> + Send + 'a>> {
        Box::pin(async move {
            let mut checks = Vec::new();
            for server in self.settings.ice_servers.iter().chain(extra_ice_servers) {
                for url in &server.urls {
                    let outcome = check::check_url(url, &server.username, &server.credential).await;
                    checks.push(IceServerCheck {
                        url: url.clone(),
                        outcome,
                    });
                }
            }
            checks
        })
    }
}

fn stopped() -> RtcError {
    RtcError::new("the engine's loop stopped")
}

/// A handle on one peer connection in the endpoint's loop; dropping it closes the connection.
struct Str0mPeer {
    id: u64,
    commands: mpsc::Sender<Queued>,
}

impl Str0mPeer {
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, RtcError>>) -> Command,
    ) -> Result<T, RtcError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Box::new(command(reply)))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Str0mPeer {
    fn drop(&mut self) {
        // A full queue: the loop still reaps the connection once its events go unheard.
        let _ = self
            .commands
            .try_send(Box::new(Command::Close { peer: self.id }));
    }
}

impl RtcPeer for Str0mPeer {
    fn offer(&self) -> RtcFuture<'_, String> {
        let peer = self.id;
        Box::pin(self.ask(move |reply| Command::Offer { peer, reply }))
    }

    fn answer(&self, offer: String) -> RtcFuture<'_, String> {
        let peer = self.id;
        Box::pin(self.ask(move |reply| Command::Answer { peer, offer, reply }))
    }

    fn accept_answer(&self, answer: String) -> RtcFuture<'_, ()> {
        let peer = self.id;
        Box::pin(self.ask(move |reply| Command::AcceptAnswer {
            peer,
            answer,
            reply,
        }))
    }

    fn add_candidate(&self, candidate: Candidate) -> RtcFuture<'_, ()> {
        let peer = self.id;
        Box::pin(self.ask(move |reply| Command::AddCandidate {
            peer,
            candidate,
            reply,
        }))
    }

    fn send(&self, text: String) -> RtcFuture<'_, ()> {
        let peer = self.id;
        Box::pin(self.ask(move |reply| Command::Send { peer, text, reply }))
    }

    fn close(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let peer = self.id;
        Box::pin(async move {
            let _ = self.commands.send(Box::new(Command::Close { peer })).await;
        })
    }

    fn path(&self) -> RtcFuture<'_, Option<LinkPath>> {
        let peer = self.id;
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.commands
                .send(Box::new(Command::Path { peer, reply }))
                .await
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())
        })
    }
}

/// `len` random characters of ICE's alphabet (RFC 8839 §5.4: ALPHA / DIGIT / "+" / "/").
fn random_token(len: usize) -> Result<String, RtcError> {
    const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| RtcError::new(format!("no randomness: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ICE_CHARS[usize::from(*b) % ICE_CHARS.len()]))
        .collect())
}
