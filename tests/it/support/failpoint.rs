//! Holding commands on a test server with the `failCommand` fail point.

use mongodb::bson::{doc, Document};
use mongodb::Client;

/// The application name of mongomirror's source client (`appName` in fail points).
pub const SOURCE_APP: &str = "mongomirror-rs source";
/// The application name of mongomirror's destination client.
pub const DESTINATION_APP: &str = "mongomirror-rs destination";

/// Makes `client`'s server hold the next `commands` for `ms` milliseconds before running them:
/// those sent by the application `app` only, when given, and as many as `mode` counts
/// (`{times: N}`, or `{skip: S, times: N}`).
pub async fn hold_commands(
    client: &Client,
    commands: &[&str],
    app: Option<&str>,
    mode: Document,
    ms: i32,
) {
    let mut data = doc! { "failCommands": commands, "blockConnection": true, "blockTimeMS": ms };
    if let Some(app) = app {
        data.insert("appName", app);
    }
    client
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": mode, "data": data })
        .await
        .unwrap();
}
