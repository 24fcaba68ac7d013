//! Namespaces (`db.collection`) and the include/exclude filter built from the namespace flags.

use std::fmt;

/// Databases that are never copied: users, roles, the oplog and cluster metadata stay behind.
pub const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];

/// Characters MongoDB forbids in database names.
const BAD_DB_CHARS: &[char] = &['/', '\\', '.', ' ', '"', '$', '\0'];

/// A `database.collection` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    /// The database name.
    pub db: String,
    /// The collection name; it may itself contain dots.
    pub coll: String,
}

impl Namespace {
    /// A namespace from its two parts.
    pub fn new(db: impl Into<String>, coll: impl Into<String>) -> Self {
        Namespace {
            db: db.into(),
            coll: coll.into(),
        }
    }

    /// Parses `db.collection`, splitting at the first dot.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some((db, coll)) = s.split_once('.') else {
            return Err(format!(
                "'{s}' is not a namespace: expected <database>.<collection>"
            ));
        };
        check_db_name(db)?;
        if coll.is_empty() {
            return Err(format!("'{s}' has an empty collection name"));
        }
        if coll.contains('\0') {
            return Err(format!("'{s}' has a NUL character in its collection name"));
        }
        Ok(Namespace::new(db, coll))
    }

    /// Value parser for `--includeNamespace`/`--excludeNamespace`.
    pub(crate) fn parse_flag(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }

    /// Value parser for `--includeDB`/`--excludeDB`.
    pub(crate) fn parse_db_flag(s: &str) -> Result<String, String> {
        check_db_name(s).map(|()| s.to_string())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.coll)
    }
}

fn check_db_name(db: &str) -> Result<(), String> {
    if db.is_empty() {
        return Err("the database name is empty".to_string());
    }
    if let Some(c) = db.chars().find(|c| BAD_DB_CHARS.contains(c)) {
        return Err(format!(
            "database name '{db}' contains the forbidden character {c:?}"
        ));
    }
    if db.len() >= 64 {
        return Err(format!("database name '{db}' is longer than 63 bytes"));
    }
    Ok(())
}

/// Which namespaces take part in the migration.
///
/// With no include flags everything is included. Includes combine as a union; an exclude always
/// wins. The system databases (`admin`, `local`, `config`) are never included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFilter {
    /// `--includeNamespace` values.
    pub include_namespaces: Vec<Namespace>,
    /// `--includeDB` values.
    pub include_dbs: Vec<String>,
    /// `--excludeNamespace` values.
    pub exclude_namespaces: Vec<Namespace>,
    /// `--excludeDB` values.
    pub exclude_dbs: Vec<String>,
}

impl NamespaceFilter {
    fn has_includes(&self) -> bool {
        !self.include_namespaces.is_empty() || !self.include_dbs.is_empty()
    }

    /// Whether any collection of database `db` can take part.
    pub fn wants_db(&self, db: &str) -> bool {
        if SYSTEM_DATABASES.contains(&db) || self.exclude_dbs.iter().any(|d| d == db) {
            return false;
        }
        !self.has_includes()
            || self.include_dbs.iter().any(|d| d == db)
            || self.include_namespaces.iter().any(|n| n.db == db)
    }

    /// Whether namespace `ns` takes part.
    pub fn wants(&self, ns: &Namespace) -> bool {
        if !self.wants_db(&ns.db) || self.exclude_namespaces.contains(ns) {
            return false;
        }
        !self.has_includes()
            || self.include_dbs.contains(&ns.db)
            || self.include_namespaces.contains(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_splits_at_first_dot() {
        let ns = Namespace::parse("db.a.b").unwrap();
        assert_eq!((ns.db.as_str(), ns.coll.as_str()), ("db", "a.b"));
        assert!(Namespace::parse("nodot")
            .unwrap_err()
            .contains("expected <database>.<collection>"));
        assert!(Namespace::parse(".c").is_err());
        assert!(Namespace::parse("d.").is_err());
        assert!(Namespace::parse("a b.c").is_err());
    }

    #[test]
    fn filter_unions_includes_and_exclusion_wins() {
        let f = NamespaceFilter {
            include_namespaces: vec![Namespace::new("a", "x")],
            include_dbs: vec!["b".into()],
            exclude_namespaces: vec![Namespace::new("b", "secret")],
            exclude_dbs: vec![],
        };
        assert!(f.wants(&Namespace::new("a", "x")));
        assert!(!f.wants(&Namespace::new("a", "y")));
        assert!(f.wants(&Namespace::new("b", "anything")));
        assert!(!f.wants(&Namespace::new("b", "secret")));
        assert!(!f.wants(&Namespace::new("c", "x")));
        assert!(f.wants_db("a") && f.wants_db("b") && !f.wants_db("c"));
    }

    #[test]
    fn empty_filter_takes_all_but_system_databases() {
        let f = NamespaceFilter {
            exclude_dbs: vec!["junk".into()],
            ..Default::default()
        };
        assert!(f.wants(&Namespace::new("app", "users")));
        assert!(!f.wants(&Namespace::new("junk", "users")));
        for db in SYSTEM_DATABASES {
            assert!(!f.wants_db(db));
        }
    }
}
