//! Oplog sync: the live half of mongomirror.
//!
//! The tail reader opens at the starting point *before* the initial copy begins and spools every
//! source entry from then on. Once the copy is done, the applier replays the spool, then keeps up
//! with live entries. The bookmark is saved only at positions the applier reports as fully
//! acknowledged (and never inside an open transaction), and the lag line is logged every
//! [`LAG_INTERVAL`], reaching `0s` when caught up, idle source included.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::Timestamp;
use mongodb::Client;
use tracing::{info, warn};

use super::apply::{Applier, ApplyOptions, DEFAULT_WRITERS, MAX_BATCH_BYTES};
use super::catchup::CatchingUp;
use super::spool::{Spool, SpoolStats};
use super::tail::{self, ReadPosition};
use crate::bookmark::{self, Bookmark, CatchUp, Phase};
use crate::cli::Options;
use crate::cutover::{self, Control};
use crate::error::{Failure, Result};
use crate::indexes::SpecRules;
use crate::shutdown::Shutdown;
use crate::status::{AppliedOps, Stage, Status};

/// How often `Current lag from source: Ns` is logged.
pub const LAG_INTERVAL: Duration = Duration::from_secs(2);
/// The least time between two bookmark saves while entries flow.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// Where the spool lives: `--oplogPath`, else a directory beside the bookmark file.
pub fn spool_dir(options: &Options) -> PathBuf {
    if let Some(p) = &options.oplog_path {
        return p.clone();
    }
    let mut name = options
        .bookmark_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".spool");
    options.bookmark_file.with_file_name(name)
}

/// A running tail: the reader task and the spool it fills.
pub struct OplogSync {
    spool: Arc<Spool>,
    reader: tokio::task::JoinHandle<Result<()>>,
    read: ReadPosition,
    start: Timestamp,
    shutdown: Shutdown,
    status: Arc<Status>,
}

impl OplogSync {
    /// Opens the tail after `start` and begins spooling. Once this returns, no source write
    /// after `start` can be missed.
    pub async fn begin(
        source: &Client,
        start: Timestamp,
        dir: &Path,
        shutdown: Shutdown,
        status: Arc<Status>,
    ) -> Result<Self> {
        let spool = Arc::new(Spool::create(dir)?);
        let read = ReadPosition::default();
        let reader = tail::start(
            source.clone(),
            start,
            spool.clone(),
            read.clone(),
            shutdown.clone(),
        )
        .await?;
        info!(
            spool = %dir.display(),
            "oplog sync: reading the source oplog from timestamp {}:{}; entries wait in {} until they are applied",
            start.time,
            start.increment,
            dir.display()
        );
        Ok(OplogSync {
            spool,
            reader,
            read,
            start,
            shutdown,
            status,
        })
    }

    /// The spool's current size.
    pub fn spool_stats(&self) -> SpoolStats {
        self.spool.stats()
    }

