//! Document comparison: both sides streamed in `_id` order and merged, range by range.
//!
//! Each side of a range is read by a task that sends raw batches through a bounded channel, so
//! both reads and the comparison overlap; a document is never decoded, only its `_id` is read
//! and its bytes compared. Memory per range is a few batches per side, whatever the size of the
//! collection. The merge orders `_id`s exactly as an `_id` index does ([`crate::order::compare`]);
//! a collection with a default collation is read sorted under the simple collation instead,
//! which the server sorts without the index.
//!
//! A document that differs is a *candidate*: the first pass only records its `_id` (up to
//! [`super::MAX_CANDIDATES`] per namespace), and a recheck reads those `_id`s again on both
//! sides to drop the differences that writes in flight caused.

use std::cmp::Ordering;
use std::ops::Range;

use futures::TryStreamExt;
use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{Collation, FindOptions};
use mongodb::raw_batch_cursor::RawBatch;
use mongodb::Collection;
use tokio::sync::mpsc;

use super::report::{Counts, DocumentDifference};
use crate::copy::progress::CollectionProgress;
use crate::copy::ranges::IdRange;
use crate::error::{brief, is_transient, Failure, Result};
use crate::order;
use crate::retry::Outage;

/// Raw batches read ahead per side of a range.
const READ_AHEAD: usize = 1;
/// `_id`s per `$in` query of a recheck.
const RECHECK_BATCH: usize = 1_000;

/// How a document differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// On the source only.
    Missing,
    /// On the destination only.
    Extra,
    /// On both, with other bytes; the top-level fields that differ.
    Different(Vec<String>),
}

/// A document that differed when it was read.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `{_id: <value>}`.
    pub id: RawDocumentBuf,
    /// How it differed.
    pub kind: Kind,
}

impl Candidate {
    /// The difference as the report shows it.
    pub fn describe(&self) -> DocumentDifference {
        let id = self
            .id
            .get("_id")
            .ok()
            .flatten()
            .and_then(|v| Bson::try_from(v).ok())
            .map(|b| b.into_canonical_extjson().to_string())
            .unwrap_or_else(|| "<unreadable _id>".into());
        let (kind, fields) = match &self.kind {
            Kind::Missing => ("missing", Vec::new()),
            Kind::Extra => ("extra", Vec::new()),
            Kind::Different(fields) => ("different", fields.clone()),
        };
        DocumentDifference {
            id,
            kind: kind.into(),
            fields,
        }
    }
}

/// What one range showed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Counts (no transient ones yet).
    pub counts: Counts,
    /// The differing documents, up to the cap given.
    pub candidates: Vec<Candidate>,
}

/// How a collection is read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Documents per batch.
    pub batch: u32,
    /// The collection has a default collation: sort under the simple one, without the index.
    pub collated: bool,
}

/// Compares one range of a collection; records up to `cap` candidates.
pub async fn compare_range(
    source: &Collection<RawDocumentBuf>,
    destination: &Collection<RawDocumentBuf>,
    range: &IdRange,
    reading: Reading,
    progress: &CollectionProgress,
    cap: usize,
) -> Result<Outcome> {
    let mut a = Side::open(source, range, reading, "source");
    let mut b = Side::open(destination, range, reading, "destination");
    let mut out = Outcome::default();
    let note = |out: &mut Outcome, id: RawBsonRef<'_>, kind: Kind| {
        if out.candidates.len() < cap {
            let mut d = RawDocumentBuf::new();
            d.append_ref("_id", id);
            out.candidates.push(Candidate { id: d, kind });
        }
    };
    let (mut pending_docs, mut pending_bytes) = (0u64, 0u64);
    loop {
        a.fill().await?;
        b.fill().await?;
        let order = match (a.current(), b.current()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => order::compare(id_of(x)?, id_of(y)?),
        };
        match order {
            Ordering::Less => {
                let x = a.current().expect("present");
                out.counts.missing += 1;
                note(&mut out, id_of(x)?, Kind::Missing);
            }
            Ordering::Greater => {
                let y = b.current().expect("present");
                out.counts.extra += 1;
                note(&mut out, id_of(y)?, Kind::Extra);
            }
            Ordering::Equal => {
                let (x, y) = (a.current().expect("present"), b.current().expect("present"));
                if x.as_bytes() != y.as_bytes() {
                    out.counts.different += 1;
                    note(
                        &mut out,
                        id_of(x)?,
                        Kind::Different(fields_that_differ(x, y)),
                    );
                }
            }
        }
        if order != Ordering::Greater {
            let x = a.current().expect("present");
            pending_docs += 1;
            pending_bytes += x.as_bytes().len() as u64;
            out.counts.compared += 1;
            a.advance();
        }
        if order != Ordering::Less {
            out.counts.destination += 1;
            b.advance();
        }
        if pending_docs >= u64::from(reading.batch) {
            progress.add(pending_docs, pending_bytes);
            (pending_docs, pending_bytes) = (0, 0);
        }
    }
    progress.add(pending_docs, pending_bytes);
    Ok(out)
}

