//! CRUD replay for one writer lane: documents resolved, coalesced and sent in bulk.
//!
//! A lane receives the operations of a batch that hash to it, in oplog order. Every document's
//! operations are in the same lane, so the lane alone decides how that document ends up:
//!
//! 1. **Prefetch.** Documents whose first operation in the lane is a partial update that only
//!    applies client-side (a `$v:2` diff with `i`, array changes or unusual names; see
//!    [`super::diff::Operators`]) are read from the destination in one `find` per namespace.
//! 2. **Resolve.** Operations are walked in order against that state: inserts and replacements
//!    set it, deletes clear it, and partial updates of a known document are applied client-side
//!    ([`super::diff`]). A partial update of a document that is not on the destination is
//!    skipped and counted, never upserted as a fragment. Partial updates of a document whose
//!    state is not known here go to the server: `$v:1` updates as they are (exactly what
//!    mongod's applier runs for them), diffs as their exact `$set`/`$unset` translation when
//!    there is one, and otherwise as a read-modify-write at their turn.
//! 3. **Coalesce** (unordered lanes only). A document's earlier writes that a later insert,
//!    replacement or delete overwrites are dropped, and diffs are folded into the pending
//!    replacement, so most documents get a single write. The remaining writes are sent in rounds:
//!    round *r* holds every document's *r*-th run of writes of one command kind (its updates in
//!    a row, in order, inside one ordered command), so per-document order holds while writes of
//!    different documents are grouped into one command per namespace and kind.
//! 4. **Ordered lanes** (collections with a unique secondary index, and capped collections) skip
//!    coalescing and send every write in oplog order: two documents may swap a unique value, and
//!    a capped collection's natural order is its insertion order.
//!
//! Writes go out as `insert`, `update` and `delete` commands by `_id`, ordered, bypassing
//! document validation (the source already validated them), with majority write concern, and
//! with the simple collation where the collection has another default (only there: SecantusDB
//! cannot look `_id` up by index under an explicit collation). An insert whose `_id` exists
//! becomes a replacement with upsert, as the oplog's idempotency rules prescribe.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::future::IntoFuture;

use futures::future::try_join_all;

use mongodb::bson::raw::{RawArrayBuf, RawBsonRef, RawDocument};
use mongodb::bson::{doc, rawdoc, Bson, Document, RawDocumentBuf};
use mongodb::Client;
use tracing::debug;

use super::catchup::Conflict;
use super::dest;
use super::diff::{DiffError, DocDiff, FieldChanges};
use super::error::ApplyError;
use crate::cli::Namespace;
use crate::order as id;

/// The most statements in one write command (the server allows 100,000).
const MAX_STATEMENTS: usize = 10_000;
/// Soft byte limit of one write command; the server accepts 16 MiB + 16 KiB, and a command always
/// holds at least one statement.
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;
/// The most `_id`s in one prefetch `find`.
const PREFETCH_IDS: usize = 1_000;
/// Duplicate key error codes.
const DUPLICATE_KEY: &[i32] = &[11000, 11001];
/// `ImmutableField`: a replacement would change the stored `_id`'s byte form.
const IMMUTABLE_FIELD: i32 = 66;
/// `PathNotViable`: a `$set` path runs through a scalar.
const PATH_NOT_VIABLE: i32 = 28;
/// Errors of an operator update that client-side application of the diff handles:
/// BadValue, TypeMismatch, PathNotViable, ConflictingUpdateOperators, DollarPrefixedFieldName.
const OPERATOR_REFUSED: &[i32] = &[2, 14, 28, 40, 52];
/// Prefetched documents a lane keeps in memory; past this, documents are read one by one when
/// their update comes up.
const PREFETCH_BYTES: usize = 16 * 1024 * 1024;

/// One CRUD operation for a lane.
#[derive(Debug)]
pub(super) struct DocOp<'a> {
    /// The collection.
    pub ns: Namespace,
    /// The document's `_id`.
    pub id: RawBsonRef<'a>,
    /// The `_id` under mongod's equality ([`id::key`]): computed once, for lanes and tracks.
    pub key: Vec<u8>,
    /// What happens to it.
    pub change: Change<'a>,
}

