//! The tail reader: a tailable, awaitData `find` on the source's `local.oplog.rs`, read as raw
//! batches and pushed, undecoded, into the [`Spool`].
//!
//! It filters on the top-level `ts` only (`ts >= position`), which every server since 4.4 answers
//! from the oplog's own ordering, with the source client's majority read concern, so that no
//! entry it passes on can still be rolled back by a failover on the source. The entry at the start
//! position itself is read again: some servers give every entry of one transaction the same
//! `ts`, so `>` could skip the rest of a group that a bookmark cut in two; the applier knows
//! which entries at that position it must not apply twice ([`crate::oplog::apply::Applier::resume_after`]).
//!
//! A cursor that dies (a network blip, `CursorNotFound`) is reopened from the last entry read,
//! and the entries at that position it had already passed on are dropped when they come again
//! ([`Reread`]), so the spool holds every entry exactly once. A position the oplog no longer
//! holds stops the run with the documented exit code. It never skips silently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::Client;
use tracing::debug;

use super::spool::Spool;
use super::{oldest_timestamp, OPLOG_COLL, OPLOG_DB};
use crate::error::{is_network_error, is_transient, server_code, ExitCode, Failure, Result};
use crate::retry::Outage;
use crate::shutdown::Shutdown;

/// How long one getMore waits for new entries before returning an empty batch.
const AWAIT_TIME: Duration = Duration::from_secs(1);
/// Entries per batch the reader asks for.
const BATCH_SIZE: u32 = 5_000;
/// Server error codes that mean the oplog no longer holds the position.
const LOST_POSITION_CODES: &[i32] = &[
    136, /* CappedPositionLost */
    286, /* ChangeStreamHistoryLost */
    326, /* OplogQueryMinTsMissing */
];

/// The failure for a position the source oplog no longer holds.
pub fn lost_position(position: Timestamp, oldest: Option<Timestamp>) -> Failure {
    let detail = match oldest {
        Some(o) => format!(" (its oldest entry is {}:{})", o.time, o.increment),
        None => String::new(),
    };
    Failure::new(
        ExitCode::OplogLost,
        format!(
            "the source oplog no longer holds the resume point {}:{}{detail}",
            position.time, position.increment
        ),
    )
    .hint("the source oplog rolled over past the bookmark: run with --forceDump to start over with a full initial sync, and consider a larger source oplog (replSetResizeOplog)")
}

/// Fails unless the source oplog still holds every entry after `position`.
pub async fn check_position(client: &Client, position: Timestamp) -> Result<()> {
    let oldest = oldest_timestamp(client).await?;
    if oldest > position {
        return Err(lost_position(position, Some(oldest)));
    }
    Ok(())
}

/// What the reader has seen, shared with the lag reporter and the status endpoint.
#[derive(Clone, Default)]
pub struct ReadPosition(Arc<Mutex<Seen>>);

#[derive(Clone, Copy, Default)]
struct Seen {
    last: Option<Timestamp>,
    last_write: Option<Timestamp>,
}

impl ReadPosition {
    /// The last entry read, if any.
    pub fn get(&self) -> Option<Timestamp> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last
    }

    /// The last entry read that is not a no-op: the source's last real write, which tells an
    /// operator at cutover that the application has stopped writing.
    pub fn last_write(&self) -> Option<Timestamp> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).last_write
    }

    fn set(&self, ts: Timestamp, noop: bool) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.last = Some(ts);
        if !noop {
            seen.last_write = Some(ts);
        }
    }
}

type BatchCursor = mongodb::raw_batch_cursor::RawBatchCursor;

async fn open(client: &Client, after: Timestamp) -> Result<BatchCursor> {
    check_position(client, after).await?;
    let oplog = client
        .database(OPLOG_DB)
        .collection::<RawDocumentBuf>(OPLOG_COLL);
    crate::retry::transient("opening the oplog cursor on the source", || {
        oplog
            .find(doc! { "ts": { "$gte": after } })
            .cursor_type(CursorType::TailableAwait)
            .max_await_time(AWAIT_TIME)
            .batch_size(BATCH_SIZE)
            .batch()
    })
    .await
    .map_err(|e| classify(after, e))
}

/// Where the reader stands: the last entry's `ts`, and how many entries with that `ts` it has
/// passed on. After a reopen at that `ts`, the cursor sends those entries again; they are
/// dropped here, and the spool receives each entry once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reread {
    ts: Timestamp,
    passed: u64,
    to_drop: u64,
}

impl Reread {
    /// A reader starting at `start`: everything at `start` is wanted (the applier knows what of
    /// it is already applied).
    pub fn starting_at(start: Timestamp) -> Self {
        Reread {
            ts: start,
            passed: 0,
            to_drop: 0,
        }
    }

    /// The position to reopen at; the entries already passed on there will be dropped.
    pub fn reopen(&mut self) -> Timestamp {
        self.to_drop = self.passed;
        self.ts
    }

    /// Whether an entry read at `ts` is new (and is passed on) or a copy sent again after a
    /// reopen.
    pub fn admit(&mut self, ts: Timestamp) -> bool {
        if self.to_drop > 0 && ts == self.ts {
            self.to_drop -= 1;
            return false;
        }
        self.to_drop = 0;
        if ts == self.ts {
            self.passed += 1;
        } else {
            self.ts = ts;
            self.passed = 1;
        }
        true
    }
}

