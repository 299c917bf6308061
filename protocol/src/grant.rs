//! Grants (PROTOCOL_DESIGN.md §11.9): signed, delegable permission to call one capability of
//! one agent.
//!
//! A grant says "`issuer` lets `subject` call `capability` on `audience` until `expires`",
//! optionally only with certain `args` members. The callee (the audience) admits a caller
//! that presents a chain of grants: the first issued by the callee itself or by a DID it
//! trusts, each next one issued by the previous one's subject, naming its parent by digest
//! (`proof`) and no broader than it, the last one's subject the caller.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::did::Did;
use crate::identity::Identity;
use crate::payload::validate_capability_name;
use crate::signing::{self, Purpose};
use crate::timestamp::Timestamp;

#[cfg(test)]
mod tests;

/// The `format` of a grant.
pub const GRANT_FORMAT: &str = "ioap.grant.v1";
/// The longest chain a call may present (the root and three delegations).
pub const MAX_GRANT_CHAIN: usize = 4;
/// Most `args` members a grant may pin.
pub const MAX_GRANT_ARGS: usize = 16;

/// One signed grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Always [`GRANT_FORMAT`].
    pub format: String,
    /// Who grants (and signs).
    pub issuer: Did,
    /// Who may call.
    pub subject: Did,
    /// The agent whose capability may be called.
    pub audience: Did,
    /// The capability.
    pub capability: String,
    /// The grant is void from this time on.
    pub expires: Timestamp,
    /// When present, a call's `args` must be an object holding each of these members with
    /// exactly this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// A delegated grant: the digest of the grant it derives from (base64url SHA-256 of that
    /// grant's canonical JSON, signature included). Absent on a chain's first grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    /// The issuer's signature (base64url, 86 characters) over the tag `ioap/v1/grant\0` and
    /// the canonical JSON of the grant without this member.
    pub signature: String,
}

/// What a grant allows; [`Grant::issue`] signs it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantTerms {
    /// Who may call.
    pub subject: Did,
    /// The agent whose capability may be called.
    pub audience: Did,
    /// The capability.
    pub capability: String,
    /// The grant is void from this time on.
    pub expires: Timestamp,
    /// `args` members a call must carry with exactly these values.
    pub args: Option<Map<String, Value>>,
}

/// A call a chain of grants is checked against.
#[derive(Debug, Clone, Copy)]
pub struct GrantedCall<'a> {
    /// The caller (the envelope's verified `from`).
    pub caller: &'a Did,
    /// The callee (who checks).
    pub callee: &'a Did,
    /// The capability called.
    pub capability: &'a str,
    /// The call's `args`.
    pub args: &'a Value,
    /// The callee's clock.
    pub now: Timestamp,
}

/// Why a chain of grants admits nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// No grant, or more than [`MAX_GRANT_CHAIN`].
    #[error("a chain holds 1-{MAX_GRANT_CHAIN} grants")]
    Length,
    /// A grant breaks a rule of its form (format, capability name, `args`).
    #[error("grant {index} is malformed: {reason}")]
    Malformed {
        /// Its place in the chain.
        index: usize,
        /// The rule.
        reason: &'static str,
    },
    /// A signature does not verify under its issuer's key.
    #[error("grant {index}'s signature does not verify")]
    Signature {
        /// Its place in the chain.
        index: usize,
    },
    /// A grant is not issued by the previous one's subject, or does not name it as `proof`.
    #[error("grant {index} does not derive from the one before it")]
    Broken {
        /// Its place in the chain.
        index: usize,
    },
    /// A grant allows more than the one it derives from (another capability or audience, a
    /// later expiry, fewer pinned `args`).
    #[error("grant {index} is broader than the one it derives from")]
    Broader {
        /// Its place in the chain.
        index: usize,
    },
    /// The chain's first issuer is neither the callee nor trusted by it.
    #[error("the chain's first issuer is not trusted by the callee")]
    Untrusted,
    /// A grant has expired.
    #[error("grant {index} has expired")]
    Expired {
        /// Its place in the chain.
        index: usize,
    },
    /// The chain is for another callee, capability or caller.
    #[error("the chain does not grant this call: {0}")]
    NotThisCall(&'static str),
    /// The call's `args` are not those the chain pins.
    #[error("the call's args are not those the grant allows")]
    Args,
}

impl Grant {
    /// Signs `terms` as `issuer`; `parent` is the grant this one derives from (whose subject
    /// must be `issuer`), `None` for a chain's first grant.
    pub fn issue(issuer: &Identity, terms: GrantTerms, parent: Option<&Grant>) -> Grant {
        let mut grant = Grant {
            format: GRANT_FORMAT.to_owned(),
            issuer: issuer.did(),
            subject: terms.subject,
            audience: terms.audience,
            capability: terms.capability,
            expires: terms.expires,
            args: terms.args,
            proof: parent.map(Grant::digest),
            signature: String::new(),
        };
        let signature = signing::sign(issuer, Purpose::Grant, &grant.signed_bytes());
        grant.signature = signing::encode_signature(&signature);
        grant
    }

