//! `--mode script`: mongomirror side by side with the PyMongo script a user would write
//! (`tests/bench/pymongo_mirror.py`), under the same data and the same source write load.
//!
//! For each added round trip (`--rtt-ms`, destination side) and each contender, in one
//! invocation: two fresh servers (through `tests/secantus/launch.py` by default, whose tailable
//! oplog cursor loses nothing), `--docs` documents seeded into the source, then the contender
//! starts (under GNU time) and, at the same moment, a fixed write load runs against the source:
//! `--writes` operations at `--write-rate` per second (updates of several shapes, inserts,
//! replacements, deletes), followed by one marker insert, the source's last write. The
//! contender is timed until that marker is on the destination; then it is stopped and every
//! collection of the destination is compared with the source's.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::{
    document, interrupt, mirror_argv, seed, spawn_timed, usage_of, via, Error, Server, Timed,
    COMPLETED, DB, SHARES,
};

/// The script, run by `python`.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bench/pymongo_mirror.py");
/// The pymongo a venv is provisioned with when the given python lacks it.
const PYMONGO: &str = "pymongo==4.20.1";
/// The `_id` of the last source write, in the last collection.
const MARKER: &str = "bench-last-write";
/// Longest either contender may take to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to run.
pub struct Settings {
    docs: u64,
    writes: u64,
    rate: f64,
    rtts: Vec<u64>,
    python: PathBuf,
}

impl Settings {
    /// From the command line: `--docs` (default 20,000), `--writes` (2,000), `--write-rate`
    /// (200 per second), `--python` (the harness venv's, else a venv provisioned under
    /// `target/` with a pinned pymongo).
    pub fn from_flags(
        flag: &dyn Fn(&str) -> Option<String>,
        _default_docs: u64,
        rtts: &[u64],
    ) -> Result<Settings, Error> {
        let number = |name: &str, default: f64| -> Result<f64, Error> {
            Ok(flag(name)
                .map(|v| v.parse())
                .transpose()?
                .unwrap_or(default))
        };
        let python = match flag("--python") {
            Some(p) => PathBuf::from(p),
            None => python_with_pymongo()?,
        };
        Ok(Settings {
            docs: number("--docs", 20_000.0)? as u64,
            writes: number("--writes", 2_000.0)? as u64,
            rate: number("--write-rate", 200.0)?,
            rtts: rtts.to_vec(),
            python,
        })
    }
}

/// The harness venv's python if it has pymongo, else one of `target/pymongo-venv`, created with
/// [`PYMONGO`] on first use.
fn python_with_pymongo() -> Result<PathBuf, Error> {
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target"));
    let has_pymongo = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", "import pymongo"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let harness = target.join("secantus-venv/bin/python3");
    if has_pymongo(&harness) {
        return Ok(harness);
    }
    let venv = target.join("pymongo-venv");
    let python = venv.join("bin/python3");
    if !has_pymongo(&python) {
        eprintln!("provisioning {} with {PYMONGO} ...", venv.display());
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?;
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", PYMONGO])
            .status()?;
        if !created.success() || !installed.success() {
            return Err(format!("cannot provision {}", venv.display()).into());
        }
    }
    Ok(python)
}

/// One contender's run.
struct Outcome {
    /// From start until the source's last write was on the destination.
    caught_up: Duration,
    /// From start until the contender logged the end of its copy.
    copy: Option<Duration>,
    /// From the end of the load (the marker written) until it was on the destination.
    lag: Duration,
    cpu_seconds: f64,
    peak_rss_kb: u64,
}

/// Runs both contenders at every round trip and prints the table.
pub async fn run(launcher: &[String], settings: &Settings) -> Result<(), Error> {
    let mirror = std::env::current_exe()?
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("mongomirror"))
        .ok_or("cannot find the mongomirror binary next to this example")?;
    println!(
        "{} documents of about 1 KB; load: {} writes at {}/s during the copy, then one marker write",
        settings.docs, settings.writes, settings.rate
    );
    println!(
        "\n| added RTT ms | run | copy done s | caught up s | lag after last write s | CPU s | peak RSS MB | script ÷ tool: time | CPU | RSS |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for &rtt in &settings.rtts {
        let mut script_outcome: Option<Outcome> = None;
        for name in ["pymongo script", "mongomirror -j 4"] {
            let source_server = Server::start(launcher)?;
            let destination_server = Server::start(launcher)?;
            let (source, destination) = (source_server.uri(), destination_server.uri());
            let src = Client::with_uri_str(&source).await?;
            let dst = Client::with_uri_str(&destination).await?;
            seed(&src, settings.docs).await?;
            let (_proxy, dst_via) = via(&destination, rtt)?;
            let argv: Vec<String> = if name == "pymongo script" {
                vec![
                    settings.python.display().to_string(),
                    SCRIPT.into(),
                    source.clone(),
                    dst_via,
                    DB.into(),
                ]
            } else {
                mirror_argv(&mirror, &source, &dst_via, &["-j", "4"])
            };
            let outcome = contend(&argv, &src, &dst, settings).await?;
            compare(&src, &dst).await?;
            let ratios = match (&script_outcome, name) {
                (Some(s), "mongomirror -j 4") => format!(
                    "{:.1}× | {:.1}× | {:.1}×",
                    s.caught_up.as_secs_f64() / outcome.caught_up.as_secs_f64(),
                    s.cpu_seconds / outcome.cpu_seconds,
                    s.peak_rss_kb as f64 / outcome.peak_rss_kb as f64
                ),
                _ => "| |".into(),
            };
            println!(
                "| {rtt} | {name} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {ratios} |",
                outcome
                    .copy
                    .map_or("-".into(), |c| format!("{:.1}", c.as_secs_f64())),
                outcome.caught_up.as_secs_f64(),
                outcome.lag.as_secs_f64(),
                outcome.cpu_seconds,
                outcome.peak_rss_kb as f64 / 1024.0
            );
            if name == "pymongo script" {
                script_outcome = Some(outcome);
            }
            drop((source_server, destination_server));
        }
    }
    Ok(())
}

