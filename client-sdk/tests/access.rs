//! Who may call what, decided by the callee, over real WebRTC (PROTOCOL_DESIGN.md §11.9):
//! an allowlist, grant chains issued by the callee or an issuer it trusts, and one refusal
//! that tells a caller nothing else.

mod support;

use std::time::{Duration, SystemTime};

use ioap_client::{Agent, CallError, CallOptions, CapabilityHandler, ErrorCode, Grant, GrantTerms};
use ioap_protocol::{Did, Identity, Timestamp};
use serde_json::{Value, json};
use support::{builder, gateway, within};

fn in_seconds(seconds: u64) -> Timestamp {
    Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(seconds))
}

fn terms(subject: Did, audience: Did, seconds: u64, args: Option<Value>) -> GrantTerms {
    GrantTerms {
        subject,
        audience,
        capability: "secret".into(),
        expires: in_seconds(seconds),
        args: args.map(|a| a.as_object().expect("object").clone()),
    }
}

async fn connect(url: &str, identity: &Identity) -> Agent {
    builder(url, identity.clone())
        .connect()
        .await
        .expect("registers")
}

fn forbidden(result: &Result<Value, CallError>) -> bool {
    matches!(
        result,
        Err(CallError::Remote { code: ErrorCode::Forbidden, message })
            if message == "this caller may not call this capability"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_and_grant_chains_admit_exactly_whom_they_name() {
    let gateway = gateway().await;
    let url = gateway.ws_url();
    let ids: Vec<Identity> = (0..4).map(|_| Identity::generate().expect("rng")).collect();
    let [callee, listed, delegate, stranger] = [&ids[0], &ids[1], &ids[2], &ids[3]];
    let authority = Identity::generate().expect("rng");
    let secret = CapabilityHandler::new("secret", |args: Value| async move { Ok(args) })
        .allow([listed.did()]);
    let bob = builder(&url, callee.clone())
        .capability(secret)
        .trust_grants_from(authority.did())
        .connect()
        .await
        .expect("registers");

    // The allowlist.
    let listed_agent = connect(&url, listed).await;
    let ok = within(listed_agent.peer(bob.did()).exec("secret", json!(1))).await;
    assert_eq!(ok.expect("listed"), json!(1));
    let stranger_agent = connect(&url, stranger).await;
    let stranger_peer = stranger_agent.peer(bob.did());
    let refused = within(stranger_peer.exec("secret", json!(1))).await;
    assert!(forbidden(&refused), "{refused:?}");
    // Open capabilities stay open; unknown ones stay unknown (they are public anyway).
    let echo = within(stranger_peer.exec("echo", json!(2))).await;
    assert_eq!(echo.expect("open"), json!(2));
    let unknown = within(stranger_peer.exec("nothing", json!(2))).await;
    assert!(matches!(
        unknown,
        Err(CallError::Remote {
            code: ErrorCode::UnknownCapability,
            ..
        })
    ));

    // A chain of depth 2: the trusted authority lets `listed` call, `listed` delegates to
    // `delegate`, pinning {"lang": "fr"}.
    let root = Grant::issue(&authority, terms(listed.did(), bob.did(), 600, None), None);
    let leaf = Grant::issue(
        listed,
        terms(delegate.did(), bob.did(), 60, Some(json!({"lang": "fr"}))),
        Some(&root),
    );
    let chain = vec![root.clone(), leaf];
    let delegate_agent = connect(&url, delegate).await;
    let delegate_peer = delegate_agent.peer(bob.did());
    let granted = CallOptions::new().grants(chain.clone());
    let ok =
        within(delegate_peer.exec_with("secret", json!({"lang": "fr", "n": 1}), &granted)).await;
    assert_eq!(ok.expect("granted"), json!({"lang": "fr", "n": 1}));
    let over_broad =
        within(delegate_peer.exec_with("secret", json!({"lang": "de"}), &granted)).await;
    assert!(forbidden(&over_broad), "{over_broad:?}");
    // The same chain is worth nothing to anyone else.
    let stolen = within(stranger_peer.exec_with("secret", json!({"lang": "fr"}), &granted)).await;
    assert!(forbidden(&stolen), "{stolen:?}");
    // A delegation broader than its parent (later expiry) is refused.
    let wider = Grant::issue(
        listed,
        terms(delegate.did(), bob.did(), 3600, Some(json!({"lang": "fr"}))),
        Some(&root),
    );
    let broader = CallOptions::new().grants(vec![root.clone(), wider]);
    let refused = within(delegate_peer.exec_with("secret", json!({"lang": "fr"}), &broader)).await;
    assert!(forbidden(&refused), "{refused:?}");
    // An expired grant is refused (issued already expired: no waiting).
    let expired = Grant::issue(
        callee,
        GrantTerms {
            expires: Timestamp::from_system_time(SystemTime::now() - Duration::from_secs(1)),
            ..terms(stranger.did(), bob.did(), 0, None)
        },
        None,
    );
    let late = CallOptions::new().grants(vec![expired]);
    let refused = within(stranger_peer.exec_with("secret", json!(1), &late)).await;
    assert!(forbidden(&refused), "{refused:?}");
    // A grant from an issuer the callee does not trust is refused; one from the callee
    // itself is accepted.
    let untrusted = Grant::issue(stranger, terms(stranger.did(), bob.did(), 60, None), None);
    let refused = within(stranger_peer.exec_with(
        "secret",
        json!(1),
        &CallOptions::new().grants(vec![untrusted]),
    ))
    .await;
    assert!(forbidden(&refused), "{refused:?}");
    let own = Grant::issue(callee, terms(stranger.did(), bob.did(), 60, None), None);
    let ok =
        within(stranger_peer.exec_with("secret", json!(3), &CallOptions::new().grants(vec![own])))
            .await;
    assert_eq!(ok.expect("self-issued"), json!(3));

    for agent in [listed_agent, stranger_agent, delegate_agent, bob] {
        agent.close().await;
    }
    gateway.shutdown().await;
}
