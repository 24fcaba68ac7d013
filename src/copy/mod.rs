//! Initial sync: the destination catalog, every document, then every index.
//!
//! The stage runs in this order:
//! 1. refuse what cannot be copied (time-series collections), then apply the restart rules
//!    (`destination`): refuse or `--drop` destination namespaces that hold data;
//! 2. create every collection with its options, then the views (`destination`);
//! 3. split large collections into `_id` ranges ([`ranges`]) and copy all ranges on `-j`
//!    workers, largest collections first (`copier`); each collection's indexes are built as soon
//!    as its last range is in ([`crate::indexes`]);
//! 4. log a summary and hand the oplog stage its starting point.
//!
//! The starting point itself is read by the caller *before* the source catalog is listed, so
//! that every write the copy might miss is in the oplog from there on.

mod copier;
mod destination;
pub mod moved;
pub mod progress;
pub mod ranges;
pub mod resume;
pub mod writer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document, Timestamp};
use tracing::{info, warn};

use crate::bookmark::{CollectionState, CopyState, IndexRef};
use crate::catalog::SourceCollection;
use crate::cli::Namespace;
use crate::cli::Options;
use crate::connect::Connected;
use crate::error::{Failure, Result};
use crate::status::Status;
use copier::{Context, Job, Origin, Task};
use progress::Progress;
use ranges::IdRange;
use resume::{Keeper, Save, Tracker};

pub(crate) use copier::read_batch_documents;
pub use copier::INSERTS_IN_FLIGHT;
pub use destination::conflicts;
pub use moved::renamed_since;

/// What the initial sync did, and where the oplog stage starts.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    /// The newest source oplog entry before the copy: replay every entry after it.
    pub start_ts: Timestamp,
    /// Collections created and copied.
    pub collections: usize,
    /// Views created.
    pub views: usize,
    /// Documents copied.
    pub documents: u64,
    /// BSON bytes copied.
    pub bytes: u64,
    /// Wall time of the whole stage.
    pub elapsed: Duration,
    /// Unique indexes built without `unique` until oplog sync has caught up with the copy.
    pub relaxed_indexes: Vec<IndexRef>,
}

/// A failed read or write of the copy, and whether doing it again may succeed.
///
/// Transient failures (network errors, elections, a primary stepping down) are retried by
/// starting the range over: re-inserted documents are replaced by `_id`, so that is safe.
#[derive(Debug)]
pub struct CopyError {
    /// What to tell the operator if it is not retried.
    pub failure: Failure,
    /// Whether the same operation may succeed if tried again.
    pub transient: bool,
}

impl CopyError {
    /// A failure of the driver, classified.
    pub fn driver(failure: Failure, error: mongodb::error::Error) -> Self {
        CopyError {
            transient: crate::error::is_transient(&error),
            failure: failure.cause(error),
        }
    }

    /// A failure that trying again cannot fix.
    pub fn fatal(failure: Failure) -> Self {
        CopyError {
            failure,
            transient: false,
        }
    }
}

impl From<CopyError> for Failure {
    fn from(e: CopyError) -> Failure {
        e.failure
    }
}

/// Adds majority write concern to a command: `run_command` does not apply the client's.
pub(crate) fn with_majority(mut command: Document) -> Document {
    command.insert("writeConcern", doc! { "w": "majority" });
    command
}

