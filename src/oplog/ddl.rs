//! DDL replay: each oplog command becomes the ordinary command that has the same effect.
//!
//! "Already done" answers are success, because replay is idempotent: a `create` of an existing
//! collection (`NamespaceExists`), a `drop` or `renameCollection` whose source is gone
//! (`NamespaceNotFound`), a `dropIndexes` of a missing index (`IndexNotFound`). Views arrive as
//! writes to `system.views` and are replayed as `create`/`collMod`/`drop` of the view, because
//! servers refuse direct writes to `system.views`.

use std::future::IntoFuture;

use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tracing::{info, warn};

use super::entry::{Command, IndexSpecs, Update};
use super::error::ApplyError;
use super::{catchup, dest};
use crate::bookmark::IndexRef;
use crate::cli::{Namespace, NamespaceFilter};
use crate::error::server_code;
use crate::indexes::{build_spec, SpecRules};

/// `NamespaceNotFound`.
const NS_NOT_FOUND: i32 = 26;
/// `IndexNotFound`.
const INDEX_NOT_FOUND: i32 = 27;
/// `NamespaceExists`.
const NS_EXISTS: i32 = 48;
/// `IndexOptionsConflict`, `IndexKeySpecsConflict`.
const INDEX_CONFLICT: &[i32] = &[85, 86];

/// `create` options that describe the source collection rather than the wanted one.
const CREATE_IGNORED: &[&str] = &["idIndex", "uuid", "recordIdsReplicated", "autoIndexId"];
/// `collMod` options removed from the server long ago (mongorestore strips them too).
const COLLMOD_IGNORED: &[&str] = &["usePowerOf2Sizes", "noPadding"];
/// `create` options that `collMod` can also set.
const VALIDATION: &[&str] = &["validator", "validationLevel", "validationAction"];
/// Index spec fields that newer servers reject or ignore (`entryFormat` is SecantusDB's own).
const INDEX_IGNORED: &[&str] = &["ns", "background", "entryFormat"];

