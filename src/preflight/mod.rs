//! Preflight: every check that can stop a migration, run before anything is written.
//!
//! Each check is one small function that returns the problems it found, each with what to do
//! about it. All checks run; all problems are reported together in one failure with the
//! preflight exit code, so an operator fixes everything in one round. Checks that only deserve
//! a warning (a short oplog window) log it and let the run go on.

mod checks;

pub use checks::{
    check_geo_haystack, check_privileges, check_time_series, check_ttl, check_versions,
    ttl_restore_commands, IndexInfo, Problem, Version,
};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Client;
use tracing::{info, warn};

use crate::catalog::SourceCollection;
use crate::cli::{Options, Side};
use crate::connect::Connected;
use crate::error::{ExitCode, Failure, Result};

/// Reads a deployment's featureCompatibilityVersion (`None` when the server does not say).
pub async fn fcv(client: &Client) -> Option<String> {
    let reply = client
        .database("admin")
        .run_command(doc! { "getParameter": 1, "featureCompatibilityVersion": 1 })
        .await
        .ok()?;
    let fcv = reply.get_document("featureCompatibilityVersion").ok()?;
    fcv.get_str("version").ok().map(str::to_string)
}

async fn connection_status(client: &Client) -> Result<Document> {
    client
        .database("admin")
        .run_command(doc! { "connectionStatus": 1, "showPrivileges": true })
        .await
        .map_err(|e| {
            Failure::runtime("cannot read the user's privileges (connectionStatus)").cause(e)
        })
}

/// The index specs of every collection in the plan.
pub async fn source_indexes(source: &Client, plan: &[SourceCollection]) -> Result<Vec<IndexInfo>> {
    let mut out = Vec::new();
    for c in plan.iter().filter(|c| c.kind == "collection") {
        let specs: Vec<Document> = source
            .database(&c.ns.db)
            .collection::<Document>(&c.ns.coll)
            .list_indexes()
            .await
            .map_err(|e| Failure::runtime(format!("cannot list the indexes of {}", c.ns)).cause(e))?
            .with_type::<Document>()
            .try_collect()
            .await
            .map_err(|e| {
                Failure::runtime(format!("cannot list the indexes of {}", c.ns)).cause(e)
            })?;
        out.extend(specs.into_iter().map(|spec| IndexInfo {
            ns: c.ns.clone(),
            spec,
        }));
    }
    Ok(out)
}

/// Privilege problems of both users (empty when access control is off or the roles suffice).
pub async fn privilege_problems(
    source: &Connected,
    destination: &Connected,
) -> Result<Vec<Problem>> {
    let mut out = check_privileges(Side::Source, &connection_status(&source.client).await?);
    out.extend(check_privileges(
        Side::Destination,
        &connection_status(&destination.client).await?,
    ));
    Ok(out)
}

/// When the source cannot even be read (its oplog or catalog), says whether missing privileges
/// are why: they are reported as a preflight failure, with the read error as one more cause.
pub async fn explain_read_failure(
    source: &Connected,
    destination: &Connected,
    error: Failure,
) -> Failure {
    match privilege_problems(source, destination).await {
        Ok(problems) if !problems.is_empty() => {
            let mut failure = report(problems);
            failure.causes.push(error.message);
            failure
        }
        _ => error,
    }
}

