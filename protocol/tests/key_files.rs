//! Key files: PKCS#8 PEM, written 0600, refused when group/world-readable.

use std::os::unix::fs::PermissionsExt;

use ioap_protocol::{Identity, IdentityError};

#[test]
fn save_and_load_round_trip_with_owner_only_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    let identity = Identity::generate().expect("rng");
    identity.save(&path, false).expect("save");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let loaded = Identity::load(&path).expect("load");
    assert_eq!(loaded.did(), identity.did());
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    let first = Identity::from_seed(&[1; 32]);
    first.save(&path, false).expect("save");
    let second = Identity::from_seed(&[2; 32]);
    assert!(matches!(
        second.save(&path, false),
        Err(IdentityError::Exists(_))
    ));
    assert_eq!(Identity::load(&path).expect("load").did(), first.did());
    // Overwriting also tightens a loosened mode before the secret is written.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    second.save(&path, true).expect("overwrite");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Identity::load(&path).expect("load").did(), second.did());
}

#[test]
fn refuses_group_or_world_readable_key_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.pem");
    Identity::from_seed(&[1; 32])
        .save(&path, false)
        .expect("save");
    for mode in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        match Identity::load(&path) {
            Err(IdentityError::InsecurePermissions { mode: got, .. }) => {
                assert_eq!(got & 0o777, mode)
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
    let message = Identity::load(&path).expect_err("insecure").to_string();
    assert!(message.contains("chmod 600"), "{message}");
}

#[test]
fn clear_errors_for_missing_and_garbage_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.pem");
    assert!(matches!(
        Identity::load(&missing),
        Err(IdentityError::Io { .. })
    ));
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(matches!(
        Identity::load(&garbage),
        Err(IdentityError::NotAKey(_))
    ));
}
