//! Waiting for the process to be asked to stop.

/// What asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Ctrl-C (SIGINT): someone at a terminal; stop now.
    Interrupt,
    /// SIGTERM: a service manager; drain first.
    Terminate,
}

/// Resolves on SIGTERM or Ctrl-C, saying which.
pub async fn termination() -> Termination {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {
            tracing::info!("Ctrl-C received");
            Termination::Interrupt
        }
        () = term => {
            tracing::info!("SIGTERM received");
            Termination::Terminate
        }
    }
}
