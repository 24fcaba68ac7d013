//! Catching up with a fuzzy copy.
//!
//! The copy reads each document at some moment after the starting point, so until replay has
//! passed the newest source entry of the moment the copy ended ([`CatchUp::until`]), it can meet
//! documents in a later state than its own. Two documents may then hold one unique value at once
//! on the destination: one copied after the value moved to it, the other not yet updated by
//! replay. mongod's own initial sync tolerates such transient duplicates; ordinary commands
//! cannot, so while catching up:
//!
//! - **Unique indexes are not unique yet.** The copy builds them without `unique`, and so does a
//!   replayed index build; a replayed `collMod` that makes an index unique is held back. Each is
//!   listed in [`CatchUp::relaxed_indexes`] (saved in the bookmark) and converted when catch-up
//!   ends: `collMod` with `prepareUnique`, then `unique` (6.0+), or a rebuild on older servers.
//!   A conversion that fails means the destination differs from the source: the run fails.
//! - **A write that still meets a duplicate key** (an index the destination had already, or an
//!   `_id` under a collation) is not lost: its document is recorded ([`Conflicts`]), and once
//!   replay has passed `until` it is read again from the source and written, or deleted if the
//!   source no longer has it. That read is a new fuzzy moment, so `until` moves to the newest
//!   source entry after it, and catch-up goes on until a pass ends without conflicts. While
//!   documents wait, the bookmark stays before the batch that met the first of them, so a
//!   restart meets them again.
//!
//! After catch-up, a duplicate key is a real divergence and stops the run.

use std::collections::HashMap;
use std::future::IntoFuture;

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tracing::{info, warn};

use super::dest;
use super::entry::OpTime;
use super::error::ApplyError;
use crate::bookmark::{CatchUp, IndexRef};
use crate::cli::Namespace;
use crate::order as id;

/// Bytes of recorded `_id`s kept while catching up; a workload that exceeds it stops the run.
pub const MAX_CONFLICT_BYTES: usize = 64 * 1024 * 1024;

/// Duplicate key error codes.
const DUPLICATE_KEY: &[i32] = &[11000, 11001];
/// `ImmutableField`: a replacement would change the stored `_id`'s byte form.
const IMMUTABLE_FIELD: i32 = 66;

/// A write that met a duplicate key: its document, and the index that refused it.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The collection.
    pub ns: Namespace,
    /// The document's `_id`, as the entry names it.
    pub id: Bson,
    /// The index that refused the write, from the server's message.
    pub index: String,
}

impl Conflict {
    /// A conflict from a duplicate-key write error (`E11000 ... index: <name> dup key: ...`).
    pub fn from_message(ns: &Namespace, id: Bson, message: &str) -> Conflict {
        let index = message
            .split_once("index: ")
            .map(|(_, rest)| rest.split(" dup key").next().unwrap_or(rest).trim())
            .filter(|name| !name.is_empty())
            .unwrap_or("an unnamed index")
            .to_string();
        Conflict {
            ns: ns.clone(),
            id,
            index,
        }
    }
}

/// The documents to read again from the source, one per `_id` (under mongod's equality).
#[derive(Debug, Default)]
pub struct Conflicts {
    docs: HashMap<(Namespace, Vec<u8>), Conflict>,
    bytes: usize,
}

impl Conflicts {
    /// How many documents wait.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// One of the waiting conflicts.
    pub fn first(&self) -> Option<&Conflict> {
        self.docs.values().next()
    }

    /// Records a conflict; fails once the recorded `_id`s exceed [`MAX_CONFLICT_BYTES`].
    pub fn add(&mut self, conflict: Conflict) -> Result<(), ApplyError> {
        let raw =
            RawDocumentBuf::from_document(&doc! { "_id": conflict.id.clone() }).map_err(|e| {
                ApplyError::Document {
                    ns: conflict.ns.to_string(),
                    id: conflict.id.to_string(),
                    message: e.to_string(),
                }
            })?;
        let key = raw
            .get("_id")
            .ok()
            .flatten()
            .map(id::key)
            .unwrap_or_default();
        let size = key.len() + conflict.ns.to_string().len();
        let slot = (conflict.ns.clone(), key);
        if self.docs.contains_key(&slot) {
            return Ok(());
        }
        if self.bytes + size > MAX_CONFLICT_BYTES {
            return Err(ApplyError::TooManyConflicts {
                limit: MAX_CONFLICT_BYTES,
            });
        }
        self.bytes += size;
        self.docs.insert(slot, conflict);
        Ok(())
    }
}

/// Catch-up in progress: the saved part ([`CatchUp`]) and what replay keeps in memory.
pub struct CatchingUp {
    /// What the bookmark holds.
    pub mark: CatchUp,
    /// Where conflicting documents are read again.
    source: Client,
    /// Whether the destination converts indexes with `collMod` (6.0+), or rebuilds them.
    collmod: bool,
    /// Documents to read again.
    pub conflicts: Conflicts,
    /// The checkpoint before the batch that met the first waiting conflict: the bookmark stays
    /// at or before it while documents wait (`Some(None)`: no safe position at all).
    pub floor: Option<Option<OpTime>>,
}

