//! Argument parsing and dispatch. Results go to stdout (plain or `--json`), diagnostics to
//! stderr; failures exit non-zero.

mod id;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ioap: agent-to-agent transport.
#[derive(Debug, Parser)]
#[command(name = "ioap", version, about, propagate_version = true)]
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
}

/// Parses the process arguments, runs the command, and turns errors into an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Id(command) => id::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
