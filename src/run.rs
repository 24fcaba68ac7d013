//! The stages of one run, in order: connect, resume or preflight, initial sync, oplog sync.

use std::collections::HashSet;
use std::sync::Arc;

use mongodb::bson::Timestamp;
use tracing::{error, info, warn};

use crate::bookmark::{self, Bookmark, CatchUp, CopyState, Phase};
use crate::catalog::{self, SourceCollection};
use crate::cli::{Namespace, Options};
use crate::connect::{self, Connected};
use crate::copy;
use crate::copy::resume::{Keeper, Save, Tracker};
use crate::cutover::Control;
use crate::error::Result;
use crate::error::{ExitCode, Failure};
use crate::oplog;
use crate::oplog::catchup::CatchingUp;
use crate::oplog::sync::{self, OplogSync};
use crate::oplog::tail;
use crate::preflight;
use crate::shutdown::{self, Shutdown};
use crate::status::{Stage, Status};

/// Runs mongomirror with validated options.
///
/// With `--httpStatusPort`, a failure is reported on the status endpoint and the process keeps
/// serving it until it is stopped, as mongomirror does; the exit code is then the failure's.
pub async fn run(options: Options) -> Result<()> {
    crate::retry::set_max_outage(options.max_outage);
    if !options.verify {
        check_writable(&options)?;
    }
    let shutdown = shutdown::on_signals();
    let status = Status::shared();
    let cutover = Control::shared();
    crate::cutover::on_sigusr1(cutover.clone());
    let server = match &options.http_status {
        Some((host, port)) => {
            Some(crate::status::serve(host, *port, status.clone(), cutover.clone()).await?)
        }
        None => None,
    };
    let outcome = stages(&options, &status, &shutdown, &cutover).await;
    let outcome = keep_serving_a_failure(&options, &status, &shutdown, outcome).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    outcome
}

/// Fails (exit code 2, nothing contacted) unless the bookmark file's directory and the spool
/// directory can be written: a run that cannot save its progress must not start.
fn check_writable(options: &Options) -> Result<()> {
    let bookmark_dir = match options.bookmark_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let spool = sync::spool_dir(options);
    for (dir, flag, create) in [
        (&bookmark_dir, "--bookmarkFile", false),
        (&spool, "--oplogPath", true),
    ] {
        let probe = dir.join(".mongomirror-write-test");
        let written = (if create {
            std::fs::create_dir_all(dir)
        } else {
            Ok(())
        })
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe));
        if let Err(e) = written {
            return Err(crate::error::Failure::usage(format!(
                "cannot write in '{}', where {flag} keeps its files",
                dir.display()
            ))
            .cause(e)
            .hint(format!(
                "point {flag} at a writable directory with free space"
            )));
        }
    }
    Ok(())
}

/// With `--httpStatusPort`, a failure is reported on the endpoint and served until a stop, as
/// mongomirror does; a verification verdict (exit code 6) ends the run at once.
async fn keep_serving_a_failure(
    options: &Options,
    status: &Status,
    shutdown: &Shutdown,
    outcome: Result<()>,
) -> Result<()> {
    match outcome {
        Err(failure) if options.http_status.is_some() && failure.exit != ExitCode::Differs => {
            status.set_error(&failure);
            for line in failure.lines() {
                error!("{}", line.trim_start());
            }
            info!("--httpStatusPort is set: the error is reported there; stop mongomirror to exit");
            shutdown.wait().await;
            Err(failure)
        }
        other => other,
    }
}

async fn stages(
    options: &Options,
    status: &Arc<Status>,
    shutdown: &Shutdown,
    cutover: &Arc<Control>,
) -> Result<()> {
    info!("mongomirror-rs version {}", env!("CARGO_PKG_VERSION"));
    for w in &options.warnings {
        warn!("{w}");
    }
    info!("source: {}", options.source.address.display());
    info!("destination: {}", options.destination.address.display());

    let source = connect::connect_source(&options.source).await?;
    let set_name = source.set_name().unwrap_or_default().to_string();
    info!(
        "connected to the source: replica set '{set_name}', MongoDB {}",
        source.version
    );
    // Every copy worker keeps several inserts in flight, one connection each; a few more for
    // the index builds and the status checks.
    let pool = options
        .num_parallel_collections
        .saturating_mul(crate::copy::INSERTS_IN_FLIGHT as u32)
        .saturating_add(4);
    let destination = connect::connect_destination(&options.destination, pool).await?;
    info!(
        "connected to the destination: {}, MongoDB {}",
        destination
            .set_name()
            .map(|s| format!("replica set '{s}'"))
            .unwrap_or_else(|| "not a replica set".to_string()),
        destination.version
    );

    if options.verify {
        return crate::verify::run(&source.client, &destination.client, options).await;
    }
    let saved = if options.force_dump {
        info!("--forceDump: ignoring any bookmark and starting a full initial sync");
        None
    } else {
        bookmark::load(&options.bookmark_file)?
    };
    if let Some(b) = &saved {
        bookmark::check_source(&options.bookmark_file, b, &set_name)?;
    }
    let run = Run {
        options,
        status: status.clone(),
        shutdown: shutdown.clone(),
        cutover: cutover.clone(),
        source,
        destination,
        set_name,
    };
    match saved {
        Some(b) if b.phase == Phase::OplogSync => run.resume(&b).await,
        Some(b) => match b.copy.clone() {
            Some(copy) => run.initial_sync(Some((b.timestamp(), copy))).await,
            None => {
                warn!(
                    "the initial sync started at {}:{} was interrupted, and its bookmark (written by an older build) does not say how far it got: starting over",
                    b.ts.t, b.ts.i
                );
                run.initial_sync(None).await
            }
        },
        None => run.initial_sync(None).await,
    }
}

