//! Integration tests for `mongomirror`, run against SecantusDB test servers
//! (or real deployments, see [`support::real_deployment`]).

mod auth;
mod bench;
mod catch_up;
mod cli;
mod connect;
mod copy;
mod crash;
mod cutover;
mod faults;
mod fuzz;
mod harness_selftest;
mod oplog_apply;
mod oplog_sync;
mod preflight;
mod renames;
mod resume;
mod status;
mod support;
mod verify;
