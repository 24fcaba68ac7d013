//! Namespace-by-namespace comparison of two deployments (every database but
//! admin, local and config): databases, collection and view metadata, index
//! specs and, byte for byte, documents.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document, RawDocumentBuf};
use mongodb::{Client, Collection, Database};

/// Characters of a document shown in a difference report.
const SHOWN_CHARS: usize = 400;
/// Differences listed in a panic message.
const SHOWN_DIFFERENCES: usize = 50;

/// One way in which the destination differs from the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// `db` or `db.collection`.
    pub namespace: String,
    /// What differs.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.namespace, self.detail)
    }
}

/// Every difference between the user data of `source` and `destination`.
///
/// Collection entries of `listCollections` are compared whole (ignoring
/// `info.uuid` and `idIndex.ns`; top-level field order of the entry, its
/// `options` and index specs is ignored, nested order is not); index specs
/// by name (ignoring `ns` and `background`); documents in `_id` order,
/// streamed in lockstep, reporting the first mismatch and both counts.
pub async fn compare_deployments(
    source: &Client,
    destination: &Client,
) -> mongodb::error::Result<Vec<Difference>> {
    let mut differences = Vec::new();
    let (src_dbs, dst_dbs) = (
        user_databases(source).await?,
        user_databases(destination).await?,
    );
    report_missing(&mut differences, "", "database", &src_dbs, &dst_dbs);
    for db in src_dbs.intersection(&dst_dbs) {
        compare_database(
            &source.database(db),
            &destination.database(db),
            &mut differences,
        )
        .await?;
    }
    Ok(differences)
}

/// Panics, listing the differences, unless the deployments hold the same
/// user data (see [`compare_deployments`]).
pub async fn assert_same_deployments(source: &Client, destination: &Client) {
    let differences = compare_deployments(source, destination)
        .await
        .unwrap_or_else(|e| panic!("comparing deployments failed: {e}"));
    if !differences.is_empty() {
        panic!("{}", report(&differences));
    }
}

/// Polls [`compare_deployments`] until the deployments are the same;
/// panics with the last differences after `timeout`. For awaiting a
/// mirror that is still applying changes.
pub async fn await_same_deployments(source: &Client, destination: &Client, timeout: Duration) {
    let mut last = String::new();
    let same =
        super::wait_until(
            timeout,
            Duration::from_millis(250),
            async || match compare_deployments(source, destination).await {
                Ok(differences) if differences.is_empty() => true,
                Ok(differences) => {
                    last = report(&differences);
                    false
                }
                Err(e) => {
                    last = format!("comparing deployments failed: {e}");
                    false
                }
            },
        )
        .await;
    assert!(same, "deployments still differ after {timeout:?}: {last}");
}

fn report(differences: &[Difference]) -> String {
    let mut text = format!(
        "{} difference(s) between source and destination:",
        differences.len()
    );
    for difference in differences.iter().take(SHOWN_DIFFERENCES) {
        text.push_str(&format!("\n  {difference}"));
    }
    text
}

async fn user_databases(client: &Client) -> mongodb::error::Result<BTreeSet<String>> {
    let names = client.list_database_names().await?;
    Ok(names
        .into_iter()
        .filter(|n| !super::is_system_database(n))
        .collect())
}

async fn compare_database(
    source: &Database,
    destination: &Database,
    differences: &mut Vec<Difference>,
) -> mongodb::error::Result<()> {
    let (src, dst) = (collections(source).await?, collections(destination).await?);
    let db = source.name();
    report_missing(
        differences,
        db,
        "collection",
        &src.keys().collect(),
        &dst.keys().collect(),
    );
    for (name, src_entry) in &src {
        let Some(dst_entry) = dst.get(name) else {
            continue;
        };
        let namespace = format!("{db}.{name}");
        let mut note = |detail: String| {
            differences.push(Difference {
                namespace: namespace.clone(),
                detail,
            })
        };
        if !same_bytes(src_entry, dst_entry) {
            note(format!(
                "listCollections entries differ:\n    source:      {}\n    destination: {}",
                render(src_entry),
                render(dst_entry)
            ));
        }
        if src_entry.get_str("type") != Ok("collection")
            || dst_entry.get_str("type") != Ok("collection")
        {
            continue;
        }
        let (src_coll, dst_coll) = (source.collection(name), destination.collection(name));
        for detail in compare_indexes(source, destination, name).await? {
            note(detail);
        }
        if let Some(detail) = compare_documents(&src_coll, &dst_coll).await? {
            note(detail);
        }
    }
    Ok(())
}

/// Normalized `listCollections` entries by collection name.
async fn collections(db: &Database) -> mongodb::error::Result<BTreeMap<String, Document>> {
    let mut cursor = db.run_cursor_command(doc! { "listCollections": 1 }).await?;
    let mut entries = BTreeMap::new();
    while let Some(mut entry) = cursor.try_next().await? {
        let name = entry.get_str("name").unwrap_or_default().to_string();
        if let Ok(info) = entry.get_document_mut("info") {
            info.remove("uuid");
        }
        if let Some(Bson::Document(options)) = entry.remove("options") {
            entry.insert("options", sorted(options));
        }
        if let Some(Bson::Document(id_index)) = entry.remove("idIndex") {
            entry.insert("idIndex", normalize_spec(id_index));
        }
        entries.insert(name, sorted(entry));
    }
    Ok(entries)
}

