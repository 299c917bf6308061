use std::time::Duration;

use serde_json::json;

use super::*;

fn at(seconds: u64) -> Timestamp {
    let base = Timestamp::from_unix_millis(1_767_225_600_000).expect("valid");
    base.saturating_add(Duration::from_secs(seconds))
}

struct World {
    callee: Identity,
    middle: Identity,
    caller: Identity,
}

fn world() -> World {
    World {
        callee: Identity::from_seed(&[1; 32]),
        middle: Identity::from_seed(&[2; 32]),
        caller: Identity::from_seed(&[3; 32]),
    }
}

fn terms(w: &World, subject: Did, expires: u64, args: Option<Value>) -> GrantTerms {
    GrantTerms {
        subject,
        audience: w.callee.did(),
        capability: "summarise".into(),
        expires: at(expires),
        args: args.map(|a| a.as_object().expect("object").clone()),
    }
}

/// callee → middle → caller, the second pinning `lang`.
fn depth_two(w: &World) -> Vec<Grant> {
    let root = Grant::issue(&w.callee, terms(w, w.middle.did(), 3600, None), None);
    let leaf = Grant::issue(
        &w.middle,
        terms(w, w.caller.did(), 600, Some(json!({"lang": "fr"}))),
        Some(&root),
    );
    vec![root, leaf]
}

fn call<'a>(w: &'a World, callee: &'a Did, caller: &'a Did, args: &'a Value) -> GrantedCall<'a> {
    let _ = w;
    GrantedCall {
        caller,
        callee,
        capability: "summarise",
        args,
        now: at(60),
    }
}

const NO_ONE: &dyn Fn(&Did) -> bool = &|_| false;

#[test]
fn a_chain_of_depth_two_admits_its_subject_with_the_pinned_args() {
    let w = world();
    let chain = depth_two(&w);
    let (callee, caller) = (w.callee.did(), w.caller.did());
    let args = json!({"lang": "fr", "text": "bonjour"});
    assert_eq!(
        admits(&chain, &call(&w, &callee, &caller, &args), NO_ONE),
        Ok(())
    );

    let other_args = json!({"lang": "de"});
    let refused = admits(&chain, &call(&w, &callee, &caller, &other_args), NO_ONE);
    assert_eq!(refused, Err(GrantError::Args));

    let stranger = Identity::from_seed(&[9; 32]).did();
    let refused = admits(&chain, &call(&w, &callee, &stranger, &args), NO_ONE);
    assert_eq!(refused, Err(GrantError::NotThisCall("another subject")));

    let mut other = call(&w, &callee, &caller, &args);
    other.capability = "translate";
    assert_eq!(
        admits(&chain, &other, NO_ONE),
        Err(GrantError::NotThisCall("another capability"))
    );
}

#[test]
fn expired_grants_admit_nothing() {
    let w = world();
    let chain = depth_two(&w);
    let (callee, caller) = (w.callee.did(), w.caller.did());
    let args = json!({"lang": "fr"});
    let mut late = call(&w, &callee, &caller, &args);
    late.now = at(600);
    assert_eq!(
        admits(&chain, &late, NO_ONE),
        Err(GrantError::Expired { index: 1 })
    );
}

#[test]
fn a_delegation_broader_than_its_parent_is_refused() {
    let w = world();
    let root = Grant::issue(
        &w.callee,
        terms(&w, w.middle.did(), 600, Some(json!({"lang": "fr"}))),
        None,
    );
    // Later expiry, then dropping the pinned member.
    for wider in [
        terms(&w, w.caller.did(), 3600, Some(json!({"lang": "fr"}))),
        terms(&w, w.caller.did(), 60, None),
        terms(&w, w.caller.did(), 60, Some(json!({"lang": "de"}))),
    ] {
        let leaf = Grant::issue(&w.middle, wider, Some(&root));
        assert_eq!(
            verify_chain(&[root.clone(), leaf]),
            Err(GrantError::Broader { index: 1 })
        );
    }
    let mut other_capability = terms(&w, w.caller.did(), 60, Some(json!({"lang": "fr"})));
    other_capability.capability = "translate".into();
    let leaf = Grant::issue(&w.middle, other_capability, Some(&root));
    assert_eq!(
        verify_chain(&[root, leaf]),
        Err(GrantError::Broader { index: 1 })
    );
}

