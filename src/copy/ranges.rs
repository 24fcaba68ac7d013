//! Splitting one large collection into `_id` ranges that several workers copy at once.
//!
//! Boundaries come from a `$sample` of `_id`s sorted by the server, so they follow the server's
//! own index order (BSON type order first, then value, under the collection's collation).
//!
//! In general a range is read with `hint: {_id: 1}` and the `min`/`max` index bounds rather than
//! `$gte`/`$lt` filters: a filter only matches values of its own type bracket, so `_id`s of mixed
//! types would fall between ranges, while index bounds cover every key exactly once (`min` is
//! inclusive, `max` exclusive, the first range has no `min` and the last no `max`).
//!
//! When the lowest and the highest `_id` are in one bracket whose filters compare exactly as the
//! index orders (`filter_exact`), every `_id` is in that bracket, and plain `$gte`/`$lt`
//! filters are used instead: they are what every server plans best, and some MongoDB-compatible
//! servers scan the whole index for `min`/`max`, or lack them.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::options::{FindOptions, Hint};
use mongodb::Collection;

/// A collection is split only when each range would hold at least this many documents.
pub const MIN_RANGE_DOCUMENTS: u64 = 10_000;
/// At most this many ranges per worker, so that workers finishing early find work left.
pub const MAX_RANGES_PER_WORKER: u64 = 2;
/// Sampled `_id`s per range: more samples give more even ranges.
const SAMPLES_PER_RANGE: u64 = 20;

/// One `_id` range of a collection; both ends open means the whole collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdRange {
    /// Inclusive lower bound.
    pub min: Option<Bson>,
    /// Exclusive upper bound.
    pub max: Option<Bson>,
    /// Read with `$gte`/`$lt` filters instead of `min`/`max` index bounds.
    pub by_filter: bool,
}

impl IdRange {
    /// Whether this range is the whole collection.
    pub fn is_whole(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }

    /// The `find` filter and options that read this range from `after` (inclusive) on, or all
    /// of it; in `_id` order when `by_id` (a whole range is otherwise read in natural order).
    pub fn query_from(
        &self,
        after: Option<&Bson>,
        by_id: bool,
        options: &mut FindOptions,
    ) -> Document {
        let resumed;
        let range = match after {
            Some(after) => {
                resumed = IdRange {
                    min: Some(after.clone()),
                    max: self.max.clone(),
                    by_filter: self.by_filter,
                };
                &resumed
            }
            None => self,
        };
        if range.is_whole() && by_id {
            options.hint = Some(Hint::Keys(doc! { "_id": 1 }));
        }
        range.query(options)
    }

    /// The `find` filter and options that read exactly this range.
    pub fn query(&self, options: &mut FindOptions) -> Document {
        if self.is_whole() {
            return Document::new();
        }
        options.hint = Some(Hint::Keys(doc! { "_id": 1 }));
        if !self.by_filter {
            options.min = self.min.clone().map(|id| doc! { "_id": id });
            options.max = self.max.clone().map(|id| doc! { "_id": id });
            return Document::new();
        }
        let mut bounds = Document::new();
        if let Some(min) = &self.min {
            bounds.insert("$gte", min.clone());
        }
        if let Some(max) = &self.max {
            bounds.insert("$lt", max.clone());
        }
        doc! { "_id": bounds }
    }
}

/// How many ranges a collection of `documents` documents gets with `workers` workers.
pub fn range_count(documents: u64, workers: usize) -> usize {
    if workers <= 1 {
        return 1;
    }
    let by_size = documents / MIN_RANGE_DOCUMENTS;
    by_size.clamp(1, workers as u64 * MAX_RANGES_PER_WORKER) as usize
}

