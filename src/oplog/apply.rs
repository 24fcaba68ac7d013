//! Replaying the source oplog on the destination through ordinary commands.
//!
//! [`Applier::push`] takes raw entries in oplog order and queues them; a batch is applied when it
//! reaches `--oplogBatchSize` entries or [`MAX_BATCH_BYTES`], or when the caller calls
//! [`Applier::flush`] (before saving a bookmark, when the source is idle, at shutdown).
//!
//! Applying a batch:
//!
//! - The batch is expanded into steps in oplog order: CRUD operations (inner operations of
//!   non-transaction `applyOps` included), DDL commands, and committed transactions between two
//!   barriers. The namespace filter is applied to every operation, inside transactions too.
//! - CRUD runs between barriers are spread over writer lanes by hash of (namespace, `_id`), so each
//!   document's order holds while different documents are written in parallel
//!   (`super::writer`). A collection with a unique secondary index, or a capped collection,
//!   gets one ordered lane of its own.
//! - Every DDL command is a barrier: everything before it is acknowledged first, and it runs alone.
//! - Transactions are assembled from their entries (`partialTxn` chains, prepared transactions)
//!   in a bounded buffer, and their operations are applied at the commit entry, between barriers.
//!   They are not atomic on the destination, like mongod's own initial sync and mongorestore.
//!
//! Every write is idempotent, so replay may start from a copy that already holds some of the
//! entries' effects, and a batch that failed half-way may be applied again from the last
//! [`Applier::checkpoint`].

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use futures::future::try_join_all;
use futures::TryStreamExt;
use mongodb::bson::raw::{RawBsonRef, RawDocument};
use mongodb::bson::{doc, Document, RawDocumentBuf, Timestamp};
use mongodb::Client;
use rustc_hash::FxHashMap;
use tracing::{info, warn};

pub use super::error::ApplyError;

use super::catchup::CatchingUp;
use super::entry::{self, Class, Command, EntryError, Kind, Op, OpTime, Skip, Txn, TxnKey, Update};
use super::writer::{self, Change, DocOp, NsInfo, Patch};
use super::{ddl, dest};
use crate::bookmark::CatchUp;
use crate::cli::{Namespace, NamespaceFilter, DEFAULT_OPLOG_BATCH_SIZE};
use crate::error::Failure;
use crate::indexes::SpecRules;
use crate::order as id;

/// Writer lanes for CRUD of collections without ordering constraints.
pub const DEFAULT_WRITERS: usize = 8;
/// A batch is applied once its entries reach this many bytes (the server's 16 MB).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// The most bytes of transaction entries held while waiting for their commit.
pub const MAX_TXN_BYTES: usize = 256 * 1024 * 1024;
/// The fewest CRUD operations per writer lane in one run.
const MIN_OPS_PER_LANE: usize = 64;
/// `applyOps` may nest; the server allows 10 levels.
const MAX_APPLY_OPS_DEPTH: usize = 10;

/// Whether an entry writes the source's featureCompatibilityVersion document.
fn changes_fcv(entry: &RawDocument) -> bool {
    const FCV_ID: &str = "featureCompatibilityVersion";
    if entry.get_str("ns") != Ok("admin.system.version") {
        return false;
    }
    ["o", "o2"].iter().any(|field| {
        entry
            .get_document(field)
            .ok()
            .and_then(|d| d.get_str("_id").ok())
            == Some(FCV_ID)
    })
}

/// How the applier batches and spreads work.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Entries per batch (`--oplogBatchSize`).
    pub batch_entries: usize,
    /// Writer lanes for unordered collections.
    pub writers: usize,
    /// Replayed index builds: skipped entirely with `--noIndexRestore`, and built without
    /// expiry with `--ttlWithoutExpiry`, exactly as the copy builds them.
    pub indexes: Option<SpecRules>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            batch_entries: DEFAULT_OPLOG_BATCH_SIZE as usize,
            writers: DEFAULT_WRITERS,
            indexes: Some(SpecRules::default()),
        }
    }
}