/// Runs the initial sync of `plan` (from [`crate::catalog::survey`]), or what is left of it.
///
/// `start_ts` must have been read from the source oplog before `plan` was listed. `keeper`
/// holds the copy's progress: empty for a fresh copy, the bookmark's for a resumed one, in
/// which case the catalog and the collections it lists as done are kept as they are, and the
/// other collections are copied from where their ranges got. It saves the progress to the
/// bookmark at each milestone and every [`resume::SAVE_INTERVAL`] while it changes.
/// Per-namespace progress goes to `status` (the `--httpStatusPort` document) and to the log.
pub async fn run(
    source: &Connected,
    destination: &Connected,
    options: &Options,
    plan: &[SourceCollection],
    start_ts: Timestamp,
    status: &Arc<Status>,
    keeper: &Keeper,
) -> Result<CopyOutcome> {
    let (tracker, save) = (&keeper.tracker, &keeper.save);
    let began = Instant::now();
    if !tracker.snapshot().catalog_created {
        let kept =
            destination::prepare(&destination.client, plan, options.drop, &keeper.ours).await?;
        info!(
            "initial sync starting; the oplog will be replayed from timestamp {}:{}",
            start_ts.time, start_ts.increment
        );
        destination::create(
            &destination.client,
            plan,
            &kept,
            options.remove_auto_index_id,
        )
        .await?;
        tracker.catalog_created();
        tracker.save(save)?;
    } else {
        info!(
            "initial sync starting again; the catalog is created already, and the oplog will be replayed from timestamp {}:{}",
            start_ts.time, start_ts.increment
        );
    }

    let workers = options.num_parallel_collections.max(1) as usize;
    if tracker.snapshot().collections.is_empty() {
        tracker.planned(plan_ranges(source, plan, workers).await);
        tracker.save(save)?;
    }
    let (jobs, tasks) = tasks(&tracker.snapshot())?;
    let progress = Arc::new(Progress::new(options.verbosity, status.clone()));
    let ticker = progress::LogTicker::start(progress.clone());
    let context = Arc::new(Context {
        source: source.client.clone(),
        destination: destination.client.clone(),
        progress,
        index_restore: (!options.no_index_restore).then_some(crate::indexes::SpecRules {
            ttl_without_expiry: options.ttl_without_expiry,
        }),
        tracker: tracker.clone(),
        save: save.clone(),
        start_ts,
        filter: options.filter.clone(),
    });
    if options.no_index_restore {
        info!("--noIndexRestore: indexes are not built");
    }
    let saver = Saver::start(tracker.clone(), save.clone());
    let copied = copier::run(context, tasks, workers).await;
    // No periodic save after the final one below (the tracker keeps saves in order anyway).
    saver.stop().await;
    drop(ticker);
    copied?;
    let state = tracker.save(save)?;
    let relaxed_indexes = state
        .collections
        .iter()
        .flat_map(|c| {
            let ns = Namespace::parse(&c.ns).unwrap_or_else(|_| Namespace::new("", &c.ns));
            c.relaxed_indexes
                .iter()
                .map(move |name| crate::oplog::catchup::index_ref(&ns, name))
        })
        .collect();

    let (documents, bytes) = jobs
        .iter()
        .map(|j| j.copied())
        .fold((0, 0), |(d, b), (jd, jb)| (d + jd, b + jb));
    let outcome = CopyOutcome {
        start_ts,
        collections: state.collections.len(),
        views: plan.iter().filter(|c| c.kind == "view").count(),
        documents,
        bytes,
        elapsed: began.elapsed(),
        relaxed_indexes,
    };
    let seconds = outcome.elapsed.as_secs_f64();
    info!(
        "initial sync completed: {} collections, {} views, {} documents, {} bytes in {:.1}s ({:.0} docs/s)",
        outcome.collections,
        outcome.views,
        outcome.documents,
        outcome.bytes,
        seconds,
        outcome.documents as f64 / seconds.max(0.001)
    );
    Ok(outcome)
}

/// Saves the copy's progress every [`resume::SAVE_INTERVAL`] while it changes, until stopped
/// or dropped.
struct Saver(Option<tokio::task::JoinHandle<()>>);

impl Saver {
    fn start(tracker: Arc<Tracker>, save: Save) -> Self {
        Saver(Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(resume::SAVE_INTERVAL);
            loop {
                interval.tick().await;
                if tracker.take_changed() {
                    if let Err(failure) = tracker.save(&save) {
                        warn!("{}", failure.message);
                    }
                }
            }
        })))
    }

    /// Stops the periodic saves, waiting for a save in progress to finish: aborting a task only
    /// takes effect at its next await, and a save has none.
    async fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Every collection of the plan (views have no data) with its `_id` ranges, largest first.
async fn plan_ranges(
    source: &Connected,
    plan: &[SourceCollection],
    workers: usize,
) -> Vec<CollectionState> {
    let mut out = Vec::new();
    for c in plan.iter().filter(|c| c.kind == "collection") {
        // Capped collections keep insertion order; clustered ones have no separate `_id` index.
        let by_id = !c.is_capped() && !c.is_clustered() && c.has_id_index();
        let pieces = if by_id {
            ranges::range_count(c.documents, workers)
        } else {
            1
        };
        let collection = source
            .client
            .database(&c.ns.db)
            .collection::<Document>(&c.ns.coll);
        let id_ranges = match ranges::split(&collection, pieces).await {
            Ok(r) => r,
            Err(e) => {
                warn!(
                    "cannot split {} into _id ranges, copying it with one reader: {e}",
                    c.ns
                );
                vec![IdRange::default()]
            }
        };
        out.push(CollectionState {
            ns: c.ns.to_string(),
            documents: c.documents,
            bytes: c.bytes,
            by_id,
            done: false,
            relaxed_indexes: Vec::new(),
            ranges: id_ranges.iter().map(resume::range_state).collect(),
            uuid: moved::uuid_of(&c.spec).map(mongodb::bson::Bson::into_canonical_extjson),
            moved_to: None,
        });
    }
    out
}

/// Where a collection of the bookmark is read from.
fn origin(ns: &Namespace, c: &CollectionState) -> Result<Origin> {
    let untrusted = |what: &str| {
        Failure::runtime(format!("the bookmark holds {what} for {ns}"))
            .hint("restore the bookmark file, or pass --forceDump --drop to start the copy over")
    };
    let uuid = c
        .uuid
        .clone()
        .map(mongodb::bson::Bson::try_from)
        .transpose()
        .map_err(|e| untrusted("a UUID that is not extended JSON").cause(e))?;
    let (source, since) = match &c.moved_to {
        Some(m) => (
            Namespace::parse(&m.ns)
                .map_err(|e| untrusted("a renamed namespace that is not one").cause(e))?,
            Some(m.at.into()),
        ),
        None => (ns.clone(), None),
    };
    Ok(Origin {
        source,
        uuid,
        since,
    })
}

