//! Batching, transaction assembly and the checkpoint rule, without a server: these entries never
//! reach the destination (no-ops and transactions that stay open or abort).

use mongodb::bson::{doc, spec::BinarySubtype, Binary, Document, RawDocumentBuf, Timestamp};
use mongodb::Client;

use super::*;

async fn applier() -> Applier {
    // Never contacted: nothing in these tests writes.
    let client = Client::with_uri_str("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100")
        .await
        .expect("client options parse");
    Applier::new(client, NamespaceFilter::default(), ApplyOptions::default())
}

fn ts(i: u32) -> Timestamp {
    Timestamp {
        time: 100,
        increment: i,
    }
}

fn noop(i: u32) -> RawDocumentBuf {
    RawDocumentBuf::from_document(
        &doc! {"op": "n", "ns": "", "o": {"msg": "periodic noop"}, "ts": ts(i), "t": 1_i64},
    )
    .unwrap()
}

fn txn(i: u32, lsid: u8, o: Document, prev: u32) -> RawDocumentBuf {
    RawDocumentBuf::from_document(&doc! {
        "op": "c", "ns": "admin.$cmd", "ts": ts(i), "t": 1_i64, "o": o,
        "lsid": {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![lsid; 16] }},
        "txnNumber": 1_i64,
        "prevOpTime": {"ts": if prev == 0 { Timestamp { time: 0, increment: 0 } } else { ts(prev) }, "t": 1_i64},
    })
    .unwrap()
}

fn prepare(i: u32, lsid: u8) -> RawDocumentBuf {
    txn(
        i,
        lsid,
        doc! {"applyOps": [{"op": "i", "ns": "app.c", "o": {"_id": 1}}], "prepare": true},
        0,
    )
}

fn at(i: u32) -> Option<Timestamp> {
    Some(ts(i))
}

#[tokio::test]
async fn checkpoint_follows_acknowledged_entries() {
    let mut a = applier().await;
    assert_eq!(a.checkpoint(), None);
    a.push(noop(1)).await.unwrap();
    a.push(noop(2)).await.unwrap();
    assert_eq!(
        a.checkpoint(),
        None,
        "nothing is acknowledged before a flush"
    );
    a.flush().await.unwrap();
    assert_eq!(a.checkpoint().map(|o| o.ts), at(2));
    assert_eq!(a.checkpoint().and_then(|o| o.term), Some(1));
    assert_eq!(a.stats().entries, 2);
    assert_eq!(a.stats().skipped, 2);
}

#[tokio::test]
async fn checkpoint_never_enters_an_open_transaction() {
    let mut a = applier().await;
    a.push(noop(1)).await.unwrap();
    a.push(prepare(2, 7)).await.unwrap();
    a.push(noop(3)).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(
        a.checkpoint().map(|o| o.ts),
        at(1),
        "the prepared transaction is still open"
    );
    a.push(txn(4, 7, doc! {"abortTransaction": 1}, 2))
        .await
        .unwrap();
    a.flush().await.unwrap();
    assert_eq!(a.checkpoint().map(|o| o.ts), at(4));
}

#[tokio::test]
async fn a_transaction_open_from_the_first_entry_allows_no_checkpoint() {
    let mut a = applier().await;
    let partial = txn(
        1,
        3,
        doc! {"applyOps": [{"op": "i", "ns": "app.c", "o": {"_id": 1}}], "partialTxn": true},
        0,
    );
    a.push(partial).await.unwrap();
    a.push(noop(2)).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(a.checkpoint(), None);
}

#[tokio::test]
async fn commits_without_their_start_are_errors() {
    let mut a = applier().await;
    let err = a
        .push(txn(
            5,
            1,
            doc! {"commitTransaction": 1, "commitTimestamp": ts(4)},
            3,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::TxnIncomplete { .. }), "{err}");
    let failure = Failure::from(err);
    assert!(failure
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("--forceDump")));

    let mut a = applier().await;
    let last = txn(
        6,
        2,
        doc! {"applyOps": [{"op": "i", "ns": "app.c", "o": {"_id": 1}}], "count": 3},
        5,
    );
    let err = a.push(last).await.unwrap_err();
    assert!(matches!(err, ApplyError::TxnIncomplete { .. }), "{err}");
}

#[tokio::test]
async fn unreadable_entries_name_their_position() {
    let mut a = applier().await;
    let bad = RawDocumentBuf::from_document(&doc! {"op": "z", "ns": "a.b", "o": {}, "ts": ts(9)})
        .unwrap();
    let err = a.push(bad).await.unwrap_err();
    assert!(err.to_string().contains("Timestamp(100, 9)"), "{err}");
    let failure = Failure::from(err);
    assert!(
        failure
            .causes
            .iter()
            .any(|c| c.contains("unknown op type 'z'")),
        "{failure}"
    );
}

#[tokio::test]
async fn an_fcv_change_on_the_source_stops_replay() {
    let mut a = applier().await;
    // mongod 7.0 logs `setFeatureCompatibilityVersion` as an update of this document.
    let entry = doc! {
        "op": "u", "ns": "admin.system.version", "ts": ts(1), "t": 1i64, "v": 2i64,
        "o": { "$v": 2, "diff": { "u": { "version": "7.0" } } },
        "o2": { "_id": "featureCompatibilityVersion" },
    };
    let err = a
        .push(RawDocumentBuf::from_document(&entry).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::FcvChanged { .. }), "{err}");
    let failure = Failure::from(err);
    assert!(
        failure
            .message
            .contains("featureCompatibilityVersion changed at 100:1"),
        "{failure}"
    );
    // Other admin.system.version documents stay ignored.
    let other = doc! { "op": "u", "ns": "admin.system.version", "ts": ts(2), "o": { "$set": { "x": 1 } }, "o2": { "_id": "startRangeDeletion" } };
    a.push(RawDocumentBuf::from_document(&other).unwrap())
        .await
        .unwrap();
}

