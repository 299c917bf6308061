//! The `ioap-gateway` binary as operators run it: flags, environment, config file, signals.

mod support;

use std::process::Command;

use ioap_protocol::handshake::Advertisement;
use ioap_protocol::{CloseCode, Identity};
use support::process::{BINARY, spawn};
use support::*;

#[test]
fn help_documents_every_setting_with_its_environment_variable() {
    let output = Command::new(BINARY).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf8");
    for flag in [
        "--listen",
        "--config",
        "--register-timeout-secs",
        "--idle-timeout-secs",
        "--max-frame-bytes",
        "--max-connections",
        "--log-format",
        "--tls-cert",
        "--tls-key",
        "--rate-per-did",
        "--rate-per-ip",
        "--registrations-per-ip-per-min",
        "--allowlist",
        "--verify-relayed",
        "--upgrade-timeout-secs",
        "--max-connections-per-ip",
        "--flood-close-after-secs",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        let env = format!(
            "IOAP_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "--help lacks {env}");
    }
    assert!(help.contains("default: 127.0.0.1:8000"));
}

#[test]
fn bad_settings_exit_with_a_clear_error() {
    let output = Command::new(BINARY)
        .args(["--max-frame-bytes", "5"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf8");
    assert!(stderr.contains("max frame bytes"), "{stderr}");
    let output = Command::new(BINARY)
        .args(["--config", "/nonexistent/ioap.toml"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn environment_and_file_settings_apply_and_sigterm_closes_with_1001() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "idle_timeout_secs = 11\nmax_frame_bytes = 32768\n").expect("write");
    // The environment overrides the file for the idle timeout; the file still sets the frame
    // limit.
    let process = spawn(
        &["--config", config.to_str().expect("utf8")],
        &[
            ("IOAP_LISTEN", "127.0.0.1:0"),
            ("IOAP_IDLE_TIMEOUT_SECS", "77"),
        ],
    );
    let url = format!("ws://{}/ws", process.address);
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, register.as_str()).await;
    let (_, registered) = register
        .handshake
        .on_reply(&next_envelope(&mut ws).await)
        .expect("registered");
    assert_eq!(registered.idle_timeout_ms, 77_000);
    assert_eq!(registered.max_frame_bytes, 32_768);

    let mut process = process;
    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(
        expect_close(&mut ws).await,
        Some(CloseCode::GoingAway.code())
    );
    let exit = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().expect("wait");
        drop(process);
        status
    })
    .await
    .expect("join");
    assert!(exit.success(), "exit status {exit:?}");
}
