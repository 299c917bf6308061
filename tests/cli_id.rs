//! `ioap id …` as a user runs it: the real binary, real files.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn ioap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ioap"))
        .args(args)
        .output()
        .expect("run ioap")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf8")
}

#[test]
fn from_seed_prints_the_w3c_did() {
    let out = ioap(&["id", "from-seed", &"00".repeat(32)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    );
    let out = ioap(&["id", "from-seed", &"00".repeat(32), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        json["x25519_key_agreement"],
        "z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW"
    );
}

#[test]
fn bad_seeds_fail_clearly() {
    for seed in ["abc", &"zz".repeat(32), &"00".repeat(33)] {
        let out = ioap(&["id", "from-seed", seed]);
        assert!(!out.status.success(), "{seed} accepted");
        assert!(
            stderr(&out).contains("64 hexadecimal digits"),
            "{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn new_then_show_agree_and_the_file_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    let path_text = path.to_str().expect("utf8 path");
    let out = ioap(&["id", "new", "--out", path_text]);
    assert!(out.status.success(), "{}", stderr(&out));
    let did = stdout(&out).trim().to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{did}");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let out = ioap(&["id", "show", path_text, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["did"], did.as_str());
    assert!(!stdout(&out).contains("PRIVATE"), "secret printed");

    let again = ioap(&["id", "new", "--out", path_text]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("file exists"), "{}", stderr(&again));
    let forced = ioap(&["id", "new", "--out", path_text, "--force", "--json"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let json: serde_json::Value = serde_json::from_slice(&forced.stdout).expect("json");
    assert_ne!(json["did"], did.as_str());
    assert_eq!(json["key_file"], path_text);
}

#[test]
fn show_refuses_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let out = ioap(&["id", "show", missing.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.pem"), "{}", stderr(&out));

    let loose = dir.path().join("loose.pem");
    let out = ioap(&["id", "new", "--out", loose.to_str().expect("utf8")]);
    assert!(out.status.success());
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = ioap(&["id", "show", loose.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").expect("write");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = ioap(&["id", "show", garbage.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a PKCS#8"), "{}", stderr(&out));
}

#[test]
fn version_names_the_git_revision() {
    let output = ioap(&["--version"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let version = stdout(&output);
    assert!(
        version.starts_with(&format!("ioap {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = ioap(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(
            script.contains("loadtest") && script.contains("ca-cert"),
            "{shell}: {script}"
        );
    }
    assert!(!ioap(&["completions", "cmd.exe"]).status.success());
}
