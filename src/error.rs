//! The one error type that reaches the operator.
//!
//! Every failure is classified by [`ExitCode`] so that scripts wrapping mongomirror can tell a typo
//! from an unreachable server or a lost oplog position. A [`Failure`] carries the one-line
//! message, the chain of causes, and an optional hint, and is printed by `main` as
//! `Failed: <message>` followed by `caused by:` and `hint:` lines.

use std::fmt;

/// The documented process exit codes (README.md and docs/cli.md hold the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success, or a clean interrupt (SIGINT/SIGTERM) after the bookmark was saved.
    Success = 0,
    /// A runtime failure during copy or oplog replay.
    Runtime = 1,
    /// Bad command-line flags, config file or environment: nothing was contacted.
    Usage = 2,
    /// The source or destination could not be reached, or authentication failed.
    Connection = 3,
    /// A preflight check failed; nothing was written to the destination.
    Preflight = 4,
    /// The source oplog no longer holds the resume point.
    OplogLost = 5,
    /// Verification found that the destination differs from the source.
    Differs = 6,
}

impl ExitCode {
    /// The numeric process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A failure to show the operator: what went wrong, why, and what to do about it.
#[derive(Debug)]
pub struct Failure {
    /// Which class of failure this is; decides the exit code.
    pub exit: ExitCode,
    /// One line: what went wrong.
    pub message: String,
    /// Underlying causes, outermost first.
    pub causes: Vec<String>,
    /// What the operator can do about it.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure of the given class with a one-line message.
    pub fn new(exit: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }

    /// A usage error: bad flags, config or environment.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    /// A connection or authentication failure.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Connection, message)
    }

    /// A runtime failure.
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Runtime, message)
    }

    /// Adds an underlying cause.
    ///
    /// The driver's errors display as `Kind: <what>, labels: {..}`; only `<what>` helps an
    /// operator, so that wrapper is removed here, once, for every caller.
    pub fn cause(mut self, cause: impl fmt::Display) -> Self {
        let text = driver_error_text(&cause.to_string());
        if !text.is_empty() {
            self.causes.push(text);
        }
        self
    }

    /// Sets the hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The lines printed for this failure, without timestamps, secrets already removed.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("Failed: {}", self.message)];
        out.extend(self.causes.iter().map(|c| format!("  caused by: {c}")));
        if let Some(h) = &self.hint {
            out.push(format!("  hint: {h}"));
        }
        out.into_iter().map(|l| crate::redact::scrub(&l)).collect()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for Failure {}

/// An error as one readable line: the driver's `Kind: <what>, labels: {..}, source: ..,
/// server response: ..` becomes `<what>`; other text is kept. For log lines that name a cause.
pub fn brief(error: &impl fmt::Display) -> String {
    driver_error_text(&error.to_string())
}

/// `Kind: <what>, labels: {..}` (the driver's error format) becomes `<what>`; other text is kept.
fn driver_error_text(text: &str) -> String {
    match text.strip_prefix("Kind: ") {
        Some(rest) => rest
            .split_once(", labels: ")
            .map_or(rest, |(what, _)| what)
            .to_string(),
        None => text.to_string(),
    }
}

/// The server error code of a failed driver operation, if the server sent one.
pub fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

/// Server error codes of conditions that pass: network trouble, elections, shutdowns,
/// interruptions, a cursor lost with its server (43), and a cursor killed because its
/// collection was dropped or renamed (175, mongod's `QueryPlanKilled` on the `getMore`): read
/// again, the name shows what it holds now (the copy then finds a renamed collection, see
/// `copy::moved`).
const TRANSIENT_CODES: &[i32] = &[
    6, 7, 43, 63, 89, 91, 134, 150, 175, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Whether a server error code is one of the transient ones (a `writeConcernError` in a reply,
/// for example).
pub fn is_transient_code(code: i32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Whether doing the same operation again may succeed: retryable labels, network errors,
/// server selection timeouts, and the transient server codes above.
pub fn is_transient(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR};
    if error.contains_label(RETRYABLE_WRITE_ERROR) || error.contains_label(RETRYABLE_ERROR) {
        return true;
    }
    match error.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::InsertMany(f) => f
            .write_concern_error
            .as_ref()
            .is_some_and(|w| is_transient_code(w.code)),
        _ => server_code(error).is_some_and(is_transient_code),
    }
}

/// Whether a driver error came from the network rather than from the server.
pub fn is_network_error(error: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        error.kind.as_ref(),
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
    )
}

/// Shorthand for results that end in a [`Failure`].
pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_error_wrapper_is_removed() {
        let f = Failure::runtime("x")
            .cause("Kind: SCRAM failure: authentication failed, labels: {}, source: Some(Error { labels: {} })")
            .cause("plain cause");
        assert_eq!(
            f.causes,
            ["SCRAM failure: authentication failed", "plain cause"]
        );
        let lines = f.hint("do this").lines();
        assert_eq!(lines[0], "Failed: x");
        assert_eq!(lines[3], "  hint: do this");
    }
}
