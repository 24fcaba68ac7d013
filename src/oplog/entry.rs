//! One oplog entry, typed: what it changes, parsed in place from the raw BSON.
//!
//! Parsing borrows from the entry (documents, diffs and `_id` values are never copied) and
//! decides everything that does not depend on the destination: which shape an update has, which
//! command a `c` entry is, whether an entry belongs to a transaction, and which entries are never
//! replayed (no-ops, internal namespaces, `fromMigrate`, index-build bookkeeping). Anything this
//! module does not recognise is an error, never a silent skip.
//!
//! The shapes and rules come from the server's oplog IDL and the tools that replay it; see
//! `docs/` for the summary. Field order is never relied on, except where the server defines it:
//! a command's name is the first key of `o`.

use std::fmt;

use mongodb::bson::raw::{RawArray, RawBsonRef, RawDocument};
use mongodb::bson::Timestamp;

use super::diff::{DiffError, DocDiff, FieldChanges};
use crate::cli::Namespace;

/// Why an oplog entry cannot be understood.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The BSON is malformed.
    #[error("malformed BSON: {0}")]
    Bson(#[from] mongodb::bson::raw::Error),
    /// A required field is absent.
    #[error("the entry has no '{0}' field")]
    Missing(&'static str),
    /// A field has the wrong type.
    #[error("field '{field}' is not {expected}")]
    Type {
        /// The field.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// `op` is not one of the known kinds.
    #[error("unknown op type '{0}'")]
    UnknownOp(String),
    /// A command this tool does not know how to replay.
    #[error("unknown oplog command '{0}'")]
    UnknownCommand(String),
    /// `ns` is not `db.collection`.
    #[error("'{0}' is not a namespace")]
    Namespace(String),
    /// An update `o` of no known shape.
    #[error("unrecognised update: {0}")]
    Update(String),
    /// The update diff is malformed.
    #[error(transparent)]
    Diff(#[from] DiffError),
}

type Result<T, E = EntryError> = std::result::Result<T, E>;

/// An oplog position: timestamp and election term (absent on SecantusDB and very old servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTime {
    /// The entry's `ts`.
    pub ts: Timestamp,
    /// The entry's `t`.
    pub term: Option<i64>,
}

/// A top-level oplog entry.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Where the entry sits in the oplog.
    pub optime: OpTime,
    /// What it does.
    pub kind: Kind<'a>,
}

/// What a top-level entry does.
#[derive(Debug)]
pub enum Kind<'a> {
    /// A change applied on its own, at this entry's position.
    Op(Op<'a>),
    /// Part of a multi-document transaction, applied when the transaction commits.
    Txn(Txn<'a>),
}

/// One change. Inner operations of `applyOps` are `Op`s too; they share the outer entry's `ts`.
#[derive(Debug)]
pub enum Op<'a> {
    /// A document was inserted (`o` is the whole document).
    Insert {
        /// Target collection.
        ns: Namespace,
        /// The document, `_id` included.
        doc: &'a RawDocument,
        /// Its `_id`.
        id: RawBsonRef<'a>,
    },
    /// A document was updated.
    Update {
        /// Target collection.
        ns: Namespace,
        /// `o2._id`: the server updates by `_id` only.
        id: RawBsonRef<'a>,
        /// The change.
        update: Update<'a>,
    },
    /// A document was deleted.
    Delete {
        /// Target collection.
        ns: Namespace,
        /// `o._id`.
        id: RawBsonRef<'a>,
    },
    /// DDL.
    Command(Command<'a>),
    /// A non-transaction `applyOps` (batched deletes, vectored inserts, a user's `applyOps`):
    /// its inner operations apply in order at this entry's position.
    ApplyOps(&'a RawArray),
    /// Nothing to replay.
    Skip(Skip),
}

/// The shapes of an update.
#[derive(Debug)]
pub enum Update<'a> {
    /// `o` is the new document (no `$` keys).
    Replace(&'a RawDocument),
    /// `$v:1` (or no `$v`) modifier update: only `$set` and `$unset` ever occur.
    Modifier {
        /// `$set`, if present.
        set: Option<&'a RawDocument>,
        /// `$unset`, if present.
        unset: Option<&'a RawDocument>,
    },
    /// mongod's `$v:2` document diff.
    Diff(DocDiff<'a>),
    /// SecantusDB's `$v:2` change-stream shaped diff.
    Fields(FieldChanges<'a>),
}

impl Update<'_> {
    /// Whether the update carries the whole document (and so may be upserted).
    pub fn is_full_document(&self) -> bool {
        matches!(self, Update::Replace(_))
    }
}

/// An entry that is never replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `op: "n"`, or internal bookkeeping op types (`cd`, `ci`, `cu`, `km`).
    NoOp,
    /// `config.*`, `local.*`, `admin.system.*`, `__mdb_internal*` and `system.*` collections
    /// other than `system.js`, `system.views` and `system.buckets.*`.
    Internal,
    /// Written by chunk migration or another internal mechanism (`fromMigrate: true`).
    FromMigrate,
    /// A command with no effect on data: `startIndexBuild`/`abortIndexBuild` (the
    /// `commitIndexBuild` entry carries the specs), `dbCheck`, `setMultikeyMetadata`, ...
    Bookkeeping(&'static str),
    /// A write to a time-series bucket collection, which ordinary commands cannot replay.
    TimeSeriesBucket(Namespace),
}

/// DDL, including the view definitions that the oplog records as writes to `system.views`.
#[derive(Debug)]
pub enum Command<'a> {
    /// `create`; `o` holds the options next to the name.
    Create {
        /// The new collection.
        ns: Namespace,
        /// The whole `o`, `create` key first.
        o: &'a RawDocument,
    },
    /// `drop`.
    Drop {
        /// The dropped collection.
        ns: Namespace,
    },
    /// `dropDatabase`.
    DropDatabase {
        /// The dropped database.
        db: String,
    },
    /// `renameCollection` (also across databases; mongod logs those as create, copy, rename).
    Rename {
        /// Source.
        from: Namespace,
        /// Target.
        to: Namespace,
        /// Whether an existing target is dropped (`dropTarget` may be a UUID, meaning true).
        drop_target: bool,
    },
    /// `createIndexes` (one inline spec) or `commitIndexBuild` (a list of specs).
    CreateIndexes {
        /// The indexed collection.
        ns: Namespace,
        /// The specs.
        specs: IndexSpecs<'a>,
    },
    /// `dropIndexes` and its legacy spellings.
    DropIndexes {
        /// The collection.
        ns: Namespace,
        /// A name, a key pattern, or `"*"`.
        index: RawBsonRef<'a>,
    },
    /// `collMod`: TTL, hidden, prepareUnique, validator, ...
    CollMod {
        /// The collection or view.
        ns: Namespace,
        /// The whole `o`.
        o: &'a RawDocument,
    },
    /// `convertToCapped`.
    ConvertToCapped {
        /// The collection.
        ns: Namespace,
        /// The whole `o`.
        o: &'a RawDocument,
    },
    /// `emptycapped` (legacy).
    EmptyCapped {
        /// The collection.
        ns: Namespace,
    },
    /// A view was created (an insert into `<db>.system.views`).
    CreateView {
        /// The view.
        ns: Namespace,
        /// `{_id: "db.view", viewOn, pipeline[, collation]}`.
        definition: &'a RawDocument,
    },
    /// A view was modified (an update of `<db>.system.views`).
    ModifyView {
        /// The view.
        ns: Namespace,
        /// The `_id` of the definition.
        id: RawBsonRef<'a>,
        /// The change to the definition.
        update: Update<'a>,
    },
    /// A view was dropped (a delete from `<db>.system.views`).
    DropView {
        /// The view.
        ns: Namespace,
    },
}

impl Command<'_> {
    /// The namespaces the command touches, for the filter. `dropDatabase` has none: it is
    /// filtered collection by collection.
    pub fn namespaces(&self) -> Vec<&Namespace> {
        match self {
            Command::Create { ns, .. }
            | Command::Drop { ns }
            | Command::CreateIndexes { ns, .. }
            | Command::DropIndexes { ns, .. }
            | Command::CollMod { ns, .. }
            | Command::ConvertToCapped { ns, .. }
            | Command::EmptyCapped { ns }
            | Command::CreateView { ns, .. }
            | Command::ModifyView { ns, .. }
            | Command::DropView { ns } => vec![ns],
            Command::Rename { from, to, .. } => vec![from, to],
            Command::DropDatabase { .. } => vec![],
        }
    }

    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create { .. } => "create",
            Command::Drop { .. } => "drop",
            Command::DropDatabase { .. } => "dropDatabase",
            Command::Rename { .. } => "renameCollection",
            Command::CreateIndexes { .. } => "createIndexes",
            Command::DropIndexes { .. } => "dropIndexes",
            Command::CollMod { .. } => "collMod",
            Command::ConvertToCapped { .. } => "convertToCapped",
            Command::EmptyCapped { .. } => "emptycapped",
            Command::CreateView { .. } => "create view",
            Command::ModifyView { .. } => "collMod view",
            Command::DropView { .. } => "drop view",
        }
    }
}