/// Starts `argv` under GNU time with the write load, waits for the marker on the destination,
/// stops it.
async fn contend(
    argv: &[String],
    src: &Client,
    dst: &Client,
    settings: &Settings,
) -> Result<Outcome, Error> {
    let Timed {
        mut child,
        started,
        _workdir,
    } = spawn_timed(argv)?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    // The log is read on a thread: copy end, GNU time's line, and failures.
    let reader = std::thread::spawn(move || {
        let (mut copy, mut usage, mut failures) = (None, None, Vec::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(COMPLETED) && copy.is_none() {
                copy = Some(started.elapsed());
            } else if let Some(rest) = line.strip_prefix("TIME ") {
                usage = Some(rest.to_string());
            } else if line.contains("Failed") || line.contains("Error") {
                failures.push(line);
            }
        }
        (copy, usage, failures)
    });
    let waited = async {
        load(src, settings, started).await?;
        let loaded = Instant::now();
        let marker = dst.database(DB).collection::<Document>(SHARES[3].0);
        loop {
            if marker.find_one(doc! { "_id": MARKER }).await?.is_some() {
                return Ok::<_, Error>((started.elapsed(), loaded.elapsed()));
            }
            if started.elapsed() > CATCH_UP_TIMEOUT {
                return Err("the destination never caught up".into());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the run stopped early: {status}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    interrupt(&child);
    child.wait()?;
    let (copy, usage, failures) = reader.join().map_err(|_| "log reader panicked")?;
    for line in &failures {
        eprintln!("{line}");
    }
    let (caught_up, lag) = waited?;
    let (cpu_seconds, peak_rss_kb) = usage_of(usage)?;
    Ok(Outcome {
        caught_up,
        copy,
        lag,
        cpu_seconds,
        peak_rss_kb,
    })
}

/// The source write load: `writes` operations at `rate` per second from `started`, then the
/// marker. Deterministic, so both contenders get the same: for every ten, five `$set`/`$unset`
/// updates and one `$push` in the largest collection, two inserts, one replacement and one
/// delete.
async fn load(src: &Client, settings: &Settings, started: Instant) -> Result<(), Error> {
    let db = src.database(DB);
    let per = |share: u64| (settings.docs * share / 100).max(1);
    let (c50, c25, c15, c10) = (
        db.collection::<Document>(SHARES[0].0),
        db.collection::<Document>(SHARES[1].0),
        db.collection::<Document>(SHARES[2].0),
        db.collection::<Document>(SHARES[3].0),
    );
    let id = |d: Document| d.get("_id").cloned().unwrap_or(Bson::Null);
    for i in 0..settings.writes {
        let due = started + Duration::from_secs_f64(i as f64 / settings.rate);
        tokio::time::sleep_until(due.into()).await;
        match i % 10 {
            0..=4 => {
                let target = id(document((i * 7919) % per(SHARES[0].1)));
                c50.update_one(
                    doc! { "_id": target },
                    doc! { "$set": { "n": i as i64, "sub.b.c": format!("updated {i}") }, "$unset": { "nil": "" } },
                )
                .await?;
            }
            5 => {
                let target = id(document((i * 7919) % per(SHARES[0].1)));
                c50.update_one(
                    doc! { "_id": target },
                    doc! { "$push": { "arr": i as i64 } },
                )
                .await?;
            }
            6 | 7 => {
                c25.insert_one(document(1_000_000_000 + i)).await?;
            }
            8 => {
                let k = (i * 31) % per(SHARES[2].1);
                let mut replacement = document(k);
                replacement.insert("s", format!("replaced by write {i}"));
                c15.replace_one(doc! { "_id": id(document(k)) }, replacement)
                    .await?;
            }
            _ => {
                let target = id(document((i * 13) % per(SHARES[3].1)));
                c10.delete_one(doc! { "_id": target }).await?;
            }
        }
    }
    c10.insert_one(doc! { "_id": MARKER }).await?;
    Ok(())
}

/// Fails unless every collection holds the same documents on both sides.
async fn compare(src: &Client, dst: &Client) -> Result<(), Error> {
    for (name, _) in SHARES {
        let read = |client: &Client| {
            let coll = client.database(DB).collection::<Document>(name);
            async move {
                coll.find(doc! {})
                    .sort(doc! { "_id": 1 })
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            }
        };
        let (a, b) = tokio::try_join!(read(src), read(dst))?;
        if a != b {
            let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            return Err(format!(
                "{name}: {} documents on the source, {} on the destination, {differing} differ",
                a.len(),
                b.len()
            )
            .into());
        }
    }
    Ok(())
}