fn create(i: u32, coll: &str) -> RawDocumentBuf {
    RawDocumentBuf::from_document(
        &doc! {"op": "c", "ns": "app.$cmd", "o": {"create": coll}, "ts": ts(i), "t": 1_i64},
    )
    .unwrap()
}

/// An applier that records the checkpoints it asks to be saved; the namespace filter leaves
/// `app` out, so that no command reaches the (absent) destination.
async fn recording_applier() -> (Applier, std::sync::Arc<std::sync::Mutex<Vec<Timestamp>>>) {
    let client = Client::with_uri_str("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=100")
        .await
        .expect("client options parse");
    let filter = NamespaceFilter {
        exclude_dbs: vec!["app".into()],
        ..Default::default()
    };
    let mut a = Applier::new(client, filter, ApplyOptions::default());
    let saved = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    a.on_checkpoint(Box::new({
        let saved = saved.clone();
        move |cp, _| {
            saved.lock().unwrap().push(cp.ts);
            Ok(())
        }
    }));
    (a, saved)
}

#[tokio::test]
async fn every_command_sits_between_two_saved_checkpoints() {
    let (mut a, saved) = recording_applier().await;
    a.push(noop(1)).await.unwrap();
    a.push(noop(2)).await.unwrap();
    a.push(create(3, "x")).await.unwrap();
    a.push(create(4, "y")).await.unwrap();
    a.push(noop(5)).await.unwrap();
    // Before each command everything earlier is applied and saved; right after it, the command.
    assert_eq!(*saved.lock().unwrap(), vec![ts(2), ts(3), ts(4)]);
    assert_eq!(
        a.checkpoint().map(|o| o.ts),
        at(4),
        "noop 5 is not flushed yet"
    );
}

#[tokio::test]
async fn a_command_at_the_resume_point_is_not_applied_again() {
    let (mut a, saved) = recording_applier().await;
    a.resume_after(ts(3));
    a.push(create(3, "x")).await.unwrap();
    assert!(
        saved.lock().unwrap().is_empty(),
        "skipped, so nothing to save"
    );
    assert_eq!(a.stats().skipped, 1);
    a.push(create(4, "y")).await.unwrap();
    assert_eq!(*saved.lock().unwrap(), vec![ts(3), ts(4)]);
}

/// A delete then an insert of one `_id` under two byte forms; `(ns, ids)` of each lane.
fn lane_plan(
    namespaces: &FxHashMap<Namespace, NsInfo>,
    docs: &[RawDocumentBuf],
) -> Vec<(bool, Vec<String>)> {
    let ops: Vec<DocOp<'_>> = docs
        .iter()
        .map(|d| {
            let id = d.get("_id").unwrap().unwrap();
            let change = if d.get_bool("insert").unwrap_or(false) {
                Change::Insert(d)
            } else {
                Change::Delete
            };
            DocOp {
                ns: Namespace::new("app", "c"),
                id,
                key: crate::order::key(id),
                change,
            }
        })
        .collect();
    lanes(ops, namespaces, 8)
        .into_iter()
        .filter(|(ops, _)| !ops.is_empty())
        .map(|(ops, ordered)| {
            let ids = ops
                .iter()
                .map(|o| format!("{:?}", mongodb::bson::Bson::try_from(o.id).unwrap()))
                .collect();
            (ordered, ids)
        })
        .collect()
}

#[test]
fn every_form_of_one_id_shares_a_lane_and_collated_collections_keep_order() {
    let docs = |a: mongodb::bson::Bson, b: mongodb::bson::Bson| -> Vec<RawDocumentBuf> {
        // Enough other documents to spread over several lanes.
        let mut v = vec![
            RawDocumentBuf::from_document(&doc! {"_id": a}).unwrap(),
            RawDocumentBuf::from_document(&doc! {"_id": b, "insert": true}).unwrap(),
        ];
        v.extend((100..400).map(|i| RawDocumentBuf::from_document(&doc! {"_id": i}).unwrap()));
        v
    };
    let plain: FxHashMap<Namespace, NsInfo> = [(Namespace::new("app", "c"), NsInfo::default())]
        .into_iter()
        .collect();
    // mongod: NumberInt(1) and 1.0 are one _id; the delete and the insert keep their order.
    let numbers = docs(
        mongodb::bson::Bson::Int32(1),
        mongodb::bson::Bson::Double(1.0),
    );
    let plan = lane_plan(&plain, &numbers);
    assert!(plan.len() > 1, "the run is spread: {}", plan.len());
    let lane = plan
        .iter()
        .find(|(_, ids)| ids.iter().any(|i| i == "Int32(1)"))
        .expect("a lane holds _id 1");
    let at = |id: &str| lane.1.iter().position(|i| i == id);
    assert!(
        at("Int32(1)").is_some() && at("Int32(1)") < at("Double(1.0)"),
        "{lane:?}"
    );
    // With a default collation "a" and "A" may be one _id: one ordered lane, in oplog order.
    let collated: FxHashMap<Namespace, NsInfo> = [(
        Namespace::new("app", "c"),
        NsInfo {
            ordered: false,
            collated: true,
        },
    )]
    .into_iter()
    .collect();
    let strings = docs("a".into(), "A".into());
    let plan = lane_plan(&collated, &strings);
    assert_eq!(plan.len(), 1);
    assert!(plan[0].0, "ordered");
    assert_eq!(plan[0].1[..2], ["String(\"a\")", "String(\"A\")"]);
}
