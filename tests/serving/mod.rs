//! `ioap serve` in a child process, for the CLI tests.

use std::process::Stdio;
use std::time::Duration;

use ioap_gateway::RunningGateway;
use ioap_protocol::Did;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `ioap serve` against `gateway` with `extra` arguments, and the DID it printed.
pub async fn serve(gateway: &RunningGateway, extra: &[&str]) -> (Child, Did) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ioap"))
        .args(["serve", "--gateway", &gateway.ws_url()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ioap serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ioap serve printed in time")
        .expect("read")
        .expect("a line");
    let printed: Value = serde_json::from_str(&line).expect("JSON");
    let did = Did::parse(printed["did"].as_str().expect("did")).expect("a did:key");
    (child, did)
}
