//! Replay lag under a steady source write load, across added latency to the destination.
//!
//! For each added round trip (`--rtt-ms`, through the delaying proxy of `proxy.rs` in front
//! of the destination), each applier (`--appliers`) and each rate (`--rates`, operations per
//! second) it:
//!
//! 1. seeds `--docs` small documents into a fresh database `lagN` of the source;
//! 2. starts the applier, which reaches the destination through the proxy:
//!    - `mongomirror`: the real binary, `--includeDB lagN`, default flags; ready once it logs
//!      `initial sync completed`;
//!    - `serial`: mongomirror's own way of replaying (one batch at a time, in order): this
//!      program as a child, tailing the source oplog and handing each batch the server returns
//!      to the crate's applier with one writer lane, flushing it before reading the next; the
//!      bench copies the seed to the destination for it;
//! 3. runs the load on the source for `--seconds`: inserts, `$set` updates, deletes and
//!    two-write transactions (3:3.5:2.5:1, from a fixed seed) at the fixed rate, and every 10 ms
//!    a clock write (`{_id: 0, t: <ms since the epoch>}` in `lagN.clock`);
//! 4. every 100 ms reads the clock on the destination (directly, not through the proxy): the lag
//!    is now minus the newest clock time applied there, so it has a 10 ms resolution;
//! 5. after the load, waits for the last clock write to arrive (the drain), stops the applier
//!    (its CPU seconds and peak RSS from GNU time) and compares the source and destination
//!    collections document by document.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/lag [--rtt-ms 0,10,40] [--appliers mongomirror,serial] [--rates 200]
//!     [--seconds 60] [--docs 10000] [--rss-every SECONDS]
//!     [--secantusd PROGRAM | --source URI --destination URI]
//! ```
//!
//! `--rss-every 10` also samples the applier's resident memory every 10 s (the soak of
//! docs/performance.md: `--seconds 1800 --rtt-ms 0 --appliers mongomirror`).
//!
//! Without URIs it starts two servers through the test harness's launcher
//! (`tests/secantus/launch.py`, whose tailable oplog cursor loses nothing). docs/performance.md
//! has the numbers.

mod proxy;
mod server;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf, Timestamp};
use mongodb::options::CursorType;
use mongodb::{Client, Collection};
use mongomirror::cli::NamespaceFilter;
use mongomirror::oplog::apply::{Applier, ApplyOptions};

use proxy::{Link, Proxy};
use server::{interrupt, launcher, timed, usage, Error, Server, Usage};

