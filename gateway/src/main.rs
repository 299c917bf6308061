//! `ioap-gateway`: run the rendezvous service (`ioap-gateway --help` lists every setting).

use std::process::ExitCode;

use clap::Parser;
use ioap_gateway::{Gateway, LogFormat, LogSettings, Settings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let settings = Settings::parse();
    if settings.check_config {
        return check_config(&settings);
    }
    let (config, log) = match settings.resolve() {
        Ok(resolved) => resolved,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gateway = match Gateway::start(config).await {
            Ok(gateway) => gateway,
            Err(error) => {
                tracing::error!("{error:#}");
                return ExitCode::FAILURE;
            }
        };
        let signal = tokio::select! {
            signal = ioap_gateway::termination() => Some(signal),
            () = gateway.shutdown_requested() => None,
        };
        if signal == Some(ioap_gateway::Termination::Terminate) {
            gateway.drain().await;
        }
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// `--check-config`: every setting checked, the effective ones printed as a TOML file.
fn check_config(settings: &Settings) -> ExitCode {
    let checked = settings.effective().and_then(|mut effective| {
        effective.clone().resolve()?;
        // Printed, never a password: give it in IOAP_REDIS_URL, not in a shared file.
        effective.redis_url = effective
            .redis_url
            .map(|url| ioap_gateway::cluster::redact(&url));
        effective.turn_secret = effective.turn_secret.map(|_| "***".to_owned());
        Ok(toml::to_string(&effective)?)
    });
    match checked {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr: colour only on a terminal (and never with `NO_COLOR`); JSON lines carry
/// the event's fields at the top level.
fn init_logging(log: &LogSettings) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}
