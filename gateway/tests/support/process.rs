//! The `ioap-gateway` binary as a child process of a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::WAIT;

/// The `ioap-gateway` binary: cargo names it for the gateway's own tests; tests of other
/// packages of the workspace find it beside their own binaries (build the workspace first).
pub static BINARY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    if let Some(path) = option_env!("CARGO_BIN_EXE_ioap-gateway") {
        return path.to_owned();
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target directory");
    let binary = dir.join("ioap-gateway");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build -p ioap-gateway)",
        binary.display()
    );
    binary.display().to_string()
});

/// A gateway process and the address it reported.
pub struct Process {
    pub child: Child,
    pub address: String,
    /// Every JSON log line after the "listening" one.
    pub log: mpsc::Receiver<serde_json::Value>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `args` and `env` and waits for its "listening" log line.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
    let mut child = Command::new(&*BINARY)
        .args(["--log-format", "json"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ioap-gateway");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let (log_tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if json["message"] == "ioap gateway listening" {
                let address = json["address"].as_str().unwrap_or("").to_owned();
                let _ = tx.send(address);
            } else {
                let _ = log_tx.send(json);
            }
        }
    });
    let address = rx
        .recv_timeout(WAIT)
        .expect("the gateway reports its address");
    Process {
        child,
        address,
        log,
    }
}

impl Process {
    /// The process's resident set size, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Runs `ioap-gateway --check-config args…`: exit code, stdout, stderr.
pub fn check_config(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(&*BINARY)
        .arg("--check-config")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run");
    (
        output.status.code(),
        String::from_utf8(output.stdout).expect("utf8"),
        String::from_utf8(output.stderr).expect("utf8"),
    )
}
