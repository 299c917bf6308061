//! Argument parsing and dispatch. Results go to stdout (plain or `--json`), diagnostics to
//! stderr; failures exit non-zero.

mod agent;
mod grant;
mod id;
mod loadtest;
mod policy;
mod receipt;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The version `--version` prints: the package's, and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("IOAP_GIT_REVISION"),
    ")"
);

/// ioap: agent-to-agent transport.
#[derive(Debug, Parser)]
#[command(name = "ioap", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and inspect did:key identities.
    #[command(subcommand)]
    Id(id::IdCommand),
    /// List the online agents a gateway lists (JSON array).
    Agents(agent::AgentsArgs),
    /// Run an agent with the demo capabilities (echo, sum, sleep, count, fail) and an INTENT
    /// responder; prints its DID as JSON, serves until SIGTERM or Ctrl-C.
    Serve(agent::ServeArgs),
    /// EXEC a capability on an agent over a WebRTC link; prints the result as JSON.
    Call(agent::CallArgs),
    /// Send an INTENT query to an agent; prints its reply as JSON.
    Intent(agent::IntentArgs),
    /// Issue, show and check grants that let another agent call a restricted capability.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Check receipts kept by `ioap call --receipt`.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Load a gateway with many real agents, WebRTC links, calls and relayed signaling;
    /// prints a report (exit status 1 when any phase had failures).
    Loadtest(loadtest::LoadtestArgs),
    /// Print a shell completion script, e.g. `ioap completions bash > ~/.local/share/bash-completion/completions/ioap`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Parses the process arguments, runs the command, and turns errors into an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Id(command) => id::run(command).map(|()| ExitCode::SUCCESS),
        Command::Agents(args) => agent::agents(args),
        Command::Serve(args) => agent::serve(args),
        Command::Call(args) => agent::call(args),
        Command::Intent(args) => agent::intent(args),
        Command::Grant(command) => grant::run(command),
        Command::Receipt(command) => receipt::run(command),
        Command::Loadtest(args) => loadtest::loadtest(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "ioap", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) if error.is::<agent::Reported>() => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter when `RUST_LOG` is not set: warnings, except the WebRTC stack's routine
/// warnings about closing connections.
const DEFAULT_LOG_FILTER: &str = "warn,webrtc=error,webrtc_ice=error,webrtc_sctp=error,\
webrtc_dtls=error,webrtc_srtp=error,webrtc_mdns=error,webrtc_data=error";

/// Diagnostics to stderr, filtered by `RUST_LOG` (default: [`DEFAULT_LOG_FILTER`]).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
