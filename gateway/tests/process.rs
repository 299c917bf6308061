//! The `ioap-gateway` binary as operators run it: flags, environment, config file, signals.

mod support;

use std::process::Command;

use ioap_protocol::handshake::Advertisement;
use ioap_protocol::{CloseCode, Identity};
use support::process::{BINARY, check_config, spawn};
use support::*;

#[test]
fn help_documents_every_setting_with_its_environment_variable() {
    let output = Command::new(&*BINARY).arg("--help").output().expect("run");
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
        "--drain-secs",
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
    let output = Command::new(&*BINARY)
        .args(["--max-frame-bytes", "5"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf8");
    assert!(stderr.contains("max frame bytes"), "{stderr}");
    let output = Command::new(&*BINARY)
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
            ("IOAP_DRAIN_SECS", "0"),
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

#[test]
fn a_bad_log_filter_or_public_url_exits_2_naming_it() {
    let (code, _, stderr) = check_config(&["--log-level", "nonsense=["]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nonsense=["), "{stderr}");
    let (code, _, stderr) = check_config(&["--public-url", "foo"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("\"foo\"") && stderr.contains("ws://"),
        "{stderr}"
    );
    let (code, _, stderr) = Command::new(&*BINARY)
        .args(["--log-level", "nonsense=["])
        .output()
        .map(|o| {
            (
                o.status.code(),
                (),
                String::from_utf8(o.stderr).expect("utf8"),
            )
        })
        .expect("run");
    assert_eq!(
        code,
        Some(2),
        "the gateway itself refuses to start: {stderr}"
    );
}

#[tokio::test]
async fn sigterm_drains_health_503_and_refuses_registrations_then_closes_with_1001() {
    const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
    let mut process = spawn(&["--listen", "127.0.0.1:0", "--drain-secs", "2"], &[]);
    let url = format!("ws://{}/ws", process.address);
    let health = format!("http://{}/health", process.address);
    let identity = Identity::generate().expect("rng");
    let agent = register_as(&url, identity.clone(), Advertisement::default()).await;
    let mut ws = agent.ws;
    let before = http().get(&health).send().await.expect("health");
    assert_eq!(before.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let signalled = std::time::Instant::now();
    // /health turns 503 "draining" (the signal is handled asynchronously: poll, bounded).
    let body = loop {
        let response = http()
            .get(&health)
            .send()
            .await
            .expect("health while draining");
        if response.status() == 503 {
            break response.json::<serde_json::Value>().await.expect("json");
        }
        assert!(signalled.elapsed() < DRAIN, "/health never said draining");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "draining");
    // A new registration is refused while draining.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        ioap_protocol::SUBPROTOCOL.parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("a registration was not refused while draining: {other:?}"),
    }
    // The registered session goes on until the drain time, then gets 1001.
    assert_eq!(
        expect_close(&mut ws).await,
        Some(CloseCode::GoingAway.code())
    );
    let closed_after = signalled.elapsed();
    assert!(
        closed_after >= DRAIN - std::time::Duration::from_millis(200),
        "closed {closed_after:?} after SIGTERM, before the drain time"
    );
    let exit = tokio::task::spawn_blocking(move || process.child.wait().expect("wait"))
        .await
        .expect("join");
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn a_sessions_log_lines_carry_its_remote_address_and_did_at_the_top_level_of_json() {
    let process = spawn(&["--listen", "127.0.0.1:0", "--log-level", "info"], &[]);
    let url = format!("ws://{}/ws", process.address);
    let identity = Identity::generate().expect("rng");
    drop(register_as(&url, identity.clone(), Advertisement::default()).await);
    let did = identity.did().to_string();
    let line = loop {
        let line = process
            .log
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a disconnect line");
        if line["message"] == "agent disconnected" {
            break line;
        }
    };
    assert_eq!(line["did"], did.as_str(), "fields are flat: {line}");
    assert!(
        line["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{line}"
    );
    assert_eq!(
        line["span"]["did"],
        did.as_str(),
        "the session span carries the DID: {line}"
    );
    assert!(line["span"]["remote"].is_string(), "{line}");
}
