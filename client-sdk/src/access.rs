//! Who may call a capability, decided by the callee (PROTOCOL_DESIGN.md §11.9): anyone, or
//! only listed DIDs and callers presenting a chain of grants that admits the call.

use std::collections::BTreeSet;

use ioap_protocol::grant::{self, GrantError, GrantedCall};
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

/// Whether `caller` may make `request` of `callee` at `now`.
pub(crate) fn check(
    access: &Access,
    caller: &Did,
    callee: &Did,
    request: &ExecRequest,
    now: Timestamp,
    trusted: &BTreeSet<Did>,
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
        callee,
        capability: &request.capability,
        args: &request.args,
        now,
    };
    grant::admits(&request.grants, &call, &|issuer| trusted.contains(issuer))?;
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
        let request = ExecRequest::new("sum", json!({}));
        let none = BTreeSet::new();
        let (callee_did, granted_did) = (callee.did(), granted.did());
        assert_eq!(
            check(
                &Access::Open,
                &granted_did,
                &callee_did,
                &request,
                now(),
                &none
            ),
            Ok(())
        );
        let access = Access::Open.allowing([listed.did()]);
        assert_eq!(
            check(&access, &listed.did(), &callee_did, &request, now(), &none),
            Ok(())
        );
        assert_eq!(
            check(&access, &granted_did, &callee_did, &request, now(), &none),
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
            check(
                &access,
                &granted_did,
                &callee_did,
                &with_grant,
                now(),
                &none
            ),
            Ok(())
        );
        let later = now().saturating_add(Duration::from_secs(60));
        assert!(matches!(
            check(
                &access,
                &granted_did,
                &callee_did,
                &with_grant,
                later,
                &none
            ),
            Err(Refusal::Grant(GrantError::Expired { index: 0 }))
        ));
    }
}