/// Splits a collection into at most `pieces` ranges.
///
/// Fewer ranges come back when the sample holds fewer distinct `_id`s.
pub async fn split(
    collection: &Collection<Document>,
    pieces: usize,
) -> mongodb::error::Result<Vec<IdRange>> {
    if pieces <= 1 {
        return Ok(vec![IdRange::default()]);
    }
    // Planning waits out a failover like the copy does: one reader for a whole collection
    // would cost far more than the wait.
    let what = format!("splitting {} into _id ranges", collection.namespace());
    let (sample, by_filter) = crate::retry::transient(&what, || async {
        let sample: Vec<RawDocumentBuf> = collection
            .clone_with_type::<RawDocumentBuf>()
            .aggregate([
                doc! { "$sample": { "size": (pieces as u64 * SAMPLES_PER_RANGE) as i64 } },
                doc! { "$project": { "_id": 1 } },
                doc! { "$sort": { "_id": 1 } },
            ])
            .with_type::<RawDocumentBuf>()
            .await?
            .try_collect()
            .await?;
        let by_filter = filter_exact(
            edge_id(collection, 1).await?.as_ref(),
            edge_id(collection, -1).await?.as_ref(),
        );
        Ok((sample, by_filter))
    })
    .await?;
    Ok(ranges_between(boundaries(&sample, pieces)?, by_filter))
}

/// The lowest (`direction` 1) or highest (-1) `_id` of a collection.
async fn edge_id(
    collection: &Collection<Document>,
    direction: i32,
) -> mongodb::error::Result<Option<Bson>> {
    let edge = collection
        .find_one(doc! {})
        .sort(doc! { "_id": direction })
        .projection(doc! { "_id": 1 })
        .await?;
    Ok(edge.and_then(|mut d| d.remove("_id")))
}

/// Whether `$gte`/`$lt` filters select exactly the index ranges of a collection whose lowest and
/// highest `_id`s are `low` and `high`.
///
/// Both must be in one type bracket, so that every `_id` is, and the bracket must compare in
/// filters exactly as in the index: ObjectId, date and binary brackets hold one type each; the
/// number bracket compares by value across its types, but NaN sorts below every number while
/// no range filter matches it; NaN would be the lowest `_id`, so a low end that is an integer or
/// a double other than NaN rules it out (a decimal low end takes index bounds). Strings share
/// their bracket with symbols, so they take index bounds too.
fn filter_exact(low: Option<&Bson>, high: Option<&Bson>) -> bool {
    let number = |b: &Bson| {
        matches!(
            b,
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
        )
    };
    match (low, high) {
        (Some(Bson::ObjectId(_)), Some(Bson::ObjectId(_)))
        | (Some(Bson::DateTime(_)), Some(Bson::DateTime(_)))
        | (Some(Bson::Binary(_)), Some(Bson::Binary(_))) => true,
        (Some(Bson::Int32(_) | Bson::Int64(_)), Some(h)) => number(h),
        (Some(Bson::Double(d)), Some(h)) => !d.is_nan() && number(h),
        _ => false,
    }
}

/// Picks up to `pieces - 1` distinct boundaries from sorted `{_id}` documents.
///
/// `$sample` may return a document twice; identical bytes mean the same `_id`.
fn boundaries(sorted: &[RawDocumentBuf], pieces: usize) -> mongodb::error::Result<Vec<Bson>> {
    let mut picked: Vec<&RawDocumentBuf> = Vec::new();
    for k in 1..pieces {
        let Some(candidate) = sorted.get(k * sorted.len() / pieces) else {
            break;
        };
        if picked
            .last()
            .is_some_and(|p| p.as_bytes() == candidate.as_bytes())
        {
            continue;
        }
        picked.push(candidate);
    }
    picked
        .into_iter()
        .filter_map(|d| d.get("_id").transpose())
        .map(|id| Ok(Bson::try_from(id?)?))
        .collect()
}

