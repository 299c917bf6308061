//! Agents on different networks, in real network namespaces: a LAN pair, two agents behind
//! home routers (NAT punched with STUN), two behind bare Linux MASQUERADE routers (no direct
//! path: refused fast with its own code and a hint when the gateway relay is off), two behind
//! symmetric NATs and one on a network without UDP (both linked over the gateway relay). Each
//! runs the real `ioap serve` and `ioap call --verbose` processes and checks the path the link
//! took and an EXEC round trip.

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
    call_with(net, host, did, gateway, ice, &[])
}

/// [`call`] with more arguments.
fn call_with(
    net: &Net,
    host: &Host,
    did: &str,
    gateway: &str,
    ice: &[&str],
    more: &[&str],
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
    args.extend(more);
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
fn bare_masquerade_on_both_sides_without_gateway_relay_is_refused_fast_with_a_hint_at_turn() {
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
    let never = ["--gateway-relay", "never"];
    let (code, out, err, took) = call_with(&net, &a, &did, &gateway, &[&stun], &never);
    assert_eq!(code, 1, "{err}");
    let printed: Value = serde_json::from_str(out.trim()).expect("one JSON error");
    assert_eq!(printed["error"]["code"], "CONNECTION_REFUSED", "{out}");
    let message = printed["error"]["message"].as_str().expect("message");
    assert!(message.contains("TURN"), "{message}");
    assert!(took < Duration::from_secs(12), "{took:?}");
}

/// Two agents behind NATs that allow no direct path: the link falls back to the gateway
/// relay within the call's deadline.
fn assert_links_over_the_gateway_relay(tag: &str, a_nat: Nat, b_nat: Nat) {
    let Some(mut net) = Net::new(tag, &["turnserver"]) else {
        return;
    };
    let gateway = net.gateway(&process::BINARY);
    let stun = net.stun();
    let (a, b) = (net.nat_host("a", 2, a_nat), net.nat_host("b", 3, b_nat));
    let did = serve(&mut net, &b, &gateway, &[&stun]);
    for _ in 0..2 {
        let (code, out, err, took) = call(&net, &a, &did, &gateway, &[&stun]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), r#"{"hello":"net"}"#);
        assert!(err.contains("link: relayed by the gateway"), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

#[test]
fn two_agents_behind_symmetric_nats_without_turn_link_over_the_gateway_relay() {
    assert_links_over_the_gateway_relay("ny", Nat::Symmetric, Nat::Symmetric);
}

#[test]
fn an_agent_on_a_network_without_udp_links_over_the_gateway_relay() {
    assert_links_over_the_gateway_relay("nu", Nat::UdpBlocked, Nat::Home);
}

#[test]
fn two_agents_behind_symmetric_nats_link_through_the_gateways_embedded_turn_server() {
    let Some(mut net) = Net::new("ne", &[]) else {
        return;
    };
    let turn_listen = format!("{}.1:3479", netns::PUBLIC);
    let gateway = net.gateway_with(&process::BINARY, &["--turn-listen", &turn_listen]);
    let (a, b) = (
        net.nat_host("a", 2, Nat::Symmetric),
        net.nat_host("b", 3, Nat::Symmetric),
    );
    // No ICE server of their own: the gateway offers its TURN server with fresh credentials.
    let did = serve(&mut net, &b, &gateway, &[]);
    let never = ["--gateway-relay", "never"];
    let (code, out, err, _) = call_with(&net, &a, &did, &gateway, &[], &never);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"hello":"net"}"#);
    assert!(err.contains("link: relayed by TURN"), "{err}");
}

/// Blocked: with coturn 4.6, webrtc-rs 0.17's TURN client gets 400 Bad Request for every
/// ChannelBind after its CreatePermission succeeds, and 438 (stale nonce) answers it does not
/// retry, so no relayed pair ever carries a check (the gateway's embedded TURN server, above,
/// links the same pair). The sans-IO engine (issue #12) is the way out; run with `--ignored`
/// to see it.
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

/// The "call:" time `ioap call --verbose` reported, in ms.
fn call_ms(stderr: &str) -> Option<f64> {
    let rest = stderr.split("call: ").nth(1)?;
    rest.split(" ms").next()?.parse().ok()
}

fn percentiles(mut times: Vec<f64>) -> (f64, f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    (at(0.5), at(0.95), at(1.0))
}

/// Setup times over 20 calls on each path (`cargo nextest run --run-ignored only -E
/// 'test(setup_times)' --no-capture`); figures in docs/networks.md.
#[test]
#[ignore = "a measurement, not a check: run it by name"]
fn setup_times_per_path() {
    let turn_listen = format!("{}.1:3479", netns::PUBLIC);
    let embedded_turn = ["--turn-listen", turn_listen.as_str()];
    let direct_only = ["--gateway-relay", "never"];
    for (name, nat, turn) in [
        ("LAN", None, false),
        ("home routers, STUN", Some(Nat::Home), false),
        ("symmetric NATs, embedded TURN", Some(Nat::Symmetric), true),
        ("symmetric NATs, gateway relay", Some(Nat::Symmetric), false),
    ] {
        let Some(mut net) = Net::new("nm", &["turnserver"]) else {
            return;
        };
        let gateway_args: &[&str] = if turn { &embedded_turn } else { &[] };
        let gateway = net.gateway_with(&process::BINARY, gateway_args);
        let stun = net.stun();
        let (a, b) = match nat {
            None => (net.lan_host("a", 11), net.lan_host("b", 12)),
            Some(nat) => (net.nat_host("a", 2, nat), net.nat_host("b", 3, nat)),
        };
        let did = serve(&mut net, &b, &gateway, &[&stun]);
        let call_args: &[&str] = if turn { &direct_only } else { &[] };
        let (mut setups, mut calls) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let err = call_with(&net, &a, &did, &gateway, &[&stun], call_args).2;
            setups.extend(setup_ms(&err));
            calls.extend(call_ms(&err));
        }
        assert_eq!(setups.len(), 20, "every call reported its setup");
        assert_eq!(calls.len(), 20, "every call reported its round trip");
        let (p50, p95, max) = percentiles(setups);
        let (c50, c95, _) = percentiles(calls);
        println!(
            "{name}: setup p50 {p50:.1} ms, p95 {p95:.1} ms, max {max:.1} ms; \
             EXEC round trip p50 {c50:.2} ms, p95 {c95:.2} ms"
        );
    }
}
