//! The initial sync, end to end: every data shape and collection kind arrives as it is on the
//! source, `-j` is respected, large collections are split into `_id` ranges, and the restart
//! rules (`--drop`, refusing a destination that holds data, `--noIndexRestore`) hold.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime, Document};
use mongodb::options::{ClusteredIndex, Collation, IndexOptions};
use mongodb::{Client, IndexModel};

use crate::support::{
    assert_same_deployments, every_type, mixed_ids, skip_on_real_deployment, Output, Pair,
    ServerOptions,
};

/// Longest a copy of the test datasets may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest a run that must stop on its own (a refusal) may take.
const QUICK: Duration = Duration::from_secs(60);
/// The log line that ends the initial sync and the oplog replay that catches up with it: from
/// then on, unique indexes are unique and the destination matches the source.
const COMPLETED: &str = "has caught up with the initial sync";

/// The largest document the server accepts (16 MiB).
const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Runs mongomirror until its initial sync completes and oplog sync has caught up with it,
/// then stops it; returns everything it printed.
async fn initial_sync(pair: &Pair, extra: &[&str]) -> Output {
    let running = pair.mongomirror().args(extra).spawn();
    if let Err(e) = running.wait_for_line(COMPLETED, COPY_TIMEOUT).await {
        panic!("no '{COMPLETED}' line: {e}\n{}", running.output_so_far());
    }
    running.send_sigint();
    let out = running.wait(QUICK).await;
    for forbidden in ["Failed:", "panicked"] {
        assert!(!out.stderr.contains(forbidden), "{out}");
    }
    out
}

/// Runs mongomirror to its end.
async fn run_to_end(pair: &Pair, extra: &[&str]) -> Output {
    pair.mongomirror().args(extra).run(QUICK).await
}

async fn insert(client: &Client, db: &str, coll: &str, docs: Vec<Document>) {
    client
        .database(db)
        .collection::<Document>(coll)
        .insert_many(docs)
        .await
        .unwrap_or_else(|e| panic!("seeding {db}.{coll}: {e}"));
}

async fn create_index(
    client: &Client,
    db: &str,
    coll: &str,
    keys: Document,
    options: IndexOptions,
) {
    let model = IndexModel::builder().keys(keys).options(options).build();
    client
        .database(db)
        .collection::<Document>(coll)
        .create_index(model)
        .await
        .unwrap_or_else(|e| panic!("index on {db}.{coll}: {e}"));
}

async fn index_names(client: &Client, db: &str, coll: &str) -> BTreeSet<String> {
    client
        .database(db)
        .collection::<Document>(coll)
        .list_index_names()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn every_data_shape_arrives_byte_for_byte() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    let mut docs: Vec<Document> = mixed_ids().into_iter().map(every_type).collect();
    docs.push(doc! {
        "_id": "names",
        "$dollar": 1,
        "dotted.name": { "a.b": 2, "$inner": 3 },
        "": "empty",
        "nested": { "": { "": 0 } },
    });
    docs.push(doc! { "_id": "order", "z": 1, "a": 2, "m": { "y": 1, "b": 2 }, "_a": 3 });
    insert(&source, "shapes", "all", docs).await;
    // The largest document the server accepts: the copy must neither split nor refuse it.
    let header =
        doc! { "_id": "huge", "blob": Binary { subtype: BinarySubtype::Generic, bytes: vec![] } };
    let overhead = mongodb::bson::to_vec(&header).unwrap().len();
    let blob = vec![0xAB; MAX_DOCUMENT_BYTES - overhead];
    let huge =
        doc! { "_id": "huge", "blob": Binary { subtype: BinarySubtype::Generic, bytes: blob } };
    assert_eq!(
        mongodb::bson::to_vec(&huge).unwrap().len(),
        MAX_DOCUMENT_BYTES
    );
    insert(
        &source,
        "shapes",
        "huge",
        vec![huge, doc! { "_id": "small" }],
    )
    .await;

    initial_sync(&pair, &[]).await;
    assert_same_deployments(&source, &destination).await;
}

