//! Catalog comparison: for one namespace, the same kind, the same options and the same indexes.
//!
//! `listCollections` entries are compared without what legitimately differs between two
//! deployments (`info.uuid`, an index spec's `ns` and `background`), and with top-level field
//! order ignored (servers list options in the order they were given). Index specs are compared
//! by name, the same way, where `prepareUnique: false` means no `prepareUnique` (a server may
//! leave it on an index converted to unique). Differences that the migration's own flags cause
//! are reported as expected, with the command that removes them: `--ttlWithoutExpiry` builds TTL
//! indexes without `expireAfterSeconds`, `--removeAutoIndexId` drops `autoIndexId`.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::report::Expected;
use crate::catalog::SourceCollection;
use crate::cli::Namespace;
use crate::error::Result;

/// What the migration's flags change on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// `--ttlWithoutExpiry`: TTL indexes lack `expireAfterSeconds` on the destination.
    pub ttl_without_expiry: bool,
    /// `--removeAutoIndexId`: collections lack `autoIndexId` on the destination.
    pub remove_auto_index_id: bool,
}

/// The catalog differences of a namespace present on both sides, and the expected ones.
pub async fn compare(
    source: &Client,
    destination: &Client,
    src: &SourceCollection,
    dst: &SourceCollection,
    rules: Rules,
) -> Result<(Vec<String>, Vec<Expected>)> {
    let mut differences = Vec::new();
    let mut expected = Vec::new();
    if src.kind != dst.kind {
        differences.push(format!(
            "a {} on the source, a {} on the destination",
            src.kind, dst.kind
        ));
        return Ok((differences, expected));
    }
    let (mut a, mut b) = (entry(&src.spec), entry(&dst.spec));
    if rules.remove_auto_index_id {
        let removed = take_option(&mut a, "autoIndexId");
        if removed.is_some() && !has_option(&b, "autoIndexId") {
            expected.push(Expected {
                what: "the collection has no autoIndexId option (--removeAutoIndexId)".into(),
                fix: "nothing to do: autoIndexId is obsolete".into(),
            });
        }
        take_option(&mut b, "autoIndexId");
    }
    for key in union_keys(&a, &b) {
        match (a.get(&key), b.get(&key)) {
            (Some(x), Some(y)) if same(x, y) => {}
            (x, y) => differences.push(format!(
                "{key} differs: {} on the source, {} on the destination",
                show(x),
                show(y)
            )),
        }
    }
    if src.kind == "collection" {
        let (x, y) = (
            indexes(source, &src.ns, "source").await?,
            indexes(destination, &dst.ns, "destination").await?,
        );
        compare_indexes(&src.ns, &x, &y, rules, &mut differences, &mut expected);
    }
    Ok((differences, expected))
}

