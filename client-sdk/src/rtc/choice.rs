//! Which WebRTC engine an agent uses, by name: on [`AgentBuilder::engine`](crate::AgentBuilder::engine),
//! the CLI's `--engine` and the `IOAP_ENGINE` environment variable.

use std::sync::Arc;

use super::{RtcEngine, RtcSettings, Str0mEngine, WebrtcEngine};

/// The environment variable that picks the engine of agents whose builder names none.
pub const ENGINE_ENV: &str = "IOAP_ENGINE";

/// A WebRTC engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Engine {
    /// webrtc-rs 0.17: a task and a socket per peer connection.
    #[default]
    WebrtcRs,
    /// str0m (sans-IO): one socket and one task for all of an agent's peer connections.
    Str0m,
}

impl Engine {
    /// Every engine, in the order they are listed.
    pub const ALL: [Engine; 2] = [Engine::WebrtcRs, Engine::Str0m];

    /// The engine named by `IOAP_ENGINE` (`webrtc-rs` or `str0m`); the default when it is
    /// unset; an error naming the choices when it names none of them.
    pub fn from_env() -> Result<Engine, String> {
        match std::env::var(ENGINE_ENV) {
            Ok(name) if !name.is_empty() => name.parse(),
            _ => Ok(Engine::default()),
        }
    }

    /// A new engine of this kind for `settings`.
    pub fn build(self, settings: &RtcSettings) -> Arc<dyn RtcEngine> {
        match self {
            Engine::WebrtcRs => Arc::new(WebrtcEngine::new(settings)),
            Engine::Str0m => Arc::new(Str0mEngine::new(settings)),
        }
    }

    /// The engine's name, as `--engine` and `IOAP_ENGINE` take it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::WebrtcRs => "webrtc-rs",
            Engine::Str0m => "str0m",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|engine| engine.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| format!("unknown WebRTC engine {name:?} (webrtc-rs or str0m)"))
    }
}

#[cfg(test)]
mod tests {
    use super::Engine;

    #[test]
    fn engines_parse_by_name_and_print_it_back() {
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>(), Ok(engine));
            assert_eq!(engine.to_string(), engine.name());
        }
        assert_eq!(" STR0M ".parse::<Engine>(), Ok(Engine::Str0m));
        let error = "libwebrtc".parse::<Engine>().expect_err("unknown");
        assert!(error.contains("webrtc-rs or str0m"), "{error}");
    }
}
