//! Many agents at once: 500 registered concurrently, all listed, each relaying to a partner.

mod support;

use std::collections::BTreeSet;

use ioap_protocol::payload::SessionDescription;
use ioap_protocol::{Body, ReceivedEnvelope};
use support::*;

const AGENTS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_agents_register_are_listed_and_relay_to_partners() {
    let gateway = start(|_| {}).await;
    let url = gateway.ws_url();

    let registering: Vec<_> = (0..AGENTS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { register(&url).await })
        })
        .collect();
    let mut agents = Vec::with_capacity(AGENTS);
    for task in registering {
        agents.push(task.await.expect("registration task"));
    }
    assert_eq!(gateway.registered_agents(), AGENTS);

    let (_, page) = get_json(&gateway, "/agents?limit=1000").await;
    assert_eq!(page["total"], AGENTS);
    let listed: BTreeSet<String> = page["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["did"].as_str().expect("did").to_owned())
        .collect();
    let registered: BTreeSet<String> = agents.iter().map(|a| a.did().to_string()).collect();
    assert_eq!(listed, registered);

    // Agent i signals agent i^1 (pairs 0-1, 2-3, …) and must receive its partner's OFFER.
    let dids: Vec<_> = agents.iter().map(|a| a.did()).collect();
    let exchanges: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(i, mut agent)| {
            let partner = dids[i ^ 1];
            tokio::spawn(async move {
                let sdp = format!("v=0 from {}", agent.did());
                agent
                    .send(partner, Body::Offer(SessionDescription { sdp }))
                    .await;
                let text = agent.next_text().await;
                let received = ReceivedEnvelope::decode(text.as_bytes()).expect("decode");
                received.verify().expect("end-to-end signature");
                assert_eq!(received.envelope().from, partner);
                assert_eq!(received.envelope().to, Some(agent.did()));
                agent
            })
        })
        .collect();
    for exchange in exchanges {
        exchange.await.expect("exchange task");
    }
    gateway.shutdown().await;
}
