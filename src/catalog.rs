//! What the source holds and what of it takes part: databases, collections, views, sizes.
//!
//! The plan is ordered largest first, because mongomirror copies the biggest collections first
//! so that one large collection does not hold up the end of the copy.

use std::future::IntoFuture;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Client;

use crate::cli::{Namespace, NamespaceFilter};
use crate::error::{Failure, Result};

/// One source collection or view that takes part in the migration.
#[derive(Debug, Clone)]
pub struct SourceCollection {
    /// Its namespace.
    pub ns: Namespace,
    /// `collection`, `view` or `timeseries`, as `listCollections` says.
    pub kind: String,
    /// The `listCollections` entry, options included.
    pub spec: Document,
    /// Document count estimate (0 for views).
    pub documents: u64,
    /// Data size in bytes from collStats (0 when unknown or skipped).
    pub bytes: u64,
}

impl SourceCollection {
    /// The `listCollections` options (empty when there are none).
    pub fn options(&self) -> Document {
        self.spec
            .get_document("options")
            .cloned()
            .unwrap_or_default()
    }

    /// Whether this is a capped collection, whose insertion order is its natural order.
    pub fn is_capped(&self) -> bool {
        self.spec
            .get_document("options")
            .is_ok_and(|o| o.get_bool("capped").unwrap_or(false))
    }

    /// Whether the collection is clustered on `_id` (it has no separate `_id` index).
    pub fn is_clustered(&self) -> bool {
        self.spec
            .get_document("options")
            .is_ok_and(|o| o.contains_key("clusteredIndex"))
    }

    /// Whether the collection has an ordinary `_id` index, which `_id` range reads need.
    pub fn has_id_index(&self) -> bool {
        self.spec.contains_key("idIndex")
    }
}

/// Lists every collection and view the filter wants, largest first.
///
/// `coll_stats_threshold` is mongomirror's `--collStatsThreshold`: sizes are read with
/// `collStats` unless there are more collections than the threshold (-1: always, 0: never).
pub async fn survey(
    client: &Client,
    filter: &NamespaceFilter,
    coll_stats_threshold: i64,
) -> Result<Vec<SourceCollection>> {
    let mut out = list(client, filter).await?;
    let sizes_wanted = match coll_stats_threshold {
        -1 => true,
        0 => false,
        n => out.len() as i64 <= n,
    };
    for c in out.iter_mut().filter(|c| c.kind == "collection") {
        let db = client.database(&c.ns.db);
        let coll = db.collection::<Document>(&c.ns.coll);
        c.documents = crate::retry::transient(&format!("counting {}", c.ns), || {
            coll.estimated_document_count().into_future()
        })
        .await
        .map_err(read_failed(format!("cannot count {}", c.ns)))?;
        if sizes_wanted {
            // collStats is deprecated on 6.2+ but still answers; a failure only costs ordering.
            if let Ok(stats) = db.run_command(doc! { "collStats": &c.ns.coll }).await {
                c.bytes = number(&stats, "size");
            }
        }
    }
    out.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.documents.cmp(&a.documents))
            .then(a.ns.cmp(&b.ns))
    });
    Ok(out)
}

fn read_failed(what: String) -> impl FnOnce(mongodb::error::Error) -> Failure {
    move |e| Failure::runtime(what).cause(e)
}

/// Lists every collection and view the filter wants, by namespace, without counts or sizes.
pub async fn list(client: &Client, filter: &NamespaceFilter) -> Result<Vec<SourceCollection>> {
    let mut out = Vec::new();
    let dbs = crate::retry::transient("listing the databases", || {
        client.list_database_names().into_future()
    })
    .await
    .map_err(read_failed("cannot list the databases".into()))?;
    for db_name in dbs.into_iter().filter(|d| filter.wants_db(d)) {
        let db = client.database(&db_name);
        let listing = format!("listing the collections of {db_name}");
        let specs: Vec<Document> = crate::retry::transient(&listing, || async {
            db.list_collections()
                .await?
                .with_type::<Document>()
                .try_collect()
                .await
        })
        .await
        .map_err(read_failed(format!(
            "cannot list the collections of {db_name}"
        )))?;
        for spec in specs {
            let Ok(name) = spec.get_str("name") else {
                continue;
            };
            let ns = Namespace::new(db_name.clone(), name);
            if (name.starts_with("system.") && name != "system.js") || !filter.wants(&ns) {
                continue;
            }
            // mongod says `type: "timeseries"`; some servers only carry `options.timeseries`.
            let timeseries = spec
                .get_document("options")
                .is_ok_and(|o| o.contains_key("timeseries"));
            let kind = match spec.get_str("type").unwrap_or("collection") {
                "collection" if timeseries => "timeseries",
                other => other,
            }
            .to_string();
            out.push(SourceCollection {
                ns,
                kind,
                spec,
                documents: 0,
                bytes: 0,
            });
        }
    }
    Ok(out)
}

fn number(doc: &Document, key: &str) -> u64 {
    match doc.get(key) {
        Some(mongodb::bson::Bson::Int32(n)) => (*n).max(0) as u64,
        Some(mongodb::bson::Bson::Int64(n)) => (*n).max(0) as u64,
        Some(mongodb::bson::Bson::Double(n)) if *n > 0.0 => *n as u64,
        _ => 0,
    }
}