#[tokio::test]
async fn every_collection_kind_and_index_arrives_with_its_options() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    let db = source.database("kinds");

    db.create_collection("capped")
        .capped(true)
        .size(64 * 1024)
        .max(50)
        .await
        .unwrap();
    insert(
        &source,
        "kinds",
        "capped",
        (0..80).map(|i| doc! { "_id": i, "i": i }).collect(),
    )
    .await;

    let french = Collation::builder()
        .locale("fr")
        .strength(mongodb::options::CollationStrength::Secondary)
        .build();
    db.create_collection("collated")
        .collation(french)
        .await
        .unwrap();
    insert(
        &source,
        "kinds",
        "collated",
        vec![doc! { "_id": "é", "v": "a" }, doc! { "_id": "z", "v": "B" }],
    )
    .await;

    // Existing documents violate the validator added afterwards: the copy must bypass it.
    insert(
        &source,
        "kinds",
        "validated",
        vec![doc! { "_id": 1, "a": "not an int" }],
    )
    .await;
    db.run_command(doc! {
        "collMod": "validated",
        "validator": { "a": { "$type": "int" } },
        "validationLevel": "strict",
        "validationAction": "error",
    })
    .await
    .unwrap();

    // Clustered collections (5.3) and pre- and post-images (6.0) need newer real servers.
    if crate::support::server_release(&source).await >= (6, 0) {
        db.create_collection("clustered")
            .clustered_index(ClusteredIndex::default())
            .await
            .unwrap();
        insert(
            &source,
            "kinds",
            "clustered",
            (0..10).map(|i| doc! { "_id": i }).collect(),
        )
        .await;
        db.run_command(
            doc! { "create": "images", "changeStreamPreAndPostImages": { "enabled": true } },
        )
        .await
        .unwrap();
    }
    db.create_collection("empty").await.unwrap();
    source
        .database("emptydb")
        .create_collection("nothing")
        .await
        .unwrap();
    // A view on a view, listed before the view it reads from.
    db.run_command(doc! { "create": "a_view", "viewOn": "b_view", "pipeline": [{ "$match": { "i": { "$gt": 1 } } }] })
        .await
        .unwrap();
    db.run_command(doc! {
        "create": "b_view", "viewOn": "capped",
        "pipeline": [{ "$project": { "i": 1 } }],
        "collation": { "locale": "en" },
    })
    .await
    .unwrap();
    insert(
        &source,
        "kinds",
        "system.js",
        vec![doc! { "_id": "f", "value": Bson::JavaScriptCode("function () {}".into()) }],
    )
    .await;

    insert(
        &source,
        "kinds",
        "indexed",
        (0..20)
            .map(|i| {
                doc! { "_id": i, "u": i, "s": i % 3, "at": DateTime::from_millis(4_102_444_800_000),
                "loc": { "type": "Point", "coordinates": [i as f64, 1.0] },
                "w": { "x": i, "y": { "z": i } }, "name": format!("n{i}") }
            })
            .collect(),
    )
    .await;
    let o = IndexOptions::builder;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "u": 1 },
        o().unique(true).name("u_unique".to_string()).build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "s": -1, "u": 1 },
        o().sparse(true).build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "s": 1 },
        o().partial_filter_expression(doc! { "s": { "$gt": 0 } })
            .build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "name": 1 },
        o().collation(Collation::builder().locale("de").build())
            .build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "loc": "2dsphere" },
        o().build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "$**": 1 },
        o().wildcard_projection(doc! { "w": 1 }).build(),
    )
    .await;
    create_index(
        &source,
        "kinds",
        "indexed",
        doc! { "name": -1, "s": 1 },
        o().hidden(true).build(),
    )
    .await;

    let out = initial_sync(&pair, &[]).await;
    assert_same_deployments(&source, &destination).await;
    for line in [
        "createIndexes for collection: `kinds.indexed`",
        "finished in",
    ] {
        assert!(out.stderr.contains(line), "no {line:?} in\n{out}");
    }
}