/// The log line after which mongomirror is in oplog sync, and the serial applier's ready line.
const MIRROR_READY: &str = "initial sync completed";
const SERIAL_READY: &str = "serial apply: tailing";
/// How often the load writes the clock, and how often the lag is sampled.
const CLOCK_EVERY: Duration = Duration::from_millis(10);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The longest wait for an applier to become ready, and for the drain after the load.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let (Some(src), Some(dst), Some(db)) = (
        flag("--serial-source"),
        flag("--serial-destination"),
        flag("--serial-db"),
    ) {
        return serial(&src, &dst, &db).await;
    }
    let list = |name: &str, default: &str| -> Vec<String> {
        flag(name)
            .unwrap_or_else(|| default.to_string())
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let rtts: Vec<u64> = list("--rtt-ms", "0,10,40")
        .iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()?;
    let rates: Vec<u64> = list("--rates", "200")
        .iter()
        .map(|r| r.parse())
        .collect::<Result<_, _>>()?;
    let appliers = list("--appliers", "mongomirror,serial");
    let seconds: u64 = flag("--seconds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(60);
    let docs: u64 = flag("--docs")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rss_every = flag("--rss-every")
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()?;

    // Without URIs every run gets two fresh servers: a test server's oplog queries slow down as
    // its oplog grows, and runs must not inherit each other's.
    let given = flag("--source").zip(flag("--destination"));
    let launcher = launcher(flag("--secantusd"), "tests/secantus/launch.py");
    let me = std::env::current_exe()?;
    let mirror = me
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("mongomirror"))
        .ok_or("cannot find the mongomirror binary next to this example")?;
    println!(
        "{seconds} s of load per run, {docs} seeded documents\n\n\
         | added RTT ms | applier | ops/s asked | ops/s done | lag p50 ms | lag p99 ms | lag max ms | drain s | identical | CPU s | peak RSS MB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut run = 0;
    for &rtt in &rtts {
        for applier in &appliers {
            for &rate in &rates {
                run += 1;
                let db = format!("lag{run}");
                let mut servers = Vec::new();
                let (source, destination) = match &given {
                    Some(uris) => uris.clone(),
                    None => {
                        servers.push(Server::start(&launcher)?);
                        servers.push(Server::start(&launcher)?);
                        (servers[0].uri(), servers[1].uri())
                    }
                };
                let src = Client::with_uri_str(&source).await?;
                let dst = Client::with_uri_str(&destination).await?;
                let link = Link::round_trip_ms(rtt);
                let proxy = match link.is_direct() {
                    true => None,
                    false => Some(Proxy::start(first_host(&destination)?, link)?),
                };
                let through = match &proxy {
                    Some(proxy) => through_proxy(&destination, &proxy.addr().to_string())?,
                    None => destination.clone(),
                };
                let argv = match applier.as_str() {
                    "mongomirror" => vec![
                        mirror.display().to_string(),
                        "--host".into(),
                        source.clone(),
                        "--destination".into(),
                        through.clone(),
                        "--includeDB".into(),
                        db.clone(),
                        "--bookmarkFile".into(),
                        std::env::temp_dir()
                            .join(format!("lag-bench-{}-{db}.bookmark", std::process::id()))
                            .display()
                            .to_string(),
                    ],
                    "serial" => vec![
                        me.display().to_string(),
                        "--serial-source".into(),
                        source.clone(),
                        "--serial-destination".into(),
                        through.clone(),
                        "--serial-db".into(),
                        db.clone(),
                    ],
                    other => return Err(format!("unknown applier {other}").into()),
                };
                let ready = if applier == "serial" {
                    SERIAL_READY
                } else {
                    MIRROR_READY
                };
                let r = one_run(
                    &src,
                    &dst,
                    &db,
                    docs,
                    applier == "serial",
                    &argv,
                    ready,
                    rate,
                    seconds,
                    rss_every,
                )
                .await?;
                println!(
                    "| {rtt} | {applier} | {rate} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.0} |",
                    r.done_rate,
                    r.p50,
                    r.p99,
                    r.max,
                    r.drain
                        .map_or(format!(">{}", DRAIN_TIMEOUT.as_secs()), |d| format!(
                            "{:.1}",
                            d.as_secs_f64()
                        )),
                    if r.identical { "yes" } else { "NO" },
                    r.usage.cpu_seconds,
                    r.usage.peak_rss_kb as f64 / 1024.0
                );
                src.database(&db).drop().await?;
                dst.database(&db).drop().await?;
                drop(proxy);
                drop(servers);
                if !r.identical && r.drain.is_some() {
                    return Err(format!("{applier} left {db} different from the source").into());
                }
            }
        }
    }
    Ok(())
}

struct RunResult {
    done_rate: f64,
    p50: u64,
    p99: u64,
    max: u64,
    drain: Option<Duration>,
    identical: bool,
    usage: Usage,
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    src: &Client,
    dst: &Client,
    db: &str,
    docs: u64,
    seed_destination: bool,
    argv: &[String],
    ready: &str,
    rate: u64,
    seconds: u64,
    rss_every: Option<Duration>,
) -> Result<RunResult, Error> {
    seed(src, db, docs).await?;
    if seed_destination {
        seed(dst, db, docs).await?;
    }
    let mut child = timed(argv)?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines_tx, lines) = std_mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let waited = Instant::now();
    loop {
        let line = tokio::task::block_in_place(|| lines.recv_timeout(Duration::from_secs(1)));
        match line {
            Ok(line) if line.contains(ready) => break,
            Ok(line) if line.contains("Failed") || line.starts_with("TIME ") => {
                interrupt(&child);
                return Err(format!("{}: {line}", argv[0]).into());
            }
            Ok(_) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("{} exited before it was ready", argv[0]).into())
            }
        }
        if waited.elapsed() > READY_TIMEOUT {
            interrupt(&child);
            return Err(format!("{} was not ready in time", argv[0]).into());
        }
    }

    let clock = dst.database(db).collection::<Document>("clock");
    let started = now_ms();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample(clock.clone(), started, stop_rx.clone()));
    let rss = rss_every.map(|every| tokio::spawn(sample_rss(child.id(), every, stop_rx)));
    let (done, last_clock) = load(src, db, docs, rate, Duration::from_secs(seconds)).await?;
    let load_seconds = (now_ms() - started) as f64 / 1000.0;
    let _ = stop_tx.send(true);
    let mut lags = sampler.await??;
    if let Some(rss) = rss {
        report_rss(&rss.await?);
    }

    let drained = Instant::now();
    let mut drain = None;
    while drained.elapsed() < DRAIN_TIMEOUT {
        if clock_time(&clock).await? >= Some(last_clock) {
            drain = Some(drained.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The clock may arrive before other writes of its batch (writes to different namespaces are
    // not ordered), so the comparison waits, with the applier still running, for the rest.
    let mut identical = false;
    let compared = Instant::now();
    while drain.is_some() && !identical && compared.elapsed() < Duration::from_secs(10) {
        identical = same(src, dst, db).await?;
        if !identical {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    interrupt(&child);
    let mut used = None;
    while let Ok(line) = tokio::task::block_in_place(|| lines.recv()) {
        if line.starts_with("TIME ") {
            used = Some(usage(&line)?);
        }
    }
    child.wait()?;
    let _ = reader.join();

    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() as f64 * q) as usize).min(lags.len() - 1)];
    Ok(RunResult {
        done_rate: done as f64 / load_seconds,
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        drain,
        identical,
        usage: used.ok_or("GNU time printed nothing")?,
    })
}

/// The resident set of the applier (the child of GNU time `time_pid`) every `every` until
/// stopped, as (seconds since the start, MB); each sample is also logged, for a soak's record.
async fn sample_rss(
    time_pid: u32,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(f64, f64)> {
    let started = Instant::now();
    let children = format!("/proc/{time_pid}/task/{time_pid}/children");
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return samples,
        }
        let pid = std::fs::read_to_string(&children).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
        let kb = status.ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        });
        if let Some(kb) = kb {
            let at = started.elapsed().as_secs_f64();
            eprintln!("rss at {at:.0} s: {:.1} MB", kb / 1024.0);
            samples.push((at, kb / 1024.0));
        }
    }
}

