//! A killed initial sync resumes: what was copied stays, unfinished ranges go on from their last
//! `_id`, missing indexes are built, and the oplog is replayed from the copy's starting point.

use std::path::Path;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};
use serde_json::Value;

use crate::support::{
    await_same_deployments, skip_on_real_deployment, wait_until, Pair, Running, ServerOptions,
};

const LINE_TIMEOUT: Duration = Duration::from_secs(120);
const CAUGHT_UP: &str = "has caught up with the initial sync";

fn bookmark_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn start(pair: &Pair, bookmark: &Path, extra: &[&str]) -> Running {
    pair.mongomirror()
        .args(["--bookmarkFile", bookmark.to_str().unwrap(), "-j", "2"])
        .args(extra)
        .spawn()
}

async fn seed(src: &Client) {
    let app = src.database("app");
    let pad = "p".repeat(200);
    for (coll, n) in [("big", 40_000), ("small", 500)] {
        let docs: Vec<Document> = (0..n)
            .map(|i| doc! { "_id": i, "email": format!("{coll}{i}@x"), "pad": &pad })
            .collect();
        for chunk in docs.chunks(10_000) {
            app.collection::<Document>(coll)
                .insert_many(chunk.to_vec())
                .await
                .unwrap();
        }
    }
    let unique = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    app.collection::<Document>("big")
        .create_index(unique)
        .await
        .unwrap();
}

/// SIGKILL in the middle of a collection's copy (the destination holds one insert for a while,
/// after some have gone through), while the source takes writes; a restart with the same
/// flags goes on without `--drop`, copies only what was left, and ends identical.
#[tokio::test]
async fn a_copy_killed_midway_resumes_where_it_stopped() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src).await;
    // Some inserts go through, then one is held: the kill lands with ranges half done.
    let mode = doc! { "skip": 12, "times": 1 };
    crate::support::hold_commands(&dst, &["insert"], None, mode, 10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    let advanced = wait_until(LINE_TIMEOUT, Duration::from_millis(50), async || {
        let b = bookmark_json(&bookmark);
        b["copy"]["collections"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["ranges"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| !r["after"].is_null()))
            })
        })
    })
    .await;
    assert!(
        advanced,
        "no range progress saved\n{}",
        mirror.output_so_far()
    );
    // Writes while mongomirror is down reach the destination through the oplog.
    mirror.kill();
    mirror.wait(Duration::from_secs(15)).await;
    let saved = bookmark_json(&bookmark);
    assert_eq!(saved["phase"], "initialSync", "{saved:#}");
    src.database("app")
        .collection::<Document>("big")
        .update_many(
            doc! { "_id": { "$lt": 100 } },
            doc! { "$set": { "changed": true } },
        )
        .await
        .unwrap();
    src.database("app")
        .collection::<Document>("big")
        .insert_one(doc! { "_id": -1, "email": "new@x" })
        .await
        .unwrap();
    dst.database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();

    let mirror = start(&pair, &bookmark, &[]);
    mirror
        .wait_for_line("resuming the initial sync started at", LINE_TIMEOUT)
        .await
        .unwrap();
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        !out.stderr.contains("dropping"),
        "a resumed copy drops nothing\n{out}"
    );
    assert!(
        out.stderr.contains("the catalog is created already"),
        "{out}"
    );
}

/// A bookmark of an unfinished copy whose starting point the source oplog no longer holds
/// stops the run with exit code 5, and leaves the bookmark as it was.
#[tokio::test]
async fn a_copy_whose_start_the_oplog_lost_exits_5() {
    let pair = Pair::start().await;
    let (src, _) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let hello = src
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    let stale = serde_json::json!({
        "version": 2, "sourceSetName": hello.get_str("setName").unwrap(), "phase": "initialSync",
        "ts": { "t": 1, "i": 1 }, "writtenBy": "test", "savedAt": "2026-01-01T00:00:00.000Z",
        "copy": { "catalogCreated": true, "collections": [] },
    });
    let text = stale.to_string();
    std::fs::write(&bookmark, &text).unwrap();
    let out = start(&pair, &bookmark, &[]).wait(LINE_TIMEOUT).await;
    out.assert_failed(
        5,
        "the source oplog no longer holds the resume point 1:1",
        "--forceDump",
    );
    assert_eq!(std::fs::read_to_string(&bookmark).unwrap(), text);
}

/// SIGKILL in the middle of the catalog creation, once a view exists on the destination: the
/// restart knows the view for its own (the bookmark names the plan's namespaces before anything
/// is written), creates it again, and copies everything, without `--drop`.
#[tokio::test]
async fn a_kill_during_the_catalog_creation_resumes_without_drop() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    let app = src.database("app");
    app.collection::<Document>("c")
        .insert_many((0..100).map(|i| doc! { "_id": i, "n": i }))
        .await
        .unwrap();
    for view in ["v1", "v2"] {
        app.run_command(doc! { "create": view, "viewOn": "c", "pipeline": [{ "$match": { "n": { "$gt": 5 } } }] })
            .await
            .unwrap();
    }
    // The collection and the first view are created, the second view's creation is held.
    let (app, mode) = (
        crate::support::DESTINATION_APP,
        doc! { "skip": 2, "times": 1 },
    );
    crate::support::hold_commands(&dst, &["create"], Some(app), mode, 10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    let view_there = wait_until(LINE_TIMEOUT, Duration::from_millis(50), async || {
        dst.database("app")
            .list_collection_names()
            .await
            .is_ok_and(|names| names.iter().any(|n| n == "v1"))
    })
    .await;
    assert!(view_there, "{}", mirror.output_so_far());
    mirror.kill();
    mirror.wait(Duration::from_secs(15)).await;
    let saved = bookmark_json(&bookmark);
    assert_eq!(saved["copy"]["catalogCreated"], false, "{saved:#}");
    dst.database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();

    let mirror = start(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        out.stderr
            .contains("removing app.v1 on the destination: the interrupted run created it"),
        "{out}"
    );
}