/// Reads the candidates' `_id`s again on both sides; returns those that still differ.
pub async fn recheck(
    source: &Collection<RawDocumentBuf>,
    destination: &Collection<RawDocumentBuf>,
    candidates: Vec<Candidate>,
) -> Result<Vec<Candidate>> {
    let mut still = Vec::new();
    for chunk in candidates.chunks(RECHECK_BATCH) {
        let ids: Vec<Bson> = chunk
            .iter()
            .filter_map(|c| c.id.get("_id").ok().flatten())
            .filter_map(|v| Bson::try_from(v).ok())
            .collect();
        let filter = doc! { "_id": { "$in": ids } };
        let (x, y) = tokio::try_join!(
            by_key(source, filter.clone(), "source"),
            by_key(destination, filter, "destination")
        )?;
        for candidate in chunk {
            let Some(id) = candidate.id.get("_id").ok().flatten() else {
                continue;
            };
            let key = order::key(id);
            let kind = match (x.get(&key), y.get(&key)) {
                (None, None) => continue,
                (Some(_), None) => Kind::Missing,
                (None, Some(_)) => Kind::Extra,
                (Some(a), Some(b)) if a.as_bytes() == b.as_bytes() => continue,
                (Some(a), Some(b)) => Kind::Different(fields_that_differ(a, b)),
            };
            still.push(Candidate {
                id: candidate.id.clone(),
                kind,
            });
        }
    }
    Ok(still)
}

/// The documents matching `filter`, by `_id` key.
async fn by_key(
    collection: &Collection<RawDocumentBuf>,
    filter: Document,
    side: &str,
) -> Result<std::collections::HashMap<Vec<u8>, RawDocumentBuf>> {
    let failed = |e| {
        Failure::runtime(format!(
            "cannot read {} on the {side}",
            collection.namespace()
        ))
        .cause(e)
    };
    let what = format!("reading {} on the {side}", collection.namespace());
    let found: Vec<RawDocumentBuf> = crate::retry::transient(&what, || async {
        collection.find(filter.clone()).await?.try_collect().await
    })
    .await
    .map_err(failed)?;
    Ok(found
        .into_iter()
        .filter_map(|d| {
            let key = order::key(d.get("_id").ok()??);
            Some((key, d))
        })
        .collect())
}

/// The top-level fields that differ between two versions of a document; `(field order)` when
/// only their order does.
pub fn fields_that_differ(a: &RawDocument, b: &RawDocument) -> Vec<String> {
    let fields = |d: &RawDocument| -> Vec<(String, Vec<u8>)> {
        d.iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), order::form(v)))
            .collect()
    };
    let (x, y) = (fields(a), fields(b));
    let mut out: Vec<String> = Vec::new();
    for (k, v) in &x {
        match y.iter().find(|(k2, _)| k2 == k) {
            Some((_, v2)) if v2 == v => {}
            _ => out.push(k.clone()),
        }
    }
    for (k, _) in &y {
        if !x.iter().any(|(k2, _)| k2 == k) {
            out.push(k.clone());
        }
    }
    if out.is_empty() {
        out.push("(field order)".into());
    }
    out
}

fn id_of(doc: &RawDocument) -> Result<RawBsonRef<'_>> {
    doc.get("_id")
        .ok()
        .flatten()
        .ok_or_else(|| Failure::runtime("a document without a readable _id was read"))
}

/// One side of a range: a reader task (stopped when the side is dropped) and the batch being
/// merged.
struct Side {
    rx: mpsc::Receiver<Result<(RawBatch, usize)>>,
    reader: tokio::task::JoinHandle<()>,
    batch: Option<RawBatch>,
    docs: Vec<Range<usize>>,
    next: usize,
    done: bool,
}

impl Side {
    fn open(
        collection: &Collection<RawDocumentBuf>,
        range: &IdRange,
        reading: Reading,
        side: &'static str,
    ) -> Side {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let collection = collection.clone();
        let range = range.clone();
        let reader = tokio::spawn(async move {
            let what = format!("reading {} on the {side}", collection.namespace());
            let failed = |e| {
                Failure::runtime(format!(
                    "cannot read {} on the {side}",
                    collection.namespace()
                ))
                .cause(e)
            };
            let mut sent = Sent::default();
            let mut outage: Option<Outage> = None;
            loop {
                let read = stream(&collection, &range, reading, &tx, &mut sent, &mut outage).await;
                let error = match read {
                    Ok(()) => return,
                    Err(e) if is_transient(&e) => e,
                    Err(e) => {
                        let _ = tx.send(Err(failed(e))).await;
                        return;
                    }
                };
                let o = outage.get_or_insert_with(Outage::begin);
                if !o.wait(&what, &brief(&error)).await {
                    let failure = failed(error).hint(crate::retry::outage_hint());
                    let _ = tx.send(Err(failure)).await;
                    return;
                }
            }
        });
        Side {
            rx,
            reader,
            batch: None,
            docs: Vec::new(),
            next: 0,
            done: false,
        }
    }

