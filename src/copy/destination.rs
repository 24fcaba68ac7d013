//! The destination catalog: mongomirror's restart rules, then every collection and view created
//! with the options the source reports.
//!
//! An interrupted initial sync is never resumed. A namespace that would be copied and already
//! holds documents (or exists as a view) on the destination stops the run before anything is
//! written, unless `--drop` is given, and `--drop` drops exactly the namespaces that would be
//! copied. An existing *empty* collection is kept as it is, so a run that stopped while creating
//! the catalog can simply be started again.

use std::collections::{BTreeMap, HashSet};
use std::future::IntoFuture;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Client;
use tracing::info;

use super::with_majority;
use crate::catalog::SourceCollection;
use crate::cli::Namespace;
use crate::error::{ExitCode, Failure, Result};

/// The server's answer to a `create` of an existing namespace.
const NAMESPACE_EXISTS: i32 = 48;
/// How many conflicting namespaces the failure message names before summarizing the rest.
const CONFLICTS_NAMED: usize = 10;

/// What the destination already holds under a namespace that would be copied.
#[derive(Debug)]
struct Existing {
    ns: Namespace,
    /// `collection`, `view`, `timeseries`, as the destination's `listCollections` says.
    kind: String,
    /// Whether a collection holds at least one document.
    has_documents: bool,
}

impl Existing {
    fn blocks_copy(&self) -> bool {
        self.kind != "collection" || self.has_documents
    }

    fn describe(&self) -> String {
        if self.kind == "collection" {
            format!("{} holds documents", self.ns)
        } else {
            format!("{} exists as a {}", self.ns, self.kind)
        }
    }
}

/// Applies the restart rules; returns the empty collections that are kept and must not be
/// created again.
pub async fn prepare(
    destination: &Client,
    plan: &[SourceCollection],
    drop: bool,
    ours: &HashSet<Namespace>,
) -> Result<HashSet<Namespace>> {
    // What an interrupted catalog creation of this migration left holds no data yet (the copy
    // starts once the catalog is complete). Empty collections are kept as they are; views and
    // time-series collections, which would block the copy, are removed and created again.
    let (left, existing): (Vec<Existing>, Vec<Existing>) = existing(destination, plan)
        .await?
        .into_iter()
        .partition(|e| ours.contains(&e.ns) && e.blocks_copy());
    for e in &left {
        info!(
            "removing {} on the destination: the interrupted run created it, and it is created again",
            e.ns
        );
        drop_namespace(destination, &e.ns).await?;
    }
    if drop {
        for e in &existing {
            info!("dropping {} on the destination (--drop)", e.ns);
            drop_namespace(destination, &e.ns).await?;
        }
        return Ok(HashSet::new());
    }
    let conflicts: Vec<&Existing> = existing.iter().filter(|e| e.blocks_copy()).collect();
    if !conflicts.is_empty() {
        let mut names: Vec<String> = conflicts
            .iter()
            .take(CONFLICTS_NAMED)
            .map(|e| e.ns.to_string())
            .collect();
        if conflicts.len() > CONFLICTS_NAMED {
            names.push(format!("and {} more", conflicts.len() - CONFLICTS_NAMED));
        }
        let mut failure = Failure::new(
            ExitCode::Preflight,
            format!(
                "the destination already holds {} of the namespaces to copy: {}",
                conflicts.len(),
                names.join(", ")
            ),
        );
        for e in conflicts.iter().take(CONFLICTS_NAMED) {
            failure = failure.cause(e.describe());
        }
        return Err(failure.hint(
            "an interrupted initial sync is never resumed: pass --drop to drop these namespaces \
             on the destination first, or leave them out with --excludeNamespace",
        ));
    }
    let kept: HashSet<Namespace> = existing.into_iter().map(|e| e.ns).collect();
    for ns in &kept {
        info!(
            "{ns} already exists on the destination and is empty: keeping its options and indexes"
        );
    }
    Ok(kept)
}

/// The destination namespaces that the plan would copy into.
/// Drops one namespace on the destination, waiting out an outage.
async fn drop_namespace(destination: &Client, ns: &Namespace) -> Result<()> {
    let db = destination.database(&ns.db);
    crate::retry::transient(&format!("dropping {ns}"), || {
        db.run_command(with_majority(doc! { "drop": &ns.coll }))
            .into_future()
    })
    .await
    .map_err(|err| {
        Failure::runtime(format!("cannot drop {ns} on the destination"))
            .cause(err)
            .hint("the destination user needs the dropCollection privilege (the restore or readWriteAnyDatabase role has it)")
    })?;
    Ok(())
}

