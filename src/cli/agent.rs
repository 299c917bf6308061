//! `ioap agents | serve | call | intent`: an agent on the command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ioap_client::{
    Agent, AgentBuilder, AgentError, CallError, Directory, GatewayRelay, IceServer, StreamItem,
    demo,
};
use ioap_protocol::Did;
use ioap_protocol::payload::Intent;
use serde_json::{Value, json};

/// Where the gateway is and who this agent is (every agent command takes these).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The gateway's WebSocket URL. Repeat it (or separate URLs with commas) for the gateways
    /// of a cluster: the first is dialed first, the others when one is lost or unreachable.
    #[arg(
        long,
        value_name = "URL",
        env = "IOAP_GATEWAY",
        default_value = "ws://127.0.0.1:8000/ws",
        value_delimiter = ','
    )]
    pub gateway: Vec<String>,
    /// The agent's key file (PKCS#8 PEM), created if missing; default: a new identity each run.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A STUN or TURN server for WebRTC (repeatable; default: host candidates only):
    /// stun:HOST:PORT, or turn:USER:PASSWORD@HOST:PORT[?transport=udp|tcp] (also turns:).
    #[arg(long = "ice-server", value_name = "URL", value_parser = parse_ice_server)]
    pub ice_servers: Vec<IceServer>,
    /// When a link may travel over the gateway, end-to-end encrypted, instead of a direct
    /// WebRTC path: `fallback` when no direct path opens within 2 s (or ICE fails), `never`,
    /// or `always` (networks that block UDP).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = RelayMode::Fallback)]
    pub gateway_relay: RelayMode,
    /// The WebRTC engine: webrtc-rs (a socket and task per link) or str0m (one socket and task
    /// per agent) [default: webrtc-rs]
    #[arg(long, value_name = "ENGINE", env = "IOAP_ENGINE")]
    pub engine: Option<ioap_client::Engine>,
    /// Also trust the CA certificate(s) in this PEM file for wss:// and https:// (repeatable;
    /// the webpki roots stay trusted).
    #[arg(long = "ca-cert", value_name = "FILE", env = "IOAP_CA_CERT")]
    pub ca_certs: Vec<PathBuf>,
    /// The largest message sent or taken on a link, in bytes (at least 65536): arguments and
    /// results over 64 KiB travel in pieces; larger ones are refused with TOO_LARGE.
    #[arg(long, value_name = "BYTES", default_value_t = ioap_client::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Export the span of every call made or served to this OpenTelemetry collector (OTLP
    /// over HTTP, e.g. http://127.0.0.1:4318).
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// `--gateway-relay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    /// Direct first, the gateway relay when no direct path opens.
    Fallback,
    /// Direct only.
    Never,
    /// The gateway relay at once.
    Always,
}

impl From<RelayMode> for GatewayRelay {
    fn from(mode: RelayMode) -> Self {
        match mode {
            RelayMode::Fallback => GatewayRelay::Fallback,
            RelayMode::Never => GatewayRelay::Never,
            RelayMode::Always => GatewayRelay::Always,
        }
    }
}

impl AgentArgs {
    /// The first gateway URL (the directory is read there).
    pub fn primary_gateway(&self) -> &str {
        self.gateway
            .first()
            .map_or("ws://127.0.0.1:8000/ws", String::as_str)
    }

    fn builder(&self) -> AgentBuilder {
        let mut builder = Agent::builder(self.primary_gateway());
        for url in self.gateway.iter().skip(1) {
            builder = builder.alternate_gateway(url);
        }
        if let Some(key) = &self.key {
            builder = builder.key_file(key);
        }
        for path in &self.ca_certs {
            builder = builder.ca_cert(path);
        }
        for server in &self.ice_servers {
            builder = builder.ice_server(server.clone());
        }
        if let Some(engine) = self.engine {
            builder = builder.engine(engine);
        }
        builder
            .gateway_relay(self.gateway_relay.into())
            .max_message_bytes(self.max_message_bytes)
    }

