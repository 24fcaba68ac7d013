//! Preflight end to end: every problem in one report, the preflight exit code, and a destination
//! left untouched.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::{IndexOptions, TimeseriesOptions};
use mongodb::{Client, IndexModel};

use crate::support::{mongomirror, skip_on_real_deployment, Output, Pair, ServerOptions, User};

const DEADLINE: Duration = Duration::from_secs(90);

async fn run(pair: &Pair, extra: &[&str]) -> Output {
    pair.mongomirror().args(extra).run(DEADLINE).await
}

async fn add_ttl_index(src: &Client) {
    let sessions = src.database("shop").collection::<Document>("sessions");
    sessions
        .insert_one(doc! { "at": mongodb::bson::DateTime::now() })
        .await
        .unwrap();
    let ttl = IndexModel::builder()
        .keys(doc! { "at": 1 })
        .options(
            IndexOptions::builder()
                .name("at_1".to_string())
                .expire_after(Duration::from_secs(3600))
                .build(),
        )
        .build();
    sessions.create_index(ttl).await.unwrap();
}

/// What the destination holds, to prove a refused run wrote nothing.
async fn snapshot(dst: &Client) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for db in dst.list_database_names().await.unwrap() {
        if ["admin", "local", "config"].contains(&db.as_str()) {
            continue;
        }
        for coll in dst.database(&db).list_collection_names().await.unwrap() {
            let n = dst
                .database(&db)
                .collection::<Document>(&coll)
                .count_documents(doc! {})
                .await
                .unwrap();
            out.push((format!("{db}.{coll}"), n));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn several_problems_are_reported_together_and_nothing_is_written() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    if crate::support::server_release(&src).await < (5, 0) {
        println!("skipped: time-series collections need MongoDB 5.0 or newer");
        return;
    }
    add_ttl_index(&src).await;
    src.database("metrics")
        .create_collection("cpu")
        .timeseries(
            TimeseriesOptions::builder()
                .time_field("t".to_string())
                .build(),
        )
        .await
        .unwrap();
    src.database("shop")
        .collection::<Document>("orders")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    dst.database("shop")
        .collection::<Document>("orders")
        .insert_one(doc! { "_id": 99 })
        .await
        .unwrap();
    let before = snapshot(&dst).await;

    let out = run(&pair, &[]).await;
    assert_eq!(out.status, Some(4), "{out}");
    assert!(
        out.stderr
            .contains("Failed: preflight found 3 problems; nothing was written"),
        "{out}"
    );
    for expected in [
        "TTL indexes, which mongomirror does not migrate: shop.sessions (at_1)",
        "time-series collections, which mongomirror does not migrate: metrics.cpu",
        "--excludeNamespace metrics.cpu",
        "the destination already holds namespaces to copy: shop.orders holds documents",
        "pass --drop",
        "--ttlWithoutExpiry",
    ] {
        assert!(out.stderr.contains(expected), "missing {expected:?}\n{out}");
    }
    assert_eq!(snapshot(&dst).await, before, "the destination changed");
    assert!(!out.stderr.contains("reading the source oplog"), "{out}");

    // --preflightOnly gives the same report and the same code.
    let again = run(&pair, &["--preflightOnly"]).await;
    assert_eq!(again.status, Some(4), "{again}");
    assert!(
        again.stderr.contains("preflight found 3 problems"),
        "{again}"
    );
}

#[tokio::test]
async fn ttl_indexes_pass_with_the_opt_in_which_prints_the_restore_commands() {
    let pair = Pair::start().await;
    let (src, _dst) = pair.clients().await;
    add_ttl_index(&src).await;
    let out = run(&pair, &["--preflightOnly", "--ttlWithoutExpiry"]).await;
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "db.getSiblingDB(\"shop\").runCommand({collMod: \"sessions\", index: {name: \"at_1\", expireAfterSeconds: 3600}})"
        ),
        "{out}"
    );
    assert!(out.stderr.contains("preflight: all checks passed"), "{out}");
}

#[tokio::test]
async fn a_source_user_without_the_needed_roles_is_named() {
    if skip_on_real_deployment("needs a server started with --auth") {
        return;
    }
    let restricted = User::new("reader", "reader-Pw-1").with_role("read", "app");
    let pair = Pair::start_with(
        ServerOptions::default().with_user(restricted),
        ServerOptions::default(),
    )
    .await;
    let out = mongomirror()
        .args([
            "--host",
            &pair.source.uri(),
            "--username",
            "reader",
            "--password",
            "reader-Pw-1",
        ])
        .args(["--destination", &pair.destination.uri(), "--preflightOnly"])
        .run(DEADLINE)
        .await;
    assert_eq!(out.status, Some(4), "{out}");
    assert!(
        out.stderr
            .contains("the source user (no admin roles) lacks privileges"),
        "{out}"
    );
    assert!(out.stderr.contains("find on local.oplog.rs"), "{out}");
    assert!(
        out.stderr
            .contains("readAnyDatabase, clusterMonitor and backup"),
        "{out}"
    );
    assert!(!out.stderr.contains("reader-Pw-1"), "{out}");
}
