//! Finding collections renamed on the source during an initial sync, from the source oplog
//! (`copy::moved`): where a collection being copied went, and renames between the copy's
//! starting point and the survey of the catalog.

use mongodb::bson::{doc, Document};
use mongodb::Client;
use mongomirror::catalog;
use mongomirror::cli::{Namespace, NamespaceFilter};
use mongomirror::copy::moved::{self, Whereabouts};
use mongomirror::oplog::newest_timestamp;

use std::time::Duration;

use crate::support::{
    await_same_deployments, hold_commands, wait_until, Pair, ServerOptions, SOURCE_APP,
};

const DB: &str = "renames_found";
const LINE_TIMEOUT: Duration = Duration::from_secs(120);
const CAUGHT_UP: &str = "has caught up with the initial sync";

async fn rename(client: &Client, from: &str, to: &str, drop_target: bool) {
    client
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{DB}.{from}"),
            "to": format!("{DB}.{to}"),
            "dropTarget": drop_target,
        })
        .await
        .unwrap();
}

async fn create(client: &Client, name: &str) {
    client
        .database(DB)
        .collection::<Document>(name)
        .insert_one(doc! { "_id": name })
        .await
        .unwrap();
}

fn ns(coll: &str) -> Namespace {
    Namespace::new(DB, coll)
}

#[tokio::test]
async fn a_collection_is_followed_through_its_renames_or_found_gone() {
    let pair = Pair::start().await;
    let (src, _dst) = pair.clients().await;
    src.database(DB).drop().await.unwrap();
    for name in ["staging", "stays", "dropped", "other"] {
        create(&src, name).await;
    }
    let uuid = async |name: &str| {
        moved::current_uuid(&src, &ns(name))
            .await
            .unwrap()
            .flatten()
            .unwrap_or_else(|| panic!("{name} has no UUID"))
    };
    let (staging, stays, dropped) = (
        uuid("staging").await,
        uuid("stays").await,
        uuid("dropped").await,
    );
    let start = newest_timestamp(&src).await.unwrap();

    // Over an existing collection, then on; the first name is taken again meanwhile.
    rename(&src, "staging", "live", false).await;
    create(&src, "staging").await;
    rename(&src, "live", "other", true).await;
    rename(&src, "other", "archive", false).await;
    src.database(DB)
        .collection::<Document>("dropped")
        .drop()
        .await
        .unwrap();

    let at_archive = uuid("archive").await;
    match moved::whereabouts(&src, &ns("staging"), &staging, start)
        .await
        .unwrap()
    {
        Whereabouts::Renamed { ns: to, at, uuid } => {
            assert_eq!(to, ns("archive"));
            assert!(at > start, "{at:?} after {start:?}");
            assert_eq!(uuid, Some(at_archive.clone()));
            // From there, it is where it was found.
            assert_eq!(
                moved::whereabouts(&src, &to, &at_archive, at)
                    .await
                    .unwrap(),
                Whereabouts::Here
            );
        }
        other => panic!("staging: {other:?}"),
    }
    assert_eq!(
        moved::whereabouts(&src, &ns("stays"), &stays, start)
            .await
            .unwrap(),
        Whereabouts::Here
    );
    assert_eq!(
        moved::whereabouts(&src, &ns("dropped"), &dropped, start)
            .await
            .unwrap(),
        Whereabouts::Gone
    );
    src.database(DB).drop().await.unwrap();
}