#[tokio::test]
async fn parallelism_is_limited_by_j() {
    let pair = Pair::start().await;
    let (source, _) = pair.clients().await;
    for c in 0..6 {
        insert(
            &source,
            "par",
            &format!("c{c}"),
            (0..300).map(|i| doc! { "_id": i, "c": c }).collect(),
        )
        .await;
    }
    let out = initial_sync(&pair, &["-j", "2"]).await;
    let mut in_flight = BTreeSet::new();
    let mut most = 0;
    let mut finished = 0;
    for line in out.stderr.lines() {
        if let Some(rest) = line.split("\tcopying ").nth(1) {
            in_flight.insert(rest.split(':').next().unwrap_or_default().to_string());
            most = most.max(in_flight.len());
        } else if let Some(rest) = line.split("\tfinished copying ").nth(1) {
            assert!(
                in_flight.remove(rest.split(':').next().unwrap_or_default()),
                "{out}"
            );
            finished += 1;
        }
    }
    assert_eq!(finished, 6, "{out}");
    assert!(
        most <= 2,
        "{most} collections were copied at once with -j 2\n{out}"
    );
}

#[tokio::test]
async fn a_large_collection_is_split_into_id_ranges_and_arrives_whole() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    // Every type bracket is represented, so ranges must span type boundaries.
    let ids = mixed_ids();
    let docs: Vec<Document> = (0..32_000i64)
        .map(|i| {
            let id = match i % 8 {
                0 => Bson::Int64(i),
                1 => Bson::String(format!("s{i:06}")),
                2 => Bson::ObjectId(ObjectId::new()),
                3 => Bson::Double(i as f64 + 0.5),
                4 => Bson::DateTime(DateTime::from_millis(i)),
                5 => Bson::Document(doc! { "n": i }),
                6 => Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: i.to_be_bytes().to_vec(),
                }),
                _ => Bson::Int32(i as i32),
            };
            doc! { "_id": id, "pad": "x".repeat(50) }
        })
        .chain(
            ids.into_iter()
                .filter(|id| !matches!(id, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_)))
                .map(|id| doc! { "_id": id }),
        )
        .collect();
    insert(&source, "split", "big", docs).await;
    // One type only: read with `_id` filters rather than index bounds.
    let numbers = (0..24_000i64).map(|i| match i % 3 {
        0 => doc! { "_id": i },
        1 => doc! { "_id": i as i32 },
        _ => doc! { "_id": i as f64 + 0.25 },
    });
    insert(&source, "split", "numbers", numbers.collect()).await;

    let out = initial_sync(&pair, &["-j", "4"]).await;
    for (ns, how) in [
        ("split.big", "by index bounds"),
        ("split.numbers", "by filter"),
    ] {
        let split = out
            .stderr
            .lines()
            .any(|l| l.contains(&format!("copying {ns}: about")) && l.contains(how));
        assert!(split, "{ns} was not split {how}\n{out}");
    }
    // The comparison walks both sides in `_id` order: a missing or repeated document fails it.
    assert_same_deployments(&source, &destination).await;
}

#[tokio::test]
async fn no_index_restore_copies_data_without_indexes() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    // Indexes first: the oplog stage that follows the copy replays nothing but inserts.
    create_index(&source, "ni", "c", doc! { "k": 1 }, IndexOptions::default()).await;
    let ttl = IndexOptions::builder()
        .expire_after(Duration::from_secs(3600))
        .build();
    create_index(&source, "ni", "ttl", doc! { "at": 1 }, ttl).await;
    let docs = (0..10).map(|i| doc! { "_id": i, "k": i }).collect();
    insert(&source, "ni", "c", docs).await;
    let at = DateTime::from_millis(4_102_444_800_000);
    insert(&source, "ni", "ttl", vec![doc! { "_id": 1, "at": at }]).await;

    let out = initial_sync(&pair, &["--noIndexRestore", "--ttlWithoutExpiry"]).await;
    assert_eq!(
        index_names(&destination, "ni", "c").await,
        BTreeSet::from(["_id_".to_string()]),
        "{out}"
    );
    let copied: Vec<Document> = destination
        .database("ni")
        .collection::<Document>("c")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(copied.len(), 10);
}

