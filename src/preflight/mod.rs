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

use mongodb::bson::{doc, Document};
use mongodb::Client;
use tracing::{info, warn};

use std::future::IntoFuture;

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
    let admin = client.database("admin");
    crate::retry::transient("reading the user's privileges", || {
        admin
            .run_command(doc! { "connectionStatus": 1, "showPrivileges": true })
            .into_future()
    })
    .await
    .map_err(|e| {
        Failure::runtime("cannot read which privileges the user has: connectionStatus failed")
            .cause(e)
    })
}

/// The index specs of every collection in the plan.
pub async fn source_indexes(source: &Client, plan: &[SourceCollection]) -> Result<Vec<IndexInfo>> {
    let mut out = Vec::new();
    for c in plan.iter().filter(|c| c.kind == "collection") {
        let specs = crate::indexes::list_indexes(source, &c.ns, "source").await?;
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
    let fcv_shown = |fcv: &Option<String>| match fcv {
        Some(v) => format!("featureCompatibilityVersion {v}"),
        None => "featureCompatibilityVersion not reported".to_string(),
    };
    info!(
        source_version = %source.version,
        destination_version = %destination.version,
        "preflight: the source runs MongoDB {} ({}), the destination MongoDB {} ({})",
        source.version,
        fcv_shown(&src_fcv),
        destination.version,
        fcv_shown(&dst_fcv)
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
            warn!("--ttlWithoutExpiry: TTL indexes are built without expireAfterSeconds, so no document expires on the destination until cutover; at cutover, run these commands on the destination to restore expiry:");
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
        return Failure::new(
            ExitCode::Preflight,
            format!("preflight: {}; nothing was written", p.what),
        )
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

/// Logs how much time the source oplog covers and how long the copy should take, and warns when
/// the oplog covers less than twice that.
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
    info!(
        oplog_window_seconds = window,
        bytes,
        copy_seconds = estimate,
        "preflight: the source oplog covers the last {} of writes; {}",
        duration(window),
        copy_time(bytes, estimate)
    );
    if let Some(e) = estimate.filter(|e| window < e.saturating_mul(2)) {
        warn!(
            "the source oplog covers only {}, less than twice the estimated copy time of {}: the copy is safe, \
             because the oplog is spooled to disk meanwhile, but if mongomirror stops for longer than {} \
             it cannot resume; grow the source oplog with replSetResizeOplog to widen the window",
            duration(window),
            duration(e),
            duration(window)
        );
    }
}

/// The preflight's sentence about the copy time: an estimate, or why there is none.
fn copy_time(bytes: u64, estimate: Option<u64>) -> String {
    match estimate {
        _ if bytes == 0 => "there is no data to copy".to_string(),
        Some(e) => format!(
            "copying {bytes} bytes should take about {}, judging by one second of reading the largest collection",
            duration(e)
        ),
        None => format!(
            "how long copying {bytes} bytes will take cannot be estimated, because a one-second read of the largest collection returned no data"
        ),
    }
}

/// Seconds as an operator reads them: `45s`, `12m 5s`, `3h 20m`, `2d 4h`.
fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_an_operator_says_them() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(725), "12m 5s");
        assert_eq!(duration(12_000), "3h 20m");
        assert_eq!(duration(187_200), "2d 4h");
    }

    #[test]
    fn the_copy_time_is_an_estimate_or_says_why_not() {
        assert_eq!(copy_time(0, None), "there is no data to copy");
        assert_eq!(
            copy_time(5_000_000, Some(90)),
            "copying 5000000 bytes should take about 1m 30s, judging by one second of reading the largest collection"
        );
        let unknown = copy_time(5_000_000, None);
        assert!(
            unknown.contains("cannot be estimated") && !unknown.contains("unknown"),
            "{unknown}"
        );
    }
}
