//! A reference `$v:2` diff generator, independent of `src/oplog/diff.rs`: mongod's diff
//! calculator (`computeDocDiff` and `computeArrayDiff` in
//! `src/mongo/db/update/document_diff_calculator.cpp`), which logs pipeline updates,
//! `$replaceWith` and findAndModify with a pipeline, and is the generator whose diffs use every
//! section and `l`.
//!
//! Its rules, followed here:
//! - Objects are walked in lockstep. Equal fields (name and value bytes) are skipped. Same name:
//!   two objects or two arrays get a sub-diff `s<name>`, anything else an update `u`. Different
//!   names: the pre-image field is a deletion candidate and only the pre-image side advances.
//! - Pre-image fields left over are deleted (`d`), post-image fields left over are inserted (`i`,
//!   in post-image order, which also moves an existing field to the end), and the candidates not
//!   inserted again are deleted, in bytewise name order after the left-over ones.
//! - Arrays are compared index by index: sub-diffs `s<idx>` for two objects or two arrays,
//!   updates `u<idx>` otherwise and for every appended element; a shorter post-image gets
//!   `l: <Int32 length>` right after `a: true`.
//! - A sub-diff not smaller than the value it describes is logged as an update of the whole
//!   value instead (mongod compares an approximate size; the encoded size is used here).
//! - Sections are written `d`, `u`, `i`, then the sub-diffs, each in the order found.
//!
//! mongod logs no entry when nothing changed, and a replacement instead of a diff when the whole
//! diff is not smaller than the post-image; every diff returned here is applied anyway.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};

/// The diff that turns `pre` into `post`, or `None` when they are identical. With `size_limit`,
/// nested sub-diffs that are not smaller than their value become updates, as in mongod.
pub fn doc_diff(pre: &Document, post: &Document, size_limit: bool) -> Option<Document> {
    let diff = object_diff(pre, post, size_limit);
    (!diff.is_empty()).then_some(diff)
}

fn object_diff(pre: &Document, post: &Document, size_limit: bool) -> Document {
    let pre: Vec<(&String, &Bson)> = pre.iter().collect();
    let post: Vec<(&String, &Bson)> = post.iter().collect();
    let (mut d, mut u, mut i, mut s) = (Vec::new(), Document::new(), Document::new(), Vec::new());
    let mut candidates = BTreeSet::new();
    let (mut p, mut q) = (0, 0);
    while p < pre.len() && q < post.len() {
        let ((pre_name, pre_value), (post_name, post_value)) = (pre[p], post[q]);
        if pre_name != post_name {
            candidates.insert(pre_name.as_str());
            p += 1;
            continue;
        }
        if !same_bytes(pre_value, post_value) {
            match sub_diff(pre_value, post_value, size_limit) {
                Some(sub) => s.push((format!("s{pre_name}"), sub)),
                None => {
                    u.insert(post_name, post_value.clone());
                }
            }
        }
        p += 1;
        q += 1;
    }
    d.extend(pre[p..].iter().map(|(name, _)| name.as_str()));
    for (name, value) in &post[q..] {
        i.insert(*name, (*value).clone());
        candidates.remove(name.as_str());
    }
    d.extend(candidates);

    let mut out = Document::new();
    if !d.is_empty() {
        out.insert(
            "d",
            d.iter()
                .map(|n| (n.to_string(), Bson::Boolean(false)))
                .collect::<Document>(),
        );
    }
    for (section, fields) in [("u", u), ("i", i)] {
        if !fields.is_empty() {
            out.insert(section, fields);
        }
    }
    out.extend(s.into_iter().map(|(key, sub)| (key, Bson::Document(sub))));
    out
}

fn array_diff(pre: &[Bson], post: &[Bson], size_limit: bool) -> Document {
    let mut out = doc! { "a": true };
    if post.len() < pre.len() {
        out.insert("l", post.len() as i32);
    }
    for (idx, post_value) in post.iter().enumerate() {
        match pre.get(idx) {
            Some(pre_value) if same_bytes(pre_value, post_value) => {}
            Some(pre_value) => match sub_diff(pre_value, post_value, size_limit) {
                Some(sub) => {
                    out.insert(format!("s{idx}"), sub);
                }
                None => {
                    out.insert(format!("u{idx}"), post_value.clone());
                }
            },
            None => {
                out.insert(format!("u{idx}"), post_value.clone());
            }
        }
    }
    out
}

/// The sub-diff of two objects or two arrays that differ, unless it is too large; `None` means
/// "update the whole value".
fn sub_diff(pre: &Bson, post: &Bson, size_limit: bool) -> Option<Document> {
    let sub = match (pre, post) {
        (Bson::Document(a), Bson::Document(b)) => object_diff(a, b, size_limit),
        (Bson::Array(a), Bson::Array(b)) => array_diff(a, b, size_limit),
        _ => return None,
    };
    let small_enough = encoded_len(&Bson::Document(sub.clone())) < encoded_len(post);
    (!size_limit || small_enough).then_some(sub)
}

/// Whether two values have the same type and bytes (mongod's `binaryEqual`).
fn same_bytes(a: &Bson, b: &Bson) -> bool {
    a.element_type() == b.element_type() && encoded(a) == encoded(b)
}

fn encoded(value: &Bson) -> Vec<u8> {
    RawDocumentBuf::from_document(&doc! { "": value.clone() })
        .expect("random values encode")
        .into_bytes()
}

fn encoded_len(value: &Bson) -> usize {
    encoded(value).len()
}