/// Index specs as the two index-creating entries carry them.
#[derive(Debug)]
pub enum IndexSpecs<'a> {
    /// mongod's `createIndexes`: the spec fields sit in `o` after the collection name.
    Inline(&'a RawDocument),
    /// `commitIndexBuild` (and SecantusDB's `createIndexes`): `o.indexes`, possibly several.
    List(&'a RawArray),
}

/// Identifies a transaction: the raw `lsid` (including internal-session sub-fields) and
/// `txnNumber`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxnKey {
    lsid: Vec<u8>,
    txn_number: i64,
}

impl fmt::Display for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "txnNumber {}", self.txn_number)
    }
}

/// A transaction entry (mongo-tools' rule: `c`, `lsid` and `txnNumber`, not `multiOpType: 1`,
/// and `o` holds `applyOps`, `commitTransaction` or `abortTransaction`).
#[derive(Debug)]
pub enum Txn<'a> {
    /// Operations of the transaction. Without `partialTxn` and `prepare` this entry commits.
    ApplyOps {
        /// The transaction.
        key: TxnKey,
        /// The operations.
        ops: &'a RawArray,
        /// More entries follow (`partialTxn: true`).
        partial: bool,
        /// Prepared: a `commitTransaction` or `abortTransaction` entry decides later.
        prepare: bool,
        /// `prevOpTime.ts` when it points at an earlier entry of the same transaction.
        prev: Option<Timestamp>,
    },
    /// A prepared transaction commits.
    Commit {
        /// The transaction.
        key: TxnKey,
    },
    /// A prepared transaction aborts.
    Abort {
        /// The transaction.
        key: TxnKey,
    },
}

