//! Agents on different networks, in real network namespaces: a LAN pair, two agents behind
//! home routers (NAT punched with STUN), and two behind bare Linux MASQUERADE routers (no path
//! without TURN: refused fast with its own code and a hint). Each runs the real `ioap serve`
//! and `ioap call --verbose` processes and checks the path the link took.

mod netns;
#[allow(dead_code)]
#[path = "../gateway/tests/support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../gateway/tests/support/tools.rs"]
mod tools;

use std::time::{Duration, Instant};

use netns::{Host, Nat, Net};
use serde_json::Value;

/// Bound on any single wait.
const WAIT: Duration = Duration::from_secs(20);
const IOAP: &str = env!("CARGO_BIN_EXE_ioap");

/// `ioap serve` on `host`; its DID.
fn serve(net: &mut Net, host: &Host, gateway: &str, ice: &[&str]) -> String {
    let mut args = vec!["serve", "--gateway", gateway];
    for server in ice {
        args.extend(["--ice-server", server]);
    }
    let ns = host.ns.clone();
    let child = net.spawn(&ns, IOAP, &args);
    let line = netns::wait_for_line(child, true, |line| line.contains("\"did\""));
    let printed: Value = serde_json::from_str(&line).expect("serve prints JSON");
    printed["did"].as_str().expect("did").to_owned()
}

/// `ioap call DID echo {...} --verbose` from `host`: exit code, stdout, stderr, time taken.
fn call(
    net: &Net,
    host: &Host,
    did: &str,
    gateway: &str,
    ice: &[&str],
) -> (i32, String, String, Duration) {
    let mut args = vec![
        "call",
        did,
        "echo",
        r#"{"hello":"net"}"#,
        "--verbose",
        "--gateway",
        gateway,
    ];
    for server in ice {
        args.extend(["--ice-server", server]);
    }
    let started = Instant::now();
    let (code, out, err) = net.output(&host.ns, IOAP, &args);
    (code, out, err, started.elapsed())
}

#[test]
fn a_lan_pair_links_directly_over_host_candidates() {
    let Some(mut net) = Net::new("nl", &[]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let (a, b) = (net.lan_host("a", 11), net.lan_host("b", 12));
    let did = serve(&mut net, &b, &gateway, &[]);
    let (code, out, err, _) = call(&net, &a, &did, &gateway, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"hello":"net"}"#);
    assert!(err.contains("link: direct: Host 10.77.0.11:"), "{err}");
    assert!(
        !err.contains("127.0.0.1"),
        "no loopback candidate reaches a remote peer: {err}"
    );
}

#[test]
fn two_agents_behind_home_routers_link_directly_through_nat_with_stun() {
    let Some(mut net) = Net::new("nh", &["turnserver"]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let stun = net.stun();
    let (a, b) = (
        net.nat_host("a", 2, Nat::Home),
        net.nat_host("b", 3, Nat::Home),
    );
    let did = serve(&mut net, &b, &gateway, &[&stun]);
    for _ in 0..3 {
        let (code, out, err, _) = call(&net, &a, &did, &gateway, &[&stun]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), r#"{"hello":"net"}"#);
        assert!(err.contains("link: direct through NAT"), "{err}");
        assert!(
            err.contains("10.77.0.3:"),
            "the peer's public address: {err}"
        );
    }
}

#[test]
fn bare_masquerade_on_both_sides_is_refused_fast_with_a_hint_at_turn() {
    let Some(mut net) = Net::new("nb", &["turnserver"]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let stun = net.stun();
    let (a, b) = (
        net.nat_host("a", 2, Nat::Bare),
        net.nat_host("b", 3, Nat::Bare),
    );
    let did = serve(&mut net, &b, &gateway, &[&stun]);
    let (code, out, err, took) = call(&net, &a, &did, &gateway, &[&stun]);
    assert_eq!(code, 1, "{err}");
    let printed: Value = serde_json::from_str(out.trim()).expect("one JSON error");
    assert_eq!(printed["error"]["code"], "CONNECTION_REFUSED", "{out}");
    let message = printed["error"]["message"].as_str().expect("message");
    assert!(message.contains("TURN"), "{message}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}

/// Blocked: with coturn 4.6, webrtc-rs 0.17's TURN client gets 400 Bad Request for every
/// ChannelBind after its CreatePermission succeeds, and 438 (stale nonce) answers it does not
/// retry, so no relayed pair ever carries a check; the agents end with CONNECTION_REFUSED.
/// The sans-IO engine (issue #12) is the way out; run with `--ignored` to see it.
#[test]
#[ignore = "webrtc-rs 0.17 TURN client vs coturn 4.6: ChannelBind 400, stale nonce 438"]
fn two_agents_behind_symmetric_nats_link_through_turn() {
    let Some(mut net) = Net::new("ns", &["turnserver"]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let turn = net.turn("ioap", "test-secret");
    let (a, b) = (
        net.nat_host("a", 2, Nat::Symmetric),
        net.nat_host("b", 3, Nat::Symmetric),
    );
    let did = serve(&mut net, &b, &gateway, &[&turn]);
    let (code, out, err, _) = call(&net, &a, &did, &gateway, &[&turn]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"hello":"net"}"#);
    assert!(err.contains("link: relayed by TURN"), "{err}");
}

/// The "open after" time `ioap call --verbose` reported, in ms.
fn setup_ms(stderr: &str) -> Option<f64> {
    let rest = stderr.split("(open after ").nth(1)?;
    rest.split(" ms").next()?.parse().ok()
}

/// Setup times over 20 calls on each path (`cargo nextest run --run-ignored only -E
/// 'test(setup_times)' --no-capture`); figures in docs/networks.md.
#[test]
#[ignore = "a measurement, not a check: run it by name"]
fn setup_times_per_path() {
    for (name, nat) in [("LAN", None), ("home routers, STUN", Some(Nat::Home))] {
        let Some(mut net) = Net::new("nm", &["turnserver"]) else {
            return;
        };
        let gateway = net.gateway(&process::BINARY);
        let stun = net.stun();
        let (a, b) = match nat {
            None => (net.lan_host("a", 11), net.lan_host("b", 12)),
            Some(nat) => (net.nat_host("a", 2, nat), net.nat_host("b", 3, nat)),
        };
        let did = serve(&mut net, &b, &gateway, &[&stun]);
        let mut times: Vec<f64> = (0..20)
            .filter_map(|_| setup_ms(&call(&net, &a, &did, &gateway, &[&stun]).2))
            .collect();
        times.sort_by(f64::total_cmp);
        assert_eq!(times.len(), 20, "every call reported its setup");
        println!(
            "{name}: setup p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            times[9], times[18], times[19]
        );
    }
}
