//! The bookmark file: where oplog sync stands, so that a restart resumes instead of recopying.
//!
//! It is versioned, human-readable JSON (documented in docs/bookmark.md), written atomically
//! (temporary file, fsync, rename, fsync of the directory), and only ever names a position whose
//! every entry has been acknowledged by the destination. A file we cannot trust (corrupt, an
//! unknown version, another source replica set) stops the run: it never silently causes a resync.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use mongodb::bson::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{ExitCode, Failure, Result};

/// The format version this build writes.
pub const VERSION: u32 = 2;
/// The format versions this build reads: version 1 has no `catchUp`, and means the same.
pub const READS: &[u32] = &[1, 2];

/// Which stage the run was in when the bookmark was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Initial sync started from `ts` and had not finished: it cannot be resumed.
    InitialSync,
    /// Oplog sync has applied every entry up to and including `ts`.
    OplogSync,
}

/// An oplog position as it appears in the file: `{"t": seconds, "i": increment}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Seconds since the epoch.
    pub t: u32,
    /// Ordinal within the second.
    pub i: u32,
}

impl From<Timestamp> for Position {
    fn from(ts: Timestamp) -> Self {
        Position {
            t: ts.time,
            i: ts.increment,
        }
    }
}

impl From<Position> for Timestamp {
    fn from(p: Position) -> Self {
        Timestamp {
            time: p.t,
            increment: p.i,
        }
    }
}

/// The contents of the bookmark file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bookmark {
    /// Format version; see [`VERSION`].
    pub version: u32,
    /// The source replica set this position belongs to.
    pub source_set_name: String,
    /// The stage the run was in.
    pub phase: Phase,
    /// The oplog position (see [`Phase`] for its meaning).
    pub ts: Position,
    /// The election term of the entry at `ts`, when the source reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<i64>,
    /// Present while oplog sync is still catching up with the copy (see [`CatchUp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// During initial sync: what is copied already (see [`CopyState`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyState>,
    /// The tool that wrote it, for people reading the file.
    pub written_by: String,
    /// When it was written, for people reading the file.
    pub saved_at: String,
}

/// Oplog sync right after a copy: the copy read each document at some moment after the
/// starting point, so replay up to `until` (the newest source entry once the copy was done,
/// or once conflicting documents were last re-read from the source) can meet documents in a
/// later state than its own. Until it passes `until`, unique indexes built by the migration
/// are not unique yet (`relaxedIndexes`), and a write that still meets a duplicate key is
/// settled by reading its document again from the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatchUp {
    /// Replay at or below this position may meet later states of documents.
    pub until: Position,
    /// Unique indexes built without `unique`, converted once replay passes `until`.
    #[serde(default)]
    pub relaxed_indexes: Vec<IndexRef>,
}

/// How far an initial sync got, so that a restart copies only what is left: the catalog, and
/// for each collection whether it is done (documents and indexes), or which of its `_id` ranges
/// are done and how far the others got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CopyState {
    /// The namespaces of the plans that passed preflight, saved before anything is written to
    /// the destination: there, they are this migration's own. A copy resumed after a kill in
    /// the middle of the catalog creation removes the ones it finds instead of refusing them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Every collection and view is created on the destination.
    pub catalog_created: bool,
    /// The collections to copy, in the plan's order.
    pub collections: Vec<CollectionState>,
}

/// One collection of an initial sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectionState {
    /// `db.collection`.
    pub ns: String,
    /// The source's document count estimate (progress total).
    pub documents: u64,
    /// The source's size estimate in bytes.
    pub bytes: u64,
    /// Read in `_id` order, so that a range resumes after the last `_id` copied (otherwise an
    /// unfinished range is copied again from its start: capped and clustered collections).
    pub by_id: bool,
    /// Every document and index is in.
    pub done: bool,
    /// The unique indexes built without `unique` (once done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relaxed_indexes: Vec<String>,
    /// The `_id` ranges (until done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<RangeState>,
    /// The source collection's `info.uuid` (canonical extended JSON) when it was planned, or
    /// when it was last found renamed: a name that no longer holds it was renamed or dropped
    /// meanwhile (see `copy::moved`). None when the source does not give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<serde_json::Value>,
    /// Renamed on the source while it was copied: where it is read from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<MovedTo>,
}

/// Where a collection renamed during its copy is now, on the source. The destination keeps
/// it under its name at the copy's starting point, where replay expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovedTo {
    /// `db.collection` on the source.
    pub ns: String,
    /// The position of the last rename that brought it there.
    pub at: Position,
}

/// One `_id` range of a collection; bounds and positions are canonical extended JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RangeState {
    /// Inclusive lower bound (none: from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    /// Exclusive upper bound (none: to the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    /// Read with `$gte`/`$lt` filters rather than index bounds.
    pub by_filter: bool,
    /// Every document of the range is in.
    pub done: bool,
    /// The last `_id` copied and acknowledged, in `_id` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// One index of one destination collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRef {
    /// `db.collection`.
    pub ns: String,
    /// The index name.
    pub name: String,
}

impl Bookmark {
    /// A bookmark for the current build.
    pub fn new(source_set_name: &str, phase: Phase, ts: Timestamp, term: Option<i64>) -> Self {
        Bookmark {
            version: VERSION,
            source_set_name: source_set_name.to_string(),
            phase,
            ts: ts.into(),
            term,
            catch_up: None,
            copy: None,
            written_by: format!("mongomirror-rs {}", env!("CARGO_PKG_VERSION")),
            saved_at: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        }
    }