/// The ranges between consecutive boundaries, open at both ends.
fn ranges_between(boundaries: Vec<Bson>, by_filter: bool) -> Vec<IdRange> {
    let mut out = Vec::with_capacity(boundaries.len() + 1);
    let mut lower = None;
    for b in boundaries {
        out.push(IdRange {
            min: lower.take(),
            max: Some(b.clone()),
            by_filter,
        });
        lower = Some(b);
    }
    out.push(IdRange {
        min: lower,
        max: None,
        by_filter,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    #[test]
    fn range_count_grows_with_size_and_caps_per_worker() {
        assert_eq!(range_count(1_000_000, 1), 1);
        assert_eq!(range_count(5_000, 4), 1);
        assert_eq!(range_count(25_000, 4), 2);
        assert_eq!(range_count(10_000_000, 4), 8);
    }

    #[test]
    fn boundaries_are_distinct_quantiles() {
        let ids = |v: &[i32]| -> Vec<RawDocumentBuf> {
            v.iter().map(|i| rawdoc! { "_id": *i }).collect()
        };
        let b = boundaries(&ids(&[1, 2, 2, 3, 5, 8, 8, 9]), 4).unwrap();
        assert_eq!(b, vec![Bson::Int32(2), Bson::Int32(5), Bson::Int32(8)]);
        // Repeated samples of one document collapse into one boundary.
        let b = boundaries(&ids(&[1, 2, 2, 2, 2, 2, 2, 3]), 4).unwrap();
        assert_eq!(b, vec![Bson::Int32(2)]);
        assert!(boundaries(&[], 4).unwrap().is_empty());
    }

    #[test]
    fn a_range_resumes_from_its_last_id() {
        let range = IdRange {
            min: Some(Bson::Int32(10)),
            max: Some(Bson::Int32(20)),
            by_filter: true,
        };
        let mut options = FindOptions::default();
        let filter = range.query_from(Some(&Bson::Int32(15)), true, &mut options);
        assert_eq!(filter, doc! { "_id": { "$gte": 15, "$lt": 20 } });
        let mut options = FindOptions::default();
        let filter = IdRange::default().query_from(Some(&Bson::Int32(7)), true, &mut options);
        assert_eq!(filter, doc! {});
        assert_eq!(options.min, Some(doc! { "_id": 7 }));
        assert!(options.hint.is_some(), "index bounds need the hint");
        // A whole collection is read in _id order when it can resume, in natural order when not.
        let mut options = FindOptions::default();
        IdRange::default().query_from(None, true, &mut options);
        assert!(options.hint.is_some());
        let mut options = FindOptions::default();
        IdRange::default().query_from(None, false, &mut options);
        assert!(options.hint.is_none());
    }

    #[test]
    fn ranges_cover_everything_once() {
        let range = |min: Option<Bson>, max: Option<Bson>| IdRange {
            min,
            max,
            by_filter: false,
        };
        let (two, a) = (Bson::Int32(2), Bson::String("a".into()));
        assert_eq!(
            ranges_between(vec![two.clone(), a.clone()], false),
            vec![
                range(None, Some(two.clone())),
                range(Some(two), Some(a.clone())),
                range(Some(a), None),
            ]
        );
        assert_eq!(ranges_between(vec![], false), vec![IdRange::default()]);
        assert!(ranges_between(vec![Bson::Int32(1)], true)
            .iter()
            .all(|r| r.by_filter));
    }

    #[test]
    fn ranges_read_by_index_bounds_or_by_filter() {
        let mut o = FindOptions::default();
        assert_eq!(IdRange::default().query(&mut o), doc! {});
        assert!(o.hint.is_none() && o.min.is_none() && o.max.is_none());

        let mut range = IdRange {
            min: Some(Bson::String("a".into())),
            max: None,
            by_filter: false,
        };
        assert_eq!(range.query(&mut o), doc! {});
        assert_eq!(o.min, Some(doc! { "_id": "a" }));
        assert!(o.max.is_none() && o.hint.is_some());

        range.by_filter = true;
        range.max = Some(Bson::String("b".into()));
        let mut o = FindOptions::default();
        assert_eq!(
            range.query(&mut o),
            doc! { "_id": { "$gte": "a", "$lt": "b" } }
        );
        assert!(o.min.is_none() && o.max.is_none() && o.hint.is_some());
    }

    #[test]
    fn filters_only_where_they_match_the_index_order() {
        let oid = Bson::ObjectId(mongodb::bson::oid::ObjectId::new());
        let exact = |l: Bson, h: Bson| filter_exact(Some(&l), Some(&h));
        assert!(exact(oid.clone(), oid.clone()));
        assert!(exact(Bson::Int32(1), Bson::Double(2.5)));
        assert!(exact(Bson::Double(-1.0), Bson::Int64(7)));
        assert!(!exact(Bson::Double(f64::NAN), Bson::Int32(1)));
        assert!(!exact(Bson::Int32(1), oid.clone()));
        assert!(!exact(Bson::String("a".into()), Bson::String("z".into())));
        assert!(!exact(Bson::Null, Bson::Null));
        assert!(!filter_exact(None, None));
    }
}