/// What happens to one document.
#[derive(Debug)]
pub(super) enum Change<'a> {
    /// Insert: the whole document (replaced with upsert if its `_id` exists).
    Insert(&'a RawDocument),
    /// Full replacement: upsert the whole document.
    Put(&'a RawDocument),
    /// Delete by `_id`.
    Delete,
    /// `$v:1` modifiers, applied by the server (no upsert).
    Modify {
        set: Option<&'a RawDocument>,
        unset: Option<&'a RawDocument>,
    },
    /// A diff applied here to the current document.
    Patch(Patch<'a>),
}

/// A partial update applied client-side.
#[derive(Debug)]
pub(super) enum Patch<'a> {
    /// mongod's `$v:2` doc-diff.
    Diff(DocDiff<'a>),
    /// SecantusDB's change-stream shape.
    Fields(FieldChanges<'a>),
}

impl Patch<'_> {
    fn apply(&self, doc: &Document) -> Result<Document, DiffError> {
        match self {
            Patch::Diff(d) => d.apply(doc),
            Patch::Fields(f) => f.apply(doc),
        }
    }

    /// The update operators with the same effect, when exact (see [`super::diff::Operators`]).
    fn to_update(&self) -> Option<Document> {
        match self {
            Patch::Diff(d) => d.to_operators(),
            Patch::Fields(f) => f.to_operators(),
        }
        .and_then(|ops| ops.into_update())
    }
}

/// What replay needs to know about a destination collection.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NsInfo {
    /// Writes must keep oplog order (a unique secondary index, or capped).
    pub ordered: bool,
    /// The collection has a non-simple default collation, so `_id` lookups must say `simple`.
    pub collated: bool,
}

impl NsInfo {
    /// Whether the collection's writes go through one lane in oplog order: those that must
    /// ([`NsInfo::ordered`]), and those with a default collation, where `"a"` and `"A"` may be
    /// one `_id` (strength 2) that no key computed here can tell apart.
    pub fn keeps_order(&self) -> bool {
        self.ordered || self.collated
    }
}

/// What a lane did.
#[derive(Debug, Default)]
pub(super) struct LaneOutcome {
    /// Write statements sent.
    pub writes: u64,
    /// Partial updates of documents missing on the destination, skipped.
    pub missing: u64,
    /// Writes that met a duplicate key while catching up (see [`super::catchup`]).
    pub conflicts: Vec<Conflict>,
}

/// What this lane knows about a document's current content on the destination.
#[derive(Debug, Clone)]
enum State<'a> {
    /// Not read, or changed server-side since.
    Unknown,
    /// Not there.
    Missing,
    /// This content (borrowed from an insert or replacement entry).
    Raw(&'a RawDocument),
    /// This content (read from the destination or computed from a diff).
    Owned(Document),
}

/// A write to send.
#[derive(Debug)]
enum Write<'o, 'a> {
    /// Write this content under its `_id`.
    Put { body: Body<'a>, mode: PutMode },
    /// `$set`/`$unset` by `_id`: a `$v:1` update, or a diff translated to operators (with the
    /// diff itself to fall back on).
    Modify {
        update: RawDocumentBuf,
        fallback: Option<&'o Patch<'a>>,
    },
    /// Delete by `_id`.
    Delete,
    /// Read the document, apply the diff, replace it: for diffs that need the document after
    /// a server-side update of it.
    PatchOnServer(&'o Patch<'a>),
}

/// How a whole document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutMode {
    /// `insert`, falling back to a replacement with upsert when the `_id` exists.
    Insert,
    /// Replacement with upsert: a full document from the source.
    Upsert,
    /// Replacement without upsert: a diff's result, of a document known to exist.
    Replace,
}

#[derive(Debug)]
enum Body<'a> {
    Raw(&'a RawDocument),
    Owned(Document),
}

/// Which command a write belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CommandKind {
    Insert,
    Update,
    Delete,
}

impl Write<'_, '_> {
    fn kind(&self) -> CommandKind {
        match self {
            Write::Put {
                mode: PutMode::Insert,
                ..
            } => CommandKind::Insert,
            Write::Put { .. } | Write::Modify { .. } | Write::PatchOnServer(_) => {
                CommandKind::Update
            }
            Write::Delete => CommandKind::Delete,
        }
    }
}

/// Per-document bookkeeping while resolving. A document is one `_id` under mongod's equality
/// ([`id::key`]), whatever byte form each operation names it by.
struct Track<'a> {
    state: State<'a>,
    /// Indexes into the lane's write list, in order.
    writes: Vec<usize>,
    /// The `_id` the last operation named, in its byte form ([`id::same_form`]), if any did yet.
    form: Option<RawBsonRef<'a>>,
}

impl Track<'_> {
    fn new(state: State<'_>) -> Track<'_> {
        Track {
            state,
            writes: Vec::new(),
            form: None,
        }
    }
}

