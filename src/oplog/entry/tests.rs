//! Every captured sample and every hand-made shape, classified.

use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document, RawDocumentBuf};

use super::*;

/// The captured entries of `tests/fixtures/oplog-samples.jsonl` (see the README there).
pub(crate) fn samples() -> Vec<RawDocumentBuf> {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/oplog-samples.jsonl"
    ));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).expect("fixture line is JSON");
            let Bson::Document(doc) = Bson::try_from(json).expect("fixture line is extended JSON")
            else {
                panic!("fixture line is not a document");
            };
            RawDocumentBuf::from_document(&doc).expect("fixture encodes")
        })
        .collect()
}

fn raw(d: Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(&d).expect("encodes")
}

fn op_of<'e, 'a>(entry: &'e Entry<'a>) -> &'e Op<'a> {
    match &entry.kind {
        Kind::Op(op) => op,
        Kind::Txn(t) => panic!("expected an op, got {t:?}"),
    }
}

fn command_of<'e, 'a>(entry: &'e Entry<'a>) -> &'e Command<'a> {
    match op_of(entry) {
        Op::Command(c) => c,
        other => panic!("expected a command, got {other:?}"),
    }
}

#[test]
fn every_sample_parses_to_its_shape() {
    let samples = samples();
    assert_eq!(samples.len(), 30);
    let parsed: Vec<Entry<'_>> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| parse(s).unwrap_or_else(|e| panic!("sample {}: {e}", i + 1)))
        .collect();
    let line = |n: usize| &parsed[n - 1];

    for n in [1, 7, 8] {
        assert!(matches!(op_of(line(n)), Op::Skip(Skip::NoOp)), "sample {n}");
    }
    assert!(matches!(op_of(line(6)), Op::Skip(Skip::Internal)));
    assert!(matches!(
        op_of(line(10)),
        Op::Skip(Skip::Bookkeeping("startIndexBuild"))
    ));
    assert!(matches!(
        op_of(line(12)),
        Op::Skip(Skip::Bookkeeping("abortIndexBuild"))
    ));
    assert!(
        matches!(op_of(line(17)), Op::Skip(Skip::TimeSeriesBucket(ns)) if ns.coll == "system.buckets.foo_ts")
    );

    // Non-transaction applyOps: a 3.6 user applyOps and 8.0 vectored inserts (multiOpType 1).
    for (n, inner) in [(2, 3), (21, 2), (22, 2)] {
        let Op::ApplyOps(ops) = op_of(line(n)) else {
            panic!("sample {n} is not a non-transaction applyOps");
        };
        let ops: Vec<_> = ops.into_iter().map(|o| o.unwrap()).collect();
        assert_eq!(ops.len(), inner, "sample {n}");
        for o in ops {
            let inner = parse_op(o.as_document().unwrap()).unwrap();
            assert!(matches!(inner, Op::Insert { .. }), "sample {n}: {inner:?}");
        }
    }

    for n in [5, 18] {
        let Op::Insert { ns, doc, id } = op_of(line(n)) else {
            panic!("sample {n} is not an insert");
        };
        assert_eq!(doc.get("_id").unwrap(), Some(*id));
        assert!(ns.coll == "c1" || ns.coll == "coll1");
    }
    assert_eq!(line(18).optime.term, Some(1));
    assert_eq!(
        line(5).optime.ts,
        Timestamp {
            time: 1582918260,
            increment: 2
        }
    );

    for (n, coll) in [(3, "bar"), (9, "test"), (20, "coll1")] {
        assert!(
            matches!(command_of(line(n)), Command::Create { ns, .. } if ns.coll == coll),
            "sample {n}"
        );
    }
    assert!(matches!(
        command_of(line(4)),
        Command::CreateIndexes {
            specs: IndexSpecs::Inline(_),
            ..
        }
    ));
    for (n, count) in [(11, 1), (30, 2)] {
        let Command::CreateIndexes {
            specs: IndexSpecs::List(list),
            ..
        } = command_of(line(n))
        else {
            panic!("sample {n} is not a commitIndexBuild");
        };
        assert_eq!(list.into_iter().count(), count);
    }
    assert!(matches!(command_of(line(13)), Command::Drop { ns } if ns.to_string() == "test2.foo"));
    assert!(
        matches!(command_of(line(14)), Command::DropIndexes { index, .. } if index.as_str() == Some("f_1"))
    );
    for n in [15, 19] {
        assert!(
            matches!(command_of(line(n)), Command::CollMod { .. }),
            "sample {n}"
        );
    }
    assert!(matches!(command_of(line(16)), Command::DropDatabase { db } if db == "test2"));

    // Transactions.
    let Kind::Txn(Txn::ApplyOps {
        key: first,
        partial: true,
        prepare: false,
        prev: None,
        ..
    }) = &line(23).kind
    else {
        panic!(
            "sample 23 is not the first entry of a chain: {:?}",
            line(23)
        );
    };
    let Kind::Txn(Txn::ApplyOps {
        key: last,
        partial: false,
        prepare: false,
        prev: Some(_),
        ops,
    }) = &line(24).kind
    else {
        panic!("sample 24 is not the committing entry of a chain");
    };
    assert_eq!(first, last);
    assert_eq!(ops.into_iter().count(), 2);
    let Kind::Txn(Txn::ApplyOps {
        key: prepared,
        prepare: true,
        ..
    }) = &line(25).kind
    else {
        panic!("sample 25 is not a prepare");
    };
    let Kind::Txn(Txn::Commit { key: committed }) = &line(26).kind else {
        panic!("sample 26 is not a commitTransaction");
    };
    assert_eq!(prepared, committed);
    assert_ne!(
        first, prepared,
        "different lsids are different transactions"
    );

    // Updates.
    let update_of = |n: usize| match op_of(line(n)) {
        Op::Update { update, id, .. } => (update, *id),
        other => panic!("sample {n} is not an update: {other:?}"),
    };
    assert!(matches!(
        update_of(27).0,
        Update::Modifier {
            set: Some(_),
            unset: Some(_)
        }
    ));
    assert!(matches!(update_of(28).0, Update::Replace(_)));
    assert!(update_of(28).0.is_full_document());
    assert!(matches!(update_of(29).0, Update::Diff(_)));
    assert!(update_of(29).1.as_object_id().is_some());
}