impl CatchingUp {
    /// Catch-up from a saved (or fresh) mark; `destination_version` decides how indexes are
    /// converted.
    pub fn new(mark: CatchUp, source: Client, destination_version: &str) -> Self {
        let major = destination_version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        CatchingUp {
            mark,
            source,
            collmod: major >= 6,
            conflicts: Conflicts::default(),
            floor: None,
        }
    }

    /// Reads every waiting document again from the source and writes it to the destination
    /// (or deletes it there); documents that still meet a duplicate key wait for the next
    /// pass. Then `until` moves to the newest source entry: the documents were read after it
    /// may have changed again.
    pub async fn recheck(&mut self, destination: &Client) -> Result<(), ApplyError> {
        let waiting = std::mem::take(&mut self.conflicts);
        let count = waiting.len();
        for (_, conflict) in waiting.docs {
            let coll = self
                .source
                .database(&conflict.ns.db)
                .collection::<Document>(&conflict.ns.coll);
            let filter = doc! { "_id": conflict.id.clone() };
            let what = format!("reading {} on the source", conflict.ns);
            let current =
                crate::retry::transient(&what, || coll.find_one(filter.clone()).into_future())
                    .await
                    .map_err(|e| ApplyError::Source {
                        what: "read of a conflicting document".into(),
                        ns: conflict.ns.to_string(),
                        source: Box::new(e),
                    })?;
            if let Some(still) = write_current(destination, &conflict, current).await? {
                self.conflicts.add(still)?;
            }
        }
        self.mark.until = crate::oplog::newest_timestamp(&self.source)
            .await
            .map_err(|f| ApplyError::Checkpoint(Box::new(f)))?
            .into();
        info!(
            "catching up with the copy: read {count} documents that met a duplicate key again from the source; {} still do, and replay continues to timestamp {}:{} before they are checked again",
            self.conflicts.len(),
            self.mark.until.t,
            self.mark.until.i
        );
        if self.conflicts.is_empty() {
            self.floor = None;
        }
        Ok(())
    }

    /// Makes every relaxed index unique. A conversion that meets duplicates means the
    /// destination differs from the source.
    pub async fn convert_indexes(&self, destination: &Client) -> Result<(), ApplyError> {
        for index in &self.mark.relaxed_indexes {
            let ns = Namespace::parse(&index.ns).map_err(|e| ApplyError::Document {
                ns: index.ns.clone(),
                id: String::new(),
                message: e,
            })?;
            let Some(spec) = index_spec(destination, &ns, &index.name).await? else {
                continue; // dropped by a later entry
            };
            if spec.get_bool("unique").unwrap_or(false) {
                continue;
            }
            info!(namespace = %ns, "{ns}: making index {} unique again now that oplog sync has caught up with the copy", index.name);
            let steps = if self.collmod {
                vec![
                    doc! { "collMod": &ns.coll, "index": { "name": &index.name, "prepareUnique": true } },
                    doc! { "collMod": &ns.coll, "index": { "name": &index.name, "unique": true } },
                ]
            } else {
                let mut unique = spec.clone();
                unique.remove("v");
                unique.remove("ns");
                unique.insert("unique", true);
                vec![
                    doc! { "dropIndexes": &ns.coll, "index": &index.name },
                    doc! { "createIndexes": &ns.coll, "indexes": [unique] },
                ]
            };
            for step in steps {
                run(destination, &ns, step)
                    .await
                    .map_err(|e| ApplyError::UniqueIndex {
                        ns: ns.to_string(),
                        index: index.name.clone(),
                        source: Box::new(e),
                    })?;
            }
        }
        Ok(())
    }
}

/// Writes the source's current version of a conflicting document; returns the conflict again
/// if the destination still refuses it with a duplicate key.
async fn write_current(
    destination: &Client,
    conflict: &Conflict,
    current: Option<Document>,
) -> Result<Option<Conflict>, ApplyError> {
    let ns = &conflict.ns;
    let filter = doc! { "_id": conflict.id.clone() };
    let Some(current) = current else {
        let delete = doc! { "delete": &ns.coll, "deletes": [{ "q": filter, "limit": 1 }] };
        return write(destination, ns, delete, conflict).await;
    };
    let u = RawDocumentBuf::from_document(&current)
        .map(dest::replacement)
        .and_then(Bson::try_from)
        .map_err(|e| ApplyError::Document {
            ns: ns.to_string(),
            id: conflict.id.to_string(),
            message: e.to_string(),
        })?;
    let replace = doc! {
        "update": &ns.coll,
        "updates": [{ "q": filter.clone(), "u": u, "upsert": true }],
    };
    match write(destination, ns, replace, conflict).await {
        Err(ApplyError::Refused { code, .. }) if code == IMMUTABLE_FIELD => {
            // The destination holds another byte form of the _id: write the source's.
            let delete = doc! { "delete": &ns.coll, "deletes": [{ "q": filter, "limit": 1 }] };
            if let Some(again) = write(destination, ns, delete, conflict).await? {
                return Ok(Some(again));
            }
            let insert = doc! { "insert": &ns.coll, "documents": [current] };
            write(destination, ns, insert, conflict).await
        }
        other => other,
    }
}

