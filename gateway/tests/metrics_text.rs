//! `/metrics` as Prometheus reads it: every documented series from the start, in the text
//! format, passing Prometheus's own `promtool check metrics` where it is installed.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::process::spawn;
use support::scrape;

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
    let text = scrape(&format!("http://{}", process.address)).await;
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

/// `promtool check metrics` (Prometheus's parser and linter) on a fresh gateway's scrape.
#[tokio::test]
async fn promtool_accepts_the_scrape() {
    if !support::tool_available("promtool") {
        return;
    }
    let process = spawn(&["--listen", "127.0.0.1:0"], &[]);
    let text = scrape(&format!("http://{}", process.address)).await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
