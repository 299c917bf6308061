//! `ioap id …`: make, show and derive did:key identities.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use ioap_protocol::Identity;
use serde_json::json;

/// `ioap id` subcommands.
#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Generate a new identity, save it as a PKCS#8 PEM key file (mode 0600), print its DID.
    New {
        /// Where to write the key file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
        /// Print JSON instead of the bare DID.
        #[arg(long)]
        json: bool,
    },
    /// Print the DID of a key file.
    Show {
        /// The PKCS#8 PEM key file.
        file: PathBuf,
        /// Print JSON (DID, public key, X25519 key-agreement key).
        #[arg(long)]
        json: bool,
    },
    /// Print the DID for a 32-byte seed given as 64 hex digits.
    FromSeed {
        /// The seed, 64 hexadecimal digits.
        #[arg(value_name = "HEX64")]
        seed: String,
        /// Print JSON (DID, public key, X25519 key-agreement key).
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `ioap id` command.
pub fn run(command: IdCommand) -> anyhow::Result<()> {
    match command {
        IdCommand::New { out, force, json } => {
            let identity = Identity::generate()?;
            identity.save(&out, force)?;
            let extra = json!({ "key_file": out.display().to_string() });
            print_identity(&identity, json, Some(extra));
        }
        IdCommand::Show { file, json } => {
            let identity = Identity::load(&file)?;
            print_identity(&identity, json, None);
        }
        IdCommand::FromSeed { seed, json } => {
            let identity = Identity::from_seed_hex(&seed).context("invalid seed")?;
            print_identity(&identity, json, None);
        }
    }
    Ok(())
}

fn print_identity(identity: &Identity, as_json: bool, extra: Option<serde_json::Value>) {
    let did = identity.did();
    if as_json {
        let mut out = json!({
            "did": did.to_string(),
            "public_key_multibase": did.public_key_multibase(),
            "x25519_key_agreement": did.x25519_public_key_multibase(),
        });
        if let (Some(serde_json::Value::Object(extra)), Some(map)) = (extra, out.as_object_mut()) {
            map.extend(extra);
        }
        println!("{out}");
    } else {
        println!("{did}");
    }
}
