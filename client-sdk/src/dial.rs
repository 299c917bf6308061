//! One attempt to reach a gateway: the WebSocket (buffers sized for signaling), CHALLENGE,
//! REGISTER, REGISTERED.

use std::time::SystemTime;

use futures_util::{SinkExt, StreamExt};
use ioap_protocol::handshake::ClientHandshake;
use ioap_protocol::json::MAX_ENVELOPE_BYTES;
use ioap_protocol::payload::Registered;
use ioap_protocol::{Did, ReceivedEnvelope, SUBPROTOCOL, Timestamp};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::connect_error::ConnectError;
use crate::gateway::GatewayClientConfig;

/// A gateway connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The WebSocket's read buffer (frames larger than it are still read whole). Small, because
/// signaling frames are about 2 KB and a load test holds thousands of connections.
const READ_BUFFER_BYTES: usize = 8 * 1024;

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Buffers sized for signaling, and no frame larger than an envelope may be (a larger one
/// ends the connection, as the protocol would refuse it anyway).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_ENVELOPE_BYTES)
        .max_message_size(Some(MAX_ENVELOPE_BYTES))
        .max_frame_size(Some(MAX_ENVELOPE_BYTES))
}

/// One attempt at `url` (also the REGISTER audience): WebSocket, CHALLENGE, REGISTER,
/// REGISTERED.
pub(crate) async fn connect(
    config: &GatewayClientConfig,
    url: &str,
) -> Result<(Ws, Did, Registered), ConnectError> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let connector = config.tls.clone().map(Connector::Rustls);
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config()),
        true,
        connector,
    )
    .await?;
    let not_ioap = |e: ioap_protocol::DecodeError| ConnectError::Protocol {
        reason: e.to_string(),
    };
    let challenge = next_text(&mut ws).await?;
    let challenge = ReceivedEnvelope::decode(challenge.as_bytes()).map_err(not_ioap)?;
    let mut handshake = ClientHandshake::new(url, config.expected_gateway);
    let register =
        handshake.on_challenge(&challenge, &config.identity, &config.advertisement, now())?;
    ws.send(Message::text(register.into_string())).await?;
    let reply = next_text(&mut ws).await?;
    let reply = ReceivedEnvelope::decode(reply.as_bytes()).map_err(not_ioap)?;
    let (gateway, registered) = handshake.on_reply(&reply)?;
    Ok((ws, gateway, registered))
}

async fn next_text(ws: &mut Ws) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::Closed {
                    close_code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => {
                return Err(ConnectError::Closed {
                    close_code: None,
                    reason: "the connection ended".into(),
                });
            }
        }
    }
}