#[tokio::test]
async fn renames_of_planned_namespaces_since_a_position_are_found() {
    let pair = Pair::start().await;
    let (src, _dst) = pair.clients().await;
    src.database(DB).drop().await.unwrap();
    for name in ["a", "b", "unplanned"] {
        create(&src, name).await;
    }
    let filter = NamespaceFilter {
        include_namespaces: vec![ns("a"), ns("b")],
        ..NamespaceFilter::default()
    };
    let plan = catalog::list(&src, &filter).await.unwrap();
    let start = newest_timestamp(&src).await.unwrap();
    assert_eq!(
        moved::renamed_since(&src, start, &plan).await.unwrap(),
        None
    );

    // Neither side planned: not a concern of this plan.
    rename(&src, "unplanned", "elsewhere", false).await;
    assert_eq!(
        moved::renamed_since(&src, start, &plan).await.unwrap(),
        None
    );

    // Into a planned name: the survey saw it under its new name only.
    create(&src, "incoming").await;
    rename(&src, "incoming", "b", true).await;
    assert_eq!(
        moved::renamed_since(&src, start, &plan).await.unwrap(),
        Some((ns("incoming"), ns("b")))
    );
    let later = newest_timestamp(&src).await.unwrap();
    assert_eq!(
        moved::renamed_since(&src, later, &plan).await.unwrap(),
        None
    );

    // Out of a planned name.
    rename(&src, "a", "gone", false).await;
    assert_eq!(
        moved::renamed_since(&src, later, &plan).await.unwrap(),
        Some((ns("a"), ns("gone")))
    );
    src.database(DB).drop().await.unwrap();
}

/// A rename between the copy's starting point and the survey of the catalog: the survey sees
/// only the new name, while replay would meet the writes to the old name and the rename, and
/// rename those few documents over the copied collection. A fresh start surveys again from a
/// new starting point instead.
#[tokio::test]
async fn a_rename_during_the_survey_makes_a_fresh_start_survey_again() {
    if crate::support::skip_on_real_deployment("arms fail points") {
        return;
    }
    let pair = Pair::start_with(
        ServerOptions::default().with_test_commands(),
        ServerOptions::default(),
    )
    .await;
    let (src, dst) = pair.clients().await;
    src.database(DB)
        .collection::<Document>("a")
        .insert_many((0..100).map(|i| doc! { "_id": i }))
        .await
        .unwrap();
    // The survey's first listCollections waits 5 s, after the starting point is taken.
    let mode = doc! { "times": 1 };
    hold_commands(&src, &["listCollections"], Some(SOURCE_APP), mode, 5000).await;
    let dir = tempfile::tempdir().unwrap();
    let bookmark = dir.path().join("mongomirror.bookmark");
    let mirror = pair
        .mongomirror()
        .args(["--bookmarkFile", bookmark.to_str().unwrap()])
        .spawn();
    let held = wait_until(LINE_TIMEOUT, Duration::from_millis(20), async || {
        surveying(&src).await
    })
    .await;
    assert!(held, "the survey never started\n{}", mirror.output_so_far());
    src.database(DB)
        .collection::<Document>("a")
        .insert_one(doc! { "_id": "written after the starting point" })
        .await
        .unwrap();
    rename(&src, "a", "b", false).await;
    mirror
        .wait_for_line(
            "renames_found.a was renamed to renames_found.b on the source while its catalog was listed",
            LINE_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mirror.output_so_far()));
    mirror.wait_for_line(CAUGHT_UP, LINE_TIMEOUT).await.unwrap();
    await_same_deployments(&src, &dst, Duration::from_secs(30)).await;
    mirror.send_sigint();
    let out = mirror.wait(Duration::from_secs(15)).await;
    assert_eq!(out.status, Some(0), "{out}");
}

/// Whether a connection of mongomirror's source client is in `listCollections` (SecantusDB's
/// `currentOp` names each connection's last command, recorded before a fail point holds it).
async fn surveying(src: &Client) -> bool {
    let ops = src
        .database("admin")
        .run_command(doc! { "currentOp": 1 })
        .await
        .unwrap();
    ops.get_array("inprog").is_ok_and(|ops| {
        ops.iter().filter_map(|op| op.as_document()).any(|op| {
            let app = op
                .get_document("clientMetadata")
                .and_then(|m| m.get_document("application"))
                .and_then(|a| a.get_str("name"));
            app == Ok(SOURCE_APP) && op.get_str("op") == Ok("listCollections")
        })
    })
}