/// Counters for the log and the status endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries pushed.
    pub entries: u64,
    /// Document write statements acknowledged by the destination.
    pub writes: u64,
    /// Partial updates of documents missing on the destination, skipped (never upserted).
    pub missing: u64,
    /// Writes that met a duplicate key while catching up with the copy; their documents are
    /// read again from the source ([`super::catchup`]).
    pub conflicts: u64,
    /// Operations not replayed: no-ops, internal namespaces, filtered out, aborted.
    pub skipped: u64,
    /// DDL commands applied.
    pub commands: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// Operations on namespaces the filter takes (writes and DDL), applied: a cutover waits
    /// until this stops moving.
    pub in_scope: u64,
}

/// Something waiting in the current batch.
enum Pending {
    /// One entry with CRUD or DDL to apply.
    Entry(RawDocumentBuf),
    /// The entries of a committed transaction, in order.
    Txn(Vec<RawDocumentBuf>),
}

/// One step of an expanded batch.
enum Step<'a> {
    Crud(DocOp<'a>),
    Command(Command<'a>),
    Barrier,
}

/// The entries of a transaction that has not committed yet.
struct Chain {
    entries: Vec<RawDocumentBuf>,
    bytes: usize,
    /// The last entry pushed before the chain's first one: a bookmark must not pass it.
    before: Option<OpTime>,
}

/// Open transactions, bounded by [`MAX_TXN_BYTES`].
#[derive(Default)]
struct TxnBuffer {
    chains: HashMap<TxnKey, Chain>,
    bytes: usize,
}

impl TxnBuffer {
    fn add(
        &mut self,
        key: TxnKey,
        entry: RawDocumentBuf,
        before: Option<OpTime>,
    ) -> Result<(), ApplyError> {
        let size = entry.as_bytes().len();
        if self.bytes + size > MAX_TXN_BYTES {
            return Err(ApplyError::TxnTooLarge {
                limit: MAX_TXN_BYTES,
            });
        }
        self.bytes += size;
        let chain = self.chains.entry(key).or_insert_with(|| Chain {
            entries: Vec::new(),
            bytes: 0,
            before,
        });
        chain.bytes += size;
        chain.entries.push(entry);
        Ok(())
    }

    fn take(&mut self, key: &TxnKey) -> Option<Chain> {
        let chain = self.chains.remove(key)?;
        self.bytes -= chain.bytes;
        Some(chain)
    }

    /// The bookmark limit imposed by open transactions: `None` if there are none,
    /// `Some(None)` if one began at the first entry pushed.
    fn limit(&self) -> Option<Option<OpTime>> {
        self.chains
            .values()
            .map(|c| c.before)
            .min_by_key(|b| b.map(|o| o.ts))
    }
}

/// What `push` decided for an entry, once the parse is dropped.
enum Action {
    Nothing,
    Queue,
    /// DDL: applied alone, with a checkpoint just before and just after it.
    Command,
    Buffer(TxnKey),
    Commit {
        key: TxnKey,
        prev: Option<Timestamp>,
    },
    CommitPrepared(TxnKey),
    Abort(TxnKey),
}

/// Applies oplog entries to the destination.
pub struct Applier {
    client: Client,
    filter: NamespaceFilter,
    options: ApplyOptions,
    pending: Vec<Pending>,
    pending_entries: usize,
    pending_bytes: usize,
    last_pushed: Option<OpTime>,
    applied: Option<OpTime>,
    txns: TxnBuffer,
    /// What replay needs to know about destination collections; cleared by every DDL command.
    namespaces: FxHashMap<Namespace, NsInfo>,
    /// Time-series collections already warned about.
    warned: HashSet<Namespace>,
    stats: ApplyStats,
    /// Entries at or below this position are already applied on the destination.
    resume: Option<Timestamp>,
    /// Called with the checkpoint just before and just after every DDL command, and whenever
    /// catch-up moves on.
    on_checkpoint: Option<CheckpointHook>,
    /// The last checkpoint handed to `on_checkpoint`.
    handed: Option<(OpTime, Option<CatchUp>)>,
    /// While replay catches up with the copy ([`super::catchup`]).
    catching: Option<CatchingUp>,
}

/// Saves a checkpoint durably (the bookmark, with the catch-up state it must keep) when
/// [`Applier`] asks for one.
pub type CheckpointHook = Box<dyn FnMut(OpTime, Option<CatchUp>) -> Result<(), Failure> + Send>;

impl Applier {
    /// An applier writing to `destination` (whose client should use majority write concern;
    /// every command also states it).
    pub fn new(destination: Client, filter: NamespaceFilter, options: ApplyOptions) -> Self {
        Applier {
            client: destination,
            filter,
            options,
            pending: Vec::new(),
            pending_entries: 0,
            pending_bytes: 0,
            last_pushed: None,
            applied: None,
            txns: TxnBuffer::default(),
            namespaces: FxHashMap::default(),
            warned: HashSet::new(),
            stats: ApplyStats::default(),
            resume: None,
            on_checkpoint: None,
            handed: None,
            catching: None,
        }
    }

    /// Starts replay in catch-up with a copy ([`super::catchup`]).
    pub fn catch_up(&mut self, catching: CatchingUp) {
        self.catching = Some(catching);
    }

    /// The catch-up state a bookmark must keep, while replay catches up.
    pub fn catch_up_mark(&self) -> Option<CatchUp> {
        self.catching.as_ref().map(|c| c.mark.clone())
    }

    /// Documents that met a duplicate key and wait to be read again from the source.
    pub fn conflicts_waiting(&self) -> usize {
        self.catching.as_ref().map_or(0, |c| c.conflicts.len())
    }

    /// Says that the reader has nothing more for now: if every entry up to the end of the
    /// copy is applied, catch-up ends here rather than at the next entry (an idle source may
    /// send none for a while).
    pub async fn settle(&mut self) -> Result<(), ApplyError> {
        let until = self
            .catching
            .as_ref()
            .map(|c| Timestamp::from(c.mark.until));
        let last = self.last_pushed.map(|o| o.ts);
        if until.is_some_and(|u| last.is_some_and(|l| l >= u)) {
            self.flush().await?;
            self.end_catch_up().await?;
        }
        Ok(())
    }

    /// Replay has applied every entry up to the end of the copy. Documents that met a duplicate
    /// key are read again (and catch-up goes on to the new horizon); when none are left, the
    /// relaxed indexes become unique and catch-up ends.
    async fn end_catch_up(&mut self) -> Result<(), ApplyError> {
        let last = self.last_pushed.map(|o| o.ts);
        loop {
            let Some(catching) = self.catching.as_mut() else {
                return Ok(());
            };
            if catching.conflicts.is_empty() {
                catching.convert_indexes(&self.client).await?;
                info!(
                    "oplog sync has caught up with the initial sync (it applied every entry up to {}:{}); {} unique indexes are unique again",
                    catching.mark.until.t,
                    catching.mark.until.i,
                    catching.mark.relaxed_indexes.len()
                );
                self.catching = None;
                self.namespaces.clear();
                return self.checkpoint_now();
            }
            catching.recheck(&self.client).await?;
            let until = Timestamp::from(catching.mark.until);
            let stuck = catching.conflicts.first().cloned();
            self.checkpoint_now()?;
            if last.is_none_or(|l| l < until) {
                return Ok(()); // the source moved on: replay up to the new horizon first
            }
            if let Some(conflict) = stuck {
                // Nothing changed on the source since, and the document written as the source
                // holds it still collides: another document differs.
                return Err(ApplyError::UniqueConflict {
                    ns: conflict.ns.to_string(),
                    index: conflict.index,
                    id: conflict.id.to_string(),
                    message: "it still collides after it was read again from the source".into(),
                });
            }
        }
    }

    /// Declares that every entry at or below `ts` is already applied on the destination: the
    /// bookmark names it, or (for a fresh start) the copy began after it. Replay reads the
    /// entry at `ts` again, because some servers give several entries one `ts`; such entries
    /// are applied again only when that is idempotent. A DDL command or a transaction's commit
    /// at or below `ts` is skipped: its effect is already there, and its transaction's earlier
    /// entries are not read again.
    pub fn resume_after(&mut self, ts: Timestamp) {
        self.resume = Some(ts);
    }

    /// Has `hook` save the checkpoint just before and just after every DDL command, so that a
    /// restart never replays a command over a state that later entries have changed (a
    /// collection renamed away and created again under its old name, say), nor entries
    /// that precede a command over the state after it.
    pub fn on_checkpoint(&mut self, hook: CheckpointHook) {
        self.on_checkpoint = Some(hook);
    }

    fn already_applied(&self, ts: Timestamp) -> bool {
        self.resume.is_some_and(|r| ts <= r)
    }

    /// Counters so far.
    pub fn stats(&self) -> ApplyStats {
        self.stats
    }

    /// The newest position that is safe to save as a bookmark: every entry pushed up to it is
    /// acknowledged by the destination, and no transaction that began at or before it is still
    /// open. `None` means nothing new is safe yet (keep the previous bookmark).
    ///
    /// SecantusDB gives all operations of one transaction the same `ts`, so entries pushed later
    /// may share the checkpoint's `ts`: resume with `ts >= checkpoint` (re-applying entries is
    /// idempotent), not `ts > checkpoint`, unless the source is a real mongod, where every
    /// entry has its own `ts`.
    pub fn checkpoint(&self) -> Option<OpTime> {
        let limits = [
            self.txns.limit(),
            self.catching.as_ref().and_then(|c| c.floor),
        ];
        limits
            .into_iter()
            .flatten()
            .fold(self.applied, |cp, limit| match (cp, limit) {
                (Some(cp), Some(limit)) if limit.ts < cp.ts => Some(limit),
                (Some(cp), Some(_)) => Some(cp),
                _ => None,
            })
    }

    /// The position of the last entry pushed, applied or not.
    pub fn last_pushed(&self) -> Option<OpTime> {
        self.last_pushed
    }

    /// Queues one entry (entries must come in oplog order) and applies the batch when full.
    /// After an error the applier must be dropped and replay restarted from the last checkpoint.
    pub async fn push(&mut self, entry: RawDocumentBuf) -> Result<(), ApplyError> {
        if changes_fcv(&entry) {
            let ts = entry
                .get_timestamp("ts")
                .map(|t| format!("{}:{}", t.time, t.increment))
                .unwrap_or_default();
            return Err(ApplyError::FcvChanged { ts });
        }
        let (optime, action) = {
            let header = entry::header(&entry).map_err(|e| entry_error(&entry, e))?;
            let action = match header.class {
                Class::Write => Action::Queue,
                Class::Op(Op::Skip(skip)) => {
                    self.note_skip(&skip);
                    Action::Nothing
                }
                Class::Op(Op::Command(_)) => Action::Command,
                Class::Op(Op::ApplyOps(ops)) if holds_command(ops) => Action::Command,
                Class::Op(_) => Action::Queue,
                Class::Txn(Txn::ApplyOps {
                    key,
                    partial,
                    prepare,
                    prev,
                    ..
                }) => {
                    if partial || prepare {
                        Action::Buffer(key)
                    } else {
                        Action::Commit { key, prev }
                    }
                }
                Class::Txn(Txn::Commit { key }) => Action::CommitPrepared(key),
                Class::Txn(Txn::Abort { key }) => Action::Abort(key),
            };
            (header.optime, action)
        };
        if self
            .catching
            .as_ref()
            .is_some_and(|c| optime.ts > Timestamp::from(c.mark.until))
        {
            self.flush().await?;
            self.end_catch_up().await?;
        }
        self.stats.entries += 1;
        let size = entry.as_bytes().len();
        // A commit is read again after its earlier entries were applied and left behind: at a
        // resume point, or after a cursor reopen that re-sent it.
        let read_again = self
            .resume
            .max(self.last_pushed.map(|o| o.ts))
            .is_some_and(|floor| optime.ts <= floor);
        match action {
            Action::Nothing => {}
            Action::Queue => self.queue(Pending::Entry(entry), size),
            Action::Command if self.already_applied(optime.ts) => self.stats.skipped += 1,
            Action::Command => {
                // Alone between two checkpoints: a restart replays either everything before
                // the command, or nothing but entries after it (the command itself only if it
                // is the resume point, where it is skipped).
                self.flush().await?;
                self.checkpoint_now()?;
                self.queue(Pending::Entry(entry), size);
                self.last_pushed = Some(optime);
                self.flush().await?;
                return self.checkpoint_now();
            }
            Action::Buffer(key) => self.txns.add(key, entry, self.last_pushed)?,
            Action::Commit { key, prev } => match self.txns.take(&key) {
                Some(chain) => {
                    let mut entries = chain.entries;
                    entries.push(entry);
                    self.queue(Pending::Txn(entries), size);
                }
                None if read_again => self.stats.skipped += 1,
                None if prev.is_some() => return Err(incomplete(&key, optime)),
                None => self.queue(Pending::Txn(vec![entry]), size),
            },
            Action::CommitPrepared(key) => match self.txns.take(&key) {
                Some(chain) => self.queue(Pending::Txn(chain.entries), chain.bytes),
                None if read_again => self.stats.skipped += 1,
                None => return Err(incomplete(&key, optime)),
            },
            Action::Abort(key) => {
                if self.txns.take(&key).is_none() {
                    warn!(
                        "transaction ({key}) aborts at {}, but none of its entries were read",
                        optime.ts
                    );
                }
                self.stats.skipped += 1;
            }
        }
        self.last_pushed = Some(optime);
        if self.pending_entries >= self.options.batch_entries.max(1)
            || self.pending_bytes >= MAX_BATCH_BYTES
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the current checkpoint to the hook, if there is one and a new safe position.
    fn checkpoint_now(&mut self) -> Result<(), ApplyError> {
        let Some(cp) = self.checkpoint() else {
            return Ok(());
        };
        let state = (cp, self.catch_up_mark());
        if self.handed.as_ref() == Some(&state) {
            return Ok(());
        }
        let Some(hook) = &mut self.on_checkpoint else {
            return Ok(());
        };
        hook(state.0, state.1.clone()).map_err(|f| ApplyError::Checkpoint(Box::new(f)))?;
        self.handed = Some(state);
        Ok(())
    }

    fn queue(&mut self, pending: Pending, size: usize) {
        self.pending.push(pending);
        self.pending_entries += 1;
        self.pending_bytes += size;
    }

    /// Applies everything queued; afterwards [`Applier::checkpoint`] covers every entry pushed
    /// except those of transactions still open.
    pub async fn flush(&mut self) -> Result<(), ApplyError> {
        let before = self.checkpoint();
        let pending = std::mem::take(&mut self.pending);
        self.pending_entries = 0;
        self.pending_bytes = 0;
        let mut steps = Vec::new();
        for item in &pending {
            match item {
                // Queued entries are operations outside transactions: this is their one parse.
                Pending::Entry(raw) => {
                    let op = entry::parse_op(raw).map_err(|e| entry_error(raw, e))?;
                    self.expand(op, raw, &mut steps, 0)?;
                }
                Pending::Txn(chain) => {
                    steps.push(Step::Barrier);
                    let (skipped, first_step) = (self.stats.skipped, steps.len());
                    for raw in chain {
                        let parsed = entry::parse(raw).map_err(|e| entry_error(raw, e))?;
                        if let Kind::Txn(Txn::ApplyOps { ops, .. }) = parsed.kind {
                            self.expand(Op::ApplyOps(ops), raw, &mut steps, 0)?;
                        }
                    }
                    if self.stats.skipped > skipped && steps.len() > first_step {
                        // mongomirror documents this case as undefined behaviour; say so.
                        let at = chain.last().and_then(|e| e.get_timestamp("ts").ok());
                        warn!(
                            "a transaction (committed at {}) touches namespaces inside and outside the namespace filter: \
                             only its operations on included namespaces are applied",
                            at.map(|t| format!("{}:{}", t.time, t.increment)).unwrap_or_default()
                        );
                    }
                    steps.push(Step::Barrier);
                    self.stats.transactions += 1;
                }
            }
        }
        self.run(steps).await?;
        self.applied = self.last_pushed;
        if let Some(c) = self.catching.as_mut() {
            if !c.conflicts.is_empty() && c.floor.is_none() {
                // A restart must meet these documents' entries again.
                c.floor = Some(before);
            }
        }
        Ok(())
    }

    /// Turns one operation into steps, unwrapping `applyOps` and applying the filter.
    fn expand<'a>(
        &mut self,
        op: Op<'a>,
        outer: &RawDocument,
        steps: &mut Vec<Step<'a>>,
        depth: usize,
    ) -> Result<(), ApplyError> {
        let (ns, id, change) = match op {
            Op::Skip(skip) => {
                self.note_skip(&skip);
                return Ok(());
            }
            Op::ApplyOps(list) => {
                if depth >= MAX_APPLY_OPS_DEPTH {
                    return Err(entry_error(
                        outer,
                        EntryError::Update("applyOps nests more than 10 levels".into()),
                    ));
                }
                for item in list {
                    let item = item.map_err(|e| entry_error(outer, e.into()))?;
                    let RawBsonRef::Document(inner) = item else {
                        return Err(entry_error(
                            outer,
                            EntryError::Type {
                                field: "o.applyOps[]",
                                expected: "a document",
                            },
                        ));
                    };
                    let inner = entry::parse_op(inner).map_err(|e| entry_error(outer, e))?;
                    self.expand(inner, outer, steps, depth + 1)?;
                }
                return Ok(());
            }
            Op::Command(command) => {
                let wanted = match &command {
                    Command::DropDatabase { db } => self.filter.wants_db(db),
                    other => other
                        .namespaces()
                        .into_iter()
                        .any(|ns| self.filter.wants(ns)),
                };
                if wanted {
                    steps.push(Step::Command(command));
                    self.stats.in_scope += 1;
                } else {
                    self.stats.skipped += 1;
                }
                return Ok(());
            }
            Op::Insert { ns, doc, id } => (ns, id, Change::Insert(doc)),
            Op::Delete { ns, id } => (ns, id, Change::Delete),
            Op::Update { ns, id, update } => {
                let change = match update {
                    Update::Replace(doc) => Change::Put(doc),
                    Update::Modifier {
                        set: None,
                        unset: None,
                    } => {
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    Update::Modifier { set, unset } => Change::Modify { set, unset },
                    Update::Diff(diff) => Change::Patch(Patch::Diff(diff)),
                    Update::Fields(fields) => Change::Patch(Patch::Fields(fields)),
                };
                (ns, id, change)
            }
        };
        if self.filter.wants(&ns) {
            let key = id::key(id);
            steps.push(Step::Crud(DocOp {
                ns,
                id,
                key,
                change,
            }));
            self.stats.in_scope += 1;
        } else {
            self.stats.skipped += 1;
        }
        Ok(())
    }

    fn note_skip(&mut self, skip: &Skip) {
        self.stats.skipped += 1;
        if let Skip::TimeSeriesBucket(ns) = skip {
            let view = Namespace::new(ns.db.clone(), ns.coll.trim_start_matches("system.buckets."));
            if self.filter.wants(&view) && self.warned.insert(view.clone()) {
                warn!("time-series collection {view}: writes to its buckets are not replayed; copy it again after the migration");
            }
        }
    }

    async fn run(&mut self, steps: Vec<Step<'_>>) -> Result<(), ApplyError> {
        let mut crud = Vec::new();
        for step in steps {
            match step {
                Step::Crud(op) => crud.push(op),
                Step::Barrier => self.apply_crud(std::mem::take(&mut crud)).await?,
                Step::Command(command) => {
                    self.apply_crud(std::mem::take(&mut crud)).await?;
                    let relaxed = self.catching.as_mut().map(|c| &mut c.mark.relaxed_indexes);
                    ddl::apply(
                        &self.client,
                        &self.filter,
                        self.options.indexes,
                        relaxed,
                        &command,
                    )
                    .await?;
                    self.namespaces.clear();
                    self.stats.commands += 1;
                }
            }
        }
        self.apply_crud(crud).await
    }

    /// Applies CRUD operations with no barrier between them, spread over lanes.
    async fn apply_crud(&mut self, ops: Vec<DocOp<'_>>) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        for op in &ops {
            if !self.namespaces.contains_key(&op.ns) {
                let info = ns_info(&self.client, &op.ns).await?;
                self.namespaces.insert(op.ns.clone(), info);
            }
        }
        let lanes = lanes(ops, &self.namespaces, self.options.writers);
        let (client, namespaces) = (&self.client, &self.namespaces);
        let catching_up = self.catching.is_some();
        let outcomes = try_join_all(lanes.iter().filter(|(ops, _)| !ops.is_empty()).map(
            |(ops, ordered)| writer::run_lane(client, ops, *ordered, namespaces, catching_up),
        ))
        .await?;
        for o in outcomes {
            self.stats.writes += o.writes;
            self.stats.missing += o.missing;
            self.stats.conflicts += o.conflicts.len() as u64;
            if let Some(c) = self.catching.as_mut() {
                for conflict in o.conflicts {
                    c.conflicts.add(conflict)?;
                }
            }
        }
        Ok(())
    }
}

/// A lane: operations in oplog order, and whether they must be sent in that order.
type Lane<'a> = (Vec<DocOp<'a>>, bool);

