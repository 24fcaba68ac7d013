//! Commands sent to the destination: majority write concern, retries of transient failures, and
//! replies checked for write errors.
//!
//! Every write the replayer sends is idempotent (upserts and replacements by `_id`, deletes by
//! `_id`, `$set`/`$unset`, DDL whose "already done" errors are accepted), so a command that failed
//! on a dropped connection or a stepping-down primary is simply sent again.

use std::time::Duration;

use mongodb::bson::{rawdoc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tracing::warn;

use super::apply::ApplyError;
use crate::error::{is_transient, is_transient_code};
use mongodb::error::Error;

/// How often a command that fails transiently is tried before the failure is reported.
const ATTEMPTS: u32 = 8;
/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// The `writeConcern` every replayed write carries. `run_command` does not apply the client's
/// default write concern, so it is spelled out.
pub(super) fn majority() -> RawDocumentBuf {
    rawdoc! { "w": "majority" }
}

/// Runs `command` on database `db`, retrying transient failures, and returns the reply.
/// `what` names the operation in errors ("update of app.users").
pub(super) async fn run(
    client: &Client,
    db: &str,
    command: RawDocumentBuf,
    what: &str,
) -> Result<Document, Error> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let reply = client.database(db).run_raw_command(command.clone()).await;
        let reason = match reply {
            Ok(reply) => match write_concern_error(&reply) {
                Some(ConcernError(code, message))
                    if attempt < ATTEMPTS && is_transient_code(code) =>
                {
                    format!("write concern error {code}: {message}")
                }
                _ => return Ok(reply),
            },
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => crate::error::brief(&e),
            Err(e) => return Err(e),
        };
        warn!(
            error = %reason,
            attempt,
            "Recoverable error on the destination: {what} failed ({reason}); retrying in {backoff:?} (attempt {attempt} of {ATTEMPTS})"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// A `writeConcernError` from a reply: code and message.
struct ConcernError(i32, String);

fn write_concern_error(reply: &Document) -> Option<ConcernError> {
    let e = reply.get_document("writeConcernError").ok()?;
    Some(ConcernError(
        number(e.get("code")).unwrap_or(0) as i32,
        e.get_str("errmsg").unwrap_or("").to_string(),
    ))
}

/// The first write error of a write command.
#[derive(Debug)]
pub(super) struct WriteError {
    /// Index of the failed statement; later statements of an ordered command did not run.
    pub index: usize,
    /// Server error code.
    pub code: i32,
    /// Server message.
    pub message: String,
}

/// Reads a write command's reply: `n` and the first write error. A write concern error is an
/// [`ApplyError::Refused`]: the writes may not be durable.
pub(super) fn write_reply(
    reply: &Document,
    what: &str,
    ns: &str,
) -> Result<(i64, Option<WriteError>), ApplyError> {
    if let Some(ConcernError(code, message)) = write_concern_error(reply) {
        return Err(ApplyError::Refused {
            what: what.to_string(),
            ns: ns.to_string(),
            code,
            message: format!("write concern: {message}"),
        });
    }
    let error = reply
        .get_array("writeErrors")
        .ok()
        .and_then(|errors| errors.first())
        .and_then(Bson::as_document)
        .map(|first| WriteError {
            index: number(first.get("index")).unwrap_or(0).max(0) as usize,
            code: number(first.get("code")).unwrap_or(0) as i32,
            message: first.get_str("errmsg").unwrap_or("write error").to_string(),
        });
    Ok((number(reply.get("n")).unwrap_or(0), error))
}

/// Any BSON number as an integer (servers answer Int32, Int64 or Double).
pub(super) fn number(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}
