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

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.toml")
}

fn check_config(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BINARY)
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

/// The keys a TOML file sets or shows commented out (`# key = …`).
fn keys(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.to_owned()))
        .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn the_example_config_has_every_key_and_check_config_round_trips_it() {
    let example = example_config();
    let text = std::fs::read_to_string(&example).expect("deploy/gateway.toml");
    let every = ioap_gateway::FileSettings {
        key: Some("k".into()),
        allowlist: Some("a".into()),
        tls_cert: Some("c".into()),
        tls_key: Some("k".into()),
        public_url: vec!["wss://gw.example/ws".into()],
        ..ioap_gateway::FileSettings::defaults()
    };
    let documented = keys(&text);
    let expected = keys(&toml::to_string(&every).expect("toml"));
    assert_eq!(
        documented, expected,
        "deploy/gateway.toml lists every setting"
    );

    let (code, effective, stderr) = check_config(&["--config", example.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{stderr}");
    // The example holds the defaults: its effective settings are those of no file at all.
    let (_, defaults, _) = check_config(&[]);
    assert_eq!(effective, defaults);
    // What --check-config prints is itself a valid file with the same effect.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("effective.toml");
    let (_, changed, _) =
        check_config(&["--rate-per-did", "7", "--public-url", "wss://gw.example/ws"]);
    std::fs::write(&path, &changed).expect("write");
    let (code, again, stderr) = check_config(&["--config", path.to_str().expect("utf8")]);
    assert_eq!((code, again), (Some(0), changed.clone()), "{stderr}");
    assert!(changed.contains("rate_per_did = 7"), "{changed}");
}

#[test]
fn the_gateway_starts_from_the_example_config() {
    let example = example_config();
    let gateway = spawn(
        &[
            "--config",
            example.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(
        gateway.address.starts_with("127.0.0.1:"),
        "{}",
        gateway.address
    );
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
    let (code, _, stderr) = Command::new(BINARY)
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
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, register.as_str()).await;
    register
        .handshake
        .on_reply(&next_envelope(&mut ws).await)
        .expect("registered");
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

/// The metric names documented in docs/gateway.md's table.
fn documented_metrics() -> Vec<String> {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/gateway.md"),
    )
    .expect("docs/gateway.md");
    docs.lines()
        .filter_map(|line| line.strip_prefix("| `ioap_gateway_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("ioap_gateway_{name}"))
        .collect()
}

/// Checks one line of the Prometheus text format: `name{label="value",…} number`.
fn valid_sample(line: &str) -> bool {
    let (series, value) = match line.rsplit_once(' ') {
        Some(split) => split,
        None => return false,
    };
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let labels_ok = series[name_end..].is_empty()
        || (series.ends_with('}')
            && series[name_end + 1..series.len() - 1]
                .split("\",")
                .all(|pair| pair.split_once("=\"").is_some_and(|(k, _)| !k.is_empty())));
    let value_ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
    name_ok && labels_ok && value_ok
}

#[tokio::test]
async fn every_documented_metric_is_exported_from_the_start_in_the_text_format() {
    let process = spawn(&["--listen", "127.0.0.1:0"], &[]);
    let text = http()
        .get(format!("http://{}/metrics", process.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let documented = documented_metrics();
    assert!(documented.len() >= 12, "{documented:?}");
    for name in &documented {
        assert!(
            text.lines().any(|line| line.starts_with(name.as_str())),
            "{name} is documented but not exported at start:\n{text}"
        );
    }
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(valid_sample(line), "not a Prometheus sample line: {line}");
    }
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    let version = format!(
        "ioap_gateway_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
}

#[tokio::test]
async fn a_sessions_log_lines_carry_its_remote_address_and_did_at_the_top_level_of_json() {
    let process = spawn(&["--listen", "127.0.0.1:0", "--log-level", "info"], &[]);
    let url = format!("ws://{}/ws", process.address);
    let identity = Identity::generate().expect("rng");
    let mut ws = connect(&url).await;
    let (_, register) = answer_challenge(&mut ws, &url, &identity, &Advertisement::default()).await;
    send_text(&mut ws, register.as_str()).await;
    register
        .handshake
        .on_reply(&next_envelope(&mut ws).await)
        .expect("registered");
    drop(ws);
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