    /// Applies the spool, then live entries, until a stop is requested, a guided cutover ends
    /// ([`crate::cutover`]: exit 0 when the destination verifies identical, 6 when not), or
    /// something fails.
    pub async fn run(
        mut self,
        source: &Client,
        destination: Client,
        options: &Options,
        set_name: &str,
        catch_up: Option<CatchingUp>,
        cutover: &Control,
    ) -> Result<()> {
        let stats = self.spool.stats();
        let spooled = stats.disk_entries + stats.memory_entries as u64;
        info!(
            spool_entries = spooled,
            spool_bytes = stats.disk_bytes,
            "oplog sync: applying the {spooled} entries spooled during the copy ({} bytes on disk), then new entries as they arrive",
            stats.disk_bytes
        );
        let applied = Arc::new(Mutex::new(self.start));
        let lag = tokio::spawn(report_lag(
            source.clone(),
            applied.clone(),
            self.spool.clone(),
            self.read.clone(),
            self.shutdown.clone(),
            self.status.clone(),
        ));
        let apply_options = ApplyOptions {
            batch_entries: options.oplog_batch_size as usize,
            writers: DEFAULT_WRITERS,
            indexes: (!options.no_index_restore).then_some(SpecRules {
                ttl_without_expiry: options.ttl_without_expiry,
            }),
        };
        let mut applier = Applier::new(destination.clone(), options.filter.clone(), apply_options);
        applier.resume_after(self.start);
        if let Some(catching) = catch_up {
            applier.catch_up(catching);
        }
        let saver = Arc::new(Mutex::new(Saver {
            path: options.bookmark_file.clone(),
            set_name: set_name.to_string(),
            last: None,
            at: None,
            status: self.status.clone(),
        }));
        applier.on_checkpoint(Box::new({
            let saver = saver.clone();
            move |cp, catch_up| lock(&saver).save(cp.ts, cp.term, catch_up)
        }));
        let mut requests = cutover.listen();
        let outcome = self
            .apply(
                &mut applier,
                apply_options.batch_entries,
                &applied,
                &saver,
                source,
                requests.as_mut(),
            )
            .await;
        lag.abort();
        // Whatever happened, keep the furthest safe position.
        if let Some(cp) = applier.checkpoint() {
            lock(&saver).save(cp.ts, cp.term, applier.catch_up_mark())?;
        }
        let s = applier.stats();
        info!(
            entries = s.entries,
            writes = s.writes,
            commands = s.commands,
            transactions = s.transactions,
            skipped = s.skipped,
            missing = s.missing,
            conflicts = s.conflicts,
            "oplog sync stopped after reading {} entries: applied {} writes, {} commands and {} transactions; \
             skipped {} entries with no effect here and {} updates of documents missing on the destination; \
             {} writes met a duplicate key while catching up with the copy",
            s.entries, s.writes, s.commands, s.transactions, s.skipped, s.missing, s.conflicts
        );
        match outcome? {
            Ended::Stopped => Ok(()),
            Ended::CutOver(request) => {
                self.reader.abort();
                self.cut_over(request, source, &destination, options).await
            }
        }
    }

    /// The end of a guided cutover: tailing has stopped at a quiet, fully applied source and
    /// the bookmark is saved; verify (if asked), print and hand over the report.
    async fn cut_over(
        &self,
        request: cutover::Request,
        source: &Client,
        destination: &Client,
        options: &Options,
    ) -> Result<()> {
        let at = self.read.get().unwrap_or(self.start);
        info!(
            "cutover: the source has been quiet and every entry up to {}:{} is applied; tailing stopped",
            at.time, at.increment
        );
        if !request.verify {
            let _ = request.reply.send(cutover::Outcome::Done(None));
            return Ok(());
        }
        self.status
            .set_stage(Stage::Cutover, "verifying the destination");
        let settings = crate::verify::Settings::from_options(options);
        let report =
            match crate::verify::compare(source, destination, &settings, self.status.clone()).await
            {
                Ok(report) => report,
                Err(failure) => {
                    let _ = request
                        .reply
                        .send(cutover::Outcome::Failed(failure.message.clone()));
                    return Err(failure);
                }
            };
        if let Some(path) = &options.verify_report {
            crate::verify::write_report(path, &report)?;
        }
        let verdict = crate::verify::finish(&report);
        let _ = request.reply.send(cutover::Outcome::Done(Some(report)));
        verdict
    }

