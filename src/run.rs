//! The stages of one run, in order.

use tracing::{info, warn};

use crate::catalog;
use crate::cli::Options;
use crate::connect;
use crate::error::{Failure, Result};

/// Runs mongomirror with validated options.
pub async fn run(options: Options) -> Result<()> {
    info!("mongomirror-rs version {}", env!("CARGO_PKG_VERSION"));
    for w in &options.warnings {
        warn!("{w}");
    }
    info!("source: {}", options.source.address.display());
    info!("destination: {}", options.destination.address.display());

    let source = connect::connect_source(&options.source).await?;
    info!(
        "connected to the source: replica set '{}', MongoDB {}",
        source.set_name().unwrap_or("?"),
        source.version
    );
    let destination = connect::connect(&options.destination).await?;
    info!(
        "connected to the destination: {}, MongoDB {}",
        destination
            .set_name()
            .map(|s| format!("replica set '{s}'"))
            .unwrap_or_else(|| "not a replica set".to_string()),
        destination.version
    );

    let plan = catalog::survey(
        &source.client,
        &options.filter,
        options.coll_stats_threshold,
    )
    .await?;
    let (mut documents, mut bytes) = (0u64, 0u64);
    for c in &plan {
        documents += c.documents;
        bytes += c.bytes;
        match c.kind.as_str() {
            "collection" => info!(
                "would copy {}: {} documents, {} bytes",
                c.ns, c.documents, c.bytes
            ),
            kind => info!("would create {} {}", kind, c.ns),
        }
    }
    info!(
        "{} namespaces to copy: {} documents, {} bytes",
        plan.len(),
        documents,
        bytes
    );
    if options.preflight_only {
        info!("--preflightOnly: stopping before anything is written");
        return Ok(());
    }
    Err(Failure::runtime("initial sync is not implemented in this build yet")
        .hint("this build can check connections and list what it would copy: rerun with --preflightOnly"))
}
