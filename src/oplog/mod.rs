//! The source oplog: where it starts and ends, reading it, what its entries mean, and replaying
//! them. The modules follow the data:
//!
//! - [`tail`]: the tailable cursor on `local.oplog.rs`, reopened where it stopped.
//! - [`spool`]: the queue between reader and applier, spilling to disk while the applier is
//!   behind (the whole initial sync).
//! - [`entry`]: a typed parse of every entry shape, borrowing from the raw BSON.
//! - [`diff`]: partial updates (`$v:2` doc-diffs, change-stream shaped diffs) applied exactly.
//! - [`apply`]: entries turned into idempotent writes on the destination, batched and spread
//!   over writers, with transactions assembled and applied at their commit.
//! - [`catchup`]: the rules while replay catches up with a fuzzy copy: unique indexes made
//!   unique only afterwards, and documents that met a duplicate key read again from the source.
//! - `writer` (private): the destination commands of one batch, by lane.
//! - [`sync`]: runs tail, spool and applier together, reports lag, saves bookmarks and carries
//!   out a cutover.
//!
//! Positions always come from `local.oplog.rs` itself, never from `hello.lastWrite`, which some
//! servers synthesize: the newest entry by `$natural` order is the last write, and the oldest one
//! tells whether a resume point is still held.

use std::future::IntoFuture;

use mongodb::bson::{doc, Document, Timestamp};
use mongodb::Client;

use crate::error::{Failure, Result};

pub mod apply;
pub mod catchup;
mod ddl;
mod dest;
pub mod diff;
pub mod entry;
mod error;
pub mod spool;
pub mod sync;
pub mod tail;
mod writer;

/// The oplog collection of a replica-set member.
pub const OPLOG_DB: &str = "local";
/// The oplog collection name.
pub const OPLOG_COLL: &str = "oplog.rs";

/// The timestamp of the newest (`newest = true`) or oldest entry in the source oplog, read with
/// the source client's majority read concern (see [`crate::connect::connect_source`]): a
/// starting point that a failover could roll back is never chosen.
async fn edge_timestamp(client: &Client, newest: bool) -> Result<Timestamp> {
    let which = if newest { "latest" } else { "oldest" };
    let oplog = client.database(OPLOG_DB).collection::<Document>(OPLOG_COLL);
    let entry = crate::retry::transient(&format!("reading the {which} source oplog entry"), || {
        oplog
            .find_one(doc! {})
            .sort(doc! { "$natural": if newest { -1 } else { 1 } })
            .projection(doc! { "ts": 1 })
            .into_future()
    })
    .await
    .map_err(|e| {
        Failure::runtime(format!(
            "Could not retrieve the {which} oplog entry from the source"
        ))
        .cause(e)
        .hint("the source user needs read access to local.oplog.rs (the backup role has it)")
    })?;
    let entry = entry.ok_or_else(|| {
        Failure::runtime(format!(
            "Could not retrieve the {which} oplog entry from the source: not found"
        ))
        .hint("the source must be a replica-set member with a non-empty oplog")
    })?;
    entry.get_timestamp("ts").map_err(|e| {
        Failure::runtime(format!(
            "the {which} source oplog entry has no valid ts field"
        ))
        .cause(e)
    })
}

/// The timestamp of the newest entry in the source oplog: the starting point of a sync.
pub async fn newest_timestamp(client: &Client) -> Result<Timestamp> {
    edge_timestamp(client, true).await
}

/// The timestamp of the oldest entry still in the source oplog.
pub async fn oldest_timestamp(client: &Client) -> Result<Timestamp> {
    edge_timestamp(client, false).await
}
