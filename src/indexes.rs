//! Index specs from the source, rebuilt on the destination after a collection's data is in.
//!
//! Building indexes after the copy is much faster than maintaining them during it. Each
//! collection gets one `createIndexes` with every spec the source lists, options kept as they
//! are except for keys that modern servers reject or ignore ([`OBSOLETE_OPTIONS`]). When that
//! command fails, each index is retried alone, as mongomirror does, so the failure names the
//! index at fault.

use std::future::IntoFuture;
use std::time::Instant;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::Client;
use tracing::{info, warn};

use crate::cli::Namespace;
use crate::copy::with_majority;
use crate::error::{Failure, Result};

/// Index spec keys that are dropped: `background` (every build is a foreground build since 4.2),
/// `ns` (no longer part of a spec) and `dropDups` (removed in 3.0).
pub const OBSOLETE_OPTIONS: &[&str] = &["background", "ns", "dropDups"];

/// The server's error code for a collection that does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// How the specs read from the source are changed before they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecRules {
    /// `--ttlWithoutExpiry`: TTL indexes are built without `expireAfterSeconds`, so that nothing
    /// expires on the destination before cutover (preflight prints the `collMod` that restores it).
    pub ttl_without_expiry: bool,
}

/// The index specs of a source collection to build on the destination: all but the `_id` index,
/// which every collection gets on creation (or which is the clustered index).
pub async fn source_specs(
    source: &Client,
    ns: &Namespace,
    rules: SpecRules,
) -> Result<Vec<Document>> {
    // Dropped on the source since the survey: the oplog stage replays the drop.
    Ok(list_indexes(source, ns, "source")
        .await?
        .into_iter()
        .filter_map(|spec| build_spec(spec, rules))
        .collect())
}

/// The index specs of a collection on one side; none if the collection does not exist.
pub async fn list_indexes(client: &Client, ns: &Namespace, side: &str) -> Result<Vec<Document>> {
    let listed: mongodb::error::Result<Vec<Document>> =
        crate::retry::transient(&format!("listing the indexes of {ns}"), || async {
            client
                .database(&ns.db)
                .run_cursor_command(doc! { "listIndexes": &ns.coll })
                .await?
                .try_collect()
                .await
        })
        .await;
    match listed {
        Ok(specs) => Ok(specs),
        Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND) => {
            Ok(Vec::new())
        }
        Err(e) => {
            Err(Failure::runtime(format!("cannot list the indexes of {ns} on the {side}")).cause(e))
        }
    }
}

/// The spec to send to `createIndexes` for a source spec, or `None` for the `_id` or clustered
/// index. The oplog stage applies the same rules to replayed index builds.
pub fn build_spec(mut spec: Document, rules: SpecRules) -> Option<Document> {
    if spec.get_str("name") == Ok("_id_") || spec.get_bool("clustered").unwrap_or(false) {
        return None;
    }
    for key in OBSOLETE_OPTIONS {
        spec.remove(*key);
    }
    if rules.ttl_without_expiry {
        spec.remove("expireAfterSeconds");
    }
    Some(spec)
}

/// What [`restore`] built.
#[derive(Debug, Default)]
pub struct Restored {
    /// Indexes built.
    pub built: usize,
    /// The names of the unique ones among them, built without `unique` for now.
    pub relaxed: Vec<String>,
}

