//! The Raft log store of a data partition: the partition's segment log
//! *is* the Raft log. One entry is one batch; nothing is written twice.
//!
//! - A normal entry is the producer's batch itself, with its base offset
//!   and leader epoch stamped by the append (the epoch field carries the
//!   entry's term). A leader's blank entry, a membership change and a log
//!   start (retention, below) are control batches
//!   ([`rill_protocol::batch::ATTR_CONTROL`]) whose one record holds the
//!   JSON of [`ControlPayload`].
//! - Entry indexes are not stored in the batches: the entries are the
//!   log's batches in order, from the *anchor* kept in the state file
//!   (`state_file`): the batch at the anchor offset has the anchor index,
//!   each later batch the next index. So an entry's log id is
//!   `(leader_epoch, anchor index + ordinal)`.
//! - Base offsets are the log end when the entry is appended. That is
//!   deterministic, so every replica gives a batch the same offsets, and
//!   its segment files come out as the leader's.
//!
//! # Memory
//! At open the store reads the log once from the anchor to the end and
//! keeps 16 bytes per entry (base offset, term) in memory. That is a dense
//! index: a partition of 10 million batches costs 160 MB. A sparse index
//! (per term, plus reads to resolve an ordinal) is a later step; so is
//! reading headers only at open (the log's `read` returns whole batches,
//! so the open reads every byte once).
//!
//! # Write order
//! openraft requires every write (append, vote, truncation, purge,
//! committed id) to take effect in the order it was issued. Its calls come
//! one at a time (`&mut self`); what could reorder them is durability, so:
//! an append returns once its batches are *written* (readable), and
//! reports *durable* through its callback after `PartitionLog::flush`, on a
//! task of its own; every state-file write first flushes the log, so it is
//! never durable before an append issued earlier; a truncation waits for
//! in-flight writes and syncs (`PartitionLog::truncate_to` does).
//!
//! # Flush mode
//! With [`FlushMode::Written`] the callback reports an append as soon as
//! it returns, before any fsync, and `save_committed` keeps the committed
//! id in memory only (saved with the next state-file write, which flushes
//! the log first): a commit then waits for no fsync at all. The log is
//! synced by its own fsync policy, by every state-file write (votes,
//! purges) and at close. The state file never gets ahead of the durable
//! log in either mode.
//!
//! # Retention and purge
//! Retention is the leader's decision, replicated as an entry: a control
//! batch whose payload is [`ControlPayload::LogStart`], carried by openraft
//! as a normal entry. Applying it (`state_machine`) raises the replica's
//! log start and asks openraft for a snapshot whose last log id is the
//! entry just below that offset, then for a purge up to it. openraft
//! purges only what a snapshot covers, and on a leader only once no
//! replication task still reads those entries; so the data goes when the
//! Raft log does, never under a reader.
//!
//! A purge records the purged log id, the anchor past it and the snapshot
//! it stands on in the state file, forgets the entries in memory, then
//! deletes the whole segments below the log start (the entry after the
//! purged one starts there; it is at most the applied position, since
//! openraft purges only what a snapshot covers and a snapshot only what
//! was applied). A segment the log start falls inside stays, its batches
//! below the start no longer served (`PartitionLog::read` still reads
//! them; the broker refuses offsets below the replica's log start).
//!
//! A replica whose log does not reach the purged id (it was behind, or
//! wiped, and the leader sent the snapshot in place of the entries it
//! lacked) restarts its partition log empty at the snapshot's log start
//! (`PartitionLog::restart_at`, Kafka's follower does the same); the
//! entries after it come by normal replication. The state file is written
//! first: a crash before the restart or the deletions finishes them at the
//! next open.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend};
use rill_protocol::batch::{
    stamp_base_offset, stamp_leader_epoch, BatchBuilder, BatchHeader, BatchView, HEADER_LEN,
};
use rill_storage::{Durability, PartitionLog};
use serde::{Deserialize, Serialize};

use crate::config::FlushMode;
use crate::error::ReplicationError;
use crate::state_file::{self, Anchor, PersistedState, SavedSnapshot};
use crate::types::{
    Entry, LogId, Membership, PartitionSnapshot, RaftBatch, SnapshotMeta, TypeConfig, Vote,
};