#[tokio::test]
async fn ttl_indexes_are_built_without_expiry_when_asked() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    let ttl = IndexOptions::builder()
        .expire_after(Duration::from_secs(3600))
        .name("at_ttl".to_string())
        .build();
    create_index(&source, "ttl", "c", doc! { "at": 1 }, ttl).await;
    let at = DateTime::from_millis(4_102_444_800_000);
    insert(&source, "ttl", "c", vec![doc! { "_id": 1, "at": at }]).await;

    let out = initial_sync(&pair, &["--ttlWithoutExpiry"]).await;
    let specs: Vec<Document> = destination
        .database("ttl")
        .run_cursor_command(doc! { "listIndexes": "c" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let built = specs
        .iter()
        .find(|s| s.get_str("name") == Ok("at_ttl"))
        .unwrap_or_else(|| panic!("no at_ttl index in {specs:?}\n{out}"));
    assert_eq!(built.get_document("key").ok(), Some(&doc! { "at": 1 }));
    assert!(!built.contains_key("expireAfterSeconds"), "{built}\n{out}");
}

#[tokio::test]
async fn a_destination_holding_data_is_refused_without_drop() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    insert(
        &source,
        "app",
        "taken",
        vec![doc! { "_id": 1, "from": "source" }],
    )
    .await;
    insert(&source, "app", "fresh", vec![doc! { "_id": 1 }]).await;
    insert(
        &destination,
        "app",
        "taken",
        vec![doc! { "_id": 2, "from": "destination" }],
    )
    .await;

    let out = run_to_end(&pair, &[]).await;
    assert_eq!(out.status, Some(4), "{out}");
    let failed = out
        .stderr
        .lines()
        .find(|l| l.contains("Failed:"))
        .unwrap_or_default();
    assert!(failed.contains("app.taken"), "{out}");
    assert!(out.stderr.contains("--drop"), "{out}");
    // Nothing was written.
    let names = destination
        .database("app")
        .list_collection_names()
        .await
        .unwrap();
    assert_eq!(names, vec!["taken".to_string()]);
}

#[tokio::test]
async fn drop_replaces_exactly_the_namespaces_copied() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    // Both sides hold app.taken and app.skipped, with different documents.
    for (side, id, from) in [(&source, 1, "source"), (&destination, 2, "destination")] {
        for coll in ["taken", "skipped"] {
            insert(side, "app", coll, vec![doc! { "_id": id, "from": from }]).await;
        }
    }
    insert(&destination, "app", "only_here", vec![doc! { "_id": 3 }]).await;
    insert(&destination, "other", "kept", vec![doc! { "_id": 4 }]).await;

    let out = initial_sync(&pair, &["--drop", "--excludeNamespace", "app.skipped"]).await;
    assert!(
        out.stderr.contains("dropping app.taken on the destination"),
        "{out}"
    );
    let taken: Vec<Document> = destination
        .database("app")
        .collection::<Document>("taken")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(taken, vec![doc! { "_id": 1, "from": "source" }]);
    for (db, coll, id) in [
        ("app", "skipped", 2),
        ("app", "only_here", 3),
        ("other", "kept", 4),
    ] {
        let left = destination
            .database(db)
            .collection::<Document>(coll)
            .find_one(doc! {})
            .await
            .unwrap();
        assert_eq!(
            left.and_then(|d| d.get_i32("_id").ok()),
            Some(id),
            "{db}.{coll} was touched\n{out}"
        );
    }
}

#[tokio::test]
async fn a_source_changing_during_the_copy_does_not_fail_it() {
    let pair = Pair::start().await;
    let (source, _) = pair.clients().await;
    insert(
        &source,
        "busy",
        "c",
        (0..25_000)
            .map(|i| doc! { "_id": i, "v": 0, "pad": "p" })
            .collect(),
    )
    .await;
    let writer_client = source.clone();
    let writer = tokio::spawn(async move {
        let c = writer_client.database("busy").collection::<Document>("c");
        for round in 0i64.. {
            let i = (round * 7919) % 25_000;
            // Growing documents, deletes and inserts of ids in every range.
            let _ = c
                .update_one(
                    doc! { "_id": i },
                    doc! { "$set": { "v": round, "grow": "g".repeat(200) } },
                )
                .await;
            let _ = c.delete_one(doc! { "_id": (i + 1) % 25_000 }).await;
            let _ = c.insert_one(doc! { "_id": 25_000 + round }).await;
        }
    });
    initial_sync(&pair, &["-j", "4"]).await;
    writer.abort();
}

