//! Oplog sync end to end: writes made while mongomirror copies and after it has caught up all
//! arrive, the lag line reaches 0s, a stop saves the bookmark, and a restart resumes from it
//! without copying again. A bookmark the source oplog no longer holds, or one that cannot be
//! trusted, stops the run instead of resyncing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;

use crate::support::{await_same_deployments, wait_until, Pair, Running};

const CAUGHT_UP: &str = "Current lag from source: 0s";
const LINE_TIMEOUT: Duration = Duration::from_secs(90);

fn start_mirror(pair: &Pair, bookmark: &Path, extra: &[&str]) -> Running {
    pair.mongomirror()
        .args(["--bookmarkFile", bookmark.to_str().unwrap(), "-j", "2"])
        .args(extra)
        .spawn()
}

async fn seed(src: &Client) {
    let users: Vec<Document> = (0..2_000)
        .map(|i| doc! { "_id": i, "name": format!("user {i}"), "visits": 0 })
        .collect();
    src.database("app")
        .collection::<Document>("users")
        .insert_many(users)
        .await
        .unwrap();
    let orders: Vec<Document> = (0..3_000)
        .map(|i| doc! { "_id": i, "user": i % 2_000, "total": f64::from(i) })
        .collect();
    src.database("app")
        .collection::<Document>("orders")
        .insert_many(orders)
        .await
        .unwrap();
}

/// Inserts, updates and deletes on the source, numbered from `from`.
async fn write_load(src: &Client, from: i32, count: i32) {
    let users = src.database("app").collection::<Document>("users");
    let orders = src.database("app").collection::<Document>("orders");
    let events = src.database("live").collection::<Document>("events");
    for i in from..from + count {
        orders
            .insert_one(doc! { "_id": 100_000 + i, "user": i, "total": 1.5 })
            .await
            .unwrap();
        users
            .update_one(
                doc! { "_id": i % 2_000 },
                doc! { "$inc": { "visits": 1 }, "$set": { "last": i } },
            )
            .await
            .unwrap();
        orders.delete_one(doc! { "_id": i }).await.unwrap();
        events
            .insert_one(doc! { "_id": i, "kind": "click" })
            .await
            .unwrap();
    }
}

/// Asserts that a refused run wrote nothing to the destination.
async fn assert_untouched(dst: &Client) {
    let names = dst.list_database_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n == "app"),
        "the destination was written: {names:?}"
    );
}

/// A scenario: a pair whose source holds the seed data, and a bookmark path in a fresh directory.
struct Scenario {
    pair: Pair,
    src: Client,
    dst: Client,
    bookmark: PathBuf,
    _dir: tempfile::TempDir,
}

async fn scenario() -> Scenario {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    Scenario {
        pair,
        src,
        dst,
        bookmark,
        _dir: dir,
    }
}

fn bookmark_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn set_name(client: &Client) -> String {
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    hello.get_str("setName").unwrap().to_string()
}

#[tokio::test]
async fn live_writes_arrive_a_stop_saves_the_bookmark_and_a_restart_resumes() {
    let Scenario {
        pair,
        src,
        dst,
        bookmark,
        _dir,
    } = scenario().await;

    let mirror = start_mirror(&pair, &bookmark, &[]);
    // Writes that race the copy land in the spool and are replayed after it.
    mirror
        .wait_for_line(
            "oplog sync: reading the source oplog from timestamp",
            LINE_TIMEOUT,
        )
        .await
        .unwrap();
    write_load(&src, 0, 150).await;
    mirror
        .wait_for_line("oplog sync: applying", LINE_TIMEOUT)
        .await
        .unwrap();
    // Writes after the copy are applied live.
    write_load(&src, 150, 150).await;
    let mark = mirror.lines_seen();
    mirror
        .wait_for_line_from(mark, CAUGHT_UP, LINE_TIMEOUT)
        .await
        .unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;

    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
    let saved = bookmark_json(&bookmark);
    assert_eq!(saved["phase"], "oplogSync", "{saved}");
    assert_eq!(saved["sourceSetName"], set_name(&src).await.as_str());

    // Written while mongomirror is down: the restart must pick these up from the bookmark.
    write_load(&src, 300, 100).await;
    let mirror = start_mirror(&pair, &bookmark, &[]);
    mirror
        .wait_for_line("resuming oplog sync from the bookmark", LINE_TIMEOUT)
        .await
        .unwrap();
    let mark = mirror.lines_seen();
    mirror
        .wait_for_line_from(mark, CAUGHT_UP, LINE_TIMEOUT)
        .await
        .unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    mirror.send_signal("TERM");
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        !out.stderr.contains("copying"),
        "a resumed run must not copy again\n{out}"
    );
}

#[tokio::test]
async fn a_bookmark_the_oplog_no_longer_holds_stops_with_exit_code_5() {
    let Scenario {
        pair,
        src,
        dst,
        bookmark,
        _dir,
    } = scenario().await;
    let stale = serde_json::json!({
        "version": 1, "sourceSetName": set_name(&src).await, "phase": "oplogSync",
        "ts": { "t": 1, "i": 1 }, "writtenBy": "test", "savedAt": "2026-01-01T00:00:00.000Z"
    });
    std::fs::write(&bookmark, stale.to_string()).unwrap();
    let out = start_mirror(&pair, &bookmark, &[]).wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(5), "{out}");
    assert!(
        out.stderr
            .contains("Failed: the source oplog no longer holds the resume point 1:1"),
        "{out}"
    );
    assert!(out.stderr.contains("--forceDump"), "{out}");
    assert_untouched(&dst).await;
}

