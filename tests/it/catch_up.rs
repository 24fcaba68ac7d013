//! Oplog sync over a fuzzy copy: unique values that move between documents while the copy runs.
//!
//! The copy reads a large collection in `_id` ranges, each with its own cursor, opened one after
//! another as workers free up. These scenarios hold the first inserts of the first two ranges on
//! the destination (a fail point), make their source writes meanwhile, and let the later ranges
//! read their documents in a later state: the destination then briefly holds states that never
//! coexisted on the source. (SecantusDB reads each cursor at one snapshot; a mongod cursor
//! also sees later states within one range, which makes this more likely, not less.)
//! mongomirror must end with the source's documents and unique indexes that are unique.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::Client;

use crate::support::{
    await_same_deployments, hold_commands, skip_on_real_deployment, wait_until, Pair, Running,
    ServerOptions,
};

const LINE_TIMEOUT: Duration = Duration::from_secs(120);
/// The line that ends the catch-up: unique indexes are unique again from there.
const CAUGHT_UP: &str = "has caught up with the initial sync";
/// Documents of the copied collection: with `-j 2`, four `_id` ranges, the last two opened
/// only once one of the first two is done.
const DOCS: i32 = 40_000;

/// A scenario whose copy of `app.accounts` (unique index `u_1` on `u`) is held after its first
/// batches were read.
struct Fuzzy {
    pair: Pair,
    src: Client,
    dst: Client,
    mirror: Running,
    bookmark: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Seeds `app.accounts` (`{_id: i, u: i}`), optionally creates the unique index on the (empty)
/// destination collection first, and starts mongomirror with `-j 2`; returns once the first two
/// ranges have read their first batch and their first inserts are held on the destination for
/// a few seconds. Both workers wait, so the last ranges are not opened yet.
async fn hold_the_copy(unique_on_destination: bool) -> Option<Fuzzy> {
    hold_the_copy_with(unique_on_destination, &[]).await
}

/// [`hold_the_copy`] with more flags for mongomirror.
async fn hold_the_copy_with(unique_on_destination: bool, extra: &[&str]) -> Option<Fuzzy> {
    if skip_on_real_deployment("arms fail points on the destination") {
        return None;
    }
    let pair = Pair::start_with(
        ServerOptions::default(),
        ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    let accounts = src.database("app").collection::<Document>("accounts");
    let docs: Vec<Document> = (0..DOCS).map(|i| doc! { "_id": i, "u": i }).collect();
    for chunk in docs.chunks(10_000) {
        accounts.insert_many(chunk.to_vec()).await.unwrap();
    }
    let unique = doc! { "createIndexes": "accounts", "indexes": [{ "key": { "u": 1 }, "name": "u_1", "unique": true }] };
    src.database("app")
        .run_command(unique.clone())
        .await
        .unwrap();
    if unique_on_destination {
        dst.database("app").run_command(unique).await.unwrap();
    }
    hold_commands(&dst, &["insert"], None, doc! { "times": 2 }, 4000).await;
    // A range's first insert reaches the destination once its cursor has its first batch; the
    // server counts it as it arrives, before the fail point holds it.
    let inserts = async || -> i64 {
        let status = dst
            .database("admin")
            .run_command(doc! { "serverStatus": 1 })
            .await
            .unwrap();
        status
            .get_document("opcounters")
            .ok()
            .and_then(|o| o.get("insert"))
            .and_then(|t| t.as_i64().or_else(|| t.as_i32().map(i64::from)))
            .unwrap_or(0)
    };
    let before = inserts().await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = start(&pair, &bookmark, extra);
    let held = wait_until(LINE_TIMEOUT, Duration::from_millis(10), async || {
        inserts().await >= before + 2
    })
    .await;
    assert!(held, "the copy never inserted\n{}", mirror.output_so_far());
    Some(Fuzzy {
        pair,
        src,
        dst,
        mirror,
        bookmark,
        _dir: dir,
    })
}

fn start(pair: &Pair, bookmark: &std::path::Path, extra: &[&str]) -> Running {
    pair.mongomirror()
        .args(["--bookmarkFile", bookmark.to_str().unwrap(), "-j", "2"])
        .args(extra)
        .spawn()
}

/// Holds the next `command` on the destination for `ms` milliseconds.
async fn hold_next(dst: &Client, command: &str, ms: i32) {
    hold_commands(dst, &[command], None, doc! { "times": 1 }, ms).await;
}

impl Fuzzy {
    fn accounts(&self) -> mongodb::Collection<Document> {
        self.src.database("app").collection("accounts")
    }

    /// The first example: A's update that takes a value B held in the copy's view loses
    /// none of its other fields. The copy read A (first range) before, and reads B (last range)
    /// after `{u: -3}`.
    async fn move_a_value_to_a_later_document(&self) {
        let a = doc! { "_id": 1 };
        let b = doc! { "_id": DOCS - 1 };
        let accounts = self.accounts();
        accounts
            .update_one(a.clone(), doc! { "$set": { "name": "old" } })
            .await
            .unwrap();
        accounts
            .update_one(a.clone(), doc! { "$set": { "u": -3, "name": "new" } })
            .await
            .unwrap();
        accounts
            .update_one(a, doc! { "$set": { "u": -4 } })
            .await
            .unwrap();
        accounts
            .update_one(b, doc! { "$set": { "u": -3 } })
            .await
            .unwrap();
    }

    /// The second example: an insert whose value a later document holds in the copy's
    /// view is not lost, nor are the partial updates that follow it.
    async fn insert_a_value_a_later_document_takes(&self) {
        let accounts = self.accounts();
        accounts
            .insert_one(doc! { "_id": -1, "u": -5, "n": 0 })
            .await
            .unwrap();
        accounts
            .update_one(doc! { "_id": -1 }, doc! { "$set": { "n": 1 } })
            .await
            .unwrap();
        accounts
            .update_one(doc! { "_id": -1 }, doc! { "$set": { "u": -6 } })
            .await
            .unwrap();
        accounts
            .update_one(doc! { "_id": DOCS - 2 }, doc! { "$set": { "u": -5 } })
            .await
            .unwrap();
    }

    /// Moves 50 unique values from early documents to new late ones (delete, then insert with a
    /// new `_id`): the copy holds both for each value.
    async fn move_values_to_new_documents(&self) {
        let accounts = self.accounts();
        for k in 10..60 {
            accounts.delete_one(doc! { "_id": k }).await.unwrap();
            accounts
                .insert_one(doc! { "_id": DOCS + 100 + k, "u": k })
                .await
                .unwrap();
        }
    }

    /// Waits for the end of the catch-up, then for identical deployments (unique indexes
    /// included); returns the output so far.
    async fn converges(&self) -> String {
        self.mirror
            .wait_for_line(CAUGHT_UP, LINE_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.mirror.output_so_far()));
        await_same_deployments(&self.src, &self.dst, Duration::from_secs(30)).await;
        self.mirror.output_so_far().stderr
    }

    async fn stop(self) {
        self.mirror.send_sigint();
        let out = self.mirror.wait(Duration::from_secs(15)).await;
        assert_eq!(out.status, Some(0), "{out}");
        drop(self.pair);
    }
}

/// Unique values moving during the copy: the copy builds `u_1` without `unique`, replay
/// settles the transient duplicates, and the index is unique once oplog sync has caught up.
/// (Before, the index build after the copy failed the run, or a conflicting update was
/// dropped whole.)
#[tokio::test]
async fn unique_values_moving_during_the_copy_converge() {
    let Some(fuzzy) = hold_the_copy(false).await else {
        return;
    };
    fuzzy.move_a_value_to_a_later_document().await;
    fuzzy.insert_a_value_a_later_document_takes().await;
    fuzzy.move_values_to_new_documents().await;
    let log = fuzzy.converges().await;
    assert!(log.contains("1 unique indexes are unique again"), "{log}");
    fuzzy.stop().await;
}

/// A destination collection kept with its own unique index (the restart rules keep empty
/// collections): replay meets the transient duplicates as duplicate keys, records those
/// documents, and reads them again from the source once it has passed the copy.
#[tokio::test]
async fn duplicate_keys_met_while_catching_up_are_read_again_from_the_source() {
    let Some(fuzzy) = hold_the_copy(true).await else {
        return;
    };
    fuzzy.move_a_value_to_a_later_document().await;
    fuzzy.insert_a_value_a_later_document_takes().await;
    let log = fuzzy.converges().await;
    assert!(
        log.contains(
            "catching up with the copy: read 2 documents that met a duplicate key again from the source; 0 still do"
        ),
        "{log}"
    );
    fuzzy.stop().await;
}

/// After catch-up a duplicate key is a divergence: a document written to the destination by
/// hand takes a unique value the source then gives another document. The run stops with exit
/// code 1 and names the namespace, the index and the `_id`.
#[tokio::test]
async fn a_duplicate_key_after_catch_up_stops_the_run() {
    let Some(fuzzy) = hold_the_copy(false).await else {
        return;
    };
    fuzzy.converges().await;
    fuzzy
        .dst
        .database("app")
        .collection::<Document>("accounts")
        .insert_one(doc! { "_id": "by hand", "u": 777_777 })
        .await
        .unwrap();
    fuzzy
        .accounts()
        .insert_one(doc! { "_id": 777_777, "u": 777_777 })
        .await
        .unwrap();
    let out = fuzzy.mirror.wait(LINE_TIMEOUT).await;
    out.assert_failed(
        1,
        "the destination refused a write to app.accounts _id 777777: it collides on unique index u_1",
        "something other than mongomirror wrote to the destination",
    );
}

/// The everyday "load into staging, rename over live" while the copy of staging runs, then a
/// second rename: the renamed collection's documents are all copied (the later ranges, read
/// after the rename, would otherwise find its name empty or taken by a new collection, and
/// replaying the renames would move that partial copy), and replaying the renames moves them
/// to their final name.
#[tokio::test]
async fn a_collection_renamed_during_its_copy_is_copied_whole() {
    let Some(fuzzy) = hold_the_copy(false).await else {
        return;
    };
    let admin = fuzzy.src.database("admin");
    let live = fuzzy.src.database("app").collection::<Document>("live");
    live.insert_one(doc! { "_id": "the live collection before" })
        .await
        .unwrap();
    admin
        .run_command(
            doc! { "renameCollection": "app.accounts", "to": "app.live", "dropTarget": true },
        )
        .await
        .unwrap();
    live.insert_one(doc! { "_id": "written after the rename" })
        .await
        .unwrap();
    admin
        .run_command(doc! { "renameCollection": "app.live", "to": "app.archive" })
        .await
        .unwrap();
    // A new collection takes the first name, with `_id`s the renamed one has too.
    fuzzy
        .accounts()
        .insert_many((DOCS - 5..DOCS + 5).map(|i| doc! { "_id": i, "u": -i }))
        .await
        .unwrap();
    let log = fuzzy.converges().await;
    assert!(
        log.contains("app.accounts was renamed to app.archive while it was being copied"),
        "{log}"
    );
    let archived = fuzzy.dst.database("app").collection::<Document>("archive");
    assert_eq!(
        archived.count_documents(doc! {}).await.unwrap(),
        u64::try_from(DOCS).unwrap() + 1
    );
    fuzzy.stop().await;
}

/// A kill while a renamed collection is copied again: the bookmark names where it went, and the
/// restart reads it from there without finding it renamed again.
#[tokio::test]
async fn a_kill_while_a_renamed_collection_is_copied_again_resumes_from_its_new_name() {
    let Some(mut fuzzy) = hold_the_copy(false).await else {
        return;
    };
    // The copy itself never deletes: the one delete is the emptying before the second copy,
    // held long enough to hold the second copy's first insert in turn.
    hold_next(&fuzzy.dst, "delete", 3000).await;
    fuzzy
        .src
        .database("admin")
        .run_command(doc! { "renameCollection": "app.accounts", "to": "app.live" })
        .await
        .unwrap();
    let renamed = "app.accounts was renamed to app.live while it was being copied";
    fuzzy
        .mirror
        .wait_for_line(renamed, LINE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fuzzy.mirror.output_so_far()));
    hold_next(&fuzzy.dst, "insert", 15_000).await;
    let saved = wait_until(LINE_TIMEOUT, Duration::from_millis(20), async || {
        std::fs::read_to_string(&fuzzy.bookmark).is_ok_and(|b| b.contains("movedTo"))
    })
    .await;
    assert!(
        saved,
        "no new origin saved\n{}",
        fuzzy.mirror.output_so_far()
    );
    fuzzy.mirror.kill();
    fuzzy.mirror.wait(Duration::from_secs(15)).await;
    let bookmark: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fuzzy.bookmark).unwrap()).unwrap();
    assert_eq!(
        bookmark["copy"]["collections"][0]["movedTo"]["ns"], "app.live",
        "{bookmark:#}"
    );
    // Later writes to the renamed collection reach it through the oplog.
    fuzzy
        .src
        .database("app")
        .collection::<Document>("live")
        .insert_one(doc! { "_id": -100, "u": -100 })
        .await
        .unwrap();

    fuzzy.mirror = start(&fuzzy.pair, &fuzzy.bookmark, &[]);
    fuzzy
        .mirror
        .wait_for_line("resuming the initial sync started at", LINE_TIMEOUT)
        .await
        .unwrap();
    let log = fuzzy.converges().await;
    assert!(
        !log.contains(renamed),
        "read from its new name at once\n{log}"
    );
    fuzzy.stop().await;
}