#[test]
fn chains_must_link_by_issuer_and_digest() {
    let w = world();
    let chain = depth_two(&w);
    // A grant issued by someone other than the parent's subject.
    let forged = Grant::issue(
        &w.caller,
        terms(&w, w.caller.did(), 60, Some(json!({"lang": "fr"}))),
        Some(&chain[0]),
    );
    assert_eq!(
        verify_chain(&[chain[0].clone(), forged]),
        Err(GrantError::Broken { index: 1 })
    );
    // The right issuer naming another parent.
    let other_root = Grant::issue(&w.callee, terms(&w, w.middle.did(), 3000, None), None);
    let misplaced = Grant::issue(
        &w.middle,
        terms(&w, w.caller.did(), 60, None),
        Some(&other_root),
    );
    assert_eq!(
        verify_chain(&[chain[0].clone(), misplaced]),
        Err(GrantError::Broken { index: 1 })
    );
    // A root that claims a parent.
    assert_eq!(
        verify_chain(&chain[1..]),
        Err(GrantError::Broken { index: 0 })
    );
    assert_eq!(verify_chain(&[]), Err(GrantError::Length));
    let long = vec![chain[0].clone(); MAX_GRANT_CHAIN + 1];
    assert_eq!(verify_chain(&long), Err(GrantError::Length));
}

#[test]
fn any_change_breaks_the_signature() {
    let w = world();
    let chain = depth_two(&w);
    let mut changed = chain[0].clone();
    changed.expires = at(7200);
    assert_eq!(
        verify_chain(&[changed]),
        Err(GrantError::Signature { index: 0 })
    );
    let mut changed = chain[0].clone();
    changed.subject = w.caller.did();
    assert_eq!(
        verify_chain(&[changed]),
        Err(GrantError::Signature { index: 0 })
    );
    // The same bytes signed for another purpose do not verify as a grant.
    let mut as_message = chain[0].clone();
    let signature = signing::sign(&w.callee, Purpose::Message, &as_message.signed_bytes());
    as_message.signature = signing::encode_signature(&signature);
    assert_eq!(
        verify_chain(&[as_message]),
        Err(GrantError::Signature { index: 0 })
    );
}

#[test]
fn the_first_issuer_must_be_the_callee_or_trusted() {
    let w = world();
    let authority = Identity::from_seed(&[7; 32]);
    let root = Grant::issue(&authority, terms(&w, w.caller.did(), 600, None), None);
    let (callee, caller) = (w.callee.did(), w.caller.did());
    let args = json!(null);
    let checked = call(&w, &callee, &caller, &args);
    let chain = [root];
    assert_eq!(admits(&chain, &checked, NO_ONE), Err(GrantError::Untrusted));
    let trusted = authority.did();
    assert_eq!(admits(&chain, &checked, &|did| *did == trusted), Ok(()));
}

#[test]
fn a_grant_reads_back_from_its_json() {
    let w = world();
    let chain = depth_two(&w);
    let text = serde_json::to_string(&chain).expect("serialize");
    let back: Vec<Grant> = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, chain);
    assert_eq!(verify_chain(&back), Ok(()));
    let mut value: Value = serde_json::from_str(&text).expect("json");
    value[0]["extra"] = json!(1);
    assert!(serde_json::from_value::<Vec<Grant>>(value).is_err());
}

#[test]
fn the_cheap_checks_come_before_any_signature() {
    let w = world();
    let stranger = Identity::from_seed(&[9; 32]);
    let mut forged = Grant::issue(&stranger, terms(&w, w.caller.did(), 600, None), None);
    forged.signature = "A".repeat(86);
    let (callee, caller) = (w.callee.did(), w.caller.did());
    let args = json!(null);
    let checked = call(&w, &callee, &caller, &args);
    assert_eq!(
        admits(std::slice::from_ref(&forged), &checked, NO_ONE),
        Err(GrantError::Untrusted),
        "an untrusted root is refused before its signature is looked at"
    );
    let trusted = stranger.did();
    assert_eq!(
        admits(&[forged], &checked, &|did| *did == trusted),
        Err(GrantError::Signature { index: 0 })
    );
}
