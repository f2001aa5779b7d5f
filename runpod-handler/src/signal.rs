//! SIGTERM and SIGINT: stop taking jobs, let running ones finish (docs/protocol.md §16).

use tokio_util::sync::CancellationToken;

/// Fires `shutdown` on the first SIGTERM or SIGINT; a second SIGINT exits at once with 130.
pub(crate) fn spawn_listener(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!(
                    "Cannot listen for shutdown signals; the worker stops only when killed."
                );
                return;
            };
            let number = tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            };
            // Cancel first: a line saying so must mean jobs already see the shutdown.
            shutdown.cancel();
            tracing::debug!("Received shutdown signal: {number}.");
            tracing::debug!("Kill worker.");
            if int.recv().await.is_some() {
                tracing::warn!("Second interrupt: exiting without waiting for running jobs.");
                std::process::exit(130);
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                shutdown.cancel();
            }
        }
    });
}