/// Applies one DDL command to the destination. While replay catches up with the copy,
/// `relaxed` lists the unique indexes that are not unique yet: index builds and `collMod`s
/// that would make an index unique are held back and listed there, and a rename moves the
/// entries of its collection ([`super::catchup`]).
pub(super) async fn apply(
    client: &Client,
    filter: &NamespaceFilter,
    index_rules: Option<SpecRules>,
    relaxed: Option<&mut Vec<IndexRef>>,
    command: &Command<'_>,
) -> Result<(), ApplyError> {
    match command {
        Command::Create { ns, o } => create(client, ns, o).await,
        Command::Drop { ns } => run(client, ns, doc! { "drop": &ns.coll }, &[NS_NOT_FOUND]).await,
        Command::DropDatabase { db } => drop_database(client, filter, db).await,
        Command::Rename {
            from,
            to,
            drop_target,
        } => {
            if let Some(relaxed) = relaxed {
                let (from_ns, to_ns) = (from.to_string(), to.to_string());
                relaxed.retain(|i| i.ns != to_ns);
                for index in relaxed.iter_mut().filter(|i| i.ns == from_ns) {
                    index.ns = to_ns.clone();
                }
            }
            match (filter.wants(from), filter.wants(to)) {
                (true, true) => rename(client, from, to, *drop_target).await,
                // Renamed out of the migration: on the destination it simply goes away.
                (true, false) => {
                    run(client, from, doc! { "drop": &from.coll }, &[NS_NOT_FOUND]).await
                }
                (false, true) => Err(ApplyError::RenameIntoFilter {
                    from: from.to_string(),
                    to: to.to_string(),
                }),
                (false, false) => Ok(()),
            }
        }
        Command::CreateIndexes { ns, specs } => {
            let Some(rules) = index_rules else {
                info!("{ns}: an index build on the source is not replayed, because --noIndexRestore is set");
                return Ok(());
            };
            let mut specs: Vec<Document> = index_specs(specs, ns)?
                .into_iter()
                .filter_map(|spec| build_spec(spec, rules))
                .collect();
            if let Some(relaxed) = relaxed {
                for spec in &mut specs {
                    if catchup::relax(spec) {
                        let name = spec.get_str("name").unwrap_or_default();
                        relaxed.push(catchup::index_ref(ns, name));
                    }
                }
            }
            if specs.is_empty() {
                return Ok(());
            }
            let body = doc! { "createIndexes": &ns.coll, "indexes": specs };
            match run_raw(client, &ns.db, ns, body).await {
                Ok(_) => Ok(()),
                // An index of that name with other options or keys: the copy or an earlier
                // replay holds a later state of it, which later entries (collMod, drop and
                // create) reproduce.
                Err(e) if server_code(&e).is_some_and(|c| INDEX_CONFLICT.contains(&c)) => {
                    warn!(
                        "{ns}: an index is already in a later state; keeping it ({})",
                        crate::error::brief(&e)
                    );
                    Ok(())
                }
                Err(e) => Err(destination("createIndexes", ns, e)),
            }
        }
        Command::DropIndexes { ns, index } => {
            let index = bson(*index, ns)?;
            let body = doc! { "dropIndexes": &ns.coll, "index": index };
            run(client, ns, body, &[NS_NOT_FOUND, INDEX_NOT_FOUND]).await
        }
        // A missing collection or index on the destination means a later entry dropped it.
        Command::CollMod { ns, o } => {
            let mut body = without(o, COLLMOD_IGNORED, ns)?;
            if let Some(relaxed) = relaxed {
                if hold_back_uniqueness(&mut body, ns, relaxed) {
                    return Ok(());
                }
            }
            let sets_ttl = body
                .get_document("index")
                .is_ok_and(|i| i.contains_key("expireAfterSeconds"));
            if sets_ttl && index_rules.is_some_and(|r| r.ttl_without_expiry) {
                warn!("{ns}: a TTL change on the source is not replayed because of --ttlWithoutExpiry; apply it at cutover with the collMod commands --verify prints");
                return Ok(());
            }
            run(client, ns, body, &[NS_NOT_FOUND, INDEX_NOT_FOUND]).await
        }
        Command::ConvertToCapped { ns, o } => run(client, ns, document(o, ns)?, &[]).await,
        Command::EmptyCapped { ns } => {
            run(
                client,
                ns,
                doc! { "emptycapped": &ns.coll },
                &[NS_NOT_FOUND],
            )
            .await
        }
        Command::CreateView { ns, definition } => {
            let definition = document(definition, ns)?;
            define_view(client, ns, &definition, false).await
        }
        Command::ModifyView { ns, id, update } => {
            let Some(definition) = view_after(client, ns, *id, update).await? else {
                warn!("view {ns} is modified on the source but does not exist on the destination: the change is skipped; create the view by hand, or start over with --forceDump --drop");
                return Ok(());
            };
            define_view(client, ns, &definition, true).await
        }
        Command::DropView { ns } => {
            run(client, ns, doc! { "drop": &ns.coll }, &[NS_NOT_FOUND]).await
        }
    }
}

/// While catching up, a `collMod` that makes an index unique (`prepareUnique`, `unique`) is
/// held back and the index listed as relaxed; `forceNonUnique` takes it off the list. Returns
/// whether nothing is left of the command.
fn hold_back_uniqueness(body: &mut Document, ns: &Namespace, relaxed: &mut Vec<IndexRef>) -> bool {
    let Ok(index) = body.get_document_mut("index") else {
        return false;
    };
    let name = index.get_str("name").unwrap_or_default().to_string();
    let mut unique = false;
    for key in ["unique", "prepareUnique"] {
        unique |= index.remove(key).is_some_and(|v| v.as_bool() == Some(true));
    }
    let force_non_unique = index.remove("forceNonUnique").is_some();
    let index_left = index.keys().any(|k| k != "name" && k != "keyPattern");
    let entry = catchup::index_ref(ns, &name);
    if unique && !relaxed.contains(&entry) {
        relaxed.push(entry);
    } else if force_non_unique {
        relaxed.retain(|i| *i != entry);
    }
    if !index_left {
        body.remove("index");
    }
    body.len() == 1
}