/// The jobs of the collections not done yet, and their work: the ranges left, or the indexes
/// of a collection whose documents are all in.
fn tasks(state: &CopyState) -> Result<(Vec<Arc<Job>>, VecDeque<Task>)> {
    let mut jobs = Vec::new();
    let mut tasks = VecDeque::new();
    for (index, c) in state
        .collections
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.done)
    {
        let ns = Namespace::parse(&c.ns).map_err(|e| {
            Failure::runtime(format!("the bookmark names a collection '{}'", c.ns))
                .cause(e)
                .hint(
                    "restore the bookmark file, or pass --forceDump --drop to start the copy over",
                )
        })?;
        let id_ranges = c
            .ranges
            .iter()
            .map(resume::range_from)
            .collect::<Result<Vec<_>>>()?;
        let left: Vec<usize> = (0..c.ranges.len()).filter(|r| !c.ranges[*r].done).collect();
        let job = Job::new(
            index,
            ns.clone(),
            (c.documents, c.bytes),
            c.by_id,
            &id_ranges,
            left.len(),
        );
        let job = Arc::new(job.with_origin(origin(&ns, c)?));
        if left.is_empty() {
            tasks.push_back(Task {
                job: job.clone(),
                range: None,
            });
        }
        tasks.extend(left.into_iter().map(|r| Task {
            job: job.clone(),
            range: Some((r, id_ranges[r].clone())),
        }));
        jobs.push(job);
    }
    Ok((jobs, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bookmark::MovedTo;
    use mongodb::bson::{spec::BinarySubtype, Binary, Bson};

    /// A collection found renamed is saved with where it went, and a restart reads it from
    /// there, whole, with the UUID it has there.
    #[test]
    fn a_renamed_collection_resumes_from_where_it_went() {
        let ns = Namespace::new("app", "staging");
        let planned = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![1; 16],
        });
        let tracker = Tracker::new(CopyState {
            collections: vec![CollectionState {
                ns: ns.to_string(),
                documents: 10,
                bytes: 100,
                by_id: true,
                done: false,
                relaxed_indexes: vec![],
                ranges: vec![
                    resume::range_state(&IdRange::default()),
                    resume::range_state(&IdRange::default()),
                ],
                uuid: Some(planned.clone().into_canonical_extjson()),
                moved_to: None,
            }],
            ..CopyState::default()
        });
        let first = origin(&ns, &tracker.snapshot().collections[0]).unwrap();
        assert_eq!(first.source, ns);
        assert_eq!(first.uuid, Some(planned));
        assert_eq!(first.since, None);

        let now = Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![2; 16],
        });
        let at = Timestamp {
            time: 7,
            increment: 3,
        };
        tracker.moved(
            0,
            &Origin {
                source: Namespace::new("app", "live"),
                uuid: Some(now.clone()),
                since: Some(at),
            },
        );
        let text = serde_json::to_string(&tracker.snapshot()).unwrap();
        let back: CopyState = serde_json::from_str(&text).unwrap();
        let c = &back.collections[0];
        assert_eq!(c.ranges.len(), 1, "copied again whole: {text}");
        assert!(!c.done && !c.ranges[0].done);
        let again = origin(&ns, c).unwrap();
        assert_eq!(again.source, Namespace::new("app", "live"));
        assert_eq!(again.uuid, Some(now));
        assert_eq!(again.since, Some(at));
        let (jobs, tasks) = tasks(&back).unwrap();
        assert_eq!((jobs.len(), tasks.len()), (1, 1));
    }

    fn staging() -> CollectionState {
        CollectionState {
            ns: "app.staging".into(),
            documents: 1,
            bytes: 1,
            by_id: true,
            done: false,
            relaxed_indexes: vec![],
            ranges: vec![resume::range_state(&IdRange::default())],
            uuid: None,
            moved_to: None,
        }
    }

    /// A bookmark edited by hand into a UUID or a renamed namespace that cannot be read is a
    /// clear error with a hint, never a copy from the wrong place.
    #[test]
    fn an_unreadable_origin_in_the_bookmark_is_refused() {
        let ns = Namespace::new("app", "staging");
        let mut bad_uuid = staging();
        bad_uuid.uuid = Some(serde_json::json!({ "$numberLong": "not a number" }));
        let failure = origin(&ns, &bad_uuid).unwrap_err();
        assert_eq!(
            failure.message,
            "the bookmark holds a UUID that is not extended JSON for app.staging"
        );
        assert!(failure.hint.unwrap().contains("--forceDump --drop"));

        let mut bad_ns = staging();
        bad_ns.moved_to = Some(MovedTo {
            ns: "no-collection".into(),
            at: Timestamp {
                time: 1,
                increment: 1,
            }
            .into(),
        });
        let failure = origin(&ns, &bad_ns).unwrap_err();
        assert_eq!(
            failure.message,
            "the bookmark holds a renamed namespace that is not one for app.staging"
        );
        assert!(failure.hint.is_some());
    }
}
