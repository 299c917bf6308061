//! TURN credentials from the gateway: REGISTERED offers the configured TURN server with a
//! credential in coturn's REST scheme, the agent keeps it, and a real coturn
//! (`use-auth-secret`) grants an allocation with it — and refuses a tampered one. The
//! gateway's embedded TURN server does the same with the credentials it hands out itself.

#[allow(dead_code)]
#[path = "../../gateway/tests/support/tools.rs"]
mod tools;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioap_client::{Agent, IceServer};
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
    allocate_in(port, username, password, "ioap.test").await
}

/// Asks the TURN server on `port` for an allocation in `realm`.
async fn allocate_in(port: u16, username: &str, password: &str, realm: &str) -> Result<(), String> {
    let held = hold_allocation(port, username, password, realm).await?;
    let _ = held.client.close().await;
    Ok(())
}

/// A granted allocation and the client holding it.
struct Held {
    client: Client,
    _relay: Box<dyn webrtc::util::Conn + Send + Sync>,
}

/// An allocation on the TURN server on `port`, held until the client is closed.
async fn hold_allocation(
    port: u16,
    username: &str,
    password: &str,
    realm: &str,
) -> Result<Held, String> {
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
        realm: realm.to_owned(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    client.listen().await.map_err(|e| e.to_string())?;
    let allocated = tokio::time::timeout(Duration::from_secs(2), client.allocate()).await;
    match allocated {
        Ok(Ok(relay)) => Ok(Held {
            client,
            _relay: Box::new(relay),
        }),
        Ok(Err(error)) => {
            let _ = client.close().await;
            Err(error.to_string())
        }
        Err(_) => {
            let _ = client.close().await;
            Err("no answer".to_owned())
        }
    }
}

/// A registered agent of `gateway`, and the one ICE server the gateway offered it.
async fn agent_offered_one_server(gateway: &ioap_gateway::RunningGateway) -> (Agent, IceServer) {
    let agent = Agent::builder(gateway.ws_url())
        .loopback_only(true)
        .connect()
        .await
        .expect("registers");
    let offered = agent.offered_ice_servers();
    assert_eq!(offered.len(), 1, "{offered:?}");
    let server = offered.into_iter().next().expect("one server");
    (agent, server)
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
    let (agent, server) = agent_offered_one_server(&gateway).await;
    let server = &server;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_turn_server_accepts_what_the_gateway_hands_out_and_nothing_else() {
    let mut config = GatewayConfig::ephemeral();
    config.turn_server = Some(ioap_gateway::turn_server::EmbeddedTurn {
        listen: "127.0.0.1:0".parse().expect("address"),
        relay_ip: "127.0.0.1".parse().expect("ip"),
        max_allocations: 16,
    });
    // The operator's secret, no URL: the embedded server is the one offered.
    config.turn = Some(TurnConfig {
        urls: Vec::new(),
        secret: SECRET.to_owned(),
        ttl: Duration::from_secs(600),
    });
    let gateway = Gateway::start(config).await.expect("gateway");
    let port = gateway.turn_server_addr().expect("embedded TURN").port();
    let (agent, server) = agent_offered_one_server(&gateway).await;
    let offered = [server];
    assert_eq!(
        offered[0].urls,
        vec![format!("turn:127.0.0.1:{port}?transport=udp")]
    );
    let checks = agent.check_ice_servers().await;
    assert!(
        checks.len() == 1
            && checks[0]
                .outcome
                .as_ref()
                .is_ok_and(|said| said.starts_with("relay 127.0.0.1:")),
        "{checks:?}"
    );
    let realm = ioap_gateway::turn_server::REALM;
    let (username, credential) = (&offered[0].username, &offered[0].credential);
    assert_eq!(allocate_in(port, username, credential, realm).await, Ok(()));
    let (expiry, did) = username.split_once(':').expect("expiry:did");
    let later = format!("{}:{did}", expiry.parse::<u64>().expect("expiry") + 1);
    assert!(
        allocate_in(port, &later, credential, realm).await.is_err(),
        "a user name that does not match its credential is refused"
    );
    let wrong = allocate_in(port, username, "not-the-credential", realm).await;
    assert!(wrong.is_err(), "a wrong password is refused");
    let did = ioap_protocol::Did::parse(did).expect("did");
    let (expired, password) = ioap_gateway::turn::credentials(SECRET, &did, 1_000_000);
    assert!(
        allocate_in(port, &expired, &password, realm).await.is_err(),
        "an expired credential is refused, however well signed"
    );
    agent.close().await;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_turn_server_refuses_allocations_beyond_its_bound() {
    let mut config = GatewayConfig::ephemeral();
    config.turn_server = Some(ioap_gateway::turn_server::EmbeddedTurn {
        listen: "127.0.0.1:0".parse().expect("address"),
        relay_ip: "127.0.0.1".parse().expect("ip"),
        max_allocations: 1,
    });
    let gateway = Gateway::start(config).await.expect("gateway");
    let port = gateway.turn_server_addr().expect("embedded TURN").port();
    let (agent, server) = agent_offered_one_server(&gateway).await;
    let realm = ioap_gateway::turn_server::REALM;
    let held = hold_allocation(port, &server.username, &server.credential, realm)
        .await
        .expect("the first allocation");
    let refused = allocate_in(port, &server.username, &server.credential, realm).await;
    assert!(refused.is_err(), "a second allocation is refused");
    drop(held);
    agent.close().await;
    gateway.shutdown().await;
}