/// What an entry is, read from its envelope: enough to place it among the others (its
/// position, its transaction, whether it must run alone) without parsing what an ordinary write
/// changes. The applier reads every entry's header as it arrives, and parses each write once,
/// with [`parse_op`], when the batch it joined is applied.
#[derive(Debug)]
pub struct Header<'a> {
    /// Where the entry sits in the oplog.
    pub optime: OpTime,
    /// What kind of entry it is.
    pub class: Class<'a>,
}

/// The kinds of entries the applier tells apart on arrival.
#[derive(Debug)]
pub enum Class<'a> {
    /// An insert, update or delete of an ordinary collection, outside a transaction: not yet
    /// parsed.
    Write,
    /// Anything else outside a transaction (commands, `applyOps`, views, skipped entries),
    /// parsed in full.
    Op(Op<'a>),
    /// Part of a transaction.
    Txn(Txn<'a>),
}

/// Reads an entry's [`Header`].
pub fn header(entry: &RawDocument) -> Result<Header<'_>> {
    let optime = optime(entry)?;
    let class = if let Some(txn) = parse_txn(entry)? {
        Class::Txn(txn)
    } else if is_plain_write(entry)? {
        Class::Write
    } else {
        Class::Op(parse_op(entry)?)
    };
    Ok(Header { optime, class })
}

/// An insert, update or delete that [`parse_op`] turns into [`Op::Insert`], [`Op::Update`] or
/// [`Op::Delete`]: not `fromMigrate`, in a namespace that is neither internal nor `system.*`.
fn is_plain_write(entry: &RawDocument) -> Result<bool> {
    let Some(RawBsonRef::String(op)) = entry.get("op")? else {
        return Ok(false);
    };
    if !matches!(op, "i" | "u" | "d")
        || entry.get("fromMigrate")?.and_then(RawBsonRef::as_bool) == Some(true)
    {
        return Ok(false);
    }
    let Some(RawBsonRef::String(ns)) = entry.get("ns")? else {
        return Ok(false);
    };
    let Some((db, coll)) = ns.split_once('.') else {
        return Ok(false);
    };
    Ok(!coll.starts_with("system.")
        && !matches!(db, "config" | "local")
        && !db.starts_with("__mdb_internal"))
}

