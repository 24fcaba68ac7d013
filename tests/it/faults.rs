//! Faults: fail points on every command the tool sends, servers stopped and restarted, an
//! outage longer than `--maxOutageSeconds`, a permanent error, an oplog that rolled over while
//! the tool was stopped, and directories it cannot write. The tool waits out what passes, says
//! that it waits, converges, and stops with a clear error and a bookmark that resumes otherwise.

use std::path::Path;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::{Client, IndexModel};
use serde_json::Value;

use crate::support::{
    await_same_deployments, hold_commands, skip_on_real_deployment, Pair, Running, ServerOptions,
    DESTINATION_APP, SOURCE_APP,
};

const LINE_TIMEOUT: Duration = Duration::from_secs(120);
const CAUGHT_UP: &str = "has caught up with the initial sync";
const RECOVERABLE: &str = "Recoverable error";

/// What a fail point does: close the connection, or answer with one of the transient codes
/// (HostUnreachable, HostNotFound, NetworkTimeout, ShutdownInProgress, PrimarySteppedDown,
/// SocketException, NotWritablePrimary, InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary).
#[derive(Debug, Clone, Copy)]
enum Fault {
    Close,
    Code(i32),
}

const FAULTS: [Fault; 12] = [
    Fault::Close,
    Fault::Code(6),
    Fault::Code(7),
    Fault::Code(89),
    Fault::Code(91),
    Fault::Code(189),
    Fault::Code(9001),
    Fault::Code(10107),
    Fault::Code(11600),
    Fault::Code(11602),
    Fault::Code(13435),
    Fault::Code(13436),
];

impl Fault {
    /// Whether a log line reports this fault as recoverable.
    fn reported_by(self, line: &str) -> bool {
        line.contains(RECOVERABLE)
            && match self {
                Fault::Close => true,
                Fault::Code(code) => line.contains(&format!("Error code {code} (")),
            }
    }
}

/// Arms `failCommand` for the next `times` of `commands` sent by `app`.
async fn arm(client: &Client, app: &str, commands: &[&str], fault: Fault, times: u32) {
    let mut data = doc! { "failCommands": commands, "appName": app };
    match fault {
        Fault::Close => data.insert("closeConnection", true),
        Fault::Code(code) => data.insert("errorCode", code),
    };
    client
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": times },
            "data": data,
        })
        .await
        .unwrap();
}

async fn disarm(client: &Client) {
    client
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
        .await
        .unwrap();
}

fn bookmark_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// mongomirror between the pair, with a heartbeat of 500 ms: a fail point's "not primary"
/// answer marks the server unknown until the driver's next check, which is otherwise 10 s
/// away (a real election answers that check at once).
fn mongomirror(pair: &Pair) -> crate::support::ProcessBuilder {
    let uri = |server: &crate::support::TestServer| {
        format!("{}&heartbeatFrequencyMS=500", server.admin_uri())
    };
    crate::support::mongomirror().args([
        "--host",
        &uri(&pair.source),
        "--destination",
        &uri(&pair.destination),
    ])
}

fn start(pair: &Pair, bookmark: &Path, extra: &[&str]) -> Running {
    mongomirror(pair)
        .args(["--bookmarkFile", bookmark.to_str().unwrap(), "-j", "2"])
        .args(extra)
        .spawn()
}

/// Documents with a 1 KB pad and a small array: the copy and a verification read them in
/// several batches, and an update of one array element needs the document.
async fn seed(src: &Client, db: &str, colls: &[&str], n: i32) {
    let pad = "p".repeat(1000);
    for coll in colls {
        let docs: Vec<Document> = (0..n)
            .map(|i| doc! { "_id": i, "n": 0, "list": [0, 0], "pad": &pad })
            .collect();
        src.database(db)
            .collection::<Document>(coll)
            .insert_many(docs)
            .await
            .unwrap();
    }
}

/// Stops mongomirror with SIGINT and checks that it ends cleanly.
async fn stop_cleanly(mirror: Running) {
    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(30)).await;
    assert_eq!(out.status, Some(0), "{out}");
}

/// Waits for the line that reports `fault` after line `mark`.
async fn await_reported(mirror: &Running, mark: usize, fault: Fault, what: &str) {
    let seen = mirror
        .wait_for_line_from(mark, |l: &str| fault.reported_by(l), LINE_TIMEOUT)
        .await;
    assert!(
        seen.is_ok(),
        "{fault:?} on {what} was not reported as recoverable\n{}",
        mirror.output_so_far()
    );
}

