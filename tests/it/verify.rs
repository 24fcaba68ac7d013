//! `--verify` end to end: identical deployments verify clean, every kind of difference made on
//! purpose on the destination is found and named, and a verification under a live write load,
//! against a destination that a running sync keeps up to date, reports no false differences.

use std::time::Duration;

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};
use serde_json::Value;

use crate::support::{every_type, mixed_ids, wait_until, Output, Pair};

const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest document the server accepts, less a little: the "15 MB document" of the dataset.
const LARGE_DOCUMENT_BYTES: usize = 15 * 1024 * 1024;

/// The dataset both sides get: every BSON type under `_id`s of every type, a 15 MB document,
/// and a small application with indexes, a capped collection, a validator and a view.
async fn seed(client: &Client, large: bool) {
    let shapes = client.database("shapes");
    let docs: Vec<Document> = mixed_ids().into_iter().map(every_type).collect();
    shapes
        .collection::<Document>("all")
        .insert_many(docs)
        .await
        .unwrap();
    if large {
        let blob = Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![0xCD; LARGE_DOCUMENT_BYTES],
        };
        shapes
            .collection::<Document>("large")
            .insert_one(doc! { "_id": "large", "blob": blob })
            .await
            .unwrap();
    }
    let app = client.database("app");
    let users: Vec<Document> = (0..2_000)
        .map(|i| doc! { "_id": i, "email": format!("u{i}@example.com"), "visits": i % 7, "name": format!("user {i}") })
        .collect();
    app.collection::<Document>("users")
        .insert_many(users)
        .await
        .unwrap();
    let index = |keys: Document, options: IndexOptions| {
        IndexModel::builder().keys(keys).options(options).build()
    };
    app.collection::<Document>("users")
        .create_indexes([
            index(
                doc! { "email": 1 },
                IndexOptions::builder().unique(true).build(),
            ),
            index(
                doc! { "seen": 1 },
                IndexOptions::builder()
                    .expire_after(Duration::from_secs(3600))
                    .build(),
            ),
        ])
        .await
        .unwrap();
    app.run_command(doc! { "create": "log", "capped": true, "size": 1 << 20 })
        .await
        .unwrap();
    app.collection::<Document>("log")
        .insert_many((0..50).map(|i| doc! { "_id": i, "line": format!("line {i}") }))
        .await
        .unwrap();
    app.run_command(doc! { "create": "checked", "validator": { "n": { "$type": "int" } } })
        .await
        .unwrap();
    app.collection::<Document>("checked")
        .insert_one(doc! { "_id": 1, "n": 1 })
        .await
        .unwrap();
    app.run_command(doc! { "create": "spare" }).await.unwrap();
    app.run_command(doc! { "create": "active", "viewOn": "users", "pipeline": [{ "$match": { "visits": { "$gt": 0 } } }] })
        .await
        .unwrap();
}

/// Runs `mongomirror --verify` between the pair, writing the JSON report; returns the output
/// and the report.
async fn verify(pair: &Pair, extra: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let out = pair
        .mongomirror()
        .args(["--verify", "--verifyReport", path.to_str().unwrap()])
        .args(extra)
        .run(RUN_TIMEOUT)
        .await;
    let report = std::fs::read_to_string(&path)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out, report)
}

/// The report entry of a namespace.
fn entry<'a>(report: &'a Value, ns: &str) -> &'a Value {
    report["namespaces"]
        .as_array()
        .and_then(|list| list.iter().find(|n| n["namespace"] == ns))
        .unwrap_or_else(|| panic!("no {ns} in {report:#}"))
}

#[tokio::test]
async fn identical_deployments_verify_clean() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    tokio::join!(seed(&src, true), seed(&dst, true));
    let (out, report) = verify(&pair, &[]).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        out.stderr
            .contains("verification: the destination matches the source (7 namespaces"),
        "{out}"
    );
    assert_eq!(report["identical"], true, "{report:#}");
    let all = entry(&report, "shapes.all");
    assert_eq!(all["documents"]["compared"], mixed_ids().len(), "{all:#}");
    assert_eq!(
        entry(&report, "app.users")["documents"]["destination"],
        2000
    );
    assert_eq!(entry(&report, "shapes.large")["documents"]["compared"], 1);
    assert!(!out.stderr.contains("Failed:"), "{out}");
}

