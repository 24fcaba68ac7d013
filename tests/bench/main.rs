//! Initial-sync and verification benchmarks.
//!
//! `--mode copy` (the default) seeds a source, then times a bare copy loop (the baseline) and
//! `mongomirror` with `-j 1` and `-j 4` on the same servers. `--mode verify` seeds both sides
//! with the same documents, then times a bare read of both sides in `_id` order (the read
//! ceiling) and `mongomirror --verify` with `-j 1` and `-j 4`. docs/performance.md has the
//! numbers.
//!
//! `--rtt-ms 0,10,40` repeats the copy runs with that much round trip added between every run
//! and the destination (and `--source-rtt-ms N` on the source side), through the delaying proxy
//! of [`proxy`]; ratios are then given against each run at 0 ms and against the baseline at the
//! same round trip, all measured in the same invocation. `--mode script` runs the PyMongo
//! copy-then-tail script `tests/bench/pymongo_mirror.py` and `mongomirror` side by side under the
//! same source write load (see [`script`]).
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/bench [--mode copy|verify|script] [--docs 1000000] [--rtt-ms 0,10,40]
//!     [--source-rtt-ms N] [--secantusd PATH | --source URI --destination URI]
//! ```
//!
//! Without URIs it starts two servers, each with a fresh data directory, from `--secantusd
//! PROGRAM` (`secantusd-rs` or `secantusd-py`), else `MONGOMIRROR_TEST_SECANTUSD`, else the
//! test harness venv `target/secantus-venv` (`cargo test --test it` provisions it) running
//! `tests/secantus/launch.py`, the launcher whose tailable oplog cursor loses nothing. Each run is wrapped in GNU `/usr/bin/time` for CPU seconds and peak RSS; the
//! baseline runs as a child process too (this program with `--baseline-source` and
//! `--baseline-destination`), so both are measured the same way.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime, Decimal128, Document, RawDocumentBuf};
use mongodb::Client;

mod proxy;
mod script;
mod server;

use server::Server;

use proxy::{Link, Proxy};

const DB: &str = "bench";
/// Share of the documents in each collection: a few collections of different sizes.
const SHARES: [(&str, u64); 4] = [("c50", 50), ("c25", 25), ("c15", 15), ("c10", 10)];
/// Documents per seeding insert.
const SEED_BATCH: u64 = 1_000;
/// Lines that bracket the copy in the log of mongomirror (and of the baseline).
const STARTING: &str = "initial sync starting";
const COMPLETED: &str = "initial sync completed";
/// Lines that bracket the document comparison of a verification in the log of mongomirror
/// (and of the read baseline).
const VERIFY_STARTING: &str = "verification: comparing the documents";
const VERIFY_COMPLETED: &str = "verification: the destination matches the source";

