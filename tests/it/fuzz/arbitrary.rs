//! Random BSON: field names that collide and look like the diff grammar's own keys, values of
//! every type, documents, and chains of related documents (each one an edit of the previous
//! one, as an update makes it).

use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp,
};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

/// Names that collide often, spell diff keys (`a`, `l`, `u0`, `s1`, `sa`: a field `sa` is
/// addressed as `ssa`), or need care in paths (dots, `$`, digits, empty, non-ASCII).
const NAMES: &[&str] = &[
    "a", "b", "c", "d", "i", "u", "l", "s", "o", "sa", "ssa", "u0", "s1", "a.b", "$x", "0", "1",
    "10", "", "é", "é1", "x y",
];

/// How deep random values nest.
const DEPTH: u32 = 4;

/// A field name (never NUL, which BSON names cannot hold).
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(String::from),
        2 => "[a-z]{1,2}",
        1 => "[^\\x00]{0,6}",
    ]
}

/// A value of any type but document and array.
pub fn scalar() -> BoxedStrategy<Bson> {
    let numbers = prop_oneof![
        (-2i32..3).prop_map(Bson::Int32),
        any::<i32>().prop_map(Bson::Int32),
        prop_oneof![Just(1i64), any::<i64>()].prop_map(Bson::Int64),
        prop_oneof![
            Just(1.0),
            Just(-0.0),
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            any::<f64>()
        ]
        .prop_map(Bson::Double),
        any::<[u8; 16]>().prop_map(|b| Bson::Decimal128(Decimal128::from_bytes(b))),
    ];
    let others = prop_oneof![
        "[^\\x00]{0,8}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
        Just(Bson::Null),
        binary(),
        any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
        // Mostly years 1 to 9999, which every server stores (SecantusDB no others).
        prop_oneof![9 => -62_135_596_800_000i64..253_402_300_800_000, 1 => any::<i64>()]
            .prop_map(|m| Bson::DateTime(DateTime::from_millis(m))),
        (any::<u32>(), any::<u32>())
            .prop_map(|(time, increment)| Bson::Timestamp(Timestamp { time, increment })),
        ("[^\\x00]{0,4}", "[imsux]{0,3}")
            .prop_map(|(pattern, options)| { Bson::RegularExpression(Regex { pattern, options }) }),
        "[a-z]{0,4}".prop_map(Bson::Symbol),
        "[a-z]{0,4}".prop_map(Bson::JavaScriptCode),
        ("[a-z]{0,4}", "[a-z]{1,2}", -2i32..3).prop_map(|(code, name, v)| {
            let mut scope = Document::new();
            scope.insert(name, v);
            Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope { code, scope })
        }),
        prop_oneof![
            Just(Bson::Undefined),
            Just(Bson::MinKey),
            Just(Bson::MaxKey)
        ],
    ];
    prop_oneof![2 => numbers, 3 => others].boxed()
}

/// Binary values of the subtypes that matter: generic, UUID, column (the `b` section's),
/// user-defined.
pub fn binary() -> impl Strategy<Value = Bson> {
    (
        prop::sample::select(vec![0u8, 4, 7, 0x80]),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(subtype, bytes)| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::from(subtype),
                bytes,
            })
        })
}