#[test]
fn views_are_commands() {
    let insert = raw(doc! {
        "op": "i", "ns": "app.system.views", "ts": Timestamp { time: 1, increment: 1 },
        "o": {"_id": "app.active", "viewOn": "users", "pipeline": [{"$match": {"a": true}}]},
    });
    let e = parse(&insert).unwrap();
    assert!(
        matches!(command_of(&e), Command::CreateView { ns, .. } if ns.to_string() == "app.active")
    );

    let update = raw(doc! {
        "op": "u", "ns": "app.system.views", "ts": Timestamp { time: 1, increment: 2 },
        "o2": {"_id": "app.active"},
        "o": {"_id": "app.active", "viewOn": "users", "pipeline": []},
    });
    let e = parse(&update).unwrap();
    assert!(matches!(
        command_of(&e),
        Command::ModifyView {
            update: Update::Replace(_),
            ..
        }
    ));

    let delete = raw(doc! {
        "op": "d", "ns": "app.system.views", "ts": Timestamp { time: 1, increment: 3 },
        "o": {"_id": "app.active"},
    });
    let e = parse(&delete).unwrap();
    assert!(matches!(command_of(&e), Command::DropView { ns } if ns.coll == "active"));
}

#[test]
fn renames() {
    let uuid = Binary {
        subtype: BinarySubtype::Uuid,
        bytes: vec![7; 16],
    };
    for (drop_target, expected) in [
        (Bson::Boolean(false), false),
        (Bson::Boolean(true), true),
        (Bson::Binary(uuid), true),
    ] {
        let entry = raw(doc! {
            "op": "c", "ns": "a.$cmd", "ts": Timestamp { time: 1, increment: 1 },
            "o": {"renameCollection": "a.x", "to": "b.y", "stayTemp": false, "dropTarget": drop_target},
        });
        let e = parse(&entry).unwrap();
        let Command::Rename {
            from,
            to,
            drop_target,
        } = command_of(&e)
        else {
            panic!("not a rename");
        };
        assert_eq!(
            (from.to_string(), to.to_string(), *drop_target),
            ("a.x".into(), "b.y".into(), expected)
        );
    }
}

