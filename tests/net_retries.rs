//! Safe retries between real processes on a real network (PROTOCOL_DESIGN.md §11.10): an
//! `ioap call --idempotent` whose WebRTC link is cut mid-call (UDP dropped in the caller's
//! namespace) is sent again over a new link — the gateway relay, since UDP stays cut — and
//! the callee's handler runs exactly once.

#[allow(dead_code)]
mod netns;
#[allow(dead_code)]
#[path = "../gateway/tests/support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../gateway/tests/support/tools.rs"]
mod tools;

use std::io::Read;
use std::time::{Duration, Instant};

use netns::Net;
use serde_json::{Value, json};

/// Bound on any single wait (the shared process helpers use it).
const WAIT: Duration = Duration::from_secs(20);
const IOAP: &str = env!("CARGO_BIN_EXE_ioap");

/// Waits (bounded) until `ns`'s log holds `needle`.
fn wait_for_log(net: &Net, ns: &str, needle: &str) {
    let until = Instant::now() + WAIT;
    while !net.log(ns).contains(needle) {
        assert!(Instant::now() < until, "no {needle:?} in:\n{}", net.log(ns));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idempotent_call_whose_link_is_cut_mid_call_is_retried_and_the_handler_runs_once() {
    let Some(mut net) = Net::new("nr", &[]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let (a, b) = (net.lan_host("a", 11), net.lan_host("b", 12));
    let serving = net.spawn(
        &b.ns,
        "env",
        &[
            "RUST_LOG=ioap_client::calls=debug,ioap_client=info",
            "NO_COLOR=1",
            IOAP,
            "serve",
            "--gateway",
            &gateway,
        ],
    );
    let line = netns::wait_for_line(serving, true, |line| line.contains("\"did\""));
    let printed: Value = serde_json::from_str(&line).expect("serve prints JSON");
    let did = printed["did"].as_str().expect("did").to_owned();

    let calling = net.spawn(
        &a.ns,
        "env",
        &[
            "RUST_LOG=ioap_client=debug",
            "NO_COLOR=1",
            IOAP,
            "call",
            &did,
            "sleep",
            r#"{"ms":10000}"#,
            "--idempotent",
            "--timeout",
            "45000",
            "--gateway",
            &gateway,
        ],
    );
    let mut stdout = calling.stdout.take().expect("stdout");
    let pid = calling.id();
    wait_for_log(&net, &b.ns, "handler started");
    // Cut the direct path: the WebRTC link is lost (ICE consent) and cannot be made again.
    for chain in ["INPUT", "OUTPUT"] {
        net.exec(&a.ns, "iptables", &["-A", chain, "-p", "udp", "-j", "DROP"]);
    }

    let status = net
        .wait_for_exit(pid, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the call did not end:\n{}", net.log(&a.ns)));
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    let caller_log = net.log(&a.ns);
    assert!(status.success(), "{out}\n{caller_log}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).expect("JSON"),
        json!({"slept_ms": 10000})
    );
    assert!(
        caller_log.contains("sending the call again with its key"),
        "the call was retried:\n{caller_log}"
    );
    let callee_log = net.log(&b.ns);
    assert_eq!(
        callee_log.matches("handler started").count(),
        1,
        "the handler ran exactly once:\n{callee_log}"
    );
    assert_eq!(
        (
            callee_log
                .matches("call served outcome=\"stopped\"")
                .count(),
            callee_log.matches("call served outcome=\"ok\"").count(),
        ),
        (1, 1),
        "the first request's link ended; its repeat got the handler's result:\n{callee_log}"
    );
}
