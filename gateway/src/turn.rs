//! TURN credentials for registered agents, in coturn's "REST API" scheme (`use-auth-secret`):
//! user name `<expiry unix seconds>:<DID>`, password base64(HMAC-SHA1(shared secret, user
//! name)). The TURN server checks them with the same secret; nothing is stored.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use ioap_protocol::Did;
use ioap_protocol::payload::IceServerOffer;
use sha1::Sha1;

/// How long an offered credential is valid unless the operator says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6 * 3600);

/// The TURN servers a gateway offers and the secret it shares with them.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:host:port?transport=udp`, `turns:…`, `stun:…`.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub secret: String,
    /// How long each credential is valid.
    pub ttl: Duration,
}

impl std::fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"***")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The user name and password for `did`, valid until `expires_unix`.
pub fn credentials(secret: &str, did: &Did, expires_unix: u64) -> (String, String) {
    let username = format!("{expires_unix}:{did}");
    let password = password(secret, &username);
    (username, password)
}

/// The password of `username`: base64(HMAC-SHA1(secret, user name)).
pub fn password(secret: &str, username: &str) -> String {
    // HMAC accepts a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What REGISTERED offers `did` at `now_unix`.
pub fn offer(turn: &TurnConfig, did: &Did, now_unix: u64) -> IceServerOffer {
    let (username, credential) = credentials(&turn.secret, did, now_unix + turn.ttl.as_secs());
    IceServerOffer {
        urls: turn.urls.clone(),
        username: Some(username),
        credential: Some(credential),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_corturns_rest_scheme() {
        // Computed independently with Python's hmac/hashlib/base64.
        let did =
            Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").expect("did");
        let (username, password) = credentials("north-secret", &did, 1_700_003_600);
        assert_eq!(username, format!("1700003600:{did}"));
        assert_eq!(password, "4V563ksjgsaClqLztR0xpEiCA5U=");
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let turn = TurnConfig {
            urls: vec!["turn:turn.example:3478".into()],
            secret: "north-secret".into(),
            ttl: Duration::from_secs(60),
        };
        assert!(!format!("{turn:?}").contains("north-secret"));
        let offer = offer(
            &turn,
            &Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").expect("did"),
            100,
        );
        assert!(offer.username.expect("user").starts_with("160:did:key:"));
    }
}