#[test]
fn other_commands() {
    let cmd = |o: Document| {
        raw(doc! {"op": "c", "ns": "db.$cmd", "ts": Timestamp { time: 1, increment: 1 }, "o": o})
    };
    let e = cmd(doc! {"convertToCapped": "c", "size": 4096});
    assert!(matches!(
        command_of(&parse(&e).unwrap()),
        Command::ConvertToCapped { .. }
    ));
    let e = cmd(doc! {"emptycapped": "c"});
    assert!(matches!(
        command_of(&parse(&e).unwrap()),
        Command::EmptyCapped { .. }
    ));
    for legacy in ["deleteIndexes", "deleteIndex", "dropIndex"] {
        let e = cmd(doc! {legacy: "c", "index": {"a": 1}});
        assert!(matches!(
            command_of(&parse(&e).unwrap()),
            Command::DropIndexes { .. }
        ));
    }
    let e = cmd(doc! {"collMod": "c", "index": {"name": "a_1", "hidden": true}});
    assert!(matches!(
        command_of(&parse(&e).unwrap()),
        Command::CollMod { .. }
    ));
    let e = cmd(doc! {"importCollection": "c"});
    assert!(
        matches!(parse(&e), Err(EntryError::UnknownCommand(name)) if name == "importCollection")
    );
}

#[test]
fn skipped_entries() {
    let entry = |extra: Document| {
        let mut d = doc! {"op": "i", "ns": "app.c", "ts": Timestamp { time: 1, increment: 1 }, "o": {"_id": 1}};
        d.extend(extra);
        raw(d)
    };
    let e = entry(doc! {"fromMigrate": true});
    assert!(matches!(
        op_of(&parse(&e).unwrap()),
        Op::Skip(Skip::FromMigrate)
    ));
    for ns in [
        "admin.system.users",
        "config.transactions",
        "local.foo",
        "app.system.profile",
    ] {
        let e = entry(doc! {"ns": ns});
        assert!(
            matches!(op_of(&parse(&e).unwrap()), Op::Skip(Skip::Internal)),
            "{ns}"
        );
    }
    let e = entry(doc! {"ns": "app.system.js"});
    assert!(matches!(op_of(&parse(&e).unwrap()), Op::Insert { .. }));
    for op in ["n", "km", "cd"] {
        let e = entry(doc! {"op": op});
        assert!(
            matches!(op_of(&parse(&e).unwrap()), Op::Skip(Skip::NoOp)),
            "{op}"
        );
    }
}

