//! The worked examples of mongod's applier, the grammar errors it rejects, and idempotency.

use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document, RawDocumentBuf};

use super::*;

fn raw(d: Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(&d).expect("test documents serialize")
}

/// Byte-for-byte equality: field order at every depth and value types count.
fn assert_exact(actual: &Document, expected: &Document, what: &str) {
    assert!(
        raw(actual.clone()).as_bytes() == raw(expected.clone()).as_bytes(),
        "{what}:\n  expected {expected:?}\n  found    {actual:?}"
    );
}

/// Applies `diff` to `pre`, checks the result, and checks that applying it again changes nothing.
fn check(pre: Document, diff: Document, post: Document) {
    let diff = raw(diff);
    let parsed = DocDiff::parse(&diff).expect("diff parses");
    let once = parsed.apply(&pre).expect("diff applies");
    assert_exact(&once, &post, "wrong post-image");
    let twice = parsed.apply(&once).expect("diff re-applies");
    assert_exact(&twice, &post, "re-applying the diff is not idempotent");
}

fn rejects(diff: Document, why: &str) {
    let diff = raw(diff);
    let err = DocDiff::parse(&diff).expect_err("diff must be rejected");
    assert!(err.to_string().contains(why), "{err}");
}

#[test]
fn flat_delete_update_insert() {
    check(
        doc! {"_id": 1, "a": 1, "b": 2, "c": 3},
        doc! {"d": {"b": false}, "u": {"a": 10}, "i": {"n": "x"}},
        doc! {"_id": 1, "a": 10, "c": 3, "n": "x"},
    );
}

#[test]
fn nested_object_sub_diffs() {
    check(
        doc! {"_id": 1, "prof": {"name": "A", "addr": {"city": "X", "zip": "1"}}},
        doc! {"sprof": {"i": {"tags": 1}, "saddr": {"d": {"zip": false}, "u": {"city": "Y"}}}},
        doc! {"_id": 1, "prof": {"name": "A", "addr": {"city": "Y"}, "tags": 1}},
    );
}

#[test]
fn array_element_update_append_and_sub_diff() {
    check(
        doc! {"arr": [{"q": 1}, {"q": 2}, 5]},
        doc! {"sarr": {"a": true, "s1": {"u": {"q": 3}}, "u2": 6, "u3": 7}},
        doc! {"arr": [{"q": 1}, {"q": 3}, 6, 7]},
    );
}

#[test]
fn nested_arrays() {
    check(
        doc! {"a": [1, 2, 3, {"b": [{"c": 1}]}, 5]},
        doc! {"sa": {"a": true, "s3": {"sb": {"a": true, "s0": {"u": {"c": 999}}}}}},
        doc! {"a": [1, 2, 3, {"b": [{"c": 999}]}, 5]},
    );
}

#[test]
fn truncation_with_modification() {
    check(
        doc! {"a": [1, {"b": 10}, 3]},
        doc! {"sa": {"a": true, "l": 2, "s1": {"u": {"b": 9}}}},
        doc! {"a": [1, {"b": 9}]},
    );
    check(
        doc! {"a": [1, 2, 3]},
        doc! {"sa": {"a": true, "l": 0}},
        doc! {"a": []},
    );
}

#[test]
fn growth_pads_with_null() {
    check(
        doc! {"a": [0]},
        doc! {"sa": {"a": true, "u3": 1}},
        doc! {"a": [0, Bson::Null, Bson::Null, 1]},
    );
    check(
        doc! {"a": [7]},
        doc! {"sa": {"a": true, "l": 3}},
        doc! {"a": [7, Bson::Null, Bson::Null]},
    );
    // A sub-diff of an element that does not exist appends null.
    check(
        doc! {"a": [7]},
        doc! {"sa": {"a": true, "s1": {"u": {"x": 1}}}},
        doc! {"a": [7, Bson::Null]},
    );
}

#[test]
fn insert_moves_existing_fields_to_the_end_in_diff_order() {
    check(
        doc! {"_id": 1, "x": 1, "y": 2, "z": 3},
        doc! {"i": {"z": 3, "y": 2, "x": 1}},
        doc! {"_id": 1, "z": 3, "y": 2, "x": 1},
    );
}

#[test]
fn updates_of_missing_fields_come_before_inserts() {
    check(
        doc! {"_id": 1, "a": 1},
        doc! {"u": {"b": 2, "a": 5}, "i": {"c": 3}},
        doc! {"_id": 1, "a": 5, "b": 2, "c": 3},
    );
}

