//! The copy itself: `-j` workers take `_id` ranges from one queue, largest collections first.
//!
//! Each range is a pipeline of two halves joined by a bounded channel: a reader pulling raw
//! batches from a source cursor and a writer inserting them on the destination, so reading the
//! next batch overlaps writing the last one. Documents stay the server's bytes from end to end:
//! they are sliced out of the reply and inserted as they are, never decoded.
//!
//! The writer keeps several inserts in flight (at most [`INSERTS_IN_FLIGHT`], and no new one
//! once [`IN_FLIGHT_BYTES`] are on the way), each on its own pooled connection, so that a
//! destination far away is not paid one round trip per batch: with one insert at a time, a
//! 40 ms round trip costs 40 ms per 2 MiB batch, which is more than the insert itself. Inserts
//! are acknowledged in order: the saved resume position only moves past a batch once every
//! batch before it is in too.
//!
//! Memory is bounded whatever the size of the data. Per range: one batch arriving from the
//! source, [`BATCH_CHANNEL_CAPACITY`] queued, and the inserts in flight, whose batches total at
//! most [`IN_FLIGHT_BYTES`] plus the last one admitted (the driver also serializes each insert
//! into its own buffer while sending it). A batch holds about [`READ_BATCH_BYTES`] (the server
//! caps it at 16 MiB, plus one document). So with 2 MiB batches a range holds at most about
//! 2 + 2 + (8 + 2) = 14 MiB of batches, plus the driver's send buffers, and at most `-j` ranges
//! are copied at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use futures::stream::FuturesOrdered;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, RawDocument, RawDocumentBuf, Timestamp};
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::RawBatch;
use mongodb::{Client, Collection};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::moved::{self, Whereabouts};
use super::progress::{CollectionProgress, Progress};
use super::ranges::IdRange;
use super::resume::{Save, Tracker};
use super::writer;
use super::CopyError;
use crate::cli::Namespace;
use crate::error::{Failure, Result};
use crate::indexes;
use crate::retry::Outage;

/// Bytes a source batch aims at; the server stops a batch at 16 MiB in any case.
pub const READ_BATCH_BYTES: u64 = 2 * 1024 * 1024;
/// Documents per source batch when the average document size is unknown.
pub const DEFAULT_READ_BATCH_DOCUMENTS: u32 = 1024;
/// Fewest and most documents per source batch.
pub const READ_BATCH_DOCUMENTS: std::ops::RangeInclusive<u32> = 16..=10_000;
/// Batches read ahead of the writer, per range being copied.
pub const BATCH_CHANNEL_CAPACITY: usize = 1;
/// Most inserts one range has in flight on the destination.
pub const INSERTS_IN_FLIGHT: usize = 4;
/// Bytes of batches in flight per range past which no further insert starts (the one that
/// crossed it is already on its way).
pub const IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;
/// Most document bytes in one insert (the server's BSON object limit, 16 MiB).
pub const MAX_INSERT_BYTES: usize = 16 * 1024 * 1024;
/// Most documents in one insert.
pub const MAX_INSERT_DOCUMENTS: usize = 10_000;

/// One source collection being copied, shared by the workers copying its ranges.
pub struct Job {
    /// The collection's position in the copy's progress ([`Tracker`]).
    pub index: usize,
    /// The namespace, the same on both sides.
    pub ns: Namespace,
    /// Read in `_id` order (it has an `_id` index, and is neither capped nor clustered).
    pub by_id: bool,
    /// The document count estimate, the progress total.
    pub documents: u64,
    /// The size estimate in bytes, for the status endpoint.
    bytes: u64,
    /// Documents per source batch, sized from the average document.
    read_batch: u32,
    /// How the collection is split, for the log: empty when it is not.
    split: String,
    ranges_left: AtomicUsize,
    started: OnceLock<(Instant, Arc<CollectionProgress>)>,
    /// Where it is read from on the source.
    origin: Origin,
}

/// Where a collection is read from on the source: its own name, or where it went when it was
/// renamed during the copy (see [`super::moved`]).
#[derive(Debug, Clone)]
pub struct Origin {
    /// The namespace it is read from.
    pub source: Namespace,
    /// Its `info.uuid` there, when the server gives one: without it, renames are not followed.
    pub uuid: Option<Bson>,
    /// The rename that brought it to `source`; `None`: it was there at the copy's start.
    pub since: Option<Timestamp>,
}