/// One difference made on purpose on the destination: its name, what it does, and what the
/// report must say (the namespace, and a text its catalog or document entries must contain).
struct Case {
    name: &'static str,
    ns: &'static str,
    expect: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "a missing document",
        ns: "app.users",
        expect: "{\"$numberInt\":\"5\"} missing",
    },
    Case {
        name: "an extra document",
        ns: "app.users",
        expect: "{\"$numberInt\":\"100000\"} extra",
    },
    Case {
        name: "a changed value",
        ns: "app.users",
        expect: "{\"$numberInt\":\"6\"} different name",
    },
    Case {
        name: "a changed numeric type",
        ns: "app.users",
        expect: "{\"$numberInt\":\"7\"} different visits",
    },
    Case {
        name: "the same fields in another order",
        ns: "app.users",
        expect: "{\"$numberInt\":\"8\"} different (field order)",
    },
    Case {
        name: "a missing index",
        ns: "app.users",
        expect: "index email_1 is missing on the destination",
    },
    Case {
        name: "an extra index",
        ns: "app.users",
        expect: "index visits_1 is only on the destination",
    },
    Case {
        name: "other index options",
        ns: "app.users",
        expect: "index seen_1 differs",
    },
    Case {
        name: "other collection options",
        ns: "app.checked",
        expect: "options.validator differs",
    },
    Case {
        name: "a missing collection",
        ns: "app.spare",
        expect: "the collection is missing on the destination",
    },
    Case {
        name: "a view with another pipeline",
        ns: "app.active",
        expect: "options.pipeline differs",
    },
];

/// Makes the destination differ as `case` says.
async fn break_destination(dst: &Client, case: &Case) {
    let app = dst.database("app");
    let users = app.collection::<Document>("users");
    match case.name {
        "a missing document" => {
            users.delete_one(doc! { "_id": 5 }).await.unwrap();
        }
        "an extra document" => {
            users.insert_one(doc! { "_id": 100_000 }).await.unwrap();
        }
        "a changed value" => {
            users
                .update_one(doc! { "_id": 6 }, doc! { "$set": { "name": "changed" } })
                .await
                .unwrap();
        }
        "a changed numeric type" => {
            // visits is 0 for _id 7: the same value as a double.
            users
                .update_one(doc! { "_id": 7 }, doc! { "$set": { "visits": 0.0 } })
                .await
                .unwrap();
        }
        "the same fields in another order" => {
            let reordered =
                doc! { "_id": 8, "visits": 1, "email": "u8@example.com", "name": "user 8" };
            users
                .replace_one(doc! { "_id": 8 }, reordered)
                .await
                .unwrap();
        }
        "a missing index" => users.drop_index("email_1").await.unwrap(),
        "an extra index" => {
            let model = IndexModel::builder().keys(doc! { "visits": 1 }).build();
            users.create_index(model).await.unwrap();
        }
        "other index options" => {
            app.run_command(
                doc! { "collMod": "users", "index": { "name": "seen_1", "expireAfterSeconds": 60 } },
            )
            .await
            .unwrap();
        }
        "other collection options" => {
            app.run_command(
                doc! { "collMod": "checked", "validator": { "n": { "$type": "long" } } },
            )
            .await
            .unwrap();
        }
        "a missing collection" => app.collection::<Document>("spare").drop().await.unwrap(),
        "a view with another pipeline" => {
            app.collection::<Document>("active").drop().await.unwrap();
            app.run_command(doc! { "create": "active", "viewOn": "users", "pipeline": [{ "$match": { "visits": { "$gt": 1 } } }] })
                .await
                .unwrap();
        }
        other => panic!("no such case: {other}"),
    }
}

/// Everything the report says of a namespace, as `<_id> <kind> <fields>` and catalog lines.
fn findings(report: &Value, ns: &str) -> Vec<String> {
    let n = entry(report, ns);
    let mut out: Vec<String> = n["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    for d in n["differences"].as_array().into_iter().flatten() {
        let fields: Vec<&str> = d["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push(
            format!(
                "{} {} {}",
                d["id"].as_str().unwrap_or(""),
                d["kind"].as_str().unwrap_or(""),
                fields.join(" ")
            )
            .trim_end()
            .to_string(),
        );
    }
    out
}

async fn reseed(pair: &Pair) {
    let (src, dst) = pair.clients().await;
    for client in [&src, &dst] {
        for db in ["app", "shapes"] {
            client.database(db).drop().await.unwrap();
        }
    }
    tokio::join!(seed(&src, false), seed(&dst, false));
}

/// Each kind of difference alone, then all of them at once: each is found and named, and the
/// exit code is 6. (A verification that reported nothing would fail every case.)
#[tokio::test]
async fn every_kind_of_difference_is_found_and_named() {
    let pair = Pair::start().await;
    for case in CASES {
        reseed(&pair).await;
        let (_, dst) = pair.clients().await;
        break_destination(&dst, case).await;
        let (out, report) = verify(&pair, &[]).await;
        assert_eq!(out.status, Some(6), "{}: {out}", case.name);
        assert!(
            out.stderr
                .contains("Failed: the destination differs from the source in 1 of"),
            "{}: {out}",
            case.name
        );
        let found = findings(&report, case.ns);
        assert!(
            found.iter().any(|f| f.contains(case.expect)),
            "{}: expected {:?} in {found:#?}",
            case.name,
            case.expect
        );
        let differing: Vec<&str> = report["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| {
                !n["catalog"].as_array().unwrap().is_empty()
                    || n["differences"].as_array().is_some_and(|d| !d.is_empty())
            })
            .filter_map(|n| n["namespace"].as_str())
            .collect();
        assert_eq!(
            differing,
            [case.ns],
            "{}: only its namespace differs",
            case.name
        );
    }
    reseed(&pair).await;
    let (_, dst) = pair.clients().await;
    for case in CASES {
        break_destination(&dst, case).await;
    }
    let (out, report) = verify(&pair, &["--verifyMaxDifferences", "20"]).await;
    assert_eq!(out.status, Some(6), "{out}");
    for case in CASES {
        let found = findings(&report, case.ns);
        assert!(
            found.iter().any(|f| f.contains(case.expect)),
            "all at once, {}: expected {:?} in {found:#?}",
            case.name,
            case.expect
        );
    }
    // The table names them on stderr too.
    assert!(
        out.stderr
            .contains("app.users: _id {\"$numberInt\":\"5\"}: missing"),
        "{out}"
    );
}

