//! Commands sent to the destination: majority write concern, retries of transient failures, and
//! replies checked for write errors.
//!
//! Every write the replayer sends is idempotent (upserts and replacements by `_id`, deletes by
//! `_id`, `$set`/`$unset`, DDL whose "already done" errors are accepted), so a command that failed
//! on a dropped connection or a stepping-down primary is simply sent again.

use mongodb::bson::raw::{RawArrayBuf, RawBson};
use mongodb::bson::{rawdoc, Bson, Document, RawDocumentBuf};
use mongodb::error::Error;
use mongodb::Client;

use super::error::ApplyError;
use crate::error::{is_transient, is_transient_code};
use crate::retry::Outage;

/// The `writeConcern` every replayed write carries. `run_command` does not apply the client's
/// default write concern, so it is spelled out.
pub(super) fn majority() -> RawDocumentBuf {
    rawdoc! { "w": "majority" }
}

/// The `u` of an update that replaces a document by `_id` with `doc`.
///
/// mongod 5.0+ stores top-level field names starting with `$` (inserts and pipelines write
/// them), but refuses them in a replacement document (`DollarPrefixedFieldName`, and upserts
/// that match are no exception). Such a document goes as the pipeline
/// `[{$replaceWith: {$literal: doc}}]`, which writes it as it is; every other one as itself.
pub(super) fn replacement(doc: RawDocumentBuf) -> RawBson {
    let dollar = doc
        .iter()
        .any(|field| matches!(field, Ok((name, _)) if name.starts_with('$')));
    if !dollar {
        return RawBson::Document(doc);
    }
    let mut pipeline = RawArrayBuf::new();
    pipeline.push(rawdoc! { "$replaceWith": { "$literal": doc } });
    RawBson::Array(pipeline)
}

/// Runs `command` on database `db`, waiting out transient failures ([`crate::retry`]), and
/// returns the reply. `what` names the operation in errors ("update of app.users").
pub(super) async fn run(
    client: &Client,
    db: &str,
    command: RawDocumentBuf,
    what: &str,
) -> Result<Document, Error> {
    let mut outage: Option<Outage> = None;
    loop {
        let reply = client.database(db).run_raw_command(command.clone()).await;
        let (reason, failed) = match reply {
            Ok(reply) => match write_concern_error(&reply) {
                Some(ConcernError(code, message)) if is_transient_code(code) => {
                    let reason = format!("write concern error {code}: {message}");
                    let failed = Error::custom(reason.clone());
                    (reason, failed)
                }
                _ => {
                    if let Some(o) = outage {
                        o.over(what);
                    }
                    return Ok(reply);
                }
            },
            Err(e) if is_transient(&e) => (crate::error::brief(&e), e),
            Err(e) => return Err(e),
        };
        let o = outage.get_or_insert_with(Outage::begin);
        if !o.wait(what, &reason).await {
            return Err(failed);
        }
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

#[cfg(test)]
mod tests {
    use mongodb::bson::rawdoc;

    use super::*;

    #[test]
    fn only_top_level_dollar_names_make_a_replacement_a_pipeline() {
        let plain = rawdoc! { "_id": 1, "a": { "$b": 1 }, "c.d": 2 };
        assert_eq!(replacement(plain.clone()), RawBson::Document(plain.clone()));
        let dollar = rawdoc! { "_id": 1, "$x": { "$y": 1 } };
        let RawBson::Array(pipeline) = replacement(dollar.clone()) else {
            panic!("a replacement with a top-level $ name must be a pipeline");
        };
        let stages: Vec<_> = pipeline.into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(stages.len(), 1);
        let stage = stages[0].as_document().unwrap();
        let literal = stage.get_document("$replaceWith").unwrap();
        assert_eq!(
            literal.get_document("$literal").unwrap().as_bytes(),
            dollar.as_bytes()
        );
    }
}