/// A collection dropped and created again while it is copied (a cache rebuilt, say): the
/// ranges read after the drop read the new collection, and replay of the drop and of the new
/// collection's writes settles the destination. It is not mistaken for a rename.
#[tokio::test]
async fn a_collection_dropped_and_created_again_during_its_copy_converges() {
    let Some(fuzzy) = hold_the_copy(false).await else {
        return;
    };
    fuzzy.accounts().drop().await.unwrap();
    fuzzy
        .accounts()
        .insert_many((DOCS - 5..DOCS + 5).map(|i| doc! { "_id": i, "u": -i }))
        .await
        .unwrap();
    let log = fuzzy.converges().await;
    assert!(!log.contains("was renamed"), "{log}");
    let accounts = fuzzy.dst.database("app").collection::<Document>("accounts");
    assert_eq!(accounts.count_documents(doc! {}).await.unwrap(), 10);
    fuzzy.stop().await;
}

/// A collection renamed, while it is copied, to a namespace the migration does not copy is not
/// copied again: replaying the rename removes it from the destination.
#[tokio::test]
async fn a_collection_renamed_out_of_the_migration_during_its_copy_is_not_copied_again() {
    let Some(fuzzy) = hold_the_copy_with(false, &["--excludeNamespace", "app.archive"]).await
    else {
        return;
    };
    let app = fuzzy.src.database("app");
    app.collection::<Document>("other")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    fuzzy
        .src
        .database("admin")
        .run_command(doc! { "renameCollection": "app.accounts", "to": "app.archive" })
        .await
        .unwrap();
    fuzzy
        .mirror
        .wait_for_line(CAUGHT_UP, LINE_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", fuzzy.mirror.output_so_far()));
    // Out of the migration, and so out of the comparison.
    app.collection::<Document>("archive").drop().await.unwrap();
    await_same_deployments(&fuzzy.src, &fuzzy.dst, Duration::from_secs(30)).await;
    let log = fuzzy.mirror.output_so_far().stderr;
    assert!(
        log.contains("app.accounts was renamed to app.archive, which this migration does not copy"),
        "{log}"
    );
    assert!(!log.contains("copying it again"), "{log}");
    fuzzy.stop().await;
}
