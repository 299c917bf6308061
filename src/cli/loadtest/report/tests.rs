use std::time::Duration;

use super::*;
use crate::cli::loadtest::target::Usage;

fn tally(successes: u64, failures: &[(&str, u64)]) -> Tally {
    let mut tally = Tally::default();
    for _ in 0..successes {
        tally.success(Duration::from_millis(2));
    }
    for (code, count) in failures {
        tally.failure(*code, *count);
    }
    tally
}

fn clean_report() -> Report {
    Report {
        schema: SCHEMA,
        passed: false,
        interrupted: false,
        config: RunConfig {
            gateway_url: "ws://127.0.0.1:1/ws".into(),
            embedded: true,
            agents: 4,
            links: 1,
            calls: 3,
            concurrency: 2,
            payload_bytes: 8,
            stream_parts: None,
            ramp_per_s: 0,
            duration_s: 1,
            timeout_ms: 1000,
            engine: "str0m",
            hold_s: 0,
        },
        registration: PhaseReport::new(4, &tally(4, &[]), 0.5),
        links: Some(PhaseReport::new(1, &tally(1, &[]), 0.1)),
        link_paths: Some([("direct", 1)].into_iter().collect()),
        exec: Some(PhaseReport::new(3, &tally(3, &[]), 0.1)),
        hold: None,
        relay: Some(RelayReport {
            pairs: 1,
            sent: 10,
            delivered: 10,
            failed: Failures::new(),
            seconds: 1.0,
            per_s: 10.0,
            latency: tally(10, &[]).percentiles(),
            disconnections: Failures::new(),
        }),
        teardown: TeardownReport {
            closed: 4,
            timed_out: 0,
            seconds: 0.2,
            agents_left: Some(0),
        },
        errors: Failures::new(),
        gateway: GatewayReport {
            pid: None,
            samples: vec![PhaseSample {
                phase: "register",
                sample: Usage {
                    at_s: 0.5,
                    rss_kib: Some(2048),
                    cpu_s: Some(0.1),
                },
                cpu_percent: Some(20.0),
            }],
            rss_per_agent_kib: Some(12.5),
        },
        process: ProcessReport {
            rss_start_kib: Some(1000),
            rss_loaded_kib: Some(2000),
            rss_per_agent_kib: Some(100.0),
            rss_per_link_kib: Some(400.0),
            includes_gateway: true,
            samples: Vec::new(),
        },
    }
}

#[test]
fn a_clean_run_passes_and_renders_every_phase() {
    let mut report = clean_report();
    report.conclude();
    assert!(report.passed);
    let table = report.render();
    for expected in [
        "register", "links", "exec", "relay", "4/4", "10/10", "PASSED",
    ] {
        assert!(table.contains(expected), "{expected} missing from\n{table}");
    }
    assert!(table.contains("register 20%"), "{table}");
}

#[test]
fn any_failure_fails_the_run_and_is_summed_by_code() {
    let mut report = clean_report();
    report.registration = PhaseReport::new(4, &tally(3, &[("RATE_LIMITED", 1)]), 0.5);
    report.exec = Some(PhaseReport::new(3, &tally(2, &[("TIMEOUT", 1)]), 0.1));
    if let Some(relay) = &mut report.relay {
        relay.failed.insert("TIMEOUT".into(), 2);
    }
    report.conclude();
    assert!(!report.passed);
    assert_eq!(report.errors["RATE_LIMITED"], 1);
    assert_eq!(report.errors["TIMEOUT"], 3);
    assert!(report.render().contains("FAILED"));
}

#[test]
fn missing_successes_fail_even_without_a_code() {
    let mut report = clean_report();
    report.links = Some(PhaseReport::new(2, &tally(1, &[]), 0.1));
    report.conclude();
    assert!(!report.passed);
}

#[test]
fn a_relay_that_delivered_nothing_or_a_dirty_teardown_fails() {
    let mut report = clean_report();
    if let Some(relay) = &mut report.relay {
        relay.delivered = 0;
    }
    report.conclude();
    assert!(!report.passed, "nothing delivered");

    let mut report = clean_report();
    if let Some(relay) = &mut report.relay {
        relay.disconnections.insert("CLOSED_4006".into(), 1);
    }
    report.conclude();
    assert!(!report.passed, "a sender was disconnected");
    assert_eq!(report.errors["CLOSED_4006"], 1);

    let mut report = clean_report();
    report.teardown.agents_left = Some(1);
    report.conclude();
    assert!(!report.passed, "an agent left registered");

    let mut report = clean_report();
    report.teardown.agents_left = None;
    report.conclude();
    assert!(!report.passed, "the registry could not be checked");
}

#[test]
fn skipped_phases_are_null_and_the_schema_keys_are_stable() {
    let mut report = clean_report();
    report.links = None;
    report.link_paths = None;
    report.exec = None;
    report.relay = None;
    report.conclude();
    assert!(report.passed);
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["schema"], "ioap.loadtest.v1");
    assert!(json["links"].is_null() && json["exec"].is_null() && json["relay"].is_null());
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "config",
            "errors",
            "exec",
            "gateway",
            "hold",
            "interrupted",
            "link_paths",
            "links",
            "passed",
            "process",
            "registration",
            "relay",
            "schema",
            "teardown"
        ]
    );
    let registration = &json["registration"];
    for key in [
        "requested",
        "succeeded",
        "failed",
        "seconds",
        "per_s",
        "latency",
    ] {
        assert!(!registration[key].is_null(), "registration.{key}");
    }
    for key in ["count", "p50_ms", "p95_ms", "p99_ms", "max_ms"] {
        assert!(registration["latency"][key].is_number(), "latency.{key}");
    }
    let sample = &json["gateway"]["samples"][0];
    for key in ["phase", "at_s", "rss_kib", "cpu_s", "cpu_percent"] {
        assert!(!sample[key].is_null(), "gateway.samples[].{key}");
    }
}

#[test]
fn growth_and_rates_guard_against_zero() {
    assert_eq!(growth_per(Some(100), Some(300), 4), Some(50.0));
    assert_eq!(growth_per(Some(100), Some(50), 4), Some(0.0));
    assert_eq!(growth_per(None, Some(300), 4), None);
    assert_eq!(growth_per(Some(1), Some(2), 0), None);
    assert_eq!(rate(10, 0.0), 0.0);
    assert_eq!(rate(10, 2.0), 5.0);
}

#[test]
fn an_interrupted_run_fails_and_counts_what_it_did_not_attempt() {
    let mut report = clean_report();
    report.interrupted = true;
    report.registration = PhaseReport::new(10, &tally(6, &[("TIMEOUT", 1)]), 0.5);
    report.links = None;
    report.conclude();
    assert!(!report.passed);
    assert_eq!(report.registration.failed[INTERRUPTED], 3);
    assert_eq!(report.errors[INTERRUPTED], 3);
    assert!(report.render().contains("FAILED (interrupted)"));
}

#[test]
fn a_link_lost_while_held_fails_the_run_and_is_counted() {
    let mut report = clean_report();
    report.conclude();
    assert!(report.passed, "the clean report passes");
    report.hold = Some(crate::cli::loadtest::hold::HoldReport {
        seconds: 10.0,
        links_at_start: 4,
        links_at_end: 3,
        lost: 1,
        cpu_ms_per_link_per_s: Some(0.25),
    });
    report.conclude();
    assert!(!report.passed);
    assert_eq!(report.errors.get("LINK_LOST"), Some(&1));
    assert!(
        report
            .render()
            .contains("hold: 4 links idle for 10.0 s, 1 lost"),
        "{}",
        report.render()
    );
}