#[test]
fn transaction_detection() {
    let lsid = doc! {"id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] }};
    let base = |o: Document, extra: Document| {
        let mut d = doc! {
            "op": "c", "ns": "admin.$cmd", "ts": Timestamp { time: 5, increment: 1 },
            "lsid": lsid.clone(), "txnNumber": 3_i64, "o": o,
        };
        d.extend(extra);
        raw(d)
    };
    let abort = base(doc! {"abortTransaction": 1}, doc! {});
    assert!(matches!(
        parse(&abort).unwrap().kind,
        Kind::Txn(Txn::Abort { .. })
    ));
    // A retryable write's applyOps of vectored inserts is not a transaction.
    let vectored = base(doc! {"applyOps": []}, doc! {"multiOpType": 1});
    assert!(matches!(
        parse(&vectored).unwrap().kind,
        Kind::Op(Op::ApplyOps(_))
    ));
    // SecantusDB logs transaction operations as CRUD entries with lsid/txnNumber: plain CRUD.
    let per_op = raw(doc! {
        "op": "i", "ns": "app.c", "ts": Timestamp { time: 5, increment: 2 },
        "lsid": lsid.clone(), "txnNumber": 3_i64, "o": {"_id": 1},
    });
    assert!(matches!(
        parse(&per_op).unwrap().kind,
        Kind::Op(Op::Insert { .. })
    ));
}

#[test]
fn update_shapes_and_errors() {
    let update = |o: Document| {
        raw(
            doc! {"op": "u", "ns": "app.c", "ts": Timestamp { time: 1, increment: 1 }, "o2": {"_id": 1}, "o": o},
        )
    };
    let e = update(
        doc! {"$v": 2, "diff": {"updatedFields": {"a": 1}, "removedFields": [], "truncatedArrays": []}},
    );
    assert!(matches!(
        op_of(&parse(&e).unwrap()),
        Op::Update {
            update: Update::Fields(_),
            ..
        }
    ));
    // No $v with $set is a 3.4-style modifier update.
    let e = update(doc! {"$set": {"a": 1}});
    assert!(matches!(
        op_of(&parse(&e).unwrap()),
        Op::Update {
            update: Update::Modifier {
                set: Some(_),
                unset: None
            },
            ..
        }
    ));
    let e = update(doc! {"$v": 1, "$inc": {"a": 1}});
    assert!(matches!(parse(&e), Err(EntryError::Update(_))));
    // With `_id`, `$` names are the replacement's own fields (found by `fuzz::live`).
    for o in [
        doc! {"_id": 1, "$x": 2, "a": 1},
        doc! {"_id": 1, "$v": 2, "diff": {"u": {"a": 1}}},
        doc! {"$set": {"a": 1}, "_id": 1},
    ] {
        let e = update(o.clone());
        assert!(
            matches!(
                op_of(&parse(&e).unwrap()),
                Op::Update {
                    update: Update::Replace(_),
                    ..
                }
            ),
            "{o:?}"
        );
    }
    let e = update(doc! {"$v": 2, "diff": {"x": {}}});
    assert!(matches!(parse(&e), Err(EntryError::Diff(_))));

    let no_o2 = raw(
        doc! {"op": "u", "ns": "app.c", "ts": Timestamp { time: 1, increment: 1 }, "o": {"a": 1}},
    );
    assert!(matches!(parse(&no_o2), Err(EntryError::Missing("o2"))));
    let no_ts = raw(doc! {"op": "i", "ns": "app.c", "o": {"_id": 1}});
    assert!(matches!(parse(&no_ts), Err(EntryError::Missing("ts"))));
    let bad_op =
        raw(doc! {"op": "x", "ns": "app.c", "ts": Timestamp { time: 1, increment: 1 }, "o": {}});
    assert!(matches!(parse(&bad_op), Err(EntryError::UnknownOp(op)) if op == "x"));
    let no_id = raw(
        doc! {"op": "i", "ns": "app.c", "ts": Timestamp { time: 1, increment: 1 }, "o": {"a": 1}},
    );
    assert!(matches!(parse(&no_id), Err(EntryError::Missing("o._id"))));
}

/// The header tells ordinary writes (parsed later, once) from everything else, and agrees
/// with the full parse on every shape.
#[test]
fn the_header_leaves_ordinary_writes_unparsed_and_agrees_with_the_full_parse() {
    use mongodb::bson::{doc, RawDocumentBuf, Timestamp};
    let ts = Timestamp {
        time: 1,
        increment: 1,
    };
    let cases = [
        (
            doc! { "op": "i", "ns": "app.c", "o": { "_id": 1 }, "ts": ts },
            true,
        ),
        (
            doc! { "op": "u", "ns": "app.c", "o": { "$set": { "a": 1 } }, "o2": { "_id": 1 }, "ts": ts },
            true,
        ),
        (
            doc! { "op": "d", "ns": "admin.users", "o": { "_id": 1 }, "ts": ts },
            true,
        ),
        (
            doc! { "op": "i", "ns": "app.c", "o": { "_id": 1 }, "fromMigrate": true, "ts": ts },
            false,
        ),
        (
            doc! { "op": "i", "ns": "config.x", "o": { "_id": 1 }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "i", "ns": "app.system.views", "o": { "_id": "app.v", "viewOn": "c", "pipeline": [] }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "i", "ns": "app.system.js", "o": { "_id": "f" }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "i", "ns": "app.system.buckets.t", "o": { "_id": 1 }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "i", "ns": "__mdb_internal_x.c", "o": { "_id": 1 }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "c", "ns": "app.$cmd", "o": { "drop": "c" }, "ts": ts },
            false,
        ),
        (
            doc! { "op": "n", "ns": "", "o": { "msg": "x" }, "ts": ts },
            false,
        ),
    ];
    for (entry, plain) in cases {
        let raw = RawDocumentBuf::from_document(&entry).unwrap();
        let header = header(&raw).unwrap();
        assert_eq!(header.optime.ts, ts);
        let full = parse(&raw).unwrap();
        match (&header.class, &full.kind) {
            (Class::Write, Kind::Op(Op::Insert { .. } | Op::Update { .. } | Op::Delete { .. })) => {
                assert!(plain, "{entry}")
            }
            (Class::Op(a), Kind::Op(b)) => {
                assert!(!plain, "{entry}");
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
            other => panic!("{entry}: {other:?}"),
        }
    }
}
