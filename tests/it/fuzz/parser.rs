//! The entry parser never panics: whatever the BSON, `header`, `parse`, `parse_op`,
//! `parse_update` and `DocDiff::parse` return a value or an error, and what they return can be
//! used (diffs applied, translated to operators, inner `applyOps` entries parsed) without a panic
//! either. `header`, which the applier reads first, agrees with `parse`: it accepts what `parse`
//! accepts, and calls a write only what `parse` makes an insert, update or delete (or refuses).
//!
//! Four sources of input: random documents built from oplog keys and values (entry-shaped most
//! of the time, with diffs built from the diff grammar's keys), diffs that follow the grammar but
//! for one nearly valid key, the captured entries of `tests/fixtures/` with one node replaced or
//! removed, and arbitrary bytes (random in a valid frame, or a valid entry with bytes
//! overwritten or cut short).

use mongodb::bson::{doc, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};
use mongomirror::oplog::diff::{DocDiff, FieldChanges};
use mongomirror::oplog::entry::{
    header, parse, parse_op, parse_update, Class, Kind, Op, Txn, Update,
};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::arbitrary::{document, field_name, scalar, value};

/// Keys of oplog entries, of their `o` payloads and of both update shapes.
#[rustfmt::skip]
const ENTRY_KEYS: &[&str] = &[
    "op", "ns", "o", "o2", "ts", "t", "v", "wall", "ui", "lsid", "txnNumber", "stmtId",
    "prevOpTime", "fromMigrate", "multiOpType", "partialTxn", "prepare", "count", "applyOps",
    "commitTransaction", "abortTransaction", "$v", "diff", "$set", "$unset", "updatedFields",
    "removedFields", "truncatedArrays", "field", "newSize", "_id", "id", "create", "drop",
    "dropDatabase", "renameCollection", "to", "dropTarget", "createIndexes", "commitIndexBuild",
    "startIndexBuild", "indexes", "dropIndexes", "deleteIndex", "index", "collMod",
    "convertToCapped", "emptycapped", "key", "name", "viewOn", "pipeline", "msg",
];

/// String values that mean something in an entry: op types, namespaces, command names.
#[rustfmt::skip]
const ENTRY_STRINGS: &[&str] = &[
    "i", "u", "d", "c", "n", "cd", "ci", "cu", "km", "x", "", "db.c", "db.$cmd", "admin.$cmd",
    "db.system.views", "db.system.js", "config.c", "local.oplog.rs", "admin.system.users", "db",
    "db.", ".c", "db.system.buckets.m", "db.view", "a.b.c", "*", "é.ü", "create", "applyOps",
];

/// Keys of the `$v:2` diff grammar, valid and nearly valid.
#[rustfmt::skip]
const DIFF_KEYS: &[&str] = &[
    "d", "u", "i", "b", "a", "l", "s", "sa", "sb", "s", "ssa", "u0", "u1", "u3", "s0", "s1",
    "s2", "u01", "u+1", "u-1", "u99999999999", "s4294967296", "o", "x", "é", "sé", "aé", "é1",
];

/// Keys of an array diff (after `a: true`), valid and nearly valid: indexes out of order, signed,
/// padded, too large, and keys that start with a multi-byte character.
#[rustfmt::skip]
const ARRAY_DIFF_KEYS: &[&str] = &[
    "l", "u0", "u1", "u3", "s0", "s1", "s2", "u01", "u+1", "u-1", "u99999999999",
    "s4294967296", "a", "x", "", "é", "é1", "¡0", "\u{10ec64}",
];

fn entry_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ENTRY_KEYS).prop_map(String::from),
        1 => field_name(),
    ]
}

fn entry_scalar() -> BoxedStrategy<Bson> {
    prop_oneof![
        3 => prop::sample::select(ENTRY_STRINGS).prop_map(Bson::from),
        1 => (0u32..3, 0u32..3).prop_map(|(time, increment)| {
            Bson::Timestamp(Timestamp { time, increment })
        }),
        1 => prop_oneof![(-1i64..3).prop_map(Bson::Int64), (-1i32..3).prop_map(Bson::Int32)],
        3 => scalar(),
    ]
    .boxed()
}

