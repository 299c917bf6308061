//! A real `redis-server` for cluster tests: its own process on a free loopback port, no
//! persistence, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port; `None` (the test says it did not run) where `redis-server`
    /// is not installed and IOAP_REQUIRE_TOOLS is not set.
    pub fn start() -> Option<RedisServer> {
        if !super::tools::tool_available("redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer { child: None, port };
        server.restart();
        Some(server)
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would: no shutdown, nothing saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + super::WAIT;
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one inline command and returns the first line of the reply.
    pub fn command(&self, command: &str) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("write");
        let mut reply = [0u8; 4096];
        let read = stream.read(&mut reply).unwrap_or(0);
        String::from_utf8_lossy(&reply[..read])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn answers_ping(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.command("PING") == "+PONG"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
