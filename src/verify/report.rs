//! The verification report: one entry per namespace, as a table for people and as JSON for
//! runbooks (`--verifyReport FILE`, and the reply of `POST /cutover`).

use std::fmt::Write as _;

use serde::Serialize;

/// What a verification found.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Whether the destination holds exactly what the source holds (expected differences aside).
    pub identical: bool,
    /// Namespaces compared.
    pub namespaces: Vec<NamespaceReport>,
    /// Documents read on the source, all namespaces together.
    pub source_documents: u64,
    /// Wall time of the verification, in seconds.
    pub seconds: f64,
}

/// One namespace: its catalog entry, its indexes and its documents.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceReport {
    /// `db.collection`.
    pub namespace: String,
    /// `collection`, `view` or `timeseries` on the source (`absent` when only the destination
    /// has it).
    pub source_kind: String,
    /// The same on the destination (`absent` when it is missing there).
    pub destination_kind: String,
    /// Catalog differences: kind, options, indexes.
    pub catalog: Vec<String>,
    /// Differences the migration's own flags cause, with the command that removes each.
    pub expected: Vec<Expected>,
    /// Document counts.
    pub documents: Counts,
    /// The first differing documents (up to the report's limit).
    pub differences: Vec<DocumentDifference>,
}

impl NamespaceReport {
    /// Whether this namespace is identical on both sides (expected differences aside).
    pub fn identical(&self) -> bool {
        self.catalog.is_empty()
            && self.documents.missing == 0
            && self.documents.extra == 0
            && self.documents.different == 0
    }
}

/// A difference the migration causes on purpose, and how to remove it at cutover.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// What differs.
    pub what: String,
    /// The command that makes the destination match (a shell line).
    pub fix: String,
}

/// Document counts of one namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Documents read on the source.
    pub compared: u64,
    /// Documents read on the destination.
    pub destination: u64,
    /// On the source, not on the destination.
    pub missing: u64,
    /// On the destination, not on the source.
    pub extra: u64,
    /// On both, with other bytes.
    pub different: u64,
    /// Differences the first pass found that a later read no longer showed (writes in flight).
    pub transient: u64,
}

/// One document that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentDifference {
    /// The `_id`, as canonical extended JSON.
    pub id: String,
    /// `missing`, `extra` or `different`.
    pub kind: String,
    /// For `different`: the top-level fields that differ (a field only on one side, another
    /// value or type, or `(field order)` when only the order differs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

impl Report {
    /// The report as a table, with the differing documents and catalog entries under it.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 7]> = vec![[
            "namespace".into(),
            "documents".into(),
            "missing".into(),
            "extra".into(),
            "different".into(),
            "transient".into(),
            "catalog".into(),
        ]];
        for n in &self.namespaces {
            let d = n.documents;
            let catalog = match (n.catalog.len(), n.expected.len()) {
                (0, 0) => "ok".to_string(),
                (0, e) => format!("ok ({e} expected)"),
                (c, _) => format!("{c} differences"),
            };
            rows.push([
                n.namespace.clone(),
                d.compared.to_string(),
                d.missing.to_string(),
                d.extra.to_string(),
                d.different.to_string(),
                d.transient.to_string(),
                catalog,
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| match c {
                    0 | 6 => format!("{cell:<w$}", w = widths[c]),
                    _ => format!("{cell:>w$}", w = widths[c]),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        for n in &self.namespaces {
            for c in &n.catalog {
                let _ = writeln!(out, "{}: {c}", n.namespace);
            }
            for e in &n.expected {
                let _ = writeln!(
                    out,
                    "{}: expected: {} (at cutover: {})",
                    n.namespace, e.what, e.fix
                );
            }
            for d in &n.differences {
                let fields = if d.fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", d.fields.join(", "))
                };
                let _ = writeln!(out, "{}: _id {}: {}{fields}", n.namespace, d.id, d.kind);
            }
        }
        out
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_up_and_lists_what_differs() {
        let report = Report {
            identical: false,
            namespaces: vec![
                NamespaceReport {
                    namespace: "app.users".into(),
                    documents: Counts {
                        compared: 1200,
                        destination: 1199,
                        missing: 1,
                        ..Counts::default()
                    },
                    differences: vec![DocumentDifference {
                        id: "{\"$numberInt\":\"7\"}".into(),
                        kind: "missing".into(),
                        fields: vec![],
                    }],
                    ..NamespaceReport::default()
                },
                NamespaceReport {
                    namespace: "app.v".into(),
                    catalog: vec!["view pipeline differs".into()],
                    ..NamespaceReport::default()
                },
            ],
            source_documents: 1200,
            seconds: 0.5,
        };
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "namespace  documents  missing  extra  different  transient  catalog"
        );
        assert_eq!(
            lines[1],
            "app.users       1200        1      0          0          0  ok"
        );
        assert_eq!(
            lines[2],
            "app.v              0        0      0          0          0  1 differences"
        );
        assert_eq!(lines[3], "app.users: _id {\"$numberInt\":\"7\"}: missing");
        assert_eq!(lines[4], "app.v: view pipeline differs");
        assert!(report.json().contains("\"identical\": false"));
        assert!(!report.namespaces[0].identical());
    }
}