#[tokio::test]
async fn an_untrusted_bookmark_is_an_error_never_a_resync() {
    let Scenario {
        pair,
        src: _,
        dst,
        bookmark,
        _dir,
    } = scenario().await;
    for (text, cause) in [
        ("{\"version\": 1, \"phase\": ", "not valid JSON"),
        ("{\"version\": 7}", "format version 7"),
        (
            "{\"version\":1,\"sourceSetName\":\"elsewhere\",\"phase\":\"oplogSync\",\"ts\":{\"t\":1,\"i\":1},\"writtenBy\":\"x\",\"savedAt\":\"x\"}",
            "belongs to source replica set 'elsewhere'",
        ),
    ] {
        std::fs::write(&bookmark, text).unwrap();
        let out = start_mirror(&pair, &bookmark, &[]).wait(LINE_TIMEOUT).await;
        assert_eq!(out.status, Some(4), "{out}");
        assert!(out.stderr.contains("cannot use the bookmark file"), "{out}");
        assert!(out.stderr.contains(cause), "{cause}\n{out}");
    }
    assert_untouched(&dst).await;
}

#[tokio::test]
async fn force_dump_starts_over_even_with_a_bookmark() {
    let Scenario {
        pair,
        src,
        dst,
        bookmark,
        _dir,
    } = scenario().await;
    let mirror = start_mirror(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
    assert_eq!(bookmark_json(&bookmark)["phase"], "oplogSync");

    // --forceDump ignores the bookmark: a full initial sync, which the copied data now blocks...
    let out = start_mirror(&pair, &bookmark, &["--forceDump"])
        .wait(LINE_TIMEOUT)
        .await;
    out.assert_failed(
        4,
        "the destination already holds namespaces to copy",
        "--drop",
    );
    assert!(
        out.stderr.contains("--forceDump: ignoring any bookmark"),
        "{out}"
    );
    // ...unless --drop empties exactly those namespaces first.
    dst.database("app")
        .collection::<Document>("users")
        .delete_many(doc! {})
        .await
        .unwrap();
    let mirror = start_mirror(&pair, &bookmark, &["--forceDump", "--drop"]);
    mirror
        .wait_for_line("initial sync completed", LINE_TIMEOUT)
        .await
        .unwrap();
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
}

/// The newest `renameCollection` of `from` in the source oplog.
async fn rename_ts(src: &Client, from: &str) -> Timestamp {
    let entry = src
        .database("local")
        .collection::<Document>("oplog.rs")
        .find_one(doc! { "op": "c", "o.renameCollection": from })
        .sort(doc! { "$natural": -1 })
        .await
        .unwrap()
        .expect("the rename is in the source oplog");
    entry.get_timestamp("ts").unwrap()
}

fn bookmark_ts(path: &Path) -> Timestamp {
    let saved = bookmark_json(path);
    let part = |k: &str| saved["ts"][k].as_u64().unwrap() as u32;
    Timestamp {
        time: part("t"),
        increment: part("i"),
    }
}

/// "Load into staging, rename over live": `app.staging` is renamed over `app.live` and created
/// again with the next generation, and mongomirror is SIGKILLed as soon as the destination holds
/// that next generation. The bookmark must already be past the rename: a restart that replayed
/// the rename would move the newer staging over live (the old live documents were applied
/// before the bookmark and would be lost). Three reloads, three kills, and the deployments
/// match after each restart.
#[tokio::test]
async fn staging_renamed_over_live_survives_a_kill_after_each_reload() {
    let Scenario {
        pair,
        src,
        dst,
        bookmark,
        _dir,
    } = scenario().await;
    let app = src.database("app");
    let (staging, dst_staging) = (
        app.collection::<Document>("staging"),
        dst.database("app").collection::<Document>("staging"),
    );
    let load = |generation: i32| {
        let staging = staging.clone();
        async move {
            let docs = (0..100).map(|i| doc! { "_id": i, "gen": generation });
            staging.insert_many(docs).await.unwrap();
        }
    };
    load(0).await;
    let mut mirror = start_mirror(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    for generation in 1..=3 {
        src.database("admin")
            .run_command(
                doc! { "renameCollection": "app.staging", "to": "app.live", "dropTarget": true },
            )
            .await
            .unwrap();
        let renamed = rename_ts(&src, "app.staging").await;
        load(generation).await;
        let applied = wait_until(LINE_TIMEOUT, Duration::from_millis(20), async || {
            dst_staging
                .count_documents(doc! { "gen": generation })
                .await
                .is_ok_and(|n| n == 100)
        })
        .await;
        assert!(
            applied,
            "generation {generation} never reached the destination"
        );
        mirror.kill();
        mirror.wait(Duration::from_secs(15)).await;
        let saved = bookmark_ts(&bookmark);
        assert!(
            saved >= renamed,
            "generation {generation}: the bookmark {saved:?} lies before the applied rename at {renamed:?}"
        );
        mirror = start_mirror(&pair, &bookmark, &[]);
        mirror
            .wait_for_line("resuming oplog sync from the bookmark", LINE_TIMEOUT)
            .await
            .unwrap();
        let mark = mirror.lines_seen();
        mirror
            .wait_for_line_from(mark, CAUGHT_UP, LINE_TIMEOUT)
            .await
            .unwrap();
        await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    }
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
}
