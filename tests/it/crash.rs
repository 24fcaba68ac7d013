//! The crash suite: mongomirror is SIGKILLed at seeded random moments of every stage while a
//! write load runs on the source, restarted each time with the same flags, and at the end the
//! destination must equal the source byte for byte.
//!
//! A kill lands a seeded random delay after the log line that marks a stage: the catalog
//! creation, the copy, the index builds, the replay of the spool, the live tail, and the
//! bookmark saves around a DDL command. The default suite goes through each stage once; the
//! ignored `crash_suite_long` kills 24 times at stages drawn by the seed
//! (`CRASH_SEED=<n> cargo test --release --test it -- --ignored crash_suite_long`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

use crate::support::{await_same_deployments, Pair, Running};

const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// A stage of a run, and the log line that says it has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Catalog,
    Copy,
    Indexes,
    SpoolReplay,
    LiveTail,
    DdlBookmark,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Catalog,
        Stage::Copy,
        Stage::Indexes,
        Stage::SpoolReplay,
        Stage::LiveTail,
        Stage::DdlBookmark,
    ];

    fn marker(self) -> &'static str {
        match self {
            Stage::Catalog => "initial sync starting",
            Stage::Copy => "copying crash.",
            Stage::Indexes => "createIndexes for collection",
            Stage::SpoolReplay => "oplog sync: applying the",
            Stage::LiveTail | Stage::DdlBookmark => "Current lag from source",
        }
    }

    /// The longest delay after the marker: short where the stage is short.
    fn max_delay_ms(self) -> u64 {
        match self {
            Stage::Catalog | Stage::Indexes | Stage::SpoolReplay => 30,
            Stage::Copy => 400,
            Stage::LiveTail | Stage::DdlBookmark => 600,
        }
    }

    /// Whether the stage can still come after a restart (the copy's stages only while it has
    /// work left).
    fn reachable(self, copied: bool) -> bool {
        !copied || !matches!(self, Stage::Catalog | Stage::Copy | Stage::Indexes)
    }
}

