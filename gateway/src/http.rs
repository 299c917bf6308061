//! HTTP routes: `/ws` (the WebSocket upgrade), `/health`, `/agents`, `/agents/{did}`,
//! `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ioap_protocol::{Did, ErrorCode, SUBPROTOCOL};
use serde::Deserialize;
use serde_json::json;

use crate::session::{self, Peer};
use crate::state::GatewayState;

/// Read buffer per WebSocket. Small, because most sessions are idle; frames larger than it
/// are still read whole.
const READ_BUFFER_BYTES: usize = 4096;
/// Queued frames are written in batches of up to this many bytes per flush (one syscall); the
/// buffer is allocated only by sessions that receive traffic.
const WRITE_BATCH_BYTES: usize = 32 * 1024;
/// Most agents one `/agents` page returns.
const MAX_PAGE: usize = 1000;
/// Agents per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

/// Shared state plus how this listener is reached.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The gateway.
    pub gateway: Arc<GatewayState>,
    /// Whether this listener serves TLS.
    pub tls: bool,
}

/// The router for a gateway.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .route("/health", get(health))
        .route("/agents", get(agents))
        .route("/agents/{did}", get(agent))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error_body(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code.as_str(), "message": message.into()}});
    (status, Json(body)).into_response()
}

async fn websocket(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let gateway = app.gateway;
    let upgrade = upgrade.protocols([SUBPROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return error_body(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedVersion,
            format!(
                "WebSocket subprotocol {SUBPROTOCOL:?} is required (Sec-WebSocket-Protocol: {SUBPROTOCOL})"
            ),
        );
    }
    if gateway.shutdown.is_cancelled() {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the gateway is shutting down",
        );
    }
    let max_frame = gateway.config.max_frame_bytes;
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_write_buffer_size(WRITE_BATCH_BYTES + max_frame * 2)
        .max_message_size(max_frame)
        .max_frame_size(max_frame);
    let open = gateway.connections.fetch_add(1, Ordering::Relaxed);
    if open >= gateway.config.max_connections {
        gateway.connections.fetch_sub(1, Ordering::Relaxed);
        let tracker = gateway.sessions.clone();
        return upgrade.on_upgrade(move |socket| {
            tracker.track_future(session::refuse_over_limit(gateway, socket))
        });
    }
    let peer = Peer {
        remote,
        host: headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        tls: app.tls,
    };
    let tracker = gateway.sessions.clone();
    let failed = Arc::clone(&gateway);
    upgrade
        .on_failed_upgrade(move |_| {
            failed.connections.fetch_sub(1, Ordering::Relaxed);
        })
        .on_upgrade(move |socket| tracker.track_future(session::run(gateway, socket, peer)))
}

async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    let gateway = &app.gateway;
    Json(json!({
        "status": "healthy",
        "connected_agents": gateway.registry.len(),
        "timestamp": gateway.now(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": gateway.started.elapsed().as_secs(),
        "gateway_did": gateway.did.to_string(),
    }))
}

/// `/agents` query parameters.
#[derive(Debug, Deserialize)]
struct AgentsQuery {
    capability: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn agents(
    State(app): State<AppState>,
    query: Result<Query<AgentsQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_body(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedMessage,
            "query parameters: capability=NAME, limit=1..1000, cursor=DID",
        );
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page =
        app.gateway
            .registry
            .list(query.capability.as_deref(), query.cursor.as_deref(), limit);
    Json(page).into_response()
}

async fn agent(State(app): State<AppState>, Path(did): Path<String>) -> Response {
    let Ok(parsed) = Did::parse(&did) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedMessage,
            "not a valid did:key",
        );
    };
    match app.gateway.registry.listed(&parsed.to_string()) {
        Some(summary) => Json(summary).into_response(),
        None => error_body(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownAgent,
            format!("no listed agent {parsed} is registered here"),
        ),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.gateway.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
