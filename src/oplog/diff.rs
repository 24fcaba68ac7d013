//! Partial updates replayed exactly, by computing the new document on this side.
//!
//! A `u` entry that is not a full replacement describes a change relative to the document as it
//! was on the source. There are three shapes:
//!
//! - the `$v:2` doc-diff of mongod 5.0+ ([`DocDiff`]): `d`/`u`/`i`/`b` sections and `s<field>`
//!   sub-diffs, with array diffs (`a`, `l`, `u<idx>`, `s<idx>`);
//! - the change-stream shape written by SecantusDB ([`FieldChanges`]): `updatedFields`,
//!   `removedFields` and `truncatedArrays`, addressed by dotted paths;
//! - the `$v:1` `$set`/`$unset` modifiers of 4.4, which the destination applies itself (see
//!   [`crate::oplog::apply`]), because an ordinary update with those operators is exactly what
//!   mongod's oplog applier runs for them.
//!
//! The first two are applied here, client-side, to the destination's current copy of the
//! document; the result then replaces that copy by `_id`. Translating them into update operators
//! cannot be exact: `i` moves an existing field to the end, `l` truncation conflicts with element
//! `$set`s, field names may contain dots, and the server's applier writes `null` where operators
//! would fail. This port of mongod's `document_diff_applier` is exact and idempotent: applying a
//! diff to its own post-image yields the post-image again, which is what lets replay start from a
//! fuzzy copy.

use std::collections::HashMap;

use mongodb::bson::raw::{RawArray, RawBinaryRef, RawBsonRef, RawDocument};
use mongodb::bson::{Binary, Bson, Document};

/// The largest array index a diff may address. A BSON array element takes at least 3 bytes, so a
/// 16 MiB document cannot hold more; padding an array up to a larger index would only exhaust
/// memory on a corrupt or hostile entry.
const MAX_ARRAY_LEN: usize = 16 * 1024 * 1024 / 3;

/// How deep diffs and paths may nest; BSON itself allows 100 levels of nesting.
const MAX_DEPTH: usize = 200;

/// Why a diff cannot be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The BSON of the diff itself is malformed.
    #[error("malformed BSON in an update diff: {0}")]
    Bson(#[from] mongodb::bson::raw::Error),
    /// The diff does not follow mongod's doc-diff grammar.
    #[error("invalid $v:2 update diff: {0}")]
    Grammar(String),
    /// The change-stream shaped diff is malformed.
    #[error("invalid change-stream update description: {0}")]
    Fields(String),
}

fn grammar<T>(why: impl Into<String>) -> Result<T, DiffError> {
    Err(DiffError::Grammar(why.into()))
}

/// A parsed `$v:2` document diff, borrowing its values from the oplog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DocDiff<'a> {
    delete: Vec<&'a str>,
    update: Vec<(&'a str, RawBsonRef<'a>)>,
    insert: Vec<(&'a str, RawBsonRef<'a>)>,
    binary: Vec<(&'a str, BinaryPatch<'a>)>,
    sub: Vec<(&'a str, SubDiff<'a>)>,
}

/// An 8.x `b` section entry: cut the binary value at `offset` and append `data` (a value shorter
/// than `offset` is left as it is).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BinaryPatch<'a> {
    offset: usize,
    data: &'a [u8],
}

