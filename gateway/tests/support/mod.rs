//! A real WebSocket client for gateway tests: connects with tokio-tungstenite, runs the
//! registration handshake with `ioap-protocol`, and reads what the gateway sends.
#![allow(dead_code)]

pub mod process;
pub mod redis;
pub mod tools;

#[allow(unused_imports)]
pub use tools::tool_available;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use ioap_gateway::{Gateway, GatewayConfig, RunningGateway};
use ioap_protocol::handshake::{Advertisement, ClientHandshake};
use ioap_protocol::payload::{Capability, ErrorPayload};
use ioap_protocol::{Body, Did, Envelope, ErrorCode, Identity, ReceivedEnvelope, Timestamp};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Bound on any single wait in a test, so a broken gateway fails the test instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Starts a gateway on an ephemeral port with `adjust` applied to the defaults.
pub async fn start(adjust: impl FnOnce(&mut GatewayConfig)) -> RunningGateway {
    let mut config = GatewayConfig::ephemeral();
    adjust(&mut config);
    Gateway::start(config).await.expect("gateway starts")
}

/// Opens a WebSocket offering `ioap.v1`.
pub async fn connect(url: &str) -> Ws {
    connect_with(url, None).await
}

/// Opens a WebSocket offering `ioap.v1`, with a TLS connector for `wss://`.
pub async fn connect_with(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Ws {
    connect_full(url, tls, &[]).await
}

/// Opens a WebSocket offering `ioap.v1` with extra request headers (as a proxy would add).
pub async fn connect_with_headers(url: &str, headers: &[(&'static str, &str)]) -> Ws {
    connect_full(url, None, headers).await
}

async fn connect_full(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    headers: &[(&'static str, &str)],
) -> Ws {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ioap.v1"),
    );
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    let connector = tls.map(Connector::Rustls);
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"ioap.v1"[..])
    );
    ws
}

/// What arrived next from the gateway.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Closed(Option<u16>),
}

/// The next text frame or close (pings and pongs skipped).
pub async fn next_event(ws: &mut Ws) -> Event {
    loop {
        let item = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("gateway answered in time");
        match item {
            Some(Ok(Message::Text(text))) => return Event::Text(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Event::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_))) => panic!("the gateway sent a binary frame"),
            Some(Err(_)) | None => return Event::Closed(None),
        }
    }
}

/// The next text frame, decoded and verified.
pub async fn next_envelope(ws: &mut Ws) -> ReceivedEnvelope {
    match next_event(ws).await {
        Event::Text(text) => {
            let received =
                ReceivedEnvelope::decode(text.as_bytes()).expect("gateway frames decode");
            received.verify().expect("gateway frames verify");
            received
        }
        Event::Closed(code) => panic!("closed ({code:?}) while waiting for a message"),
    }
}

/// The next ERROR's payload and correlation (panics on anything else).
pub async fn expect_error(ws: &mut Ws) -> (ErrorPayload, Option<ioap_protocol::MessageId>) {
    let received = next_envelope(ws).await;
    let envelope = received.envelope();
    match &envelope.body {
        Body::Error(error) => (error.clone(), envelope.correlation_id),
        other => panic!("expected ERROR, got {other:?}"),
    }
}

/// Asserts the next frame is an ERROR with `code`.
pub async fn expect_error_code(ws: &mut Ws, code: ErrorCode) -> Option<ioap_protocol::MessageId> {
    let (error, correlation) = expect_error(ws).await;
    assert_eq!(error.code, code, "{}", error.message);
    correlation
}

/// Reads until the close frame and returns its code.
pub async fn expect_close(ws: &mut Ws) -> Option<u16> {
    loop {
        if let Event::Closed(code) = next_event(ws).await {
            return code;
        }
    }
}

/// A registered test agent.
pub struct Agent {
    pub identity: Identity,
    pub gateway: Did,
    pub ws: Ws,
}

/// Registers a fresh identity with no capabilities.
pub async fn register(url: &str) -> Agent {
    register_as(
        url,
        Identity::generate().expect("rng"),
        Advertisement::default(),
    )
    .await
}

