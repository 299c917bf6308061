//! Which REGISTER audiences name this gateway (PROTOCOL_DESIGN.md §6).

use axum::http::Uri;

/// How the connection reached the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Reached<'a> {
    /// Over TLS (`wss`) or not (`ws`).
    pub tls: bool,
    /// The HTTP `Host` header of the upgrade request.
    pub host: Option<&'a str>,
}

/// Whether `audience` is an address of this gateway: one of `public_urls`, or
/// `ws[s]://<Host header>/ws` with the scheme matching how the connection arrived.
pub fn matches(audience: &str, reached: Reached<'_>, public_urls: &[String]) -> bool {
    let Ok(uri) = audience.parse::<Uri>() else {
        return false;
    };
    if public_urls.iter().any(|url| same_url(&uri, url)) {
        return true;
    }
    let scheme = if reached.tls { "wss" } else { "ws" };
    uri.scheme_str() == Some(scheme)
        && uri.path() == "/ws"
        && uri.query().is_none()
        && match (uri.authority(), reached.host) {
            (Some(authority), Some(host)) => authority.as_str().eq_ignore_ascii_case(host),
            _ => false,
        }
}

fn same_url(audience: &Uri, configured: &str) -> bool {
    let Ok(configured) = configured.parse::<Uri>() else {
        return false;
    };
    audience.scheme() == configured.scheme()
        && audience
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            == configured
                .authority()
                .map(|a| a.as_str().to_ascii_lowercase())
        && audience.path() == configured.path()
        && audience.query() == configured.query()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Reached<'static> = Reached {
        tls: false,
        host: Some("127.0.0.1:8000"),
    };

    #[test]
    fn the_host_header_address_is_accepted() {
        assert!(matches("ws://127.0.0.1:8000/ws", PLAIN, &[]));
        assert!(matches(
            "ws://LOCALHOST:8000/ws",
            Reached {
                tls: false,
                host: Some("localhost:8000")
            },
            &[]
        ));
    }

    #[test]
    fn other_addresses_schemes_and_paths_are_refused() {
        assert!(!matches("ws://127.0.0.1:8001/ws", PLAIN, &[]));
        assert!(!matches("wss://127.0.0.1:8000/ws", PLAIN, &[]));
        assert!(!matches("ws://127.0.0.1:8000/other", PLAIN, &[]));
        assert!(!matches("ws://127.0.0.1:8000/ws?x=1", PLAIN, &[]));
        assert!(!matches("not a url", PLAIN, &[]));
        assert!(!matches(
            "ws://127.0.0.1:8000/ws",
            Reached {
                tls: false,
                host: None
            },
            &[]
        ));
    }

    #[test]
    fn configured_public_urls_are_accepted() {
        let public = vec!["wss://gw.example.com/ws".to_owned()];
        assert!(matches("wss://gw.example.com/ws", PLAIN, &public));
        assert!(matches("wss://GW.example.com/ws", PLAIN, &public));
        assert!(!matches("ws://gw.example.com/ws", PLAIN, &public));
    }
}