/// Applies one lane's operations (in oplog order) to the destination.
pub(super) async fn run_lane(
    client: &Client,
    ops: &[DocOp<'_>],
    ordered: bool,
    info: &HashMap<Namespace, NsInfo>,
    catching_up: bool,
) -> Result<LaneOutcome, ApplyError> {
    let collated = |ns: &Namespace| info.get(ns).is_some_and(|i| i.collated);
    // Operator translations of the diffs; documents whose first operation is a diff without one
    // are read up front.
    let mut translated: Vec<Option<RawDocumentBuf>> = Vec::with_capacity(ops.len());
    for op in ops {
        translated.push(match &op.change {
            Change::Patch(patch) => patch
                .to_update()
                .map(|u| raw(&u))
                .transpose()
                .map_err(|e| bad_document(op, e))?,
            _ => None,
        });
    }
    let mut tracks = prefetch(client, ops, &translated, collated).await?;
    let mut outcome = LaneOutcome::default();
    let mut writes: Vec<Option<(usize, Write<'_, '_>)>> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let track = tracks
            .entry((&op.ns, op.key.as_slice()))
            .or_insert_with(|| Track::new(State::Unknown));
        // Earlier writes of the document that this one overwrites are dropped, unless they name
        // it by another byte form of its `_id`: `d {_id: NumberInt(1)}` then `i {_id: 1.0}`
        // must delete before inserting, or the insert meets the old document.
        let same_form = track.form.is_none_or(|f| id::same_form(f, op.id));
        track.form = Some(op.id);
        let overwrites = matches!(
            op.change,
            Change::Insert(_) | Change::Put(_) | Change::Delete
        );
        if overwrites && !ordered && same_form {
            for w in track.writes.drain(..) {
                writes[w] = None;
            }
        }
        let write = match &op.change {
            Change::Insert(doc) => {
                track.state = State::Raw(doc);
                Write::Put {
                    body: Body::Raw(doc),
                    mode: PutMode::Insert,
                }
            }
            Change::Put(doc) => {
                track.state = State::Raw(doc);
                Write::Put {
                    body: Body::Raw(doc),
                    mode: PutMode::Upsert,
                }
            }
            Change::Delete => {
                track.state = State::Missing;
                Write::Delete
            }
            Change::Modify { set, unset } => {
                track.state = State::Unknown;
                Write::Modify {
                    update: modifier(*set, *unset),
                    fallback: None,
                }
            }
            Change::Patch(patch) => {
                let current = match &track.state {
                    State::Unknown => None,
                    State::Missing => {
                        outcome.missing += 1;
                        continue;
                    }
                    State::Raw(raw) => {
                        Some(Document::try_from(*raw).map_err(|e| bad_document(op, e))?)
                    }
                    State::Owned(doc) => Some(doc.clone()),
                };
                match current {
                    None => match translated[i].take() {
                        Some(update) => Write::Modify {
                            update,
                            fallback: Some(patch),
                        },
                        None => Write::PatchOnServer(patch),
                    },
                    Some(current) => {
                        let new = patch.apply(&current).map_err(|e| ApplyError::Diff {
                            ns: op.ns.to_string(),
                            id: show_id(op.id),
                            source: e,
                        })?;
                        track.state = State::Owned(new.clone());
                        // Fold into a pending replacement of the same document.
                        let pending = track.writes.last().and_then(|w| writes[*w].as_mut());
                        if let (false, true, Some((_, Write::Put { body, .. }))) =
                            (ordered, same_form, pending)
                        {
                            *body = Body::Owned(new);
                            continue;
                        }
                        Write::Put {
                            body: Body::Owned(new),
                            mode: PutMode::Replace,
                        }
                    }
                }
            }
        };
        track.writes.push(writes.len());
        writes.push(Some((i, write)));
    }
    let sequences: Vec<Vec<(usize, Write<'_, '_>)>> = if ordered {
        vec![writes.into_iter().flatten().collect()]
    } else {
        rounds(writes, tracks.into_values())
    };
    for sequence in sequences {
        let done = send(client, ops, sequence, ordered, &collated, catching_up).await?;
        outcome.writes += done.writes;
        outcome.missing += done.missing;
        outcome.conflicts.extend(done.conflicts);
    }
    Ok(outcome)
}

/// Splits coalesced writes into rounds: round *r* holds each document's *r*-th run of writes
/// of one command kind. A document updated many times in a batch (a counter, a clock) thus
/// costs one round, not one per update: its statements stay in order inside the ordered
/// commands of that round, since [`send`] keeps the order of one kind's writes.
fn rounds<'o, 'a>(
    writes: Vec<Option<(usize, Write<'o, 'a>)>>,
    tracks: impl Iterator<Item = Track<'a>>,
) -> Vec<Vec<(usize, Write<'o, 'a>)>> {
    let kind = |w: usize| writes[w].as_ref().map(|(_, write)| write.kind());
    let mut round_of = vec![0usize; writes.len()];
    let mut count = 0;
    for track in tracks {
        let mut r = 0;
        for (n, w) in track.writes.iter().enumerate() {
            if n > 0 && kind(*w) != kind(track.writes[n - 1]) {
                r += 1;
            }
            round_of[*w] = r;
            count = count.max(r + 1);
        }
    }
    let mut out: Vec<Vec<_>> = (0..count).map(|_| Vec::new()).collect();
    for (w, write) in writes.into_iter().enumerate() {
        if let Some(write) = write {
            out[round_of[w]].push(write);
        }
    }
    out
}