#[test]
fn type_mismatch_nulls_and_missing_field_is_a_no_op() {
    check(
        doc! {"_id": 1, "o": 5, "arr": {"k": 1}},
        doc! {"so": {"u": {"x": 1}}, "sarr": {"a": true, "u0": 1}, "smissing": {"u": {"x": 1}}},
        doc! {"_id": 1, "o": Bson::Null, "arr": Bson::Null},
    );
}

#[test]
fn numeric_keys_of_objects_are_field_names() {
    // The time-series bucket capture (oplog-samples line 17): "129" is an object key.
    check(
        doc! {"_id": 1, "control": {"max": {"ts": 1}}, "data": {"ts": {"0": 1}}},
        doc! {"scontrol": {"smax": {"u": {"ts": 2}}}, "sdata": {"sts": {"i": {"129": 2}}}},
        doc! {"_id": 1, "control": {"max": {"ts": 2}}, "data": {"ts": {"0": 1, "129": 2}}},
    );
}

#[test]
fn sub_diff_of_a_field_named_s() {
    // Field "sfoo" is addressed as "ssfoo"; field "" as "s".
    check(
        doc! {"sfoo": {"a": 1}, "": {"b": 1}},
        doc! {"ssfoo": {"u": {"a": 2}}, "s": {"u": {"b": 2}}},
        doc! {"sfoo": {"a": 2}, "": {"b": 2}},
    );
}

#[test]
fn mongoshake_capture() {
    // oplog-samples line 29: d + i + array sub-diffs + object sub-diffs.
    check(
        doc! {
            "_id": 1, "info": "gone",
            "arrname": [{"count": 1, "nm": "a"}, {"count": 2}],
            "nestobj": {"m1": {"n": 1, "k": 2}, "n1": {"0": 1}},
        },
        doc! {
            "d": {"info": false}, "i": {"extra": "c"},
            "sarrname": {"a": true, "s0": {"u": {"count": 5, "nm": "c"}, "i": {"extra": "ps"}},
                         "s1": {"u": {"count": 6}}},
            "snestobj": {"sm1": {"d": {"n": false}}, "sn1": {"i": {"1": 2}}},
        },
        doc! {
            "_id": 1,
            "arrname": [{"count": 5, "nm": "c", "extra": "ps"}, {"count": 6}],
            "nestobj": {"m1": {"k": 2}, "n1": {"0": 1, "1": 2}},
            "extra": "c",
        },
    );
}

#[test]
fn binary_section_splices_and_keeps_subtype() {
    let bin = |b: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Column,
            bytes: b.to_vec(),
        })
    };
    let patch = |o: i32, d: &[u8]| {
        doc! {"o": o, "d": Binary { subtype: BinarySubtype::Generic, bytes: d.to_vec() }}
    };
    let diff = raw(doc! {"b": {"temp": patch(2, b"def")}});
    let parsed = DocDiff::parse(&diff).unwrap();
    assert_eq!(
        parsed.apply(&doc! {"temp": bin(b"abc")}).unwrap(),
        doc! {"temp": bin(b"abdef")}
    );
    let diff = raw(doc! {"b": {"temp": patch(3, b"def")}});
    assert_eq!(
        DocDiff::parse(&diff)
            .unwrap()
            .apply(&doc! {"temp": bin(b"abc")})
            .unwrap(),
        doc! {"temp": bin(b"abcdef")}
    );
}

/// mongod's `Binary` case in `document_diff_applier.cpp` and its applier test
/// `BinaryIsIdempotentMultipleWithShrink`: an offset inside the value or at its end splices, an
/// offset past its end leaves the value unchanged, so that a replay over a newer copy changes
/// nothing.
#[test]
fn binary_patch_past_the_end_leaves_the_value_unchanged() {
    let bin = |b: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Column,
            bytes: b.to_vec(),
        })
    };
    let apply = |pre: &[u8], o: i32, d: &[u8]| {
        let data = Binary {
            subtype: BinarySubtype::Generic,
            bytes: d.to_vec(),
        };
        let diff = raw(doc! {"b": {"col": {"o": o, "d": data}}});
        DocDiff::parse(&diff)
            .unwrap()
            .apply(&doc! {"_id": 1, "col": bin(pre), "z": 1})
            .unwrap()
    };
    let expect = |b: &[u8]| doc! {"_id": 1, "col": bin(b), "z": 1};
    // Inside, at the start, at the end.
    assert_eq!(apply(b"abcdef", 1, b"x"), expect(b"ax"));
    assert_eq!(apply(b"abc", 0, b"xy"), expect(b"xy"));
    assert_eq!(apply(b"abc", 3, b"def"), expect(b"abcdef"));
    assert_eq!(apply(b"", 0, b""), expect(b""));
    // Past the end: unchanged, whatever the data.
    assert_eq!(apply(b"ax", 3, b"def"), expect(b"ax"));
    assert_eq!(apply(b"", 1, b"d"), expect(b""));
    assert_eq!(apply(b"abc", i32::MAX, b""), expect(b"abc"));
    // The append ("abc" -> "abcdef") then the shrink ("abcdef" -> "ax"), replayed over "ax".
    assert_eq!(apply(b"ax", 3, b"def"), expect(b"ax"));
    assert_eq!(apply(b"ax", 1, b"x"), expect(b"ax"));
}