/// Runs every check; fails with all problems at once.
///
/// `conflicts` are the destination namespaces that would be overwritten (the copy stage finds
/// them); they are reported here with everything else.
pub async fn run(
    source: &Connected,
    destination: &Connected,
    options: &Options,
    plan: &[SourceCollection],
    conflicts: Vec<String>,
) -> Result<()> {
    let mut problems = Vec::new();
    let (src_fcv, dst_fcv) = tokio::join!(fcv(&source.client), fcv(&destination.client));
    let src_version = Version::parse(&source.version);
    let dst_version = Version::parse(&destination.version);
    info!(
        "preflight: source MongoDB {} (FCV {}), destination MongoDB {} (FCV {})",
        source.version,
        src_fcv.as_deref().unwrap_or("unknown"),
        destination.version,
        dst_fcv.as_deref().unwrap_or("unknown")
    );
    problems.extend(check_versions(
        src_version,
        dst_version,
        src_fcv.as_deref(),
        dst_fcv.as_deref(),
    ));
    problems.extend(privilege_problems(source, destination).await?);
    problems.extend(check_time_series(plan));
    let indexes = source_indexes(&source.client, plan).await?;
    problems.extend(check_ttl(&indexes, options.ttl_without_expiry));
    problems.extend(check_geo_haystack(&indexes, dst_version));
    if !conflicts.is_empty() {
        problems.push(Problem::new(
            format!("the destination already holds namespaces to copy: {}", conflicts.join(", ")),
            "pass --drop to drop exactly these namespaces first, or leave them out with --includeNamespace/--excludeNamespace",
        ));
    }
    if options.ttl_without_expiry {
        let commands = ttl_restore_commands(&indexes);
        if !commands.is_empty() {
            warn!("--ttlWithoutExpiry: TTL indexes are built without expireAfterSeconds; at cutover, restore them with:");
            for c in commands {
                warn!("  {c}");
            }
        }
    }
    warn_about_oplog_window(source, plan).await;
    if problems.is_empty() {
        info!("preflight: all checks passed");
        return Ok(());
    }
    Err(report(problems))
}

/// One failure listing every problem with its fix. A single problem is the message itself.
fn report(mut problems: Vec<Problem>) -> Failure {
    if problems.len() == 1 {
        let p = problems.remove(0);
        return Failure::new(ExitCode::Preflight, format!("preflight: {}", p.what))
            .cause("nothing was written")
            .hint(p.fix);
    }
    let mut failure = Failure::new(
        ExitCode::Preflight,
        format!(
            "preflight found {} problems; nothing was written",
            problems.len()
        ),
    );
    for p in problems {
        failure = failure.cause(format!("{} (fix: {})", p.what, p.fix));
    }
    failure
        .hint("fix every problem listed, then run again; --preflightOnly repeats just these checks")
}

/// Warns when the source oplog's time span looks short next to the estimated copy time.
///
/// The spool makes a rollover during the copy harmless, but a stop of mongomirror longer than
/// the window cannot be resumed, so the operator should know the window.
async fn warn_about_oplog_window(source: &Connected, plan: &[SourceCollection]) {
    let (Ok(oldest), Ok(newest)) = (
        crate::oplog::oldest_timestamp(&source.client).await,
        crate::oplog::newest_timestamp(&source.client).await,
    ) else {
        return;
    };
    let window = u64::from(newest.time.saturating_sub(oldest.time));
    let bytes: u64 = plan.iter().map(|c| c.bytes).sum();
    let rate = measure_read_rate(&source.client, plan).await;
    let estimate = rate
        .filter(|r| *r > 0.0)
        .map(|r| (bytes as f64 / r).ceil() as u64);
    let shown = estimate.map_or("unknown".to_string(), |e| format!("about {e}s"));
    info!("preflight: the source oplog spans {window}s; the copy of {bytes} bytes should take {shown}");
    if estimate.is_some_and(|e| window < e.saturating_mul(2)) {
        warn!(
            "the source oplog window ({window}s) is short next to the copy time ({shown}): the spool covers the copy, \
             but a mongomirror stop longer than the window cannot be resumed; consider replSetResizeOplog"
        );
    }
}

/// Bytes per second read from the largest collection for up to a second.
async fn measure_read_rate(source: &Client, plan: &[SourceCollection]) -> Option<f64> {
    use futures::StreamExt;
    const SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);
    let largest = plan
        .iter()
        .filter(|c| c.kind == "collection" && c.documents > 0)
        .max_by_key(|c| c.bytes)?;
    let started = std::time::Instant::now();
    let mut cursor = source
        .database(&largest.ns.db)
        .collection::<mongodb::bson::RawDocumentBuf>(&largest.ns.coll)
        .find(doc! {})
        .batch_size(1000)
        .batch()
        .await
        .ok()?;
    let mut bytes = 0usize;
    while started.elapsed() < SAMPLE {
        match cursor.next().await {
            Some(Ok(batch)) => bytes += batch.as_raw_document().as_bytes().len(),
            _ => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    (bytes > 0).then(|| bytes as f64 / seconds.max(0.001))
}
