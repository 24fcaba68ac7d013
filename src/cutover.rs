//! The guided cutover: the operator stops the application; mongomirror waits until the source
//! has been quiet, applies everything, saves the bookmark, stops tailing, verifies the
//! destination against the source ([`crate::verify`]) and says yes or no.
//!
//! A request comes from `POST /cutover` on the status port (optional JSON body
//! `{"quietSeconds": N, "verify": bool, "timeoutSeconds": N}`) or from SIGUSR1 (defaults). It
//! reaches the oplog sync through [`Control`], which accepts one request at a time and only
//! while oplog sync runs. The sync ([`crate::oplog::sync`]) keeps applying entries while it waits:
//!
//! - **Quiet**: no entry in scope (a write or DDL command on a namespace the filter takes) has
//!   been applied for `quietSeconds`, every entry read is applied, the reader has read up to the
//!   source's newest entry, and oplog sync has caught up with the copy.
//! - **Then**: the bookmark is saved, tailing stops, and the verification runs; the requester
//!   gets the report, and the process exits 0 when the destination is identical, 6 when not.
//! - **Not quiet** within `timeoutSeconds`: the cutover is abandoned, the requester is told why
//!   (HTTP 409), and the sync goes on; writes that arrived meanwhile were applied as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::verify::report::Report;

/// How long the source must be quiet, unless the request says otherwise.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(5);
/// How long a cutover waits for a quiet source, unless the request says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A cutover request.
#[derive(Debug)]
pub struct Request {
    /// How long the source must have been quiet.
    pub quiet: Duration,
    /// Whether to verify once quiet.
    pub verify: bool,
    /// How long to wait for a quiet source before giving up.
    pub timeout: Duration,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Outcome>,
}

/// How a cutover ended.
#[derive(Debug)]
pub enum Outcome {
    /// Tailing stopped at a quiet, fully applied source; the report, if verification ran.
    Done(Option<Report>),
    /// The source was not quiet in time (or another reason): the sync goes on.
    Abandoned(String),
    /// Something failed; the run ends with this message.
    Failed(String),
}

/// The body of `POST /cutover`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Body {
    /// Seconds the source must be quiet.
    pub quiet_seconds: Option<u64>,
    /// Verify once quiet (default true).
    pub verify: Option<bool>,
    /// Seconds to wait for a quiet source.
    pub timeout_seconds: Option<u64>,
}

impl Body {
    /// The request this body asks for.
    pub fn into_request(self, reply: oneshot::Sender<Outcome>) -> Request {
        Request {
            quiet: self
                .quiet_seconds
                .map_or(DEFAULT_QUIET, Duration::from_secs),
            verify: self.verify.unwrap_or(true),
            timeout: self
                .timeout_seconds
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            reply,
        }
    }
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The run is not in oplog sync (yet, or any more).
    #[error("a cutover is possible only during oplog sync")]
    NotInOplogSync,
    /// Another cutover is being prepared.
    #[error("a cutover is already in progress")]
    Busy,
}

/// Carries cutover requests to the oplog sync.
#[derive(Debug)]
pub struct Control {
    tx: mpsc::Sender<Request>,
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
    listening: AtomicBool,
}

impl Control {
    /// A control no one listens to yet.
    pub fn shared() -> Arc<Control> {
        let (tx, rx) = mpsc::channel(1);
        Arc::new(Control {
            tx,
            rx: Mutex::new(Some(rx)),
            listening: AtomicBool::new(false),
        })
    }

    /// Hands a request to the oplog sync.
    pub fn request(&self, request: Request) -> Result<(), Refused> {
        if !self.listening.load(Ordering::Acquire) {
            return Err(Refused::NotInOplogSync);
        }
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refused::Busy,
            mpsc::error::TrySendError::Closed(_) => Refused::NotInOplogSync,
        })
    }

    /// For the oplog sync: the requests, from now on (`None` if already taken).
    pub fn listen(&self) -> Option<Listener<'_>> {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        self.listening.store(true, Ordering::Release);
        Some(Listener { control: self, rx })
    }
}

/// The oplog sync's end of a [`Control`]; requests are refused again once it is dropped.
#[derive(Debug)]
pub struct Listener<'a> {
    control: &'a Control,
    rx: mpsc::Receiver<Request>,
}

impl Listener<'_> {
    /// The next request.
    pub async fn next(&mut self) -> Option<Request> {
        self.rx.recv().await
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.control.listening.store(false, Ordering::Release);
    }
}

/// Turns SIGUSR1 into cutover requests with the default settings; the outcome is logged (the
/// sync prints the report itself).
pub fn on_sigusr1(control: Arc<Control>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut signals) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while signals.recv().await.is_some() {
            let (reply, outcome) = oneshot::channel();
            match control.request(Body::default().into_request(reply)) {
                Ok(()) => {
                    tracing::info!(
                        "SIGUSR1: cutover requested (the source must be quiet for {}s)",
                        DEFAULT_QUIET.as_secs()
                    );
                    tokio::spawn(async move {
                        if let Ok(Outcome::Abandoned(why)) = outcome.await {
                            tracing::warn!("cutover abandoned: {why}; oplog sync goes on");
                        }
                    });
                }
                Err(refused) => tracing::warn!("SIGUSR1: {refused}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_default_and_refuse_unknown_keys() {
        let (tx, _) = oneshot::channel();
        let r = Body::default().into_request(tx);
        assert_eq!(
            (r.quiet, r.verify, r.timeout),
            (DEFAULT_QUIET, true, DEFAULT_TIMEOUT)
        );
        let body: Body =
            serde_json::from_str(r#"{"quietSeconds": 1, "verify": false, "timeoutSeconds": 9}"#)
                .unwrap();
        let (tx, _) = oneshot::channel();
        let r = body.into_request(tx);
        assert_eq!(
            (r.quiet, r.verify, r.timeout),
            (Duration::from_secs(1), false, Duration::from_secs(9))
        );
        assert!(serde_json::from_str::<Body>(r#"{"quiet": 1}"#).is_err());
    }

    #[test]
    fn requests_wait_for_a_listener_and_one_at_a_time() {
        let control = Control::shared();
        let request = || Body::default().into_request(oneshot::channel().0);
        assert_eq!(control.request(request()), Err(Refused::NotInOplogSync));
        let listener = control.listen().expect("first listener");
        assert!(control.listen().is_none());
        assert_eq!(control.request(request()), Ok(()));
        assert_eq!(control.request(request()), Err(Refused::Busy));
        drop(listener);
        assert_eq!(control.request(request()), Err(Refused::NotInOplogSync));
    }
}
