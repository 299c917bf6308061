//! One WebSocket session: the registration handshake (`handshake`), then the relay loop
//! (`relay`).
//!
//! One task per session owns the socket. It reads the client's frames and writes what other
//! sessions queued for it; relaying to another session is a non-blocking push into that
//! session's bounded queue, so a client that stops reading only ever stalls itself.
//!
//! A session that ends leaves the registry *before* its close frame is sent, so a client that
//! has seen the close can rely on being gone.

mod handshake;
mod relay;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use ioap_protocol::{CloseCode, Did, ErrorCode};
use tokio::time::timeout;
use tracing::{debug, info};

use crate::disconnects::Disconnect;
use crate::metrics;
use crate::state::GatewayState;

/// Longest wait for the final ERROR and close frame of a session, and then for the client's
/// close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most frames read and dropped while waiting for the client's close frame.
const CLOSE_DRAIN_FRAMES: usize = 4096;

/// Where the connection came from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's socket address.
    pub remote: SocketAddr,
    /// The upgrade request's `Host` header.
    pub host: Option<String>,
    /// Whether it arrived over TLS.
    pub tls: bool,
}

/// How a session ends: why (a metrics label and log field), and what the client is told.
#[derive(Debug)]
pub(crate) struct Ending {
    reason: Disconnect,
    error: Option<String>,
    close: Option<CloseCode>,
}

impl Ending {
    /// The connection is gone or unusable: nothing more is sent.
    fn quiet(reason: Disconnect) -> Self {
        Ending {
            reason,
            error: None,
            close: None,
        }
    }

    /// Close with `code`.
    fn close(reason: Disconnect, code: CloseCode) -> Self {
        Ending {
            reason,
            error: None,
            close: Some(code),
        }
    }

    /// Send the ERROR `error`, then close with `code`.
    fn fail(reason: Disconnect, error: String, code: CloseCode) -> Self {
        Ending {
            reason,
            error: Some(error),
            close: Some(code),
        }
    }
}

/// The socket, with writes bounded by the write timeout.
pub(crate) struct Conn {
    socket: WebSocket,
    write_timeout: Duration,
}

impl Conn {
    /// Sends text; `Err` when the client is gone or too slow.
    async fn send(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Ending> {
        self.send_message(Message::Text(text.into())).await
    }

    /// Sends several texts with one flush at the end.
    async fn send_batch(&mut self, texts: impl Iterator<Item = Utf8Bytes>) -> Result<(), Ending> {
        let socket = &mut self.socket;
        let write = async move {
            for text in texts {
                socket.feed(Message::Text(text)).await?;
            }
            socket.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::quiet(Disconnect::ClientGone)),
            Err(_) => Err(Ending::close(
                Disconnect::SlowConsumer,
                CloseCode::SlowConsumer,
            )),
        }
    }

    async fn send_message(&mut self, message: Message) -> Result<(), Ending> {
        match timeout(self.write_timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::quiet(Disconnect::ClientGone)),
            Err(_) => Err(Ending::close(
                Disconnect::SlowConsumer,
                CloseCode::SlowConsumer,
            )),
        }
    }

    /// Tells the client how the session ends, then waits out its close reply.
    async fn finish(&mut self, ending: &Ending) {
        if self.say_goodbye(ending).await {
            self.await_close_reply().await;
        }
    }

    /// Sends the ending's ERROR and close frame (best effort; a client whose socket is already
    /// backed up gets at most [`CLOSE_GRACE`] more); `true` when the close frame went out.
    async fn say_goodbye(&mut self, ending: &Ending) -> bool {
        self.write_timeout = self.write_timeout.min(CLOSE_GRACE);
        if let Some(error) = &ending.error
            && self.send(error.as_str()).await.is_err()
        {
            return false;
        }
        let Some(code) = ending.close else {
            return false;
        };
        let frame = CloseFrame {
            code: code.code(),
            reason: code.reason().into(),
        };
        self.send_message(Message::Close(Some(frame))).await.is_ok()
    }

    /// The closing handshake's second half: reads (and drops) what the client still sends
    /// until its close frame, for at most [`CLOSE_GRACE`] and [`CLOSE_DRAIN_FRAMES`] frames.
    /// Dropping a socket with unread input makes the kernel reset the connection, and a client
    /// still sending would then lose the close frame, and with it the code.
    async fn await_close_reply(&mut self) {
        let drain = async {
            for _ in 0..CLOSE_DRAIN_FRAMES {
                match self.socket.next().await {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        let _ = timeout(CLOSE_GRACE, drain).await;
    }
}

/// Serves one upgraded connection until it ends.
pub async fn run(state: Arc<GatewayState>, socket: WebSocket, peer: Peer) {
    metrics::connection_opened();
    let mut conn = Conn {
        socket,
        write_timeout: state.config.write_timeout,
    };
    let ending = match handshake::register(&state, &mut conn, &peer).await {
        Ok(mut session) => {
            tracing::Span::current().record("did", tracing::field::display(session.did()));
            let ending = session.serve(&mut conn).await;
            session.leave();
            info!(
                did = %session.did(),
                remote = %peer.remote,
                reason = ending.reason.as_str(),
                "agent disconnected"
            );
            ending
        }
        Err(ending) => ending,
    };
    // Counted before the goodbye is written: a client blocked on its socket can delay that.
    metrics::connection_closed(ending.reason);
    conn.finish(&ending).await;
}

/// Closes a connection over the limit with 1013 (try again later). The close reply is not
/// awaited, so refusals cost as little as possible under a connection flood: the client has
/// sent nothing yet (the gateway speaks first, §6), so no unread input can reset the
/// connection before the close frame arrives.
pub async fn refuse_over_limit(state: Arc<GatewayState>, socket: WebSocket) {
    metrics::connection_refused();
    let mut conn = Conn {
        socket,
        write_timeout: state.config.write_timeout,
    };
    conn.say_goodbye(&Ending::close(
        Disconnect::ConnectionLimit,
        CloseCode::TryAgainLater,
    ))
    .await;
}

/// What a read error means: oversize frames and invalid UTF-8 get their ERROR and close
/// code; anything else means the connection is gone.
fn read_failed(state: &GatewayState, agent: Option<Did>, error: axum::Error) -> Ending {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            let message = format!(
                "frame exceeds the limit of {} bytes",
                state.config.max_frame_bytes
            );
            let error = state.error(agent, ErrorCode::TooLarge, message, None);
            Ending::fail(Disconnect::TooLarge, error, CloseCode::MessageTooBig)
        }
        Some(tungstenite::Error::Utf8(_)) => {
            let error = state.error(
                agent,
                ErrorCode::MalformedMessage,
                "text frame is not valid UTF-8",
                None,
            );
            Ending::fail(Disconnect::InvalidUtf8, error, CloseCode::InvalidPayload)
        }
        _ => {
            debug!(error = %inner, "read failed");
            Ending::quiet(Disconnect::ClientGone)
        }
    }
}
