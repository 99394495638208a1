//! Shutdown: the one signal future of a daemon binary (SIGTERM or SIGINT), and the one
//! primitive every daemon's loops select on, a [`CancellationToken`].

use crate::Chain;
pub use tokio_util::sync::CancellationToken;

/// A token cancelled when `shutdown` resolves: `run(config, shutdown)` turns its future into
/// this once, and every loop, retry pause and drain of the daemon selects on it.
pub fn token(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => cancel.cancel(),
            // Everyone holding the token dropped it: nothing left to stop.
            () = cancel.cancelled() => {}
        }
    });
    token
}

/// Resolves when the process is asked to stop (SIGTERM from Kubernetes, SIGINT from a
/// terminal).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %Chain(&e), "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %Chain(&e), "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