/// Bytes asked of `PartitionLog::read` per call when scanning or reading
/// entries (it returns at least one whole batch).
const READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Batch bytes `limited_get_log_entries` returns at most (but always at
/// least one entry), so one replication round stays bounded.
const LIMITED_READ_BYTES: usize = 8 * 1024 * 1024;
/// Timestamp of control batches: every replica builds them itself from the
/// entry, so they must agree on it for their logs to be identical.
const CONTROL_TIMESTAMP_MS: i64 = 0;

/// What a control batch holds: the log store's own entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControlPayload {
    Blank,
    Membership(Membership),
    /// The partition's log starts at `offset` from this entry on (the
    /// leader's retention). openraft sees it as a normal entry.
    LogStart {
        offset: u64,
    },
}

/// One entry in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    base_offset: u64,
    term: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 16);

/// The in-memory view of the Raft log: the persisted state and one slot per
/// entry. `slots[i]` has index `anchor.index + i`.
#[derive(Debug)]
struct Index {
    state: PersistedState,
    /// The newest snapshot the state machine built or installed; the next
    /// purge up to its last log id saves it in the state file.
    snapshot: Option<SavedSnapshot>,
    slots: VecDeque<Slot>,
    /// One past the last entry's last offset: where the next batch goes.
    end_offset: u64,
}

impl Index {
    fn first_index(&self) -> Option<u64> {
        self.state.anchor.map(|a| a.index)
    }

    /// The index the next append must have; `None` while the log holds no
    /// entry and nothing was purged (the first entry sets the index).
    fn next_index(&self) -> Option<u64> {
        match (self.first_index(), self.state.purged) {
            (Some(first), _) if !self.slots.is_empty() => Some(first + self.slots.len() as u64),
            (_, Some(p)) => Some(p.index + 1),
            _ => None,
        }
    }

    fn last_log_id(&self) -> Option<LogId> {
        match (self.first_index(), self.slots.back()) {
            (Some(first), Some(last)) => Some(LogId::new_term_index(
                u64::from(last.term),
                first + self.slots.len() as u64 - 1,
            )),
            _ => self.state.purged,
        }
    }

    fn last_term(&self) -> Option<u32> {
        self.slots.back().map(|s| s.term)
    }
}

/// Who waits for a tagged batch to be appended (a leader's `acks=leader`
/// writes): tag → where to send the batch's base offset. A waiter that
/// gives up removes its entry; an entry never appended here (leadership
/// lost first) is removed by its waiter when openraft answers it.
#[derive(Debug, Default)]
pub struct AppendWaiters {
    next_tag: std::sync::atomic::AtomicU64,
    waiting: Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<u64>>>,
}

impl AppendWaiters {
    /// A new tag and the receiver of its batch's base offset.
    pub fn register(&self) -> (u64, tokio::sync::oneshot::Receiver<u64>) {
        let tag = self
            .next_tag
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock().insert(tag, tx);
        (tag, rx)
    }

    pub fn forget(&self, tag: u64) {
        self.lock().remove(&tag);
    }

    fn appended(&self, tag: u64, base_offset: u64) {
        if let Some(tx) = self.lock().remove(&tag) {
            let _ = tx.send(base_offset);
        }
    }

    fn lock(
        &self,
    ) -> MutexGuard<'_, std::collections::HashMap<u64, tokio::sync::oneshot::Sender<u64>>> {
        // Single inserts and removals: a panicking holder leaves it whole.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// State shared by the store and its readers.
#[derive(Debug)]
struct Shared {
    log: Arc<PartitionLog>,
    state_path: PathBuf,
    index: Mutex<Index>,
    waiters: Arc<AppendWaiters>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index is only changed after the I/O it reflects succeeded, in
        // small steps that leave it whole: a panicking holder leaves it usable.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mismatch(&self, reason: String) -> ReplicationError {
        ReplicationError::LogMismatch {
            dir: self.log.dir().to_path_buf(),
            reason,
        }
    }
}