async fn existing(destination: &Client, plan: &[SourceCollection]) -> Result<Vec<Existing>> {
    let mut by_db: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for c in plan {
        by_db.entry(&c.ns.db).or_default().insert(&c.ns.coll);
    }
    let mut out = Vec::new();
    for (db_name, wanted) in by_db {
        let failed = |e: mongodb::error::Error| {
            Failure::runtime(format!(
                "cannot list the collections of {db_name} on the destination"
            ))
            .cause(e)
        };
        let db = destination.database(db_name);
        let specs: Vec<Document> = crate::retry::transient(
            &format!("listing the collections of {db_name} on the destination"),
            || async {
                db.list_collections()
                    .await?
                    .with_type::<Document>()
                    .try_collect()
                    .await
            },
        )
        .await
        .map_err(failed)?;
        for spec in specs {
            let Ok(name) = spec.get_str("name") else {
                continue;
            };
            if !wanted.contains(name) {
                continue;
            }
            let ns = Namespace::new(db_name, name);
            let kind = spec.get_str("type").unwrap_or("collection").to_string();
            let coll = db.collection::<RawDocumentBuf>(name);
            let has_documents = kind == "collection"
                && crate::retry::transient(&format!("reading {ns} on the destination"), || {
                    coll.find_one(doc! {})
                        .projection(doc! { "_id": 1 })
                        .into_future()
                })
                .await
                .map_err(|e| {
                    Failure::runtime(format!("cannot read {ns} on the destination")).cause(e)
                })?
                .is_some();
            out.push(Existing {
                ns,
                kind,
                has_documents,
            });
        }
    }
    Ok(out)
}

/// Creates every collection, then every view after the collections and views it reads from.
pub async fn create(
    destination: &Client,
    plan: &[SourceCollection],
    kept: &HashSet<Namespace>,
    remove_auto_index_id: bool,
) -> Result<()> {
    for c in creation_order(plan) {
        if kept.contains(&c.ns) {
            continue;
        }
        let mut options = c.options();
        let legacy_auto_index_id = options.contains_key("autoIndexId");
        if remove_auto_index_id {
            options.remove("autoIndexId");
        }
        let mut command = doc! { "create": &c.ns.coll };
        command.extend(options);
        let db = destination.database(&c.ns.db);
        let created = crate::retry::transient(&format!("creating {}", c.ns), || {
            db.run_command(with_majority(command.clone())).into_future()
        })
        .await;
        // After a lost reply, the attempt that went through left it there.
        let created = match created {
            Err(e) if crate::error::server_code(&e) == Some(NAMESPACE_EXISTS) => {
                Ok(Document::new())
            }
            other => other,
        };
        created.map_err(|e| {
                let failure = Failure::runtime(format!(
                    "cannot create the {} {} on the destination",
                    c.kind, c.ns
                ))
                .cause(e);
                if legacy_auto_index_id && !remove_auto_index_id {
                    failure.hint("the source collection has the legacy autoIndexId option: pass --removeAutoIndexId")
                } else {
                    failure.hint("check that the destination supports the options the source lists for it, and that the destination user may create collections")
                }
            })?;
        info!("created the {} {} on the destination", c.kind, c.ns);
    }
    Ok(())
}

/// Collections in plan order, then views, each view after any view of the plan it reads from.
fn creation_order(plan: &[SourceCollection]) -> Vec<&SourceCollection> {
    let mut out: Vec<&SourceCollection> = plan.iter().filter(|c| c.kind != "view").collect();
    let mut pending: Vec<&SourceCollection> = plan.iter().filter(|c| c.kind == "view").collect();
    while !pending.is_empty() {
        let waits_for_pending = |v: &SourceCollection| {
            let on = v.options().get_str("viewOn").map(str::to_string);
            on.is_ok_and(|on| {
                pending
                    .iter()
                    .any(|p| p.ns.db == v.ns.db && p.ns.coll == on && p.ns != v.ns)
            })
        };
        let (ready, waiting): (Vec<_>, Vec<_>) =
            pending.iter().partition(|v| !waits_for_pending(v));
        if ready.is_empty() {
            // A cycle cannot exist on a real server; create the rest in plan order.
            out.extend(waiting);
            break;
        }
        out.extend(ready);
        pending = waiting;
    }
    out
}

/// The namespaces to copy that the destination already holds with data (or as a view): the
/// preflight overlap rule. `--drop` clears exactly these.
pub async fn conflicts(
    destination: &Client,
    plan: &[SourceCollection],
    ours: &HashSet<Namespace>,
) -> Result<Vec<String>> {
    Ok(existing(destination, plan)
        .await?
        .iter()
        .filter(|e| e.blocks_copy() && !ours.contains(&e.ns))
        .map(Existing::describe)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ns: &str, kind: &str, options: Document) -> SourceCollection {
        let ns = Namespace::parse(ns).unwrap();
        SourceCollection {
            spec: doc! { "name": &ns.coll, "type": kind, "options": options },
            ns,
            kind: kind.to_string(),
            documents: 0,
            bytes: 0,
        }
    }

    #[test]
    fn views_come_after_what_they_read() {
        let plan = vec![
            entry("d.v2", "view", doc! { "viewOn": "v1", "pipeline": [] }),
            entry("d.v1", "view", doc! { "viewOn": "c", "pipeline": [] }),
            entry("e.v1", "view", doc! { "viewOn": "v2", "pipeline": [] }),
            entry("d.c", "collection", doc! {}),
        ];
        let order: Vec<String> = creation_order(&plan)
            .iter()
            .map(|c| c.ns.to_string())
            .collect();
        assert_eq!(order, ["d.c", "d.v1", "e.v1", "d.v2"]);
    }
}