fn optime(entry: &RawDocument) -> Result<OpTime> {
    let ts = match entry.get("ts")? {
        Some(RawBsonRef::Timestamp(ts)) => ts,
        Some(_) => {
            return Err(EntryError::Type {
                field: "ts",
                expected: "a timestamp",
            })
        }
        None => return Err(EntryError::Missing("ts")),
    };
    let term = match entry.get("t")? {
        Some(RawBsonRef::Int64(t)) => Some(t),
        Some(RawBsonRef::Int32(t)) => Some(i64::from(t)),
        _ => None,
    };
    Ok(OpTime { ts, term })
}

/// Parses a top-level entry.
pub fn parse(entry: &RawDocument) -> Result<Entry<'_>> {
    let optime = optime(entry)?;
    if let Some(txn) = parse_txn(entry)? {
        return Ok(Entry {
            optime,
            kind: Kind::Txn(txn),
        });
    }
    Ok(Entry {
        optime,
        kind: Kind::Op(parse_op(entry)?),
    })
}

/// Parses an operation: a top-level entry that is not a transaction, or an inner `applyOps` op.
pub fn parse_op(entry: &RawDocument) -> Result<Op<'_>> {
    if entry.get("fromMigrate")?.and_then(RawBsonRef::as_bool) == Some(true) {
        return Ok(Op::Skip(Skip::FromMigrate));
    }
    let op = str_field(entry, "op")?;
    if matches!(op, "n" | "cd" | "ci" | "cu" | "km") {
        return Ok(Op::Skip(Skip::NoOp));
    }
    let ns = str_field(entry, "ns")?;
    let o = doc_field(entry, "o")?;
    match op {
        "i" | "u" | "d" => crud(entry, op, ns, o),
        "c" => command(ns, o),
        other => Err(EntryError::UnknownOp(other.to_string())),
    }
}

fn crud<'a>(entry: &'a RawDocument, op: &str, ns: &str, o: &'a RawDocument) -> Result<Op<'a>> {
    let ns = Namespace::parse(ns).map_err(|_| EntryError::Namespace(ns.to_string()))?;
    if let Some(skip) = internal(&ns) {
        return Ok(Op::Skip(skip));
    }
    let views = ns.coll == "system.views";
    match op {
        "i" => {
            let id = id_of(o, "o._id")?;
            if views {
                return Ok(Op::Command(Command::CreateView {
                    ns: view_ns(id)?,
                    definition: o,
                }));
            }
            Ok(Op::Insert { ns, doc: o, id })
        }
        "u" => {
            let id = id_of(doc_field(entry, "o2")?, "o2._id")?;
            let update = parse_update(o)?;
            if views {
                return Ok(Op::Command(Command::ModifyView {
                    ns: view_ns(id)?,
                    id,
                    update,
                }));
            }
            Ok(Op::Update { ns, id, update })
        }
        _ => {
            let id = id_of(o, "o._id")?;
            if views {
                return Ok(Op::Command(Command::DropView { ns: view_ns(id)? }));
            }
            Ok(Op::Delete { ns, id })
        }
    }
}

/// Namespaces that are never replayed, or that need a policy of their own.
fn internal(ns: &Namespace) -> Option<Skip> {
    let coll = ns.coll.as_str();
    if matches!(ns.db.as_str(), "config" | "local")
        || ns.db.starts_with("__mdb_internal")
        || (ns.db == "admin" && coll.starts_with("system."))
    {
        return Some(Skip::Internal);
    }
    if coll.starts_with("system.buckets.") {
        return Some(Skip::TimeSeriesBucket(ns.clone()));
    }
    if coll.starts_with("system.") && coll != "system.js" && coll != "system.views" {
        return Some(Skip::Internal);
    }
    None
}

/// A `system.views` document's `_id` is the view's full namespace.
fn view_ns(id: RawBsonRef<'_>) -> Result<Namespace> {
    let name = id.as_str().ok_or(EntryError::Type {
        field: "system.views _id",
        expected: "a string",
    })?;
    Namespace::parse(name).map_err(|_| EntryError::Namespace(name.to_string()))
}

