//! Test networks made of Linux network namespaces: a "public" segment (a bridge) holding the
//! gateway and a STUN server, hosts on it (a LAN), and hosts behind their own NAT router.
//! Everything a [`Net`] creates — namespaces, links, rules, processes — is removed when it is
//! dropped, also when the test fails.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The public segment's prefix; the bridge (gateway, STUN) is `.1`.
pub const PUBLIC: &str = "10.77.0";

/// How a host reaches the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// A home router: MASQUERADE, unsolicited inbound dropped (what consumer routers and
    /// OpenWrt's firewall do).
    Home,
    /// A bare Linux router: MASQUERADE and nothing else.
    Bare,
    /// A symmetric NAT: a new public port for every destination (MASQUERADE --random-fully),
    /// unsolicited inbound dropped. Hole punching cannot work through it; TURN can.
    Symmetric,
    /// A home router on a network that forwards no UDP at all (only TCP leaves): no STUN, no
    /// TURN over UDP, no direct path.
    UdpBlocked,
}

/// A host: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace to run its programs in.
    pub ns: String,
    /// Its own address.
    #[allow(dead_code)]
    pub ip: String,
}

/// A test network.
pub struct Net {
    /// Where the processes' logs go (deleted with the network).
    logs: tempfile::TempDir,
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    next_index: u8,
}