/// A `$v:2` diff-like document: the grammar's keys with values of the right and wrong kinds.
fn diffish() -> BoxedStrategy<Bson> {
    let leaf = prop_oneof![
        2 => Just(Bson::Boolean(true)),
        1 => Just(Bson::Boolean(false)),
        2 => (0i32..6).prop_map(Bson::Int32),
        1 => (-1i64..6).prop_map(Bson::Int64),
        2 => document().prop_map(Bson::Document),
        1 => doc_with_binary_patch(),
        2 => scalar(),
    ];
    leaf.prop_recursive(6, 64, 5, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(DIFF_KEYS).prop_map(String::from),
            1 => field_name(),
        ];
        let array_key = prop_oneof![
            4 => prop::sample::select(ARRAY_DIFF_KEYS).prop_map(String::from),
            1 => field_name(),
        ];
        let fields = prop::collection::vec((key, array_key, inner), 0..6);
        // Half of them open like an array diff, `a: true` first, with an array diff's keys.
        (any::<bool>(), fields).prop_map(|(array, fields)| {
            let mut diff = Document::new();
            if array {
                diff.insert("a", true);
            }
            for (key, array_key, value) in fields {
                diff.insert(if array { array_key } else { key }, value);
            }
            Bson::Document(diff)
        })
    })
    .boxed()
}

/// A `$v:2` diff that follows the grammar but for a nearly valid key now and then: sections
/// `d`, `u`, `i`, `b` in order, then sub-diffs of objects and of arrays (`a: true`, maybe `l`,
/// ascending `u<idx>` and `s<idx>`), so that the parser gets deep into nested diffs before it
/// meets the key that is wrong.
fn grammar_diff() -> BoxedStrategy<Document> {
    let sub_diffs = prop_oneof![
        sections().prop_map(Bson::Document),
        array_diff(sections().prop_map(Bson::Document).boxed()),
    ];
    let nested = sub_diffs.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            object_diff(inner.clone()).prop_map(Bson::Document),
            array_diff(inner),
        ]
    });
    object_diff(nested.boxed()).boxed()
}

/// The sections of an object diff; their field names collide now and then.
fn sections() -> impl Strategy<Value = Document> {
    (
        prop::collection::vec(field_name(), 0..3),
        prop::collection::vec((field_name(), value()), 0..3),
        prop::collection::vec((field_name(), value()), 0..3),
        prop::option::weighted(0.2, doc_with_binary_patch()),
    )
        .prop_map(|(d, u, i, b)| {
            let mut out = Document::new();
            let d: Document = d.into_iter().map(|n| (n, Bson::Boolean(false))).collect();
            let u: Document = u.into_iter().collect();
            let i: Document = i.into_iter().collect();
            for (section, fields) in [("d", d), ("u", u), ("i", i)] {
                if !fields.is_empty() {
                    out.insert(section, fields);
                }
            }
            if let Some(b) = b {
                out.insert("b", b);
            }
            out
        })
}

/// Sections, then sub-diffs `s<name>` from `inner`, and now and then one more key from
/// [`DIFF_KEYS`].
fn object_diff(inner: BoxedStrategy<Bson>) -> impl Strategy<Value = Document> {
    (
        sections(),
        prop::collection::vec((field_name(), inner.clone()), 0..3),
        prop::option::weighted(0.1, (prop::sample::select(DIFF_KEYS), inner)),
    )
        .prop_map(|(mut diff, subs, bad)| {
            for (name, sub) in subs {
                diff.insert(format!("s{name}"), sub);
            }
            if let Some((key, value)) = bad {
                diff.insert(key, value);
            }
            diff
        })
}

/// `a: true`, maybe `l`, then ascending `u<idx>` and `s<idx>` (sub-diffs from `inner`), and now
/// and then a key from [`ARRAY_DIFF_KEYS`] in their place.
fn array_diff(inner: BoxedStrategy<Bson>) -> BoxedStrategy<Bson> {
    let modification = (
        0u8..10,
        inner,
        value(),
        prop::sample::select(ARRAY_DIFF_KEYS),
    );
    (
        prop::option::weighted(0.3, 0i32..4),
        prop::collection::btree_map(0usize..6, modification, 0..4),
    )
        .prop_map(|(len, mods)| {
            let mut diff = doc! { "a": true };
            if let Some(len) = len {
                diff.insert("l", len);
            }
            for (idx, (kind, sub, value, bad)) in mods {
                match kind {
                    0..=3 => diff.insert(format!("s{idx}"), sub),
                    4..=8 => diff.insert(format!("u{idx}"), value),
                    _ => diff.insert(bad, value),
                };
            }
            Bson::Document(diff)
        })
        .boxed()
}

/// `{<name>: {o, d}}`, the `b` section's shape, with offsets inside and past small values.
fn doc_with_binary_patch() -> impl Strategy<Value = Bson> {
    (field_name(), -1i32..10, super::arbitrary::binary()).prop_map(|(name, o, d)| {
        let mut section = Document::new();
        section.insert(name, doc! { "o": o, "d": d });
        Bson::Document(section)
    })
}