/// Creates a collection. If it exists (an implicit creation by an earlier insert, or a replayed
/// entry), its validation options are brought in line with a `collMod`.
async fn create(client: &Client, ns: &Namespace, o: &RawDocument) -> Result<(), ApplyError> {
    let mut body = without(o, CREATE_IGNORED, ns)?;
    // SecantusDB logs a view's pipeline as `viewPipeline`; the command calls it `pipeline`.
    if let Some(pipeline) = body.remove("viewPipeline") {
        body.insert("pipeline", pipeline);
    }
    let mut validation = doc! { "collMod": &ns.coll };
    for key in VALIDATION {
        if let Some(value) = body.get(*key) {
            validation.insert(*key, value.clone());
        }
    }
    match run_raw(client, &ns.db, ns, body).await {
        Ok(_) => Ok(()),
        Err(e) if server_code(&e) == Some(NS_EXISTS) && validation.len() > 1 => {
            run(client, ns, validation, &[]).await
        }
        Err(e) if server_code(&e) == Some(NS_EXISTS) => Ok(()),
        Err(e) => Err(destination("create", ns, e)),
    }
}

/// Renames within or across databases (on `admin`). A source that is gone means the rename was
/// applied already. A target that exists although the source renamed without `dropTarget` can
/// only come from the copy or an earlier replay, so the rename is repeated over it: afterwards
/// the target holds what the source held at this point, and later entries continue from there.
async fn rename(
    client: &Client,
    from: &Namespace,
    to: &Namespace,
    drop_target: bool,
) -> Result<(), ApplyError> {
    let body = |drop_target: bool| {
        doc! { "renameCollection": from.to_string(), "to": to.to_string(), "dropTarget": drop_target }
    };
    match run_raw(client, "admin", from, body(drop_target)).await {
        Ok(_) => Ok(()),
        Err(e) if server_code(&e) == Some(NS_NOT_FOUND) => Ok(()),
        Err(e) if server_code(&e) == Some(NS_EXISTS) && !drop_target => {
            run_on(client, "admin", from, body(true), &[NS_NOT_FOUND]).await
        }
        Err(e) => Err(destination("renameCollection", from, e)),
    }
}

/// Defines a view. A view holds no data, so it is (re)defined by dropping whatever stands
/// under its name and creating it: exact on every server, including those that cannot `collMod`
/// a view (SecantusDB accepts that without effect) or that accept a second `create` silently.
/// Only `replace` drops first; a plain creation drops only when the name is taken, which on
/// replay means a later state of the same name that later entries rebuild.
async fn define_view(
    client: &Client,
    ns: &Namespace,
    definition: &Document,
    replace: bool,
) -> Result<(), ApplyError> {
    let view_on = definition.get_str("viewOn").unwrap_or_default();
    if view_on.starts_with("system.buckets.") {
        warn!("time-series collection {ns}: its definition is not replayed; copy it again after the migration");
        return Ok(());
    }
    let mut create = doc! { "create": &ns.coll, "viewOn": view_on };
    let pipeline = definition
        .get("pipeline")
        .cloned()
        .unwrap_or_else(|| Bson::Array(Vec::new()));
    create.insert("pipeline", pipeline);
    if let Some(collation) = definition.get("collation") {
        create.insert("collation", collation.clone());
    }
    let drop_view = doc! { "drop": &ns.coll };
    if replace {
        run(client, ns, drop_view.clone(), &[NS_NOT_FOUND]).await?;
    }
    match run_raw(client, &ns.db, ns, create.clone()).await {
        Err(e) if server_code(&e) == Some(NS_EXISTS) => {
            run(client, ns, drop_view, &[NS_NOT_FOUND]).await?;
            run(client, ns, create, &[]).await
        }
        other => other
            .map(drop)
            .map_err(|e| destination("create view", ns, e)),
    }
}