/// Builds `specs` (a source collection's, from [`source_specs`]) on the destination collection
/// `ns` with one `createIndexes`.
///
/// Unique indexes are built without `unique`: the copy is fuzzy, so until oplog sync has caught
/// up with it, two documents may hold one unique value for a while ([`crate::oplog::catchup`]
/// converts them afterwards).
pub async fn restore(
    destination: &Client,
    ns: &Namespace,
    mut specs: Vec<Document>,
) -> Result<Restored> {
    if specs.is_empty() {
        return Ok(Restored::default());
    }
    // A unique index the destination already has (a collection kept by the restart rules)
    // stays as it is: replay then meets its duplicates as conflicts instead. One it has without
    // `unique` (built by this migration before a restart) is still to be converted.
    let existing = list_indexes(destination, ns, "destination").await?;
    let already_unique = |spec: &Document| {
        existing.iter().any(|e| {
            e.get_str("name").is_ok()
                && e.get_str("name") == spec.get_str("name")
                && e.get_bool("unique").unwrap_or(false)
        })
    };
    let relaxed: Vec<String> = specs
        .iter_mut()
        .filter(|spec| !already_unique(spec))
        .filter_map(|spec| {
            crate::oplog::catchup::relax(spec)
                .then(|| spec.get_str("name").unwrap_or_default().to_string())
        })
        .collect();
    let count = specs.len();
    let restored = Restored {
        built: count,
        relaxed,
    };
    let db = destination.database(&ns.db);
    let started = Instant::now();
    info!(
        "createIndexes for collection: `{ns}`, building {} indexes",
        specs.len()
    );
    let command = |indexes: Vec<Document>| {
        with_majority(doc! { "createIndexes": &ns.coll, "indexes": indexes })
    };
    let build = |specs: Vec<Document>| {
        let db = db.clone();
        let body = command(specs);
        async move {
            crate::retry::transient(&format!("building the indexes of {ns}"), || {
                db.run_command(body.clone()).into_future()
            })
            .await
        }
    };
    let Err(error) = build(specs.clone()).await else {
        info!(
            "createIndexes for collection: `{ns}`, finished in {:.3}s",
            started.elapsed().as_secs_f64()
        );
        return Ok(restored);
    };
    warn!(
        "createIndexes for collection `{ns}` failed: {}. retrying each index build individually",
        crate::error::brief(&error)
    );
    let mut failure: Option<Failure> = None;
    for spec in specs {
        let name = spec.get_str("name").unwrap_or("?").to_string();
        if let Err(e) = build(vec![spec]).await {
            let f = failure.take().unwrap_or_else(|| {
                Failure::runtime(format!("cannot build the indexes of {ns} on the destination"))
                    .hint("fix or drop the failing indexes on the source, or pass --noIndexRestore and build them by hand")
            });
            failure = Some(f.cause(format!("index {name}: {e}")));
        }
    }
    match failure {
        Some(f) => Err(f),
        None => {
            info!(
                "createIndexes for collection: `{ns}`, finished in {:.3}s",
                started.elapsed().as_secs_f64()
            );
            Ok(restored)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_spec_keeps_options_and_drops_obsolete_keys() {
        let spec = doc! {
            "v": 2, "key": { "loc": "2dsphere" }, "name": "loc_2dsphere", "ns": "a.b",
            "background": true, "2dsphereIndexVersion": 3, "sparse": true,
            "partialFilterExpression": { "x": { "$gt": 1 } }, "collation": { "locale": "fr" },
            "hidden": true,
        };
        let cleaned = build_spec(spec, SpecRules::default()).unwrap();
        assert_eq!(
            cleaned,
            doc! {
                "v": 2, "key": { "loc": "2dsphere" }, "name": "loc_2dsphere",
                "2dsphereIndexVersion": 3, "sparse": true,
                "partialFilterExpression": { "x": { "$gt": 1 } }, "collation": { "locale": "fr" },
                "hidden": true,
            }
        );
        let rules = SpecRules::default();
        assert!(build_spec(doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }, rules).is_none());
        let clustered = doc! { "key": { "_id": 1 }, "name": "c", "clustered": true };
        assert!(build_spec(clustered, rules).is_none());
    }

    #[test]
    fn ttl_without_expiry_drops_only_the_expiry() {
        let ttl = doc! { "v": 2, "key": { "at": 1 }, "name": "at_1", "expireAfterSeconds": 60 };
        let kept = build_spec(ttl.clone(), SpecRules::default()).unwrap();
        assert_eq!(kept, ttl);
        let rules = SpecRules {
            ttl_without_expiry: true,
        };
        let built = build_spec(ttl, rules).unwrap();
        assert_eq!(built, doc! { "v": 2, "key": { "at": 1 }, "name": "at_1" });
    }
}
