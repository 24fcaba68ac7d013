//! A source and a destination, the unit every mirroring scenario needs.

use mongodb::Client;

use super::real::real_deployment;
use super::server::{ServerOptions, TestServer};
use super::slots;

/// The source and destination of a scenario. Both servers hold a slot of
/// the global limit until dropped; at most two pairs are alive at once
/// (one against real deployments).
pub struct Pair {
    /// Where mongomirror reads from.
    pub source: TestServer,
    /// Where mongomirror writes to.
    pub destination: TestServer,
}

impl Pair {
    /// Two default servers, or the real deployments when configured (their
    /// non-system databases are dropped first).
    pub async fn start() -> Pair {
        Self::start_with(ServerOptions::default(), ServerOptions::default()).await
    }

    /// Two servers with the given options, started concurrently (blocks the
    /// calling thread while all server slots are taken). Against
    /// real deployments only default options are allowed: guard special
    /// tests with [`crate::support::skip_on_real_deployment`].
    pub async fn start_with(source: ServerOptions, destination: ServerOptions) -> Pair {
        let mut source_permit = slots::acquire(2);
        let destination_permit = source_permit.split_one();
        if let Some(real) = real_deployment() {
            assert!(
                source == ServerOptions::default() && destination == ServerOptions::default(),
                "special server options cannot be honoured by real deployments; \
                 start the test with `if skip_on_real_deployment(..) {{ return; }}`"
            );
            let pair = Pair {
                source: TestServer::external(real.source_uri.clone(), source_permit),
                destination: TestServer::external(real.destination_uri.clone(), destination_permit),
            };
            drop_user_databases(&pair.source).await;
            drop_user_databases(&pair.destination).await;
            return pair;
        }
        let (source, destination) = tokio::join!(
            TestServer::launch(source, source_permit),
            TestServer::launch(destination, destination_permit)
        );
        Pair {
            source,
            destination,
        }
    }

    /// `mongomirror --host <source> --destination <destination>` between this pair, with full
    /// privileges on both sides; add the scenario's own flags.
    pub fn mongomirror(&self) -> super::ProcessBuilder {
        super::mongomirror().args([
            "--host",
            &self.source.admin_uri(),
            "--destination",
            &self.destination.admin_uri(),
        ])
    }

    /// Privileged clients for (source, destination).
    pub async fn clients(&self) -> (Client, Client) {
        (self.source.client().await, self.destination.client().await)
    }
}

/// Drops every database except admin, local and config.
pub(crate) async fn drop_user_databases(server: &TestServer) {
    let client = server.client().await;
    let names = client
        .list_database_names()
        .await
        .unwrap_or_else(|e| panic!("listDatabases on {}: {e}", server.host_port()));
    for name in names.iter().filter(|n| !super::is_system_database(n)) {
        client
            .database(name)
            .drop()
            .await
            .unwrap_or_else(|e| panic!("dropping database {name} on {}: {e}", server.host_port()));
    }
}