/// Reads the documents whose first operation in the lane is a diff that only applies
/// client-side (`translated[i]` is `None`).
async fn prefetch<'o, 'a>(
    client: &Client,
    ops: &'o [DocOp<'a>],
    translated: &[Option<RawDocumentBuf>],
    collated: impl Fn(&Namespace) -> bool,
) -> Result<HashMap<(&'o Namespace, &'o [u8]), Track<'a>>, ApplyError> {
    let mut tracks: HashMap<(&Namespace, &[u8]), Track<'a>> =
        HashMap::with_capacity_and_hasher(ops.len(), Default::default());
    let mut wanted: HashMap<&Namespace, Vec<(usize, &[u8])>> = HashMap::default();
    let mut first_touch = HashSet::default();
    for (i, op) in ops.iter().enumerate() {
        let key = (&op.ns, op.key.as_slice());
        if first_touch.insert(key)
            && matches!(op.change, Change::Patch(_))
            && translated[i].is_none()
        {
            wanted.entry(&op.ns).or_default().push((i, key.1));
        }
    }
    let mut budget = PREFETCH_BYTES;
    for (ns, ids) in wanted {
        for chunk in ids.chunks(PREFETCH_IDS) {
            let coll = client
                .database(&ns.db)
                .collection::<RawDocumentBuf>(&ns.coll);
            let values: Vec<Bson> = chunk
                .iter()
                .map(|(i, _)| Bson::try_from(ops[*i].id))
                .collect::<Result<_, _>>()
                .map_err(|e| bad_document(&ops[chunk[0].0], e))?;
            let failed = |e| ApplyError::Destination {
                what: "read".into(),
                ns: ns.to_string(),
                source: Box::new(e),
            };
            let filter = doc! { "_id": { "$in": values } };
            // Streams the documents, keeping those that fit the budget; a transient failure
            // reads the chunk again from the start. Documents past the budget are only noted
            // as present and read again when their update comes up.
            let what = format!("reading {ns} on the destination");
            let (read, left) = crate::retry::transient(&what, || async {
                let mut find = coll.find(filter.clone());
                if collated(ns) {
                    find = find.collation(simple_collation());
                }
                let mut cursor = find.await?;
                let mut left = budget;
                let mut read: Vec<(Vec<u8>, Option<RawDocumentBuf>)> = Vec::new();
                while cursor.advance().await? {
                    let raw = cursor.current();
                    let Ok(Some(id)) = raw.get("_id") else {
                        continue;
                    };
                    let len = raw.as_bytes().len();
                    let kept = (len <= left).then(|| raw.to_raw_document_buf());
                    if kept.is_some() {
                        left -= len;
                    }
                    read.push((id::key(id), kept));
                }
                Ok((read, left))
            })
            .await
            .map_err(failed)?;
            budget = left;
            let mut found = HashSet::default();
            for (key, raw) in read {
                let Some((_, k)) = chunk.iter().find(|(_, k)| *k == key.as_slice()) else {
                    continue;
                };
                found.insert(*k);
                let Some(raw) = raw else {
                    continue; // left Unknown: read again when its update comes up
                };
                let doc = Document::try_from(raw.as_ref() as &RawDocument)
                    .map_err(|e| bad_document(&ops[chunk[0].0], e))?;
                tracks.insert((ns, k), Track::new(State::Owned(doc)));
            }
            for (_, k) in chunk.iter().filter(|(_, k)| !found.contains(k)) {
                tracks.insert((ns, k), Track::new(State::Missing));
            }
        }
    }
    Ok(tracks)
}

