//! HTTP routes: `/ws` (the WebSocket upgrade), `/health`, `/agents`, `/agents/{did}`,
//! `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use ioap_protocol::{Did, ErrorCode, SUBPROTOCOL};
use serde::Deserialize;
use serde_json::json;

use crate::listener::Admission;
use crate::registry::{AgentPage, AgentSummary, page_of};
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
        .layer(middleware::from_fn(reserve_serves_health_only))
        .with_state(state)
}

/// A connection admitted to the reserve (the connection limit is full) is served `/health`,
/// and `/ws` to be closed with 1013; anything else gets 503.
async fn reserve_serves_health_only(request: Request, next: Next) -> Response {
    let reserve = request.extensions().get::<Admission>() == Some(&Admission::Reserve);
    if reserve && !matches!(request.uri().path(), "/health" | "/ws") {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RateLimited,
            "the gateway is at its connection limit; only /health is served",
        );
    }
    next.run(request).await
}

fn error_body(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code.as_str(), "message": message.into()}});
    (status, Json(body)).into_response()
}

async fn websocket(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    admission: Option<Extension<Admission>>,
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
    if gateway.shutdown.is_cancelled() || gateway.draining.is_cancelled() {
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
    if admission.is_some_and(|Extension(a)| a == Admission::Reserve) {
        let tracker = gateway.sessions.clone();
        return upgrade.on_upgrade(move |socket| {
            tracker.track_future(session::refuse_over_limit(gateway, socket))
        });
    }
    let client =
        crate::forwarded::client_ip(remote.ip(), &headers, &gateway.config.trusted_proxies);
    let peer = Peer {
        remote: SocketAddr::new(client, remote.port()),
        host: headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        tls: app.tls,
    };
    let tracker = gateway.sessions.clone();
    // Every line a session logs carries its remote address and, once registered, its DID.
    let span = tracing::info_span!(
        "session",
        remote = %peer.remote,
        did = tracing::field::Empty
    );
    upgrade.on_upgrade(move |socket| {
        tracker.track_future(tracing::Instrument::instrument(
            session::run(gateway, socket, peer),
            span,
        ))
    })
}

async fn health(State(app): State<AppState>) -> Response {
    let gateway = &app.gateway;
    let (status, word) = if gateway.draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "healthy")
    };
    let mut body = json!({
        "status": word,
        "connected_agents": gateway.registry.len(),
        "timestamp": gateway.now(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": gateway.started.elapsed().as_secs(),
        "gateway_did": gateway.did.to_string(),
    });
    if let Some(cluster) = &gateway.cluster {
        let (nodes, agents) = cluster.size();
        body["cluster"] = json!({
            "node": cluster.node_id(),
            "nodes": nodes,
            "agents": agents,
            "redis": if cluster.redis_up() { "up" } else { "down" },
        });
    }
    let body = Json(body);
    (status, body).into_response()
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
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return error_body(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedMessage,
            format!("limit must be 1..={MAX_PAGE}, not {limit}"),
        );
    }
    let (capability, cursor) = (query.capability.as_deref(), query.cursor.as_deref());
    let Some(cluster) = &app.gateway.cluster else {
        return Json(app.gateway.registry.list(capability, cursor, limit)).into_response();
    };
    let listing = match cluster.listing().await {
        Ok(listing) => listing,
        Err(code) => return cluster_unavailable(code),
    };
    let matching: Vec<&AgentSummary> = listing
        .iter()
        .filter(|agent| {
            capability.is_none_or(|name| agent.capabilities.iter().any(|c| c.name == name))
        })
        .collect();
    let (page, total, next_cursor) = page_of(&matching, |agent| &agent.did, cursor, limit);
    let agents: Vec<AgentSummary> = page.iter().map(|agent| (*agent).clone()).collect();
    Json(AgentPage {
        count: agents.len(),
        agents,
        total,
        next_cursor,
    })
    .into_response()
}

fn cluster_unavailable(code: ErrorCode) -> Response {
    error_body(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        "the cluster's directory cannot be read now (Redis unreachable); retry later",
    )
}

async fn agent(State(app): State<AppState>, Path(did): Path<String>) -> Response {
    let Ok(parsed) = Did::parse(&did) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            ErrorCode::MalformedMessage,
            "not a valid did:key",
        );
    };
    let did = parsed.to_string();
    let found = match &app.gateway.cluster {
        None => app.gateway.registry.listed(&did),
        Some(cluster) => match cluster.listing().await {
            Ok(listing) => listing
                .binary_search_by(|agent| agent.did.as_str().cmp(&did))
                .ok()
                .map(|at| listing[at].clone()),
            Err(code) => return cluster_unavailable(code),
        },
    };
    match found {
        Some(summary) => Json(summary).into_response(),
        None => error_body(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownAgent,
            format!("no listed agent {parsed} is registered here"),
        ),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    let body = crate::metrics::render(&app.gateway.metrics);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
