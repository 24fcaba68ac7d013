//! The copy's progress as the bookmark keeps it ([`CopyState`]), so that a restart copies only
//! what is left.
//!
//! Collections with an `_id` index are read in `_id` order, range by range; after each insert
//! the destination acknowledges, the range's position moves to the last `_id` of that insert. A
//! restart (or a retry after a transient failure) reads the range again from that `_id`
//! (inclusive: that document is replaced, never duplicated). Capped and clustered collections
//! are read in natural order, so an unfinished range of theirs is copied again from its start.
//! A collection whose ranges are all in but whose indexes were not built yet gets its indexes.
//!
//! [`Tracker`] holds the state while workers update it; the bookmark is saved from it every
//! [`SAVE_INTERVAL`] and at each milestone (catalog created, ranges planned, collection done).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mongodb::bson::Bson;

use super::ranges::IdRange;
use crate::bookmark::{CollectionState, CopyState, MovedTo, RangeState};
use crate::cli::Namespace;
use crate::error::{Failure, Result};

/// The most time between two saves of the copy's progress while it changes.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(2);

/// Saves the copy's progress durably (the bookmark).
pub type Save = Arc<dyn Fn(&CopyState) -> Result<()> + Send + Sync>;

/// The copy's progress and how to save it.
#[derive(Clone)]
pub struct Keeper {
    /// The progress.
    pub tracker: Arc<Tracker>,
    /// Writes it to the bookmark.
    pub save: Save,
    /// The namespaces an interrupted run of this migration may have created already (empty for
    /// a fresh copy): the destination holding them is no conflict.
    pub ours: HashSet<Namespace>,
}

/// The copy's progress, shared by the workers.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<CopyState>,
    changed: AtomicBool,
    /// Held while a save writes: see [`Tracker::save`].
    saving: Mutex<()>,
}