#[tokio::test]
async fn documents_already_on_the_destination_are_replaced_by_id() {
    use mongodb::bson::{rawdoc, RawDocumentBuf};
    use mongomirror::cli::Namespace;
    use mongomirror::copy::writer::insert_or_replace;
    use mongomirror::error::Failure;

    let pair = Pair::start().await;
    let (_, destination) = pair.clients().await;
    insert(
        &destination,
        "dup",
        "c",
        vec![doc! { "_id": 1, "v": "old" }, doc! { "_id": 2, "v": "old" }],
    )
    .await;
    let collection = destination
        .database("dup")
        .collection::<RawDocumentBuf>("c");
    let ns = Namespace::new("dup", "c");
    let batch = [
        rawdoc! { "_id": 1, "v": "new" },
        rawdoc! { "_id": 3, "v": "new" },
        rawdoc! { "_id": 2, "v": "new", "extra": true },
    ];
    let refs: Vec<_> = batch.iter().map(|d| d.as_ref()).collect();
    insert_or_replace(&collection, &ns, &refs).await.unwrap();
    let all: Vec<RawDocumentBuf> = collection
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let expected = [&batch[0], &batch[2], &batch[1]];
    assert_eq!(
        all.iter().map(|d| d.as_bytes()).collect::<Vec<_>>(),
        expected.map(|d| d.as_bytes())
    );

    // A duplicate on another unique index cannot be resolved by `_id` and fails clearly.
    create_index(
        &destination,
        "dup",
        "c",
        doc! { "u": 1 },
        IndexOptions::builder().unique(true).sparse(true).build(),
    )
    .await;
    insert(&destination, "dup", "c", vec![doc! { "_id": 5, "u": 1 }]).await;
    let clash = rawdoc! { "_id": 4, "u": 1 };
    let failure: Failure = insert_or_replace(&collection, &ns, &[clash.as_ref()])
        .await
        .unwrap_err()
        .into();
    assert!(
        failure.message.contains("cannot insert into dup.c"),
        "{failure}"
    );
    assert!(failure.hint.is_some(), "{failure}");
}

#[tokio::test]
async fn transient_errors_are_waited_out_and_the_range_goes_on() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (source, destination) = pair.clients().await;
    let docs = (0..10_000).map(|i| doc! { "_id": i }).collect();
    insert(&source, "flaky", "c", docs).await;
    // HostUnreachable is transient but not a state change the driver would wait out. (Reads
    // take the same path, but a source fail point would also hit the oplog and catalog reads.)
    destination
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": 3 },
            "data": { "failCommands": ["insert"], "errorCode": 6 },
        })
        .await
        .unwrap();
    let out = initial_sync(&pair, &[]).await;
    assert!(
        out.stderr
            .contains("Recoverable error: copying flaky.c failed"),
        "{out}"
    );
    assert!(out.stderr.contains("flaky.c  10000/10000"), "{out}");
    assert_same_deployments(&source, &destination).await;
}

#[tokio::test]
async fn a_write_the_destination_refuses_for_good_exits_1() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (source, destination) = pair.clients().await;
    insert(
        &source,
        "doomed",
        "c",
        (0..100).map(|i| doc! { "_id": i }).collect(),
    )
    .await;
    // BadValue is not transient: the run must stop with the runtime exit code, not retry forever.
    destination
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": { "failCommands": ["insert"], "errorCode": 2 },
        })
        .await
        .unwrap();
    let out = run_to_end(&pair, &[]).await;
    out.assert_failed(1, "doomed.c", "");
}