/// During oplog sync, every destination write command and the read of a document an update
/// needs fail with every fault in turn; the source's tail `getMore`s and the `find` that
/// reopens the tail too. Each fault is reported, waited out, and the deployments end equal.
#[tokio::test]
async fn every_fault_during_oplog_sync_is_waited_out() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_test_commands(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["c"], 200).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    let c = src.database("app").collection::<Document>("c");
    for (round, fault) in FAULTS.into_iter().enumerate() {
        let r = round as i32;
        let steps: [(&Client, &str, &[&str], u32); 7] = [
            (&dst, DESTINATION_APP, &["insert"], 2),
            (&dst, DESTINATION_APP, &["update"], 2),
            (&dst, DESTINATION_APP, &["delete"], 2),
            (&dst, DESTINATION_APP, &["find"], 2),
            (&dst, DESTINATION_APP, &["createIndexes"], 1),
            (&src, SOURCE_APP, &["getMore"], 1),
            (&src, SOURCE_APP, &["getMore", "find"], 3),
        ];
        for (step, (client, app, commands, times)) in steps.into_iter().enumerate() {
            let mark = mirror.lines_seen();
            arm(client, app, commands, fault, times).await;
            match step {
                0 => {
                    c.insert_one(doc! { "_id": 1000 + r, "n": 0 })
                        .await
                        .unwrap();
                }
                1 => {
                    c.update_one(doc! { "_id": r }, doc! { "$inc": { "n": 1 } })
                        .await
                        .unwrap();
                }
                2 => {
                    c.delete_one(doc! { "_id": 100 + r }).await.unwrap();
                }
                // An array element set: the destination applies it to the document it reads.
                3 => {
                    c.update_one(doc! { "_id": 50 + r }, doc! { "$set": { "list.1": r + 1 } })
                        .await
                        .unwrap();
                }
                4 => {
                    let index = IndexModel::builder()
                        .keys(doc! { format!("k{r}"): 1 })
                        .build();
                    c.create_index(index).await.unwrap();
                }
                _ => {
                    c.insert_one(doc! { "_id": format!("tail-{r}-{step}") })
                        .await
                        .unwrap();
                }
            }
            await_reported(&mirror, mark, fault, &commands.join("+")).await;
            disarm(client).await;
        }
    }
    await_same_deployments(&src, &dst, Duration::from_secs(60)).await;
    stop_cleanly(mirror).await;
}