#[test]
fn grammar_errors() {
    rejects(doc! {}, "empty");
    rejects(doc! {"u": {"a": 1}, "d": {"b": false}}, "out of order");
    rejects(doc! {"x": {"a": 1}}, "unknown section 'x'");
    rejects(doc! {"u": 5}, "not an object");
    rejects(doc! {"u": {"a": 1}, "d": {}}, "out of order");
    rejects(doc! {"u": {"a": 1}, "i": {"a": 2}}, "two sections");
    rejects(doc! {"sa": {"a": false}}, "must start with");
    rejects(doc! {"sa": {"u0": 1, "a": true}}, "unknown section 'u0'");
    rejects(doc! {"sa": {"a": true, "l": 2_i64}}, "Int32");
    rejects(doc! {"sa": {"a": true, "u0": 1, "l": 2}}, "right after 'a'");
    rejects(doc! {"sa": {"a": true, "u2": 1, "u1": 1}}, "out of order");
    rejects(doc! {"sa": {"a": true, "x1": 1}}, "u<index>");
    rejects(doc! {"sa": {"a": true, "u-1": 1}}, "u<index>");
    rejects(doc! {"sa": {"a": true, "u99999999999": 1}}, "16 MB");
}

/// Found by `fuzz::parser`: an array-diff key starting with a multi-byte character made the
/// parser split it inside that character and panic.
#[test]
fn array_diff_keys_starting_with_a_multi_byte_character_are_rejected() {
    rejects(doc! {"sa": {"a": true, "¡": 1}}, "'¡' is not u<index>");
    rejects(doc! {"sa": {"a": true, "é1": 1}}, "'é1' is not u<index>");
    rejects(
        doc! {"sa": {"a": true, "l": 1, "\u{10ec64}": 1}},
        "is not u<index>",
    );
    rejects(doc! {"sa": {"a": true, "": 1}}, "'' is not u<index>");
}

#[test]
fn array_diff_beyond_its_own_length_is_an_error() {
    let diff = raw(doc! {"sa": {"a": true, "l": 1, "u3": 1}});
    let parsed = DocDiff::parse(&diff).unwrap();
    let err = parsed.apply(&doc! {"a": [1, 2]}).unwrap_err();
    assert!(err.to_string().contains("past its new length"), "{err}");
}

fn fields(pre: Document, diff: Document, post: Document) {
    let diff = raw(diff);
    assert!(FieldChanges::is_shape_of(&diff));
    let parsed = FieldChanges::parse(&diff).expect("parses");
    let out = parsed.apply(&pre).expect("applies");
    assert_exact(&out, &post, "wrong post-image");
    assert_exact(&parsed.apply(&out).unwrap(), &post, "not idempotent");
}

#[test]
fn change_stream_shape() {
    fields(
        doc! {"_id": 1, "a": 1, "b": {"c": 1}, "arr": [1, 2, 3, 4], "gone": 1},
        doc! {
            "updatedFields": {"a": 2, "b.c": 5, "b.d": 6, "arr.1": 20, "new": {"x": 1}},
            "removedFields": ["gone"],
            "truncatedArrays": [{"field": "arr", "newSize": 2}],
        },
        doc! {"_id": 1, "a": 2, "b": {"c": 5, "d": 6}, "arr": [1, 20], "new": {"x": 1}},
    );
    // Appending past the end pads with null; unsetting an element nulls it.
    fields(
        doc! {"_id": 1, "arr": [1, 2]},
        doc! {"updatedFields": {"arr.3": 4}, "removedFields": ["arr.0"], "truncatedArrays": []},
        doc! {"_id": 1, "arr": [Bson::Null, 2, Bson::Null, 4]},
    );
    // Numeric keys of objects stay field names.
    fields(
        doc! {"_id": 1, "o": {"0": 1}},
        doc! {"updatedFields": {"o.1": 2}},
        doc! {"_id": 1, "o": {"0": 1, "1": 2}},
    );
}