    /// Feeds the applier in batches of `batch_entries` (its own flush size, so that one spool
    /// batch is one destination round) and saves the bookmark as checkpoints advance; meanwhile
    /// takes cutover requests and ends when one finds the source quiet.
    async fn apply(
        &mut self,
        applier: &mut Applier,
        batch_entries: usize,
        applied: &Mutex<Timestamp>,
        saver: &Mutex<Saver>,
        source: &Client,
        mut requests: Option<&mut cutover::Listener<'_>>,
    ) -> Result<Ended> {
        let mut reader_done = false;
        let mut pending: Option<Pending> = None;
        let mut tick = tokio::time::interval(CUTOVER_CHECK);
        loop {
            // A stop ends replay at a batch boundary, however long the spooled backlog.
            if self.shutdown.requested() {
                if let Some(p) = pending.take() {
                    p.abandon("mongomirror is stopping".into());
                }
                return Ok(Ended::Stopped);
            }
            let waiting = pending.is_some();
            let batch = tokio::select! {
                batch = self.spool.next_batch(batch_entries, MAX_BATCH_BYTES, self.shutdown.wait()) => batch?,
                joined = &mut self.reader, if !reader_done => {
                    reader_done = true;
                    match joined {
                        Ok(Ok(())) => continue,
                        Ok(Err(failure)) => return Err(failure),
                        Err(e) => return Err(Failure::runtime("the oplog reader stopped unexpectedly").cause(e)),
                    }
                }
                request = next_request(&mut requests), if !waiting => {
                    if let Some(request) = request {
                        info!(
                            "cutover requested: waiting until the source has had no writes in scope for {}s (at most {}s)",
                            request.quiet.as_secs(),
                            request.timeout.as_secs()
                        );
                        self.status.set_stage(Stage::Cutover, "waiting for a quiet source");
                        pending = Some(Pending::new(request, applier.stats().in_scope));
                    }
                    continue;
                }
                _ = tick.tick(), if waiting => Vec::new(),
            };
            if !batch.is_empty() {
                self.apply_batch(applier, batch, applied, saver).await?;
            }
            let Some(p) = pending.as_mut() else {
                continue;
            };
            match p.check(applier, &self.spool, &self.read, source).await? {
                Check::Waiting => {}
                Check::Quiet => {
                    let request = pending.take().map(|p| p.request);
                    if let (Some(request), Some(cp)) = (request, applier.checkpoint()) {
                        lock(saver).save(cp.ts, cp.term, applier.catch_up_mark())?;
                        return Ok(Ended::CutOver(request));
                    }
                }
                Check::TimedOut(why) => {
                    warn!("cutover abandoned: {why}; oplog sync goes on");
                    if let Some(p) = pending.take() {
                        p.abandon(why);
                    }
                    self.status
                        .set_stage(Stage::OplogSync, "applying oplog entries");
                }
            }
        }
    }

    /// Applies one spool batch and reports the progress.
    async fn apply_batch(
        &mut self,
        applier: &mut Applier,
        batch: Vec<mongodb::bson::RawDocumentBuf>,
        applied: &Mutex<Timestamp>,
        saver: &Mutex<Saver>,
    ) -> Result<()> {
        for entry in batch {
            applier.push(entry).await.map_err(Failure::from)?;
        }
        applier.flush().await.map_err(Failure::from)?;
        if self.spool.is_empty() {
            applier.settle().await.map_err(Failure::from)?;
        }
        self.status.set_catch_up(
            applier
                .catch_up_mark()
                .map(|mark| (mark, applier.conflicts_waiting())),
        );
        let s = applier.stats();
        self.status.set_applied(AppliedOps {
            writes: s.writes,
            commands: s.commands,
            transactions: s.transactions,
            skipped: s.skipped,
            missing: s.missing,
        });
        if let Some(cp) = applier.checkpoint() {
            *applied.lock().unwrap_or_else(|e| e.into_inner()) = cp.ts;
            self.status.set_positions(Some(cp.ts), None, None);
            let mut saver = lock(saver);
            if saver.due() {
                saver.save(cp.ts, cp.term, applier.catch_up_mark())?;
            }
        }
        Ok(())
    }
}

/// How often a pending cutover checks whether the source is quiet.
const CUTOVER_CHECK: Duration = Duration::from_millis(250);

/// How oplog sync ended.
enum Ended {
    /// A stop was requested.
    Stopped,
    /// A cutover found the source quiet: tailing must stop and the destination be verified.
    CutOver(cutover::Request),
}

async fn next_request(
    requests: &mut Option<&mut cutover::Listener<'_>>,
) -> Option<cutover::Request> {
    match requests {
        Some(listener) => listener.next().await,
        None => std::future::pending().await,
    }
}

/// A cutover waiting for a quiet source.
struct Pending {
    request: cutover::Request,
    deadline: Instant,
    /// The in-scope operation count when it last moved, and when.
    seen: u64,
    quiet_since: Instant,
}

/// What a check of a pending cutover found.
enum Check {
    Waiting,
    Quiet,
    TimedOut(String),
}

impl Pending {
    fn new(request: cutover::Request, in_scope: u64) -> Self {
        let now = Instant::now();
        Pending {
            deadline: now + request.timeout,
            request,
            seen: in_scope,
            quiet_since: now,
        }
    }