/// The Raft log store over one [`PartitionLog`]. Implements openraft's
/// [`RaftLogStorage`]; its readers ([`LogReader`]) see every append as
/// soon as it returns.
///
/// The store must be the log's only writer.
#[derive(Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
    /// When an append counts as stored (see the module docs).
    flush: FlushMode,
}

/// Reads entries and the vote for openraft's replication and apply tasks.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

/// Where the state file of the partition in `partition_dir` goes by
/// default: beside the directory (`<dir>.raft`), not in it, since storage
/// recovery owns the directory.
pub fn default_state_path(partition_dir: &Path) -> PathBuf {
    let mut name = partition_dir.as_os_str().to_owned();
    name.push(".raft");
    PathBuf::from(name)
}

impl LogStore {
    /// Opens the Raft log over `log`, whose Raft state is in `state_path`
    /// (created on the first write). Reads the log from the anchor to the
    /// end to rebuild the in-memory index.
    ///
    /// Fails if the state file is damaged, if the log holds data but there
    /// is no state, or if the log does not hold the entries the state
    /// describes (they start below the log start or past its end, or a
    /// batch is not where the previous one ends).
    pub fn open(
        log: Arc<PartitionLog>,
        state_path: impl Into<PathBuf>,
    ) -> Result<Self, ReplicationError> {
        let state_path = state_path.into();
        let found = state_file::read(&state_path)?;
        let log_start = log.log_start_offset();
        let log_end = log.log_end_offset();
        let shared = Shared {
            log,
            state_path,
            index: Mutex::new(Index {
                state: PersistedState::default(),
                snapshot: None,
                slots: VecDeque::new(),
                end_offset: log_end,
            }),
            waiters: Arc::default(),
        };
        let state = found.unwrap_or_default();
        let mut log_end = log_end;
        let scan_from = match (state.anchor, state.purged) {
            (None, None) if log_end == log_start => log_end,
            (None, None) => {
                return Err(shared.mismatch(format!(
                    "the log holds offsets {log_start}..{log_end} but {} records no raft entry \
                     (a partition that is not a raft log, or a lost state file)",
                    shared.state_path.display()
                )))
            }
            (None, Some(p)) => {
                return Err(shared.mismatch(format!(
                    "entries up to {p} are purged but the state records no anchor"
                )))
            }
            (Some(a), Some(_)) if a.offset > log_end && retention_start(&state).is_some() => {
                // A purge to an installed snapshot recorded its log start
                // and stopped before the log restarted there: finish it.
                // Nothing is in flight at open, so it completes at once.
                // The producer state the leader sent went with the
                // crash (the state file does not keep it): none.
                match shared.log.restart_at(a.offset, None).now_or_never() {
                    Some(result) => result?,
                    None => {
                        return Err(shared.mismatch(format!(
                            "cannot restart the log at {} while it has writes in flight",
                            a.offset
                        )))
                    }
                }
                log_end = a.offset;
                shared.lock().end_offset = log_end;
                a.offset
            }
            (Some(a), purged) => {
                if a.offset < log_start || a.offset > log_end {
                    return Err(shared.mismatch(format!(
                        "entries start at offset {} (index {}), outside the log's offsets \
                         {log_start}..={log_end}",
                        a.offset, a.index
                    )));
                }
                if let Some(p) = purged.filter(|p| p.index >= a.index) {
                    return Err(shared.mismatch(format!(
                        "purged up to {p} but the entries start at index {}",
                        a.index
                    )));
                }
                a.offset
            }
        };
        let slots = scan(&shared, scan_from, log_end)?;
        if let Some(start) = retention_start(&state) {
            // Finishes deletions a crash interrupted (none: a no-op).
            shared.log.delete_segments_below(start)?;
        }
        {
            let mut index = shared.lock();
            index.snapshot = state.snapshot.clone();
            index.state = state;
            index.slots = slots;
        }
        tracing::info!(
            dir = %shared.log.dir().display(),
            entries = shared.lock().slots.len(),
            "raft log store opened"
        );
        Ok(LogStore {
            shared: Arc::new(shared),
            flush: FlushMode::Synced,
        })
    }