    /// Makes the next document available, unless the side is exhausted.
    async fn fill(&mut self) -> Result<()> {
        while !self.done && self.next >= self.docs.len() {
            match self.rx.recv().await {
                None => self.done = true,
                Some(read) => {
                    let (batch, skip) = read?;
                    self.load(batch)?;
                    self.next = skip;
                }
            }
        }
        Ok(())
    }

    fn load(&mut self, batch: RawBatch) -> Result<()> {
        let base = batch.as_raw_document().as_bytes();
        let start = base.as_ptr() as usize;
        let malformed =
            |e: mongodb::bson::raw::Error| Failure::runtime("a malformed batch was read").cause(e);
        let mut docs = Vec::new();
        for item in batch
            .doc_slices()
            .map_err(|e| Failure::runtime("a malformed batch was read").cause(e))?
        {
            let doc = item
                .map_err(malformed)?
                .as_document()
                .ok_or_else(|| Failure::runtime("a batch holds a non-document"))?;
            let offset = doc.as_bytes().as_ptr() as usize - start;
            docs.push(offset..offset + doc.as_bytes().len());
        }
        self.docs = docs;
        self.next = 0;
        self.batch = Some(batch);
        Ok(())
    }

    fn current(&self) -> Option<&RawDocument> {
        let range = self.docs.get(self.next)?.clone();
        let bytes = &self.batch.as_ref()?.as_raw_document().as_bytes()[range];
        RawDocument::from_bytes(bytes).ok()
    }

    fn advance(&mut self) {
        self.next += 1;
    }
}

/// How far a reader got: the `_id` of the last document sent, and how many were sent.
#[derive(Default)]
struct Sent {
    last: Option<(Bson, Vec<u8>)>,
    documents: usize,
}

/// Sends the batches of `range`, with how many documents at the front of each to skip, from
/// where `sent` says on; `Ok` at the end of the range or once the receiver is gone.
///
/// After a failure the range is read again from the last `_id` sent (inclusive, so that one is
/// skipped). A collated collection is read in simple-collation order, which its `_id` index
/// cannot bound; it is read again from the start, skipping what was sent.
async fn stream(
    collection: &Collection<RawDocumentBuf>,
    range: &IdRange,
    reading: Reading,
    tx: &mpsc::Sender<Result<(RawBatch, usize)>>,
    sent: &mut Sent,
    outage: &mut Option<Outage>,
) -> mongodb::error::Result<()> {
    let mut options = FindOptions::default();
    let (filter, mut skip) = match &sent.last {
        Some((id, _)) if !reading.collated => (range.query_from(Some(id), true, &mut options), 0),
        _ => (range.query(&mut options), sent.documents),
    };
    let mut skip_last = !reading.collated && sent.last.is_some();
    options.sort = Some(doc! { "_id": 1 });
    options.batch_size = Some(reading.batch);
    options.no_cursor_timeout = Some(true);
    if reading.collated {
        options.collation = Some(Collation::builder().locale("simple").build());
        options.allow_disk_use = Some(true);
    }
    let mut cursor = collection
        .clone_with_type::<Document>()
        .find(filter)
        .with_options(options)
        .batch()
        .await?;
    while let Some(batch) = cursor.try_next().await? {
        if let Some(o) = outage.take() {
            o.over(&format!("reading {}", collection.namespace()));
        }
        let ids: Vec<RawBsonRef<'_>> = batch
            .doc_slices()
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|d| d.ok()?.as_document()?.get("_id").ok().flatten())
            .collect();
        let mut front = skip.min(ids.len());
        skip -= front;
        if std::mem::take(&mut skip_last) {
            let again = ids
                .first()
                .zip(sent.last.as_ref())
                .is_some_and(|(id, (_, key))| order::key(*id) == *key);
            front = usize::from(again);
        }
        if let Some(id) = ids.last() {
            if let Ok(owned) = Bson::try_from(id.to_raw_bson()) {
                sent.last = Some((owned, order::key(*id)));
            }
        }
        sent.documents += ids.len() - front;
        if front == ids.len() {
            continue;
        }
        if tx.send(Ok((batch, front))).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

impl Drop for Side {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    #[test]
    fn differing_fields_are_named() {
        let a = rawdoc! { "_id": 1, "name": "x", "n": 1, "old": true };
        let b = rawdoc! { "_id": 1, "name": "y", "n": 1.0, "new": true };
        assert_eq!(fields_that_differ(&a, &b), ["name", "n", "old", "new"]);
        let c = rawdoc! { "_id": 1, "n": 1, "name": "x", "old": true };
        assert_eq!(fields_that_differ(&a, &c), ["(field order)"]);
    }
}