    /// Quiet means: no operation in scope applied for the requested time, nothing left to
    /// apply, the reader at the source's newest entry, and catch-up with the copy over.
    async fn check(
        &mut self,
        applier: &Applier,
        spool: &Spool,
        read: &ReadPosition,
        source: &Client,
    ) -> Result<Check> {
        let in_scope = applier.stats().in_scope;
        if in_scope != self.seen {
            (self.seen, self.quiet_since) = (in_scope, Instant::now());
        }
        if Instant::now() >= self.deadline {
            return Ok(Check::TimedOut(format!(
                "the source was not quiet for {}s within {}s",
                self.request.quiet.as_secs(),
                self.request.timeout.as_secs()
            )));
        }
        if self.quiet_since.elapsed() < self.request.quiet
            || !spool.is_empty()
            || applier.catch_up_mark().is_some()
        {
            return Ok(Check::Waiting);
        }
        let newest = crate::oplog::newest_timestamp(source).await?;
        Ok(if read.get().is_some_and(|r| r >= newest) {
            Check::Quiet
        } else {
            Check::Waiting
        })
    }

    fn abandon(self, why: String) {
        let _ = self.request.reply.send(cutover::Outcome::Abandoned(why));
    }
}

fn lock(saver: &Mutex<Saver>) -> std::sync::MutexGuard<'_, Saver> {
    saver.lock().unwrap_or_else(|e| e.into_inner())
}

/// Saves oplog-sync bookmarks: while entries flow at most every [`BOOKMARK_INTERVAL`], and
/// always around DDL commands (see [`Applier::on_checkpoint`]); unchanged ones are skipped.
struct Saver {
    path: PathBuf,
    set_name: String,
    last: Option<(Timestamp, Option<CatchUp>)>,
    at: Option<Instant>,
    status: Arc<Status>,
}

impl Saver {
    fn due(&self) -> bool {
        self.at.is_none_or(|t| t.elapsed() >= BOOKMARK_INTERVAL)
    }

    fn save(&mut self, ts: Timestamp, term: Option<i64>, catch_up: Option<CatchUp>) -> Result<()> {
        let state = (ts, catch_up);
        if self.last.as_ref() == Some(&state) {
            return Ok(());
        }
        let mut saved = Bookmark::new(&self.set_name, Phase::OplogSync, ts, term);
        saved.catch_up = state.1.clone();
        bookmark::save(&self.path, &saved)?;
        self.last = Some(state);
        self.at = Some(Instant::now());
        self.status.bookmark_saved();
        Ok(())
    }
}

/// Logs `Current lag from source: Ns` every [`LAG_INTERVAL`]: the newest source entry's time
/// minus the last applied entry's time.
async fn report_lag(
    source: Client,
    applied: Arc<Mutex<Timestamp>>,
    spool: Arc<Spool>,
    read: ReadPosition,
    shutdown: Shutdown,
    status: Arc<Status>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LAG_INTERVAL) => {}
            _ = shutdown.wait() => return,
        }
        // The reader's position stands in when the source cannot be asked right now.
        let newest = match crate::oplog::newest_timestamp(&source).await {
            Ok(ts) => Some(ts),
            Err(_) => read.get(),
        };
        let applied = *applied.lock().unwrap_or_else(|e| e.into_inner());
        let lag = newest.map_or(0, |n| lag_seconds(n, applied));
        // The status first: whoever reads the line and then asks the endpoint sees this lag.
        status.set_lag(lag);
        status.set_positions(Some(applied), newest, read.last_write());
        info!(lag, "Current lag from source: {lag}s");
        let s = spool.stats();
        status.set_spool_bytes(s.disk_bytes);
        if s.disk_entries > 0 {
            info!(
                spool_entries = s.disk_entries,
                spool_bytes = s.disk_bytes,
                "oplog sync: {} entries ({} bytes) wait in the on-disk spool to be applied",
                s.disk_entries,
                s.disk_bytes
            );
        }
    }
}

/// Whole seconds between the newest source entry and the last applied one (0 when caught up).
pub fn lag_seconds(newest: Timestamp, applied: Timestamp) -> u32 {
    if newest <= applied {
        0
    } else {
        newest.time.saturating_sub(applied.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    #[test]
    fn lag_is_whole_seconds_and_zero_when_caught_up() {
        assert_eq!(lag_seconds(ts(100, 5), ts(100, 5)), 0);
        assert_eq!(lag_seconds(ts(100, 9), ts(100, 5)), 0);
        assert_eq!(lag_seconds(ts(106, 1), ts(100, 5)), 6);
        assert_eq!(lag_seconds(ts(90, 1), ts(100, 5)), 0);
    }
}
