//! Why replay stops: one error type for every module of the replay, from the parse of an entry
//! to the destination's answer, and the failure an operator reads for each.

use super::diff::DiffError;
use super::entry::EntryError;
use crate::error::Failure;

/// Why replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An entry could not be understood.
    #[error("cannot read the oplog entry at {ts}: {source}")]
    Entry {
        /// The entry's `ts`.
        ts: String,
        /// What is wrong with it.
        #[source]
        source: EntryError,
    },
    /// The destination answered with a write error.
    #[error("the destination refused the {what} on {ns}: {message} (code {code})")]
    Refused {
        /// The command.
        what: String,
        /// The namespace.
        ns: String,
        /// Server error code.
        code: i32,
        /// Server message.
        message: String,
    },
    /// A command failed on the destination (after retries, for transient failures).
    #[error("the {what} on {ns} failed on the destination")]
    Destination {
        /// The command.
        what: String,
        /// The namespace.
        ns: String,
        /// The driver's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// A diff does not apply to the destination's document.
    #[error("cannot apply the update of {ns} _id {id}")]
    Diff {
        /// The namespace.
        ns: String,
        /// The document's `_id`.
        id: String,
        /// Why.
        #[source]
        source: DiffError,
    },
    /// A document cannot be converted or encoded.
    #[error("document _id {id} of {ns} cannot be encoded: {message}")]
    Document {
        /// The namespace.
        ns: String,
        /// The document's `_id`.
        id: String,
        /// Why.
        message: String,
    },
    /// Open transactions hold more than [`super::apply::MAX_TXN_BYTES`].
    #[error("open transactions hold more than {limit} bytes of oplog entries")]
    TxnTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A transaction commits whose earlier entries were never read.
    #[error(
        "a transaction ({key}) commits at {ts}, but its earlier oplog entries were never read"
    )]
    TxnIncomplete {
        /// The transaction.
        key: String,
        /// The committing entry.
        ts: String,
    },
    /// The source's featureCompatibilityVersion changed during the migration.
    #[error("the source's featureCompatibilityVersion changed at {ts}; mongomirror forbids FCV changes during a migration")]
    FcvChanged {
        /// The entry that changed it.
        ts: String,
    },
    /// A source read failed (after retries, for transient failures).
    #[error("the {what} on {ns} failed on the source")]
    Source {
        /// The command.
        what: String,
        /// The namespace.
        ns: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// After catch-up, a write met a duplicate key: the destination differs from the source.
    #[error("the destination refused a write to {ns} _id {id}: it collides on unique index {index} with a document the source does not have ({message})")]
    UniqueConflict {
        /// The namespace.
        ns: String,
        /// The index.
        index: String,
        /// The document's `_id`.
        id: String,
        /// The server's message.
        message: String,
    },
    /// Converting an index to unique at the end of catch-up failed.
    #[error("cannot make index {index} of {ns} unique on the destination")]
    UniqueIndex {
        /// The namespace.
        ns: String,
        /// The index.
        index: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// More documents met a duplicate key while catching up than replay keeps track of.
    #[error(
        "more than {limit} bytes of documents met a duplicate key while catching up with the copy"
    )]
    TooManyConflicts {
        /// The limit.
        limit: usize,
    },
    /// The checkpoint taken around a DDL command could not be saved.
    #[error("{0}")]
    Checkpoint(Box<Failure>),
    /// A collection outside the filter is renamed into it: its documents were never copied.
    #[error("{from} is renamed to {to}: the namespace filter includes {to} but not {from}, so its documents were never copied")]
    RenameIntoFilter {
        /// The source namespace.
        from: String,
        /// The target namespace.
        to: String,
    },
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Self {
        if let ApplyError::Checkpoint(failure) = e {
            return *failure;
        }
        let hint: Option<String> = match &e {
            ApplyError::TxnIncomplete { .. } | ApplyError::RenameIntoFilter { .. } => {
                Some("rerun with --forceDump to copy the source again".into())
            }
            ApplyError::TxnTooLarge { .. } => {
                Some("a transaction larger than the buffer is open on the source; rerun when it has committed".into())
            }
            ApplyError::FcvChanged { .. } => {
                Some("finish the FCV change on the source (and the destination), then rerun with --forceDump".into())
            }
            ApplyError::UniqueConflict { .. } | ApplyError::UniqueIndex { .. } => {
                Some("something other than mongomirror wrote to the destination: compare the document on both sides, then start over with --forceDump --drop".into())
            }
            ApplyError::Destination { source, .. } | ApplyError::Source { source, .. }
                if crate::error::is_transient(source) =>
            {
                Some(crate::retry::outage_hint())
            }
            ApplyError::TooManyConflicts { .. } => {
                Some("unique values moved between a great many documents during the copy: rerun with --forceDump --drop when the source is quieter".into())
            }
            _ => None,
        };
        let mut failure = Failure::runtime(format!("oplog replay failed: {e}"));
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            failure = failure.cause(cause);
            source = cause.source();
        }
        match hint {
            Some(h) => failure.hint(h),
            None => failure,
        }
    }
}