impl Job {
    /// A collection of `documents` documents and `bytes` bytes (estimates, 0 when unknown) to
    /// copy in `ranges` (of which `left` are still to copy), at position `index` of the
    /// copy's progress.
    pub fn new(
        index: usize,
        ns: Namespace,
        (documents, bytes): (u64, u64),
        by_id: bool,
        ranges: &[IdRange],
        left: usize,
    ) -> Self {
        let split = match ranges {
            [] | [_] => String::new(),
            [first, ..] if first.by_filter => {
                format!(" in {} _id ranges (by filter)", ranges.len())
            }
            _ => format!(" in {} _id ranges (by index bounds)", ranges.len()),
        };
        Job {
            index,
            by_id,
            documents,
            bytes,
            read_batch: read_batch_documents(documents, bytes),
            split,
            ranges_left: AtomicUsize::new(left),
            started: OnceLock::new(),
            origin: Origin {
                source: ns.clone(),
                uuid: None,
                since: None,
            },
            ns,
        }
    }

    /// The same job, read from `origin`.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Documents and bytes copied (zero before the copy starts).
    pub fn copied(&self) -> (u64, u64) {
        self.started
            .get()
            .map(|(_, p)| (p.documents(), p.bytes()))
            .unwrap_or_default()
    }

    /// The progress of this collection, registered when its first range starts.
    fn progress(&self, progress: &Progress) -> &Arc<CollectionProgress> {
        let (_, p) = self.started.get_or_init(|| {
            // Registered before the line is logged: whoever sees the line finds the
            // collection on the status endpoint already.
            let started = progress.start(self.ns.to_string(), self.documents, self.bytes);
            info!(
                "copying {}: about {} documents{}",
                self.ns, self.documents, self.split
            );
            (Instant::now(), started)
        });
        p
    }
}

/// Documents per source batch for a collection of this size: about [`READ_BATCH_BYTES`].
pub(crate) fn read_batch_documents(documents: u64, bytes: u64) -> u32 {
    if documents == 0 || bytes == 0 {
        return DEFAULT_READ_BATCH_DOCUMENTS;
    }
    let average = (bytes / documents).max(1);
    let fit = (READ_BATCH_BYTES / average).min(u64::from(u32::MAX)) as u32;
    fit.clamp(*READ_BATCH_DOCUMENTS.start(), *READ_BATCH_DOCUMENTS.end())
}

/// One unit of work: a range of one collection, or the indexes of a collection whose
/// documents are all in (a restart after a stop during its index builds).
pub struct Task {
    /// The collection.
    pub job: Arc<Job>,
    /// Which `_id`s of it, and the range's position in the job; `None`: only the indexes.
    pub range: Option<(usize, IdRange)>,
}

/// What the workers share.
pub struct Context {
    /// The source client.
    pub source: Client,
    /// The destination client (majority write concern).
    pub destination: Client,
    /// Where counts are reported.
    pub progress: Arc<Progress>,
    /// How indexes are built after each collection; `None` with `--noIndexRestore`.
    pub index_restore: Option<indexes::SpecRules>,
    /// The copy's progress, for a restart.
    pub tracker: Arc<Tracker>,
    /// Saves it.
    pub save: Save,
    /// The copy's starting point: the oplog is replayed from there.
    pub start_ts: Timestamp,
    /// The namespaces the migration copies.
    pub filter: crate::cli::NamespaceFilter,
}

/// Runs every task on `workers` workers; the first failure stops the others.
pub async fn run(context: Arc<Context>, tasks: VecDeque<Task>, workers: usize) -> Result<()> {
    let queue = Arc::new(Mutex::new(tasks));
    let mut set = JoinSet::new();
    for _ in 0..workers.max(1) {
        set.spawn(worker(context.clone(), queue.clone()));
    }
    while let Some(joined) = set.join_next().await {
        let outcome = joined.map_err(|e| {
            Failure::runtime("internal error: a copy worker stopped unexpectedly").cause(e)
        });
        if let Err(failure) = outcome.and_then(|r| r) {
            set.abort_all();
            return Err(failure);
        }
    }
    Ok(())
}

async fn worker(context: Arc<Context>, queue: Arc<Mutex<VecDeque<Task>>>) -> Result<()> {
    loop {
        // The lock is never held across an await.
        let next = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let Some(task) = next else {
            return Ok(());
        };
        let progress = task.job.progress(&context.progress).clone();
        let Some((index, range)) = &task.range else {
            finish(&context, &task.job, &progress).await?;
            continue;
        };
        copy_range_with_retries(&context, &task.job, (*index, range), &progress).await?;
        context.tracker.range_done(task.job.index, *index);
        if task.job.ranges_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            finish(&context, &task.job, &progress).await?;
        }
    }
}