/// Any value, documents and arrays nested up to [`DEPTH`] levels.
pub fn value() -> BoxedStrategy<Bson> {
    scalar()
        .prop_recursive(DEPTH, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Bson::Array),
                prop::collection::vec((field_name(), inner), 0..5)
                    .prop_map(|fields| Bson::Document(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A stored document: `_id` first, then up to six fields.
pub fn document() -> impl Strategy<Value = Document> {
    prop::collection::vec((field_name(), value()), 0..7).prop_map(|fields| {
        let mut doc = Document::new();
        doc.insert("_id", 1);
        for (name, value) in fields {
            if name != "_id" {
                doc.insert(name, value);
            }
        }
        doc
    })
}

/// A document and `len - 1` successive edits of it (see [`edited`]).
pub fn history(len: usize) -> BoxedStrategy<Vec<Document>> {
    let mut chain = document().prop_map(|d| vec![d]).boxed();
    for _ in 1..len {
        chain = chain
            .prop_flat_map(|docs| {
                let last = docs.last().expect("the chain is never empty");
                (Just(docs.clone()), edited(last))
            })
            .prop_map(|(mut docs, next)| {
                docs.push(next);
                docs
            })
            .boxed();
    }
    chain
}

/// A new version of `doc`, as an update makes it: most values kept, some replaced, removed or
/// appended, a few fields moved to the end (a `$replaceWith` reordering), nested objects and
/// arrays edited in place or truncated and extended. `_id` stays first and unchanged.
pub fn edited(doc: &Document) -> BoxedStrategy<Document> {
    let mut rest = doc.clone();
    let id = rest.remove("_id");
    edit_document(&rest, 0)
        .prop_map(move |edited| {
            let mut out = Document::new();
            if let Some(id) = &id {
                out.insert("_id", id.clone());
            }
            out.extend(edited.into_iter().filter(|(name, _)| name != "_id"));
            out
        })
        .boxed()
}

/// What becomes of one field of an edited document.
#[derive(Clone, Debug)]
enum Fate {
    Stays(Bson),
    Removed,
    MovedToEnd(Bson),
}

fn edit_document(doc: &Document, depth: u32) -> BoxedStrategy<Document> {
    let fields: Vec<BoxedStrategy<(String, Fate)>> = doc
        .iter()
        .map(|(name, value)| {
            let name = name.clone();
            let value = edit_value(value, depth);
            prop_oneof![
                8 => value.clone().prop_map(Fate::Stays),
                1 => Just(Fate::Removed),
                1 => value.prop_map(Fate::MovedToEnd),
            ]
            .prop_map(move |fate| (name.clone(), fate))
            .boxed()
        })
        .collect();
    let added = prop::collection::vec((field_name(), value()), 0..3);
    (fields, added)
        .prop_map(|(fields, added)| {
            let mut out = Document::new();
            let mut moved = Vec::new();
            for (name, fate) in fields {
                match fate {
                    Fate::Stays(v) => {
                        out.insert(name, v);
                    }
                    Fate::Removed => {}
                    Fate::MovedToEnd(v) => moved.push((name, v)),
                }
            }
            out.extend(moved);
            // An added name that exists already replaces the value in place.
            out.extend(added);
            out
        })
        .boxed()
}

fn edit_array(array: &[Bson], depth: u32) -> BoxedStrategy<Vec<Bson>> {
    let elements: Vec<BoxedStrategy<Bson>> = array.iter().map(|v| edit_value(v, depth)).collect();
    (
        elements,
        0..=array.len(),
        prop::collection::vec(value(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(mut elements, keep, appended, truncate)| {
            if truncate {
                elements.truncate(keep);
            } else {
                elements.extend(appended);
            }
            elements
        })
        .boxed()
}

fn edit_value(value: &Bson, depth: u32) -> BoxedStrategy<Bson> {
    let nested = depth < DEPTH;
    match value {
        Bson::Document(d) if nested => prop_oneof![
            4 => edit_document(d, depth + 1).prop_map(Bson::Document),
            1 => self::value(),
        ]
        .boxed(),
        Bson::Array(a) if nested => prop_oneof![
            4 => edit_array(a, depth + 1).prop_map(Bson::Array),
            1 => self::value(),
        ]
        .boxed(),
        _ => prop_oneof![3 => Just(value.clone()), 1 => self::value()].boxed(),
    }
}

/// A new version of `doc` as `$set` of existing fields and `$unset` make one: values replaced
/// by scalars in place, fields removed, objects edited the same way. Nothing moves and nothing
/// is added, so the diff has only `d`, `u` and object sub-diffs: the diffs that translate to
/// update operators.
pub fn retouched(doc: &Document) -> BoxedStrategy<Document> {
    retouch_document(doc, 0)
}

fn retouch_document(doc: &Document, depth: u32) -> BoxedStrategy<Document> {
    let fields: Vec<BoxedStrategy<Option<(String, Bson)>>> = doc
        .iter()
        .map(|(name, value)| {
            let kept = Just(Some((name.clone(), value.clone())));
            if name == "_id" {
                return kept.boxed();
            }
            let named = name.clone();
            let replaced = scalar().prop_map(move |v| Some((named.clone(), v)));
            match value {
                Bson::Document(d) if depth < DEPTH => {
                    let named = name.clone();
                    let edited = retouch_document(d, depth + 1)
                        .prop_map(move |d| Some((named.clone(), Bson::Document(d))));
                    prop_oneof![4 => kept, 1 => replaced, 1 => Just(None), 3 => edited].boxed()
                }
                _ => prop_oneof![4 => kept, 2 => replaced, 1 => Just(None)].boxed(),
            }
        })
        .collect();
    fields
        .prop_map(|fields| fields.into_iter().flatten().collect())
        .boxed()
}