/// Sends writes, one command (more if large) per run of writes of the same namespace and kind.
/// Ordered sequences (`ordered == true`) go run after run, in order. In unordered rounds each
/// document's writes are of one kind, so they are grouped by namespace and kind (keeping their
/// order) and the groups, which share no document, are sent at the same time: a round costs
/// one round trip, not one per namespace and kind.
async fn send<'r, 'a>(
    client: &Client,
    ops: &'r [DocOp<'a>],
    mut writes: Vec<(usize, Write<'r, 'a>)>,
    ordered: bool,
    collated: &impl Fn(&Namespace) -> bool,
    catching_up: bool,
) -> Result<LaneOutcome, ApplyError> {
    if !ordered {
        writes.sort_by(|(a, wa), (b, wb)| {
            (&ops[*a].ns, wa.kind() as u8).cmp(&(&ops[*b].ns, wb.kind() as u8))
        });
    }
    let mut runs: Vec<Vec<(usize, Write<'r, 'a>)>> = Vec::new();
    for (i, write) in writes {
        let continues = runs.last().and_then(|run| run.last()).is_some_and(
            |(j, w): &(usize, Write<'_, '_>)| ops[*j].ns == ops[i].ns && w.kind() == write.kind(),
        );
        match runs.last_mut() {
            Some(run) if continues => run.push((i, write)),
            _ => runs.push(vec![(i, write)]),
        }
    }
    let send_run = |run: Vec<(usize, Write<'r, 'a>)>| {
        let ns = &ops[run[0].0].ns;
        send_one(client, ops, run, collated(ns), catching_up)
    };
    let mut outcome = LaneOutcome::default();
    if ordered {
        for run in runs {
            outcome.add(send_run(run).await?);
        }
    } else {
        for done in try_join_all(runs.into_iter().map(send_run)).await? {
            outcome.add(done);
        }
    }
    Ok(outcome)
}

/// Sends one run of writes of one namespace and kind.
async fn send_one<'r, 'a>(
    client: &Client,
    ops: &'r [DocOp<'a>],
    run: Vec<(usize, Write<'r, 'a>)>,
    collated: bool,
    catching_up: bool,
) -> Result<LaneOutcome, ApplyError> {
    let ns = &ops[run[0].0].ns;
    let mut sender = Sender::new(client, ns, collated, catching_up);
    sender.run(ops, run).await?;
    Ok(sender.outcome)
}

impl LaneOutcome {
    fn add(&mut self, other: LaneOutcome) {
        self.writes += other.writes;
        self.missing += other.missing;
        self.conflicts.extend(other.conflicts);
    }
}

/// One statement of a write command: its body (a document for `insert`, `{q, u, ...}` for
/// `update`, `{q, limit}` for `delete`), the operation it comes from, and for a diff sent as
/// operators the diff to apply client-side if the server cannot apply the operators.
struct Statement<'r, 'a> {
    body: RawDocumentBuf,
    op: &'r DocOp<'a>,
    fallback: Option<&'r Patch<'a>>,
}

/// Sends the writes of one namespace.
struct Sender<'c> {
    client: &'c Client,
    ns: &'c Namespace,
    /// Whether statements must say `collation: simple`.
    collated: bool,
    /// Whether replay is still catching up with the copy: a duplicate key is then recorded,
    /// not fatal.
    catching_up: bool,
    outcome: LaneOutcome,
}

impl<'c> Sender<'c> {
    fn new(client: &'c Client, ns: &'c Namespace, collated: bool, catching_up: bool) -> Self {
        Sender {
            client,
            ns,
            collated,
            catching_up,
            outcome: LaneOutcome::default(),
        }
    }