    /// The store reporting appends to Raft as `flush` says (opened with
    /// [`FlushMode::Synced`]).
    pub fn with_flush_mode(self, flush: FlushMode) -> Self {
        LogStore { flush, ..self }
    }

    pub fn flush_mode(&self) -> FlushMode {
        self.flush
    }

    /// The partition log under the store (for reads of the data).
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.shared.log
    }

    /// True if the store holds no Raft state at all: no vote, no entry,
    /// nothing purged (a replica never started before).
    pub fn is_empty(&self) -> bool {
        let idx = self.shared.lock();
        idx.state.vote.is_none() && idx.state.purged.is_none() && idx.slots.is_empty()
    }

    /// The committed log id last saved.
    pub fn committed(&self) -> Option<LogId> {
        self.shared.lock().state.committed
    }

    /// Where a leader's tagged writes learn their base offset.
    pub fn append_waiters(&self) -> Arc<AppendWaiters> {
        Arc::clone(&self.shared.waiters)
    }

    /// A reader sharing this store's view.
    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// Writes `next` as the state file once every earlier append is
    /// durable, then makes it the in-memory state and runs `then` on the
    /// index under the same lock.
    async fn persist(
        &self,
        next: PersistedState,
        then: impl FnOnce(&mut Index),
    ) -> Result<(), ReplicationError> {
        self.shared.log.flush().await?;
        let path = self.shared.state_path.clone();
        let written = next.clone();
        tokio::task::spawn_blocking(move || state_file::write(&path, &written))
            .await
            .map_err(|e| ReplicationError::Task(e.to_string()))??;
        let mut index = self.shared.lock();
        index.state = next;
        then(&mut index);
        Ok(())
    }

    async fn append_entries(&self, entries: Vec<Entry>) -> Result<(), ReplicationError> {
        for entry in entries {
            let log_id = entry.log_id;
            let (index, term) = (log_id.index, log_id.leader_id.term);
            let term =
                u32::try_from(term).map_err(|_| ReplicationError::TermTooLarge { index, term })?;
            let tag = match &entry.payload {
                EntryPayload::Normal(data) => data.tag(),
                _ => None,
            };
            let mut batch = encode_entry(entry)?;
            let (base_offset, reanchor) = {
                let idx = self.shared.lock();
                if let Some(next) = idx.next_index().filter(|&n| n != index) {
                    return Err(ReplicationError::NotContiguous {
                        expected: next,
                        got: index,
                    });
                }
                if let Some(last) = idx.last_term().filter(|&t| t > term) {
                    return Err(ReplicationError::TermDecreases {
                        index,
                        term: u64::from(term),
                        last: u64::from(last),
                    });
                }
                // With no entry, the first one fixes the index of the batch
                // at the log end; recorded before the batch is written, so
                // no batch is ever on disk without its index known.
                let anchor = Anchor {
                    index,
                    offset: idx.end_offset,
                };
                let reanchor =
                    (idx.slots.is_empty() && idx.state.anchor != Some(anchor)).then(|| {
                        PersistedState {
                            anchor: Some(anchor),
                            ..idx.state.clone()
                        }
                    });
                (idx.end_offset, reanchor)
            };
            if let Some(next) = reanchor {
                self.persist(next, |_| {}).await?;
            }
            stamp_base_offset(&mut batch, base_offset);
            stamp_leader_epoch(&mut batch, term);
            let info = self
                .shared
                .log
                .append_replica(batch, Durability::Written)
                .await?;
            {
                let mut idx = self.shared.lock();
                idx.slots.push_back(Slot { base_offset, term });
                idx.end_offset = info.last_offset + 1;
            }
            if let Some(tag) = tag {
                self.shared.waiters.appended(tag, base_offset);
            }
        }
        Ok(())
    }

    async fn truncate_entries(&self, last: Option<LogId>) -> Result<(), ReplicationError> {
        let (keep, cut) = {
            let idx = self.shared.lock();
            let Some(first) = idx.first_index() else {
                return Ok(());
            };
            if let (Some(id), Some(p)) = (last, idx.state.purged) {
                if id.index < p.index {
                    return Err(ReplicationError::TruncateBelowPurged {
                        index: id.index,
                        purged: p.index,
                    });
                }
            }
            let keep = match last {
                None => 0,
                Some(id) => usize::try_from((id.index + 1).saturating_sub(first))
                    .unwrap_or(usize::MAX)
                    .min(idx.slots.len()),
            };
            match idx.slots.get(keep) {
                None => return Ok(()),
                Some(slot) => (keep, slot.base_offset),
            }
        };
        self.shared.log.truncate_to(cut).await?;
        let mut idx = self.shared.lock();
        idx.slots.truncate(keep);
        idx.end_offset = cut;
        Ok(())
    }

    /// Purges the entries up to `id` (see the module docs): the entry
    /// after it starts at the log start, which the log holds or the
    /// snapshot at `id` names.
    async fn purge_entries(&self, id: LogId) -> Result<(), ReplicationError> {
        let (next, drop, start, restart, delete, producers) = {
            let idx = self.shared.lock();
            if idx.state.purged.is_some_and(|p| p >= id) {
                return Ok(());
            }
            let snapshot = idx
                .snapshot
                .clone()
                .filter(|s| s.meta.last_log_id == Some(id));
            let len = idx.slots.len();
            let first = idx.first_index().unwrap_or(id.index + 1);
            let drop = usize::try_from((id.index + 1).saturating_sub(first))
                .unwrap_or(usize::MAX)
                .min(len);
            // Where the entry after `id` starts, if this log reaches `id`.
            let held = match idx.slots.get(drop) {
                Some(slot) => Some(slot.base_offset),
                None if idx.last_log_id().is_some_and(|last| last.index == id.index) => {
                    Some(idx.end_offset)
                }
                None => None,
            };
            let (start, restart) = match (held, &snapshot) {
                (Some(offset), Some(s)) if offset != s.data.log_start => {
                    return Err(self.shared.mismatch(format!(
                        "the snapshot at {id} says the log starts at {}, but the entry after \
                         it is at offset {offset}",
                        s.data.log_start
                    )))
                }
                (Some(offset), _) => (offset, false),
                (None, Some(s)) => (s.data.log_start, true),
                // Past the last entry with no snapshot naming the log
                // start (openraft's contract allows it; retention never
                // does it): the next entry goes at the log end.
                (None, None) => (idx.end_offset, false),
            };
            // Data is deleted only below a log start a snapshot names
            // (retention's purges); any other purge forgets entries only.
            let delete = snapshot.is_some();
            let producers = snapshot.as_ref().and_then(|s| s.data.producers.clone());
            let kept = snapshot.map(|mut s| {
                s.data.producers = None;
                s
            });
            let next = PersistedState {
                purged: Some(id),
                anchor: Some(Anchor {
                    index: id.index + 1,
                    offset: start,
                }),
                snapshot: kept.or_else(|| idx.state.snapshot.clone()),
                ..idx.state.clone()
            };
            (next, drop, start, restart, delete, producers)
        };
        self.persist(next, |idx| {
            idx.slots.drain(..drop);
        })
        .await?;
        if restart {
            self.shared
                .log
                .restart_at(start, producers.as_deref())
                .await?;
            let mut idx = self.shared.lock();
            idx.slots.clear();
            idx.end_offset = start;
        } else if delete {
            let log = Arc::clone(&self.shared.log);
            let outcome = tokio::task::spawn_blocking(move || log.delete_segments_below(start))
                .await
                .map_err(|e| ReplicationError::Task(e.to_string()))??;
            tracing::debug!(dir = %self.shared.log.dir().display(), purged = %id, log_start = start, ?outcome, "raft log purged");
        }
        Ok(())
    }

    async fn update_state(
        &self,
        change: impl FnOnce(&mut PersistedState),
    ) -> Result<(), ReplicationError> {
        let mut next = self.shared.lock().state.clone();
        change(&mut next);
        self.persist(next, |_| {}).await
    }
}