use server::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let (Some(src), Some(dst)) = (flag("--baseline-source"), flag("--baseline-destination")) {
        return baseline(&src, &dst).await;
    }
    if let (Some(src), Some(dst)) = (flag("--read-source"), flag("--read-destination")) {
        return read_both(&src, &dst).await;
    }
    let mode = flag("--mode").unwrap_or_else(|| "copy".into());
    let verify_mode = mode == "verify";
    let rtts: Vec<u64> = flag("--rtt-ms")
        .unwrap_or_else(|| "0".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let source_rtt: u64 = flag("--source-rtt-ms")
        .map(|d| d.parse())
        .transpose()?
        .unwrap_or(0);
    let docs: u64 = flag("--docs")
        .map(|d| d.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let launcher =
        match flag("--secantusd").or_else(|| std::env::var("MONGOMIRROR_TEST_SECANTUSD").ok()) {
            // `--secantusd-arg`: an argument before the server's flags (a launcher script).
            Some(exe) => std::iter::once(exe)
                .chain(flag("--secantusd-arg"))
                .collect(),
            // The test harness venv: its scripts are run through its python.
            None => vec![
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/target/secantus-venv/bin/python3"
                )
                .to_string(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/secantus/launch.py").to_string(),
            ],
        };
    if mode == "script" {
        let settings = script::Settings::from_flags(&flag, docs, &rtts)?;
        return script::run(&launcher, &settings).await;
    }
    let mut servers = Vec::new();
    let (source, destination) = match (flag("--source"), flag("--destination")) {
        (Some(s), Some(d)) => (s, d),
        _ => {
            let s = Server::start(&launcher)?;
            let d = Server::start(&launcher)?;
            let uris = (s.uri(), d.uri());
            servers.push(s);
            servers.push(d);
            uris
        }
    };
    let src = Client::with_uri_str(&source).await?;
    let dst = Client::with_uri_str(&destination).await?;
    println!("seeding {docs} documents of about 1 KB into {DB} ...");
    let seeded = Instant::now();
    if verify_mode {
        let (a, b) = tokio::join!(seed(&src, docs), seed(&dst, docs));
        a?;
        b?;
    } else {
        seed(&src, docs).await?;
    }
    let stats = src.database(DB).run_command(doc! { "dbStats": 1 }).await?;
    let bytes = match stats.get("dataSize") {
        Some(Bson::Double(b)) => *b as u64,
        Some(Bson::Int32(b)) => *b as u64,
        Some(Bson::Int64(b)) => *b as u64,
        _ => 0,
    };
    println!(
        "seeded in {:.1}s: {bytes} bytes of BSON",
        seeded.elapsed().as_secs_f64()
    );

    let me = std::env::current_exe()?;
    let mirror = me
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("mongomirror"))
        .ok_or("cannot find the mongomirror binary next to this example")?;
    if verify_mode {
        return verify_runs(&me, &mirror, &source, &destination, docs, bytes);
    }
    println!(
        "\n| added RTT ms | run | total s | copy s | docs/s | MB/s | vs same run at 0 ms | vs baseline at this RTT | CPU s per 1M docs | peak RSS MB |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    // docs/s of each run at 0 ms, for the ratios.
    let mut at_zero: Vec<Option<f64>> = vec![None; 3];
    for rtt in rtts {
        // One proxy per side for all runs at this round trip; `None`: connect directly.
        let (_src_proxy, src_via) = via(&source, source_rtt)?;
        let (_dst_proxy, dst_via) = via(&destination, rtt)?;
        let runs = copy_runs(&me, &mirror, &src_via, &dst_via);
        let mut baseline_rate = None;
        for (k, (name, argv)) in runs.into_iter().enumerate() {
            dst.database(DB).drop().await?;
            let m = measure(&argv, STARTING, COMPLETED)?;
            let mut copied = 0;
            for (coll, _) in SHARES {
                copied += dst
                    .database(DB)
                    .collection::<Document>(coll)
                    .count_documents(doc! {})
                    .await?;
            }
            if copied != seeded_docs(docs) {
                return Err(
                    format!("{name} copied {copied} of {} documents", seeded_docs(docs)).into(),
                );
            }
            let copy = m.copy.as_secs_f64();
            let rate = docs as f64 / copy;
            if rtt == 0 {
                at_zero[k] = Some(rate);
            }
            let baseline = *baseline_rate.get_or_insert(rate);
            let vs_zero = at_zero[k].map_or("-".to_string(), |z| format!("{:.2}×", rate / z));
            println!(
                "| {rtt} | {name} | {:.1} | {copy:.1} | {rate:.0} | {:.1} | {vs_zero} | {:.2}× | {:.2} | {:.0} |",
                m.total.as_secs_f64(),
                bytes as f64 / 1e6 / copy,
                rate / baseline,
                m.cpu_seconds / (docs as f64 / 1e6),
                m.peak_rss_kb as f64 / 1024.0
            );
        }
    }
    drop(servers);
    Ok(())
}

/// The three copy runs, each a command line: the baseline, `mongomirror -j 1` and `-j 4`.
fn copy_runs(
    me: &Path,
    mirror: &Path,
    source: &str,
    destination: &str,
) -> [(&'static str, Vec<String>); 3] {
    let mirror_j = |j: &str| mirror_argv(mirror, source, destination, &["-j", j]);
    [
        (
            "baseline",
            vec![
                me.display().to_string(),
                "--baseline-source".into(),
                source.into(),
                "--baseline-destination".into(),
                destination.into(),
            ],
        ),
        ("mongomirror -j 1", mirror_j("1")),
        ("mongomirror -j 4", mirror_j("4")),
    ]
}

/// The command line of `mirror` between `source` and `destination`, then `extra`.
fn mirror_argv(mirror: &Path, source: &str, destination: &str, extra: &[&str]) -> Vec<String> {
    let mut argv = vec![
        mirror.display().to_string(),
        "--host".into(),
        source.into(),
        "--destination".into(),
        destination.into(),
    ];
    argv.extend(extra.iter().map(|a| a.to_string()));
    argv
}

/// `uri` seen through a proxy adding `rtt_ms` of round trip: the proxy (kept alive by the
/// caller) and the URI to use; without added latency, no proxy and `uri` itself.
///
/// The proxy forwards to the first host of `uri`; the URI returned connects directly to the
/// proxy (`directConnection=true`), or the driver would learn the server's own address from
/// `hello` and go around it. Other options of `uri` are dropped.
pub(crate) fn via(uri: &str, rtt_ms: u64) -> Result<(Option<Proxy>, String), Error> {
    let link = Link::round_trip_ms(rtt_ms);
    if link.is_direct() {
        return Ok((None, uri.to_string()));
    }
    let hosts = uri
        .strip_prefix("mongodb://")
        .ok_or("the proxy needs a mongodb:// URI")?;
    let hosts = hosts.split(['/', '?']).next().unwrap_or_default();
    let host = hosts.rsplit('@').next().unwrap_or_default();
    let host = host.split(',').next().unwrap_or_default();
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(host)?
        .next()
        .ok_or_else(|| format!("{host} does not resolve"))?;
    let proxy = Proxy::start(upstream, link)?;
    let uri = format!("mongodb://{}/?directConnection=true", proxy.addr());
    Ok((Some(proxy), uri))
}

/// The verification runs: the read ceiling, then `mongomirror --verify -j 1` and `-j 4`.
fn verify_runs(
    me: &Path,
    mirror: &Path,
    source: &str,
    destination: &str,
    docs: u64,
    bytes: u64,
) -> Result<(), Error> {
    let verify = |j: &str| mirror_argv(mirror, source, destination, &["--verify", "-j", j]);
    let runs: [(&str, Vec<String>); 3] = [
        (
            "read both sides",
            vec![
                me.display().to_string(),
                "--read-source".into(),
                source.into(),
                "--read-destination".into(),
                destination.into(),
            ],
        ),
        ("mongomirror --verify -j 1", verify("1")),
        ("mongomirror --verify -j 4", verify("4")),
    ];
    println!(
        "\n| run | total s | compare s | docs/s | MB/s (one side) | vs read ceiling | CPU s per 1M docs | peak RSS MB |\n\
         |---|---|---|---|---|---|---|---|"
    );
    // One unmeasured read first, so that every measured run finds the servers' caches alike.
    measure(&runs[0].1, VERIFY_STARTING, VERIFY_COMPLETED)?;
    let mut ceiling = None;
    for (name, argv) in runs {
        let m = measure(&argv, VERIFY_STARTING, VERIFY_COMPLETED)?;
        let seconds = m.copy.as_secs_f64();
        let rate = docs as f64 / seconds;
        let ratio = ceiling.map_or(1.0, |c: f64| rate / c);
        ceiling.get_or_insert(rate);
        println!(
            "| {name} | {:.1} | {seconds:.1} | {rate:.0} | {:.1} | {ratio:.2}× | {:.2} | {:.0} |",
            m.total.as_secs_f64(),
            bytes as f64 / 1e6 / seconds,
            m.cpu_seconds / (docs as f64 / 1e6),
            m.peak_rss_kb as f64 / 1024.0
        );
    }
    Ok(())
}

/// The read ceiling of a verification: every collection of both sides read at once, in `_id`
/// order, as raw batches whose documents are walked and counted, nothing else.
async fn read_both(source: &str, destination: &str) -> Result<(), Error> {
    let src = Client::with_uri_str(source).await?;
    let dst = Client::with_uri_str(destination).await?;
    eprintln!("{VERIFY_STARTING}");
    for (name, _) in SHARES {
        let (a, b) = tokio::try_join!(read_sorted(&src, name), read_sorted(&dst, name))?;
        if a.0 != b.0 {
            return Err(format!(
                "{name}: {} documents on the source, {} on the destination",
                a.0, b.0
            )
            .into());
        }
    }
    eprintln!("{VERIFY_COMPLETED}");
    Ok(())
}

async fn read_sorted(client: &Client, name: &str) -> Result<(u64, u64), Error> {
    let coll = client.database(DB).collection::<RawDocumentBuf>(name);
    let mut cursor = coll.find(doc! {}).sort(doc! { "_id": 1 }).batch().await?;
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(batch) = cursor.try_next().await? {
        for d in batch.doc_slices()? {
            let d = d?.as_document().ok_or("not a document")?;
            bytes += d.as_bytes().len() as u64;
            count += 1;
        }
    }
    Ok((count, bytes))
}

/// The minimal copy: one raw-batch `find` per collection, each batch passed to `insert_many`.
async fn baseline(source: &str, destination: &str) -> Result<(), Error> {
    let src = Client::with_uri_str(source).await?;
    let dst = Client::with_uri_str(destination).await?;
    eprintln!("{STARTING}");
    for (name, _) in SHARES {
        let from = src.database(DB).collection::<RawDocumentBuf>(name);
        let to = dst.database(DB).collection::<RawDocumentBuf>(name);
        let mut cursor = from.find(doc! {}).batch().await?;
        while let Some(batch) = cursor.try_next().await? {
            let docs: Vec<RawDocumentBuf> = batch
                .doc_slices()?
                .into_iter()
                .map(|d| {
                    Ok(d?
                        .as_document()
                        .ok_or("not a document")?
                        .to_raw_document_buf())
                })
                .collect::<Result<_, Error>>()?;
            if !docs.is_empty() {
                to.insert_many(docs).ordered(false).await?;
            }
        }
    }
    eprintln!("{COMPLETED}");
    Ok(())
}

/// About 1 KB of mixed types.
fn document(i: u64) -> Document {
    doc! {
        // Deterministic, so that both sides of a verification run hold the same documents.
        "_id": ObjectId::from_bytes({
            let mut b = [0x65; 12];
            b[4..].copy_from_slice(&i.to_be_bytes());
            b
        }),
        "i": i as i32,
        "l": i as i64 * 1_000_003,
        "d": i as f64 / 7.0,
        "s": format!("{i:>12}-{}", "lorem ipsum dolor sit amet ".repeat(22)),
        "dt": DateTime::from_millis(1_600_000_000_000 + i as i64),
        "b": i.is_multiple_of(2),
        "arr": [1, "two", 3.5, { "four": 4 }],
        "sub": { "a": i as i64, "b": { "c": "nested", "d": [i as i32, i as i32 + 1] } },
        "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![(i % 251) as u8; 100] },
        "dec": format!("{i}.25").parse::<Decimal128>().unwrap_or_else(|_| Decimal128::from_bytes([0; 16])),
        "nil": null,
    }
}

/// How many documents [`seed`] inserts for a requested total.
fn seeded_docs(total: u64) -> u64 {
    SHARES.iter().map(|(_, share)| total * share / 100).sum()
}

async fn seed(client: &Client, total: u64) -> Result<(), Error> {
    client.database(DB).drop().await?;
    for (name, share) in SHARES {
        let coll = client.database(DB).collection::<Document>(name);
        let n = total * share / 100;
        let mut start = 0;
        while start < n {
            let end = (start + SEED_BATCH).min(n);
            coll.insert_many((start..end).map(document))
                .ordered(false)
                .await?;
            start = end;
        }
    }
    Ok(())
}

struct Measured {
    /// From start to the completion line.
    total: Duration,
    /// From the starting line to the completion line: the copy without connecting and listing.
    copy: Duration,
    cpu_seconds: f64,
    peak_rss_kb: u64,
}

/// Runs `argv` under GNU time until it prints the `completed` line, then interrupts it (a full
/// mongomirror keeps tailing the oplog) and reads its CPU time and peak RSS; `starting` marks
/// the start of the measured part.
fn measure(argv: &[String], starting: &str, completed: &str) -> Result<Measured, Error> {
    let Timed {
        mut child,
        started,
        _workdir,
    } = spawn_timed(argv)?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (mut copy_started, mut total) = (None, None);
    let mut usage = None;
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains(starting) {
            copy_started = Some(Instant::now());
        } else if line.contains(completed) && total.is_none() {
            total = Some((started.elapsed(), copy_started.map(|t| t.elapsed())));
            interrupt(&child);
        } else if let Some(rest) = line.strip_prefix("TIME ") {
            usage = Some(rest.to_string());
        } else if line.contains("Failed") {
            eprintln!("{line}");
        }
    }
    child.wait()?;
    let (cpu_seconds, peak_rss_kb) = usage_of(usage)?;
    let Some((total, Some(copy))) = total else {
        return Err("the run never completed".into());
    };
    Ok(Measured {
        total,
        copy,
        cpu_seconds,
        peak_rss_kb,
    })
}

/// A run under GNU time (which prints `TIME <user> <sys> <peak RSS KB>` on stderr last), in its
/// own process group and a fresh working directory: mongomirror keeps its bookmark (and oplog
/// spool) in the current directory, and a run that found the previous run's would resume its
/// oplog sync instead of copying.
struct Timed {
    child: Child,
    started: Instant,
    _workdir: tempfile::TempDir,
}

fn spawn_timed(argv: &[String]) -> Result<Timed, Error> {
    use std::os::unix::process::CommandExt;
    let workdir = tempfile::tempdir()?;
    let started = Instant::now();
    let child = Command::new("/usr/bin/time")
        .args(["-f", "TIME %U %S %M"])
        .args(argv)
        .current_dir(workdir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    Ok(Timed {
        child,
        started,
        _workdir: workdir,
    })
}

/// CPU seconds and peak RSS in KB from GNU time's line (after `TIME `).
fn usage_of(usage: Option<String>) -> Result<(f64, u64), Error> {
    let usage = usage.ok_or("GNU time printed nothing")?;
    let f: Vec<&str> = usage.split_whitespace().collect();
    let [user, sys, rss] = f.as_slice() else {
        return Err(format!("unexpected GNU time output {usage:?}").into());
    };
    Ok((user.parse::<f64>()? + sys.parse::<f64>()?, rss.parse()?))
}

/// SIGINT to the run's process group (GNU time and the program under it).
fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status();
}
