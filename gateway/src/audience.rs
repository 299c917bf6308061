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
/// `ws[s]://<Host header>/ws` with the scheme matching how the connection arrived. Hosts are
/// compared without regard to case, and an absent port stands for the scheme's default (80
/// for `ws`, 443 for `wss`) on either side.
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
            (Some(authority), Some(host)) => {
                let default_port = if reached.tls { 443 } else { 80 };
                let host = host.parse::<axum::http::uri::Authority>().ok();
                host.is_some_and(|host| same_address(authority, &host, default_port))
            }
            _ => false,
        }
}

/// What a refused agent should know: the addresses this gateway answers to, and the remedy
/// behind a reverse proxy (which rewrites `Host`).
pub fn explain(reached: Reached<'_>, public_urls: &[String]) -> String {
    let scheme = if reached.tls { "wss" } else { "ws" };
    let mut answers: Vec<String> = reached
        .host
        .map(|host| {
            format!(
                "{scheme}://{}/ws",
                host.chars().take(128).collect::<String>()
            )
        })
        .into_iter()
        .collect();
    answers.extend(public_urls.iter().cloned());
    let answers = if answers.is_empty() {
        "no URL (the request had no Host header)".to_owned()
    } else {
        answers.join(", ")
    };
    format!(
        "this gateway answers to {answers}; behind a reverse proxy, start the gateway with \
         --public-url set to the URL agents dial"
    )
}

/// Host (any case) and port (absent = `default_port`) are equal; no user info allowed.
fn same_address(
    a: &axum::http::uri::Authority,
    b: &axum::http::uri::Authority,
    default_port: u16,
) -> bool {
    !a.as_str().contains('@')
        && !b.as_str().contains('@')
        && a.host().eq_ignore_ascii_case(b.host())
        && a.port_u16().unwrap_or(default_port) == b.port_u16().unwrap_or(default_port)
}

fn same_url(audience: &Uri, configured: &str) -> bool {
    let Ok(configured) = configured.parse::<Uri>() else {
        return false;
    };
    let default_port = if configured.scheme_str() == Some("wss") {
        443
    } else {
        80
    };
    audience.scheme() == configured.scheme()
        && match (audience.authority(), configured.authority()) {
            (Some(a), Some(b)) => same_address(a, b, default_port),
            _ => false,
        }
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
    fn an_absent_port_is_the_schemes_default_on_either_side() {
        let reached = |tls, host| Reached {
            tls,
            host: Some(host),
        };
        assert!(matches(
            "ws://gw.example/ws",
            reached(false, "gw.example:80"),
            &[]
        ));
        assert!(matches(
            "ws://gw.example:80/ws",
            reached(false, "GW.example"),
            &[]
        ));
        assert!(matches(
            "wss://gw.example/ws",
            reached(true, "gw.example:443"),
            &[]
        ));
        assert!(!matches(
            "ws://gw.example/ws",
            reached(false, "gw.example:8080"),
            &[]
        ));
        assert!(!matches(
            "wss://gw.example/ws",
            reached(true, "gw.example:80"),
            &[]
        ));
        assert!(!matches(
            "ws://u@gw.example/ws",
            reached(false, "gw.example"),
            &[]
        ));
        let public = vec!["wss://gw.example.com/ws".to_owned()];
        assert!(matches("wss://gw.example.com:443/ws", PLAIN, &public));
    }

    #[test]
    fn configured_public_urls_are_accepted() {
        let public = vec!["wss://gw.example.com/ws".to_owned()];
        assert!(matches("wss://gw.example.com/ws", PLAIN, &public));
        assert!(matches("wss://GW.example.com/ws", PLAIN, &public));
        assert!(!matches("ws://gw.example.com/ws", PLAIN, &public));
    }
}