/// The diff of a nested value: an object or an array.
#[derive(Debug, Clone, PartialEq)]
enum SubDiff<'a> {
    Doc(DocDiff<'a>),
    Array(ArrayDiff<'a>),
}

/// A parsed array diff: an optional new length and modifications by ascending index.
#[derive(Debug, Clone, PartialEq)]
struct ArrayDiff<'a> {
    new_len: Option<usize>,
    mods: Vec<(usize, ArrayMod<'a>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum ArrayMod<'a> {
    Set(RawBsonRef<'a>),
    Sub(SubDiff<'a>),
}

/// What the object-level walk does with one pre-image field.
#[derive(Clone, Copy)]
enum Action {
    Delete,
    Update(usize),
    Insert,
    Binary(usize),
    Sub(usize),
}

impl<'a> DocDiff<'a> {
    /// Parses the `diff` field of a `$v:2` update, checking mongod's grammar rules.
    pub fn parse(diff: &'a RawDocument) -> Result<Self, DiffError> {
        let parsed = Self::parse_at(diff, 0)?;
        if parsed.is_empty() {
            return grammar("the diff is empty");
        }
        Ok(parsed)
    }

    fn is_empty(&self) -> bool {
        self.delete.is_empty()
            && self.update.is_empty()
            && self.insert.is_empty()
            && self.binary.is_empty()
            && self.sub.is_empty()
    }

    fn parse_at(diff: &'a RawDocument, depth: usize) -> Result<Self, DiffError> {
        if depth > MAX_DEPTH {
            return grammar("the diff nests too deeply");
        }
        let mut out = DocDiff {
            delete: Vec::new(),
            update: Vec::new(),
            insert: Vec::new(),
            binary: Vec::new(),
            sub: Vec::new(),
        };
        // Section order d < u < i < b < s..., each at most once (mongod uassert 4770503).
        let mut last_rank = 0u8;
        for item in diff.iter() {
            let (key, value) = item?;
            let rank = match key {
                "d" => 1,
                "u" => 2,
                "i" => 3,
                "b" => 4,
                k if k.starts_with('s') => 5,
                k => return grammar(format!("unknown section '{k}'")),
            };
            if rank < last_rank || (rank == last_rank && rank != 5) {
                return grammar(format!("section '{key}' is out of order or repeated"));
            }
            last_rank = rank;
            if rank == 5 {
                let Some(sub) = value.as_document() else {
                    return grammar(format!("sub-diff '{key}' is not an object"));
                };
                out.sub.push((&key[1..], SubDiff::parse(sub, depth + 1)?));
                continue;
            }
            let Some(section) = value.as_document() else {
                return grammar(format!("section '{key}' is not an object"));
            };
            for field in section.iter() {
                let (name, v) = field?;
                match key {
                    "d" => out.delete.push(name),
                    "u" => out.update.push((name, v)),
                    "i" => out.insert.push((name, v)),
                    _ => out.binary.push((name, BinaryPatch::parse(name, v)?)),
                }
            }
        }
        out.check_distinct()?;
        Ok(out)
    }

    /// The same field in two sections is rejected by mongod (uassert 4728000).
    fn check_distinct(&self) -> Result<(), DiffError> {
        let total = self.delete.len()
            + self.update.len()
            + self.insert.len()
            + self.binary.len()
            + self.sub.len();
        let mut seen = std::collections::HashSet::with_capacity(total);
        let names = self
            .delete
            .iter()
            .copied()
            .chain(self.update.iter().map(|(n, _)| *n))
            .chain(self.insert.iter().map(|(n, _)| *n))
            .chain(self.binary.iter().map(|(n, _)| *n))
            .chain(self.sub.iter().map(|(n, _)| *n));
        for name in names {
            if !seen.insert(name) {
                return grammar(format!("field '{name}' appears in two sections"));
            }
        }
        Ok(())
    }

    /// The post-image: this diff applied to `pre` with mongod's applier semantics.
    pub fn apply(&self, pre: &Document) -> Result<Document, DiffError> {
        let mut actions: HashMap<&str, Action> = HashMap::new();
        actions.extend(self.delete.iter().map(|n| (*n, Action::Delete)));
        actions.extend(
            self.update
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (*n, Action::Update(i))),
        );
        actions.extend(self.insert.iter().map(|(n, _)| (*n, Action::Insert)));
        actions.extend(
            self.binary
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (*n, Action::Binary(i))),
        );
        actions.extend(
            self.sub
                .iter()
                .enumerate()
                .map(|(i, (n, _))| (*n, Action::Sub(i))),
        );

        let mut updated_in_place = vec![false; self.update.len()];
        let mut out = Document::new();
        for (name, value) in pre {
            match actions.get(name.as_str()) {
                None => {
                    out.insert(name.clone(), value.clone());
                }
                // Deleted fields vanish; inserted ones are appended after the walk.
                Some(Action::Delete) | Some(Action::Insert) => {}
                Some(Action::Update(i)) => {
                    updated_in_place[*i] = true;
                    out.insert(name.clone(), to_bson(self.update[*i].1)?);
                }
                Some(Action::Binary(i)) => {
                    out.insert(name.clone(), self.binary[*i].1.apply(value));
                }
                Some(Action::Sub(i)) => {
                    out.insert(name.clone(), self.sub[*i].1.apply(value)?);
                }
            }
        }
        for ((name, value), done) in self.update.iter().zip(updated_in_place) {
            if !done {
                out.insert(*name, to_bson(*value)?);
            }
        }
        for (name, value) in &self.insert {
            out.insert(*name, to_bson(*value)?);
        }
        Ok(out)
    }
}

impl<'a> BinaryPatch<'a> {
    fn parse(name: &str, value: RawBsonRef<'a>) -> Result<Self, DiffError> {
        let bad = || {
            grammar(format!(
                "binary patch of '{name}' is not {{o: <offset>, d: <BinData>}}"
            ))
        };
        let Some(patch) = value.as_document() else {
            return bad();
        };
        let offset = match patch.get("o")? {
            Some(RawBsonRef::Int32(n)) if n >= 0 => n as usize,
            Some(RawBsonRef::Int64(n)) if n >= 0 => n as usize,
            _ => return bad(),
        };
        let Some(RawBsonRef::Binary(RawBinaryRef { bytes, .. })) = patch.get("d")? else {
            return bad();
        };
        Ok(BinaryPatch {
            offset,
            data: bytes,
        })
    }

    /// Splices the patch into a binary value, keeping its subtype: the bytes before `offset`,
    /// then `data`. An offset past the end leaves the value unchanged, as mongod's applier does
    /// (`DiffApplier::applyDiffToObject` in `src/mongo/db/update/document_diff_applier.cpp`,
    /// the `Binary` case: `if (currLen >= diffOffset) { splice } else { builder->append(elt); }`,
    /// "we are re-applying this diff and some future oplog entry will shrink this binary").
    /// That keeps a replay over a newer copy idempotent. Any other type becomes `null`, like
    /// every other type mismatch in the applier.
    fn apply(&self, value: &Bson) -> Bson {
        match value {
            Bson::Binary(b) if self.offset > b.bytes.len() => value.clone(),
            Bson::Binary(b) => {
                let mut bytes = b.bytes[..self.offset].to_vec();
                bytes.extend_from_slice(self.data);
                Bson::Binary(Binary {
                    subtype: b.subtype,
                    bytes,
                })
            }
            _ => Bson::Null,
        }
    }
}

impl<'a> SubDiff<'a> {
    /// A sub-diff whose first key is `a` is an array diff; anything else is a document diff.
    fn parse(diff: &'a RawDocument, depth: usize) -> Result<Self, DiffError> {
        match diff.iter().next().transpose()? {
            Some(("a", _)) => ArrayDiff::parse(diff, depth).map(SubDiff::Array),
            _ => DocDiff::parse_at(diff, depth).map(SubDiff::Doc),
        }
    }

    /// Applies to a nested value; a type mismatch yields `null` (mongod's idempotency guard: a
    /// later entry is expected to overwrite the field).
    fn apply(&self, value: &Bson) -> Result<Bson, DiffError> {
        Ok(match (self, value) {
            (SubDiff::Doc(d), Bson::Document(doc)) => Bson::Document(d.apply(doc)?),
            (SubDiff::Array(a), Bson::Array(arr)) => Bson::Array(a.apply(arr)?),
            _ => Bson::Null,
        })
    }
}

impl<'a> ArrayDiff<'a> {
    fn parse(diff: &'a RawDocument, depth: usize) -> Result<Self, DiffError> {
        let mut items = diff.iter();
        match items.next().transpose()? {
            Some(("a", RawBsonRef::Boolean(true))) => {}
            _ => return grammar("an array diff must start with \"a\": true"),
        }
        let mut out = ArrayDiff {
            new_len: None,
            mods: Vec::new(),
        };
        let mut first = true;
        for item in items {
            let (key, value) = item?;
            if key == "l" {
                if !first {
                    return grammar("'l' must come right after 'a' in an array diff");
                }
                let Some(len) = value.as_i32().filter(|n| *n >= 0) else {
                    return grammar("'l' in an array diff must be a non-negative Int32");
                };
                out.new_len = Some(checked_len(len as usize)?);
                first = false;
                continue;
            }
            first = false;
            let not_a_mod = || grammar(format!("'{key}' is not u<index> or s<index>"));
            // `split_at_checked`: a key may start with a multi-byte character.
            let Some((kind, index)) = key.split_at_checked(1) else {
                return not_a_mod();
            };
            let index: usize = match index.parse() {
                Ok(i) if !index.starts_with('+') => checked_len(i)?,
                _ => return not_a_mod(),
            };
            if out.mods.last().is_some_and(|(last, _)| *last >= index) {
                return grammar(format!("array index {index} is out of order"));
            }
            let modification = match kind {
                "u" => ArrayMod::Set(value),
                "s" => {
                    let Some(sub) = value.as_document() else {
                        return grammar(format!("array sub-diff '{key}' is not an object"));
                    };
                    ArrayMod::Sub(SubDiff::parse(sub, depth + 1)?)
                }
                _ => return not_a_mod(),
            };
            out.mods.push((index, modification));
        }
        Ok(out)
    }

    /// mongod's array applier: modify in place up to the new length, truncate, then append
    /// modifications past the end, padding gaps with `null`.
    fn apply(&self, pre: &[Bson]) -> Result<Vec<Bson>, DiffError> {
        let mut mods = self.mods.iter().peekable();
        let mut out = Vec::with_capacity(self.new_len.unwrap_or(pre.len()));
        for (idx, element) in pre.iter().enumerate() {
            if self.new_len.is_some_and(|len| idx >= len) {
                break;
            }
            match mods.next_if(|(i, _)| *i == idx) {
                Some((_, ArrayMod::Set(v))) => out.push(to_bson(*v)?),
                Some((_, ArrayMod::Sub(sub))) => out.push(sub.apply(element)?),
                None => out.push(element.clone()),
            }
        }
        let mut idx = out.len();
        while self.new_len.is_some_and(|len| idx < len) || mods.peek().is_some() {
            match mods.next_if(|(i, _)| *i == idx) {
                Some((_, ArrayMod::Set(v))) => out.push(to_bson(*v)?),
                // A sub-diff of a missing element, or a gap: mongod appends null.
                Some((_, ArrayMod::Sub(_))) | None => out.push(Bson::Null),
            }
            idx += 1;
        }
        if let Some(len) = self.new_len {
            if out.len() != len {
                return grammar(format!(
                    "the array diff modifies elements past its new length {len}"
                ));
            }
        }
        Ok(out)
    }
}

fn checked_len(n: usize) -> Result<usize, DiffError> {
    if n > MAX_ARRAY_LEN {
        return grammar(format!(
            "array index or length {n} cannot occur in a 16 MB document"
        ));
    }
    Ok(n)
}

fn to_bson(value: RawBsonRef<'_>) -> Result<Bson, DiffError> {
    Ok(Bson::try_from(value)?)
}

/// `$set`/`$unset` operators with exactly a diff's effect, for the common diffs where that holds.
///
/// Sending operators spares the read of the document that client-side application needs. They
/// are exact on a document in the state the diff was logged against: fields in `u` exist (or,
/// when missing, are created at the end in the same order, which `ascending` guarantees),
/// sub-diffs reach objects, and names are plain. Where the destination holds another state
/// (a fuzzy copy still catching up), a sub-diff meeting a scalar makes the server refuse the
/// update, and the caller falls back to client-side application; any other difference is one
/// that later entries of the source overwrite anyway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operators {
    /// `$set` paths and values.
    pub set: Document,
    /// `$unset` paths.
    pub unset: Document,
}

impl Operators {
    /// The update document, or `None` when there is nothing to send.
    pub fn into_update(self) -> Option<Document> {
        let mut update = Document::new();
        if !self.set.is_empty() {
            update.insert("$set", self.set);
        }
        if !self.unset.is_empty() {
            update.insert("$unset", self.unset);
        }
        (!update.is_empty()).then_some(update)
    }
}

impl DocDiff<'_> {
    /// The diff as operators, when that is exact: only `u`/`d` sections and object sub-diffs,
    /// `u` names in ascending order, plain field names. `None` otherwise: `i` (which moves
    /// fields), arrays (`l`, element padding, element type checks) and `b` need the document.
    pub fn to_operators(&self) -> Option<Operators> {
        let mut ops = Operators::default();
        self.collect(None, &mut ops)?;
        Some(ops)
    }

    fn collect(&self, prefix: Option<&str>, ops: &mut Operators) -> Option<()> {
        if !self.insert.is_empty() || !self.binary.is_empty() {
            return None;
        }
        if !ascending(self.update.iter().map(|(n, _)| *n)) {
            return None;
        }
        for name in &self.delete {
            ops.unset.insert(join(prefix, name)?, "");
        }
        for (name, value) in &self.update {
            ops.set.insert(join(prefix, name)?, to_bson(*value).ok()?);
        }
        for (name, sub) in &self.sub {
            let SubDiff::Doc(diff) = sub else {
                return None;
            };
            diff.collect(Some(&join(prefix, name)?), ops)?;
        }
        Some(())
    }
}

