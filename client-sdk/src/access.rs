//! Who may call a capability, decided by the callee (PROTOCOL_DESIGN.md §11.9): anyone, or
//! only listed DIDs and callers presenting a chain of grants that admits the call.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use ioap_protocol::grant::{self, Grant, GrantError, GrantedCall};
use ioap_protocol::payload::ExecRequest;
use ioap_protocol::{Did, Timestamp};

/// Who may call a capability.
///
/// A restricted capability admits the DIDs on its allowlist, and any caller whose EXEC
/// presents a chain of grants (`ioap_protocol::grant`) rooted at this agent or at an issuer it
/// trusts ([`AgentBuilder::trust_grants_from`](crate::AgentBuilder::trust_grants_from)).
/// Everyone else is answered FORBIDDEN, with one message whatever failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone may call (the default).
    #[default]
    Open,
    /// Only `allowed` and holders of a grant chain that admits the call.
    Restricted {
        /// Callers admitted without a grant.
        allowed: BTreeSet<Did>,
    },
}

impl Access {
    /// Whether callers are checked.
    pub fn is_restricted(&self) -> bool {
        matches!(self, Access::Restricted { .. })
    }

    /// The same policy, restricted, with `dids` admitted.
    pub(crate) fn allowing(self, dids: impl IntoIterator<Item = Did>) -> Self {
        let mut allowed = match self {
            Access::Open => BTreeSet::new(),
            Access::Restricted { allowed } => allowed,
        };
        allowed.extend(dids);
        Access::Restricted { allowed }
    }
}

/// The message of every FORBIDDEN: the same whatever failed, so that it tells a caller
/// nothing about the allowlist, the trusted issuers or other capabilities.
pub(crate) const FORBIDDEN_MESSAGE: &str = "this caller may not call this capability";

/// Why a call was refused, for the callee's own log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("not on the allowlist and no grants presented")]
    NotListed,
    #[error("grant chain refused: {0}")]
    Grant(#[from] GrantError),
}

/// Chains remembered at most.
const VERIFIED_CHAINS: usize = 256;
/// A chain's JSON larger than this is checked every time, not remembered.
const LARGEST_REMEMBERED: usize = 8 * 1024;

/// Grant chains this agent verified (signatures, derivation), by their exact JSON, so that a
/// caller presenting the same chain again costs a lookup rather than Ed25519 verifications.
/// Bounded; the oldest is forgotten first. What depends on the call or the time (issuer
/// trusted, expiry, callee, capability, caller, args) is checked on every call.
#[derive(Debug, Default)]
pub(crate) struct VerifiedChains {
    known: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl VerifiedChains {
    fn verify(&mut self, chain: &[Grant]) -> Result<(), GrantError> {
        let Ok(key) = serde_json::to_vec(chain) else {
            return grant::verify_chain(chain);
        };
        if self.known.contains(&key) {
            return Ok(());
        }
        grant::verify_chain(chain)?;
        if key.len() <= LARGEST_REMEMBERED {
            if self.order.len() >= VERIFIED_CHAINS
                && let Some(oldest) = self.order.pop_front()
            {
                self.known.remove(&oldest);
            }
            self.known.insert(key.clone());
            self.order.push_back(key);
        }
        Ok(())
    }
}

/// What a call is checked against besides its request: the callee's clock, the issuers it
/// trusts, the chains it verified.
pub(crate) struct Checker<'a> {
    pub(crate) callee: &'a Did,
    pub(crate) now: Timestamp,
    pub(crate) trusted: &'a BTreeSet<Did>,
    pub(crate) verified: &'a Mutex<VerifiedChains>,
}

/// Whether `caller` may make `request` under `access`.
pub(crate) fn check(
    access: &Access,
    caller: &Did,
    request: &ExecRequest,
    checker: &Checker<'_>,
) -> Result<(), Refusal> {
    let Access::Restricted { allowed } = access else {
        return Ok(());
    };
    if allowed.contains(caller) {
        return Ok(());
    }
    if request.grants.is_empty() {
        return Err(Refusal::NotListed);
    }
    let call = GrantedCall {
        caller,
        callee: checker.callee,
        capability: &request.capability,
        args: &request.args,
        now: checker.now,
    };
    // What depends on the call first: it is cheap, and a chain that names an untrusted issuer
    // or another caller costs no signature verification.
    grant::admits_verified(&request.grants, &call, &|issuer| {
        checker.trusted.contains(issuer)
    })?;
    checker
        .verified
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .verify(&request.grants)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ioap_protocol::Identity;
    use ioap_protocol::grant::{Grant, GrantTerms};
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_unix_millis(1_767_225_600_000).expect("valid")
    }

    #[test]
    fn open_admits_all_restricted_admits_the_listed_and_the_granted() {
        let (callee, listed, granted) = (
            Identity::from_seed(&[1; 32]),
            Identity::from_seed(&[2; 32]),
            Identity::from_seed(&[3; 32]),
        );
        let (none, verified) = (BTreeSet::new(), Mutex::new(VerifiedChains::default()));
        let callee_did = callee.did();
        let at = |now| Checker {
            callee: &callee_did,
            now,
            trusted: &none,
            verified: &verified,
        };
        let request = ExecRequest::new("sum", json!({}));
        let granted_did = granted.did();
        assert_eq!(
            check(&Access::Open, &granted_did, &request, &at(now())),
            Ok(())
        );
        let access = Access::Open.allowing([listed.did()]);
        assert_eq!(check(&access, &listed.did(), &request, &at(now())), Ok(()));
        assert_eq!(
            check(&access, &granted_did, &request, &at(now())),
            Err(Refusal::NotListed)
        );
        let terms = GrantTerms {
            subject: granted_did,
            audience: callee_did,
            capability: "sum".into(),
            expires: now().saturating_add(Duration::from_secs(60)),
            args: None,
        };
        let mut with_grant = request.clone();
        with_grant.grants = vec![Grant::issue(&callee, terms, None)];
        assert_eq!(
            check(&access, &granted_did, &with_grant, &at(now())),
            Ok(())
        );
        // Remembered now; what depends on the call and the time is still checked.
        let later = now().saturating_add(Duration::from_secs(60));
        assert!(matches!(
            check(&access, &granted_did, &with_grant, &at(later)),
            Err(Refusal::Grant(GrantError::Expired { index: 0 }))
        ));
        let mut other = with_grant.clone();
        other.capability = "other".into();
        assert!(check(&access, &granted_did, &other, &at(now())).is_err());
        // A chain changed anywhere is not the remembered one: its signature is checked.
        let mut forged = with_grant.clone();
        forged.grants[0].expires = later.saturating_add(Duration::from_secs(3600));
        assert_eq!(
            check(&access, &granted_did, &forged, &at(later)),
            Err(Refusal::Grant(GrantError::Signature { index: 0 }))
        );
    }
}
