//! Verification: proves that the destination holds exactly what the source holds, or lists what
//! differs. `--verify` runs it alone (it writes nothing to either side); a guided cutover runs it
//! once the source is quiet and replay has caught up.
//!
//! For every namespace the filter takes, on either side:
//!
//! 1. **Catalog** ([`catalog`]): the same kind, options and indexes; differences the migration's
//!    flags cause on purpose are reported as expected, with the command that removes them.
//! 2. **Documents** ([`documents`]): collections present on both sides are split into `_id`
//!    ranges (as the copy splits them) and compared range by range on `-j` workers, both sides
//!    streamed in `_id` order and merged: the same `_id`s, and for each the same BSON bytes
//!    (field order and numeric types count). Memory stays bounded whatever the collection size.
//! 3. **Recheck**: writes may still be running, so the first pass only yields candidates; after
//!    [`RECHECK_DELAY`] their `_id`s are read again on both sides, up to [`RECHECK_ROUNDS`]
//!    times, and only the differences that remain are reported (the others count as transient).
//!
//! The report ([`report::Report`]) goes to stderr as a table, and to `--verifyReport FILE` as
//! JSON. Exit code 0 means identical, 6 that something differs.

pub mod catalog;
pub mod documents;
pub mod report;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mongodb::bson::{Document, RawDocumentBuf};
use mongodb::Client;
use tokio::task::JoinSet;
use tracing::info;

use crate::catalog::{survey, SourceCollection};
use crate::cli::{Namespace, NamespaceFilter, Options, Verbosity};
use crate::copy::progress::{CollectionProgress, Progress};
use crate::copy::ranges::{self, IdRange};
use crate::error::{ExitCode, Failure, Result};
use crate::status::Status;
use documents::{Candidate, Reading};
use report::{NamespaceReport, Report};

/// The wait before differing documents are read again.
pub const RECHECK_DELAY: Duration = Duration::from_secs(2);
/// The most times differing documents are read again.
pub const RECHECK_ROUNDS: usize = 3;
/// Differing documents per namespace whose `_id`s are kept for the recheck; beyond it, more
/// differences are counted but not read again.
pub const MAX_CANDIDATES: usize = 10_000;
/// Differing documents listed per namespace unless `--verifyMaxDifferences` says otherwise.
pub const DEFAULT_MAX_DIFFERENCES: usize = 10;

/// What a verification compares, and how.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespaces that take part.
    pub filter: NamespaceFilter,
    /// Ranges compared at once (`-j`).
    pub workers: usize,
    /// Differences the migration's flags cause on purpose.
    pub rules: catalog::Rules,
    /// Differing documents listed per namespace.
    pub max_differences: usize,
    /// `--collStatsThreshold`, for the progress totals.
    pub coll_stats_threshold: i64,
    /// Progress bars or lines.
    pub verbosity: Verbosity,
}

impl Settings {
    /// The settings `--verify` (and a cutover) take from the run's options.
    pub fn from_options(options: &Options) -> Self {
        Settings {
            filter: options.filter.clone(),
            workers: options.num_parallel_collections.max(1) as usize,
            rules: catalog::Rules {
                ttl_without_expiry: options.ttl_without_expiry,
                remove_auto_index_id: options.remove_auto_index_id,
            },
            max_differences: options.verify_max_differences,
            coll_stats_threshold: options.coll_stats_threshold,
            verbosity: options.verbosity,
        }
    }
}

/// `--verify`: compares, prints the report, writes `--verifyReport`, and fails with exit code 6
/// when anything differs.
pub async fn run(source: &Client, destination: &Client, options: &Options) -> Result<()> {
    let report = compare(
        source,
        destination,
        &Settings::from_options(options),
        Status::shared(),
    )
    .await?;
    if let Some(path) = &options.verify_report {
        write_report(path, &report)?;
    }
    finish(&report)
}

/// Prints the table and turns the verdict into the run's outcome.
pub fn finish(report: &Report) -> Result<()> {
    crate::copy::progress::suspend(|| eprint!("{}", report.table()));
    let differing = report.namespaces.iter().filter(|n| !n.identical()).count();
    if report.identical {
        info!(
            "verification: the destination matches the source ({} namespaces, {} documents, {:.1}s)",
            report.namespaces.len(),
            report.source_documents,
            report.seconds
        );
        return Ok(());
    }
    Err(Failure::new(
        ExitCode::Differs,
        format!(
            "the destination differs from the source in {differing} of {} namespaces",
            report.namespaces.len()
        ),
    )
    .hint("the table above lists each difference (--verifyReport FILE writes them as JSON)"))
}