/// `prefix.name`, if `name` is addressed by a dotted path without ambiguity: not empty, no dot,
/// no leading `$`, and below the top level not all digits (that would address an array element
/// if an array stood there).
fn join(prefix: Option<&str>, name: &str) -> Option<String> {
    let plain = !name.is_empty() && !name.contains('.') && !name.starts_with('$');
    let numeric = prefix.is_some() && name.bytes().all(|b| b.is_ascii_digit());
    if !plain || numeric {
        return None;
    }
    Some(match prefix {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    })
}

/// Whether names are strictly ascending bytewise: then fields that `$set` creates (in sorted
/// order) land in the order the diff lists them.
fn ascending<'n>(mut names: impl Iterator<Item = &'n str>) -> bool {
    let Some(mut last) = names.next() else {
        return true;
    };
    for name in names {
        if name.as_bytes() <= last.as_bytes() {
            return false;
        }
        last = name;
    }
    true
}

/// The change-stream shaped diff that SecantusDB writes in `$v:2` updates:
/// `{updatedFields: {<path>: <value>}, removedFields: [<path>], truncatedArrays: [{field, newSize}]}`.
///
/// Paths are dotted; a numeric component addresses an array element when the value there is an
/// array, and a field otherwise. Field names that themselves contain dots cannot be told apart,
/// which is a limit of this shape, not of the applier. A path with a numeric field name also
/// comes with its typed segments in `disambiguatedPaths` (mongod 6.1+ change events); like
/// SecantusDB's own replay, the applier reads the same answer from the document it applies to,
/// so that section is checked for its type and otherwise ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChanges<'a> {
    updated: Vec<(&'a str, RawBsonRef<'a>)>,
    removed: Vec<&'a str>,
    truncated: Vec<(&'a str, usize)>,
}