/// The last range of a collection is in: make sure it was not renamed meanwhile, log it and
/// build its indexes.
async fn finish(
    context: &Context,
    job: &Arc<Job>,
    progress: &Arc<CollectionProgress>,
) -> Result<()> {
    let mut read = job.clone();
    let mut copies = 0;
    // The index specs are listed before the name is checked: if it still holds the collection
    // then, they are that collection's.
    let specs = loop {
        let specs = match context.index_restore {
            Some(rules) => {
                indexes::source_specs(&context.source, &read.origin.source, rules).await?
            }
            None => Vec::new(),
        };
        match settle(context, &read, progress).await? {
            None => break specs,
            Some(again) => read = again,
        }
        copies += 1;
        if copies == MOST_COPIES_AGAIN {
            return Err(Failure::runtime(format!(
                "{} keeps being renamed on the source while it is copied",
                job.ns
            ))
            .hint("stop renaming it during the initial sync, then start mongomirror again: the copy goes on from where it stopped"));
        }
    };
    context.progress.finish(progress);
    let elapsed = job
        .started
        .get()
        .map(|(t, _)| t.elapsed().as_secs_f64())
        .unwrap_or_default();
    info!(
        "finished copying {}: {} documents, {} bytes in {elapsed:.3}s",
        job.ns,
        progress.documents(),
        progress.bytes()
    );
    let restored = indexes::restore(&context.destination, &job.ns, specs).await?;
    progress.complete(restored.built as u64);
    context.tracker.collection_done(job.index, restored.relaxed);
    Ok(())
}

/// The most times one collection is copied again because it was renamed while it was copied.
const MOST_COPIES_AGAIN: usize = 10;

/// Makes sure the name `job` was read from still holds its collection. One renamed meanwhile
/// is copied again, whole, from where it is now, into its own name on the destination (see
/// [`super::moved`]): the job that read it then is returned.
async fn settle(
    context: &Context,
    job: &Job,
    progress: &CollectionProgress,
) -> Result<Option<Arc<Job>>> {
    let Some(uuid) = &job.origin.uuid else {
        return Ok(None);
    };
    let since = job.origin.since.unwrap_or(context.start_ts);
    let read = &job.origin.source;
    let (to, at, uuid) = match moved::whereabouts(&context.source, read, uuid, since).await? {
        Whereabouts::Here | Whereabouts::Gone => return Ok(None),
        Whereabouts::Renamed { ns, at, uuid } => (ns, at, uuid),
    };
    let was = if *read == job.ns {
        job.ns.to_string()
    } else {
        format!("{} (read from {read})", job.ns)
    };
    if !context.filter.wants(&to) {
        // Replay renames it out of the migration, which removes it from the destination.
        info!("{was} was renamed to {to}, which this migration does not copy, while it was being copied: replaying the rename removes it from the destination");
        return Ok(None);
    }
    warn!(
        "{was} was renamed to {to} while it was being copied: copying it again, whole, from {to}, so that replaying the rename finds every document"
    );
    // Emptied before the new origin is saved: a restart in between finds the name
    // renamed again, and empties it again.
    moved::empty(&context.destination, &job.ns).await?;
    let origin = Origin {
        source: to,
        uuid,
        since: Some(at),
    };
    context.tracker.moved(job.index, &origin);
    context.tracker.save(&context.save)?;
    progress.retract(progress.documents(), progress.bytes());
    let whole = IdRange::default();
    let again = Job::new(
        job.index,
        job.ns.clone(),
        (job.documents, job.bytes),
        job.by_id,
        std::slice::from_ref(&whole),
        1,
    );
    let again = Arc::new(again.with_origin(origin));
    copy_range_with_retries(context, &again, (0, &whole), progress).await?;
    context.tracker.range_done(job.index, 0);
    Ok(Some(again))
}