    /// Sends one run of writes of one kind, split into commands of bounded size.
    async fn run<'r, 'a>(
        &mut self,
        ops: &'r [DocOp<'a>],
        run: Vec<(usize, Write<'r, 'a>)>,
    ) -> Result<(), ApplyError> {
        let kind = run[0].1.kind();
        let mut statements: Vec<Statement<'r, 'a>> = Vec::new();
        let mut bytes = 0usize;
        for (i, write) in run {
            let op = &ops[i];
            let (write, fallback) = match write {
                Write::PatchOnServer(patch) => {
                    // The read must see every earlier write of this run.
                    if !statements.is_empty() {
                        self.command(kind, &mut statements).await?;
                        statements.clear();
                        bytes = 0;
                    }
                    match self.read_modify_write(op, patch).await? {
                        Some(new) => (replace(new), None),
                        None => {
                            self.outcome.missing += 1;
                            continue;
                        }
                    }
                }
                Write::Modify { update, fallback } => (
                    Write::Modify {
                        update,
                        fallback: None,
                    },
                    fallback,
                ),
                write => (write, None),
            };
            let body = self.statement(op, write)?;
            if !statements.is_empty()
                && (statements.len() == MAX_STATEMENTS
                    || bytes + body.as_bytes().len() > MAX_COMMAND_BYTES)
            {
                self.command(kind, &mut statements).await?;
                statements.clear();
                bytes = 0;
            }
            bytes += body.as_bytes().len();
            statements.push(Statement { body, op, fallback });
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.command(kind, &mut statements).await
    }

    /// One ordered write command (more if a statement fails in a way that is handled; the rest
    /// of the command is then sent again):
    ///
    /// - An insert whose `_id` exists becomes a replacement with upsert.
    /// - A diff sent as operators that the server refuses for this document (a sub-diff meeting
    ///   a scalar, see [`super::diff::Operators`]) is applied client-side instead.
    /// - A duplicate-key error on a unique secondary index means the value is held by a document
    ///   whose copy is in a later state than the replay position (the copy is fuzzy); on the
    ///   source that holder got the value after this entry, so a later entry also changes this
    ///   document. mongod's own oplog application allows such transient duplicates; ordinary
    ///   commands cannot, so the statement is skipped, counted and logged.
    async fn command(
        &mut self,
        kind: CommandKind,
        statements: &mut [Statement<'_, '_>],
    ) -> Result<(), ApplyError> {
        let mut start = 0;
        while start < statements.len() {
            let rest = &statements[start..];
            let (executed, error) = self.execute(kind, rest.iter().map(|s| &s.body)).await?;
            let Some(error) = error else {
                return Ok(());
            };
            let failed = start + executed;
            let statement = &mut statements[failed];
            start = failed + 1;
            match (kind, error.code) {
                (CommandKind::Insert, code) if DUPLICATE_KEY.contains(&code) => {
                    let doc = statement.body.clone();
                    let write = Write::Put {
                        body: Body::Owned(
                            Document::try_from(doc.as_ref())
                                .map_err(|e| bad_document(statement.op, e))?,
                        ),
                        mode: PutMode::Upsert,
                    };
                    statement.body = self.statement(statement.op, write)?;
                    let replacement = std::slice::from_ref(&statement.body);
                    match self
                        .execute(CommandKind::Update, replacement.iter())
                        .await?
                    {
                        (_, Some(e)) if e.code == IMMUTABLE_FIELD => {
                            self.rewrite(statement.op, doc.as_ref()).await?
                        }
                        (_, Some(e)) => {
                            self.refused_or_conflict(statement.op, CommandKind::Update, e)?
                        }
                        (_, None) => {}
                    }
                }
                (CommandKind::Update, IMMUTABLE_FIELD)
                    if whole_document(statement.op).is_some() =>
                {
                    if let Some(doc) = whole_document(statement.op) {
                        self.rewrite(statement.op, doc).await?;
                    }
                }
                (CommandKind::Update, PATH_NOT_VIABLE)
                    if matches!(statement.op.change, Change::Modify { .. }) =>
                {
                    self.modify_path_by_path(statement.op).await?;
                }
                (CommandKind::Update, code)
                    if OPERATOR_REFUSED.contains(&code) && statement.fallback.is_some() =>
                {
                    let (op, fallback) = (statement.op, statement.fallback.take());
                    match fallback {
                        Some(patch) => match self.read_modify_write(op, patch).await? {
                            Some(new) => {
                                statement.body = self.statement(op, replace(new))?;
                                start = failed;
                            }
                            None => self.outcome.missing += 1,
                        },
                        None => start = failed,
                    }
                }
                _ => self.refused_or_conflict(statement.op, kind, error)?,
            }
        }
        Ok(())
    }

    /// Writes a whole document whose `_id` the destination holds under another byte form
    /// (`1.0` for `NumberInt(1)`, or `"A"` for `"a"` under a collation), which a replacement may
    /// not change (`ImmutableField`): the document is deleted and inserted again, so that the
    /// destination holds exactly the source's form.
    async fn rewrite(&mut self, op: &DocOp<'_>, doc: &RawDocument) -> Result<(), ApplyError> {
        let delete = self.statement(op, Write::Delete)?;
        if let (_, Some(e)) = self
            .execute(CommandKind::Delete, std::iter::once(&delete))
            .await?
        {
            return self.refused_or_conflict(op, CommandKind::Delete, e);
        }
        let insert = doc.to_raw_document_buf();
        match self
            .execute(CommandKind::Insert, std::iter::once(&insert))
            .await?
        {
            (_, Some(e)) => self.refused_or_conflict(op, CommandKind::Insert, e),
            (_, None) => Ok(()),
        }
    }

    /// A `$v:1` update that the server refuses because one of its `$set` paths is no longer
    /// viable on this document (`$set: {"a.b": 1}` where `a` is now a scalar, in a copy newer than
    /// the entry): as mongod's own oplog application does, that path is ignored and the others
    /// are applied. The paths of one update never overlap, so one update per path has the same
    /// effect.
    async fn modify_path_by_path(&mut self, op: &DocOp<'_>) -> Result<(), ApplyError> {
        let Change::Modify { set, unset } = &op.change else {
            return Ok(());
        };
        let mut updates = Vec::new();
        if let Some(unset) = unset {
            updates.push(modifier(None, Some(unset)));
        }
        for item in set.iter().flat_map(|s| s.iter()) {
            let (path, value) = item.map_err(|e| bad_document(op, e))?;
            let mut one = RawDocumentBuf::new();
            one.append_ref(path, value);
            updates.push(modifier(Some(&one), None));
        }
        for update in updates {
            let statement = self.statement(
                op,
                Write::Modify {
                    update,
                    fallback: None,
                },
            )?;
            match self
                .execute(CommandKind::Update, std::iter::once(&statement))
                .await?
            {
                (_, Some(e)) if e.code == PATH_NOT_VIABLE => {
                    debug!("{}: a $set path of _id {} is not viable on the destination's document; ignored as mongod's oplog application does ({})", self.ns, show_id(op.id), e.message);
                }
                (_, Some(e)) => self.refused_or_conflict(op, CommandKind::Update, e)?,
                (_, None) => {}
            }
        }
        Ok(())
    }

    /// A duplicate key while catching up is recorded, and its document read again from the
    /// source later ([`super::catchup`]); after catch-up it is a divergence. Anything else is
    /// fatal.
    fn refused_or_conflict(
        &mut self,
        op: &DocOp<'_>,
        kind: CommandKind,
        e: dest::WriteError,
    ) -> Result<(), ApplyError> {
        if DUPLICATE_KEY.contains(&e.code) {
            let id = Bson::try_from(op.id).map_err(|err| bad_document(op, err))?;
            let conflict = Conflict::from_message(self.ns, id, &e.message);
            if !self.catching_up {
                return Err(ApplyError::UniqueConflict {
                    ns: conflict.ns.to_string(),
                    index: conflict.index,
                    id: show_id(op.id),
                    message: e.message,
                });
            }
            debug!("{} of {}: a duplicate key while catching up with the copy; the document is read again from the source once replay has passed the copy ({})", kind.name(), self.ns, e.message);
            self.outcome.conflicts.push(conflict);
            return Ok(());
        }
        Err(ApplyError::Refused {
            what: kind.name().to_string(),
            ns: self.ns.to_string(),
            code: e.code,
            message: e.message,
        })
    }

    /// Sends one command; returns how many statements ran before the first write error.
    async fn execute(
        &mut self,
        kind: CommandKind,
        bodies: impl ExactSizeIterator<Item = &RawDocumentBuf>,
    ) -> Result<(usize, Option<dest::WriteError>), ApplyError> {
        let count = bodies.len();
        let mut array = RawArrayBuf::new();
        for body in bodies {
            array.push(body.clone());
        }
        let name = kind.name();
        let mut command = RawDocumentBuf::new();
        command.append(name, self.ns.coll.as_str());
        command.append(kind.list(), array);
        command.append("ordered", true);
        command.append("bypassDocumentValidation", true);
        command.append("writeConcern", dest::majority());
        let what = format!("{name} of {}", self.ns);
        let reply = dest::run(self.client, &self.ns.db, command, &what)
            .await
            .map_err(|e| ApplyError::Destination {
                what: name.into(),
                ns: self.ns.to_string(),
                source: Box::new(e),
            })?;
        let (n, error) = dest::write_reply(&reply, name, &self.ns.to_string())?;
        let executed = error.as_ref().map_or(count, |e| e.index.min(count));
        self.outcome.writes += executed as u64;
        if kind == CommandKind::Update {
            // Every statement matches or upserts except an update of a missing document.
            self.outcome.missing += (executed as i64 - n).max(0) as u64;
        }
        Ok((executed, error))
    }

    /// A diff that needs the current document: read it and return the replacement, or `None`
    /// if the document is not on the destination.
    async fn read_modify_write(
        &self,
        op: &DocOp<'_>,
        patch: &Patch<'_>,
    ) -> Result<Option<Document>, ApplyError> {
        let id = Bson::try_from(op.id).map_err(|e| bad_document(op, e))?;
        let coll = self
            .client
            .database(&self.ns.db)
            .collection::<Document>(&self.ns.coll);
        let what = format!("reading {} on the destination", self.ns);
        let current = crate::retry::transient(&what, || {
            let mut find = coll.find_one(doc! { "_id": id.clone() });
            if self.collated {
                find = find.collation(simple_collation());
            }
            find.into_future()
        })
        .await
        .map_err(|e| ApplyError::Destination {
            what: "read".into(),
            ns: self.ns.to_string(),
            source: Box::new(e),
        })?;
        let Some(current) = current else {
            return Ok(None);
        };
        patch
            .apply(&current)
            .map(Some)
            .map_err(|e| ApplyError::Diff {
                ns: self.ns.to_string(),
                id: show_id(op.id),
                source: e,
            })
    }

    /// The statement of one write: the document for an insert, `{q: {_id}, u, upsert}` for an
    /// update, `{q: {_id}, limit: 1}` for a delete.
    fn statement(
        &self,
        op: &DocOp<'_>,
        write: Write<'_, '_>,
    ) -> Result<RawDocumentBuf, ApplyError> {
        let encoded = |w: Write<'_, '_>| -> Result<RawDocumentBuf, mongodb::bson::raw::Error> {
            let mut q = RawDocumentBuf::new();
            q.append_ref("_id", op.id);
            let mut s = RawDocumentBuf::new();
            s.append("q", q);
            match w {
                Write::Put {
                    body,
                    mode: PutMode::Insert,
                } => return body.into_raw(),
                Write::Put { body, mode } => {
                    s.append("u", dest::replacement(body.into_raw()?));
                    s.append("upsert", mode == PutMode::Upsert);
                }
                Write::Modify { update, .. } => {
                    s.append("u", update);
                    s.append("upsert", false);
                }
                Write::Delete | Write::PatchOnServer(_) => s.append("limit", 1),
            }
            if self.collated {
                s.append("collation", rawdoc! { "locale": "simple" });
            }
            Ok(s)
        };
        encoded(write).map_err(|e| bad_document(op, e))
    }
}