/// Runs a command and fails the test if it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Net {
    /// A new network with its public segment; `None` (the test says why and passes) where
    /// namespaces cannot be made here or one of `tools` is missing, unless IOAP_REQUIRE_TOOLS
    /// is set.
    pub fn new(tag: &str, tools: &[&str]) -> Option<Net> {
        let usable = ["ip", "iptables", "ss"]
            .iter()
            .chain(tools)
            .all(|tool| super::tools::tool_available(tool))
            && Command::new("ip")
                .args([
                    "netns",
                    "add",
                    &format!("ioap-probe-{}", std::process::id()),
                ])
                .status()
                .is_ok_and(|s| s.success());
        let _ = Command::new("ip")
            .args([
                "netns",
                "del",
                &format!("ioap-probe-{}", std::process::id()),
            ])
            .status();
        if !usable {
            assert!(
                std::env::var_os("IOAP_REQUIRE_TOOLS").is_none(),
                "network namespaces are required (IOAP_REQUIRE_TOOLS) but cannot be made"
            );
            eprintln!("network namespaces cannot be made here (not root?): this test did not run");
            return None;
        }
        let mut net = Net {
            logs: tempfile::tempdir().expect("a directory for the logs"),
            prefix: format!("{tag}{}", std::process::id() % 10_000),
            namespaces: Vec::new(),
            children: Vec::new(),
            next_index: 0,
        };
        let public = net.namespace("pub");
        net.exec(
            &public,
            "ip",
            &["link", "add", "name", "br0", "type", "bridge"],
        );
        net.exec(
            &public,
            "ip",
            &["addr", "add", &format!("{PUBLIC}.1/24"), "dev", "br0"],
        );
        net.exec(&public, "ip", &["link", "set", "br0", "up"]);
        Some(net)
    }

    /// The namespace of the public segment.
    pub fn public(&self) -> String {
        format!("{}-pub", self.prefix)
    }

    fn namespace(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(&ns, "ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `program args…` in `ns`; fails the test if it fails (a rule added this way lives
    /// as long as the network).
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) {
        let mut full = vec!["netns", "exec", ns, program];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// A veth pair from namespace `a` (address `a_ip`, or none) to `b`; `b`'s end joins the
    /// public bridge when `b` is the public namespace.
    fn wire(
        &mut self,
        a: &str,
        a_ip: Option<&str>,
        b: &str,
        b_ip: Option<&str>,
    ) -> (String, String) {
        self.next_index += 1;
        let (a_if, b_if) = (
            format!("{}a{}", self.prefix, self.next_index),
            format!("{}b{}", self.prefix, self.next_index),
        );
        run(
            "ip",
            &["link", "add", &a_if, "type", "veth", "peer", "name", &b_if],
        );
        run("ip", &["link", "set", &a_if, "netns", a]);
        run("ip", &["link", "set", &b_if, "netns", b]);
        for (ns, interface, ip) in [(a, &a_if, a_ip), (b, &b_if, b_ip)] {
            if let Some(ip) = ip {
                self.exec(ns, "ip", &["addr", "add", ip, "dev", interface]);
            }
            self.exec(ns, "ip", &["link", "set", interface, "up"]);
        }
        if b == self.public() {
            self.exec(b, "ip", &["link", "set", &b_if, "master", "br0"]);
        }
        (a_if, b_if)
    }

    /// A host on the public segment at `.{octet}` (a LAN pair shares it).
    pub fn lan_host(&mut self, name: &str, octet: u8) -> Host {
        let ns = self.namespace(name);
        let ip = format!("{PUBLIC}.{octet}");
        let public = self.public();
        self.wire(&ns, Some(&format!("{ip}/24")), &public, None);
        Host { ns, ip }
    }

    /// A host `192.168.{lan}.2` behind its own router, whose public address is
    /// `{PUBLIC}.{lan}`.
    pub fn nat_host(&mut self, name: &str, lan: u8, nat: Nat) -> Host {
        let router = self.namespace(&format!("{name}r"));
        let ns = self.namespace(name);
        let public = self.public();
        let (wan, _) = self.wire(&router, Some(&format!("{PUBLIC}.{lan}/24")), &public, None);
        let (_, _) = self.wire(
            &router,
            Some(&format!("192.168.{lan}.1/24")),
            &ns,
            Some(&format!("192.168.{lan}.2/24")),
        );
        self.exec(
            &ns,
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{lan}.1"),
            ],
        );
        self.exec(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let mut masquerade = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &wan,
            "-j",
            "MASQUERADE",
        ];
        if nat == Nat::Symmetric {
            masquerade.push("--random-fully");
        }
        self.exec(&router, "iptables", &masquerade);
        if nat == Nat::UdpBlocked {
            self.exec(
                &router,
                "iptables",
                &["-A", "FORWARD", "-p", "udp", "-j", "DROP"],
            );
        }
        if nat != Nat::Bare {
            self.exec(
                &router,
                "iptables",
                &[
                    "-A",
                    "INPUT",
                    "-i",
                    &wan,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW",
                    "-j",
                    "DROP",
                ],
            );
        }
        Host {
            ns,
            ip: format!("192.168.{lan}.2"),
        }
    }

    /// Starts `program args…` in namespace `ns`; stdout is piped, stderr goes to a log file
    /// that lives as long as the network.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str]) -> &mut Child {
        self.spawn_with(ns, program, args, false)
    }

    /// As [`spawn`](Self::spawn), with stderr piped when `stderr` is to be read.
    fn spawn_with(&mut self, ns: &str, program: &str, args: &[&str], stderr: bool) -> &mut Child {
        let stderr = if stderr {
            Stdio::piped()
        } else {
            std::fs::File::create(self.logs.path().join(format!("{ns}.log")))
                .map_or_else(|_| Stdio::null(), Stdio::from)
        };
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Waits up to `within` for the spawned process `pid` to end; its status, or `None` if it
    /// is still running.
    #[allow(dead_code)]
    pub fn wait_for_exit(
        &mut self,
        pid: u32,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        let until = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the processes spawned in `ns` wrote on stderr so far.
    #[allow(dead_code)]
    pub fn log(&self, ns: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{ns}.log"))).unwrap_or_default()
    }

    /// Runs `program args…` in `ns` to completion: exit code, stdout, stderr.
    pub fn output(&self, ns: &str, program: &str, args: &[&str]) -> (i32, String, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts the gateway on the public segment (`ws://{PUBLIC}.1:8000/ws`) and waits until it
    /// listens.
    pub fn gateway(&mut self, binary: &str) -> String {
        self.gateway_with(binary, &[])
    }

    /// [`Net::gateway`] with more arguments.
    pub fn gateway_with(&mut self, binary: &str, more: &[&str]) -> String {
        let public = self.public();
        let listen = format!("{PUBLIC}.1:8000");
        let mut args = vec![
            "--listen",
            &listen,
            "--log-format",
            "json",
            "--log-level",
            "info",
        ];
        args.extend_from_slice(more);
        let child = self.spawn_with(&public, binary, &args, true);
        wait_for_line(child, false, |line| line.contains("ioap gateway listening"));
        format!("ws://{PUBLIC}.1:8000/ws")
    }

    /// Starts a STUN server (coturn, STUN only) on the public segment; its URL.
    pub fn stun(&mut self) -> String {
        self.coturn(&["--stun-only"]);
        format!("stun:{PUBLIC}.1:3478")
    }

    /// Starts a TURN server (coturn, long-term credentials `user`:`password`, relaying on the
    /// public segment); its `--ice-server` value.
    pub fn turn(&mut self, user: &str, password: &str) -> String {
        let account = format!("{user}:{password}");
        let relay = format!("{PUBLIC}.1");
        let peers = format!("{PUBLIC}.0-{PUBLIC}.255");
        self.coturn(&[
            "--lt-cred-mech",
            "--user",
            &account,
            "--realm",
            "ioap.test",
            "--relay-ip",
            &relay,
            "--allowed-peer-ip",
            &peers,
            "--min-port",
            "49152",
            "--max-port",
            "49999",
        ]);
        format!("turn:{user}:{password}@{PUBLIC}.1:3478")
    }

    fn coturn(&mut self, extra: &[&str]) {
        let public = self.public();
        let listen = format!("{PUBLIC}.1");
        let log = self.logs.path().join("coturn.log");
        let log = log.to_string_lossy().into_owned();
        let mut args = vec![
            "--listening-ip",
            &listen,
            "--listening-port",
            "3478",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--fingerprint",
            "--log-file",
            &log,
            "--simple-log",
        ];
        args.extend_from_slice(extra);
        let child = self.spawn(&public, "turnserver", &args);
        // coturn buffers its log when it is not a terminal: wait for the socket instead.
        let _ = child;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self
            .output(&public, "ss", &["-Hlun", "sport = :3478"])
            .1
            .trim()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the STUN server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads the child's stdout (or stderr) until a line matches; the rest is drained in the
/// background so the child never blocks on a full pipe.
pub fn wait_for_line(child: &mut Child, stdout: bool, matches: impl Fn(&str) -> bool) -> String {
    let (tx, rx) = mpsc::channel();
    let reader: Box<dyn std::io::Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("stdout"))
    } else {
        Box::new(child.stderr.take().expect("stderr"))
    };
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the awaited line in time");
        if matches(&line) {
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return line;
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace deletes its links and rules with it.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
