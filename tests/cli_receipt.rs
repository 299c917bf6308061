//! Receipts between real processes (PROTOCOL_DESIGN.md §11.7): `ioap call --receipt FILE`
//! keeps the signed request and answer; `ioap receipt verify FILE` checks them with the two
//! DIDs alone, and a receipt with one byte changed proves nothing.

mod serving;

use serving::{ioap, serve};

use ioap_gateway::{Gateway, GatewayConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_verifies_and_one_changed_byte_does_not() {
    let gateway = Gateway::start(GatewayConfig::ephemeral())
        .await
        .expect("gateway");
    let (mut server, did) = serve(&gateway, &[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("receipt.json");
    let file_text = file.display().to_string();
    let did_text = did.to_string();
    let url = gateway.ws_url();

    let (code, out, err) = ioap(&[
        "call",
        &did_text,
        "sum",
        r#"{"values":[1,2,3.5]}"#,
        "--receipt",
        &file_text,
        "--gateway",
        &url,
    ])
    .await;
    assert_eq!((code, out), (0, json!(6.5)), "{err}");

    let (code, proof, err) = ioap(&["receipt", "verify", &file_text]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(proof["valid"], true);
    assert_eq!(proof["callee"], did_text.as_str());
    assert_eq!(proof["capability"], "sum");
    assert_eq!(proof["status"], "ok");
    assert_eq!(proof["result"], json!(6.5));

    // One byte of the answer changed: 6.5 becomes 7.5.
    let text = std::fs::read_to_string(&file).expect("receipt");
    let at = text.rfind("6.5").expect("the result in the receipt");
    let mut changed = text.into_bytes();
    changed[at] = b'7';
    std::fs::write(&file, changed).expect("write");
    let (code, out, _) = ioap(&["receipt", "verify", &file_text]).await;
    assert_eq!(code, 1);
    assert_eq!(out["error"]["code"], "INVALID_RECEIPT");
    server.kill().await.expect("kill");
}