    /// The position as a BSON timestamp.
    pub fn timestamp(&self) -> Timestamp {
        self.ts.into()
    }
}

fn untrusted(path: &Path, why: impl std::fmt::Display) -> Failure {
    Failure::new(ExitCode::Preflight, format!("cannot use the bookmark file '{}'", path.display()))
        .cause(why)
        .hint("restore the right bookmark file, or pass --forceDump to start over with a full initial sync")
}

/// Reads the bookmark; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<Bookmark>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(untrusted(path, e)),
    };
    // Read the version first, so an unknown version is reported as such and not as corruption.
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| untrusted(path, format!("it is not valid JSON ({e})")))?
        .get("version")
        .and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if READS.iter().any(|r| u64::from(*r) == v) => {}
        Some(v) => {
            return Err(untrusted(
                path,
                format!("it has format version {v}; this build reads versions 1 and {VERSION}"),
            ))
        }
        None => {
            return Err(untrusted(
                path,
                "it has no format version: it was not written by mongomirror-rs",
            ))
        }
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| untrusted(path, format!("it is corrupt ({e})")))
}

/// Checks that a loaded bookmark belongs to the source we are connected to.
pub fn check_source(path: &Path, bookmark: &Bookmark, source_set_name: &str) -> Result<()> {
    if bookmark.source_set_name == source_set_name {
        return Ok(());
    }
    Err(untrusted(
        path,
        format!(
            "it belongs to source replica set '{}', but the source is '{source_set_name}'",
            bookmark.source_set_name
        ),
    ))
}

/// Writes the bookmark atomically: a crash leaves either the old file or the new one. Callers
/// never save at the same time (two saves would share the temporary file).
pub fn save(path: &Path, bookmark: &Bookmark) -> Result<()> {
    let failed = |e: std::io::Error| {
        Failure::runtime(format!(
            "cannot save the bookmark file '{}'",
            path.display()
        ))
        .cause(e)
        .hint("check that the bookmark's directory exists, is writable and has free space (--bookmarkFile); the run resumes from the last bookmark saved")
    };
    let mut text = serde_json::to_string_pretty(bookmark)
        .map_err(|e| Failure::runtime("cannot encode the bookmark").cause(e))?;
    text.push('\n');
    let tmp = temp_path(path);
    {
        let mut file = File::create(&tmp).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
    }
    fs::rename(&tmp, path).map_err(failed)?;
    // The rename is durable only once the directory entry is.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: u32, i: u32) -> Timestamp {
        Timestamp {
            time: t,
            increment: i,
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mongomirror.bookmark");
        assert_eq!(load(&path).unwrap(), None);
        let b = Bookmark::new("rs0", Phase::OplogSync, ts(1_795_611_783, 5), Some(3));
        save(&path, &b).unwrap();
        assert_eq!(load(&path).unwrap(), Some(b.clone()));
        assert_eq!(b.timestamp(), ts(1_795_611_783, 5));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"phase\": \"oplogSync\""), "{text}");
        assert!(
            text.contains("\"ts\": {\n    \"t\": 1795611783,\n    \"i\": 5\n  }"),
            "{text}"
        );
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn version_1_files_are_read_and_catch_up_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let v1 = r#"{"version": 1, "sourceSetName": "rs0", "phase": "oplogSync",
            "ts": {"t": 5, "i": 6}, "writtenBy": "mongomirror-rs 0.1.0", "savedAt": "x"}"#;
        fs::write(&path, v1).unwrap();
        let b = load(&path).unwrap().unwrap();
        assert_eq!((b.version, b.timestamp(), b.catch_up), (1, ts(5, 6), None));

        let mut b = Bookmark::new("rs0", Phase::OplogSync, ts(7, 1), None);
        b.catch_up = Some(CatchUp {
            until: ts(9, 2).into(),
            relaxed_indexes: vec![IndexRef {
                ns: "app.users".into(),
                name: "email_1".into(),
            }],
        });
        save(&path, &b).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        assert!(text.contains("\"relaxedIndexes\""), "{text}");
        assert_eq!(load(&path).unwrap(), Some(b));
    }

    #[test]
    fn untrusted_files_are_errors_not_resyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        for (text, why) in [
            ("{not json", "not valid JSON"),
            ("{\"version\": 99}", "format version 99"),
            ("{\"ts\": 1}", "no format version"),
            ("{\"version\": 1, \"phase\": \"oplogSync\"}", "corrupt"),
            ("", "not valid JSON"),
        ] {
            fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err();
            assert_eq!(err.exit, ExitCode::Preflight);
            assert!(err.causes.iter().any(|c| c.contains(why)), "{text}: {err}");
            assert!(err.hint.as_deref().unwrap_or("").contains("--forceDump"));
        }
    }

    #[test]
    fn another_source_set_is_refused() {
        let b = Bookmark::new("rs0", Phase::OplogSync, ts(1, 1), None);
        assert!(check_source(Path::new("b"), &b, "rs0").is_ok());
        let err = check_source(Path::new("b"), &b, "other").unwrap_err();
        assert!(
            err.to_string()
                .contains("belongs to source replica set 'rs0'"),
            "{err}"
        );
    }
}