/// Armed before the run starts, faults hit the first commands of their kind: the catalog and
/// copy reads on the source, and the catalog, copy writes and index builds on the destination.
/// Every run reports the fault, converges, and stops cleanly; the faults go round the
/// commands so that each side meets every fault.
#[tokio::test]
async fn faults_during_the_initial_sync_are_waited_out() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_test_commands(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["a", "b"], 600).await;
    for coll in ["a", "b"] {
        let index = IndexModel::builder().keys(doc! { "n": 1 }).build();
        src.database("app")
            .collection::<Document>(coll)
            .create_index(index)
            .await
            .unwrap();
    }
    let sides: [(&Client, &str, [&str; 3]); 2] = [
        (&src, SOURCE_APP, ["listCollections", "find", "getMore"]),
        (
            &dst,
            DESTINATION_APP,
            ["listCollections", "insert", "createIndexes"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (side, (client, app, commands)) in sides.into_iter().enumerate() {
        for (round, fault) in FAULTS.into_iter().enumerate() {
            let command = commands[(round + side) % commands.len()];
            let bookmark = dir.path().join(format!("{side}-{round}.bookmark"));
            arm(client, app, &[command], fault, 4).await;
            let mirror = start(&pair, &bookmark, &["--drop"]);
            if mirror
                .wait_for_line(|l: &str| fault.reported_by(l), LINE_TIMEOUT)
                .await
                .is_err()
            {
                panic!(
                    "{fault:?} on {command}: not reported\n{}\n--- destination log ---\n{}",
                    mirror.output_so_far(),
                    pair.destination.log_tail()
                );
            }
            if mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.is_err() {
                panic!(
                    "{fault:?} on {command}: no catch-up\n{}\n--- destination log ---\n{}",
                    mirror.output_so_far(),
                    pair.destination.log_tail()
                );
            }
            disarm(client).await;
            await_same_deployments(&src, &dst, Duration::from_secs(60)).await;
            stop_cleanly(mirror).await;
        }
    }
}

/// `--verify` reads both sides with `listCollections`, `find` and `getMore`: faults there are
/// waited out too, and the verification still says "identical".
#[tokio::test]
async fn faults_during_a_verification_are_waited_out() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_test_commands(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    // The same documents on both sides, in several batches per range.
    seed(&src, "app", &["a"], 5000).await;
    seed(&dst, "app", &["a"], 5000).await;
    let sides: [(&Client, &str); 2] = [(&src, SOURCE_APP), (&dst, DESTINATION_APP)];
    let commands = ["listCollections", "find", "getMore"];
    for (side, (client, app)) in sides.into_iter().enumerate() {
        for (round, fault) in FAULTS.into_iter().enumerate() {
            let command = commands[(round + side) % commands.len()];
            arm(client, app, &[command], fault, 2).await;
            let out = mongomirror(&pair)
                .args(["--verify", "-j", "2"])
                .run(LINE_TIMEOUT)
                .await;
            disarm(client).await;
            assert_eq!(out.status, Some(0), "{fault:?} on {command}\n{out}");
            assert!(
                out.stderr.lines().any(|l| fault.reported_by(l)),
                "{fault:?} on {command} was not reported as recoverable\n{out}"
            );
        }
    }
}

/// A cursor killed because its collection was dropped or renamed (mongod's `QueryPlanKilled`
/// on the `getMore`) is read again: the verification goes on and still says "identical". The
/// copy classifies it the same way (`copy::copier::tests`); its tail's `getMore`s would meet
/// this fail point first, so it is not armed under a running sync here.
#[tokio::test]
async fn a_verification_reads_a_killed_cursor_again() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_test_commands(),
        ServerOptions::default(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["a"], 5000).await;
    seed(&dst, "app", &["a"], 5000).await;
    let killed = Fault::Code(175);
    arm(&src, SOURCE_APP, &["getMore"], killed, 2).await;
    let out = mongomirror(&pair)
        .args(["--verify", "-j", "2"])
        .run(LINE_TIMEOUT)
        .await;
    assert_eq!(out.status, Some(0), "{out}");
    assert!(
        out.stderr.lines().any(|l| killed.reported_by(l)),
        "not read again\n{out}"
    );
}

/// Holds the copy: after 2 inserts, the next one waits `ms` on the destination, so that a
/// server can be stopped while ranges are half done.
async fn hold_the_copy(dst: &Client, ms: i32) {
    let mode = doc! { "skip": 2, "times": 1 };
    hold_commands(dst, &["insert"], Some(DESTINATION_APP), mode, ms).await;
}

/// Waits until the bookmark records a copy half done: a range partly copied, or a collection
/// done while another is not (with several inserts in flight per range, the held insert may be
/// a collection's first, and then its ranges show no position until it is done).
async fn await_copy_progress(bookmark: &Path, mirror: &Running) {
    let advanced =
        crate::support::wait_until(LINE_TIMEOUT, Duration::from_millis(50), async || {
            bookmark_json(bookmark)["copy"]["collections"]
                .as_array()
                .is_some_and(|cs| {
                    let partly = cs.iter().any(|c| {
                        c["ranges"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|r| !r["after"].is_null()))
                    });
                    let done = |want: bool| cs.iter().any(|c| c["done"].as_bool() == Some(want));
                    partly || (done(true) && done(false))
                })
        })
        .await;
    assert!(
        advanced,
        "no copy progress saved\n{}",
        mirror.output_so_far()
    );
}

async fn write_some(src: &Client, tag: &str, n: i32) {
    let docs: Vec<Document> = (0..n)
        .map(|i| doc! { "_id": format!("{tag}-{i}"), "i": i })
        .collect();
    src.database("app")
        .collection::<Document>("live")
        .insert_many(docs)
        .await
        .unwrap();
    src.database("app")
        .collection::<Document>("c")
        .update_many(doc! { "_id": { "$lt": 50 } }, doc! { "$inc": { "n": 1 } })
        .await
        .unwrap();
}

