//! mongomirror-rs: migrate a live MongoDB replica set into another one, without downtime.
//!
//! # Layout
//!
//! The crate follows the pipeline an operator sees:
//!
//! - [`cli`]: mongomirror's flags, the `--config` file and the environment, resolved into
//!   validated [`cli::Options`] before any network call.
//! - [`connect`]: source and destination clients (seed lists, URIs, TLS, auth, compression),
//!   and failures that say which side broke and why.
//! - [`catalog`]: what the source holds and what of it takes part.
//! - [`copy`]: the initial sync: destination catalog, documents as raw BSON batches on `-j`
//!   workers (large collections split into `_id` ranges), progress, then [`indexes`].
//! - [`oplog`]: oplog sync, in data order: the tail reader, the spool, a typed parse of every
//!   entry shape, exact and idempotent replay on the destination, and the driver that runs them
//!   together and saves the bookmark.
//! - [`run()`]: the stages in order: connect, preflight, initial sync, oplog sync.
//! - [`verify`]: proof that the destination holds what the source holds (`--verify`, and the
//!   guided cutover).
//! - [`error`], [`logging`], [`redact`]: the operator-facing edges: exit codes,
//!   mongo-tools-style log lines, and keeping credentials out of both.

pub mod bookmark;
pub mod catalog;
pub mod cli;
pub mod connect;
pub mod copy;
pub mod cutover;
pub mod error;
pub mod indexes;
pub mod logging;
pub mod oplog;
pub mod order;
pub mod preflight;
pub mod redact;
pub mod retry;
pub mod shutdown;
pub mod status;
pub mod verify;

pub use crate::run::run;

mod run;