/// The view definition after an update of its `system.views` document.
async fn view_after(
    client: &Client,
    ns: &Namespace,
    id: RawBsonRef<'_>,
    update: &Update<'_>,
) -> Result<Option<Document>, ApplyError> {
    if let Update::Replace(doc) = update {
        return document(doc, ns).map(Some);
    }
    let id = bson(id, ns)?;
    let current = client
        .database(&ns.db)
        .collection::<Document>("system.views")
        .find_one(doc! { "_id": id })
        .await
        .map_err(|e| destination("read of system.views", ns, e))?;
    let Some(current) = current else {
        return Ok(None);
    };
    let diff_failed = |e| ApplyError::Diff {
        ns: ns.to_string(),
        id: ns.to_string(),
        source: e,
    };
    Ok(Some(match update {
        Update::Replace(_) => current,
        Update::Diff(d) => d.apply(&current).map_err(diff_failed)?,
        Update::Fields(f) => f.apply(&current).map_err(diff_failed)?,
        // A view's collMod on 4.4 sets whole top-level fields.
        Update::Modifier { set, unset } => {
            let mut doc = current;
            for (k, v) in set
                .map(document_fields)
                .transpose()
                .map_err(|e| bad(ns, e))?
                .unwrap_or_default()
            {
                doc.insert(k, v);
            }
            for (k, _) in unset
                .map(document_fields)
                .transpose()
                .map_err(|e| bad(ns, e))?
                .unwrap_or_default()
            {
                doc.remove(&k);
            }
            doc
        }
    }))
}

/// Drops what the migration holds of a database: the whole database if the filter takes all of
/// it, otherwise only the collections it takes.
async fn drop_database(
    client: &Client,
    filter: &NamespaceFilter,
    db: &str,
) -> Result<(), ApplyError> {
    let database = client.database(db);
    let ns = Namespace::new(db, "$cmd");
    let names = crate::retry::transient(&format!("listing the collections of {db}"), || {
        database.list_collection_names().into_future()
    })
    .await
    .map_err(|e| destination("listing of collections", &ns, e))?;
    let user: Vec<Namespace> = names
        .into_iter()
        .filter(|n| !n.starts_with("system."))
        .map(|n| Namespace::new(db, n))
        .collect();
    if user.iter().all(|n| filter.wants(n)) {
        return run(client, &ns, doc! { "dropDatabase": 1 }, &[NS_NOT_FOUND]).await;
    }
    for n in user.iter().filter(|n| filter.wants(n)) {
        run(client, n, doc! { "drop": &n.coll }, &[NS_NOT_FOUND]).await?;
    }
    Ok(())
}

/// Runs a command on the namespace's database, treating `accepted` codes as success.
async fn run(
    client: &Client,
    ns: &Namespace,
    body: Document,
    accepted: &[i32],
) -> Result<(), ApplyError> {
    run_on(client, &ns.db.clone(), ns, body, accepted).await
}

async fn run_on(
    client: &Client,
    db: &str,
    ns: &Namespace,
    body: Document,
    accepted: &[i32],
) -> Result<(), ApplyError> {
    let name = body.keys().next().cloned().unwrap_or_default();
    match run_raw(client, db, ns, body).await {
        Ok(_) => Ok(()),
        Err(e) if server_code(&e).is_some_and(|c| accepted.contains(&c)) => Ok(()),
        Err(e) => Err(destination(&name, ns, e)),
    }
}

async fn run_raw(
    client: &Client,
    db: &str,
    ns: &Namespace,
    body: Document,
) -> Result<Document, mongodb::error::Error> {
    let name = body.keys().next().cloned().unwrap_or_default();
    let mut command = match RawDocumentBuf::from_document(&body) {
        Ok(c) => c,
        Err(e) => return Err(mongodb::error::Error::custom(e.to_string())),
    };
    command.append("writeConcern", dest::majority());
    dest::run(client, db, command, &format!("{name} on {ns}")).await
}