/// A small deterministic generator (xorshift64*), so that a seed replays the same kills.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn seed(src: &Client) {
    let db = src.database("crash");
    let pad = "c".repeat(150);
    let docs: Vec<Document> = (0..30_000)
        .map(|i| doc! { "_id": i, "u": i, "tag": i % 13, "pad": &pad })
        .collect();
    for chunk in docs.chunks(10_000) {
        db.collection::<Document>("big")
            .insert_many(chunk.to_vec())
            .await
            .unwrap();
    }
    db.collection::<Document>("big")
        .create_indexes([
            IndexModel::builder()
                .keys(doc! { "u": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build(),
            IndexModel::builder().keys(doc! { "tag": 1 }).build(),
        ])
        .await
        .unwrap();
    db.collection::<Document>("small")
        .insert_many((0..300).map(|i| doc! { "_id": i, "n": i }))
        .await
        .unwrap();
    db.run_command(doc! { "create": "recent", "viewOn": "small", "pipeline": [{ "$match": { "n": { "$gt": 100 } } }] })
        .await
        .unwrap();
}

/// Inserts, updates (unique values moving), deletes and the occasional DDL on the source.
fn write_load(src: &Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let db = src.database("crash");
    tokio::spawn(async move {
        let (big, small) = (
            db.collection::<Document>("big"),
            db.collection::<Document>("small"),
        );
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let k = (n * 7_919 % 30_000) as i32;
            let step = match n % 5 {
                0 => small
                    .insert_one(doc! { "_id": 1_000 + n as i64, "n": n as i64 })
                    .await
                    .map(drop),
                // A unique value moves: frees k's value, gives it to a new document.
                1 => match big.delete_one(doc! { "_id": k }).await {
                    Ok(_) => big
                        .insert_one(doc! { "_id": 100_000 + n as i64, "u": k })
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                },
                2 => big
                    .update_one(doc! { "_id": k + 1 }, doc! { "$inc": { "tag": 1 } })
                    .await
                    .map(drop),
                3 => small
                    .delete_one(doc! { "_id": (n % 300) as i32 })
                    .await
                    .map(drop),
                // Now and then a DDL command: a staging collection renamed over a live one.
                _ if n % 50 == 4 => {
                    let staging = db.collection::<Document>("staging");
                    let loaded = staging.insert_one(doc! { "gen": n as i64 }).await;
                    match loaded {
                        // The suite renames staging too: a rename that finds it gone is fine.
                        Ok(_) => rename_staging(&db).await,
                        Err(e) => Err(e),
                    }
                }
                _ => big
                    .update_one(doc! { "_id": k }, doc! { "$set": { "touched": n as i64 } })
                    .await
                    .map(drop),
            };
            step.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        n
    })
}

/// Renames `crash.staging` over `crash.live`; a staging already renamed away is fine.
async fn rename_staging(db: &mongodb::Database) -> mongodb::error::Result<()> {
    let renamed = db
        .client()
        .database("admin")
        .run_command(
            doc! { "renameCollection": "crash.staging", "to": "crash.live", "dropTarget": true },
        )
        .await;
    match renamed {
        Err(e) if matches!(*e.kind, mongodb::error::ErrorKind::Command(ref c) if c.code == 26) => {
            Ok(())
        }
        other => other.map(drop),
    }
}

fn start(pair: &Pair, bookmark: &Path) -> Running {
    pair.mongomirror()
        .args([
            "--bookmarkFile",
            bookmark.to_str().unwrap(),
            "-j",
            "2",
            "--oplogBatchSize",
            "200",
        ])
        .spawn()
}

/// Runs the suite: a SIGKILL at each of `stages`, then a last run that must converge; returns
/// the stages whose line each kill followed.
async fn crash_suite(seed_value: u64, stages: &[Stage]) -> Vec<Stage> {
    let mut rng = Seeded(seed_value | 1);
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    seed(&src).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&src, stop.clone());
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mut copied = false;
    let mut hit = Vec::new();
    for (round, stage) in stages.iter().enumerate() {
        if !stage.reachable(copied) {
            continue;
        }
        let mirror = start(&pair, &bookmark);
        let marker = stage.marker();
        // A stage that a run passes without its line (nothing left to copy, say) is killed at
        // the live tail instead; the default suite checks below that each stage was hit.
        let line = mirror
            .wait_for_line(
                |l: &str| l.contains(marker) || l.contains("Current lag from source"),
                LINE_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| {
                panic!("round {round} ({stage:?}): {e}\n{}", mirror.output_so_far())
            });
        if line.contains(marker) {
            hit.push(*stage);
        }
        if *stage == Stage::DdlBookmark {
            // A rename on the source now, so the kill lands among its bookmark saves.
            let db = src.database("crash");
            db.collection::<Document>("staging")
                .insert_one(doc! { "gen": -(round as i64) })
                .await
                .unwrap();
            rename_staging(&db).await.unwrap();
        }
        let delay = rng.below(stage.max_delay_ms() + 1);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        mirror.kill();
        let out = mirror.wait(Duration::from_secs(15)).await;
        assert!(
            !out.stderr.contains("Failed:") && !out.stderr.contains("panicked"),
            "round {round} ({stage:?}) failed before the kill\n{out}"
        );
        copied |= out.stderr.contains("initial sync completed");
    }
    // The last run: the load stops, the destination converges (unique indexes included, so
    // catch-up has ended).
    let mirror = start(&pair, &bookmark);
    stop.store(true, Ordering::Relaxed);
    let writes = load.await.unwrap();
    assert!(writes > 0);
    await_same_deployments(&src, &dst, Duration::from_secs(120)).await;
    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
    hit
}

/// Every stage once, in pipeline order.
#[tokio::test]
async fn a_kill_in_every_stage_still_ends_identical() {
    let hit = crash_suite(0x5EED_2026, &Stage::ALL).await;
    assert_eq!(hit, Stage::ALL, "each stage was killed once");
}

/// 24 kills at stages drawn by the seed (`CRASH_SEED`), for a longer run; results in
/// docs/reliability.md.
#[tokio::test]
#[ignore = "long: 24 kills; run with --ignored crash_suite_long"]
async fn crash_suite_long() {
    let seed_value: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let mut rng = Seeded(seed_value | 1);
    // The copy's stages first (while there is copying left), then the later ones at random.
    let mut stages = vec![Stage::Catalog, Stage::Copy, Stage::Copy, Stage::Indexes];
    while stages.len() < 24 {
        let later = [Stage::SpoolReplay, Stage::LiveTail, Stage::DdlBookmark];
        stages.push(later[rng.below(later.len() as u64) as usize]);
    }
    let hit = crash_suite(seed_value, &stages).await;
    eprintln!(
        "crash_suite_long: seed {seed_value}, {} kills, stages hit: {hit:?}",
        stages.len()
    );
}
