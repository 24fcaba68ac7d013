//! Writing copied documents: unordered inserts that bypass validation, where a document that is
//! already on the destination is replaced by `_id` instead of failing the run.
//!
//! Documents already present come from a re-run over kept collections, from a source document
//! read twice while it moved, or (for the oplog stage) from inserts replayed over the copy.

use mongodb::bson::{doc, Bson, RawDocument, RawDocumentBuf};
use mongodb::error::{ErrorKind, InsertManyError};
use mongodb::Collection;
use tracing::debug;

use super::CopyError;
use crate::cli::Namespace;
use crate::error::Failure;

/// The server's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

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
    for e in errors {
        let document = documents.get(e.index).copied().ok_or_else(|| {
            CopyError::fatal(failed().cause(format!(
                "the destination reported a duplicate key for document #{} of a batch of {}",
                e.index,
                documents.len()
            )))
        })?;
        let id = document
            .get("_id")
            .ok()
            .flatten()
            .and_then(|id| Bson::try_from(id).ok())
            .ok_or_else(|| {
                CopyError::fatal(failed().cause(format!(
                    "duplicate key on a document without a valid _id: {}",
                    e.message
                )))
            })?;
        collection
            .replace_one(doc! { "_id": id }, document)
            .upsert(true)
            .bypass_document_validation(true)
            .await
            .map_err(|err| {
                let failure = failed()
                    .cause("a duplicate key could not be resolved by replacing the document by _id")
                    .hint("the destination collection has a unique index the source data violates; drop it, or rerun with --drop");
                CopyError::driver(failure, err)
            })?;
    }
    debug!(
        "replaced {} documents of {ns} that were already on the destination",
        errors.len()
    );
    Ok(())
}

fn insert_failed(ns: &Namespace) -> Failure {
    Failure::runtime(format!("cannot insert into {ns} on the destination")).hint(
        "the cause is the destination's answer: check its logs, free space and the destination \
         user's insert privilege; an interrupted initial sync restarts with --drop",
    )
}
