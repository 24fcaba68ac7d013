//! The run's status, and the HTTP endpoint that serves it (`--httpStatusPort`): mongomirror's
//! JSON at `GET /`, Prometheus metrics at `GET /metrics`, and the guided cutover at
//! `POST /cutover` ([`server`]).
//!
//! Stages report into one shared [`Status`]; the server only reads it. The JSON keeps
//! mongomirror's shape (`stage`, `phase`, `details` with packed 64-bit timestamps and one object
//! per namespace, `errorMessage`) and adds `lagSeconds`.

pub mod metrics;
pub mod server;

pub use server::serve;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mongodb::bson::Timestamp;
use serde_json::{json, Map, Value};

use crate::bookmark::CatchUp;
use crate::error::Failure;

/// mongomirror's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Started; nothing copied yet.
    Initializing,
    /// Copying documents and indexes (while the oplog is spooled).
    InitialSync,
    /// Tailing and applying the oplog.
    OplogSync,
    /// A guided cutover: waiting for a quiet source, then verifying.
    Cutover,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Initializing => "initializing",
            Stage::InitialSync => "initial sync",
            Stage::OplogSync => "oplog sync",
            Stage::Cutover => "cutover",
        }
    }
}

/// Progress of one namespace during initial sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceStatus {
    /// All documents (and indexes) are in.
    pub complete: bool,
    /// Documents copied so far.
    pub copied_docs: u64,
    /// BSON bytes copied so far.
    pub copied_bytes: u64,
    /// Size of the collection on the source.
    pub total_bytes: u64,
    /// Indexes built or to build.
    pub create_indexes: u64,
}

/// Oplog replay counters, by kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedOps {
    /// Document writes acknowledged.
    pub writes: u64,
    /// DDL commands applied.
    pub commands: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// Entries skipped (no-ops, internal, filtered).
    pub skipped: u64,
    /// Partial updates of missing documents skipped.
    pub missing: u64,
}

#[derive(Debug)]
struct State {
    stage: Stage,
    phase: String,
    namespaces: BTreeMap<String, NamespaceStatus>,
    current: Option<Timestamp>,
    latest: Option<Timestamp>,
    last_write: Option<Timestamp>,
    lag: Option<u32>,
    error: Option<String>,
    applied: AppliedOps,
    spool_bytes: u64,
    bookmark_saved: Option<Instant>,
    catch_up: Option<(CatchUp, usize)>,
}

/// The run's status, shared by every stage and the server.
#[derive(Debug)]
pub struct Status {
    state: Mutex<State>,
}

/// mongomirror's timestamp encoding: seconds in the high 32 bits, the increment in the low.
pub fn packed(ts: Timestamp) -> i64 {
    (i64::from(ts.time) << 32) | i64::from(ts.increment)
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: Mutex::new(State {
                stage: Stage::Initializing,
                phase: String::new(),
                namespaces: BTreeMap::new(),
                current: None,
                latest: None,
                last_write: None,
                lag: None,
                error: None,
                applied: AppliedOps::default(),
                spool_bytes: 0,
                bookmark_saved: None,
                catch_up: None,
            }),
        }
    }
}