/// Classifies an update's `o` (oplog.md §2.3): an `_id`, or no `$` key, is a replacement; `$v: 2`
/// with `diff` is a diff; `$set`/`$unset` is a modifier update.
///
/// `_id` decides first, as in mongod's `UpdateModification::parseFromOplogEntry`: a replacement
/// may hold top-level names starting with `$` of its own (mongod 5.0+ stores them, `$v`
/// included), and a diff or modifier update never carries `_id`.
pub fn parse_update(o: &RawDocument) -> Result<Update<'_>> {
    let (mut dollar, mut id) = (false, false);
    for item in o.iter() {
        let name = item?.0;
        dollar |= name.starts_with('$');
        id |= name == "_id";
    }
    if id || !dollar {
        return Ok(Update::Replace(o));
    }
    let version = match o.get("$v")? {
        Some(RawBsonRef::Int32(v)) => i64::from(v),
        Some(RawBsonRef::Int64(v)) => v,
        Some(RawBsonRef::Double(v)) => v as i64,
        _ => 1,
    };
    if version == 2 {
        let diff = doc_field(o, "diff")?;
        return Ok(if FieldChanges::is_shape_of(diff) {
            Update::Fields(FieldChanges::parse(diff)?)
        } else {
            Update::Diff(DocDiff::parse(diff)?)
        });
    }
    let (mut set, mut unset) = (None, None);
    for item in o.iter() {
        let (key, value) = item?;
        match (key, value) {
            ("$v", _) => {}
            ("$set", RawBsonRef::Document(d)) => set = Some(d),
            ("$unset", RawBsonRef::Document(d)) => unset = Some(d),
            (key, _) => {
                return Err(EntryError::Update(format!(
                    "'{key}' in a $v:{version} update (only $set and $unset are logged)"
                )))
            }
        }
    }
    Ok(Update::Modifier { set, unset })
}

/// Commands that change no data and are skipped, as mongorestore does.
const BOOKKEEPING: &[&str] = &[
    "startIndexBuild",
    "abortIndexBuild",
    "dbCheck",
    "setMultikeyMetadata",
    "dropIdent",
    "createDatabaseMetadata",
    "dropDatabaseMetadata",
    "modifyCollectionShardingIndexCatalog",
];

fn command<'a>(ns: &str, o: &'a RawDocument) -> Result<Op<'a>> {
    let db = ns
        .strip_suffix(".$cmd")
        .ok_or_else(|| EntryError::Namespace(ns.to_string()))?;
    let Some(first) = o.iter().next() else {
        return Err(EntryError::Missing("o.<command>"));
    };
    let (name, value) = first?;
    if let Some(skip) = BOOKKEEPING.iter().find(|b| **b == name) {
        return Ok(Op::Skip(Skip::Bookkeeping(skip)));
    }
    if name == "applyOps" {
        return match value {
            RawBsonRef::Array(ops) => Ok(Op::ApplyOps(ops)),
            _ => Err(EntryError::Type {
                field: "o.applyOps",
                expected: "an array",
            }),
        };
    }
    if name == "dropDatabase" {
        if matches!(db, "config" | "local" | "admin") {
            return Ok(Op::Skip(Skip::Internal));
        }
        return Ok(Op::Command(Command::DropDatabase { db: db.to_string() }));
    }
    if name == "renameCollection" {
        return rename(o, value);
    }
    let coll = value.as_str().ok_or(EntryError::Type {
        field: "o.<command>",
        expected: "a collection name",
    })?;
    let ns = Namespace::new(db, coll);
    if let Some(skip) = internal(&ns) {
        return Ok(Op::Skip(skip));
    }
    let command = match name {
        "create" => Command::Create { ns, o },
        "drop" => Command::Drop { ns },
        // mongod logs one index inline; SecantusDB logs the command's `indexes` list.
        "createIndexes" => match o.get("indexes")? {
            Some(RawBsonRef::Array(list)) => Command::CreateIndexes {
                ns,
                specs: IndexSpecs::List(list),
            },
            _ => Command::CreateIndexes {
                ns,
                specs: IndexSpecs::Inline(o),
            },
        },
        "commitIndexBuild" => match o.get("indexes")? {
            Some(RawBsonRef::Array(list)) => Command::CreateIndexes {
                ns,
                specs: IndexSpecs::List(list),
            },
            _ => {
                return Err(EntryError::Type {
                    field: "o.indexes",
                    expected: "an array",
                })
            }
        },
        "dropIndexes" | "deleteIndexes" | "deleteIndex" | "dropIndex" => {
            let index = o.get("index")?.ok_or(EntryError::Missing("o.index"))?;
            Command::DropIndexes { ns, index }
        }
        "collMod" => Command::CollMod { ns, o },
        "convertToCapped" => Command::ConvertToCapped { ns, o },
        "emptycapped" => Command::EmptyCapped { ns },
        other => return Err(EntryError::UnknownCommand(other.to_string())),
    };
    Ok(Op::Command(command))
}

