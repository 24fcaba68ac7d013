//! Live properties, each case on its own database of one source and destination pair:
//!
//! - Random writes (update operators, aggregation-pipeline updates, replacements, upserts,
//!   inserts, deletes) run on the source; the source oplog since the case began, replayed on the
//!   destination with [`Applier`], leaves identical deployments, and so does replaying it again
//!   over the result.
//! - A reference diff between two random documents, sent as a mongod-shaped `u` entry through
//!   [`Applier`] to a destination holding the first, leaves the second; so does its translation
//!   to update operators ([`DocDiff::to_operators`]) sent directly, whenever it has one.
//!
//! Test servers write change-stream shaped updates, not mongod's `$v:2` diffs, which is why the
//! second property builds its entries with the reference generator.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use mongodb::bson::{doc, Bson, DateTime, Decimal128, Document, RawDocumentBuf, Timestamp};
use mongodb::error::ErrorKind;
use mongodb::options::UpdateOptions;
use mongodb::{Client, Collection};
use mongomirror::cli::NamespaceFilter;
use mongomirror::oplog::apply::{Applier, ApplyOptions};
use mongomirror::oplog::diff::DocDiff;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::TestRunner;

use super::arbitrary::{document, history, retouched};
use super::reference::doc_diff;
use crate::oplog_apply::oplog_after;
use crate::support::{assert_same_deployments, real_deployment, Pair, ServerOptions};

/// The database every case writes to; it is dropped on both sides after each case.
const DB: &str = "fuzz";
const COLL: &str = "c";

/// Small batches and several lanes, as in the other replay scenarios.
const OPTIONS: ApplyOptions = ApplyOptions {
    batch_entries: 5,
    writers: 3,
    indexes: None,
};

/// Paths the writes use: existing fields, nested ones, array elements, missing ones.
#[rustfmt::skip]
const PATHS: &[&str] = &[
    "a", "b", "n", "arr", "sub", "sub.x", "sub.y.z", "arr.0", "arr.2", "arr.6", "sub.arr.1",
    "tags", "new",
];