    /// The digest a grant derived from this one names as its `proof`.
    pub fn digest(&self) -> String {
        let canonical = signing::canonicalize(&self.to_value());
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
    }

    /// Checks the form: the format, the capability's name, at most [`MAX_GRANT_ARGS`] pinned
    /// `args`.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.format != GRANT_FORMAT {
            return Err("format must be ioap.grant.v1");
        }
        validate_capability_name(&self.capability).map_err(|_| "bad capability name")?;
        if self.args.as_ref().is_some_and(|a| a.len() > MAX_GRANT_ARGS) {
            return Err("more than 16 pinned args");
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a grant always serializes")
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut value = self.to_value();
        if let Value::Object(object) = &mut value {
            object.remove("signature");
        }
        signing::canonicalize(&value)
    }

    fn signature_verifies(&self) -> bool {
        signing::decode_signature(&self.signature).is_some_and(|signature| {
            signing::verify(
                &self.issuer,
                Purpose::Grant,
                &self.signed_bytes(),
                &signature,
            )
            .is_ok()
        })
    }

    /// Whether this grant is no broader than `parent`.
    fn narrows(&self, parent: &Grant) -> bool {
        let pinned = |own: &Option<Map<String, Value>>, theirs: &Option<Map<String, Value>>| {
            let Some(theirs) = theirs else { return true };
            let own = own.as_ref();
            theirs
                .iter()
                .all(|(key, value)| own.and_then(|own| own.get(key)) == Some(value))
        };
        self.capability == parent.capability
            && self.audience == parent.audience
            && self.expires <= parent.expires
            && pinned(&self.args, &parent.args)
    }

    fn admits_args(&self, args: &Value) -> bool {
        let Some(pinned) = &self.args else {
            return true;
        };
        pinned
            .iter()
            .all(|(key, value)| args.get(key) == Some(value))
    }
}

/// Checks a chain on its own: its form, that each grant derives from the one before
/// (issuer, `proof`) and is no broader, and then every signature — the cheap checks first,
/// so a forged chain costs at most one signature verification. Says nothing about who may
/// use it, or when.
pub fn verify_chain(chain: &[Grant]) -> Result<(), GrantError> {
    if chain.is_empty() || chain.len() > MAX_GRANT_CHAIN {
        return Err(GrantError::Length);
    }
    for (index, grant) in chain.iter().enumerate() {
        grant
            .validate()
            .map_err(|reason| GrantError::Malformed { index, reason })?;
        match index.checked_sub(1).map(|parent| &chain[parent]) {
            None if grant.proof.is_some() => return Err(GrantError::Broken { index }),
            None => {}
            Some(parent) => {
                if grant.issuer != parent.subject || grant.proof != Some(parent.digest()) {
                    return Err(GrantError::Broken { index });
                }
                if !grant.narrows(parent) {
                    return Err(GrantError::Broader { index });
                }
            }
        }
    }
    match chain.iter().position(|grant| !grant.signature_verifies()) {
        Some(index) => Err(GrantError::Signature { index }),
        None => Ok(()),
    }
}

/// Whether `chain` lets `call` through: the first issuer is the callee or `trusted`, no grant
/// has expired, the chain is for this callee, capability, caller and `args`
/// ([`admits_verified`]), and [`verify_chain`] — in that order, cheapest first.
pub fn admits(
    chain: &[Grant],
    call: &GrantedCall<'_>,
    trusted: &dyn Fn(&Did) -> bool,
) -> Result<(), GrantError> {
    admits_verified(chain, call, trusted)?;
    verify_chain(chain)
}

/// The checks of [`admits`] that depend on the call and the time — the issuer, expiry, callee,
/// capability, caller and `args` — without [`verify_chain`]: alone, only for a chain that
/// already passed it (a callee may remember the chains it verified).
pub fn admits_verified(
    chain: &[Grant],
    call: &GrantedCall<'_>,
    trusted: &dyn Fn(&Did) -> bool,
) -> Result<(), GrantError> {
    let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
        return Err(GrantError::Length);
    };
    if first.issuer != *call.callee && !trusted(&first.issuer) {
        return Err(GrantError::Untrusted);
    }
    if let Some(index) = chain.iter().position(|g| g.expires <= call.now) {
        return Err(GrantError::Expired { index });
    }
    if first.audience != *call.callee {
        return Err(GrantError::NotThisCall("another audience"));
    }
    if first.capability != call.capability {
        return Err(GrantError::NotThisCall("another capability"));
    }
    if last.subject != *call.caller {
        return Err(GrantError::NotThisCall("another subject"));
    }
    if !last.admits_args(call.args) {
        return Err(GrantError::Args);
    }
    Ok(())
}