fn rename<'a>(o: &'a RawDocument, from: RawBsonRef<'a>) -> Result<Op<'a>> {
    let parse = |field: &'static str, v: Option<RawBsonRef<'_>>| -> Result<Namespace> {
        let s = v.and_then(RawBsonRef::as_str).ok_or(EntryError::Type {
            field,
            expected: "a namespace string",
        })?;
        Namespace::parse(s).map_err(|_| EntryError::Namespace(s.to_string()))
    };
    let from = parse("o.renameCollection", Some(from))?;
    let to = parse("o.to", o.get("to")?)?;
    let drop_target = match o.get("dropTarget")? {
        None | Some(RawBsonRef::Boolean(false)) | Some(RawBsonRef::Null) => false,
        // true, or the UUID of the dropped target.
        Some(_) => true,
    };
    match (internal(&from), internal(&to)) {
        (Some(skip), Some(_)) => Ok(Op::Skip(skip)),
        _ => Ok(Op::Command(Command::Rename {
            from,
            to,
            drop_target,
        })),
    }
}

fn parse_txn(entry: &RawDocument) -> Result<Option<Txn<'_>>> {
    if entry.get("op")?.and_then(RawBsonRef::as_str) != Some("c") {
        return Ok(None);
    }
    let (Some(RawBsonRef::Document(lsid)), Some(txn_number)) =
        (entry.get("lsid")?, entry.get("txnNumber")?)
    else {
        return Ok(None);
    };
    let multi_op_type = match entry.get("multiOpType")? {
        Some(RawBsonRef::Int32(n)) => i64::from(n),
        Some(RawBsonRef::Int64(n)) => n,
        _ => 0,
    };
    if multi_op_type == 1 {
        return Ok(None);
    }
    let o = doc_field(entry, "o")?;
    let Some(first) = o.iter().next() else {
        return Ok(None);
    };
    let (name, value) = first?;
    let txn_number = match txn_number {
        RawBsonRef::Int64(n) => n,
        RawBsonRef::Int32(n) => i64::from(n),
        _ => {
            return Err(EntryError::Type {
                field: "txnNumber",
                expected: "an integer",
            })
        }
    };
    let key = TxnKey {
        lsid: lsid.as_bytes().to_vec(),
        txn_number,
    };
    let flag = |name: &str| -> Result<bool> {
        Ok(o.get(name)?.and_then(RawBsonRef::as_bool) == Some(true))
    };
    Ok(Some(match name {
        "applyOps" => Txn::ApplyOps {
            key,
            ops: value.as_array().ok_or(EntryError::Type {
                field: "o.applyOps",
                expected: "an array",
            })?,
            partial: flag("partialTxn")?,
            prepare: flag("prepare")?,
            prev: prev_ts(entry)?,
        },
        "commitTransaction" => Txn::Commit { key },
        "abortTransaction" => Txn::Abort { key },
        _ => return Ok(None),
    }))
}

/// `prevOpTime.ts`, with the null optime (`Timestamp(0, 0)`) and a missing field as `None`.
fn prev_ts(entry: &RawDocument) -> Result<Option<Timestamp>> {
    let Some(RawBsonRef::Document(prev)) = entry.get("prevOpTime")? else {
        return Ok(None);
    };
    Ok(match prev.get("ts")? {
        Some(RawBsonRef::Timestamp(ts))
            if ts
                != (Timestamp {
                    time: 0,
                    increment: 0,
                }) =>
        {
            Some(ts)
        }
        _ => None,
    })
}

fn str_field<'a>(doc: &'a RawDocument, field: &'static str) -> Result<&'a str> {
    match doc.get(field)? {
        Some(RawBsonRef::String(s)) => Ok(s),
        Some(_) => Err(EntryError::Type {
            field,
            expected: "a string",
        }),
        None => Err(EntryError::Missing(field)),
    }
}

fn doc_field<'a>(doc: &'a RawDocument, field: &'static str) -> Result<&'a RawDocument> {
    match doc.get(field)? {
        Some(RawBsonRef::Document(d)) => Ok(d),
        Some(_) => Err(EntryError::Type {
            field,
            expected: "a document",
        }),
        None => Err(EntryError::Missing(field)),
    }
}

fn id_of<'a>(doc: &'a RawDocument, what: &'static str) -> Result<RawBsonRef<'a>> {
    doc.get("_id")?.ok_or(EntryError::Missing(what))
}

#[cfg(test)]
mod tests;