    /// The span exporter `--otlp-endpoint` asks for; inside the runtime.
    fn exporter(&self, role: &str) -> anyhow::Result<Option<ioap_client::OtlpExporter>> {
        self.otlp_endpoint
            .as_deref()
            .map(|url| ioap_client::OtlpExporter::new(url, format!("ioap {role}")))
            .transpose()
            .context("--otlp-endpoint")
    }

    /// Registers, or reports why not (`{"error":…}` on stdout, the cause on stderr).
    async fn connect(&self, builder: AgentBuilder) -> anyhow::Result<Agent> {
        match builder.connect().await {
            Ok(agent) => Ok(agent),
            Err(error) => {
                let code = match &error {
                    AgentError::Connect { cause, .. } => cause.code(),
                    _ => None,
                };
                let code = code.map_or("CONNECT_FAILED", |code| code.as_str());
                report_error(code, &error.to_string())?;
                Err(Reported.into())
            }
        }
    }
}

/// `ioap agents`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Only agents offering this capability.
    #[arg(long, value_name = "NAME")]
    pub capability: Option<String>,
    #[command(flatten)]
    agent: AgentArgs,
}

/// `ioap serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Hide this agent from the gateway's `/agents`.
    #[arg(long)]
    pub unlisted: bool,
    #[command(flatten)]
    policy: super::policy::ServePolicyArgs,
    #[command(flatten)]
    agent: AgentArgs,
}

/// `ioap call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The agent to call.
    pub did: String,
    /// The capability to run.
    pub capability: String,
    /// Its arguments, as JSON; `@FILE` reads them from a file (`@-`: standard input).
    #[arg(default_value = "null")]
    pub args: String,
    /// Print partial results (one JSON line each) before the final one.
    #[arg(long, conflicts_with = "receipt")]
    pub stream: bool,
    /// Keep the signed request and the callee's signed answer in this file, a receipt anyone
    /// can check later with `ioap receipt verify FILE`.
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// How long to wait for the final result, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub timeout: u64,
    /// Say on stderr how the link travels (direct, through NAT, relayed by TURN) and the
    /// call's time.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    policy: super::policy::CallPolicyArgs,
    #[command(flatten)]
    agent: AgentArgs,
}

/// `--ice-server`: `stun:HOST:PORT`, or `turn:USER:PASSWORD@HOST:PORT[?…]` with the TURN
/// credentials in front of the host (`turns:` alike).
pub fn parse_ice_server(text: &str) -> Result<IceServer, String> {
    let (scheme, rest) = text
        .split_once(':')
        .filter(|(scheme, _)| matches!(*scheme, "stun" | "stuns" | "turn" | "turns"))
        .ok_or_else(|| {
            format!("{text:?}: expected stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT")
        })?;
    let (username, credential, address) = match rest.rsplit_once('@') {
        Some((user_info, address)) => {
            let (user, password) = user_info
                .split_once(':')
                .ok_or_else(|| "TURN credentials are USER:PASSWORD@".to_owned())?;
            (user.to_owned(), password.to_owned(), address)
        }
        None => (String::new(), String::new(), rest),
    };
    if address.is_empty() {
        return Err(format!("{scheme}: server address missing"));
    }
    if scheme.starts_with("turn") && username.is_empty() {
        return Err(format!(
            "{scheme}:{address}: a TURN server needs credentials: {scheme}:USER:PASSWORD@{address}"
        ));
    }
    Ok(IceServer {
        urls: vec![format!("{scheme}:{address}")],
        username,
        credential,
    })
}