impl Status {
    /// A fresh status, shared.
    pub fn shared() -> Arc<Status> {
        Arc::new(Status::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to a stage and phase.
    pub fn set_stage(&self, stage: Stage, phase: &str) {
        let mut s = self.lock();
        s.stage = stage;
        s.phase = phase.to_string();
    }

    /// Updates one namespace's copy progress.
    pub fn update_namespace(&self, ns: &str, update: impl FnOnce(&mut NamespaceStatus)) {
        update(self.lock().namespaces.entry(ns.to_string()).or_default());
    }

    /// Records oplog positions: last applied, newest on the source, newest real write.
    pub fn set_positions(
        &self,
        current: Option<Timestamp>,
        latest: Option<Timestamp>,
        last_write: Option<Timestamp>,
    ) {
        let mut s = self.lock();
        s.current = current.or(s.current);
        s.latest = latest.or(s.latest);
        s.last_write = last_write.or(s.last_write);
    }

    /// Records the lag in seconds.
    pub fn set_lag(&self, seconds: u32) {
        self.lock().lag = Some(seconds);
    }

    /// Records replay counters.
    pub fn set_applied(&self, applied: AppliedOps) {
        self.lock().applied = applied;
    }

    /// Records the spool's size on disk.
    pub fn set_spool_bytes(&self, bytes: u64) {
        self.lock().spool_bytes = bytes;
    }

    /// Records whether oplog sync still catches up with the copy: its mark, and how many
    /// documents wait to be read again from the source.
    pub fn set_catch_up(&self, catch_up: Option<(CatchUp, usize)>) {
        self.lock().catch_up = catch_up;
    }

    /// Notes that the bookmark was just saved.
    pub fn bookmark_saved(&self) {
        self.lock().bookmark_saved = Some(Instant::now());
    }

    /// Records a runtime error (the process keeps serving it).
    pub fn set_error(&self, failure: &Failure) {
        self.lock().error = Some(failure.lines().join(" "));
    }

    /// mongomirror's JSON document.
    pub fn json(&self) -> Value {
        let s = self.lock();
        let mut details = Map::new();
        let stamp = |ts: Option<Timestamp>| ts.map(|t| json!(packed(t)));
        if s.stage != Stage::Initializing {
            for (key, ts) in [
                ("currentTimestamp", s.current),
                ("latestTimestamp", s.latest),
                ("lastWriteOnSourceTimestamp", s.last_write),
            ] {
                if let Some(v) = stamp(ts) {
                    details.insert(key.into(), v);
                }
            }
        }
        if s.stage == Stage::InitialSync {
            for (ns, n) in &s.namespaces {
                details.insert(
                    ns.clone(),
                    json!({ "complete": n.complete, "copiedBytes": n.copied_bytes, "totalBytes": n.total_bytes, "createIndexes": n.create_indexes }),
                );
            }
        }
        if let (Stage::OplogSync, Some((mark, waiting))) = (s.stage, &s.catch_up) {
            details.insert(
                "catchUpUntilTimestamp".into(),
                json!(packed(mark.until.into())),
            );
            details.insert(
                "uniqueIndexesPending".into(),
                json!(mark.relaxed_indexes.len()),
            );
            details.insert("conflictingDocumentsPending".into(), json!(waiting));
        }
        let mut out = Map::new();
        out.insert("stage".into(), json!(s.stage.as_str()));
        let phase = match (s.stage, &s.catch_up) {
            (Stage::OplogSync, Some(_)) => "catching up with the initial sync",
            _ => s.phase.as_str(),
        };
        if !phase.is_empty() {
            out.insert("phase".into(), json!(phase));
        }
        out.insert("details".into(), Value::Object(details));
        if let Some(e) = &s.error {
            out.insert("errorMessage".into(), json!(e));
        }
        if let Some(lag) = s.lag {
            out.insert("lagSeconds".into(), json!(lag));
        }
        Value::Object(out)
    }

    /// The metrics, as OpenMetrics text (what Prometheus scrapes); see [`metrics`].
    pub fn metrics(&self) -> String {
        let s = self.lock();
        metrics::encode(&metrics::Snapshot {
            namespaces: s
                .namespaces
                .iter()
                .map(|(ns, n)| (ns.clone(), n.copied_docs, n.copied_bytes))
                .collect(),
            applied: s.applied,
            lag: s.lag,
            spool_bytes: s.spool_bytes,
            bookmark_age: s.bookmark_saved.map(|at| at.elapsed().as_secs_f64()),
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_follows_the_stage() {
        let s = Status::default();
        assert_eq!(s.json(), json!({ "stage": "initializing", "details": {} }));
        s.set_stage(Stage::InitialSync, "copying documents");
        s.update_namespace("db.c", |n| {
            n.copied_bytes = 10;
            n.total_bytes = 20;
        });
        s.set_positions(
            Some(Timestamp {
                time: 2,
                increment: 1,
            }),
            None,
            None,
        );
        let j = s.json();
        assert_eq!(j["stage"], "initial sync");
        assert_eq!(
            j["details"]["db.c"],
            json!({ "complete": false, "copiedBytes": 10, "totalBytes": 20, "createIndexes": 0 })
        );
        assert_eq!(j["details"]["currentTimestamp"], json!((2i64 << 32) | 1));
        s.set_stage(Stage::OplogSync, "applying oplog entries");
        s.set_lag(3);
        s.set_error(&Failure::runtime("boom").hint("fix"));
        let j = s.json();
        assert!(j["details"].get("db.c").is_none());
        assert_eq!(j["lagSeconds"], 3);
        assert_eq!(j["errorMessage"], "Failed: boom   hint: fix");
    }

    #[test]
    fn catching_up_with_the_copy_shows_what_waits() {
        let s = Status::default();
        s.set_stage(Stage::OplogSync, "applying oplog entries");
        let mark = CatchUp {
            until: crate::bookmark::Position { t: 5, i: 2 },
            relaxed_indexes: vec![crate::bookmark::IndexRef {
                ns: "app.users".into(),
                name: "email_1".into(),
            }],
        };
        s.set_catch_up(Some((mark, 3)));
        let j = s.json();
        assert_eq!(j["phase"], "catching up with the initial sync");
        assert_eq!(
            j["details"]["catchUpUntilTimestamp"],
            json!((5i64 << 32) | 2)
        );
        assert_eq!(j["details"]["uniqueIndexesPending"], 1);
        assert_eq!(j["details"]["conflictingDocumentsPending"], 3);
        s.set_catch_up(None);
        let j = s.json();
        assert_eq!(j["phase"], "applying oplog entries");
        assert!(j["details"].get("uniqueIndexesPending").is_none());
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let s = Status::default();
        s.update_namespace("a.\"b", |n| n.copied_docs = 5);
        s.set_lag(0);
        s.bookmark_saved();
        let text = s.metrics();
        assert!(
            text.contains("mongomirror_copied_documents_total{namespace=\"a.\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("mongomirror_applied_ops_total{kind=\"write\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mongomirror_lag_seconds gauge\nmongomirror_lag_seconds 0\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad sample {line}"));
        }
    }
}