impl<'a> FieldChanges<'a> {
    /// Whether a `diff` document has the change-stream shape rather than mongod's doc-diff.
    /// The two cannot be confused: doc-diff section keys are one letter or start with `s`.
    pub fn is_shape_of(diff: &RawDocument) -> bool {
        diff.iter().any(|item| {
            matches!(
                item,
                Ok(("updatedFields" | "removedFields" | "truncatedArrays", _))
            )
        })
    }

    /// Parses the change-stream shape.
    pub fn parse(diff: &'a RawDocument) -> Result<Self, DiffError> {
        let bad = |why: &str| Err(DiffError::Fields(why.to_string()));
        let mut out = FieldChanges {
            updated: Vec::new(),
            removed: Vec::new(),
            truncated: Vec::new(),
        };
        for item in diff.iter() {
            let (key, value) = item?;
            match (key, value) {
                ("updatedFields", RawBsonRef::Document(d)) => {
                    for field in d.iter() {
                        out.updated.push(field?);
                    }
                }
                ("removedFields", RawBsonRef::Array(a)) => {
                    for path in a.into_iter() {
                        match path? {
                            RawBsonRef::String(p) => out.removed.push(p),
                            _ => return bad("removedFields holds a non-string"),
                        }
                    }
                }
                ("truncatedArrays", RawBsonRef::Array(a)) => {
                    out.truncated = parse_truncations(a)?;
                }
                ("disambiguatedPaths", RawBsonRef::Document(_)) => {}
                _ => return bad(&format!("unexpected field '{key}' or wrong type")),
            }
        }
        Ok(out)
    }

