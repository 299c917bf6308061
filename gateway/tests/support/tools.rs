//! Tools a test needs from the machine.

/// Whether the command `tool` is installed. Where it is not, a test that needs it says so and
/// passes, unless IOAP_REQUIRE_TOOLS is set (CI installs every tool and sets it), where a
/// missing tool fails the test.
pub fn tool_available(tool: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("IOAP_REQUIRE_TOOLS").is_none(),
            "{tool} is required (IOAP_REQUIRE_TOOLS) but not installed"
        );
        eprintln!("{tool} is not installed: this test did not run");
    }
    found
}
