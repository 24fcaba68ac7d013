//! The HTTP status endpoint: mongomirror's JSON at `/`, Prometheus text at `/metrics`, and an
//! error that is reported there while the process keeps serving.

use std::time::Duration;

use crate::support::{get, get_json, start_with_status, wait_until, Pair};
use mongodb::bson::{doc, Document};

const LINE_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn oplog_sync_status_and_metrics() {
    let pair = Pair::start().await;
    let (src, _dst) = pair.clients().await;
    src.database("app")
        .collection::<Document>("c")
        .insert_many((0..100).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
    let (mirror, port) = start_with_status(&pair).await;
    mirror
        .wait_for_line("Current lag from source:", LINE_TIMEOUT)
        .await
        .unwrap();
    // The status port binds the loopback address unless --httpStatusHost says otherwise.
    let bound = mirror.output_so_far().stderr;
    assert!(
        bound.contains("status server listening on http://127.0.0.1:"),
        "{bound}"
    );
    let json = get_json(port).await;
    assert_eq!(json["stage"], "oplog sync", "{json}");
    assert_eq!(json["phase"], "applying oplog entries", "{json}");
    assert!(
        json["details"]["currentTimestamp"].as_i64().unwrap() > 1 << 32,
        "packed timestamp: {json}"
    );
    assert!(json["details"]["latestTimestamp"].is_i64(), "{json}");
    assert!(
        json["details"]["lastWriteOnSourceTimestamp"].is_i64(),
        "{json}"
    );
    assert!(json["lagSeconds"].is_u64(), "{json}");
    assert!(json.get("errorMessage").is_none(), "{json}");

    let (status, metrics) = get(port, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let mut families = 0;
    for line in metrics.lines() {
        if line.starts_with("# TYPE ") {
            families += 1;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(name.starts_with("mongomirror_"), "{line}");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
    }
    assert!(families >= 4, "{metrics}");
    assert!(metrics.contains("mongomirror_lag_seconds "), "{metrics}");
    assert!(get(port, "/nothing").await.0.contains("404"));
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
}

#[tokio::test]
async fn an_error_is_reported_on_the_endpoint_and_the_process_keeps_serving() {
    let pair = Pair::start().await;
    let (src, dst) = pair.clients().await;
    src.database("app")
        .collection::<Document>("c")
        .insert_one(doc! { "_id": 1 })
        .await
        .unwrap();
    dst.database("app")
        .collection::<Document>("c")
        .insert_one(doc! { "_id": 2 })
        .await
        .unwrap();
    let (mirror, port) = start_with_status(&pair).await;
    mirror
        .wait_for_line("the error is reported there", LINE_TIMEOUT)
        .await
        .unwrap();
    let json = get_json(port).await;
    assert_eq!(json["stage"], "initializing", "{json}");
    let message = json["errorMessage"]
        .as_str()
        .unwrap_or_else(|| panic!("{json}"));
    assert!(
        message.contains("preflight: the destination already holds namespaces to copy: app.c"),
        "{json}"
    );
    // Still serving a moment later, until it is told to stop.
    assert!(
        !wait_until(
            Duration::from_secs(1),
            Duration::from_millis(200),
            async || mirror.has_exited()
        )
        .await
    );
    assert_eq!(get_json(port).await["errorMessage"], json["errorMessage"]);
    mirror.send_signal("TERM");
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(4), "{out}");
}

#[tokio::test]
async fn initial_sync_status_lists_each_namespace() {
    if crate::support::skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        crate::support::ServerOptions::default(),
        crate::support::ServerOptions::default().with_test_commands(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    src.database("app")
        .collection::<Document>("slow")
        .insert_many((0..100).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
    // Hold the copy's first insert for a while, so the status is read mid-copy.
    crate::support::hold_commands(&dst, &["insert"], None, doc! { "times": 1 }, 4000).await;
    let (mirror, port) = start_with_status(&pair).await;
    mirror
        .wait_for_line("copying app.slow", LINE_TIMEOUT)
        .await
        .unwrap();
    let json = get_json(port).await;
    assert_eq!(json["stage"], "initial sync", "{json}");
    let ns = &json["details"]["app.slow"];
    assert_eq!(ns["complete"], false, "{json}");
    assert!(ns["totalBytes"].as_u64().unwrap() > 0, "{json}");
    assert!(ns["copiedBytes"].is_u64(), "{json}");
    mirror
        .wait_for_line("initial sync completed", LINE_TIMEOUT)
        .await
        .unwrap();
    mirror.send_sigint();
    assert_eq!(mirror.wait(Duration::from_secs(15)).await.status, Some(0));
}
