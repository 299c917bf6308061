//! Who may call what, between real processes (PROTOCOL_DESIGN.md §11.9): `ioap serve
//! --allow / --trust`, `ioap grant issue | verify`, `ioap call --grant`.

mod serving;

use std::path::Path;
use std::time::{Duration, SystemTime};

use ioap_client::{Grant, GrantTerms};
use ioap_gateway::{Gateway, GatewayConfig};
use ioap_protocol::{Identity, Timestamp};
use serde_json::{Value, json};
use serving::{ioap, new_identity, serve};

/// `ioap call CALLEE sum ARGS --key KEY [more…]`: exit status and printed JSON.
async fn call_sum(url: &str, callee: &str, key: &str, args: &str, more: &[&str]) -> (i32, Value) {
    let mut argv = vec!["call", callee, "sum", args, "--gateway", url, "--key", key];
    argv.extend(more);
    let (code, printed, _) = ioap(&argv).await;
    (code, printed)
}

fn forbidden(printed: &Value) -> bool {
    printed["error"]["code"] == "FORBIDDEN"
        && printed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("this caller may not call this capability"))
}

/// The chain in `file` gets FORBIDDEN from the callee and INVALID_GRANT from
/// `ioap grant verify FILE verify…`.
async fn refused_everywhere(url: &str, callee: &str, key: &str, file: &str, verify: &[&str]) {
    let (code, printed) =
        call_sum(url, callee, key, r#"{"values":[1,2]}"#, &["--grant", file]).await;
    assert!(code == 1 && forbidden(&printed), "{printed}");
    let mut argv = vec!["grant", "verify", file];
    argv.extend(verify);
    let (code, refused, _) = ioap(&argv).await;
    assert_eq!(
        (code, &refused["error"]["code"]),
        (1, &json!("INVALID_GRANT"))
    );
}

async fn issue(args: &[&str]) -> Value {
    let mut argv = vec!["grant", "issue"];
    argv.extend(args);
    let (code, chain, err) = ioap(&argv).await;
    assert_eq!(code, 0, "{err}");
    chain
}

fn write(path: &Path, value: &Value) -> String {
    std::fs::write(path, value.to_string()).expect("write");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_and_a_grant_chain_of_depth_two_admit_and_nothing_else_does() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let url = gateway.ws_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let (callee_key, callee) = new_identity(dir.path(), "callee").await;
    let (listed_key, listed) = new_identity(dir.path(), "listed").await;
    let (authority_key, authority) = new_identity(dir.path(), "authority").await;
    let (delegate_key, delegate) = new_identity(dir.path(), "delegate").await;
    let allow = format!("sum={listed}");
    let (_server, did) = serve(
        &gateway,
        &[
            "--key",
            &callee_key,
            "--allow",
            &allow,
            "--trust",
            &authority,
        ],
    )
    .await;
    assert_eq!(did.to_string(), callee);

    // The allowlist admits its DID, refuses another key; open capabilities stay open.
    let args = r#"{"values":[1,2]}"#;
    assert_eq!(
        call_sum(&url, &callee, &listed_key, args, &[]).await,
        (0, json!(3.0))
    );
    let (code, printed) = call_sum(&url, &callee, &delegate_key, args, &[]).await;
    assert_eq!(code, 1);
    assert!(forbidden(&printed), "{printed}");
    let echo = [
        "call",
        &callee,
        "echo",
        "7",
        "--gateway",
        &url,
        "--key",
        &delegate_key,
    ];
    assert_eq!(ioap(&echo).await.1, json!(7));

    // Depth 2: the trusted authority lets `listed` call sum; `listed` delegates to
    // `delegate`, pinning the values.
    let root = issue(&[
        "--key",
        &authority_key,
        "--subject",
        &listed,
        "--audience",
        &callee,
        "--capability",
        "sum",
        "--expires-in",
        "1h",
    ])
    .await;
    let root_file = write(&dir.path().join("root.json"), &root);
    let chain = issue(&[
        "--key",
        &listed_key,
        "--subject",
        &delegate,
        "--parent",
        &root_file,
        "--args",
        r#"{"values":[1,2]}"#,
        "--expires-in",
        "10m",
    ])
    .await;
    let chain_file = write(&dir.path().join("chain.json"), &chain);
    let (code, verified, err) = ioap(&[
        "grant",
        "verify",
        &chain_file,
        "--caller",
        &delegate,
        "--callee",
        &callee,
        "--capability",
        "sum",
        "--args",
        args,
        "--trust",
        &authority,
    ])
    .await;
    assert_eq!((code, &verified["grants"]), (0, &json!(2)), "{err}");
    let granted = ["--grant", chain_file.as_str()];
    assert_eq!(
        call_sum(&url, &callee, &delegate_key, args, &granted).await,
        (0, json!(3.0))
    );
    // Beyond what it pins, or in another's hands, the chain admits nothing.
    let (code, printed) =
        call_sum(&url, &callee, &delegate_key, r#"{"values":[5]}"#, &granted).await;
    assert!(code == 1 && forbidden(&printed), "{printed}");
    let (_, stranger) = new_identity(dir.path(), "stranger").await;
    let stranger_key = dir.path().join("stranger.pem").display().to_string();
    let (code, printed) = call_sum(&url, &callee, &stranger_key, args, &granted).await;
    assert!(code == 1 && forbidden(&printed), "{stranger}: {printed}");

    // Expired: issued for 0 s.
    let expired = issue(&[
        "--key",
        &callee_key,
        "--subject",
        &delegate,
        "--audience",
        &callee,
        "--capability",
        "sum",
        "--expires-in",
        "0",
    ])
    .await;
    let expired_file = write(&dir.path().join("expired.json"), &expired);
    let this_call = [
        "--caller",
        &delegate,
        "--callee",
        &callee,
        "--capability",
        "sum",
    ];
    refused_everywhere(&url, &callee, &delegate_key, &expired_file, &this_call).await;

    // Over-broad: a delegation that outlives its parent, signed by the rightful delegator
    // (`ioap grant issue` would not make one; the SDK will, to show the callee refuses it).
    let delegator = Identity::load(&dir.path().join("listed.pem")).expect("key");
    let root_grant: Vec<Grant> = serde_json::from_value(root).expect("grants");
    let wider = Grant::issue(
        &delegator,
        GrantTerms {
            subject: delegate.parse().expect("did"),
            audience: callee.parse().expect("did"),
            capability: "sum".into(),
            expires: Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(86_400)),
            args: None,
        },
        Some(&root_grant[0]),
    );
    let broad = serde_json::to_value([&root_grant[0], &wider]).expect("JSON");
    let broad_file = write(&dir.path().join("broad.json"), &broad);
    refused_everywhere(&url, &callee, &delegate_key, &broad_file, &[]).await;
    gateway.shutdown().await;
}
