//! `ioap grant issue | show | verify`: grants that let another agent call a restricted
//! capability (PROTOCOL_DESIGN.md §11.9). A grant file holds a chain: a JSON array of grants,
//! first grant first, as `ioap call --grant FILE` presents it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Subcommand;
use ioap_client::{Grant, GrantTerms};
use ioap_protocol::grant::{self, GrantedCall};
use ioap_protocol::{Did, Identity, Timestamp};
use serde_json::{Value, json};

use super::agent::{print_json, report_error};

/// `ioap grant` subcommands.
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Sign a grant with your key; prints the chain (the parent chain, if given, and the new
    /// grant) as JSON, to save and hand to the subject.
    Issue {
        /// Your key file (PKCS#8 PEM, as `ioap id new` writes it): you are the issuer.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Who may call.
        #[arg(long, value_name = "DID")]
        subject: String,
        /// The agent whose capability may be called (default: the parent's audience).
        #[arg(long, value_name = "DID")]
        audience: Option<String>,
        /// The capability (default: the parent's).
        #[arg(long, value_name = "NAME")]
        capability: Option<String>,
        /// How long the grant lasts: seconds, or a number with s, m, h or d.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
        expires_in: Duration,
        /// Pin these `args` members (a JSON object): calls must carry them with these values.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// Delegate: the chain (a grant file) whose last grant names you as its subject.
        #[arg(long, value_name = "FILE")]
        parent: Option<PathBuf>,
    },
    /// Print a chain's grants, each with whether it has expired.
    Show {
        /// The grant file.
        file: PathBuf,
    },
    /// Check a chain: its signatures, that each grant derives from the one before and is no
    /// broader; with --caller, --callee and --capability, also that it admits that call now.
    /// Exit status 1 if it does not (INVALID_GRANT).
    Verify {
        /// The grant file.
        file: PathBuf,
        /// The agent that would call.
        #[arg(long, value_name = "DID", requires_all = ["callee", "capability"])]
        caller: Option<String>,
        /// The agent that would be called.
        #[arg(long, value_name = "DID")]
        callee: Option<String>,
        /// The capability.
        #[arg(long, value_name = "NAME")]
        capability: Option<String>,
        /// The call's args (JSON).
        #[arg(long, value_name = "JSON", default_value = "null")]
        args: String,
        /// An issuer the callee trusts besides itself (repeatable).
        #[arg(long, value_name = "DID")]
        trust: Vec<String>,
    },
}

/// Runs an `ioap grant` subcommand.
pub fn run(command: GrantCommand) -> anyhow::Result<ExitCode> {
    match command {
        GrantCommand::Issue {
            key,
            subject,
            audience,
            capability,
            expires_in,
            args,
            parent,
        } => {
            let identity = Identity::load(&key)
                .with_context(|| format!("reading the key {}", key.display()))?;
            let mut chain = match &parent {
                Some(path) => read_chain(path)?,
                None => Vec::new(),
            };
            let last = chain.last();
            let audience = match (audience, last) {
                (Some(did), _) => did_arg(&did)?,
                (None, Some(parent)) => parent.audience,
                (None, None) => anyhow::bail!("--audience is needed for a first grant"),
            };
            let capability = match (capability, last) {
                (Some(name), _) => name,
                (None, Some(parent)) => parent.capability.clone(),
                (None, None) => anyhow::bail!("--capability is needed for a first grant"),
            };
            let args = match args {
                Some(text) => match serde_json::from_str(&text) {
                    Ok(Value::Object(members)) => Some(members),
                    _ => anyhow::bail!("--args must be a JSON object"),
                },
                None => last.and_then(|parent| parent.args.clone()),
            };
            let mut expires = Timestamp::from_system_time(SystemTime::now() + expires_in);
            if let Some(parent) = last {
                expires = expires.min(parent.expires);
            }
            let terms = GrantTerms {
                subject: did_arg(&subject)?,
                audience,
                capability,
                expires,
                args,
            };
            let grant = Grant::issue(&identity, terms, last);
            chain.push(grant);
            if let Err(error) = grant::verify_chain(&chain) {
                report_error(
                    "INVALID_GRANT",
                    &format!("the chain would not verify: {error}"),
                )?;
                return Ok(ExitCode::FAILURE);
            }
            print_json(&serde_json::to_value(&chain)?)?;
            Ok(ExitCode::SUCCESS)
        }
        GrantCommand::Show { file } => {
            let now = now();
            let shown: Vec<Value> = read_chain(&file)?
                .iter()
                .map(|g| {
                    json!({
                        "issuer": g.issuer.to_string(),
                        "subject": g.subject.to_string(),
                        "audience": g.audience.to_string(),
                        "capability": g.capability,
                        "expires": g.expires.to_string(),
                        "expired": g.expires <= now,
                        "args": g.args,
                        "delegated": g.proof.is_some(),
                    })
                })
                .collect();
            print_json(&Value::Array(shown))?;
            Ok(ExitCode::SUCCESS)
        }
        GrantCommand::Verify {
            file,
            caller,
            callee,
            capability,
            args,
            trust,
        } => {
            let chain = read_chain(&file)?;
            let checked = match (caller, callee, capability) {
                (Some(caller), Some(callee), Some(capability)) => {
                    let (caller, callee) = (did_arg(&caller)?, did_arg(&callee)?);
                    let args: Value = serde_json::from_str(&args).context("--args is not JSON")?;
                    let trusted = trust
                        .iter()
                        .map(|d| did_arg(d))
                        .collect::<Result<Vec<_>, _>>()?;
                    let call = GrantedCall {
                        caller: &caller,
                        callee: &callee,
                        capability: &capability,
                        args: &args,
                        now: now(),
                    };
                    grant::admits(&chain, &call, &|issuer| trusted.contains(issuer))
                }
                _ => grant::verify_chain(&chain),
            };
            match checked {
                Ok(()) => {
                    let last = chain.last().context("an empty chain")?;
                    print_json(&json!({
                        "valid": true,
                        "grants": chain.len(),
                        "root_issuer": chain[0].issuer.to_string(),
                        "subject": last.subject.to_string(),
                        "audience": last.audience.to_string(),
                        "capability": last.capability,
                        "expires": last.expires.to_string(),
                    }))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    report_error("INVALID_GRANT", &error.to_string())?;
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

/// Reads a grant file: a chain (JSON array), or one grant.
pub(super) fn read_chain(path: &Path) -> anyhow::Result<Vec<Grant>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading the grants {}", path.display()))?;
    let value: Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let chain = match value {
        Value::Array(_) => serde_json::from_value(value),
        single => serde_json::from_value(single).map(|grant| vec![grant]),
    };
    chain.with_context(|| format!("{} does not hold grants", path.display()))
}

fn did_arg(text: &str) -> anyhow::Result<Did> {
    Did::parse(text).with_context(|| format!("{text:?} is not a did:key"))
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// `90`, `90s`, `15m`, `2h`, `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of s, m, h or d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2w").is_err());
        assert!(parse_duration("h").is_err());
    }
}