/// Spreads CRUD operations over lanes. A collection whose writes must keep oplog order
/// ([`NsInfo::keeps_order`]; unknown collections too) gets one ordered lane of its own; the others
/// share `writers` unordered lanes by hash of namespace and `_id` ([`id::key`], so every
/// byte form of one `_id` lands in the same lane). A small run (a transaction, the writes
/// between two DDL commands) is not worth many commands: lanes get at least
/// [`MIN_OPS_PER_LANE`] operations each.
fn lanes<'a>(
    ops: Vec<DocOp<'a>>,
    namespaces: &FxHashMap<Namespace, NsInfo>,
    writers: usize,
) -> Vec<Lane<'a>> {
    let writers = writers.clamp(1, ops.len().div_ceil(MIN_OPS_PER_LANE).max(1));
    let mut lanes: Vec<Lane<'a>> = (0..writers).map(|_| (Vec::new(), false)).collect();
    let mut ordered_lanes: FxHashMap<Namespace, usize> = FxHashMap::default();
    for op in ops {
        let ordered = namespaces.get(&op.ns).is_none_or(NsInfo::keeps_order);
        let lane = if ordered {
            *ordered_lanes.entry(op.ns.clone()).or_insert_with(|| {
                lanes.push((Vec::new(), true));
                lanes.len() - 1
            })
        } else {
            let mut h = rustc_hash::FxHasher::default();
            op.ns.hash(&mut h);
            op.key.hash(&mut h);
            (h.finish() % writers as u64) as usize
        };
        lanes[lane].0.push(op);
    }
    lanes
}