/// `ioap intent`.
#[derive(Debug, Args)]
pub struct IntentArgs {
    /// The agent to ask.
    pub did: String,
    /// The request, in words.
    pub text: String,
    /// Context for the request, as JSON.
    #[arg(long, value_name = "JSON", default_value = "null")]
    pub context: String,
    #[command(flatten)]
    agent: AgentArgs,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(super) fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

fn parse_did(text: &str) -> anyhow::Result<Did> {
    Did::parse(text).with_context(|| format!("{text:?} is not a did:key"))
}

/// A call's arguments: JSON text, or `@FILE` (as curl's `-d @FILE`), `@-` for standard input.
fn read_args(text: &str) -> anyhow::Result<Value> {
    let Some(path) = text.strip_prefix('@') else {
        return parse_json(text, "the arguments");
    };
    let bytes = if path == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading the arguments from standard input")?;
        bytes
    } else {
        std::fs::read(path).with_context(|| format!("reading the arguments from {path}"))?
    };
    serde_json::from_slice(&bytes).with_context(|| format!("the arguments in {path} are not JSON"))
}

fn parse_json(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{what} is not JSON: {text}"))
}

/// A failed call: the error as JSON on stdout, in words on stderr, exit status 1.
fn call_failed(error: &CallError) -> anyhow::Result<ExitCode> {
    print_json(&json!({"error": {
        "code": error.code(),
        "message": error.to_string(),
        "remote": error.is_remote(),
    }}))?;
    eprintln!("error: {}: {error}", error.code());
    Ok(ExitCode::FAILURE)
}

/// A failure already reported on stdout and stderr; the process exits 1 without more words.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported")
    }
}

impl std::error::Error for Reported {}

/// Prints `{"error":{"code","message"}}` on stdout and the message on stderr.
pub(super) fn report_error(code: &str, message: &str) -> anyhow::Result<()> {
    print_json(&json!({"error": {"code": code, "message": message}}))?;
    eprintln!("error: {message}");
    Ok(())
}

