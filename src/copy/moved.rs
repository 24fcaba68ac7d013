//! A collection renamed on the source while it is being copied.
//!
//! The copy reads each collection by name. A `renameCollection` while a collection is copied
//! (the everyday "load into staging, rename over live") leaves the ranges read after it empty,
//! or reading whichever collection takes the old name; replay would then move that partial copy
//! to the new name, and the documents written before the copy's starting point that the copy
//! missed would be lost. mongomirror stops there ("renameCollection command encountered during
//! initial sync. Please restart mongomirror."); this copy finds the collection instead.
//!
//! Once a collection's ranges are in, its name must still hold it (the same `info.uuid`). When
//! it does not, the source oplog since the copy's starting point (or since the rename it was
//! last found at) says where it went:
//! - renamed, perhaps several times: it is copied again, whole, from its current name into its
//!   name at the starting point, which is where replay expects it before replaying the renames;
//! - dropped, or moved to another database (mongod logs that as a copy into the target and a
//!   drop of the source): nothing to do, replay drops the partial copy and rebuilds what
//!   followed from the oplog.
//!
//! Even a rename read wrongly (the name taken by another collection that was then renamed) is
//! harmless: replay drops or renames away whatever the name holds before it meets that rename.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocumentBuf, Timestamp};
use mongodb::Client;

use crate::catalog::SourceCollection;
use crate::cli::Namespace;
use crate::error::{Failure, Result};

/// Where a collection being copied is now.
#[derive(Debug, PartialEq)]
pub enum Whereabouts {
    /// Its name still holds it.
    Here,
    /// Dropped, or moved out of its database: replay takes care of it.
    Gone,
    /// Renamed to `ns` by the entry at `at`; `uuid` is what `ns` holds now.
    Renamed {
        ns: Namespace,
        at: Timestamp,
        uuid: Option<Bson>,
    },
}

/// The hint of a failed lookup: the copy is saved.
const RESUMES: &str = "check that the source user may list collections and read local.oplog.rs; started again with the same flags, mongomirror resumes the copy from the bookmark";

/// The most renames followed for one collection, against an oplog that never ends them.
const MOST_RENAMES: usize = 1000;

/// Where the collection with `uuid`, read from `reading` and there since `since`, is now.
pub async fn whereabouts(
    source: &Client,
    reading: &Namespace,
    uuid: &Bson,
    since: Timestamp,
) -> Result<Whereabouts> {
    if current_uuid(source, reading).await?.flatten().as_ref() == Some(uuid) {
        return Ok(Whereabouts::Here);
    }
    let (mut ns, mut at) = (reading.clone(), since);
    for _ in 0..MOST_RENAMES {
        match next_rename(source, &ns, at).await? {
            Some((to, ts)) => (ns, at) = (to, ts),
            None => break,
        }
    }
    if ns == *reading {
        return Ok(Whereabouts::Gone);
    }
    Ok(match current_uuid(source, &ns).await? {
        None => Whereabouts::Gone,
        Some(uuid) => Whereabouts::Renamed { ns, at, uuid },
    })
}

/// The `info.uuid` of the collection named `ns`: `None` when there is none by that name,
/// `Some(None)` when the server gives no UUID.
pub async fn current_uuid(client: &Client, ns: &Namespace) -> Result<Option<Option<Bson>>> {
    let listing = format!("looking up {ns} on the source");
    let specs: Vec<Document> = crate::retry::transient(&listing, || async {
        client
            .database(&ns.db)
            .list_collections()
            .filter(doc! { "name": &ns.coll })
            .await?
            .with_type::<Document>()
            .try_collect()
            .await
    })
    .await
    .map_err(|e| {
        Failure::runtime(format!("cannot look up {ns} on the source"))
            .cause(e)
            .hint(RESUMES)
    })?;
    Ok(specs.first().map(uuid_of))
}