/// Differences between the index sets of collection `name`.
async fn compare_indexes(
    source: &Database,
    destination: &Database,
    name: &str,
) -> mongodb::error::Result<Vec<String>> {
    let (src, dst) = (
        indexes(source, name).await?,
        indexes(destination, name).await?,
    );
    let mut details = Vec::new();
    for (index, spec) in &src {
        match dst.get(index) {
            None => details.push(format!(
                "index {index} missing on destination: {}",
                render(spec)
            )),
            Some(other) if !same_bytes(spec, other) => details.push(format!(
                "index {index} differs:\n    source:      {}\n    destination: {}",
                render(spec),
                render(other)
            )),
            Some(_) => {}
        }
    }
    for (index, spec) in dst.iter().filter(|(index, _)| !src.contains_key(*index)) {
        details.push(format!(
            "index {index} only on destination: {}",
            render(spec)
        ));
    }
    Ok(details)
}

/// Normalized index specs by index name.
async fn indexes(
    db: &Database,
    collection: &str,
) -> mongodb::error::Result<BTreeMap<String, Document>> {
    let mut cursor = db
        .run_cursor_command(doc! { "listIndexes": collection })
        .await?;
    let mut specs = BTreeMap::new();
    while let Some(spec) = cursor.try_next().await? {
        let name = spec.get_str("name").unwrap_or_default().to_string();
        specs.insert(name, normalize_spec(spec));
    }
    Ok(specs)
}

/// Streams both collections in `_id` order and reports the first mismatch.
async fn compare_documents(
    source: &Collection<RawDocumentBuf>,
    destination: &Collection<RawDocumentBuf>,
) -> mongodb::error::Result<Option<String>> {
    let mut src = source.find(doc! {}).sort(doc! { "_id": 1 }).await?;
    let mut dst = destination.find(doc! {}).sort(doc! { "_id": 1 }).await?;
    let (mut src_count, mut dst_count) = (0u64, 0u64);
    let mut first_mismatch = None;
    loop {
        let (a, b) = futures::try_join!(src.try_next(), dst.try_next())?;
        if a.is_none() && b.is_none() {
            break;
        }
        src_count += u64::from(a.is_some());
        dst_count += u64::from(b.is_some());
        if first_mismatch.is_none()
            && a.as_ref().map(|d| d.as_bytes()) != b.as_ref().map(|d| d.as_bytes())
        {
            first_mismatch = Some(describe_mismatch(a.as_ref(), b.as_ref()));
        }
    }
    Ok(first_mismatch.map(|mismatch| {
        format!("documents differ ({src_count} on source, {dst_count} on destination); first difference: {mismatch}")
    }))
}

fn describe_mismatch(
    source: Option<&RawDocumentBuf>,
    destination: Option<&RawDocumentBuf>,
) -> String {
    let id = |d: Option<&RawDocumentBuf>| {
        d.map(|d| match d.get("_id") {
            Ok(Some(id)) => Bson::try_from(id.to_raw_bson())
                .map(|b| b.into_canonical_extjson().to_string())
                .unwrap_or_else(|e| format!("<unreadable _id: {e}>")),
            _ => "<no _id>".to_string(),
        })
    };
    let full = |d: Option<&RawDocumentBuf>| match d.map(|d| d.to_document()) {
        Some(Ok(doc)) => render(&doc),
        Some(Err(e)) => format!("<invalid BSON: {e}>"),
        None => "<end of collection>".to_string(),
    };
    match (id(source), id(destination)) {
        (Some(a), Some(b)) if a == b => format!(
            "_id {a}:\n    source:      {}\n    destination: {}",
            full(source),
            full(destination)
        ),
        (a, b) => format!(
            "source _id {} vs destination _id {}",
            a.unwrap_or_else(|| "<none left>".into()),
            b.unwrap_or_else(|| "<none left>".into())
        ),
    }
}

/// Reports names present on only one side.
fn report_missing<T: Ord + fmt::Display>(
    differences: &mut Vec<Difference>,
    db: &str,
    kind: &str,
    source: &BTreeSet<T>,
    destination: &BTreeSet<T>,
) {
    let namespace = |name: &T| match db {
        "" => name.to_string(),
        db => format!("{db}.{name}"),
    };
    for name in source.difference(destination) {
        differences.push(Difference {
            namespace: namespace(name),
            detail: format!("{kind} missing on destination"),
        });
    }
    for name in destination.difference(source) {
        differences.push(Difference {
            namespace: namespace(name),
            detail: format!("{kind} only on destination"),
        });
    }
}

/// Drops the index-spec fields that legitimately differ between
/// deployments and sorts the top level. `prepareUnique: false` is what a
/// server may leave on an index that `collMod` converted to unique (the
/// migration converts the unique indexes it built relaxed): it means the
/// same as no `prepareUnique`.
fn normalize_spec(mut spec: Document) -> Document {
    spec.remove("ns");
    spec.remove("background");
    if spec.get_bool("prepareUnique") == Ok(false) {
        spec.remove("prepareUnique");
    }
    sorted(spec)
}

fn sorted(document: Document) -> Document {
    let mut fields: Vec<(String, Bson)> = document.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.into_iter().collect()
}

/// Exact comparison: same fields, same order, same BSON types.
fn same_bytes(a: &Document, b: &Document) -> bool {
    bson::to_vec(a).ok() == bson::to_vec(b).ok()
}

/// Canonical extended JSON (shows BSON types), truncated.
fn render(document: &Document) -> String {
    let json = Bson::Document(document.clone())
        .into_canonical_extjson()
        .to_string();
    match json.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &json[..cut]),
        None => json,
    }
}