/// What replay needs to know about a destination collection: whether its writes must stay in
/// oplog order (a unique secondary index, as two documents may swap a unique value, or capped,
/// as natural order is insertion order), and whether it has a default collation.
async fn ns_info(client: &Client, ns: &Namespace) -> Result<NsInfo, ApplyError> {
    let failed = |e| ApplyError::Destination {
        what: "listing of collections and indexes".into(),
        ns: ns.to_string(),
        source: Box::new(e),
    };
    let db = client.database(&ns.db);
    let command = RawDocumentBuf::from_document(
        &doc! { "listCollections": 1, "filter": { "name": &ns.coll } },
    )
    .map_err(|e| ApplyError::Document {
        ns: ns.to_string(),
        id: String::new(),
        message: e.to_string(),
    })?;
    let reply = dest::run(client, &ns.db, command, "listCollections")
        .await
        .map_err(failed)?;
    let spec: Option<Document> = reply
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get_array("firstBatch").ok())
        .and_then(|b| b.first())
        .and_then(|s| s.as_document().cloned());
    let Some(spec) = spec else {
        // Created by this batch's first insert: no index, no collation.
        return Ok(NsInfo::default());
    };
    let options = spec.get_document("options").ok();
    let mut info = NsInfo {
        ordered: options.is_some_and(|o| o.get_bool("capped") == Ok(true)),
        collated: options
            .and_then(|o| o.get_document("collation").ok())
            .is_some_and(|c| c.get_str("locale") != Ok("simple")),
    };
    if info.ordered || spec.get_str("type").unwrap_or("collection") != "collection" {
        return Ok(info);
    }
    let coll = db.collection::<Document>(&ns.coll);
    let indexes: Vec<mongodb::IndexModel> =
        crate::retry::transient(&format!("listing the indexes of {ns}"), || async {
            coll.list_indexes().await?.try_collect().await
        })
        .await
        .map_err(failed)?;
    info.ordered = indexes.iter().any(|index| {
        let unique = index.options.as_ref().and_then(|o| o.unique) == Some(true);
        unique && !index.keys.keys().eq(["_id"])
    });
    Ok(info)
}

/// Whether a non-transaction `applyOps` holds a command (a user's `applyOps`): it is then
/// applied like a command, alone between two checkpoints.
fn holds_command(ops: &mongodb::bson::raw::RawArray) -> bool {
    ops.into_iter()
        .any(|op| matches!(op, Ok(RawBsonRef::Document(d)) if d.get_str("op") == Ok("c")))
}

fn entry_error(raw: &RawDocument, source: EntryError) -> ApplyError {
    let ts = match raw.get("ts") {
        Ok(Some(RawBsonRef::Timestamp(ts))) => ts.to_string(),
        _ => "an unknown position".to_string(),
    };
    ApplyError::Entry { ts, source }
}

fn incomplete(key: &TxnKey, at: OpTime) -> ApplyError {
    ApplyError::TxnIncomplete {
        key: key.to_string(),
        ts: at.ts.to_string(),
    }
}

#[cfg(test)]
mod tests;
