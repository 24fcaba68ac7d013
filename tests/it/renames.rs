//! Finding collections renamed on the source during an initial sync, from the source oplog
//! (`copy::moved`): where a collection being copied went, and renames between the copy's
//! starting point and the survey of the catalog.

use mongodb::bson::{doc, Document};
use mongodb::Client;
use mongomirror::catalog;
use mongomirror::cli::{Namespace, NamespaceFilter};
use mongomirror::copy::moved::{self, Whereabouts};
use mongomirror::oplog::newest_timestamp;

use crate::support::Pair;

const DB: &str = "renames_found";

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