fn classify(position: Timestamp, e: mongodb::error::Error) -> Failure {
    match server_code(&e) {
        Some(code) if LOST_POSITION_CODES.contains(&code) => lost_position(position, None),
        _ if is_transient(&e) => Failure::runtime("Error while tailing the oplog on the source")
            .cause(e)
            .hint(crate::retry::outage_hint()),
        _ => Failure::runtime("Error while tailing the oplog on the source")
            .cause(e)
            .hint("check the source's health and that the source user can read local.oplog.rs"),
    }
}

fn resumable(e: &mongodb::error::Error) -> bool {
    // 43 CursorNotFound, 237 CursorKilled; network errors invalidate the cursor's connection;
    // elections and shutdowns pass.
    is_network_error(e) || matches!(server_code(e), Some(43 | 237)) || is_transient(e)
}

/// Tails the source oplog from `start` (inclusive), pushing every entry into `spool` until `shutdown`.
///
/// Opening happens before this returns, so once it has returned every later source write reaches
/// the spool.
pub async fn start(
    client: Client,
    start: Timestamp,
    spool: Arc<Spool>,
    position: ReadPosition,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let cursor = open(&client, start).await?;
    Ok(tokio::spawn(read(
        client, start, cursor, spool, position, shutdown,
    )))
}

async fn read(
    client: Client,
    start: Timestamp,
    mut cursor: BatchCursor,
    spool: Arc<Spool>,
    position: ReadPosition,
    shutdown: Shutdown,
) -> Result<()> {
    let mut reread = Reread::starting_at(start);
    // Cursors that die without delivering anything in between are one outage.
    let mut outage: Option<Outage> = None;
    loop {
        let next = tokio::select! {
            next = cursor.next() => next,
            _ = shutdown.wait() => return Ok(()),
        };
        let reason = match next {
            Some(Ok(batch)) => {
                if let Some(o) = outage.take() {
                    o.over("reading the source oplog");
                }
                let docs = batch.doc_slices().map_err(|e| {
                    Failure::runtime("the source sent an unreadable oplog batch").cause(e)
                })?;
                for doc in docs {
                    let doc = doc
                        .map_err(|e| {
                            Failure::runtime("the source sent an unreadable oplog entry").cause(e)
                        })?
                        .as_document()
                        .ok_or_else(|| {
                            Failure::runtime(
                                "the source sent an oplog batch holding a non-document",
                            )
                        })?
                        .to_owned();
                    let ts = doc.get_timestamp("ts").map_err(|e| {
                        Failure::runtime("a source oplog entry has no valid ts").cause(e)
                    })?;
                    if !reread.admit(ts) {
                        continue;
                    }
                    let noop = doc.get_str("op") == Ok("n");
                    tokio::task::block_in_place(|| spool.push(doc))?;
                    position.set(ts, noop);
                }
                continue;
            }
            Some(Err(e)) if resumable(&e) => crate::error::brief(&e),
            Some(Err(e)) => return Err(classify(reread.ts, e)),
            None => "the cursor ended".to_string(),
        };
        let o = outage.get_or_insert_with(Outage::begin);
        let waited = tokio::select! {
            waited = o.wait("reading the source oplog", &reason) => waited,
            _ = shutdown.wait() => return Ok(()),
        };
        if !waited {
            return Err(Failure::runtime(format!(
                "the oplog cursor on the source kept failing: {reason}"
            ))
            .hint(crate::retry::outage_hint()));
        }
        let at = reread.reopen();
        debug!("reopening the oplog cursor at {}:{}", at.time, at.increment);
        cursor = open(&client, at).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(i: u32) -> Timestamp {
        Timestamp {
            time: 100,
            increment: i,
        }
    }

    #[test]
    fn a_reopened_cursor_passes_each_entry_on_once() {
        let mut r = Reread::starting_at(ts(1));
        // The start position itself is wanted.
        assert!(r.admit(ts(1)));
        assert!(r.admit(ts(2)));
        // Two entries share ts 3 (one transaction on some servers); the cursor dies after them.
        assert!(r.admit(ts(3)));
        assert!(r.admit(ts(3)));
        assert_eq!(r.reopen(), ts(3));
        // The reopened cursor sends both again, then a third entry of ts 3 it had not sent.
        assert!(!r.admit(ts(3)));
        assert!(!r.admit(ts(3)));
        assert!(r.admit(ts(3)));
        assert!(r.admit(ts(4)));
        // mongod: one entry per ts; a reopen at a transaction's commit does not resend it.
        assert_eq!(r.reopen(), ts(4));
        assert!(!r.admit(ts(4)));
        assert!(r.admit(ts(5)));
    }

    #[test]
    fn a_reopen_before_anything_was_read_reads_the_start_again() {
        let mut r = Reread::starting_at(ts(7));
        assert_eq!(r.reopen(), ts(7));
        assert!(r.admit(ts(7)));
        // The entries at the reopen position may be gone (rolled over): newer ones are new.
        let mut r = Reread::starting_at(ts(7));
        assert!(r.admit(ts(7)));
        assert_eq!(r.reopen(), ts(7));
        assert!(r.admit(ts(9)));
        assert!(r.admit(ts(10)));
    }
}