/// Writes the report as JSON.
pub fn write_report(path: &Path, report: &Report) -> Result<()> {
    std::fs::write(path, report.json() + "\n").map_err(|e| {
        Failure::runtime(format!(
            "cannot write the verification report to '{}'",
            path.display()
        ))
        .cause(e)
        .hint("check that the directory of --verifyReport exists and is writable")
    })
}

/// Compares the two deployments and returns the report; writes nothing anywhere.
pub async fn compare(
    source: &Client,
    destination: &Client,
    settings: &Settings,
    status: Arc<Status>,
) -> Result<Report> {
    let began = Instant::now();
    info!("verification: listing the namespaces on both sides");
    // Counts and sizes (for ranges and progress) come from the source alone.
    let (src, dst) = tokio::try_join!(
        survey(source, &settings.filter, settings.coll_stats_threshold),
        crate::catalog::list(destination, &settings.filter)
    )?;
    let mut both: BTreeMap<Namespace, (Option<SourceCollection>, Option<SourceCollection>)> =
        BTreeMap::new();
    for c in src {
        let ns = c.ns.clone();
        both.entry(ns).or_default().0 = Some(c);
    }
    for c in dst {
        let ns = c.ns.clone();
        both.entry(ns).or_default().1 = Some(c);
    }
    let mut reports: BTreeMap<Namespace, NamespaceReport> = BTreeMap::new();
    let mut tasks = VecDeque::new();
    let progress = Arc::new(Progress::new(settings.verbosity, status));
    for (ns, (s, d)) in &both {
        let kind = |c: &Option<SourceCollection>| {
            c.as_ref()
                .map_or_else(|| "absent".to_string(), |c| c.kind.clone())
        };
        let mut entry = NamespaceReport {
            namespace: ns.to_string(),
            source_kind: kind(s),
            destination_kind: kind(d),
            ..NamespaceReport::default()
        };
        match (s, d) {
            (Some(s), Some(d)) => {
                (entry.catalog, entry.expected) =
                    catalog::compare(source, destination, s, d, settings.rules).await?;
                if s.kind == "collection" && d.kind == "collection" {
                    tasks.extend(plan(source, s, settings.workers, &progress).await);
                }
            }
            (Some(s), None) => entry
                .catalog
                .push(format!("the {} is missing on the destination", s.kind)),
            (None, Some(d)) => entry
                .catalog
                .push(format!("the {} is only on the destination", d.kind)),
            (None, None) => {}
        }
        reports.insert(ns.clone(), entry);
    }
    info!(
        "verification: comparing the documents of {} collections",
        tasks
            .iter()
            .map(|t: &Task| &t.ns)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    let ticker = crate::copy::progress::LogTicker::start(progress.clone());
    let outcomes = compare_documents(source, destination, tasks, settings.workers).await?;
    drop(ticker);
    let candidates: usize = outcomes.values().map(|(o, _)| o.candidates.len()).sum();
    if candidates > 0 {
        info!(
            "verification: {candidates} documents differ in the first pass; reading them again in {}s, in case writes were in flight",
            RECHECK_DELAY.as_secs()
        );
    }
    for (ns, (outcome, job)) in outcomes {
        let entry = reports.entry(ns.clone()).or_default();
        entry.documents = outcome.counts;
        let candidates = recheck(
            source,
            destination,
            &ns,
            outcome.candidates,
            &mut entry.documents,
        )
        .await?;
        entry.differences = candidates
            .iter()
            .take(settings.max_differences)
            .map(Candidate::describe)
            .collect();
        progress.finish(&job);
    }
    let namespaces: Vec<NamespaceReport> = reports.into_values().collect();
    Ok(Report {
        identical: namespaces.iter().all(NamespaceReport::identical),
        source_documents: namespaces.iter().map(|n| n.documents.compared).sum(),
        namespaces,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// One range of one collection to compare.
struct Task {
    ns: Namespace,
    range: IdRange,
    reading: Reading,
    job: Arc<CollectionProgress>,
}

/// The ranges of a collection, as the copy splits it (a collection with a default collation is
/// read whole, sorted under the simple collation).
async fn plan(
    source: &Client,
    c: &SourceCollection,
    workers: usize,
    progress: &Progress,
) -> Vec<Task> {
    let collated = c
        .options()
        .get_document("collation")
        .is_ok_and(|o| o.get_str("locale") != Ok("simple"));
    let splittable = !collated && !c.is_capped() && !c.is_clustered() && c.has_id_index();
    let pieces = if splittable {
        ranges::range_count(c.documents, workers)
    } else {
        1
    };
    let collection = source.database(&c.ns.db).collection::<Document>(&c.ns.coll);
    let id_ranges = ranges::split(&collection, pieces)
        .await
        .unwrap_or_else(|_| vec![IdRange::default()]);
    let reading = Reading {
        batch: crate::copy::read_batch_documents(c.documents, c.bytes),
        collated,
    };
    let job = progress.start(c.ns.to_string(), c.documents, c.bytes);
    id_ranges
        .into_iter()
        .map(|range| Task {
            ns: c.ns.clone(),
            range,
            reading,
            job: job.clone(),
        })
        .collect()
}

type Compared = BTreeMap<Namespace, (documents::Outcome, Arc<CollectionProgress>)>;

/// Compares every range on `workers` workers; outcomes are merged per namespace.
async fn compare_documents(
    source: &Client,
    destination: &Client,
    tasks: VecDeque<Task>,
    workers: usize,
) -> Result<Compared> {
    let queue = Arc::new(Mutex::new(tasks));
    let merged: Arc<Mutex<Compared>> = Arc::new(Mutex::new(BTreeMap::new()));
    let mut set = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, merged) = (queue.clone(), merged.clone());
        let (source, destination) = (source.clone(), destination.clone());
        set.spawn(async move {
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some(task) = next else {
                    return Ok::<(), Failure>(());
                };
                let side = |client: &Client| {
                    client
                        .database(&task.ns.db)
                        .collection::<RawDocumentBuf>(&task.ns.coll)
                };
                let outcome = documents::compare_range(
                    &side(&source),
                    &side(&destination),
                    &task.range,
                    task.reading,
                    &task.job,
                    MAX_CANDIDATES,
                )
                .await?;
                let mut merged = merged.lock().unwrap_or_else(PoisonError::into_inner);
                let (total, _) = merged
                    .entry(task.ns.clone())
                    .or_insert_with(|| (documents::Outcome::default(), task.job.clone()));
                add(total, outcome);
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        let outcome = joined.map_err(|e| {
            Failure::runtime("internal error: a verification worker stopped unexpectedly").cause(e)
        });
        if let Err(failure) = outcome.and_then(|r| r) {
            set.abort_all();
            return Err(failure);
        }
    }
    let merged = std::mem::take(&mut *merged.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(merged)
}

fn add(total: &mut documents::Outcome, part: documents::Outcome) {
    let (t, p) = (&mut total.counts, part.counts);
    t.compared += p.compared;
    t.destination += p.destination;
    t.missing += p.missing;
    t.extra += p.extra;
    t.different += p.different;
    let room = MAX_CANDIDATES.saturating_sub(total.candidates.len());
    total
        .candidates
        .extend(part.candidates.into_iter().take(room));
}

/// Reads the candidates of a namespace again, up to [`RECHECK_ROUNDS`] times; updates the
/// counts and returns the documents that still differ.
async fn recheck(
    source: &Client,
    destination: &Client,
    ns: &Namespace,
    mut candidates: Vec<Candidate>,
    counts: &mut report::Counts,
) -> Result<Vec<Candidate>> {
    let side = |client: &Client| {
        client
            .database(&ns.db)
            .collection::<RawDocumentBuf>(&ns.coll)
    };
    for _ in 0..RECHECK_ROUNDS {
        if candidates.is_empty() {
            break;
        }
        tokio::time::sleep(RECHECK_DELAY).await;
        let before = candidates.clone();
        candidates = documents::recheck(&side(source), &side(destination), candidates).await?;
        // Each candidate is counted once, under its latest kind: move what changed.
        let now: std::collections::HashMap<&[u8], &documents::Kind> = candidates
            .iter()
            .map(|c| (c.id.as_bytes(), &c.kind))
            .collect();
        for old in &before {
            let now = now.get(old.id.as_bytes()).copied();
            if now == Some(&old.kind) {
                continue;
            }
            match old.kind {
                documents::Kind::Missing => counts.missing -= 1,
                documents::Kind::Extra => counts.extra -= 1,
                documents::Kind::Different(_) => counts.different -= 1,
            }
            match now {
                None => counts.transient += 1,
                Some(documents::Kind::Missing) => counts.missing += 1,
                Some(documents::Kind::Extra) => counts.extra += 1,
                Some(documents::Kind::Different(_)) => counts.different += 1,
            }
        }
    }
    Ok(candidates)
}