/// Each server in turn is stopped and started again on the same storage: the destination
/// during the copy and during oplog sync, then the source during oplog sync. mongomirror says
/// that it waits, goes on when the server is back, and ends with identical deployments.
#[tokio::test]
async fn servers_restarted_during_the_copy_and_the_oplog_sync_are_waited_for() {
    if skip_on_real_deployment("stops and starts the servers") {
        return;
    }
    let mut pair = Pair::start_with(
        ServerOptions::default().persistent(),
        ServerOptions::default().persistent().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["c", "d"], 4000).await;
    hold_the_copy(&dst, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    await_copy_progress(&bookmark, &mirror).await;

    // The destination goes away in the middle of the copy.
    let mark = mirror.lines_seen();
    pair.destination.stop().await;
    mirror
        .wait_for_line_from(mark, RECOVERABLE, LINE_TIMEOUT)
        .await
        .unwrap();
    pair.destination.restart().await;
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    write_some(&src, "after-copy", 100).await;
    await_same_deployments(
        &src,
        &pair.destination.client().await,
        Duration::from_secs(60),
    )
    .await;

    // Then during oplog sync, while the source takes writes.
    let mark = mirror.lines_seen();
    pair.destination.stop().await;
    write_some(&src, "destination-down", 100).await;
    mirror
        .wait_for_line_from(mark, RECOVERABLE, LINE_TIMEOUT)
        .await
        .unwrap();
    pair.destination.restart().await;
    await_same_deployments(
        &src,
        &pair.destination.client().await,
        Duration::from_secs(60),
    )
    .await;

    // The source: the tail is lost and reopened where it stopped.
    let mark = mirror.lines_seen();
    pair.source.stop().await;
    mirror
        .wait_for_line_from(mark, RECOVERABLE, LINE_TIMEOUT)
        .await
        .unwrap();
    pair.source.restart().await;
    let src = pair.source.client().await;
    write_some(&src, "source-back", 100).await;
    await_same_deployments(
        &src,
        &pair.destination.client().await,
        Duration::from_secs(60),
    )
    .await;
    stop_cleanly(mirror).await;
    drop(dst);
}

/// The source stopped in the middle of the copy: the copy waits, goes on, and converges.
#[tokio::test]
async fn a_source_restarted_during_the_copy_is_waited_for() {
    if skip_on_real_deployment("stops and starts the servers") {
        return;
    }
    let mut pair = Pair::start_with(
        ServerOptions::default().persistent(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["c", "d"], 4000).await;
    hold_the_copy(&dst, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    await_copy_progress(&bookmark, &mirror).await;
    let mark = mirror.lines_seen();
    pair.source.stop().await;
    mirror
        .wait_for_line_from(mark, RECOVERABLE, LINE_TIMEOUT)
        .await
        .unwrap();
    pair.source.restart().await;
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    let src = pair.source.client().await;
    write_some(&src, "after-copy", 100).await;
    await_same_deployments(&src, &dst, Duration::from_secs(60)).await;
    stop_cleanly(mirror).await;
}

/// A destination down for longer than `--maxOutageSeconds` ends the run with exit code 1, a
/// hint, and a bookmark from which the next run resumes.
#[tokio::test]
async fn an_outage_longer_than_the_limit_exits_1_and_resumes() {
    if skip_on_real_deployment("stops and starts the servers") {
        return;
    }
    let mut pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().persistent(),
    )
    .await;
    let (src, _) = pair.clients().await;
    seed(&src, "app", &["c"], 200).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &["--maxOutageSeconds", "2"]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    pair.destination.stop().await;
    write_some(&src, "while-down", 100).await;
    let out = mirror.wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains(RECOVERABLE), "{out}");
    assert!(
        out.stderr
            .contains("  hint: the server did not answer for 2s (--maxOutageSeconds)"),
        "{out}"
    );
    assert_eq!(bookmark_json(&bookmark)["phase"], "oplogSync");

    pair.destination.restart().await;
    let mirror = start(&pair, &bookmark, &[]);
    mirror
        .wait_for_line("resuming oplog sync from the bookmark", LINE_TIMEOUT)
        .await
        .unwrap();
    await_same_deployments(
        &src,
        &pair.destination.client().await,
        Duration::from_secs(60),
    )
    .await;
    stop_cleanly(mirror).await;
}

/// A write the destination refuses for good (Unauthorized) stops oplog sync with exit code 1
/// and the destination's answer; the bookmark still resumes once the cause is gone.
#[tokio::test]
async fn a_permanent_error_exits_1_and_the_bookmark_resumes() {
    if skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["c"], 200).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    dst.database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": { "failCommands": ["insert"], "errorCode": 13, "appName": DESTINATION_APP },
        })
        .await
        .unwrap();
    write_some(&src, "refused", 10).await;
    let out = mirror.wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(1), "{out}");
    assert!(out.stderr.contains("Failed: oplog replay failed"), "{out}");
    assert!(out.stderr.contains("Error code 13 (Unauthorized)"), "{out}");
    assert!(
        !out.stderr.contains(RECOVERABLE),
        "a permanent error is not waited out\n{out}"
    );
    assert_eq!(bookmark_json(&bookmark)["phase"], "oplogSync");

    disarm(&dst).await;
    let mirror = start(&pair, &bookmark, &[]);
    mirror
        .wait_for_line("resuming oplog sync from the bookmark", LINE_TIMEOUT)
        .await
        .unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(60)).await;
    stop_cleanly(mirror).await;
}