fn destination(what: &str, ns: &Namespace, source: mongodb::error::Error) -> ApplyError {
    ApplyError::Destination {
        what: what.to_string(),
        ns: ns.to_string(),
        source: Box::new(source),
    }
}

fn bad(ns: &Namespace, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Document {
        ns: ns.to_string(),
        id: String::new(),
        message: e.to_string(),
    }
}

fn document(raw: &RawDocument, ns: &Namespace) -> Result<Document, ApplyError> {
    Document::try_from(raw).map_err(|e| bad(ns, e))
}

fn bson(value: RawBsonRef<'_>, ns: &Namespace) -> Result<Bson, ApplyError> {
    Bson::try_from(value).map_err(|e| bad(ns, e))
}

fn document_fields(raw: &RawDocument) -> Result<Vec<(String, Bson)>, mongodb::bson::raw::Error> {
    raw.iter()
        .map(|item| {
            let (k, v) = item?;
            Ok((k.to_string(), Bson::try_from(v)?))
        })
        .collect()
}

/// `o` without the listed fields (the command name stays first).
fn without(o: &RawDocument, ignored: &[&str], ns: &Namespace) -> Result<Document, ApplyError> {
    let mut doc = document(o, ns)?;
    for key in ignored {
        doc.remove(*key);
    }
    Ok(doc)
}

/// The specs of a `createIndexes` (inline, after the collection name) or `commitIndexBuild`.
fn index_specs(specs: &IndexSpecs<'_>, ns: &Namespace) -> Result<Vec<Document>, ApplyError> {
    let mut out = Vec::new();
    match specs {
        IndexSpecs::Inline(o) => {
            let mut spec = document(o, ns)?;
            spec.remove("createIndexes");
            out.push(spec);
        }
        IndexSpecs::List(list) => {
            for item in list.into_iter() {
                match item.map_err(|e| bad(ns, e))? {
                    RawBsonRef::Document(d) => out.push(document(d, ns)?),
                    _ => return Err(bad(ns, "an index spec is not a document")),
                }
            }
        }
    }
    for spec in &mut out {
        for key in INDEX_IGNORED {
            spec.remove(*key);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniqueness_is_held_back_while_catching_up() {
        let ns = Namespace::new("app", "c");
        let mut relaxed = Vec::new();
        let mut only = doc! { "collMod": "c", "index": { "name": "e_1", "prepareUnique": true } };
        assert!(hold_back_uniqueness(&mut only, &ns, &mut relaxed));
        assert_eq!(relaxed, vec![catchup::index_ref(&ns, "e_1")]);
        // Other changes in the same command still apply.
        let mut mixed = doc! {
            "collMod": "c", "validator": { "a": 1 },
            "index": { "name": "e_1", "unique": true, "hidden": true },
        };
        assert!(!hold_back_uniqueness(&mut mixed, &ns, &mut relaxed));
        assert_eq!(
            mixed,
            doc! { "collMod": "c", "validator": { "a": 1 }, "index": { "name": "e_1", "hidden": true } }
        );
        assert_eq!(relaxed.len(), 1, "listed once");
        let mut undo = doc! { "collMod": "c", "index": { "name": "e_1", "forceNonUnique": true } };
        assert!(hold_back_uniqueness(&mut undo, &ns, &mut relaxed));
        assert!(relaxed.is_empty());
        let mut ttl = doc! { "collMod": "c", "index": { "name": "t_1", "expireAfterSeconds": 5 } };
        assert!(!hold_back_uniqueness(&mut ttl, &ns, &mut relaxed));
        assert!(ttl
            .get_document("index")
            .is_ok_and(|i| i.contains_key("expireAfterSeconds")));
    }
}