/// `ioap agents`: the listed agents online, as a JSON array.
pub fn agents(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let tls = Some(ioap_client::tls_client_config(&args.agent.ca_certs)?);
        let alternates = args.agent.gateway.get(1..).unwrap_or_default();
        let directory =
            Directory::new(args.agent.primary_gateway(), tls)?.with_alternates(alternates)?;
        let agents = match &args.capability {
            Some(capability) => directory.with_capability(capability).await?,
            None => directory.agents().await?,
        };
        print_json(&serde_json::to_value(agents)?)?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `ioap serve`: a demo agent until SIGTERM or Ctrl-C.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let offered = args.policy.apply(demo::capabilities())?;
    let capabilities: Vec<_> = offered
        .iter()
        .map(|c| c.advertised().name.clone())
        .collect();
    runtime()?.block_on(async {
        let exporter = args.agent.exporter("serve")?;
        let mut builder = args
            .agent
            .builder()
            .capabilities(offered)
            .on_intent(demo::intent_responder)
            .listed(!args.unlisted);
        for issuer in &args.policy.trust {
            builder = builder.trust_grants_from(*issuer);
        }
        if let Some(exporter) = &exporter {
            builder = builder.export_spans(exporter);
        }
        let agent = args.agent.connect(builder).await?;
        print_json(&json!({
            "did": agent.did(),
            "gateway": args.agent.primary_gateway(),
            "capabilities": capabilities,
        }))?;
        for check in agent.check_ice_servers().await {
            if let Err(reason) = &check.outcome {
                eprintln!(
                    "warning: ICE server {} cannot be used: {reason}; links that need it will fail",
                    check.url
                );
            }
        }
        eprintln!("serving as {}; Ctrl-C to stop", agent.did());
        ioap_gateway::termination().await;
        agent.close().await;
        if let Some(exporter) = exporter {
            exporter.shutdown().await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `ioap call`: one EXEC; the result (and parts, with `--stream`) as JSON lines.
pub fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let did = parse_did(&args.did)?;
    let call_args = read_args(&args.args)?;
    let timeout = Duration::from_millis(args.timeout);
    let options = args.policy.options(timeout)?;
    runtime()?.block_on(async {
        let exporter = args.agent.exporter("call")?;
        let mut builder = args.agent.builder();
        if let Some(exporter) = &exporter {
            builder = builder.export_spans(exporter);
        }
        let agent = args.agent.connect(builder).await?;
        let peer = agent.peer(did);
        if let (true, Some(trace)) = (args.verbose, options.trace) {
            eprintln!("trace: {}", trace.trace_id_hex());
        }
        let started = std::time::Instant::now();
        let mut opened_after = None;
        if args.verbose {
            if let Err(error) = peer.connect().await {
                agent.close().await;
                return call_failed(&error);
            }
            opened_after = Some(started.elapsed());
        }
        let called = std::time::Instant::now();
        let outcome = if args.stream {
            stream(&peer, &args.capability, call_args, &options).await?
        } else if let Some(path) = &args.receipt {
            match peer
                .exec_with_receipt(&args.capability, call_args, &options)
                .await
            {
                Ok((value, receipt)) => {
                    let text = serde_json::to_vec(&receipt).context("encoding the receipt")?;
                    std::fs::write(path, text)
                        .with_context(|| format!("writing the receipt to {}", path.display()))?;
                    Ok(value)
                }
                Err(error) => Err(error),
            }
        } else {
            peer.exec_with(&args.capability, call_args, &options).await
        };
        let call_time = called.elapsed();
        if let Some(opened_after) = opened_after {
            // Asked after the call, so the link's round trip is known.
            let open_ms = opened_after.as_secs_f64() * 1e3;
            match peer.path().await {
                Ok(Some(path)) => eprintln!("link: {path} (open after {open_ms:.1} ms)"),
                _ => eprintln!("link: open after {open_ms:.1} ms (the engine does not say how)"),
            }
            eprintln!("call: {:.1} ms", call_time.as_secs_f64() * 1e3);
        }
        agent.close().await;
        if let Some(exporter) = exporter {
            exporter.shutdown().await;
        }
        match outcome {
            Ok(value) => {
                print_json(&value)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => call_failed(&error),
        }
    })
}

/// Prints each part as it comes; returns the final outcome.
async fn stream(
    peer: &ioap_client::Peer,
    capability: &str,
    args: Value,
    options: &ioap_client::CallOptions,
) -> anyhow::Result<Result<Value, CallError>> {
    let mut call = match peer.exec_stream_with(capability, args, options).await {
        Ok(call) => call,
        Err(error) => return Ok(Err(error)),
    };
    while let Some(item) = call.next().await {
        match item {
            Ok(StreamItem::Partial(part)) => print_json(&json!({"partial": part}))?,
            Ok(StreamItem::Final(value)) => return Ok(Ok(value)),
            Ok(_) => {}
            Err(error) => return Ok(Err(error)),
        }
    }
    anyhow::bail!("the call ended without a final result")
}

/// `ioap intent`: one INTENT query; the reply as JSON.
pub fn intent(args: IntentArgs) -> anyhow::Result<ExitCode> {
    let did = parse_did(&args.did)?;
    let context = parse_json(&args.context, "the context")?;
    runtime()?.block_on(async {
        let agent = args.agent.connect(args.agent.builder()).await?;
        let outcome = agent
            .peer(did)
            .intent(Intent::query(args.text, context))
            .await;
        agent.close().await;
        match outcome {
            Ok(reply) => {
                print_json(&serde_json::to_value(reply)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => call_failed(&error),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ice_server;

    #[test]
    fn ice_servers_take_turn_credentials_in_front_of_the_host() {
        let turn =
            parse_ice_server("turn:alice:s3:cret@10.0.0.1:3478?transport=tcp").expect("turn");
        assert_eq!(turn.urls, ["turn:10.0.0.1:3478?transport=tcp"]);
        assert_eq!(
            (turn.username.as_str(), turn.credential.as_str()),
            ("alice", "s3:cret")
        );
        let stun = parse_ice_server("stun:10.0.0.1:3478").expect("stun");
        assert_eq!(
            (stun.urls[0].as_str(), stun.username.as_str()),
            ("stun:10.0.0.1:3478", "")
        );
        for bad in [
            "turn:10.0.0.1:3478",
            "http://x",
            "stun:",
            "turn:nopass@host:1",
        ] {
            assert!(parse_ice_server(bad).is_err(), "{bad}");
        }
    }
}
