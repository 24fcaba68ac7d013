//! The preflight rules, as pure functions of what the servers said: easy to test with captured
//! `buildInfo`, `connectionStatus` and `listIndexes` replies.

use std::fmt;

use mongodb::bson::{Bson, Document};

use crate::catalog::SourceCollection;
use crate::cli::{Namespace, Side};

/// One thing that stops the migration, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming every affected namespace.
    pub what: String,
    /// What the operator can do.
    pub fix: String,
}

impl Problem {
    /// A problem with its fix.
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parses `buildInfo.version` (`8.0.4`, `7.0.12-ent`, `4.4.29-rc1`); `None` if unreadable.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split(['.', '-', '+']).map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    fn release(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The oldest server the driver (and so this tool) can talk to.
pub const OLDEST_SUPPORTED: Version = Version {
    major: 4,
    minor: 4,
    patch: 0,
};

/// Versions: both sides 4.4+, and the destination no older than the source, except on the
/// documented downgrade path where the source FCV already equals the destination's version.
pub fn check_versions(
    source: Option<Version>,
    destination: Option<Version>,
    source_fcv: Option<&str>,
    destination_fcv: Option<&str>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for (side, v) in [(Side::Source, source), (Side::Destination, destination)] {
        if let Some(v) = v.filter(|v| *v < OLDEST_SUPPORTED) {
            out.push(Problem::new(
                format!("the {side} runs MongoDB {v}, older than {OLDEST_SUPPORTED}, the oldest this tool supports"),
                format!("upgrade the {side} to MongoDB {OLDEST_SUPPORTED} or newer first"),
            ));
        }
    }
    if let (Some(s), Some(d)) = (source, destination) {
        if d.release() < s.release() {
            let downgrade_ok = source_fcv.is_some_and(|f| f == d.to_string())
                && destination_fcv.is_none_or(|f| f == d.to_string());
            if !downgrade_ok {
                out.push(Problem::new(
                    format!("the destination runs MongoDB {d}, older than the source's {s}"),
                    format!("use a destination running {s} or newer, or set the source's featureCompatibilityVersion to {d} first"),
                ));
            }
        }
    }
    out
}

/// What a side's user must be allowed to do: (action, database, collection) where `""` means
/// any; `None` database means the cluster resource.
type Need = (&'static str, Option<&'static str>, &'static str);

const SOURCE_NEEDS: &[Need] = &[
    ("listDatabases", None, ""),
    ("find", Some(""), ""),
    ("listCollections", Some(""), ""),
    ("listIndexes", Some(""), ""),
    ("find", Some("local"), "oplog.rs"),
];
const DESTINATION_NEEDS: &[Need] = &[
    ("listDatabases", None, ""),
    ("insert", Some(""), ""),
    ("update", Some(""), ""),
    ("remove", Some(""), ""),
    ("createCollection", Some(""), ""),
    ("dropCollection", Some(""), ""),
    ("createIndex", Some(""), ""),
    ("dropIndex", Some(""), ""),
    ("collMod", Some(""), ""),
];
/// Built-in roles (on `admin`) that cover every need of a side.
const SOURCE_ROLES: &[&str] = &["root", "__system", "backup"];
const DESTINATION_ROLES: &[&str] = &[
    "root",
    "__system",
    "atlasAdmin",
    "restore",
    "readWriteAnyDatabase",
];

fn grants(privilege: &Document, need: &Need) -> bool {
    let (action, db, coll) = *need;
    let acts = privilege
        .get_array("actions")
        .map(|a| a.iter().any(|x| x.as_str() == Some(action)))
        .unwrap_or(false);
    if !acts {
        return false;
    }
    let Ok(resource) = privilege.get_document("resource") else {
        return false;
    };
    if resource.get_bool("anyResource").unwrap_or(false) {
        return true;
    }
    match db {
        None => resource.get_bool("cluster").unwrap_or(false),
        Some(db) => {
            let (Ok(rdb), Ok(rcoll)) = (resource.get_str("db"), resource.get_str("collection"))
            else {
                return false;
            };
            // An any-database grant does not reach `local`, as with readAnyDatabase.
            let db_ok = rdb == db || (rdb.is_empty() && db != "local");
            db_ok && (rcoll.is_empty() || rcoll == coll)
        }
    }
}

/// Privileges from `connectionStatus` with `showPrivileges`: the source user must read every
/// database and the oplog; the destination user must create, write, drop and index.
pub fn check_privileges(side: Side, status: &Document) -> Vec<Problem> {
    let Ok(info) = status.get_document("authInfo") else {
        return Vec::new();
    };
    let users = info
        .get_array("authenticatedUsers")
        .map(|u| u.len())
        .unwrap_or(0);
    if users == 0 {
        // Access control is off (or no user): nothing to check.
        return Vec::new();
    }
    let (needs, roles, wanted) = match side {
        Side::Source => (
            SOURCE_NEEDS,
            SOURCE_ROLES,
            "readAnyDatabase, clusterMonitor and backup (or root)",
        ),
        Side::Destination => (
            DESTINATION_NEEDS,
            DESTINATION_ROLES,
            "readWriteAnyDatabase and dbAdminAnyDatabase, restore, or atlasAdmin",
        ),
    };
    let held: Vec<&str> = info
        .get_array("authenticatedUserRoles")
        .map(|r| {
            r.iter()
                .filter_map(Bson::as_document)
                .filter(|d| d.get_str("db") == Ok("admin"))
                .filter_map(|d| d.get_str("role").ok())
                .collect()
        })
        .unwrap_or_default();
    if held.iter().any(|r| roles.contains(r)) {
        return Vec::new();
    }
    let privileges: Vec<&Document> = info
        .get_array("authenticatedUserPrivileges")
        .map(|p| p.iter().filter_map(Bson::as_document).collect())
        .unwrap_or_default();
    let missing: Vec<String> = needs
        .iter()
        .filter(|need| !privileges.iter().any(|p| grants(p, need)))
        .map(|(action, db, coll)| match db {
            None => format!("{action} on the cluster"),
            Some("") => format!("{action} on every database"),
            Some(db) => format!("{action} on {db}.{coll}"),
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let flag = match side {
        Side::Source => "--username",
        Side::Destination => "--destinationUsername",
    };
    vec![Problem::new(
        format!(
            "the {side} user ({}) lacks privileges: {}",
            if held.is_empty() {
                "no admin roles".to_string()
            } else {
                format!("roles {}", held.join(", "))
            },
            missing.join(", ")
        ),
        format!("grant the {side} user {wanted}, or give {flag} a user that has them"),
    )]
}

/// One index spec of a source collection.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// The collection.
    pub ns: Namespace,
    /// The `listIndexes` entry.
    pub spec: Document,
}

impl IndexInfo {
    fn name(&self) -> &str {
        self.spec.get_str("name").unwrap_or("?")
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.ns, self.name())
    }
}

/// mongomirror's rule: TTL indexes on the source stop the run, unless `--ttlWithoutExpiry`.
pub fn check_ttl(indexes: &[IndexInfo], ttl_without_expiry: bool) -> Vec<Problem> {
    let ttl: Vec<String> = indexes
        .iter()
        .filter(|i| i.spec.contains_key("expireAfterSeconds"))
        .map(IndexInfo::describe)
        .collect();
    if ttl.is_empty() || ttl_without_expiry {
        return Vec::new();
    }
    vec![Problem::new(
        format!("the source has TTL indexes, which mongomirror does not migrate: {}", ttl.join(", ")),
        "drop them before migrating and rebuild them after cutover, or pass --ttlWithoutExpiry to build them without expiry and restore TTL at cutover with the printed collMod commands",
    )]
}

/// The `collMod` commands that give TTL indexes their expiry back at cutover.
pub fn ttl_restore_commands(indexes: &[IndexInfo]) -> Vec<String> {
    indexes
        .iter()
        .filter_map(|i| {
            let seconds = match i.spec.get("expireAfterSeconds")? {
                Bson::Int32(n) => i64::from(*n),
                Bson::Int64(n) => *n,
                Bson::Double(n) => *n as i64,
                _ => return None,
            };
            let db = serde_json::to_string(&i.ns.db).ok()?;
            let coll = serde_json::to_string(&i.ns.coll).ok()?;
            let name = serde_json::to_string(i.name()).ok()?;
            Some(format!(
                "db.getSiblingDB({db}).runCommand({{collMod: {coll}, index: {{name: {name}, expireAfterSeconds: {seconds}}}}})"
            ))
        })
        .collect()
}

/// geoHaystack indexes cannot be built on MongoDB 5.0 and newer.
pub fn check_geo_haystack(indexes: &[IndexInfo], destination: Option<Version>) -> Vec<Problem> {
    if destination.is_some_and(|d| d.release() < (5, 0)) {
        return Vec::new();
    }
    let haystack: Vec<String> = indexes
        .iter()
        .filter(|i| {
            i.spec
                .get_document("key")
                .map(|k| k.values().any(|v| v.as_str() == Some("geoHaystack")))
                .unwrap_or(false)
        })
        .map(IndexInfo::describe)
        .collect();
    if haystack.is_empty() {
        return Vec::new();
    }
    vec![Problem::new(
        format!(
            "the source has geoHaystack indexes, which MongoDB 5.0+ cannot build: {}",
            haystack.join(", ")
        ),
        "drop them on the source (a 2d index replaces them) before migrating",
    )]
}

/// Time-series collections are refused, as in mongomirror 0.13.1.
pub fn check_time_series(plan: &[SourceCollection]) -> Vec<Problem> {
    let names: Vec<String> = plan
        .iter()
        .filter(|c| c.kind == "timeseries")
        .map(|c| c.ns.to_string())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let exclude: Vec<String> = names
        .iter()
        .map(|n| format!("--excludeNamespace {n}"))
        .collect();
    vec![Problem::new(
        format!(
            "the source holds time-series collections, which mongomirror does not migrate: {}",
            names.join(", ")
        ),
        format!("leave them out with {}", exclude.join(" ")),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn v(s: &str) -> Option<Version> {
        Version::parse(s)
    }

    #[test]
    fn versions_from_build_info() {
        // `buildInfo.version` values as servers report them.
        assert_eq!(
            v("8.0.4"),
            Some(Version {
                major: 8,
                minor: 0,
                patch: 4
            })
        );
        assert_eq!(
            v("7.0.12-ent"),
            Some(Version {
                major: 7,
                minor: 0,
                patch: 12
            })
        );
        assert_eq!(
            v("4.4.29-rc1"),
            Some(Version {
                major: 4,
                minor: 4,
                patch: 29
            })
        );
        assert_eq!(v("garbage"), None);
        assert!(check_versions(v("6.0.1"), v("8.0.0"), None, None).is_empty());
        assert!(
            check_versions(v("7.0.1"), v("7.0.0"), None, None).is_empty(),
            "same release, older patch is fine"
        );
        assert!(
            check_versions(v("6.0.1"), v("6.0.1"), Some("6.0"), Some("6.0")).is_empty(),
            "6.0 to 6.0 is allowed"
        );
        let p = check_versions(v("7.0.1"), v("6.0.9"), Some("7.0"), None);
        assert_eq!(p.len(), 1);
        assert!(p[0].what.contains("older than the source's 7.0"), "{p:?}");
        assert!(
            check_versions(v("7.0.1"), v("6.0.9"), Some("6.0"), Some("6.0")).is_empty(),
            "downgrade path with matching FCV"
        );
        let p = check_versions(v("4.2.0"), v("4.0.1"), None, None);
        assert_eq!(p.len(), 3, "{p:?}");
    }

    fn status(roles: &[(&str, &str)], privileges: Vec<Document>) -> Document {
        let roles: Vec<Document> = roles
            .iter()
            .map(|(r, d)| doc! { "role": *r, "db": *d })
            .collect();
        doc! { "authInfo": { "authenticatedUsers": [{ "user": "u", "db": "admin" }], "authenticatedUserRoles": roles, "authenticatedUserPrivileges": privileges }, "ok": 1 }
    }

    #[test]
    fn privileges_by_role_or_by_action() {
        assert!(
            check_privileges(
                Side::Source,
                &doc! { "authInfo": { "authenticatedUsers": [] } }
            )
            .is_empty(),
            "no auth"
        );
        assert!(check_privileges(Side::Source, &status(&[("backup", "admin")], vec![])).is_empty());
        assert!(
            check_privileges(Side::Destination, &status(&[("root", "admin")], vec![])).is_empty()
        );
        let p = check_privileges(Side::Source, &status(&[("read", "app")], vec![]));
        assert_eq!(p.len(), 1);
        assert!(p[0].what.contains("find on local.oplog.rs"), "{p:?}");
        assert!(p[0].fix.contains("backup"), "{p:?}");
        // A custom role granting exactly what is needed passes.
        let privileges = vec![
            doc! { "resource": { "cluster": true }, "actions": ["listDatabases"] },
            doc! { "resource": { "db": "", "collection": "" }, "actions": ["find", "listCollections", "listIndexes"] },
            doc! { "resource": { "db": "local", "collection": "oplog.rs" }, "actions": ["find"] },
        ];
        assert!(check_privileges(
            Side::Source,
            &status(&[("custom", "admin")], privileges.clone())
        )
        .is_empty());
        // The same grants do not let the destination write.
        let p = check_privileges(
            Side::Destination,
            &status(&[("custom", "admin")], privileges),
        );
        assert!(p[0].what.contains("insert on every database"), "{p:?}");
        assert!(p[0].fix.contains("--destinationUsername"), "{p:?}");
    }

    fn index(ns: &str, spec: Document) -> IndexInfo {
        IndexInfo {
            ns: Namespace::parse(ns).unwrap(),
            spec,
        }
    }

    #[test]
    fn ttl_indexes_fail_unless_opted_in_and_restore_commands_are_exact() {
        let indexes = vec![
            index(
                "shop.sessions",
                doc! { "v": 2, "key": { "at": 1 }, "name": "at_1", "expireAfterSeconds": 3600 },
            ),
            index(
                "shop.orders",
                doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
            ),
        ];
        let p = check_ttl(&indexes, false);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].what.contains("shop.sessions (at_1)") && !p[0].what.contains("orders"),
            "{p:?}"
        );
        assert!(check_ttl(&indexes, true).is_empty());
        assert_eq!(
            ttl_restore_commands(&indexes),
            ["db.getSiblingDB(\"shop\").runCommand({collMod: \"sessions\", index: {name: \"at_1\", expireAfterSeconds: 3600}})"]
        );
    }

    #[test]
    fn geo_haystack_fails_for_5_0_destinations() {
        // A listIndexes entry as MongoDB 4.4 reports a geoHaystack index.
        let indexes = vec![index(
            "geo.places",
            doc! { "v": 2, "key": { "pos": "geoHaystack", "type": 1 }, "name": "pos_geoHaystack_type_1", "bucketSize": 1.0 },
        )];
        assert!(check_geo_haystack(&indexes, v("4.4.0")).is_empty());
        let p = check_geo_haystack(&indexes, v("5.0.0"));
        assert!(
            p[0].what.contains("geo.places (pos_geoHaystack_type_1)"),
            "{p:?}"
        );
    }
}
