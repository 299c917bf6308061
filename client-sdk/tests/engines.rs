//! The two WebRTC engines side by side through real agents and a real gateway: agents on
//! different engines link and call each other, and the str0m engine serves all of an
//! agent's links from one UDP socket.

mod support;

use ioap_client::{Engine, PathKind};
use ioap_protocol::Identity;
use serde_json::json;
use support::{builder, gateway, within};

async fn agent_on(url: &str, engine: Engine) -> ioap_client::Agent {
    builder(url, Identity::generate().expect("rng"))
        .engine(engine)
        .connect()
        .await
        .expect("agent registers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_different_engines_link_and_call_both_ways() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    for (dialer, dialed) in [
        (Engine::Str0m, Engine::WebrtcRs),
        (Engine::WebrtcRs, Engine::Str0m),
    ] {
        let a = agent_on(&url, dialer).await;
        let b = agent_on(&url, dialed).await;
        let to_b = a.peer(b.did());
        let echoed = within(to_b.exec("echo", json!({"from": dialer.name()})))
            .await
            .expect("A calls B");
        assert_eq!(
            echoed,
            json!({"from": dialer.name()}),
            "{dialer} → {dialed}"
        );
        // The same link, the other way.
        let sum = within(b.peer(a.did()).exec("sum", json!({"values": [1, 2, 3]})))
            .await
            .expect("B calls A");
        assert_eq!(sum.as_f64(), Some(6.0));
        let path = within(to_b.path())
            .await
            .expect("path")
            .expect("both engines say");
        assert_eq!(path.kind(), PathKind::Direct, "{path}");
        assert_eq!((a.open_links(), b.open_links()), (1, 1));
        a.close().await;
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_str0m_agent_serves_all_its_links_from_one_socket() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let hub = agent_on(&url, Engine::Str0m).await;
    let mut spokes = Vec::new();
    let mut local_addresses = Vec::new();
    for i in 0..5 {
        let spoke = agent_on(&url, Engine::Str0m).await;
        let peer = hub.peer(spoke.did());
        let echoed = within(peer.exec("echo", json!(i))).await.expect("call");
        assert_eq!(echoed, json!(i));
        let path = within(peer.path()).await.expect("path").expect("path");
        local_addresses.push(path.local_address);
        spokes.push(spoke);
    }
    assert_eq!(hub.open_links(), 5);
    local_addresses.dedup();
    assert_eq!(local_addresses.len(), 1, "one socket: {local_addresses:?}");
    for spoke in spokes {
        spoke.close().await;
    }
    hub.close().await;
}