/// `--ttlWithoutExpiry` leaves TTL indexes without expiry on purpose: with the flag, the
/// report calls that expected and prints the `collMod` that restores it; the exit code is 0.
#[tokio::test]
async fn ttl_without_expiry_differences_are_expected() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    tokio::join!(seed(&src, false), seed(&dst, false));
    let users = dst.database("app").collection::<Document>("users");
    users.drop_index("seen_1").await.unwrap();
    users
        .create_index(IndexModel::builder().keys(doc! { "seen": 1 }).build())
        .await
        .unwrap();
    let (out, report) = verify(&pair, &["--ttlWithoutExpiry"]).await;
    assert_eq!(out.status, Some(0), "{out}");
    let expected = &entry(&report, "app.users")["expected"][0];
    assert_eq!(
        expected["fix"],
        "db.getSiblingDB(\"app\").runCommand({collMod: \"users\", index: {name: \"seen_1\", expireAfterSeconds: 3600}})",
        "{report:#}"
    );
    let (out, _) = verify(&pair, &[]).await;
    assert_eq!(
        out.status,
        Some(6),
        "without the flag it is a difference\n{out}"
    );
}

/// A verification while the source takes writes and a running mongomirror keeps the
/// destination up to date: the first pass may see documents in flight, the recheck reads them
/// again, and nothing is reported.
#[tokio::test]
async fn a_live_load_gives_no_false_differences() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src, false).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    // The dataset has a TTL index, which the migration builds without expiry.
    let mirror = pair
        .mongomirror()
        .args([
            "--bookmarkFile",
            bookmark.to_str().unwrap(),
            "--ttlWithoutExpiry",
        ])
        .spawn();
    mirror
        .wait_for_line("has caught up with the initial sync", RUN_TIMEOUT)
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let load = tokio::spawn({
        let users = src.database("app").collection::<Document>("users");
        let (stop, written) = (stop.clone(), written.clone());
        async move {
            let mut n: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Spread over the collection: one document rarely changes twice within a recheck.
                let id = (n * 7919) % 2_000;
                users
                    .update_one(
                        doc! { "_id": id as i32 },
                        doc! { "$inc": { "visits": 1 }, "$set": { "at": n } },
                    )
                    .await
                    .unwrap();
                if n % 10 == 0 {
                    users
                        .insert_one(
                            doc! { "_id": Bson::Int64(1_000_000 + n), "email": format!("n{n}") },
                        )
                        .await
                        .unwrap();
                }
                n += 1;
                written.store(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let count = || written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        wait_until(RUN_TIMEOUT, Duration::from_millis(10), async || count()
            >= 20)
        .await,
        "the load does not run"
    );
    let before = count();
    let (out, report) = verify(&pair, &["--ttlWithoutExpiry"]).await;
    let during = count() - before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    assert!(during > 0, "the load ran during the verification");
    assert_eq!(out.status, Some(0), "{out}\n{report:#}");
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
    let _ = dst;
}

/// A difference that the first pass sees and that is gone when the documents are read again
/// (a write in flight) is not reported: it counts as transient.
#[tokio::test]
async fn a_difference_gone_at_the_recheck_is_transient() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    tokio::join!(seed(&src, false), seed(&dst, false));
    let users = dst.database("app").collection::<Document>("users");
    users
        .update_one(doc! { "_id": 9 }, doc! { "$set": { "name": "in flight" } })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let running = pair
        .mongomirror()
        .args(["--verify", "--verifyReport", path.to_str().unwrap()])
        .spawn();
    running
        .wait_for_line("reading them again", RUN_TIMEOUT)
        .await
        .unwrap();
    users
        .update_one(doc! { "_id": 9 }, doc! { "$set": { "name": "user 9" } })
        .await
        .unwrap();
    let out = running.wait(RUN_TIMEOUT).await;
    assert_eq!(out.status, Some(0), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        entry(&report, "app.users")["documents"]["transient"],
        1,
        "{report:#}"
    );
}
