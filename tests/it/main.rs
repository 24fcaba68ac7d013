//! Integration tests for `mongomirror`, run against SecantusDB test servers
//! (or real deployments, see [`support::real_deployment`]).

mod cli;
mod connect;
mod harness_selftest;
mod support;
