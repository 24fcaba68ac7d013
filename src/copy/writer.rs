//! Writing copied documents: unordered inserts that bypass validation, where a document that is
//! already on the destination is replaced by `_id` instead of failing the run.
//!
//! Documents already present come from a re-run over kept collections, from a source document
//! read twice while it moved, or (for the oplog stage) from inserts replayed over the copy.

use mongodb::bson::raw::{RawArrayBuf, RawBsonRef};
use mongodb::bson::{rawdoc, RawDocument, RawDocumentBuf};
use mongodb::error::{ErrorKind, InsertManyError};
use mongodb::Collection;
use tracing::debug;

use super::CopyError;
use crate::cli::Namespace;
use crate::error::Failure;

/// The server's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;
/// Soft byte limit of one `update` command of replacements (the server takes 16 MiB).
const REPLACE_BYTES: usize = 8 * 1024 * 1024;

/// Inserts `documents` (unordered, bypassing validation) into `collection`, replacing by `_id`
/// those whose `_id` is already there. `ns` names the collection in errors; a transient error
/// says so, and the whole call may then be repeated.
///
/// The documents are sent as the bytes given, never decoded. The caller bounds the batch: the
/// server takes at most 16 MiB per document and the driver splits larger batches.
pub async fn insert_or_replace(
    collection: &Collection<RawDocumentBuf>,
    ns: &Namespace,
    documents: &[&RawDocument],
) -> Result<(), CopyError> {
    // Borrowed documents are serialized straight from the source reply.
    let borrowed = collection.clone_with_type::<&RawDocument>();
    let result = borrowed
        .insert_many(documents.iter().copied())
        .ordered(false)
        .bypass_document_validation(true)
        .await;
    let Err(error) = result else {
        return Ok(());
    };
    match error.kind.as_ref() {
        ErrorKind::InsertMany(details) if details.write_concern_error.is_none() => {
            replace_duplicates(&borrowed, ns, documents, details).await
        }
        _ => Err(CopyError::driver(insert_failed(ns), error)),
    }
}

/// Resolves the duplicate key errors of an unordered insert by replacing by `_id`; any other
/// write error fails the copy.
async fn replace_duplicates(
    collection: &Collection<&RawDocument>,
    ns: &Namespace,
    documents: &[&RawDocument],
    details: &InsertManyError,
) -> Result<(), CopyError> {
    let failed = || insert_failed(ns);
    let errors = details.write_errors.as_deref().unwrap_or_default();
    if let Some(other) = errors.iter().find(|e| e.code != DUPLICATE_KEY) {
        let count = errors.iter().filter(|e| e.code != DUPLICATE_KEY).count();
        return Err(CopyError::fatal(failed().cause(format!(
            "{count} documents were refused; the first: error {}: {}",
            other.code, other.message
        ))));
    }
    let mut duplicates = Vec::with_capacity(errors.len());
    for e in errors {
        let document = documents.get(e.index).copied().ok_or_else(|| {
            CopyError::fatal(failed().cause(format!(
                "the destination reported a duplicate key for document #{} of a batch of {}",
                e.index,
                documents.len()
            )))
        })?;
        duplicates.push(document);
    }
    replace_all(collection, ns, &duplicates).await?;
    debug!(
        "replaced {} documents of {ns} that were already on the destination",
        duplicates.len()
    );
    Ok(())
}

/// Replaces documents by `_id` (with upsert), in `update` commands of many statements: a
/// resumed copy meets every document it had copied since its last saved position.
async fn replace_all(
    collection: &Collection<&RawDocument>,
    ns: &Namespace,
    documents: &[&RawDocument],
) -> Result<(), CopyError> {
    let failed = || {
        insert_failed(ns)
            .cause("a duplicate key could not be resolved by replacing the document by _id")
            .hint("the destination collection has a unique index the source data violates; drop it, or rerun with --drop")
    };
    let mut start = 0;
    while start < documents.len() {
        let mut updates = RawArrayBuf::new();
        let mut bytes = 0;
        let mut end = start;
        while end < documents.len()
            && (end == start || bytes + documents[end].as_bytes().len() < REPLACE_BYTES)
        {
            let document = documents[end];
            let id = document.get("_id").ok().flatten().ok_or_else(|| {
                CopyError::fatal(failed().cause("a duplicate key on a document without an _id"))
            })?;
            let mut q = RawDocumentBuf::new();
            q.append_ref("_id", id);
            let mut statement = RawDocumentBuf::new();
            statement.append("q", q);
            statement.append_ref("u", RawBsonRef::Document(document));
            statement.append("upsert", true);
            updates.push(statement);
            bytes += document.as_bytes().len();
            end += 1;
        }
        let mut command = RawDocumentBuf::new();
        command.append("update", collection.name());
        command.append("updates", updates);
        command.append("ordered", false);
        command.append("bypassDocumentValidation", true);
        command.append("writeConcern", rawdoc! { "w": "majority" });
        let reply = collection
            .client()
            .database(&ns.db)
            .run_raw_command(command)
            .await
            .map_err(|err| CopyError::driver(failed(), err))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            let first = errors
                .iter()
                .next()
                .and_then(|e| e.as_document().cloned())
                .unwrap_or_default();
            return Err(CopyError::fatal(failed().cause(format!(
                "{} documents were refused; the first: {}",
                errors.len(),
                first.get_str("errmsg").unwrap_or("write error")
            ))));
        }
        start = end;
    }
    Ok(())
}

fn insert_failed(ns: &Namespace) -> Failure {
    Failure::runtime(format!("cannot insert into {ns} on the destination")).hint(
        "the cause is the destination's answer: check its logs, free space and the destination \
         user's insert privilege; an interrupted initial sync restarts with --drop",
    )
}