/// The log start the last purge left, if it stood on a snapshot naming it.
fn retention_start(state: &PersistedState) -> Option<u64> {
    state
        .snapshot
        .as_ref()
        .filter(|s| state.purged.is_some() && s.meta.last_log_id == state.purged)
        .map(|s| s.data.log_start)
}

/// Reads the log from `from` to `end` and returns one slot per batch,
/// checking that each batch starts where the previous one ended and that
/// terms never decrease.
fn scan(shared: &Shared, from: u64, end: u64) -> Result<VecDeque<Slot>, ReplicationError> {
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let mut offset = from;
    while offset < end {
        let chunk = shared.log.read(offset, READ_CHUNK_BYTES)?;
        let mut pos = 0usize;
        while let Some(rest) = chunk.get(pos..).filter(|r| r.len() >= HEADER_LEN) {
            let header = BatchHeader::parse(rest)?;
            let len = header.batch_length as usize;
            if len > rest.len() {
                break;
            }
            if header.base_offset != offset {
                return Err(shared.mismatch(format!(
                    "expected a batch at offset {offset}, found one at {}",
                    header.base_offset
                )));
            }
            if let Some(last) = slots.back().filter(|s| s.term > header.leader_epoch) {
                return Err(shared.mismatch(format!(
                    "batch at offset {offset} has term {} after term {}",
                    header.leader_epoch, last.term
                )));
            }
            slots.push_back(Slot {
                base_offset: offset,
                term: header.leader_epoch,
            });
            offset = header.next_offset();
            pos += len;
        }
        if pos == 0 {
            return Err(shared.mismatch(format!(
                "no whole batch at offset {offset}, below the log end {end}"
            )));
        }
    }
    Ok(slots)
}