/// A value of an oplog-ish document: entry scalars, diffs, and nested documents and arrays of
/// them.
fn entry_value() -> BoxedStrategy<Bson> {
    prop_oneof![4 => entry_scalar(), 1 => diffish(), 1 => value()]
        .prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                prop::collection::vec((entry_key(), inner), 0..6)
                    .prop_map(|fields| Bson::Document(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An entry-shaped document: `ts`, then the usual fields, each present half of the time with a
/// value of the right type, then random extra fields.
fn entry() -> impl Strategy<Value = Document> {
    let op = prop::sample::select(&["i", "u", "d", "c", "n", "cd", "km", "x"][..]);
    let ns = prop::sample::select(ENTRY_STRINGS);
    let update = prop_oneof![
        diffish().prop_map(|d| doc! { "$v": 2, "diff": d }),
        grammar_diff().prop_map(|d| doc! { "$v": 2, "diff": d }),
        (diffish(), diffish()).prop_map(|(s, u)| doc! { "$v": 1, "$set": s, "$unset": u }),
        prop::collection::vec((entry_key(), entry_value()), 0..4)
            .prop_map(|f| doc! { "$v": 2, "diff": f.into_iter().collect::<Document>() }),
        document(),
    ];
    let o = prop_oneof![
        3 => update,
        2 => prop::collection::vec((entry_key(), entry_value()), 0..5)
            .prop_map(|f| f.into_iter().collect::<Document>()),
        1 => prop::collection::vec(entry_value(), 0..3)
            .prop_map(|ops| doc! { "applyOps": ops }),
    ];
    let fields = (
        op,
        ns,
        o,
        prop::collection::vec((entry_key(), entry_value()), 0..4),
        prop::collection::vec(any::<bool>(), 6),
    );
    fields.prop_map(|(op, ns, o, extra, present)| {
        let mut entry = Document::new();
        let usual: [(&str, Bson); 6] = [
            (
                "ts",
                Bson::Timestamp(Timestamp {
                    time: 1,
                    increment: 1,
                }),
            ),
            ("op", op.into()),
            ("ns", ns.into()),
            ("o", o.into()),
            ("o2", doc! { "_id": 1 }.into()),
            ("lsid", doc! { "id": 1 }.into()),
        ];
        for ((name, value), present) in usual.into_iter().zip(present) {
            if present || name == "ts" {
                entry.insert(name, value);
            }
        }
        entry.extend(extra);
        entry
    })
}

/// Parses `entry` every way there is and uses what comes out.
fn exercise(entry: &RawDocument, target: &Document) {
    agree(entry);
    if let Ok(parsed) = parse(entry) {
        let _ = format!("{parsed:?}");
        match parsed.kind {
            Kind::Op(op) => use_op(op, target),
            Kind::Txn(Txn::ApplyOps { ops, .. }) => inner_ops(ops, target),
            Kind::Txn(_) => {}
        }
    }
    match parse_op(entry) {
        Ok(op) => use_op(op, target),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(Some(RawBsonRef::Document(o))) = entry.get("o") {
        if let Ok(update) = parse_update(o) {
            use_update(update, target);
        }
        if let Ok(Some(RawBsonRef::Document(diff))) = o.get("diff") {
            if let Ok(diff) = DocDiff::parse(diff) {
                use_update(Update::Diff(diff), target);
            }
            if let Ok(fields) = FieldChanges::parse(diff) {
                use_update(Update::Fields(fields), target);
            }
        }
    }
}

/// `header` accepts what `parse` accepts, and a `Write` header is an insert, update or delete
/// for `parse`, or an error `parse` finds in the body the header does not read.
fn agree(entry: &RawDocument) {
    let (head, full) = (header(entry), parse(entry));
    let write = |kind: &Kind<'_>| {
        matches!(
            kind,
            Kind::Op(Op::Insert { .. } | Op::Update { .. } | Op::Delete { .. })
        )
    };
    match (&head, &full) {
        (Err(_), Err(_)) => {}
        (Ok(h), Ok(p)) => assert!(
            !matches!(h.class, Class::Write) || write(&p.kind),
            "header says write, parse says {p:?}"
        ),
        (Ok(h), Err(_)) => assert!(
            matches!(h.class, Class::Write),
            "header {h:?} accepted what parse refused: {full:?}"
        ),
        (Err(e), Ok(p)) => panic!("header refused ({e}) what parse accepted: {p:?}"),
    }
}

fn use_op(op: Op<'_>, target: &Document) {
    match op {
        Op::Update { update, .. } => use_update(update, target),
        Op::ApplyOps(ops) => inner_ops(ops, target),
        other => {
            let _ = format!("{other:?}");
        }
    }
}

fn inner_ops(ops: &mongodb::bson::RawArray, target: &Document) {
    for inner in ops.into_iter().flatten() {
        if let RawBsonRef::Document(inner) = inner {
            if let Ok(op) = parse_op(inner) {
                use_op(op, target);
            }
        }
    }
}

fn use_update(update: Update<'_>, target: &Document) {
    match update {
        Update::Diff(diff) => {
            if let Ok(post) = diff.apply(target) {
                // Idempotent, like mongod's applier, whenever it applies at all.
                let again = diff
                    .apply(&post)
                    .expect("a diff that applied once applies again");
                assert!(
                    raw(&again).as_bytes() == raw(&post).as_bytes(),
                    "a diff applied twice changed the document: {diff:?}\n  once  {post:?}\n  twice {again:?}"
                );
            }
            let _ = diff.to_operators().map(|ops| ops.into_update());
        }
        Update::Fields(fields) => {
            let _ = fields.apply(target);
            let _ = fields.to_operators().map(|ops| ops.into_update());
        }
        Update::Replace(_) | Update::Modifier { .. } => {}
    }
}

/// A document to apply diffs to whose names meet the diffs' often.
fn target() -> impl Strategy<Value = Document> {
    document()
}

fn raw(doc: &Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(doc).expect("random documents encode")
}

/// The captured entries, with node `at` (in preorder) replaced by `value`, or removed.
fn mutated_sample(
    samples: &[RawDocumentBuf],
    pick: usize,
    at: usize,
    value: Option<Bson>,
) -> Document {
    let mut doc = Document::try_from(samples[pick % samples.len()].as_ref()).expect("decodes");
    let mut counter = at;
    replace_node(&mut doc, &mut counter, &value);
    doc
}

/// Visits the nodes of `doc` in preorder, counting `counter` down; at zero the node is replaced
/// (or removed). Returns true once done.
fn replace_node(doc: &mut Document, counter: &mut usize, value: &Option<Bson>) -> bool {
    let keys: Vec<String> = doc.keys().cloned().collect();
    for key in keys {
        if *counter == 0 {
            match value {
                Some(v) => {
                    doc.insert(key, v.clone());
                }
                None => {
                    doc.remove(&key);
                }
            }
            return true;
        }
        *counter -= 1;
        if let Some(Bson::Document(child)) = doc.get_mut(&key) {
            if replace_node(child, counter, value) {
                return true;
            }
        }
    }
    false
}

proptest! {
    #![proptest_config(super::config(256))]

    #[test]
    fn random_entries_never_panic(entry in entry(), target in target()) {
        exercise(&raw(&entry), &target);
    }

    #[test]
    fn diffs_that_nearly_follow_the_grammar_never_panic(
        diff in grammar_diff(),
        target in target(),
    ) {
        exercise(&raw(&doc! { "ts": Timestamp { time: 1, increment: 1 }, "op": "u",
            "ns": "db.c", "o2": { "_id": 1 }, "o": { "$v": 2, "diff": diff } }), &target);
    }

    #[test]
    fn random_documents_never_panic(
        fields in prop::collection::vec((entry_key(), entry_value()), 0..8),
        target in target(),
    ) {
        let doc: Document = fields.into_iter().collect();
        exercise(&raw(&doc), &target);
        // The document as a whole, as an update's `o` and as its diff.
        exercise(&raw(&doc! { "ts": Timestamp { time: 1, increment: 1 }, "op": "u",
            "ns": "db.c", "o2": { "_id": 1 }, "o": { "$v": 2, "diff": doc.clone() } }), &target);
    }

    #[test]
    fn mutated_captured_entries_never_panic(
        pick in any::<usize>(),
        at in 0usize..40,
        value in prop::option::weighted(0.8, entry_value()),
        target in target(),
    ) {
        let samples = crate::oplog_apply::samples();
        exercise(&raw(&mutated_sample(&samples, pick, at, value)), &target);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
        // A valid frame (the length prefix and the trailing NUL) around random elements.
        let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        bytes.extend(body);
        bytes.push(0);
        if let Ok(doc) = RawDocument::from_bytes(&bytes) {
            exercise(doc, &Document::new());
        }
    }

    #[test]
    fn corrupted_entries_never_panic(
        entry in entry(),
        writes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in prop::option::weighted(0.3, any::<usize>()),
        target in target(),
    ) {
        let mut bytes = raw(&entry).into_bytes();
        if let Some(cut) = cut {
            // Keep a valid frame: the length prefix and the trailing NUL.
            let len = 5 + cut % (bytes.len() - 4);
            bytes.truncate(len - 1);
            bytes.push(0);
            let prefix = (len as i32).to_le_bytes();
            bytes[..4].copy_from_slice(&prefix);
        }
        let body = bytes.len() - 5;
        for (at, byte) in writes {
            if body > 0 {
                bytes[4 + at % body] = byte;
            }
        }
        if let Ok(doc) = RawDocument::from_bytes(&bytes) {
            exercise(doc, &target);
        }
    }
}
