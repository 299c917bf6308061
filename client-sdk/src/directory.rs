//! Discovery through the gateway's HTTP API (`GET /agents`, `GET /agents/{did}`; docs/gateway.md
//! "HTTP API"): online, listed agents and the capabilities they advertise.

use std::sync::Arc;

use ioap_protocol::payload::Capability;
use ioap_protocol::{Did, Timestamp};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

/// Agents per page requested.
const PAGE: usize = 1000;
/// Pages followed at most by one listing (1,000,000 agents).
const MAX_PAGES: usize = 1000;

/// Why a directory lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The gateway URL cannot be turned into its HTTP base.
    #[error("gateway URL {0:?} has no HTTP form")]
    Url(String),
    /// The request failed or the answer is not what `/agents` returns.
    #[error("directory request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// An online, listed agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's DID.
    pub did: Did,
    /// When its session registered.
    pub connected_at: Timestamp,
    /// When the gateway last heard from it.
    pub last_activity: Timestamp,
    /// What it offers.
    pub capabilities: Vec<Capability>,
}

/// The gateway's `GET /health` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `healthy` while serving.
    pub status: String,
    /// Agents registered now (listed or not).
    pub connected_agents: usize,
    /// The gateway's DID.
    pub gateway_did: Did,
    /// The gateway's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_s: u64,
}

#[derive(Deserialize)]
struct AgentPage {
    agents: Vec<AgentInfo>,
    next_cursor: Option<String>,
}

/// The gateway's directory of agents. With the gateways of a cluster
/// ([`with_alternates`](Self::with_alternates)) each request goes to the first that answers.
#[derive(Debug, Clone)]
pub struct Directory {
    http: reqwest::Client,
    /// The gateways' HTTP bases, in order of preference (never empty).
    bases: Vec<Url>,
}

impl Directory {
    /// The directory of the gateway whose WebSocket URL is `ws_url` (`ws://host:port/ws` →
    /// `http://host:port/`; `wss` → `https`). `tls` verifies `https` (default: webpki roots).
    pub fn new(
        ws_url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, DirectoryError> {
        let base = http_base(ws_url).ok_or_else(|| DirectoryError::Url(ws_url.to_owned()))?;
        let tls = match tls {
            Some(tls) => (*tls).clone(),
            None => (*crate::trust::client_config(&[])
                .map_err(|_| DirectoryError::Url(ws_url.to_owned()))?)
            .clone(),
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Directory {
            http,
            bases: vec![base],
        })
    }

    /// Also asks these gateways (`ws://…/ws` URLs of the same cluster), in order, when the
    /// ones before them cannot be reached or answer 5xx.
    pub fn with_alternates(mut self, ws_urls: &[String]) -> Result<Self, DirectoryError> {
        for ws_url in ws_urls {
            let base = http_base(ws_url).ok_or_else(|| DirectoryError::Url(ws_url.clone()))?;
            self.bases.push(base);
        }
        Ok(self)
    }

    /// Every listed agent online.
    pub async fn agents(&self) -> Result<Vec<AgentInfo>, DirectoryError> {
        self.list(None).await
    }

    /// The listed agents offering `capability`.
    pub async fn with_capability(
        &self,
        capability: &str,
    ) -> Result<Vec<AgentInfo>, DirectoryError> {
        self.list(Some(capability)).await
    }

    /// One agent, if it is online and listed.
    pub async fn agent(&self, did: &Did) -> Result<Option<AgentInfo>, DirectoryError> {
        let response = self.get(&format!("agents/{did}"), &[]).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(response.error_for_status()?.json().await?))
    }

    /// The gateway's health: status and how many agents are registered.
    pub async fn health(&self) -> Result<Health, DirectoryError> {
        self.get_json("health", &[]).await
    }

    /// GET `path?query` from the first gateway that answers (not a transport error or 5xx).
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, DirectoryError> {
        let mut last = None;
        for base in &self.bases {
            let mut url = base
                .join(path)
                .map_err(|_| DirectoryError::Url(base.to_string()))?;
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            match self.http.get(url).send().await {
                Ok(response) if !response.status().is_server_error() => return Ok(response),
                Ok(response) => last = Some(response.error_for_status().map_err(Into::into)),
                Err(error) => last = Some(Err(error.into())),
            }
        }
        match last {
            Some(Err(error)) => Err(error),
            Some(Ok(response)) => Ok(response),
            None => Err(DirectoryError::Url("no gateway".into())),
        }
    }

    /// GET `path?query`; a success's JSON body as `T`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, DirectoryError> {
        Ok(self
            .get(path, query)
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn list(&self, capability: Option<&str>) -> Result<Vec<AgentInfo>, DirectoryError> {
        let mut agents = Vec::new();
        let mut cursor: Option<String> = None;
        let limit = PAGE.to_string();
        for _ in 0..MAX_PAGES {
            let mut query = vec![("limit", limit.as_str())];
            if let Some(capability) = capability {
                query.push(("capability", capability));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.as_str()));
            }
            let page: AgentPage = self.get_json("agents", &query).await?;
            agents.extend(page.agents);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(agents)
    }
}

/// `ws://h:p/ws` → `http://h:p/`, `wss://h:p/x/ws` → `https://h:p/x/`.
pub fn http_base(ws_url: &str) -> Option<Url> {
    let mut url = Url::parse(ws_url).ok()?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    let path = url.path();
    let base = path.strip_suffix("ws").unwrap_or(path).to_owned();
    let base = if base.ends_with('/') {
        base
    } else {
        format!("{base}/")
    };
    url.set_path(&base);
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_base_follows_the_websocket_url() {
        let base = |u: &str| http_base(u).map(|u| u.to_string());
        assert_eq!(
            base("ws://127.0.0.1:8000/ws").as_deref(),
            Some("http://127.0.0.1:8000/")
        );
        assert_eq!(
            base("wss://gw.example.org/ioap/ws").as_deref(),
            Some("https://gw.example.org/ioap/")
        );
        assert_eq!(base("ftp://x/ws"), None);
    }
}