/// The RSS series in brief: range, first and last tenth, and the least-squares trend.
fn report_rss(samples: &[(f64, f64)]) {
    if samples.len() < 2 {
        return;
    }
    let n = samples.len() as f64;
    let (mx, my) = (
        samples.iter().map(|s| s.0).sum::<f64>() / n,
        samples.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let sxy: f64 = samples.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = samples.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let tenth = (samples.len() / 10).max(1);
    let mean = |s: &[(f64, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let min = samples.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    let max = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    eprintln!(
        "rss: {} samples, min {min:.1} MB, max {max:.1} MB, first tenth {:.1} MB, last tenth {:.1} MB, trend {:+.2} MB per hour",
        samples.len(),
        mean(&samples[..tenth]),
        mean(&samples[samples.len() - tenth..]),
        sxy / sxx * 3600.0
    );
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The clock time on a side, if written yet.
async fn clock_time(clock: &Collection<Document>) -> Result<Option<i64>, Error> {
    Ok(clock
        .find_one(doc! { "_id": 0 })
        .await?
        .and_then(|d| d.get_i64("t").ok()))
}

/// The lag every [`SAMPLE_EVERY`] until stopped: now minus the newest clock time applied on the
/// destination, or minus the load's start while none of the load's has arrived.
async fn sample(
    clock: Collection<Document>,
    started: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<u64>, Error> {
    let mut lags = Vec::new();
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return Ok(lags),
        }
        let applied = clock_time(&clock).await?.unwrap_or(started).max(started);
        lags.push((now_ms() - applied).max(0) as u64);
    }
}

/// A small deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn body(id: i64) -> Document {
    doc! { "_id": id, "n": 0_i64, "s": "x".repeat(150), "tags": ["a", "b"] }
}

/// `docs` documents in `db.load` (rounded down to a multiple of [`WRITERS`], as each writer
/// owns `docs / WRITERS` of them), and the clock at 0.
async fn seed(client: &Client, db: &str, docs: u64) -> Result<(), Error> {
    let load = client.database(db).collection::<Document>("load");
    let all: Vec<Document> = (0..(docs / WRITERS * WRITERS) as i64).map(body).collect();
    for chunk in all.chunks(1000) {
        load.insert_many(chunk.to_vec()).await?;
    }
    client
        .database(db)
        .collection::<Document>("clock")
        .insert_one(doc! { "_id": 0, "t": 0_i64 })
        .await?;
    Ok(())
}

/// Concurrent writers of the load: each owns the `_id`s congruent to its number.
const WRITERS: u64 = 8;

/// Runs the write load at `rate` operations per second for `length` ([`WRITERS`] writers at
/// `rate / WRITERS` each), with a clock write every [`CLOCK_EVERY`]. Returns the operations done
/// and the last clock time written.
async fn load(
    client: &Client,
    db: &str,
    docs: u64,
    rate: u64,
    length: Duration,
) -> Result<(u64, i64), Error> {
    let clock = client.database(db).collection::<Document>("clock");
    let started = Instant::now();
    // One transaction at a time: SecantusDB 0.7.0b3 can hang two concurrent commits for good.
    let one_txn = tokio::sync::Mutex::new(());
    let one_txn = &one_txn;
    let writers = (0..WRITERS).map(|w| {
        let load = client.database(db).collection::<Document>("load");
        writer(
            client,
            one_txn,
            load,
            w,
            docs,
            rate as f64 / WRITERS as f64,
            started,
            length,
        )
    });
    let clocks = async {
        while started.elapsed() < length {
            let written = clock
                .update_one(doc! { "_id": 0 }, doc! { "$set": { "t": now_ms() } })
                .await;
            tolerate(written.map(drop))?;
            tokio::time::sleep(CLOCK_EVERY).await;
        }
        Ok::<_, Error>(())
    };
    let (done, clocked) = tokio::join!(futures::future::try_join_all(writers), clocks);
    clocked?;
    let last_clock = now_ms();
    clock
        .update_one(doc! { "_id": 0 }, doc! { "$set": { "t": last_clock } })
        .await?;
    Ok((done?.into_iter().sum(), last_clock))
}

/// One writer of the load: `rate` operations per second on the `_id`s `w + WRITERS * j`.
#[allow(clippy::too_many_arguments)]
async fn writer(
    client: &Client,
    one_txn: &tokio::sync::Mutex<()>,
    load: Collection<Document>,
    w: u64,
    docs: u64,
    rate: f64,
    started: Instant,
    length: Duration,
) -> Result<u64, Error> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
    let id = |j: i64| w as i64 + WRITERS as i64 * j;
    // This writer's live `_id`s are id(oldest..next): deletes take the oldest.
    let (mut oldest, mut next) = (0_i64, (docs / WRITERS) as i64);
    let keep = (docs / WRITERS / 2) as i64;
    let mut done = 0_u64;
    while started.elapsed() < length {
        let due = Duration::from_secs_f64(done as f64 / rate);
        tokio::time::sleep_until((started + due).into()).await;
        let random = |rng: &mut Rng| id(oldest + rng.below((next - oldest).max(1) as u64) as i64);
        // Ids advance before the write: a write lost to an outage is skipped, never retried into
        // a duplicate; the comparison at the end is with whatever the source holds.
        let written = match rng.below(20) {
            0..=5 => {
                next += 1;
                load.insert_one(body(id(next - 1))).await.map(drop)
            }
            6..=12 => {
                let n = rng.below(1000) as i64;
                let filter = doc! { "_id": random(&mut rng) };
                load.update_one(filter, doc! { "$set": { "n": n } })
                    .await
                    .map(drop)
            }
            13..=17 if next - oldest > keep => {
                oldest += 1;
                load.delete_one(doc! { "_id": id(oldest - 1) })
                    .await
                    .map(drop)
            }
            13..=17 => {
                next += 1;
                load.insert_one(body(id(next - 1))).await.map(drop)
            }
            _ => {
                let other = random(&mut rng);
                next += 1;
                let _alone = one_txn.lock().await;
                transaction(client, &load, id(next - 1), other).await
            }
        };
        tolerate(written)?;
        done += 1;
    }
    Ok(done)
}

/// A small transaction: an insert and an update.
async fn transaction(
    client: &Client,
    load: &Collection<Document>,
    new: i64,
    other: i64,
) -> mongodb::error::Result<()> {
    let mut session = client.start_session().await?;
    session.start_transaction().await?;
    load.insert_one(body(new)).session(&mut session).await?;
    load.update_one(doc! { "_id": other }, doc! { "$inc": { "n": 1 } })
        .session(&mut session)
        .await?;
    session.commit_transaction().await
}

/// A write that failed for a transient reason (a stalled server on a busy machine: a monitor
/// timeout, a dropped connection) is logged and skipped; any other failure ends the benchmark.
fn tolerate(written: mongodb::error::Result<()>) -> Result<(), Error> {
    match written {
        Err(e)
            if e.contains_label("RetryableWriteError")
                || e.contains_label("TransientTransactionError")
                || matches!(
                    *e.kind,
                    mongodb::error::ErrorKind::ConnectionPoolCleared { .. }
                        | mongodb::error::ErrorKind::Io(_)
                ) =>
        {
            eprintln!("load: a write failed and is skipped: {e}");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Whether `db.load` and `db.clock` hold the same documents, byte for byte, on both sides.
async fn same(src: &Client, dst: &Client, db: &str) -> Result<bool, Error> {
    for coll in ["load", "clock"] {
        let (a, b) = (
            src.database(db).collection::<RawDocumentBuf>(coll),
            dst.database(db).collection::<RawDocumentBuf>(coll),
        );
        let mut a = a.find(doc! {}).sort(doc! { "_id": 1 }).await?;
        let mut b = b.find(doc! {}).sort(doc! { "_id": 1 }).await?;
        loop {
            match (a.try_next().await?, b.try_next().await?) {
                (None, None) => break,
                (x, y) if x != y => return Ok(false),
                _ => {}
            }
        }
    }
    Ok(true)
}

/// The `host:port` of the first host of a `mongodb://` URI.
fn first_host(uri: &str) -> Result<std::net::SocketAddr, Error> {
    use std::net::ToSocketAddrs;
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or("the destination must be a mongodb:// URI to go through the proxy")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority.rsplit('@').next().unwrap_or_default();
    let host = hosts.split(',').next().unwrap_or_default();
    host.to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}").into())
}

/// `uri` with its hosts replaced by `proxy`, connected directly (a driver that discovered the
/// replica set would read the real address from `hello` and go around the proxy).
fn through_proxy(uri: &str, proxy: &str) -> Result<String, Error> {
    let rest = uri
        .strip_prefix("mongodb://")
        .ok_or("not a mongodb:// URI")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority.rfind('@').map_or("", |at| &authority[..=at]);
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let query: Vec<&str> = query
        .split('&')
        .filter(|o| {
            !o.is_empty() && !o.starts_with("directConnection=") && !o.starts_with("replicaSet=")
        })
        .chain(["directConnection=true"])
        .collect();
    Ok(format!(
        "mongodb://{user}{proxy}/{path}?{}",
        query.join("&")
    ))
}

/// mongomirror's way of replaying, through the crate's applier: tail the source oplog from its
/// newest entry, and for each batch the server returns, push every entry into an applier with
/// one writer lane and flush it before reading the next batch.
async fn serial(source: &str, destination: &str, db: &str) -> Result<(), Error> {
    let src = Client::with_uri_str(source).await?;
    let dst = Client::with_uri_str(destination).await?;
    let oplog = src
        .database("local")
        .collection::<RawDocumentBuf>("oplog.rs");
    let newest = oplog
        .find_one(doc! {})
        .sort(doc! { "$natural": -1 })
        .await?
        .ok_or("the source oplog is empty")?;
    let after: Timestamp = newest.get_timestamp("ts")?;
    let filter = NamespaceFilter {
        include_dbs: vec![db.to_string()],
        ..NamespaceFilter::default()
    };
    let options = ApplyOptions {
        writers: 1,
        ..ApplyOptions::default()
    };
    let mut applier = Applier::new(dst, filter, options);
    let mut cursor = oplog
        .find(doc! { "ts": { "$gt": after } })
        .cursor_type(CursorType::TailableAwait)
        // The tool's own cursor settings (`src/oplog/tail.rs`).
        .max_await_time(Duration::from_secs(1))
        .batch_size(5_000)
        .batch()
        .await?;
    eprintln!("{SERIAL_READY}");
    // Stopped by SIGINT, like mongomirror, even when started with SIGINT ignored (a shell's
    // background job): handling it overrides an inherited ignore.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let batch = tokio::select! {
            batch = cursor.try_next() => batch?,
            _ = &mut interrupted => return Ok(()),
        };
        let Some(batch) = batch else { break };
        for entry in batch.doc_slices()? {
            let entry = entry?;
            if let Some(entry) = entry.as_document() {
                applier.push(entry.to_owned()).await?;
            }
        }
        applier.flush().await?;
    }
    Err("the oplog cursor ended".into())
}