    /// The post-image: truncations first (they only shorten arrays, and the updated elements lie
    /// below the new sizes), then updates in their order (new fields append in that order), then
    /// removals.
    pub fn apply(&self, pre: &Document) -> Result<Document, DiffError> {
        let mut doc = pre.clone();
        for (path, len) in &self.truncated {
            if let Some(Bson::Array(arr)) = lookup_mut(&mut doc, path) {
                arr.truncate(*len);
            }
        }
        for (path, value) in &self.updated {
            let components: Vec<&str> = path.split('.').collect();
            if components.len() > MAX_DEPTH {
                return Err(DiffError::Fields(format!("path '{path}' nests too deeply")));
            }
            set_path(&mut doc, &components, to_bson(*value)?)?;
        }
        for path in &self.removed {
            let components: Vec<&str> = path.split('.').collect();
            unset_path(&mut doc, &components);
        }
        Ok(doc)
    }
}

impl FieldChanges<'_> {
    /// The changes as operators, when that is exact (see [`Operators`]): no truncation, plain
    /// path components with no array index, and the updated names under each parent ascending.
    pub fn to_operators(&self) -> Option<Operators> {
        if !self.truncated.is_empty() {
            return None;
        }
        let mut ops = Operators::default();
        let mut last: HashMap<&str, &str> = HashMap::new();
        for (path, value) in &self.updated {
            let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
            if last
                .insert(parent, name)
                .is_some_and(|prev| prev.as_bytes() >= name.as_bytes())
            {
                return None;
            }
            ops.set.insert(plain_path(path)?, to_bson(*value).ok()?);
        }
        for path in &self.removed {
            ops.unset.insert(plain_path(path)?, "");
        }
        Some(ops)
    }
}