/// Found by `fuzz::live`: SecantusDB adds `disambiguatedPaths` when a path holds a numeric field
/// name, and the whole entry was refused.
#[test]
fn change_stream_shape_with_disambiguated_paths() {
    fields(
        doc! {"_id": 1, "n": {"0": [1, 2]}, "arr": [{"1": 1}]},
        doc! {
            "updatedFields": {"n.0.1": 5, "arr.0.1": 2},
            "removedFields": [], "truncatedArrays": [],
            "disambiguatedPaths": {"n.0.1": ["n", "0", 1], "arr.0.1": ["arr", 0, "1"]},
        },
        doc! {"_id": 1, "n": {"0": [1, 5]}, "arr": [{"1": 2}]},
    );
    let diff = raw(doc! {"updatedFields": {"a": 1}, "disambiguatedPaths": [1]});
    assert!(FieldChanges::parse(&diff).is_err());
}

/// Found by `fuzz::live`, replaying over a destination in a later state: a path that names a
/// field where an array now stands is ignored (a later entry settles it), where it stopped
/// replay. An index too large for any document is still an error.
#[test]
fn change_stream_paths_through_an_array_by_name_are_ignored() {
    fields(
        doc! {"_id": 1, "sub": [1, 2], "o": {"a": [3]}},
        doc! {"updatedFields": {"sub.arr.1": 5, "o.a.x": 1, "n": 1}},
        doc! {"_id": 1, "sub": [1, 2], "o": {"a": [3]}, "n": 1},
    );
    let diff = raw(doc! {"updatedFields": {"sub.99999999999": 1}});
    let err = FieldChanges::parse(&diff)
        .unwrap()
        .apply(&doc! {"sub": []})
        .unwrap_err();
    assert!(err.to_string().contains("16 MB"), "{err}");
}

#[test]
fn change_stream_shape_errors() {
    let diff = raw(doc! {"updatedFields": 1});
    assert!(FieldChanges::parse(&diff).is_err());
    let diff = raw(doc! {"removedFields": [1]});
    assert!(FieldChanges::parse(&diff).is_err());
    let diff = raw(doc! {"truncatedArrays": [{"field": "a"}]});
    assert!(FieldChanges::parse(&diff).is_err());
    assert!(!FieldChanges::is_shape_of(&raw(doc! {"u": {"a": 1}})));
}

fn operators(diff: Document) -> Option<(Document, Document)> {
    let diff = raw(diff);
    let ops = if FieldChanges::is_shape_of(&diff) {
        FieldChanges::parse(&diff).unwrap().to_operators()
    } else {
        DocDiff::parse(&diff).unwrap().to_operators()
    };
    ops.map(|o| (o.set, o.unset))
}

#[test]
fn simple_diffs_translate_to_operators() {
    assert_eq!(
        operators(
            doc! {"d": {"c": false}, "u": {"a": 1, "b": 2}, "sprof": {"u": {"x": 1}, "saddr": {"d": {"zip": false}}}}
        ),
        Some((
            doc! {"a": 1, "b": 2, "prof.x": 1},
            doc! {"c": "", "prof.addr.zip": ""}
        ))
    );
    // Top-level numeric names are field names.
    assert_eq!(
        operators(doc! {"u": {"129": 1}}),
        Some((doc! {"129": 1}, doc! {}))
    );
    assert_eq!(
        operators(doc! {
            "updatedFields": {"a": 1, "b.c": 2, "b.d": 3, "x.b": 1, "y.a": 1},
            "removedFields": ["e"], "truncatedArrays": [],
        }),
        Some((
            doc! {"a": 1, "b.c": 2, "b.d": 3, "x.b": 1, "y.a": 1},
            doc! {"e": ""}
        ))
    );
}

#[test]
fn diffs_that_need_the_document_do_not_translate() {
    for diff in [
        doc! {"i": {"a": 1}},
        doc! {"u": {"b": 1, "a": 2}},
        doc! {"sa": {"a": true, "u0": 1}},
        doc! {"so": {"u": {"1": 2}}},
        doc! {"so": {"s1": {"u": {"x": 2}}}},
        doc! {"u": {"a.b": 1}},
        doc! {"u": {"$a": 1}},
        doc! {"updatedFields": {"b": 1, "a": 1}},
        doc! {"updatedFields": {"arr.1": 1}},
        doc! {"updatedFields": {"a": 1}, "truncatedArrays": [{"field": "arr", "newSize": 1}]},
        doc! {"removedFields": ["arr.0"]},
    ] {
        assert_eq!(operators(diff.clone()), None, "{diff:?}");
    }
}
