//! The tail reader: a tailable, awaitData `find` on the source's `local.oplog.rs`, read as raw
//! batches and pushed, undecoded, into the [`Spool`].
//!
//! It filters on the top-level `ts` only (`ts >= position`), which every server since 4.4 answers
//! from the oplog's own ordering. The entry at the position itself is read again: replay is
//! idempotent, and some servers give every entry of one transaction the same `ts`, so `>` could
//! skip the rest of a group that a bookmark or a dead cursor cut in two. A cursor that dies (a network blip, `CursorNotFound`) is reopened
//! from the last entry read; a position the oplog no longer holds stops the run with the
//! documented exit code. It never skips silently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::Client;
use tracing::{debug, warn};

use crate::error::{is_network_error, server_code, ExitCode, Failure, Result};
use crate::oplog::{oldest_timestamp, OPLOG_COLL, OPLOG_DB};
use crate::shutdown::Shutdown;
use crate::spool::Spool;

/// How long one getMore waits for new entries before returning an empty batch.
const AWAIT_TIME: Duration = Duration::from_secs(1);
/// Entries per batch the reader asks for.
const BATCH_SIZE: u32 = 5_000;
/// How many times in a row a dead cursor is reopened before the run fails.
const MAX_REOPENS: u32 = 10;
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
    client
        .database(OPLOG_DB)
        .collection::<RawDocumentBuf>(OPLOG_COLL)
        .find(doc! { "ts": { "$gte": after } })
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(AWAIT_TIME)
        .batch_size(BATCH_SIZE)
        .batch()
        .await
        .map_err(|e| classify(after, e))
}

fn classify(position: Timestamp, e: mongodb::error::Error) -> Failure {
    match server_code(&e) {
        Some(code) if LOST_POSITION_CODES.contains(&code) => lost_position(position, None),
        _ => Failure::runtime("Error while tailing the oplog on the source")
            .cause(e)
            .hint("check the source's health and that the source user can read local.oplog.rs"),
    }
}

fn resumable(e: &mongodb::error::Error) -> bool {
    // 43 CursorNotFound, 237 CursorKilled; network errors invalidate the cursor's connection.
    is_network_error(e) || matches!(server_code(e), Some(43 | 237))
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
    mut last: Timestamp,
    mut cursor: BatchCursor,
    spool: Arc<Spool>,
    position: ReadPosition,
    shutdown: Shutdown,
) -> Result<()> {
    let mut reopens = 0;
    loop {
        let next = tokio::select! {
            next = cursor.next() => next,
            _ = shutdown.wait() => return Ok(()),
        };
        let failure = match next {
            Some(Ok(batch)) => {
                reopens = 0;
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
                    let noop = doc.get_str("op") == Ok("n");
                    tokio::task::block_in_place(|| spool.push(doc))?;
                    last = ts;
                    position.set(ts, noop);
                }
                continue;
            }
            Some(Err(e)) if resumable(&e) => {
                warn!(
                    "Recoverable error while tailing the oplog: {e}; reopening from {}:{}",
                    last.time, last.increment
                );
                None
            }
            Some(Err(e)) => Some(classify(last, e)),
            None => {
                debug!(
                    "the oplog cursor ended; reopening from {}:{}",
                    last.time, last.increment
                );
                None
            }
        };
        if let Some(f) = failure {
            return Err(f);
        }
        reopens += 1;
        if reopens > MAX_REOPENS {
            return Err(Failure::runtime(format!(
                "the oplog cursor on the source died {MAX_REOPENS} times in a row"
            ))
            .hint("check the source's health and the network between it and this machine"));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200 * u64::from(reopens))) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        cursor = open(&client, last).await?;
    }
}