/// A `listCollections` entry's `info.uuid`.
pub fn uuid_of(spec: &Document) -> Option<Bson> {
    spec.get_document("info")
        .ok()
        .and_then(|info| info.get("uuid"))
        .cloned()
}

/// The first `renameCollection` of `from` after `after` in the source oplog: its target and
/// position.
async fn next_rename(
    source: &Client,
    from: &Namespace,
    after: Timestamp,
) -> Result<Option<(Namespace, Timestamp)>> {
    let filter = doc! {
        "ts": { "$gt": after },
        "op": "c",
        "o.renameCollection": from.to_string(),
    };
    let what = format!("renames of {from}");
    let Some((entry, ts)) = first_entry(source, filter, &what).await? else {
        return Ok(None);
    };
    let to = entry
        .get_document("o")
        .ok()
        .and_then(|o| o.get_str("to").ok())
        .and_then(|to| Namespace::parse(to).ok())
        .ok_or_else(|| {
            Failure::runtime(format!(
                "the source oplog holds a malformed renameCollection of {from}"
            ))
        })?;
    Ok(Some((to, ts)))
}

/// The first source oplog entry that matches `filter`, and its position; `what` names what is
/// looked for, for the messages.
async fn first_entry(
    source: &Client,
    filter: Document,
    what: &str,
) -> Result<Option<(RawDocumentBuf, Timestamp)>> {
    let oplog = source
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");
    let searching = format!("searching the source oplog for {what}");
    let found = crate::retry::transient(&searching, || async {
        oplog
            .find_one(filter.clone())
            .sort(doc! { "$natural": 1 })
            .await
    })
    .await
    .map_err(|e| {
        Failure::runtime(format!("cannot search the source oplog for {what}"))
            .cause(e)
            .hint(RESUMES)
    })?;
    let Some(entry) = found else {
        return Ok(None);
    };
    match entry.get("ts") {
        Ok(Some(RawBsonRef::Timestamp(ts))) => Ok(Some((entry, ts))),
        _ => Err(Failure::runtime(format!(
            "the source oplog holds an entry without a timestamp among the {what}"
        ))),
    }
}

/// Removes every document of `ns` on the destination, before it is copied again whole.
pub async fn empty(destination: &Client, ns: &Namespace) -> Result<()> {
    let collection = destination
        .database(&ns.db)
        .collection::<Document>(&ns.coll);
    crate::retry::transient(&format!("emptying {ns} on the destination"), || async {
        collection.delete_many(doc! {}).await
    })
    .await
    .map(|_| ())
    .map_err(|e| {
        Failure::runtime(format!("cannot empty {ns} on the destination"))
            .cause(e)
            .hint(
                "check that the destination user may delete documents there (readWriteAnyDatabase)",
            )
    })
}

/// The first `renameCollection` in the source oplog after `after` from or to a namespace of
/// `plan`: its source and target.
pub async fn renamed_since(
    source: &Client,
    after: Timestamp,
    plan: &[SourceCollection],
) -> Result<Option<(Namespace, Namespace)>> {
    let names: Vec<String> = plan.iter().map(|c| c.ns.to_string()).collect();
    let filter = doc! {
        "ts": { "$gt": after },
        "op": "c",
        "$or": [
            { "o.renameCollection": { "$in": &names } },
            { "o.to": { "$in": &names } },
        ],
    };
    let Some((entry, _)) = first_entry(source, filter, "renames since the starting point").await?
    else {
        return Ok(None);
    };
    let field = |name| {
        entry
            .get_document("o")
            .ok()
            .and_then(|o| o.get_str(name).ok())
            .and_then(|ns| Namespace::parse(ns).ok())
    };
    match (field("renameCollection"), field("to")) {
        (Some(from), Some(to)) => Ok(Some((from, to))),
        _ => Err(Failure::runtime(
            "the source oplog holds a malformed renameCollection entry",
        )),
    }
}