/// Registers `identity` with `advertisement`; panics unless REGISTERED comes back.
pub async fn register_as(url: &str, identity: Identity, advertisement: Advertisement) -> Agent {
    let mut ws = connect(url).await;
    let (gateway, register) = answer_challenge(&mut ws, url, &identity, &advertisement).await;
    send_text(&mut ws, register.as_str()).await;
    let handshake = register.handshake;
    let reply = next_envelope(&mut ws).await;
    handshake.on_reply(&reply).expect("registered");
    Agent {
        identity,
        gateway,
        ws,
    }
}

/// A REGISTER ready to send, and the handshake that made it.
pub struct PendingRegister {
    pub handshake: ClientHandshake,
    pub wire: String,
}

impl PendingRegister {
    pub fn as_str(&self) -> &str {
        &self.wire
    }
}

/// Reads the CHALLENGE and builds the REGISTER for `audience`.
pub async fn answer_challenge(
    ws: &mut Ws,
    audience: &str,
    identity: &Identity,
    advertisement: &Advertisement,
) -> (Did, PendingRegister) {
    let challenge = next_envelope(ws).await;
    assert!(matches!(challenge.envelope().body, Body::Challenge(_)));
    let gateway = challenge.envelope().from;
    let mut handshake = ClientHandshake::new(audience, None);
    let register = handshake
        .on_challenge(&challenge, identity, advertisement, now())
        .expect("register");
    (
        gateway,
        PendingRegister {
            handshake,
            wire: register.into_string(),
        },
    )
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    tokio::time::timeout(WAIT, ws.send(Message::text(text)))
        .await
        .expect("send in time")
        .expect("send");
}

pub fn capabilities(names: &[&str]) -> Advertisement {
    Advertisement {
        capabilities: names.iter().map(|n| Capability::new(*n, "test")).collect(),
        listed: true,
    }
}

impl Agent {
    pub fn did(&self) -> Did {
        self.identity.did()
    }

    /// Signs `body` to `to` and sends it; returns the wire text.
    pub async fn send(&mut self, to: Did, body: Body) -> String {
        let wire = Envelope::new(self.did(), Some(to), body, now())
            .sign(&self.identity)
            .expect("sign")
            .into_string();
        send_text(&mut self.ws, &wire).await;
        wire
    }

    /// Sends an envelope prepared by the caller (already signed).
    pub async fn send_raw(&mut self, text: &str) {
        send_text(&mut self.ws, text).await;
    }

    pub async fn next_text(&mut self) -> String {
        match next_event(&mut self.ws).await {
            Event::Text(text) => text,
            Event::Closed(code) => panic!("closed ({code:?}) while waiting for a message"),
        }
    }

    /// PING the gateway and expect the PONG.
    pub async fn ping_gateway(&mut self, sequence: u64) {
        let wire = self
            .send(
                self.gateway,
                Body::Ping(ioap_protocol::payload::Ping { sequence }),
            )
            .await;
        let sent = ReceivedEnvelope::decode(wire.as_bytes()).expect("own frame");
        let pong = next_envelope(&mut self.ws).await;
        let envelope = pong.envelope();
        assert_eq!(envelope.correlation_id, Some(sent.envelope().id));
        assert_eq!(
            envelope.body,
            Body::Pong(ioap_protocol::payload::Ping { sequence })
        );
    }
}

/// A client rustls configuration trusting exactly `cert_der`.
pub fn trusting(cert_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .expect("add root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTP client (rustls with the ring provider, for the https test).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The gateway's HTTP JSON at `path`.
pub async fn get_json(gateway: &RunningGateway, path: &str) -> (u16, serde_json::Value) {
    let response = http()
        .get(format!("{}{path}", gateway.http_url()))
        .send()
        .await
        .expect("http get");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

/// The gateway's `/metrics` text.
pub async fn metrics_text(gateway: &RunningGateway) -> String {
    scrape(&gateway.http_url()).await
}

/// `GET {base}/metrics` (`base` = `http://host:port`).
pub async fn scrape(base: &str) -> String {
    http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}
