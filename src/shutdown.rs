//! SIGINT and SIGTERM, turned into one "stop" that every stage can wait for.
//!
//! A stop is a request, not an abort: the reader stops reading, the applier finishes the batch it
//! is writing, the bookmark is saved, and the process exits 0.

use tokio::sync::watch;

/// A cloneable handle that resolves once a stop was requested.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that requests a stop (signals, or a test).
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Requests a stop.
    pub fn stop(&self) {
        let _ = self.tx.send(true);
    }
}

/// A new stop pair.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Shutdown {
    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop is requested (immediately if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every trigger is gone: no stop can come any more.
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves on the next SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Stops gracefully on the first SIGINT or SIGTERM; a second one exits at once (code 1), for an
/// operator who cannot wait. Must be called inside the runtime.
pub fn on_signals() -> Shutdown {
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        signal().await;
        tracing::info!(
            "signal received: stopping after the current batch and saving the bookmark, so that the next start resumes; a second signal exits at once without saving"
        );
        trigger.stop();
        signal().await;
        crate::logging::print_always(&[
            "Failed: stopped by a second signal without saving the bookmark".to_string(),
            "  hint: a restart resumes from the last saved bookmark; replay is idempotent"
                .to_string(),
        ]);
        std::process::exit(crate::error::ExitCode::Runtime.code());
    });
    shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_after_stop() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.requested());
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        trigger.stop();
        waiter.await.unwrap();
        assert!(shutdown.requested());
        shutdown.wait().await;
    }
}