/// A dotted path whose every component passes [`join`].
fn plain_path(path: &str) -> Option<String> {
    let mut components = path.split('.');
    let mut out = join(None, components.next()?)?;
    for c in components {
        out = join(Some(&out), c)?;
    }
    Some(out)
}

fn parse_truncations(list: &RawArray) -> Result<Vec<(&str, usize)>, DiffError> {
    let mut out = Vec::new();
    for item in list.into_iter() {
        let item = item?;
        let entry = item
            .as_document()
            .ok_or_else(|| DiffError::Fields("truncatedArrays holds a non-object".into()))?;
        let field = entry
            .get_str("field")
            .map_err(|_| DiffError::Fields("truncatedArrays entry has no string 'field'".into()))?;
        let size = match entry.get("newSize")? {
            Some(RawBsonRef::Int32(n)) if n >= 0 => n as usize,
            Some(RawBsonRef::Int64(n)) if n >= 0 => n as usize,
            _ => {
                return Err(DiffError::Fields(
                    "truncatedArrays entry has no non-negative 'newSize'".into(),
                ))
            }
        };
        out.push((field, size));
    }
    Ok(out)
}

/// The value at a dotted path, if every step exists.
fn lookup_mut<'d>(doc: &'d mut Document, path: &str) -> Option<&'d mut Bson> {
    let mut components = path.split('.');
    let mut current = doc.get_mut(components.next()?)?;
    for c in components {
        current = match current {
            Bson::Document(d) => d.get_mut(c)?,
            Bson::Array(a) => a.get_mut(c.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// `$set` semantics for one path: walk existing containers, create missing objects, pad arrays
/// with `null` up to a new index, and replace a scalar in the way by an object (the entry was
/// logged against a document where a container stood there; a later entry settles any
/// difference, as with the doc-diff's `null` rule). A path naming a field where an array stands
/// is ignored (see [`set_in`]).
fn set_path(doc: &mut Document, path: &[&str], value: Bson) -> Result<(), DiffError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        doc.insert(*first, value);
        return Ok(());
    }
    if !matches!(doc.get(*first), Some(Bson::Document(_) | Bson::Array(_))) {
        doc.insert(*first, Document::new());
    }
    match doc.get_mut(*first) {
        Some(child) => set_in(child, rest, value),
        None => Ok(()),
    }
}

fn set_in(container: &mut Bson, path: &[&str], value: Bson) -> Result<(), DiffError> {
    match container {
        Bson::Document(d) => set_path(d, path, value),
        Bson::Array(arr) => {
            let Some((first, rest)) = path.split_first() else {
                return Ok(());
            };
            // A name where an array stands: the entry was logged against a document where an
            // object stood there, and the destination holds a later state of it. As mongod's
            // oplog application does with a `$set` path that is no longer viable, the path is
            // ignored; a later entry settles the field.
            let Ok(idx) = first.parse::<usize>() else {
                return Ok(());
            };
            let idx = checked_len(idx)?;
            if arr.len() <= idx {
                arr.resize(idx + 1, Bson::Null);
            }
            if rest.is_empty() {
                arr[idx] = value;
                return Ok(());
            }
            if !matches!(arr[idx], Bson::Document(_) | Bson::Array(_)) {
                arr[idx] = Bson::Document(Document::new());
            }
            set_in(&mut arr[idx], rest, value)
        }
        _ => Ok(()),
    }
}

/// `$unset` semantics: remove a field; an array element is set to `null`, not removed.
fn unset_path(doc: &mut Document, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = match parents.split_first() {
        None => {
            doc.remove(*last);
            return;
        }
        Some((first, rest)) => {
            let mut current = doc.get_mut(*first);
            for c in rest {
                current = match current {
                    Some(Bson::Document(d)) => d.get_mut(*c),
                    Some(Bson::Array(a)) => c.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                    _ => None,
                };
            }
            current
        }
    };
    match parent {
        Some(Bson::Document(d)) => {
            d.remove(*last);
        }
        Some(Bson::Array(a)) => {
            if let Some(e) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *e = Bson::Null;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
