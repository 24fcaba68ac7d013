//! Running the scenarios against real deployments instead of local servers.
//!
//! When `MONGOMIRROR_TEST_SOURCE_URI` and `MONGOMIRROR_TEST_DESTINATION_URI`
//! are both set, [`crate::support::Pair::start`] hands out those deployments
//! (after dropping their non-system databases) and scenarios run one at a
//! time. Tests needing a server with special options must begin with
//! `if skip_on_real_deployment("why") { return; }`.

use std::sync::OnceLock;

const SOURCE_VAR: &str = "MONGOMIRROR_TEST_SOURCE_URI";
const DESTINATION_VAR: &str = "MONGOMIRROR_TEST_DESTINATION_URI";

/// Connection strings of the real deployments under test.
#[derive(Clone, Debug)]
pub struct RealDeployment {
    /// The source deployment's connection string.
    pub source_uri: String,
    /// The destination deployment's connection string.
    pub destination_uri: String,
}

/// The real deployments named by the environment, if any. Panics when only
/// one of the two variables is set.
pub fn real_deployment() -> Option<&'static RealDeployment> {
    static REAL: OnceLock<Option<RealDeployment>> = OnceLock::new();
    REAL.get_or_init(|| {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match (var(SOURCE_VAR), var(DESTINATION_VAR)) {
            (Some(source_uri), Some(destination_uri)) => Some(RealDeployment {
                source_uri,
                destination_uri,
            }),
            (None, None) => None,
            _ => panic!("set both {SOURCE_VAR} and {DESTINATION_VAR}, or neither"),
        }
    })
    .as_ref()
}

/// True (after printing `skipped: <reason>`) when running against real
/// deployments, for tests that need servers the harness starts itself
/// (auth, TLS, standalone, small oplog, restarts, ...):
///
/// ```ignore
/// if skip_on_real_deployment("needs a TLS server") { return; }
/// ```
pub fn skip_on_real_deployment(reason: &str) -> bool {
    if real_deployment().is_none() {
        return false;
    }
    println!("skipped: {reason}");
    true
}