/// The whole document an insert or a replacement entry carries.
fn whole_document<'a>(op: &DocOp<'a>) -> Option<&'a RawDocument> {
    match op.change {
        Change::Insert(doc) | Change::Put(doc) => Some(doc),
        _ => None,
    }
}

/// The write of a diff's result: replace the existing document.
fn replace(new: Document) -> Write<'static, 'static> {
    Write::Put {
        body: Body::Owned(new),
        mode: PutMode::Replace,
    }
}

impl Body<'_> {
    fn into_raw(self) -> Result<RawDocumentBuf, mongodb::bson::raw::Error> {
        match self {
            Body::Raw(doc) => Ok(doc.to_raw_document_buf()),
            Body::Owned(doc) => raw(&doc),
        }
    }
}

impl CommandKind {
    fn name(self) -> &'static str {
        match self {
            CommandKind::Insert => "insert",
            CommandKind::Update => "update",
            CommandKind::Delete => "delete",
        }
    }

    fn list(self) -> &'static str {
        match self {
            CommandKind::Insert => "documents",
            CommandKind::Update => "updates",
            CommandKind::Delete => "deletes",
        }
    }
}

/// The update document of a `$v:1` entry (without `$v`).
fn modifier(set: Option<&RawDocument>, unset: Option<&RawDocument>) -> RawDocumentBuf {
    let mut u = RawDocumentBuf::new();
    if let Some(set) = set {
        u.append_ref("$set", RawBsonRef::Document(set));
    }
    if let Some(unset) = unset {
        u.append_ref("$unset", RawBsonRef::Document(unset));
    }
    u
}

