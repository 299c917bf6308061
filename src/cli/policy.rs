//! `ioap serve --allow / --restrict / --trust / --forward` and `ioap call --grant /
//! --idempotent / --traceparent`: who may call what (PROTOCOL_DESIGN.md §11.9), safe retries
//! (§11.10) and trace context (§11.8) on the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ioap_client::{CallOptions, CapabilityHandler, TraceParent};
use ioap_protocol::Did;

/// `ioap serve`'s access flags.
#[derive(Debug, Args)]
pub struct ServePolicyArgs {
    /// Restrict a capability to these callers (and to holders of a grant that admits the
    /// call): CAP=DID[,DID…]. Repeatable; others get FORBIDDEN.
    #[arg(long, value_name = "CAP=DID,…", value_parser = parse_allow)]
    pub allow: Vec<(String, Vec<Did>)>,
    /// Restrict a capability to holders of a grant that admits the call. Repeatable.
    #[arg(long, value_name = "CAP")]
    pub restrict: Vec<String>,
    /// Accept grant chains first issued by this DID, besides this agent's own (repeatable).
    #[arg(long, value_name = "DID", value_parser = parse_did_arg)]
    pub trust: Vec<Did>,
    /// Also offer `forward {"to", "capability", "args"}`, which calls another agent as this
    /// one (chains A → B → C). Anyone may use it unless restricted with --allow or --restrict.
    #[arg(long)]
    pub forward: bool,
}

impl ServePolicyArgs {
    /// The capabilities to offer, restricted as asked; an error names a flag for a capability
    /// not offered.
    pub fn apply(
        &self,
        mut capabilities: Vec<CapabilityHandler>,
    ) -> anyhow::Result<Vec<CapabilityHandler>> {
        if self.forward {
            capabilities.push(ioap_client::demo::forward());
        }
        let mut allowed: BTreeMap<&str, Vec<Did>> = BTreeMap::new();
        for (capability, dids) in &self.allow {
            allowed.entry(capability).or_default().extend(dids);
        }
        for capability in &self.restrict {
            allowed.entry(capability).or_default();
        }
        for name in allowed.keys() {
            anyhow::ensure!(
                capabilities.iter().any(|c| c.advertised().name == *name),
                "--allow/--restrict {name}: this agent offers no capability {name:?}"
            );
        }
        Ok(capabilities
            .into_iter()
            .map(
                |capability| match allowed.get(capability.advertised().name.as_str()) {
                    Some(dids) => capability.allow(dids.iter().copied()),
                    None => capability,
                },
            )
            .collect())
    }
}

/// `ioap call`'s options of the call itself.
#[derive(Debug, Args)]
pub struct CallPolicyArgs {
    /// Present this grant chain (a file from `ioap grant issue`) to a restricted capability.
    #[arg(long, value_name = "FILE")]
    pub grant: Option<PathBuf>,
    /// Send an idempotency key and, if the link is lost, send the call again over a new link
    /// until the timeout: the callee runs it at most once.
    #[arg(long)]
    pub idempotent: bool,
    /// As --idempotent, with this key (1-128 printable ASCII bytes).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Continue this W3C trace (default: a new trace; --verbose prints its id).
    #[arg(long, value_name = "TRACEPARENT", env = "TRACEPARENT", value_parser = parse_traceparent)]
    pub traceparent: Option<TraceParent>,
}

impl CallPolicyArgs {
    /// The call's options, with `timeout`; the trace is given (a new one if none is asked).
    pub fn options(&self, timeout: std::time::Duration) -> anyhow::Result<CallOptions> {
        let mut options = CallOptions::new()
            .timeout(timeout)
            .trace(self.traceparent.unwrap_or_else(TraceParent::random));
        if let Some(path) = &self.grant {
            options = options.grants(super::grant::read_chain(path)?);
        }
        if let Some(key) = &self.idempotency_key {
            ioap_protocol::payload::validate_idempotency_key(key).context("--idempotency-key")?;
            options = options.idempotency_key(key).retry(true);
        } else if self.idempotent {
            options = options.idempotent();
        }
        Ok(options)
    }
}

fn parse_did_arg(text: &str) -> Result<Did, String> {
    Did::parse(text).map_err(|e| format!("{text:?} is not a did:key: {e}"))
}

fn parse_allow(text: &str) -> Result<(String, Vec<Did>), String> {
    let (capability, dids) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected CAP=DID[,DID…]"))?;
    let dids = dids
        .split(',')
        .filter(|d| !d.is_empty())
        .map(parse_did_arg)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((capability.to_owned(), dids))
}

fn parse_traceparent(text: &str) -> Result<TraceParent, String> {
    text.parse().map_err(|e| format!("{e}"))
}
