//! Every way of failing to reach a gateway is reported at once with its own cause, typed
//! (`AgentError::Connect { cause: ConnectError }`), instead of a generic timeout.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ioap_client::{Agent, AgentError, ConnectError, ErrorCode};
use ioap_gateway::{Admission, GatewayConfig, TlsFiles};
use support::gateway_with;

/// Fast means well under the 10 s handshake timeout the old error waited for.
const FAST: Duration = Duration::from_secs(1);

async fn attempt(url: &str) -> (ConnectError, Duration) {
    let started = Instant::now();
    let outcome = Agent::builder(url).loopback_only(true).connect().await;
    let took = started.elapsed();
    match outcome {
        Err(error @ AgentError::Connect { .. }) => {
            println!("{error}");
            let AgentError::Connect { cause, .. } = error else {
                unreachable!()
            };
            (cause, took)
        }
        other => panic!("expected a connect error for {url}, got {other:?}"),
    }
}

/// A port with nothing listening: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let (cause, took) = attempt(&format!("ws://127.0.0.1:{}/ws", closed_port())).await;
    assert!(
        matches!(&cause, ConnectError::Unreachable { reason } if reason.contains("refused")),
        "{cause}"
    );
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn an_http_url_is_not_a_gateway_url() {
    let gateway = gateway_with(GatewayConfig::ephemeral()).await;
    let (cause, took) = attempt(&gateway.http_url()).await;
    assert!(matches!(cause, ConnectError::BadUrl { .. }), "{cause}");
    assert!(cause.to_string().contains("ws://"), "{cause}");
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn a_url_without_the_ws_path_is_an_http_404() {
    let gateway = gateway_with(GatewayConfig::ephemeral()).await;
    let url = gateway.ws_url().trim_end_matches("/ws").to_owned() + "/";
    let (cause, took) = attempt(&url).await;
    assert_eq!(cause, ConnectError::Http { status: 404 });
    assert!(cause.to_string().contains("/ws"), "{cause}");
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn wss_to_a_plain_port_is_a_tls_error() {
    let gateway = gateway_with(GatewayConfig::ephemeral()).await;
    let url = gateway.ws_url().replacen("ws://", "wss://", 1);
    let (cause, took) = attempt(&url).await;
    assert!(matches!(cause, ConnectError::Tls { .. }), "{cause}");
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut config = GatewayConfig::ephemeral();
    config.tls = Some(TlsFiles { cert, key });
    let gateway = gateway_with(config).await;
    let url = format!("wss://localhost:{}/ws", gateway.local_addr().port());
    let (cause, took) = attempt(&url).await;
    assert!(
        matches!(&cause, ConnectError::Tls { reason } if reason.to_lowercase().contains("unknown") || reason.contains("UnknownIssuer")),
        "{cause}"
    );
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn a_gateway_refusal_carries_its_code_and_message() {
    let mut config = GatewayConfig::ephemeral();
    config.admission = Admission::Allowlist(HashSet::new());
    let gateway = gateway_with(config).await;
    let (cause, took) = attempt(&gateway.ws_url()).await;
    assert!(
        matches!(
            &cause,
            ConnectError::Refused {
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{cause}"
    );
    assert!(took < FAST, "{took:?}");
}

#[tokio::test]
async fn retrying_the_first_connect_waits_for_the_deadline_and_names_the_last_cause() {
    let url = format!("ws://127.0.0.1:{}/ws", closed_port());
    let outcome = Agent::builder(&url)
        .retry_first_connect(true)
        .gateway_settings(|c| c.handshake_timeout = Duration::from_millis(300))
        .connect()
        .await;
    match outcome {
        Err(AgentError::NotRegistered {
            last: Some(ConnectError::Unreachable { .. }),
            after,
            ..
        }) => {
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }
}

/// A TLS gateway on `localhost` with a self-signed certificate, and that certificate's file.
async fn tls_gateway(dir: &std::path::Path) -> (ioap_gateway::RunningGateway, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let mut config = GatewayConfig::ephemeral();
    config.tls = Some(TlsFiles {
        cert: cert.clone(),
        key,
    });
    (gateway_with(config).await, cert)
}

#[tokio::test]
async fn a_private_ca_is_trusted_with_ca_cert_for_wss_and_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gateway, cert) = tls_gateway(dir.path()).await;
    let url = format!("wss://localhost:{}/ws", gateway.local_addr().port());
    let agent = Agent::builder(&url)
        .loopback_only(true)
        .ca_cert(&cert)
        .connect()
        .await
        .expect("registers over wss with the private CA");
    let listed = agent.directory().agents().await.expect("https directory");
    assert!(listed.iter().any(|info| info.did == agent.did()));
    agent.close().await;

    let missing = Agent::builder(&url)
        .ca_cert(dir.path().join("none.pem"))
        .connect()
        .await;
    assert!(matches!(missing, Err(AgentError::Trust(_))), "{missing:?}");
}

/// A reverse proxy that, like nginx's default `proxy_set_header Host $proxy_host`, rewrites
/// the `Host` of each request to the backend's address.
async fn host_rewriting_proxy(listener: tokio::net::TcpListener, backend: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if client.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head)
                .lines()
                .map(|line| {
                    if line.to_ascii_lowercase().starts_with("host:") {
                        format!("Host: {backend}\r\n")
                    } else {
                        format!("{line}\r\n")
                    }
                })
                .collect::<String>();
            let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else {
                return;
            };
            if upstream.write_all(head.as_bytes()).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// A listener for the proxy, and the URL agents dial through it.
async fn proxy_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, format!("ws://localhost:{port}/ws"))
}

#[tokio::test]
async fn behind_a_proxy_wrong_audience_is_reported_with_its_remedy() {
    let (listener, proxied) = proxy_listener().await;

    // Without --public-url the gateway sees its own address in Host, not the URL dialed.
    let gateway = gateway_with(GatewayConfig::ephemeral()).await;
    let proxy = tokio::spawn(host_rewriting_proxy(listener, gateway.local_addr()));
    let (cause, took) = attempt(&proxied).await;
    match &cause {
        ConnectError::Refused {
            code: ErrorCode::WrongAudience,
            message,
        } => assert!(message.contains("--public-url"), "{message}"),
        other => panic!("{other}"),
    }
    assert!(took < FAST, "{took:?}");
    proxy.abort();

    // With the URL agents dial as its public URL, the same proxy works.
    let (listener, proxied) = proxy_listener().await;
    let mut config = GatewayConfig::ephemeral();
    config.public_urls = vec![proxied.clone()];
    let gateway = gateway_with(config).await;
    let _proxy = tokio::spawn(host_rewriting_proxy(listener, gateway.local_addr()));
    let agent = Agent::builder(&proxied)
        .loopback_only(true)
        .connect()
        .await
        .expect("registers through the proxy");
    agent.close().await;
}

#[tokio::test]
async fn an_unreachable_first_gateway_is_passed_over_for_the_next_at_once() {
    let gateway = gateway_with(GatewayConfig::ephemeral()).await;
    let down = format!("ws://127.0.0.1:{}/ws", closed_port());
    let started = Instant::now();
    let agent = Agent::builder(&down)
        .alternate_gateway(gateway.ws_url())
        .loopback_only(true)
        .connect()
        .await
        .expect("registers with the second gateway");
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
    assert_eq!(gateway.registered_agents(), 1);
    // The directory, too, asks the gateway that answers.
    let listed = agent
        .directory()
        .agents()
        .await
        .expect("the second gateway's directory");
    assert!(
        listed.iter().any(|info| info.did == agent.did()),
        "{listed:?}"
    );
    agent.close().await;

    // Every gateway down: the first one's cause is reported, still at once.
    let other = format!("ws://127.0.0.1:{}/ws", closed_port());
    let started = Instant::now();
    let outcome = Agent::builder(&down)
        .alternate_gateway(&other)
        .connect()
        .await;
    match outcome {
        Err(AgentError::Connect { url, cause }) => {
            assert_eq!(url, down);
            assert!(matches!(cause, ConnectError::Unreachable { .. }), "{cause}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
}
