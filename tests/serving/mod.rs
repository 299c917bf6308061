//! `ioap serve` in a child process and `ioap` commands, for the CLI tests.
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioap_gateway::RunningGateway;
use ioap_protocol::Did;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on any one command.
const WAIT: Duration = Duration::from_secs(60);

/// `ioap serve` against `gateway` with `extra` arguments, and the DID it printed.
pub async fn serve(gateway: &RunningGateway, extra: &[&str]) -> (Child, Did) {
    let served = serve_logged(gateway, extra, &[]).await;
    (served.child, served.did)
}

/// An `ioap serve` process whose stderr is kept.
pub struct Served {
    /// The process (killed when dropped).
    pub child: Child,
    /// The DID it printed.
    pub did: Did,
    /// Everything it wrote on stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Served {
    /// The stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

/// `ioap serve` with `extra` arguments and `env`, its stderr kept.
pub async fn serve_logged(
    gateway: &RunningGateway,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ioap"))
        .args(["serve", "--gateway", &gateway.ws_url()])
        .args(extra)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ioap serve");
    let log = Arc::new(Mutex::new(String::new()));
    let mut errors = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let kept = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            let mut log = kept.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ioap serve printed in time")
        .expect("read")
        .unwrap_or_else(|| panic!("ioap serve printed nothing: {}", log.lock().expect("log")));
    let printed: Value = serde_json::from_str(&line).expect("JSON");
    let did = Did::parse(printed["did"].as_str().expect("did")).expect("a did:key");
    Served { child, did, log }
}

/// `ioap args…`: exit status, the JSON it printed last on stdout (`Null` if none), stderr.
pub async fn ioap(args: &[&str]) -> (i32, Value, String) {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(env!("CARGO_BIN_EXE_ioap"))
            .args(args)
            .env("NO_COLOR", "1")
            .output(),
    )
    .await
    .expect("in time")
    .expect("run ioap");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let printed = serde_json::from_str(last).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), printed, stderr)
}

/// `ioap id new --out DIR/NAME.pem`: the key file's path and its DID.
pub async fn new_identity(dir: &std::path::Path, name: &str) -> (String, String) {
    let path = dir.join(format!("{name}.pem")).display().to_string();
    let (code, printed, err) = ioap(&["id", "new", "--out", &path, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let did = printed["did"].as_str().expect("did").to_owned();
    (path, did)
}