/// Copies one range; after a transient failure it goes on from the last `_id` copied (or starts
/// over when the collection is not read in `_id` order), for as long as [`crate::retry`] waits
/// out an outage.
async fn copy_range_with_retries(
    context: &Context,
    job: &Job,
    range: (usize, &IdRange),
    progress: &CollectionProgress,
) -> Result<()> {
    let mut outage: Option<Outage> = None;
    loop {
        let mut counted = Counted::default();
        let after = context.tracker.resume_point(job.index, range.0)?;
        let Err(error) = copy_range(context, job, range, after, progress, &mut counted).await
        else {
            if let Some(o) = outage {
                o.over(&format!("copying {}", job.ns));
            }
            return Ok(());
        };
        // What this attempt copied is copied again unless it resumes; count it once.
        if !job.by_id {
            progress.retract(counted.documents, counted.bytes);
        }
        if !error.transient {
            return Err(error.into());
        }
        // An attempt that copied something ends an outage: the servers were answering.
        if counted.documents > 0 {
            outage = None;
        }
        let reason = std::iter::once(&error.failure.message)
            .chain(&error.failure.causes)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(": ");
        let o = outage.get_or_insert_with(Outage::begin);
        if !o.wait(&format!("copying {}", job.ns), &reason).await {
            return Err(Failure::from(error).hint(crate::retry::outage_hint()));
        }
    }
}

/// Documents and bytes one attempt at a range has inserted.
#[derive(Default)]
struct Counted {
    documents: u64,
    bytes: u64,
}

/// Copies one range from `after` on (all of it when `None`): a reader and a writer joined by a
/// bounded channel.
async fn copy_range(
    context: &Context,
    job: &Job,
    (index, range): (usize, &IdRange),
    after: Option<Bson>,
    progress: &CollectionProgress,
    counted: &mut Counted,
) -> Result<(), CopyError> {
    let ns = &job.ns;
    let (tx, rx) = mpsc::channel(BATCH_CHANNEL_CAPACITY);
    let from = &job.origin.source;
    let source = context
        .source
        .database(&from.db)
        .collection::<Document>(&from.coll);
    let destination = context
        .destination
        .database(&ns.db)
        .collection::<RawDocumentBuf>(&ns.coll);
    let position = |last: &Bson| {
        if job.by_id {
            context.tracker.advanced(job.index, index, last);
        }
    };
    tokio::try_join!(
        read(
            &source,
            from,
            (range, after.as_ref(), job.by_id),
            job.read_batch,
            tx
        ),
        write(&destination, ns, rx, progress, counted, &position)
    )?;
    Ok(())
}

/// Streams raw batches of one range (from `after`, in `_id` order when `by_id`) into the
/// channel.
async fn read(
    collection: &Collection<Document>,
    ns: &Namespace,
    (range, after, by_id): (&IdRange, Option<&Bson>, bool),
    batch_size: u32,
    tx: mpsc::Sender<RawBatch>,
) -> Result<(), CopyError> {
    let failed = |e| read_failed(ns, e);
    let mut options = FindOptions::default();
    options.batch_size = Some(batch_size);
    // A reader waits on the writer; an idle cursor must not time out meanwhile.
    options.no_cursor_timeout = Some(true);
    let filter = range.query_from(after, by_id, &mut options);
    let mut cursor = collection
        .find(filter)
        .with_options(options)
        .batch()
        .await
        .map_err(failed)?;
    while let Some(batch) = cursor.try_next().await.map_err(failed)? {
        if tx.send(batch).await.is_err() {
            // The writer stopped; it reports why.
            break;
        }
    }
    Ok(())
}

/// A failed read of `ns`. Transient ones include a cursor killed because its collection was
/// dropped or renamed: read again from the last `_id` copied, the name is empty or holds
/// another collection, and [`settle`] sorts that out once the ranges are in.
fn read_failed(ns: &Namespace, error: mongodb::error::Error) -> CopyError {
    CopyError::driver(
        Failure::runtime(format!("cannot read {ns} from the source")),
        error,
    )
}

/// Inserts every batch from the channel, several at a time (see [`INSERTS_IN_FLIGHT`] and
/// [`IN_FLIGHT_BYTES`]), each in inserts bounded by bytes and by count; once a batch and every
/// batch before it are acknowledged, `position` gets the last `_id` it held.
async fn write(
    collection: &Collection<RawDocumentBuf>,
    ns: &Namespace,
    mut rx: mpsc::Receiver<RawBatch>,
    progress: &CollectionProgress,
    counted: &mut Counted,
    position: &(dyn Fn(&Bson) + Sync),
) -> Result<(), CopyError> {
    let mut in_flight = FuturesOrdered::new();
    let mut in_flight_bytes = 0usize;
    let mut done = |inserted: Inserted, in_flight_bytes: &mut usize| {
        *in_flight_bytes -= inserted.batch_bytes;
        progress.add(inserted.documents, inserted.bytes);
        counted.documents += inserted.documents;
        counted.bytes += inserted.bytes;
        if let Some(id) = &inserted.last_id {
            position(id);
        }
    };
    loop {
        let full = in_flight.len() >= INSERTS_IN_FLIGHT || in_flight_bytes >= IN_FLIGHT_BYTES;
        if full {
            if let Some(inserted) = in_flight.next().await {
                done(inserted?, &mut in_flight_bytes);
            }
            continue;
        }
        tokio::select! {
            biased;
            Some(inserted) = in_flight.next(), if !in_flight.is_empty() => {
                done(inserted?, &mut in_flight_bytes);
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                let size = batch.as_raw_document().as_bytes().len();
                in_flight_bytes += size;
                in_flight.push_back(insert_batch(collection, ns, batch, size));
            }
        }
    }
    while let Some(inserted) = in_flight.next().await {
        done(inserted?, &mut in_flight_bytes);
    }
    Ok(())
}

