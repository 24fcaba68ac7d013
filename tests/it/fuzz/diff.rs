//! The applier against the reference generator: a diff computed between two random documents,
//! applied to the first, gives the second byte for byte (field order and types included), and
//! applying it again changes nothing, as mongod's applier guarantees.

use mongodb::bson::{Document, RawDocumentBuf};
use mongomirror::oplog::diff::DocDiff;
use proptest::prelude::*;

use super::arbitrary::history;
use super::reference::doc_diff;

fn raw(doc: &Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(doc).expect("random documents encode")
}

/// Applies the reference diff from `pre` to `post` with the crate's applier, to `target`.
fn apply(pre: &Document, post: &Document, size_limit: bool, target: &Document) -> Document {
    let Some(diff) = doc_diff(pre, post, size_limit) else {
        return target.clone();
    };
    let diff = raw(&diff);
    let parsed = DocDiff::parse(&diff).unwrap_or_else(|e| panic!("{e}: {diff:?}"));
    parsed
        .apply(target)
        .unwrap_or_else(|e| panic!("{e}: {diff:?} on {target:?}"))
}

fn assert_same_bytes(actual: &Document, expected: &Document, what: &str) {
    assert!(
        raw(actual).as_bytes() == raw(expected).as_bytes(),
        "{what}\n  expected {expected:?}\n  found    {actual:?}"
    );
}

proptest! {
    #![proptest_config(super::config(256))]

    /// The property the issue asks for, and idempotency on the post-image.
    #[test]
    fn a_reference_diff_turns_the_pre_image_into_the_post_image(
        docs in history(2),
        size_limit in any::<bool>(),
    ) {
        let (pre, post) = (&docs[0], &docs[1]);
        if doc_diff(pre, post, size_limit).is_none() {
            assert_same_bytes(pre, post, "no diff, yet the documents differ");
            return Ok(());
        }
        let once = apply(pre, post, size_limit, pre);
        assert_same_bytes(&once, post, "the diff applied to the pre-image");
        let twice = apply(pre, post, size_limit, &once);
        assert_same_bytes(&twice, post, "the diff applied again");
    }

    /// Replay over a fuzzy copy: the diffs of a history, applied in order to any later version
    /// of the document (the copy read it after some of the changes), end at the last version.
    #[test]
    fn a_history_replayed_over_a_later_version_ends_at_the_last_one(
        docs in history(4),
        size_limit in any::<bool>(),
        start in 0usize..4,
    ) {
        let mut doc = docs[start].clone();
        for step in docs.windows(2) {
            doc = apply(&step[0], &step[1], size_limit, &doc);
        }
        assert_same_bytes(&doc, &docs[3], "replay from a later version");
    }
}

/// The keys of a diff at every depth: section names, `s<field>` and array keys.
fn keys(diff: &Document, out: &mut std::collections::BTreeSet<String>) {
    for (key, value) in diff {
        let array = diff.get("a").is_some();
        let kind = match key.as_str() {
            "a" | "l" | "d" | "u" | "i" => key.clone(),
            k if array => format!("{}<idx>", &k[..1]),
            _ => "s<field>".to_string(),
        };
        out.insert(kind);
        if let mongodb::bson::Bson::Document(sub) = value {
            if key.starts_with('s') {
                keys(sub, out);
            }
        }
    }
}

/// The generator is worth its cases: over a few hundred histories, its diffs use every section
/// and every kind of array modification.
#[test]
fn the_reference_diffs_use_every_section() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let docs = history(2)
            .new_tree(&mut runner)
            .expect("a history")
            .current();
        if let Some(diff) = doc_diff(&docs[0], &docs[1], true) {
            keys(&diff, &mut seen);
        }
    }
    let all = ["a", "d", "i", "l", "s<field>", "s<idx>", "u", "u<idx>"];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
}
