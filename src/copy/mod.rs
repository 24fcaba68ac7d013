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
pub mod progress;
pub mod ranges;
pub mod writer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document, Timestamp};
use tracing::{info, warn};

use crate::bookmark::IndexRef;
use crate::catalog::SourceCollection;
use crate::cli::Options;
use crate::connect::Connected;
use crate::error::{Failure, Result};
use crate::status::Status;
use copier::{Context, Job, Task};
use progress::Progress;
use ranges::IdRange;

pub(crate) use copier::read_batch_documents;
pub use destination::conflicts;

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

/// Runs the initial sync of `plan` (from [`crate::catalog::survey`]).
///
/// `start_ts` must have been read from the source oplog before `plan` was listed. Per-namespace
/// progress goes to `status` (the `--httpStatusPort` document) as well as to the log.
pub async fn run(
    source: &Connected,
    destination: &Connected,
    options: &Options,
    plan: &[SourceCollection],
    start_ts: Timestamp,
    status: &Arc<Status>,
) -> Result<CopyOutcome> {
    let began = Instant::now();
    let kept = destination::prepare(&destination.client, plan, options.drop).await?;
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

    let workers = options.num_parallel_collections.max(1) as usize;
    let (jobs, tasks) = plan_tasks(source, plan, workers).await;
    let progress = Arc::new(Progress::new(options.verbosity, status.clone()));
    let ticker = progress::LogTicker::start(progress.clone());
    let context = Arc::new(Context {
        source: source.client.clone(),
        destination: destination.client.clone(),
        progress,
        index_restore: (!options.no_index_restore).then_some(crate::indexes::SpecRules {
            ttl_without_expiry: options.ttl_without_expiry,
        }),
        relaxed: std::sync::Mutex::new(Vec::new()),
    });
    if options.no_index_restore {
        info!("--noIndexRestore: indexes are not built");
    }
    copier::run(context.clone(), tasks, workers).await?;
    drop(ticker);
    let relaxed_indexes = std::mem::take(
        &mut *context
            .relaxed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );

    let (documents, bytes) = jobs
        .iter()
        .map(|j| j.copied())
        .fold((0, 0), |(d, b), (jd, jb)| (d + jd, b + jb));
    let outcome = CopyOutcome {
        start_ts,
        collections: jobs.len(),
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

/// One job per collection (views have no data), each with its ranges, queued largest first.
async fn plan_tasks(
    source: &Connected,
    plan: &[SourceCollection],
    workers: usize,
) -> (Vec<Arc<Job>>, VecDeque<Task>) {
    let mut jobs = Vec::new();
    let mut tasks = VecDeque::new();
    for c in plan.iter().filter(|c| c.kind == "collection") {
        // Capped collections keep insertion order; clustered ones have no separate `_id` index.
        let splittable = !c.is_capped() && !c.is_clustered() && c.has_id_index();
        let pieces = if splittable {
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
        let job = Arc::new(Job::new(c.ns.clone(), c.documents, c.bytes, &id_ranges));
        tasks.extend(id_ranges.into_iter().map(|range| Task {
            job: job.clone(),
            range,
        }));
        jobs.push(job);
    }
    (jobs, tasks)
}