/// Runs `property` on random inputs from `strategy()` (a factory: strategies are not `Send`),
/// each case driven to completion on the test's runtime from a blocking thread, so that
/// proptest can run a failing case again while it shrinks it.
async fn check<S, F, Fut>(cases: u32, strategy: fn() -> S, property: F)
where
    S: Strategy + 'static,
    F: Fn(S::Value) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(super::config(cases));
        runner
            .run(&strategy(), |input| {
                handle.block_on(property(input));
                Ok(())
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("the property runner ends");
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Values for the writes. Their objects have their names in order, as have the objects of
/// [`seed_document`]: SecantusDB's change-stream shaped entries list the fields a write adds
/// inside an object in name order, whatever order the write gave them, so out of order they
/// would describe another document than the one it stored.
fn live_value() -> BoxedStrategy<Bson> {
    live_scalar()
        .prop_recursive(3, 16, 4, |inner| {
            let name = prop::sample::select(&["0", "x", "y", "z"][..]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                prop::collection::btree_map(name, inner, 0..3).prop_map(|fields| {
                    Bson::Document(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }),
            ]
        })
        .boxed()
}

/// The scalars of [`live_value`].
fn live_scalar() -> BoxedStrategy<Bson> {
    prop_oneof![
        (-3i32..4).prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        prop_oneof![Just(0.5), Just(-0.0), Just(f64::NAN), any::<f64>()].prop_map(Bson::Double),
        "[a-z]{0,3}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
        Just(Bson::Null),
        (0i64..2_000_000_000_000).prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        Just(Bson::Decimal128(
            "1.50".parse::<Decimal128>().expect("decimal")
        )),
    ]
    .boxed()
}

fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(PATHS)
}

/// A starting document, fields present at random, shaped so that the paths above meet objects
/// and arrays as often as scalars.
fn seed_document(id: i32) -> impl Strategy<Value = Document> {
    (
        prop::collection::vec(live_value(), 7),
        prop::collection::vec(any::<bool>(), 7),
    )
        .prop_map(move |(values, present)| {
            let mut values = values.into_iter();
            let mut next = || values.next().unwrap_or(Bson::Null);
            let fields: [(&str, Bson); 7] = [
                ("a", next()),
                ("b", next()),
                ("n", next()),
                ("arr", Bson::Array(vec![next(), 1.into(), "s".into()])),
                (
                    "sub",
                    doc! { "arr": [1, 2], "x": next(), "y": { "z": next() } }.into(),
                ),
                ("tags", Bson::Array(vec!["t".into(), next()])),
                ("last", 1.into()),
            ];
            let mut doc = doc! { "_id": id };
            for ((name, value), present) in fields.into_iter().zip(present) {
                if present {
                    doc.insert(name, value);
                }
            }
            doc
        })
}

/// An update-operator document: one operator of any kind on a random path or, against mongod,
/// up to three of them.
///
/// A test server cannot log more: mongod creates the new fields of one update in path order,
/// SecantusDB in the order its operators come, and its change-stream shaped entries list the
/// paths in yet another order, with nothing to say which field came first. Its own replay
/// would differ from it. The field order of updates that create several fields is tested with
/// mongod-shaped entries ([`reference_diffs_replay_to_the_post_image`]) and against mongod.
///
/// For the same reason `$min` and `$max` compare with scalars only on a test server: when one
/// replaces an object by another, SecantusDB logs the difference field by field
/// (`updatedFields: {"sub.0": …, "sub.x": …}, removedFields: ["sub.arr"]`), which cannot say
/// that the new `0` comes before the kept `x` (found by the long run, seed 2026); mongod logs the
/// new object whole.
fn operators(mongod: bool) -> BoxedStrategy<Document> {
    let n = || prop_oneof![(-3i32..4).prop_map(Bson::Int32), Just(Bson::Double(1.5))];
    let bound = move || match mongod {
        true => live_value(),
        false => live_scalar(),
    };
    let operator = prop_oneof![
        3 => (path(), live_value()).prop_map(|(p, v)| doc! { "$set": { p: v } }),
        1 => live_value().prop_map(|v| doc! { "$set": { "arr.$[]": v } }),
        2 => path().prop_map(|p| doc! { "$unset": { p: "" } }),
        2 => (path(), n()).prop_map(|(p, v)| doc! { "$inc": { p: v } }),
        1 => (path(), n()).prop_map(|(p, v)| doc! { "$mul": { p: v } }),
        1 => (path(), bound()).prop_map(|(p, v)| doc! { "$min": { p: v } }),
        1 => (path(), bound()).prop_map(|(p, v)| doc! { "$max": { p: v } }),
        2 => (path(), live_value()).prop_map(|(p, v)| doc! { "$push": { p: v } }),
        1 => (path(), prop::collection::vec(live_value(), 0..3), -3i32..3, 0i32..3).prop_map(
            |(p, each, slice, position)| {
                doc! { "$push": { p: { "$each": each, "$slice": slice, "$position": position } } }
            }
        ),
        1 => (path(), live_value()).prop_map(|(p, v)| doc! { "$addToSet": { p: v } }),
        1 => (path(), live_value()).prop_map(|(p, v)| doc! { "$pull": { p: v } }),
        1 => (path(), prop::collection::vec(live_value(), 1..3))
            .prop_map(|(p, v)| doc! { "$pullAll": { p: v } }),
        1 => (path(), prop_oneof![Just(1), Just(-1)]).prop_map(|(p, v)| doc! { "$pop": { p: v } }),
        1 => (path(), path()).prop_map(|(p, q)| doc! { "$rename": { p: q } }),
        1 => path().prop_map(|p| doc! { "$currentDate": { p: true } }),
    ];
    let count = if mongod { 1..4 } else { 1..2 };
    prop::collection::vec(operator, count)
        .prop_map(|ops| {
            let mut update = Document::new();
            for (name, fields) in ops.into_iter().flatten() {
                // Two operators of one kind merge; a path named twice is refused by the server,
                // which is part of the game.
                match (update.get_mut(&name), fields) {
                    (Some(Bson::Document(existing)), Bson::Document(more)) => existing.extend(more),
                    (_, fields) => {
                        update.insert(name, fields);
                    }
                }
            }
            update
        })
        .boxed()
}

/// An aggregation-pipeline update: one stage or, against mongod, up to three, one of which may
/// reorder the fields. A test server logs a moved field as an update in place, so it gets no
/// pipeline that moves one: no reordering stage, and no second stage that could add back a
/// field the first removed (`$project` then `$set`).
fn pipeline(mongod: bool) -> BoxedStrategy<Vec<Document>> {
    let stage = prop_oneof![
        3 => (path(), live_value()).prop_map(|(p, v)| doc! { "$set": { p: { "$literal": v } } }),
        2 => path().prop_map(|p| doc! { "$unset": [p] }),
        1 => (0i32..4).prop_map(|k| doc! { "$set": { "arr": { "$cond": [
            { "$isArray": "$arr" }, { "$slice": ["$arr", k] }, "$arr"] } } }),
        1 => live_value().prop_map(|v| doc! { "$set": { "arr": { "$concatArrays": [
            { "$cond": [{ "$isArray": "$arr" }, "$arr", []] }, [{ "$literal": v }]] } } }),
        1 => live_value().prop_map(|v| doc! { "$replaceWith": { "$mergeObjects": [
            "$$ROOT", { "added": { "$literal": v } }] } }),
        1 => Just(doc! { "$project": { "a": 1, "arr": 1, "sub.x": 1 } }),
        1 => Just(doc! { "$set": { "n": { "$add": [{ "$cond": [
            { "$isNumber": "$n" }, "$n", 0] }, 1] } } }),
    ];
    let reorder = Just(doc! { "$replaceWith": { "$mergeObjects": [
        { "_id": "$_id" },
        { "$arrayToObject": { "$reverseArray": { "$objectToArray": "$$ROOT" } } },
    ] } });
    if mongod {
        prop::collection::vec(prop_oneof![9 => stage, 1 => reorder], 1..4).boxed()
    } else {
        prop::collection::vec(stage, 1..2).boxed()
    }
}

/// One write of a sequence, on the documents `_id` 0 to 3 (and new ones).
#[derive(Clone, Debug)]
enum Write {
    Operators { id: i32, update: Document },
    Pipeline { id: i32, pipeline: Vec<Document> },
    Many { update: Document },
    Upsert { id: i32, update: Document },
    Replace { id: i32, doc: Document },
    Insert { doc: Document },
    Delete { id: i32 },
}

fn write(mongod: bool) -> BoxedStrategy<Write> {
    let id = || 0i32..4;
    prop_oneof![
        6 => (id(), operators(mongod)).prop_map(|(id, update)| Write::Operators { id, update }),
        4 => (id(), pipeline(mongod)).prop_map(|(id, pipeline)| Write::Pipeline { id, pipeline }),
        1 => operators(mongod).prop_map(|update| Write::Many { update }),
        1 => (10i32..12, operators(mongod)).prop_map(|(id, update)| Write::Upsert { id, update }),
        1 => (id(), seed_document(0)).prop_map(|(id, mut doc)| {
            doc.remove("_id");
            Write::Replace { id, doc }
        }),
        1 => (4i32..8).prop_flat_map(seed_document).prop_map(|doc| Write::Insert { doc }),
        1 => id().prop_map(|id| Write::Delete { id }),
    ]
    .boxed()
}

/// The starting documents and the writes of one case: every kind of write against mongod, the
/// ones a test server can log exactly otherwise.
fn scenario() -> BoxedStrategy<(Vec<Document>, Vec<Write>)> {
    let mongod = real_deployment().is_some();
    (
        (0..4).map(seed_document).collect::<Vec<_>>(),
        prop::collection::vec(write(mongod), 1..12),
    )
        .boxed()
}

/// Runs one write; the server refusing it (a type conflict, say) is part of the game: nothing
/// is logged and the sequence goes on.
async fn run(coll: &Collection<Document>, write: &Write) {
    let result = match write {
        Write::Operators { id, update } => coll
            .update_one(doc! { "_id": id }, update.clone())
            .await
            .map(drop),
        Write::Pipeline { id, pipeline } => coll
            .update_one(doc! { "_id": id }, pipeline.clone())
            .await
            .map(drop),
        Write::Many { update } => coll.update_many(doc! {}, update.clone()).await.map(drop),
        Write::Upsert { id, update } => coll
            .update_one(doc! { "_id": id }, update.clone())
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map(drop),
        Write::Replace { id, doc } => coll
            .replace_one(doc! { "_id": id }, doc.clone())
            .await
            .map(drop),
        Write::Insert { doc } => coll.insert_one(doc.clone()).await.map(drop),
        Write::Delete { id } => coll.delete_one(doc! { "_id": id }).await.map(drop),
    };
    if let Err(e) = result {
        assert!(
            matches!(*e.kind, ErrorKind::Write(_) | ErrorKind::Command(_)),
            "{write:?}: {e}"
        );
    }
}

async fn replay(destination: &Client, entries: &[RawDocumentBuf]) {
    let mut applier = Applier::new(destination.clone(), NamespaceFilter::default(), OPTIONS);
    for entry in entries {
        if let Err(e) = applier.push(entry.clone()).await {
            panic!("{}", mongomirror::error::Failure::from(e));
        }
    }
    if let Err(e) = applier.flush().await {
        panic!("{}", mongomirror::error::Failure::from(e));
    }
}

/// Test servers keep a short oplog: the oplog reads of every case would otherwise slow down
/// as a long run piles up entries. A case writes a few dozen.
const OPLOG_ENTRIES: u64 = 5_000;

async fn start_pair() -> Pair {
    if real_deployment().is_some() {
        return Pair::start().await;
    }
    let source = ServerOptions::default().with_oplog_max_entries(OPLOG_ENTRIES);
    Pair::start_with(source, ServerOptions::default()).await
}

async fn drop_case(client: &Client) {
    client
        .database(DB)
        .drop()
        .await
        .expect("drop the case's database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_replay_to_identical_deployments() {
    let pair = start_pair().await;
    let (source, destination) = pair.clients().await;
    check(16, scenario, move |(seeds, writes)| {
        let (source, destination) = (source.clone(), destination.clone());
        async move {
            drop_case(&source).await;
            drop_case(&destination).await;
            let start = mongomirror::oplog::newest_timestamp(&source)
                .await
                .expect("oplog start");
            let coll = source.database(DB).collection::<Document>(COLL);
            coll.insert_many(seeds).await.expect("seed documents");
            let seeded = mongomirror::oplog::newest_timestamp(&source)
                .await
                .expect("oplog position");
            for write in &writes {
                run(&coll, write).await;
            }
            let entries = oplog_after(&source, start).await;
            replay(&destination, &entries).await;
            assert_same_deployments(&source, &destination).await;
            // Again, over a destination already in the final state.
            replay(&destination, &entries).await;
            assert_same_deployments(&source, &destination).await;
            // Only the writes, over the final state: a copy that read every document last.
            let writes: Vec<RawDocumentBuf> = entries
                .into_iter()
                .filter(|e| e.get_timestamp("ts").is_ok_and(|ts| ts > seeded))
                .collect();
            replay(&destination, &writes).await;
            assert_same_deployments(&source, &destination).await;
        }
    })
    .await;
}

/// Reads `_id: 1` of `coll` as the server stores it.
async fn stored(coll: &Collection<RawDocumentBuf>) -> RawDocumentBuf {
    coll.find_one(doc! { "_id": 1 })
        .await
        .expect("read")
        .expect("the document is there")
}

/// Stores `doc` as `_id: 1` of `coll` and reads it back, or `None` if the server refuses it
/// (field names such as `$x` or `a.b` at the top level, which some servers reject).
async fn store(coll: &Collection<RawDocumentBuf>, doc: &Document) -> Option<Document> {
    coll.drop().await.expect("drop");
    let raw = RawDocumentBuf::from_document(doc).expect("encodes");
    coll.insert_one(raw).await.ok()?;
    Some(Document::try_from(stored(coll).await.as_ref()).expect("decodes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_diffs_replay_to_the_post_image() {
    let pair = Pair::start().await;
    let (_, destination) = pair.clients().await;
    let client = destination.clone();
    let pairs = || {
        let retouched = document().prop_flat_map(|pre| {
            let post = retouched(&pre);
            (Just(pre), post).prop_map(|(pre, post)| vec![pre, post])
        });
        (prop_oneof![history(2), retouched], any::<bool>())
    };
    // Cases whose documents the server stores and differ: the property is not vacuous.
    let replayed = Arc::new(AtomicU32::new(0));
    let counter = replayed.clone();
    check(24, pairs, move |(docs, size_limit)| {
        let destination = client.clone();
        let counter = counter.clone();
        async move {
            let db = destination.database(DB);
            let (target, expected, direct) = (
                db.collection::<RawDocumentBuf>(COLL),
                db.collection::<RawDocumentBuf>("expected"),
                db.collection::<RawDocumentBuf>("direct"),
            );
            // The documents as this server stores them, which is what replay meets.
            let (Some(post), Some(pre)) = (store(&expected, &docs[1]).await, store(&target, &docs[0]).await)
            else {
                return;
            };
            let Some(diff) = doc_diff(&pre, &post, size_limit) else {
                return;
            };
            let want = stored(&expected).await;
            let entry = doc! {
                "op": "u", "ns": format!("{DB}.{COLL}"), "o": { "$v": 2, "diff": diff.clone() },
                "o2": { "_id": 1 }, "ts": Timestamp { time: 1, increment: 1 }, "t": 1_i64,
                "v": 2_i64,
            };
            replay(&destination, &[RawDocumentBuf::from_document(&entry).expect("encodes")]).await;
            counter.fetch_add(1, Ordering::Relaxed);
            let got = stored(&target).await;
            assert!(
                got.as_bytes() == want.as_bytes(),
                "diff {diff:?}\n  pre      {pre:?}\n  expected {post:?}\n  found    {:?}",
                Document::try_from(got.as_ref())
            );
            // The operators alone, when the diff has them, on a copy of the pre-image.
            let raw_diff = RawDocumentBuf::from_document(&diff).expect("encodes");
            let parsed = DocDiff::parse(&raw_diff).expect("reference diffs parse");
            let Some(update) = parsed.to_operators().and_then(|o| o.into_update()) else {
                return;
            };
            store(&direct, &pre).await.expect("the pre-image stored once already");
            match direct.update_one(doc! { "_id": 1 }, update.clone()).await {
                Ok(_) => {
                    let got = stored(&direct).await;
                    assert!(
                        got.as_bytes() == want.as_bytes(),
                        "operators {update:?} of diff {diff:?}\n  pre      {pre:?}\n  expected {post:?}\n  found    {:?}",
                        Document::try_from(got.as_ref())
                    );
                }
                // The applier falls back to applying the diff itself when the server refuses.
                Err(e) => assert!(matches!(*e.kind, ErrorKind::Write(_)), "{update:?}: {e}"),
            }
        }
    })
    .await;
    drop_case(&destination).await;
    let cases = super::config(24).cases;
    let replayed = replayed.load(Ordering::Relaxed);
    assert!(
        replayed * 2 >= cases,
        "only {replayed} of {cases} cases had two stored documents that differ"
    );
}