/// One write command; a duplicate key gives the conflict back, other write errors fail.
async fn write(
    destination: &Client,
    ns: &Namespace,
    command: Document,
    conflict: &Conflict,
) -> Result<Option<Conflict>, ApplyError> {
    let what = command.keys().next().cloned().unwrap_or_default();
    let mut raw = RawDocumentBuf::from_document(&command).map_err(|e| ApplyError::Document {
        ns: ns.to_string(),
        id: conflict.id.to_string(),
        message: e.to_string(),
    })?;
    raw.append("bypassDocumentValidation", true);
    raw.append("writeConcern", dest::majority());
    let reply = dest::run(destination, &ns.db, raw, &format!("{what} of {ns}"))
        .await
        .map_err(|e| ApplyError::Destination {
            what: what.clone(),
            ns: ns.to_string(),
            source: Box::new(e),
        })?;
    match dest::write_reply(&reply, &what, &ns.to_string())? {
        (_, None) => Ok(None),
        (_, Some(e)) if DUPLICATE_KEY.contains(&e.code) => {
            warn!(
                "catching up with the copy: {ns} _id {} still meets a duplicate key ({})",
                conflict.id, e.message
            );
            Ok(Some(Conflict::from_message(
                ns,
                conflict.id.clone(),
                &e.message,
            )))
        }
        (_, Some(e)) => Err(ApplyError::Refused {
            what,
            ns: ns.to_string(),
            code: e.code,
            message: e.message,
        }),
    }
}

/// The destination's spec of one index, if it exists.
async fn index_spec(
    destination: &Client,
    ns: &Namespace,
    name: &str,
) -> Result<Option<Document>, ApplyError> {
    let listed = run(destination, ns, doc! { "listIndexes": &ns.coll }).await;
    let reply = match listed {
        Ok(reply) => reply,
        Err(e) if crate::error::server_code(&e) == Some(26) => return Ok(None),
        Err(e) => {
            return Err(ApplyError::Destination {
                what: "listIndexes".into(),
                ns: ns.to_string(),
                source: Box::new(e),
            })
        }
    };
    Ok(reply
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get_array("firstBatch").ok())
        .into_iter()
        .flatten()
        .filter_map(Bson::as_document)
        .find(|spec| spec.get_str("name") == Ok(name))
        .cloned())
}

async fn run(
    destination: &Client,
    ns: &Namespace,
    command: Document,
) -> Result<Document, mongodb::error::Error> {
    let what = command.keys().next().cloned().unwrap_or_default();
    let mut raw = RawDocumentBuf::from_document(&command)
        .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
    if what != "listIndexes" {
        raw.append("writeConcern", dest::majority());
    }
    dest::run(destination, &ns.db, raw, &format!("{what} on {ns}")).await
}

/// Takes a unique index spec apart for catch-up: without `unique` (and `prepareUnique`). Returns
/// whether it was unique, in which case the caller lists it as relaxed.
pub fn relax(spec: &mut Document) -> bool {
    let unique = spec.get_bool("unique").unwrap_or(false);
    if unique {
        spec.remove("unique");
        spec.remove("prepareUnique");
    }
    unique
}

/// The relaxed-index entry for an index of `ns`.
pub fn index_ref(ns: &Namespace, name: &str) -> IndexRef {
    IndexRef {
        ns: ns.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_their_index_and_count_each_document_once() {
        let ns = Namespace::new("app", "users");
        let c = Conflict::from_message(
            &ns,
            Bson::Int32(1),
            "E11000 duplicate key error collection: app.users index: email_1 dup key: { email: \"a\" }",
        );
        assert_eq!(c.index, "email_1");
        let c2 = Conflict::from_message(&ns, Bson::Int32(1), "duplicate key");
        assert_eq!(c2.index, "an unnamed index");
        let mut set = Conflicts::default();
        set.add(c).unwrap();
        set.add(c2).unwrap();
        set.add(Conflict::from_message(&ns, Bson::Double(1.0), ""))
            .unwrap();
        assert_eq!(set.len(), 1, "one _id, three forms");
        set.add(Conflict::from_message(&ns, Bson::Int32(2), ""))
            .unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn relaxing_drops_only_uniqueness() {
        let mut spec = doc! { "key": { "e": 1 }, "name": "e_1", "unique": true, "sparse": true };
        assert!(relax(&mut spec));
        assert_eq!(
            spec,
            doc! { "key": { "e": 1 }, "name": "e_1", "sparse": true }
        );
        let mut plain = doc! { "key": { "e": 1 }, "name": "e_1" };
        assert!(!relax(&mut plain));
    }
}
