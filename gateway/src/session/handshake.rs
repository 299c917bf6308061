//! The registration handshake of a session: CHALLENGE, then one REGISTER before the deadline
//! (PROTOCOL_DESIGN.md §6).

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes};
use ioap_protocol::handshake::{RegistrationError, ServerChallenge};
use ioap_protocol::payload::Registered;
use ioap_protocol::{Body, CloseCode, ErrorCode, ReceivedEnvelope};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use super::relay::Session;
use super::{Conn, Ending, Peer, read_failed};
use crate::audience::{self, Reached};
use crate::disconnects::Disconnect;
use crate::metrics;
use crate::refusals::Reason;
use crate::state::GatewayState;

/// A refused registration: counted, answered with ERROR, closed with 4002.
fn refused(code: ErrorCode, error: String) -> Ending {
    metrics::registration_failed(code);
    Ending::fail(
        Disconnect::RegistrationFailed,
        error,
        CloseCode::RegistrationFailed,
    )
}

/// Runs the handshake; on success the agent is in the registry and has its REGISTERED.
pub(super) async fn register(
    state: &Arc<GatewayState>,
    conn: &mut Conn,
    peer: &Peer,
) -> Result<Session, Ending> {
    let (challenge, challenge_message) =
        ServerChallenge::issue(&state.identity, state.now(), state.config.nonce_ttl).map_err(
            |e| {
                warn!(error = %e, "cannot issue a challenge");
                Ending::close(Disconnect::InternalError, CloseCode::InternalError)
            },
        )?;
    conn.send(challenge_message.into_string()).await?;
    let text = first_frame(state, conn, peer).await?;

    if !state.limits.allow_registration_from(peer.remote.ip()) {
        metrics::registration_failed(ErrorCode::RateLimited);
        state
            .refusals
            .note(Reason::RegistrationRateLimited, peer.remote.ip());
        let error = state.error(
            None,
            ErrorCode::RateLimited,
            "too many registrations from this address; retry later",
            None,
        );
        return Err(Ending::fail(
            Disconnect::RateLimited,
            error,
            CloseCode::RateLimited,
        ));
    }
    let received = ReceivedEnvelope::decode(text.as_bytes())
        .map_err(|e| refused(e.code(), state.error(None, e.code(), e.to_string(), e.id)))?;
    let id = received.envelope().id;
    let claimed = received.envelope().from;
    let reached = Reached {
        tls: peer.tls,
        host: peer.host.as_deref(),
    };
    let registration = challenge
        .verify(
            &received,
            |aud| audience::matches(aud, reached, &state.config.public_urls),
            state.now(),
        )
        .map_err(|e| {
            info!(did = %claimed, remote = %peer.remote, reason = %e, "registration refused");
            let message = match e {
                RegistrationError::WrongAudience(_) => format!(
                    "{e}; {}",
                    audience::explain(reached, &state.config.public_urls)
                ),
                _ => e.to_string(),
            };
            refused(e.code(), state.error(None, e.code(), message, Some(id)))
        })?;
    if !state.config.admission.admits(&registration.did) {
        info!(did = %registration.did, remote = %peer.remote, "registration refused: not admitted");
        let error = state.error(
            Some(registration.did),
            ErrorCode::Unauthorized,
            "this DID is not admitted by the gateway's policy",
            Some(id),
        );
        return Err(refused(ErrorCode::Unauthorized, error));
    }

    let session = Session::enter(state, &registration, peer);
    if let Some(cluster) = &state.cluster {
        // Before REGISTERED: once an agent holds it, every node of the cluster routes to it.
        cluster.announce(session.record()).await;
    }
    metrics::registered();
    info!(
        did = %registration.did,
        remote = %peer.remote,
        session = session.id(),
        capabilities = registration.capabilities.len(),
        "agent registered"
    );
    let registered = state.message(
        Some(registration.did),
        Body::Registered(Registered {
            session_id: session.id().to_string(),
            idle_timeout_ms: u64::try_from(state.config.idle_timeout.as_millis())
                .unwrap_or(u64::MAX),
            max_frame_bytes: state.config.max_frame_bytes as u64,
            ice_servers: state
                .config
                .turn
                .iter()
                .map(|turn| crate::turn::offer(turn, &registration.did, unix_seconds(state.now())))
                .collect(),
            ice_servers_ttl_ms: state
                .config
                .turn
                .as_ref()
                .map(|turn| u64::try_from(turn.ttl.as_millis()).unwrap_or(u64::MAX)),
        }),
        Some(registration.register_id),
    );
    if let Err(ending) = conn.send(registered).await {
        session.leave();
        return Err(ending);
    }
    Ok(session)
}

/// Waits for the client's first text frame (the REGISTER) until the deadline.
async fn first_frame(
    state: &GatewayState,
    conn: &mut Conn,
    peer: &Peer,
) -> Result<Utf8Bytes, Ending> {
    let deadline = sleep_until(Instant::now() + state.config.register_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => {
                return Err(Ending::close(Disconnect::Shutdown, CloseCode::GoingAway));
            }
            () = &mut deadline => {
                debug!(remote = %peer.remote, "registration timeout");
                metrics::registration_failed(ErrorCode::Timeout);
                return Err(Ending::close(Disconnect::RegistrationTimeout, CloseCode::RegistrationTimeout));
            }
            frame = conn.socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Binary(_))) => {
                    let error = state.error(None, ErrorCode::MalformedMessage,
                        "binary frames are not part of ioap.v1; send JSON text", None);
                    return Err(refused(ErrorCode::MalformedMessage, error));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Err(Ending::quiet(Disconnect::ClientClosed)),
                Some(Err(error)) => return Err(read_failed(state, None, error)),
            },
        }
    }
}

/// Whole seconds since the Unix epoch (0 before it).
fn unix_seconds(now: ioap_protocol::Timestamp) -> u64 {
    u64::try_from(now.unix_millis() / 1000).unwrap_or(0)
}