/// A `listCollections` entry without `name` and `info.uuid`, its options sorted, flattened to
/// the parts compared: `type`, `options.<key>`, `info.<key>`, `idIndex`.
fn entry(spec: &Document) -> BTreeMap<String, Bson> {
    let mut out = BTreeMap::new();
    for (key, value) in spec {
        match (key.as_str(), value) {
            ("name", _) => {}
            ("options" | "info", Bson::Document(d)) => {
                for (k, v) in d {
                    if key == "info" && k == "uuid" {
                        continue;
                    }
                    out.insert(format!("{key}.{k}"), v.clone());
                }
            }
            ("idIndex", Bson::Document(d)) => {
                out.insert(key.clone(), Bson::Document(normalize_index(d.clone())));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn take_option(entry: &mut BTreeMap<String, Bson>, option: &str) -> Option<Bson> {
    entry.remove(&format!("options.{option}"))
}

fn has_option(entry: &BTreeMap<String, Bson>, option: &str) -> bool {
    entry.contains_key(&format!("options.{option}"))
}

fn union_keys(a: &BTreeMap<String, Bson>, b: &BTreeMap<String, Bson>) -> Vec<String> {
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Equal values, field order included (a key pattern or a `$sort` depends on it; `Document`'s
/// own equality ignores it).
fn same(a: &Bson, b: &Bson) -> bool {
    let bytes = |v: &Bson| mongodb::bson::to_vec(&doc! { "v": v.clone() }).ok();
    bytes(a) == bytes(b)
}

fn same_document(a: &Document, b: &Document) -> bool {
    same(&Bson::Document(a.clone()), &Bson::Document(b.clone()))
}

fn show(value: Option<&Bson>) -> String {
    match value {
        None => "absent".into(),
        Some(v) => v.clone().into_relaxed_extjson().to_string(),
    }
}

/// A collection's index specs by name, normalized.
async fn indexes(
    client: &Client,
    ns: &Namespace,
    side: &str,
) -> Result<BTreeMap<String, Document>> {
    let specs = crate::indexes::list_indexes(client, ns, side).await?;
    Ok(specs
        .into_iter()
        .map(|spec| {
            let name = spec.get_str("name").unwrap_or_default().to_string();
            (name, normalize_index(spec))
        })
        .collect())
}

/// An index spec without what differs between deployments, top-level keys sorted.
fn normalize_index(mut spec: Document) -> Document {
    spec.remove("ns");
    spec.remove("background");
    if spec.get_bool("prepareUnique") == Ok(false) {
        spec.remove("prepareUnique");
    }
    let mut fields: Vec<(String, Bson)> = spec.into_iter().collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields.into_iter().collect()
}

fn compare_indexes(
    ns: &Namespace,
    source: &BTreeMap<String, Document>,
    destination: &BTreeMap<String, Document>,
    rules: Rules,
    differences: &mut Vec<String>,
    expected: &mut Vec<Expected>,
) {
    for (name, spec) in source {
        let Some(other) = destination.get(name) else {
            differences.push(format!(
                "index {name} is missing on the destination: {}",
                Bson::Document(spec.clone()).into_relaxed_extjson()
            ));
            continue;
        };
        if same_document(spec, other) {
            continue;
        }
        let mut without_ttl = spec.clone();
        let ttl = without_ttl.remove("expireAfterSeconds");
        if let (true, Some(seconds)) = (
            rules.ttl_without_expiry && same_document(&without_ttl, other),
            ttl,
        ) {
            expected.push(Expected {
                what: format!("TTL index {name} has no expireAfterSeconds (--ttlWithoutExpiry)"),
                fix: format!(
                    "db.getSiblingDB({:?}).runCommand({{collMod: {:?}, index: {{name: {name:?}, expireAfterSeconds: {}}}}})",
                    ns.db,
                    ns.coll,
                    seconds.into_relaxed_extjson()
                ),
            });
            continue;
        }
        differences.push(format!(
            "index {name} differs: {} on the source, {} on the destination",
            Bson::Document(spec.clone()).into_relaxed_extjson(),
            Bson::Document(other.clone()).into_relaxed_extjson()
        ));
    }
    for (name, spec) in destination {
        if !source.contains_key(name) {
            differences.push(format!(
                "index {name} is only on the destination: {}",
                Bson::Document(spec.clone()).into_relaxed_extjson()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[Document]) -> BTreeMap<String, Document> {
        list.iter()
            .map(|s| {
                (
                    s.get_str("name").unwrap().to_string(),
                    normalize_index(s.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn indexes_compare_by_name_and_ttl_differences_can_be_expected() {
        let ns = Namespace::new("app", "c");
        let src = specs(&[
            doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            doc! { "v": 2, "key": { "at": 1 }, "name": "at_1", "expireAfterSeconds": 60 },
            doc! { "v": 2, "key": { "e": 1 }, "name": "e_1", "unique": true },
            doc! { "v": 2, "key": { "gone": 1 }, "name": "gone_1" },
        ]);
        let dst = specs(&[
            doc! { "key": { "_id": 1 }, "v": 2, "name": "_id_", "ns": "app.c" },
            doc! { "v": 2, "key": { "at": 1 }, "name": "at_1" },
            doc! { "v": 2, "key": { "e": 1 }, "name": "e_1", "unique": true, "prepareUnique": false },
            doc! { "v": 2, "key": { "x": 1 }, "name": "x_1" },
        ]);
        let (mut differences, mut expected) = (Vec::new(), Vec::new());
        let rules = Rules {
            ttl_without_expiry: true,
            ..Rules::default()
        };
        compare_indexes(&ns, &src, &dst, rules, &mut differences, &mut expected);
        assert_eq!(differences.len(), 2, "{differences:?}");
        assert!(differences[0].starts_with("index gone_1 is missing on the destination"));
        assert!(differences[1].starts_with("index x_1 is only on the destination"));
        assert_eq!(expected.len(), 1);
        assert_eq!(
            expected[0].fix,
            "db.getSiblingDB(\"app\").runCommand({collMod: \"c\", index: {name: \"at_1\", expireAfterSeconds: 60}})"
        );
        // Without the flag, the missing expiry is a difference.
        let (mut differences, mut expected) = (Vec::new(), Vec::new());
        compare_indexes(
            &ns,
            &src,
            &dst,
            Rules::default(),
            &mut differences,
            &mut expected,
        );
        assert!(differences
            .iter()
            .any(|d| d.starts_with("index at_1 differs")));
        assert!(expected.is_empty());
    }

    #[test]
    fn entries_ignore_uuids_and_option_order() {
        let a = entry(&doc! {
            "name": "c", "type": "collection",
            "options": { "validator": { "a": 1 }, "capped": true, "size": 4096 },
            "info": { "readOnly": false, "uuid": "x" },
            "idIndex": { "v": 2, "key": { "_id": 1 }, "name": "_id_", "ns": "app.c" },
        });
        let b = entry(&doc! {
            "type": "collection", "name": "c",
            "options": { "capped": true, "size": 4096, "validator": { "a": 1 } },
            "info": { "uuid": "y", "readOnly": false },
            "idIndex": { "name": "_id_", "key": { "_id": 1 }, "v": 2 },
        });
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert!(a.iter().all(|(k, v)| same(v, &b[k])));
        // Nested field order counts: a key pattern {a: 1, b: 1} is another index than {b: 1, a: 1}.
        let x = Bson::Document(doc! { "a": 1, "b": 1 });
        let y = Bson::Document(doc! { "b": 1, "a": 1 });
        assert!(!same(&x, &y));
    }
}