/// Everything the stages after connecting share.
struct Run<'a> {
    options: &'a Options,
    status: Arc<Status>,
    shutdown: Shutdown,
    cutover: Arc<Control>,
    source: Connected,
    destination: Connected,
    set_name: String,
}

impl Run<'_> {
    /// Opens the tail after `from`; from then on every source write reaches the spool.
    async fn open_tail(&self, from: Timestamp) -> Result<OplogSync> {
        let dir = sync::spool_dir(self.options);
        OplogSync::begin(
            &self.source.client,
            from,
            &dir,
            self.shutdown.clone(),
            self.status.clone(),
        )
        .await
    }

    /// Replays the spool, then live entries, until stopped; first catching up with the copy
    /// when `catch_up` says so.
    async fn oplog_sync(&self, sync: OplogSync, catch_up: Option<CatchUp>) -> Result<()> {
        self.status
            .set_stage(Stage::OplogSync, "applying oplog entries");
        let catching = catch_up.map(|mark| {
            CatchingUp::new(mark, self.source.client.clone(), &self.destination.version)
        });
        sync.run(
            &self.source.client,
            self.destination.client.clone(),
            self.options,
            &self.set_name,
            catching,
            &self.cutover,
        )
        .await
    }

    fn save(&self, phase: Phase, ts: Timestamp, catch_up: Option<CatchUp>) -> Result<()> {
        let mut saved = Bookmark::new(&self.set_name, phase, ts, None);
        saved.catch_up = catch_up;
        bookmark::save(&self.options.bookmark_file, &saved)
    }

    /// Resumes oplog sync from a bookmark: no copy.
    async fn resume(&self, saved: &Bookmark) -> Result<()> {
        let from = saved.timestamp();
        tail::check_position(&self.source.client, from).await?;
        if self.options.preflight_only {
            info!(
                "--preflightOnly: the bookmark at {}:{} can be resumed; nothing was written",
                from.time, from.increment
            );
            return Ok(());
        }
        info!(
            "resuming oplog sync from the bookmark at {}:{}; no initial sync",
            from.time, from.increment
        );
        if let Some(c) = &saved.catch_up {
            info!(
                "oplog sync is still catching up with the initial sync, up to {}:{}",
                c.until.t, c.until.i
            );
        }
        let sync = self.open_tail(from).await?;
        self.oplog_sync(sync, saved.catch_up.clone()).await
    }

    /// Preflight, then initial sync while the oplog is spooled, then oplog sync. `resume` is
    /// the starting point and progress of an initial sync that stopped: what it copied stays,
    /// the rest is copied, and the oplog is replayed from its starting point as an
    /// uninterrupted run would.
    async fn initial_sync(&self, resume: Option<(Timestamp, CopyState)>) -> Result<()> {
        let (source, destination, options) = (&self.source, &self.destination, self.options);
        if let Some((start, copy)) = &resume {
            tail::check_position(&source.client, *start).await?;
            let done = copy.collections.iter().filter(|c| c.done).count();
            info!(
                "resuming the initial sync started at {}:{}: {done} of {} collections are copied; the others go on from where they stopped",
                start.time,
                start.increment,
                copy.collections.len()
            );
        }
        let (start_ts, plan) = self
            .start_and_plan(resume.as_ref().map(|(start, _)| *start))
            .await?;
        log_plan(&plan);
        // The namespaces a resumed copy planned are this migration's own on the destination.
        let ours: HashSet<Namespace> = resume
            .iter()
            .flat_map(|(_, c)| &c.namespaces)
            .filter_map(|ns| Namespace::parse(ns).ok())
            .collect();
        let catalog_created = resume.as_ref().is_some_and(|(_, c)| c.catalog_created);
        let conflicts = if options.drop || catalog_created {
            Vec::new()
        } else {
            copy::conflicts(&destination.client, &plan, &ours).await?
        };
        preflight::run(source, destination, options, &plan, conflicts).await?;
        if options.preflight_only {
            info!("--preflightOnly: stopping before anything is written");
            return Ok(());
        }
        if self.shutdown.requested() {
            info!("stopped by a signal before anything was written to the destination");
            return Ok(());
        }

        // The tail opens before the first document is read, so the two halves join without a gap.
        let sync = self.open_tail(start_ts).await?;
        let mut state = resume.map(|(_, c)| c).unwrap_or_default();
        for c in &plan {
            let ns = c.ns.to_string();
            if !state.namespaces.contains(&ns) {
                state.namespaces.push(ns);
            }
        }
        let tracker = Tracker::new(state);
        let save: Save = Arc::new({
            let (path, set_name) = (options.bookmark_file.clone(), self.set_name.clone());
            move |copy: &CopyState| {
                let mut saved = Bookmark::new(&set_name, Phase::InitialSync, start_ts, None);
                saved.copy = Some(copy.clone());
                bookmark::save(&path, &saved)
            }
        });
        tracker.save(&save)?;
        self.status
            .set_stage(Stage::InitialSync, "copying collections");
        let keeper = Keeper {
            tracker: tracker.clone(),
            save: save.clone(),
            ours,
        };
        let copied = tokio::select! {
            copied = copy::run(source, destination, options, &plan, start_ts, &self.status, &keeper) => copied?,
            _ = self.shutdown.wait() => {
                tracker.save(&save)?;
                info!("stopped during the initial sync: its progress is saved, and the next start goes on from there");
                return Ok(());
            }
        };
        // Replay up to the newest entry of now may meet documents the copy read in a later
        // state: that is the catch-up (see oplog::catchup).
        let catch_up = CatchUp {
            until: oplog::newest_timestamp(&source.client).await?.into(),
            relaxed_indexes: copied.relaxed_indexes,
        };
        // From here a restart resumes: replaying from the starting point is idempotent.
        self.save(Phase::OplogSync, copied.start_ts, Some(catch_up.clone()))?;
        self.oplog_sync(sync, Some(catch_up)).await
    }

    /// The copy's starting point and what it copies.
    ///
    /// The starting point comes first: anything written after it, including to collections the
    /// survey does or does not see, is in the oplog the next stage replays. But a collection
    /// renamed in between is seen under its new name only, while replay expects it under the
    /// old one: a fresh start then takes a new starting point and surveys again.
    async fn start_and_plan(
        &self,
        resume: Option<Timestamp>,
    ) -> Result<(Timestamp, Vec<SourceCollection>)> {
        let (source, options) = (&self.source, self.options);
        let mut surveys = 0;
        loop {
            let read = match resume {
                Some(start) => Ok(start),
                None => oplog::newest_timestamp(&source.client).await,
            };
            let read = match read {
                Ok(ts) => catalog::survey(
                    &source.client,
                    &options.filter,
                    options.coll_stats_threshold,
                )
                .await
                .map(|plan| (ts, plan)),
                Err(e) => Err(e),
            };
            let (start, plan) = match read {
                Ok(read) => read,
                Err(e) => {
                    return Err(preflight::explain_read_failure(source, &self.destination, e).await)
                }
            };
            if resume.is_some() {
                return Ok((start, plan));
            }
            let Some((from, to)) = copy::renamed_since(&source.client, start, &plan).await? else {
                return Ok((start, plan));
            };
            surveys += 1;
            if surveys == MOST_SURVEYS {
                return Err(Failure::runtime(format!(
                    "collections keep being renamed on the source while its catalog is listed ({from} to {to} last)"
                ))
                .hint("start mongomirror again when renameCollection and $out pause on the source"));
            }
            info!("{from} was renamed to {to} on the source while its catalog was listed: listing it again from a new starting point");
        }
    }
}

/// The most times the source catalog is listed for a fresh start (see `start_and_plan`).
const MOST_SURVEYS: usize = 5;

fn log_plan(plan: &[SourceCollection]) {
    let (mut documents, mut bytes) = (0u64, 0u64);
    for c in plan {
        documents += c.documents;
        bytes += c.bytes;
        match c.kind.as_str() {
            "collection" => info!(
                "to copy: {}: {} documents, {} bytes",
                c.ns, c.documents, c.bytes
            ),
            kind => info!("to create: {kind} {}", c.ns),
        }
    }
    info!(
        "{} namespaces to copy: {documents} documents, {bytes} bytes",
        plan.len()
    );
}