/// The source oplog rolled over past the bookmark while mongomirror was stopped: exit code 5,
/// the documented message, and the bookmark left exactly as it was.
#[tokio::test]
async fn an_oplog_that_rolled_over_while_stopped_exits_5_and_keeps_the_bookmark() {
    if skip_on_real_deployment("caps the oplog") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_oplog_max_entries(100),
        ServerOptions::default(),
    )
    .await;
    let (src, _) = pair.clients().await;
    seed(&src, "app", &["c"], 50).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, &[]);
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    stop_cleanly(mirror).await;
    let saved = std::fs::read(&bookmark).unwrap();
    // One entry per document: far more than the oplog keeps (SecantusDB trims it every
    // 1000 entries).
    let docs: Vec<Document> = (0..1500).map(|i| doc! { "_id": i }).collect();
    src.database("app")
        .collection::<Document>("live")
        .insert_many(docs)
        .await
        .unwrap();
    let out = start(&pair, &bookmark, &[]).wait(LINE_TIMEOUT).await;
    assert_eq!(out.status, Some(5), "{out}");
    assert!(
        out.stderr
            .contains("Failed: the source oplog no longer holds the resume point"),
        "{out}"
    );
    assert!(out.stderr.contains("--forceDump"), "{out}");
    assert_eq!(
        std::fs::read(&bookmark).unwrap(),
        saved,
        "the bookmark must be left intact"
    );
}

/// A bookmark or spool directory that cannot be written stops the run before anything is
/// written (exit code 2); a bookmark that cannot be saved for lack of space (its temporary file
/// is `/dev/full`) stops it with exit code 1 and the system's reason, never silently.
#[tokio::test]
async fn unwritable_or_full_directories_are_clear_errors() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src, "app", &["c"], 10).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let under_file = file.join("mongomirror.bookmark");
    for (extra, flag) in [
        (
            vec!["--bookmarkFile", under_file.to_str().unwrap()],
            "--bookmarkFile",
        ),
        (
            vec!["--oplogPath", under_file.to_str().unwrap()],
            "--oplogPath",
        ),
    ] {
        let out = mongomirror(&pair).args(&extra).run(LINE_TIMEOUT).await;
        assert_eq!(out.status, Some(2), "{out}");
        assert!(
            out.stderr
                .contains(&format!("where {flag} keeps its files")),
            "{out}"
        );
        assert!(out.stderr.contains("  hint: point"), "{out}");
    }
    let names = dst.list_database_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n == "app"),
        "nothing may be written when the run cannot start: {names:?}"
    );

    if cfg!(target_os = "linux") {
        let bookmark = dir.path().join("full.bookmark");
        std::os::unix::fs::symlink("/dev/full", dir.path().join("full.bookmark.tmp")).unwrap();
        let out = start(&pair, &bookmark, &[]).wait(LINE_TIMEOUT).await;
        assert_eq!(out.status, Some(1), "{out}");
        assert!(
            out.stderr.contains("Failed: cannot save the bookmark file"),
            "{out}"
        );
        assert!(out.stderr.contains("No space left on device"), "{out}");
        assert!(out.stderr.contains("free space"), "{out}");
    }
}