/// The batch an entry is stored as, not yet stamped.
fn encode_entry(entry: Entry) -> Result<BytesMut, ReplicationError> {
    let log_id = entry.log_id;
    let control = match entry.payload {
        EntryPayload::Normal(data) => {
            // Only what `append_replica` cannot know: that this is not a
            // control batch, but for the one control kind carried as a
            // normal entry (a log start). Length and CRC are checked there,
            // once (the leader checked them before the entry entered Raft).
            if BatchHeader::parse(data.as_bytes())?.is_control()
                && log_start_of(data.as_bytes()).is_none()
            {
                return Err(ReplicationError::ControlBatchAsData);
            }
            // Takes the buffer over if the entry held the only reference
            // (a follower's decoded entry does); else one copy, since
            // stamping writes into it.
            return Ok(BytesMut::from(data.into_bytes()));
        }
        EntryPayload::Blank => ControlPayload::Blank,
        EntryPayload::Membership(m) => ControlPayload::Membership(m),
    };
    control_batch(&control).map_err(|e| match e {
        ReplicationError::ControlPayload { reason, .. } => ReplicationError::ControlPayload {
            offset: 0,
            reason: format!("cannot encode entry {log_id}: {reason}"),
        },
        other => other,
    })
}

/// The control batch holding `payload`, not yet stamped.
fn control_batch(payload: &ControlPayload) -> Result<BytesMut, ReplicationError> {
    let json = serde_json::to_vec(payload).map_err(|e| ReplicationError::ControlPayload {
        offset: 0,
        reason: e.to_string(),
    })?;
    Ok(BatchBuilder::control(CONTROL_TIMESTAMP_MS, &json)?)
}

/// The entry a leader writes to start the partition's log at `offset`: a
/// control batch of [`ControlPayload::LogStart`], as a normal entry.
pub(crate) fn log_start_batch(offset: u64) -> Result<RaftBatch, ReplicationError> {
    let batch = control_batch(&ControlPayload::LogStart { offset })?;
    Ok(RaftBatch::from_log(batch.freeze()))
}

/// The log start a batch sets, if it is a log start entry.
pub(crate) fn log_start_of(batch: &[u8]) -> Option<u64> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() {
        return None;
    }
    match control_payload(batch, &header).ok()? {
        ControlPayload::LogStart { offset } => Some(offset),
        _ => None,
    }
}

/// The payload of a control batch (`bytes` holds the batch).
fn control_payload(bytes: &[u8], header: &BatchHeader) -> Result<ControlPayload, ReplicationError> {
    let bad = |reason: String| ReplicationError::ControlPayload {
        offset: header.base_offset,
        reason,
    };
    let view = BatchView::new(bytes)?;
    let records = view.records()?;
    if records.len() != 1 {
        return Err(bad(format!("{} records, expected one", records.len())));
    }
    let record = records
        .get(0)
        .ok_or_else(|| bad("its record is missing".into()))?;
    serde_json::from_slice(record.value()).map_err(|e| bad(format!("unreadable: {e}")))
}