impl Tracker {
    /// A tracker starting from `state` (empty for a fresh copy).
    pub fn new(state: CopyState) -> Arc<Tracker> {
        Arc::new(Tracker {
            state: Mutex::new(state),
            changed: AtomicBool::new(false),
            saving: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CopyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn change(&self, f: impl FnOnce(&mut CopyState)) {
        f(&mut self.lock());
        self.changed.store(true, Ordering::Release);
    }

    /// The current state.
    pub fn snapshot(&self) -> CopyState {
        self.lock().clone()
    }

    /// Saves the current state with `save`, and returns what was saved.
    ///
    /// One save at a time, each of the state as it is when that save begins: a periodic save
    /// still running when the copy is stopped can neither write an older state over a newer
    /// one nor race another save for the bookmark's temporary file.
    pub fn save(&self, save: &Save) -> Result<CopyState> {
        let _one = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let state = self.snapshot();
        save(&state)?;
        Ok(state)
    }

    /// Whether the state changed since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    /// The catalog is created on the destination.
    pub fn catalog_created(&self) {
        self.change(|s| s.catalog_created = true);
    }

    /// The collections to copy and their ranges, once planned.
    pub fn planned(&self, collections: Vec<CollectionState>) {
        self.change(|s| s.collections = collections);
    }

    /// Range `range` of collection `collection` holds every document up to `last` (in `_id`
    /// order).
    pub fn advanced(&self, collection: usize, range: usize, last: &Bson) {
        let position = last.clone().into_canonical_extjson();
        self.change(|s| {
            if let Some(r) = s
                .collections
                .get_mut(collection)
                .and_then(|c| c.ranges.get_mut(range))
            {
                r.after = Some(position);
            }
        });
    }

    /// Where range `range` of collection `collection` resumes, if it was read in `_id` order.
    pub fn resume_point(&self, collection: usize, range: usize) -> Result<Option<Bson>> {
        let state = self.lock();
        let position = state
            .collections
            .get(collection)
            .filter(|c| c.by_id)
            .and_then(|c| c.ranges.get(range))
            .and_then(|r| r.after.clone());
        position.map(bson).transpose()
    }

    /// Every document of the range is in.
    pub fn range_done(&self, collection: usize, range: usize) {
        self.change(|s| {
            if let Some(r) = s
                .collections
                .get_mut(collection)
                .and_then(|c| c.ranges.get_mut(range))
            {
                r.done = true;
            }
        });
    }

    /// The collection was renamed while it was copied: it is copied again, whole, from `origin`.
    pub fn moved(&self, collection: usize, origin: &super::copier::Origin) {
        let whole = range_state(&IdRange::default());
        self.change(|s| {
            if let Some(c) = s.collections.get_mut(collection) {
                c.done = false;
                c.ranges = vec![whole];
                c.uuid = origin.uuid.clone().map(Bson::into_canonical_extjson);
                c.moved_to = origin.since.map(|at| MovedTo {
                    ns: origin.source.to_string(),
                    at: at.into(),
                });
            }
        });
    }

    /// The collection's documents and indexes are in; `relaxed` are its unique indexes built
    /// without `unique`.
    pub fn collection_done(&self, collection: usize, relaxed: Vec<String>) {
        self.change(|s| {
            if let Some(c) = s.collections.get_mut(collection) {
                c.done = true;
                c.ranges.clear();
                c.relaxed_indexes = relaxed;
            }
        });
    }
}

/// A range as the bookmark keeps it.
pub fn range_state(range: &IdRange) -> RangeState {
    RangeState {
        min: range.min.clone().map(Bson::into_canonical_extjson),
        max: range.max.clone().map(Bson::into_canonical_extjson),
        by_filter: range.by_filter,
        done: false,
        after: None,
    }
}

/// A range from the bookmark.
pub fn range_from(state: &RangeState) -> Result<IdRange> {
    Ok(IdRange {
        min: state.min.clone().map(bson).transpose()?,
        max: state.max.clone().map(bson).transpose()?,
        by_filter: state.by_filter,
    })
}

fn bson(value: serde_json::Value) -> Result<Bson> {
    Bson::try_from(value).map_err(|e| {
        Failure::runtime("the bookmark holds an _id that is not extended JSON")
            .cause(e)
            .hint("restore the bookmark file, or pass --forceDump --drop to start the copy over")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, Decimal128};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn saves_run_one_at_a_time_and_never_go_back() {
        let tracker = Tracker::new(CopyState::default());
        let writing = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(Mutex::new(Vec::new()));
        let save: Save = Arc::new({
            let (writing, written) = (writing.clone(), written.clone());
            move |state: &CopyState| {
                assert_eq!(
                    writing.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two saves at once"
                );
                std::thread::sleep(Duration::from_micros(200));
                written.lock().unwrap().push(state.namespaces.len());
                writing.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        });
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        tracker.save(&save).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for i in 0..200 {
                    tracker.change(|s| s.namespaces.push(format!("db.c{i}")));
                    std::thread::yield_now();
                }
            });
        });
        let written = written.lock().unwrap();
        assert_eq!(written.len(), 200);
        assert!(
            written.windows(2).all(|w| w[0] <= w[1]),
            "an older state was saved after a newer one: {written:?}"
        );
    }

    #[test]
    fn ranges_and_positions_keep_their_types() {
        let range = IdRange {
            min: Some(Bson::Int64(5)),
            max: Some(Bson::Decimal128("10.5".parse::<Decimal128>().unwrap())),
            by_filter: false,
        };
        let state = range_state(&range);
        let text = serde_json::to_string(&state).unwrap();
        let back: RangeState = serde_json::from_str(&text).unwrap();
        assert_eq!(range_from(&back).unwrap(), range);

        let tracker = Tracker::new(CopyState::default());
        tracker.planned(vec![CollectionState {
            ns: "a.b".into(),
            documents: 10,
            bytes: 100,
            by_id: true,
            done: false,
            relaxed_indexes: vec![],
            ranges: vec![state],
            uuid: None,
            moved_to: None,
        }]);
        assert!(tracker.take_changed());
        assert!(!tracker.take_changed());
        let oid = ObjectId::new();
        tracker.advanced(0, 0, &Bson::ObjectId(oid));
        assert_eq!(
            tracker.resume_point(0, 0).unwrap(),
            Some(Bson::ObjectId(oid))
        );
        let doc_id = Bson::Document(doc! { "k": 1_i32, "j": 2.5 });
        tracker.advanced(0, 0, &doc_id);
        assert_eq!(tracker.resume_point(0, 0).unwrap(), Some(doc_id));
        tracker.range_done(0, 0);
        tracker.collection_done(0, vec!["u_1".into()]);
        let snapshot = tracker.snapshot();
        assert!(snapshot.collections[0].done);
        assert!(snapshot.collections[0].ranges.is_empty());
        assert_eq!(snapshot.collections[0].relaxed_indexes, ["u_1"]);
    }
}
