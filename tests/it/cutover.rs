//! The guided cutover: `POST /cutover` (and SIGUSR1) during oplog sync waits for a quiet source,
//! stops tailing, verifies, answers with the report and exits 0 or 6; a source that keeps
//! writing gets a 409 and the sync goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::Client;
use serde_json::Value;

use crate::support::{get_json, request, start_with_status_and, wait_until, Pair, Running};

const LINE_TIMEOUT: Duration = Duration::from_secs(90);
const CAUGHT_UP: &str = "has caught up with the initial sync";

async fn seed(src: &Client) {
    src.database("shop")
        .collection::<Document>("orders")
        .insert_many((0..3_000).map(|i| doc! { "_id": i, "total": f64::from(i), "status": "new" }))
        .await
        .unwrap();
}

/// A running mongomirror with its status port, once oplog sync has caught up with the copy.
async fn syncing(pair: &Pair, bookmark: &std::path::Path) -> (Running, u16) {
    let (mirror, port) =
        start_with_status_and(pair, &["--bookmarkFile", bookmark.to_str().unwrap()]).await;
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    (mirror, port)
}

/// Updates and inserts on the source until `stop`; returns how many writes it made.
fn write_load(src: &Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let orders = src.database("shop").collection::<Document>("orders");
    tokio::spawn(async move {
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let id = (n * 7_919 % 3_000) as i32;
            orders
                .update_one(
                    doc! { "_id": id },
                    doc! { "$set": { "status": "paid", "n": n as i64 } },
                )
                .await
                .unwrap();
            orders
                .insert_one(doc! { "_id": 1_000_000 + n as i64, "total": 1.0 })
                .await
                .unwrap();
            n += 2;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    })
}

/// `POST /cutover` with `body`, answered once the cutover ends: (status line, JSON body).
async fn cutover(port: u16, body: &str) -> (String, Value) {
    let (status, reply) = request(port, "POST", "/cutover", body).await;
    let json = serde_json::from_str(&reply).unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn a_quiet_source_cuts_over_with_a_clean_report_and_exit_0() {
    let pair = Pair::start().await;
    let (src, _) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let (mirror, port) = syncing(&pair, &bookmark).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&src, stop.clone());
    // The request waits while the load runs; GET / says so meanwhile.
    let reply = tokio::spawn(async move { cutover(port, r#"{"quietSeconds": 2}"#).await });
    let waiting = wait_until(LINE_TIMEOUT, Duration::from_millis(50), async || {
        get_json(port).await["stage"] == "cutover"
    })
    .await;
    assert!(waiting, "{}", mirror.output_so_far());
    stop.store(true, Ordering::Relaxed);
    let writes = load.await.unwrap();
    let (status, report) = reply.await.unwrap();
    assert!(status.contains("200"), "{status} {report:#}");
    assert_eq!(report["identical"], true, "{report:#}");
    let orders = report["namespaces"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["namespace"] == "shop.orders"))
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(
        orders["documents"]["compared"],
        3_000 + writes / 2,
        "{report:#}"
    );
    let out = mirror.wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        out.stderr.contains("cutover: the source has been quiet"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("verification: the destination matches the source"),
        "{out}"
    );
}

#[tokio::test]
async fn a_destination_changed_by_hand_makes_the_cutover_exit_6() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let report_file = dir.path().join("report.json");
    let (mirror, port) = start_with_status_and(
        &pair,
        &[
            "--bookmarkFile",
            dir.path().join("b").to_str().unwrap(),
            "--verifyReport",
            report_file.to_str().unwrap(),
        ],
    )
    .await;
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    dst.database("shop")
        .collection::<Document>("orders")
        .update_one(
            doc! { "_id": 42 },
            doc! { "$set": { "status": "tampered" } },
        )
        .await
        .unwrap();
    let (status, report) = cutover(port, r#"{"quietSeconds": 1}"#).await;
    assert!(status.contains("200"), "{status} {report:#}");
    assert_eq!(report["identical"], false, "{report:#}");
    let out = mirror.wait(LINE_TIMEOUT).await;
    out.assert_failed(
        6,
        "the destination differs from the source in 1 of 1 namespaces",
        "--verifyReport",
    );
    assert!(
        out.stderr
            .contains("shop.orders: _id {\"$numberInt\":\"42\"}: different (status)"),
        "{out}"
    );
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(written["identical"], false);
}

#[tokio::test]
async fn a_source_that_keeps_writing_gets_409_and_the_sync_goes_on() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let (mirror, port) = syncing(&pair, &dir.path().join("b")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&src, stop.clone());
    let (status, reply) = cutover(port, r#"{"quietSeconds": 3, "timeoutSeconds": 4}"#).await;
    assert!(status.contains("409"), "{status} {reply:#}");
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.contains("the source was not quiet for 3s within 4s")),
        "{reply:#}"
    );
    assert_eq!(get_json(port).await["stage"], "oplog sync");
    // A second request while one waits is refused; here none waits any more.
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    // The sync went on: a write after the abandoned cutover arrives.
    src.database("shop")
        .collection::<Document>("orders")
        .insert_one(doc! { "_id": "after" })
        .await
        .unwrap();
    let arrived = wait_until(LINE_TIMEOUT, Duration::from_millis(100), async || {
        dst.database("shop")
            .collection::<Document>("orders")
            .count_documents(doc! { "_id": "after" })
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    assert!(arrived, "{}", mirror.output_so_far());
    assert!(!mirror.has_exited());
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
}

/// SIGUSR1 asks for the same cutover with the default settings, for operators without HTTP.
#[tokio::test]
async fn sigusr1_cuts_over_too() {
    let pair = Pair::start().await;
    let (src, _) = pair.clients().await;
    seed(&src).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = pair
        .mongomirror()
        .args(["--bookmarkFile", dir.path().join("b").to_str().unwrap()])
        .spawn();
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    mirror.send_signal("USR1");
    let out = mirror.wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(out.stderr.contains("SIGUSR1: cutover requested"), "{out}");
    assert!(
        out.stderr
            .contains("verification: the destination matches the source"),
        "{out}"
    );
}