/// The entry a stored batch is: `bytes` is exactly the batch, `index` its
/// position in the Raft log.
fn decode_entry(bytes: Bytes, header: &BatchHeader, index: u64) -> Result<Entry, ReplicationError> {
    let log_id = LogId::new_term_index(u64::from(header.leader_epoch), index);
    if !header.is_control() {
        return Ok(Entry {
            log_id,
            payload: EntryPayload::Normal(RaftBatch::from_log(bytes)),
        });
    }
    let payload = match control_payload(&bytes, header)? {
        ControlPayload::Blank => EntryPayload::Blank,
        ControlPayload::Membership(m) => EntryPayload::Membership(m),
        ControlPayload::LogStart { .. } => EntryPayload::Normal(RaftBatch::from_log(bytes)),
    };
    Ok(Entry { log_id, payload })
}

impl LogReader {
    /// The log id of the entry that ends exactly at `offset` (the next
    /// one starts there), if the log holds it or purged up to it.
    pub(crate) fn log_id_ending_at(&self, offset: u64) -> Option<LogId> {
        let idx = self.shared.lock();
        let first = idx.first_index()?;
        let ends_at = |pos: usize| match idx.slots.get(pos + 1) {
            Some(next) => next.base_offset,
            None => idx.end_offset,
        };
        if let (Some(p), Some(a)) = (idx.state.purged, idx.state.anchor) {
            if a.offset == offset {
                return Some(p);
            }
        }
        let pos = idx
            .slots
            .partition_point(|s| s.base_offset < offset)
            .checked_sub(1)?;
        let slot = idx.slots.get(pos)?;
        (ends_at(pos) == offset)
            .then(|| LogId::new_term_index(u64::from(slot.term), first + pos as u64))
    }

    /// Where the log starts after the last purge, if it stood on a
    /// snapshot naming the log start (retention's purges).
    pub(crate) fn purged_start(&self) -> Option<u64> {
        retention_start(&self.shared.lock().state)
    }

    /// The id of the last entry of the log (or the last purged one).
    pub fn last_log_id(&self) -> Option<LogId> {
        self.shared.lock().last_log_id()
    }

    /// The producer state the log's batches below `offset` left, as a
    /// producer snapshot at `offset` (for a snapshot sent to a replica).
    pub(crate) fn producer_snapshot_before(&self, offset: u64) -> Vec<u8> {
        self.shared.log.producer_snapshot_before(offset)
    }

    /// The newest snapshot built or installed, or saved at the last purge.
    pub(crate) fn snapshot(&self) -> Option<(SnapshotMeta, PartitionSnapshot)> {
        let idx = self.shared.lock();
        idx.snapshot.clone().map(|s| (s.meta, s.data))
    }

    /// Records a snapshot the state machine built or installed, for the
    /// purge that stands on it to save.
    pub(crate) fn set_snapshot(&self, meta: SnapshotMeta, data: PartitionSnapshot) {
        let mut idx = self.shared.lock();
        if idx
            .snapshot
            .as_ref()
            .is_none_or(|s| s.meta.last_log_id <= meta.last_log_id)
        {
            idx.snapshot = Some(SavedSnapshot { meta, data });
        }
    }

    /// The offset just past entry `index` (where the next entry's batch
    /// starts), if the log holds that entry. This is what the high
    /// watermark becomes once the entry is applied.
    pub fn end_offset_after(&self, index: u64) -> Option<u64> {
        let idx = self.shared.lock();
        let first = idx.first_index()?;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        if pos + 1 < idx.slots.len() {
            Some(idx.slots[pos + 1].base_offset)
        } else if pos + 1 == idx.slots.len() {
            Some(idx.end_offset)
        } else {
            None
        }
    }

