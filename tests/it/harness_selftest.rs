//! Tests of the harness itself: servers, comparator and process runner.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Client, IndexModel};

use crate::support::{
    assert_same_deployments, client_for, command, compare_deployments, skip_on_real_deployment,
    Pair, ServerOptions, TestServer, TlsMode, User,
};

const DB: &str = "harness_selftest";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the collection's unique index and a view: the metadata part.
async fn create_metadata(client: &Client) {
    let db = client.database(DB);
    let index = IndexModel::builder()
        .keys(doc! { "n": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    db.collection::<Document>("items")
        .create_index(index)
        .await
        .unwrap();
    db.create_collection("big_items")
        .view_on("items".to_string())
        .pipeline(vec![doc! { "$match": { "n": { "$gt": 1 } } }])
        .await
        .unwrap();
}

#[tokio::test]
async fn compare_detects_differences_until_data_is_copied() {
    let pair = Pair::start().await;
    let (source, destination) = pair.clients().await;
    create_metadata(&source).await;
    let items = source.database(DB).collection::<Document>("items");
    let docs = (1..=3).map(|n| doc! { "_id": n, "n": n, "tags": ["a", "b"] });
    items.insert_many(docs).await.unwrap();

    let differences = compare_deployments(&source, &destination).await.unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].namespace, DB);

    create_metadata(&destination).await;
    let copies = source.database(DB).collection::<RawDocumentBuf>("items");
    let batch: Vec<RawDocumentBuf> = copies
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let target = destination
        .database(DB)
        .collection::<RawDocumentBuf>("items");
    target.insert_many(batch).await.unwrap();
    assert_same_deployments(&source, &destination).await;

    let dst_items = destination.database(DB).collection::<Document>("items");
    dst_items
        .update_one(doc! { "_id": 2 }, doc! { "$set": { "n": 2.0 } })
        .await
        .unwrap();
    dst_items.drop_index("n_1").await.unwrap();
    let differences = compare_deployments(&source, &destination).await.unwrap();
    let details: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert_eq!(details.len(), 2, "{details:#?}");
    assert!(
        details.iter().any(|d| d.contains("index n_1 missing")),
        "{details:#?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains(r#"_id {"$numberInt":"2"}"#)
                && d.contains("3 on source, 3 on destination")),
        "{details:#?}"
    );
}

#[tokio::test]
async fn auth_server_accepts_good_password_and_rejects_bad_one() {
    if skip_on_real_deployment("needs an auth-enabled server") {
        return;
    }
    let user = User::new("app", "secret").with_role("readWrite", "appdb");
    let mut server = TestServer::start(ServerOptions::default().with_user(user)).await;
    let app = server.client_as("app", "secret").await;
    let coll = app.database("appdb").collection::<Document>("c");
    coll.insert_one(doc! { "_id": 1 }).await.unwrap();

    let wrong = server.client_as("app", "wrong").await;
    let error = wrong
        .database("appdb")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .unwrap_err();
    assert!(
        matches!(*error.kind, ErrorKind::Authentication { .. }),
        "{error}"
    );
    let anonymous = client_for(&server.uri()).await;
    let error = anonymous
        .database("appdb")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("requires authentication"),
        "{error}"
    );

    server.restart().await;
    let admin = server.client().await;
    let count = admin
        .database("appdb")
        .collection::<Document>("c")
        .count_documents(doc! {})
        .await;
    assert_eq!(count.unwrap(), 1, "users and data survive a restart");
}

#[tokio::test]
async fn tls_servers_are_reachable_with_the_test_ca() {
    if skip_on_real_deployment("needs TLS servers") {
        return;
    }
    for mode in [TlsMode::Tls, TlsMode::RequireClientCert] {
        let server = TestServer::start(ServerOptions::default().with_tls(mode)).await;
        let ping = server
            .client()
            .await
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await;
        assert!(ping.is_ok(), "{mode:?}: {ping:?}\n{}", server.log_tail());
        let files = server.tls_files().unwrap();
        let without_client_cert = format!(
            "mongodb://{}/?directConnection=true&tls=true&tlsCAFile={}&serverSelectionTimeoutMS=2000",
            server.host_port(),
            files.ca_file.display()
        );
        let ping = client_for(&without_client_cert)
            .await
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await;
        assert_eq!(
            ping.is_ok(),
            mode == TlsMode::Tls,
            "{mode:?} without a client certificate: {ping:?}"
        );
    }
}

#[tokio::test]
async fn process_runner_captures_waits_and_signals() {
    let output = command("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .run(TIMEOUT)
        .await;
    assert_eq!(
        (
            output.status,
            output.stdout.as_str(),
            output.stderr.as_str()
        ),
        (Some(3), "out\n", "err\n")
    );

    let output = command("sleep")
        .arg("60")
        .run(Duration::from_millis(500))
        .await;
    assert!(output.timed_out && output.signal == Some(9), "{output}");

    let script = "trap 'echo interrupted; exit 7' INT; echo ready; while :; do sleep 0.05; done";
    let running = command("sh").args(["-c", script]).spawn();
    running.wait_for_line("ready", TIMEOUT).await.unwrap();
    running.send_sigint();
    let line = running
        .wait_for_line(|l: &str| l.starts_with("interrupt"), TIMEOUT)
        .await;
    assert_eq!(line.unwrap(), "interrupted");
    assert_eq!(running.wait(TIMEOUT).await.status, Some(7));

    let error = command("true")
        .spawn()
        .wait_for_line("never printed", TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.message.contains("exited with code 0"), "{error}");
}
