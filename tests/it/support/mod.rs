//! Test harness: disposable SecantusDB servers, a `mongomirror` process
//! runner and a deployment comparator.
//!
//! * [`Pair::start`] gives a source and a destination server (or the real
//!   deployments named by `MONGOMIRROR_TEST_SOURCE_URI` and
//!   `MONGOMIRROR_TEST_DESTINATION_URI`, see [`real_deployment`]).
//! * [`TestServer::start`] gives one server with special [`ServerOptions`].
//! * [`mongomirror`] runs the binary under test; [`command`] runs anything.
//! * [`assert_same_deployments`] / [`await_same_deployments`] check the result.
//!
//! Servers are started through [`secantusd`] (provisioned on first use) and
//! at most [`MAX_LOCAL_SERVERS`] of them are alive at once in this process.
#![allow(dead_code, unused_imports)]

mod compare;
mod data;
mod failpoint;
mod http;
mod pair;
mod process;
mod provision;
mod real;
mod run;
mod server;
mod slots;
mod tls;

use std::time::Duration;

pub use compare::{
    assert_same_deployments, await_same_deployments, compare_deployments, Difference,
};
pub use data::{every_type, mixed_ids};
pub use failpoint::{hold_commands, DESTINATION_APP, SOURCE_APP};
pub use http::{
    get, get_json, request, start_with_status, start_with_status_and, status_line, status_port,
};
pub use pair::Pair;
pub use process::{LineMatcher, WaitError};
pub use provision::{secantusd, Launcher, SECANTUSDB_REQUIREMENT};
pub use real::{real_deployment, skip_on_real_deployment, RealDeployment};
pub use run::{command, mongomirror, Output, ProcessBuilder, Running};
pub use server::{
    client_for, ServerOptions, Storage, TestServer, TlsMode, User, ADMIN_PASSWORD, ADMIN_USER,
};
pub use slots::MAX_LOCAL_SERVERS;
pub use tls::TlsFiles;

/// Holds `count` of the [`MAX_LOCAL_SERVERS`] server slots for servers started outside the
/// harness (the benchmark starts its own); released when the permit is dropped.
pub(crate) fn reserve_server_slots(count: usize) -> slots::Permit {
    slots::acquire(count)
}

/// Databases that belong to the server rather than to the user; they are
/// never compared and never dropped.
pub const SYSTEM_DATABASES: [&str; 3] = ["admin", "local", "config"];

/// True when `name` is one of [`SYSTEM_DATABASES`].
pub fn is_system_database(name: &str) -> bool {
    SYSTEM_DATABASES.contains(&name)
}

/// Evaluates `condition` every `poll_interval` until it returns true (then
/// returns true) or `timeout` has elapsed (then returns false). The condition
/// is always evaluated at least once, and once more at the deadline.
pub async fn wait_until(
    timeout: Duration,
    poll_interval: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep_until(deadline.min(now + poll_interval)).await;
    }
}

/// The server's `(major, minor)` release from `buildInfo`, for scenarios whose features need a
/// newer server than the oldest one the real-deployment workflow runs (4.4).
pub async fn server_release(client: &mongodb::Client) -> (u32, u32) {
    let info = client
        .database("admin")
        .run_command(mongodb::bson::doc! { "buildInfo": 1 })
        .await
        .unwrap_or_else(|e| panic!("buildInfo: {e}"));
    let version = info.get_str("version").unwrap_or("0.0");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
