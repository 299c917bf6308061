//! TURN credentials from the gateway: REGISTERED offers the configured TURN server with a
//! credential in coturn's REST scheme, the agent keeps it, and a real coturn
//! (`use-auth-secret`) grants an allocation with it — and refuses a tampered one.

#[allow(dead_code)]
#[path = "../../gateway/tests/support/tools.rs"]
mod tools;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioap_client::Agent;
use ioap_gateway::{Gateway, GatewayConfig, TurnConfig};
use webrtc::turn::client::{Client, ClientConfig};

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "the-shared-turn-secret";

/// coturn on a free loopback port with the REST scheme; killed when dropped.
struct Coturn(Child, u16);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn coturn() -> Option<Coturn> {
    if !tools::tool_available("turnserver") {
        return None;
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("turnserver")
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string()])
        .args(["--use-auth-secret", "--static-auth-secret", SECRET])
        .args(["--realm", "ioap.test", "--no-tls", "--no-dtls", "--no-cli"])
        .args([
            "--allow-loopback-peers",
            "--min-port",
            "50000",
            "--max-port",
            "50999",
        ])
        .args(["--log-file", "stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver starts");
    Some(Coturn(child, port))
}

/// Asks coturn for an allocation with `username` / `password`.
async fn allocate(port: u16, username: &str, password: &str) -> Result<(), String> {
    let conn = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?,
    );
    let client = Client::new(ClientConfig {
        stun_serv_addr: String::new(),
        turn_serv_addr: format!("127.0.0.1:{port}"),
        username: username.to_owned(),
        password: password.to_owned(),
        realm: "ioap.test".to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    let allocated = tokio::time::timeout(Duration::from_secs(2), client.allocate()).await;
    let _ = client.close().await;
    match allocated {
        Ok(Ok(_relay)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_hands_out_turn_credentials_that_coturn_accepts() {
    let Some(turn) = coturn() else {
        return;
    };
    let mut config = GatewayConfig::ephemeral();
    config.turn = Some(TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.1)],
        secret: SECRET.to_owned(),
        ttl: Duration::from_secs(600),
    });
    let gateway = Gateway::start(config).await.expect("gateway");
    let agent = Agent::builder(gateway.ws_url())
        .loopback_only(true)
        .connect()
        .await
        .expect("registers");
    let offered = agent.offered_ice_servers();
    assert_eq!(offered.len(), 1, "{offered:?}");
    let server = &offered[0];
    let (expiry, did) = server.username.split_once(':').expect("expiry:did");
    assert_eq!(did, agent.did().to_string());
    let expiry: u64 = expiry.parse().expect("unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );

    // coturn may still be starting: the first allocation is retried until it answers.
    let deadline = Instant::now() + WAIT;
    loop {
        match allocate(turn.1, &server.username, &server.credential).await {
            Ok(()) => break,
            Err(error) => assert!(Instant::now() < deadline, "not accepted: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checks = agent.check_ice_servers().await;
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(
        checks[0]
            .outcome
            .as_ref()
            .is_ok_and(|said| said.starts_with("relay 127.0.0.1:")),
        "{checks:?}"
    );

    // An agent configured with a credential the TURN server refuses is told at start.
    let wrong = Agent::builder(gateway.ws_url())
        .loopback_only(true)
        .ice_server(ioap_client::IceServer {
            urls: vec![format!("turn:127.0.0.1:{}", turn.1)],
            username: format!("{expiry}:{did}"),
            credential: "not-the-credential".into(),
        })
        .connect()
        .await
        .expect("registers");
    let checks = wrong.check_ice_servers().await;
    let refused: Vec<_> = checks
        .iter()
        .filter(|check| check.outcome.is_err())
        .collect();
    assert_eq!(refused.len(), 1, "{checks:?}");
    wrong.close().await;

    let tampered = format!("{}:{did}", expiry + 1);
    assert!(
        allocate(turn.1, &tampered, &server.credential)
            .await
            .is_err(),
        "a user name that does not match its credential is refused"
    );
    agent.close().await;
}
