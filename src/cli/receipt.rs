//! `ioap receipt verify FILE`: check a receipt kept by `ioap call --receipt` (PROTOCOL_DESIGN.md
//! §11.7) with the two DIDs it names and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use ioap_client::Receipt;
use serde_json::json;

use super::agent::{print_json, report_error};

/// `ioap receipt` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt: both signatures, and that the response answers the request between
    /// the two agents. Prints what it proves as JSON; exit status 1 if it proves nothing.
    Verify {
        /// The receipt file (JSON, as `ioap call --receipt` writes it).
        file: PathBuf,
    },
}

/// Runs an `ioap receipt` subcommand.
pub fn run(command: ReceiptCommand) -> anyhow::Result<ExitCode> {
    let ReceiptCommand::Verify { file } = command;
    let text =
        std::fs::read(&file).with_context(|| format!("reading the receipt {}", file.display()))?;
    let verified = serde_json::from_slice::<Receipt>(&text)
        .map_err(|e| e.to_string())
        .and_then(|receipt| receipt.verify().map_err(|e| e.to_string()));
    match verified {
        Ok(proof) => {
            print_json(&json!({
                "valid": true,
                "caller": proof.caller.to_string(),
                "callee": proof.callee.to_string(),
                "capability": proof.capability,
                "requested_at": proof.requested_at.to_string(),
                "answered_at": proof.answered_at.to_string(),
                "status": proof.status,
                "result": proof.result,
                "error": proof.error,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            report_error("INVALID_RECEIPT", &reason)?;
            Ok(ExitCode::FAILURE)
        }
    }
}