fn raw(doc: &Document) -> Result<RawDocumentBuf, mongodb::bson::raw::Error> {
    RawDocumentBuf::from_document(doc)
}

fn simple_collation() -> mongodb::options::Collation {
    mongodb::options::Collation::builder()
        .locale("simple")
        .build()
}

fn bad_document(op: &DocOp<'_>, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Document {
        ns: op.ns.to_string(),
        id: show_id(op.id),
        message: e.to_string(),
    }
}

/// An `_id` for messages.
pub(super) fn show_id(id: RawBsonRef<'_>) -> String {
    match Bson::try_from(id) {
        Ok(b) => b.to_string(),
        Err(_) => "<unreadable _id>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document's writes of one kind in a row share a round, in order; a change of kind
    /// starts the next round.
    #[test]
    fn a_run_of_one_kind_is_one_round() {
        let inserted = rawdoc! { "_id": 1 };
        let modify = |n: i32| Write::Modify {
            update: rawdoc! { "$set": { "n": n } },
            fallback: None,
        };
        let insert = Write::Put {
            body: Body::Raw(&inserted),
            mode: PutMode::Insert,
        };
        // Document A: three updates, a delete, an insert, an update; document B: one update.
        let writes: Vec<Option<(usize, Write<'_, '_>)>> = vec![
            Some((0, modify(1))),
            Some((1, modify(10))),
            Some((2, modify(2))),
            Some((3, modify(3))),
            Some((4, Write::Delete)),
            Some((5, insert)),
            None,
            Some((7, modify(4))),
        ];
        let mut a = Track::new(State::Unknown);
        a.writes = vec![0, 2, 3, 4, 5, 7];
        let mut b = Track::new(State::Unknown);
        b.writes = vec![1];
        let rounds = rounds(writes, [a, b].into_iter());
        let shape: Vec<Vec<(usize, CommandKind)>> = rounds
            .iter()
            .map(|round| round.iter().map(|(i, w)| (*i, w.kind())).collect())
            .collect();
        use CommandKind::*;
        assert_eq!(
            shape,
            vec![
                vec![(0, Update), (1, Update), (2, Update), (3, Update)],
                vec![(4, Delete)],
                vec![(5, Insert)],
                vec![(7, Update)],
            ]
        );
    }
}
