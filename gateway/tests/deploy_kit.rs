//! The operator's kit in deploy/: the example settings file and the systemd unit.

mod support;

use std::process::Command;

use support::process::{BINARY, check_config, spawn};

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.toml")
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
        redis_url: Some("redis://127.0.0.1:6379".into()),
        node_id: Some("gw-1".into()),
        turn_secret: Some("s".into()),
        turn_listen: Some("0.0.0.0:3478".parse().expect("address")),
        turn_relay_ip: Some("203.0.113.7".parse().expect("ip")),
        turn_max_allocations: Some(1024),
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

/// `systemd-analyze verify` on the unit, with ExecStart pointing at the built binary. CI
/// installs systemd's tools when missing and sets IOAP_REQUIRE_TOOLS; elsewhere the test
/// says it could not run.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if !support::tool_available("systemd-analyze") {
        return;
    }
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ioap-gateway.service"),
    )
    .expect("deploy/ioap-gateway.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/ioap-gateway "),
        "{unit}"
    );
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/ioap-gateway ",
        &format!("ExecStart={} ", *BINARY),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ioap-gateway.service");
    std::fs::write(&path, unit).expect("write");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("ioap-gateway.service"),
        "warnings about the unit: {stderr}"
    );
}
