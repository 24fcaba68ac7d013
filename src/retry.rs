//! Waiting out an outage.
//!
//! A migration runs for hours or days against servers that fail over, restart and drop
//! connections. Every read and write the tool sends is idempotent, so an operation that fails
//! transiently (a network error, an election, a shutdown in progress: [`is_transient`]) is
//! simply sent again, with a backoff that doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
//! While it waits, the tool says so. Only when failures have lasted longer than
//! `--maxOutageSeconds` ([`DEFAULT_MAX_OUTAGE`] unless set) does the run end, with exit code 1 and a
//! bookmark that resumes.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use tracing::{info, warn};

use crate::error::{brief, is_transient};

/// How long the tool waits out failing servers unless `--maxOutageSeconds` says otherwise.
pub const DEFAULT_MAX_OUTAGE: Duration = Duration::from_secs(600);
/// The first pause before an operation is sent again.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

static MAX_OUTAGE: OnceLock<Duration> = OnceLock::new();

/// Sets the outage limit for the whole run (`--maxOutageSeconds`); the first call wins.
pub fn set_max_outage(limit: Duration) {
    let _ = MAX_OUTAGE.set(limit);
}

/// The outage limit of this run.
pub fn max_outage() -> Duration {
    MAX_OUTAGE.get().copied().unwrap_or(DEFAULT_MAX_OUTAGE)
}

/// The hint of a failure that outlasted the outage limit.
pub fn outage_hint() -> String {
    format!(
        "the server did not answer for {}s (--maxOutageSeconds): once it is back, start mongomirror again with the same flags, and it resumes from the bookmark",
        max_outage().as_secs()
    )
}

/// Tracks one outage: when it began and the next pause.
#[derive(Debug)]
pub struct Outage {
    began: Instant,
    backoff: Duration,
}

impl Outage {
    /// An outage that begins now.
    pub fn begin() -> Self {
        Outage {
            began: Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// Waits before the next attempt at `what`, which failed with `reason`; `false` (without
    /// waiting) once the outage has lasted longer than the limit.
    pub async fn wait(&mut self, what: &str, reason: &str) -> bool {
        let elapsed = self.began.elapsed();
        let limit = max_outage();
        if elapsed >= limit {
            return false;
        }
        let pause = self.backoff.min(limit - elapsed);
        warn!(
            error = %reason,
            "Recoverable error: {what} failed ({reason}); waiting {:.1}s and trying again (for up to {}s more)",
            pause.as_secs_f64(),
            (limit - elapsed).as_secs()
        );
        tokio::time::sleep(pause).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }

    /// Says that the server answers again.
    pub fn over(self, what: &str) {
        info!(
            "{what} succeeded again after {:.1}s of failures",
            self.began.elapsed().as_secs_f64()
        );
    }
}

/// Runs `op` until it succeeds, fails for good, or fails transiently for longer than the
/// outage limit; `what` names it in the log.
pub async fn transient<T, F, Fut>(what: &str, mut op: F) -> mongodb::error::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = mongodb::error::Result<T>>,
{
    let mut outage: Option<Outage> = None;
    loop {
        match op().await {
            Ok(value) => {
                if let Some(o) = outage {
                    o.over(what);
                }
                return Ok(value);
            }
            Err(e) if is_transient(&e) => {
                let o = outage.get_or_insert_with(Outage::begin);
                if !o.wait(what, &brief(&e)).await {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn network_error() -> mongodb::error::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_waited_out_and_others_are_not() {
        let calls = AtomicU32::new(0);
        let got = transient("a read", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(network_error())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        let calls = AtomicU32::new(0);
        let got: mongodb::error::Result<()> = transient("a write", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(mongodb::error::Error::custom("not transient"))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_longer_than_the_limit_gives_up() {
        let began = tokio::time::Instant::now();
        let got: mongodb::error::Result<()> =
            transient("a read", || async { Err(network_error()) }).await;
        assert!(got.is_err());
        let waited = began.elapsed();
        assert!(
            waited >= DEFAULT_MAX_OUTAGE && waited < DEFAULT_MAX_OUTAGE + MAX_BACKOFF,
            "{waited:?}"
        );
    }
}