    /// The entries with indexes in `range` that the log holds, stopping
    /// after `budget` batch bytes (but never before the first entry).
    fn read_entries(
        &self,
        range: impl RangeBounds<u64>,
        budget: usize,
    ) -> Result<Vec<Entry>, ReplicationError> {
        let (first, slots) = {
            let idx = self.shared.lock();
            let Some(first) = idx.first_index() else {
                return Ok(Vec::new());
            };
            let held_end = first + idx.slots.len() as u64;
            let start = match range.start_bound() {
                Bound::Included(&s) => s,
                Bound::Excluded(&s) => s.saturating_add(1),
                Bound::Unbounded => 0,
            }
            .max(first);
            let end = match range.end_bound() {
                Bound::Included(&e) => e.saturating_add(1),
                Bound::Excluded(&e) => e,
                Bound::Unbounded => u64::MAX,
            }
            .min(held_end);
            if start >= end {
                return Ok(Vec::new());
            }
            // Both fit: they lie within the slots held in memory.
            let (lo, hi) = ((start - first) as usize, (end - first) as usize);
            let slots: Vec<Slot> = idx.slots.range(lo..hi).copied().collect();
            (start, slots)
        };
        let mut out = Vec::with_capacity(slots.len());
        let mut bytes_read = 0usize;
        // The slots were taken under the lock; checking every batch read
        // against them makes the read reflect one state of the log, or fail
        // if a truncation cut it meanwhile.
        let raced = || ReplicationError::ReadRaced {
            start: first,
            end: first + slots.len() as u64,
        };
        while out.len() < slots.len() && (out.is_empty() || bytes_read < budget) {
            let offset = slots[out.len()].base_offset;
            let chunk = self.shared.log.read(offset, READ_CHUNK_BYTES)?;
            let mut pos = 0usize;
            while let Some(rest) = chunk.get(pos..).filter(|r| r.len() >= HEADER_LEN) {
                let Some(slot) = slots.get(out.len()) else {
                    break;
                };
                let header = BatchHeader::parse(rest)?;
                let len = header.batch_length as usize;
                if len > rest.len() {
                    break;
                }
                if header.base_offset != slot.base_offset || header.leader_epoch != slot.term {
                    return Err(raced());
                }
                let index = first + out.len() as u64;
                out.push(decode_entry(chunk.slice(pos..pos + len), &header, index)?);
                pos += len;
                bytes_read += len;
                if bytes_read >= budget {
                    break;
                }
            }
            if pos == 0 {
                return Err(raced());
            }
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_entries(range, usize::MAX)
            .map_err(|e| e.into_io("read entries"))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.lock().state.vote)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_entries(start..end, LIMITED_READ_BYTES)
            .map_err(|e| e.into_io("read entries"))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.reader().try_get_log_entries(range).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.lock().state.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let idx = self.shared.lock();
        Ok(LogState {
            last_purged_log_id: idx.state.purged,
            last_log_id: idx.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.update_state(|s| s.vote = Some(vote))
            .await
            .map_err(|e| e.into_io("save vote"))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        if self.flush == FlushMode::Written {
            // Saving it would flush the log on every commit. Kept for the
            // next state write instead; a restart before it re-applies
            // less and learns the rest from the leader.
            self.shared.lock().state.committed = committed;
            return Ok(());
        }
        self.update_state(|s| s.committed = committed)
            .await
            .map_err(|e| e.into_io("save committed"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.shared.lock().state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.append_entries(entries)
            .await
            .map_err(|e| e.into_io("append"))?;
        if self.flush == FlushMode::Written {
            // Written is what this mode counts: no fsync waited for.
            callback.io_completed(Ok(()));
            return Ok(());
        }
        // The entries are readable now; durable once this flush returns. A
        // later append's flush may report first: each flush covers all
        // earlier appends, and openraft keeps the newest completion.
        let log = self.shared.log.clone();
        tokio::spawn(async move {
            let result = log
                .flush()
                .await
                .map_err(|e| ReplicationError::from(e).into_io("flush appended entries"));
            callback.io_completed(result);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.truncate_entries(last_log_id)
            .await
            .map_err(|e| e.into_io("truncate"))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.purge_entries(log_id)
            .await
            .map_err(|e| e.into_io("purge"))
    }
}