/// What one batch's inserts put on the destination.
struct Inserted {
    documents: u64,
    bytes: u64,
    /// The `_id` of its last document.
    last_id: Option<Bson>,
    /// The size of the batch as received, counted against [`IN_FLIGHT_BYTES`].
    batch_bytes: usize,
}

/// Inserts one batch, in inserts bounded by bytes and by count.
async fn insert_batch(
    collection: &Collection<RawDocumentBuf>,
    ns: &Namespace,
    batch: RawBatch,
    batch_bytes: usize,
) -> Result<Inserted, CopyError> {
    let malformed = |why: String| {
        CopyError::fatal(Failure::runtime(format!(
            "the source sent a malformed batch of {ns}: {why}"
        )))
    };
    let mut inserted = Inserted {
        documents: 0,
        bytes: 0,
        last_id: None,
        batch_bytes,
    };
    let mut chunk: Vec<&RawDocument> = Vec::new();
    let mut bytes = 0usize;
    for item in batch.doc_slices().map_err(|e| malformed(e.to_string()))? {
        let document = item
            .map_err(|e| malformed(e.to_string()))?
            .as_document()
            .ok_or_else(|| malformed("an element is not a document".into()))?;
        let size = document.as_bytes().len();
        if !chunk.is_empty()
            && (bytes + size > MAX_INSERT_BYTES || chunk.len() >= MAX_INSERT_DOCUMENTS)
        {
            flush(collection, ns, &mut chunk, &mut bytes, &mut inserted).await?;
        }
        chunk.push(document);
        bytes += size;
    }
    flush(collection, ns, &mut chunk, &mut bytes, &mut inserted).await?;
    Ok(inserted)
}

/// Inserts `chunk` (when not empty), counts it, and empties it.
async fn flush(
    collection: &Collection<RawDocumentBuf>,
    ns: &Namespace,
    chunk: &mut Vec<&RawDocument>,
    bytes: &mut usize,
    inserted: &mut Inserted,
) -> Result<(), CopyError> {
    let Some(last) = chunk.last() else {
        return Ok(());
    };
    writer::insert_or_replace(collection, ns, chunk).await?;
    inserted.documents += chunk.len() as u64;
    inserted.bytes += *bytes as u64;
    inserted.last_id = last
        .get("_id")
        .ok()
        .flatten()
        .and_then(|id| Bson::try_from(id).ok());
    chunk.clear();
    *bytes = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_killed_by_a_drop_or_rename_is_read_again() {
        let ns = Namespace::new("app", "c");
        let answer = |code: i32, name: &str| {
            mongodb::error::Error::from(mongodb::error::ErrorKind::Command(
                serde_json::from_value::<mongodb::error::CommandError>(serde_json::json!({
                    "code": code, "codeName": name, "errmsg": "collection dropped",
                }))
                .unwrap(),
            ))
        };
        assert!(read_failed(&ns, answer(175, "QueryPlanKilled")).transient);
        assert!(read_failed(&ns, answer(43, "CursorNotFound")).transient);
        assert!(!read_failed(&ns, answer(13, "Unauthorized")).transient);
    }

    #[test]
    fn read_batches_aim_at_a_byte_size() {
        assert_eq!(read_batch_documents(0, 0), DEFAULT_READ_BATCH_DOCUMENTS);
        assert_eq!(read_batch_documents(1_000, 1_024_000), 2048);
        assert_eq!(read_batch_documents(1_000_000, 10_000_000), 10_000);
        assert_eq!(read_batch_documents(10, 160 * 1024 * 1024), 16);
    }
}
