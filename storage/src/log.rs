//! The partition log: appends, reads by offset and time, rolls, retention,
//! the fsync policy with group commit, and failure handling.
//!
//! # Concurrency
//! One `std::sync::Mutex` guards the bookkeeping (segments, offsets, sizes,
//! in-memory indexes). It is held only to assign an offset, stamp it and
//! queue the write — never across an await or an fsync — so offsets are
//! assigned, and writes submitted, in one order. Writes then complete on the
//! I/O thread; their completions are applied in offset order, so the
//! *written end* (what reads and the watch channel expose) only ever covers
//! bytes whose write completed, with no holes.
//!
//! # Durability
//! Offsets move through three ends: assigned (`next_offset`), written
//! (`written_end`, readable, `acks=leader`) and durable (`durable_end`).
//! A sync is run by one leader at a time: it waits until every write before
//! its target completed, then fdatasyncs every segment holding unsynced
//! written bytes (normally one; two right after a roll) and the directory if
//! a roll created files. Appenders arriving meanwhile wait and are covered
//! by the next leader's sync: group commit at this layer, on top of the I/O
//! thread's merging of syncs of one drain.
//!
//! A roll does not sync: the next sync covers the old segment too (it
//! syncs every segment with unsynced written bytes). It queues no
//! "best effort" fsync either: an fsync whose result nobody reads could fail
//! unseen, and the next fsync of that file would then report success for
//! lost bytes. For the same reason a sync leader whose future is dropped
//! still collects the outcome of the fsyncs it queued. Index files are
//! synced only on close; after a crash recovery checks them against the log.
//!
//! After an unclean stop the recovered bytes may still sit in the page
//! cache, and the directory entries of segments the crashed run created may
//! not be durable: the log opens with nothing counted as durable, so the
//! first sync covers every segment and the directory.
//!
//! # Failure
//! A failed fsync cannot be retried safely (the kernel may have dropped the
//! dirty pages, and the next fsync would report success for lost bytes), so
//! the log turns *failed*: appends return [`StorageError::LogFailed`] until
//! it is reopened, which recovers it. Other write errors do the same.
//!
//! A write refused for lack of space (`ENOSPC`, `EDQUOT`, `EFBIG`) is
//! different: nothing before it is in doubt, and the bytes from the refused
//! batch on are discarded. The log stops accepting appends until every
//! write in flight has finished, then rolls back (on the next append or
//! flush): the file is cut to where the refused batch started, segments
//! rolled after it are removed, the index is rebuilt from the file, and the
//! offsets are handed out again. Appenders of discarded batches, and
//! appends meanwhile, get [`StorageError::WriteRefused`] (an epoch, bumped
//! by each rollback, tells a late waiter whether its batch was kept). So a
//! full disk costs errors, not a restart.
//!
//! Reads check every batch's CRC before returning it (bit rot or tampering
//! after the write): a bad first batch is [`StorageError::Corrupt`], a bad
//! later one ends the read before it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rill_protocol::batch::{
    stamp_base_offset, BatchError, BatchHeader, BatchView, RecordBatchHeaderField, HEADER_LEN,
};
use tokio::sync::watch;

use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{Result, StorageError};
use crate::io::{BackendKind, Completion, IoBackend, LogFile};
use crate::producer_state::{BatchMeta, Check, ProducerStateMap};
use crate::producers::{self, ProducerRebuild};
use crate::recovery::{self, CleanState, RecoveryStats, CLEAN_SHUTDOWN_MARKER};
use crate::segment::{read_header, Segment};

/// How durable an append must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the file (page cache): `acks=leader`.
    #[default]
    Written,
    /// fdatasync'd, under group commit: `acks=all` on a single node.
    Synced,
}

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    /// Byte position of the batch in its segment file; `None` for a
    /// duplicate, which was not written again.
    pub position: Option<u64>,
    pub max_timestamp: i64,
    /// An idempotent producer's retry of a batch already in the log: it was
    /// not written again, and the offsets are the original's.
    pub duplicate: bool,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: u64,
}

/// Counters of one log since it was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub bytes_appended: u64,
    /// fdatasync requests this log issued on segment files (group commit
    /// makes this far smaller than the number of synced appends).
    pub syncs: u64,
    /// The log refuses appends after an I/O error.
    pub failed: bool,
    /// Reads that found a batch failing its CRC (and did not serve it).
    pub corrupt_reads: u64,
    /// Rollbacks after a write refused for lack of space.
    pub write_rollbacks: u64,
    pub recovery: RecoveryStats,
    /// Idempotent batches answered as duplicates (not written again).
    pub duplicates: u64,
    /// Producer ids remembered now.
    pub producers: usize,
    /// Producer ids evicted at `producer_ids_max` since the open.
    pub producer_evictions: u64,
    /// Producer ids forgotten by expiry since the open.
    pub producer_expirations: u64,
    /// How the producer state was last rebuilt (at open, or after a
    /// rollback or truncation).
    pub producer_rebuild: ProducerRebuild,
}

/// A write submitted and not yet applied to the written end.
#[derive(Debug)]
struct Pending {
    base: u64,
    end: u64,
    segment_base: u64,
    position: u64,
    end_position: u64,
    done: bool,
    /// Its write was refused for lack of space: it and every later write
    /// are discarded by the rollback.
    aborted: bool,
}

/// Where a rollback cuts the log: the first batch whose write was refused.
#[derive(Debug, Clone, Copy)]
struct Cut {
    offset: u64,
    segment_base: u64,
    position: u64,
    reason: &'static str,
}

/// Rollbacks remembered for late waiters (see [`PartitionLog::wait_written`]);
/// a waiter older than this gets an error even if its batch was kept, which
/// a producer's retry turns into a duplicate at worst.
const ROLLBACK_HISTORY_MAX: usize = 32;

/// Write errors that mean "no space", after which the log rolls back
/// instead of failing for good.
fn is_space_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; the last one is active. Never empty.
    segments: Vec<Segment>,
    log_start: u64,
    next_offset: u64,
    written_end: u64,
    durable_end: u64,
    pending: VecDeque<Pending>,
    failed: Option<String>,
    /// A write was refused for lack of space; the rollback is pending.
    rollback: Option<Cut>,
    /// Opened read-only: the directory every write is refused for.
    read_only: Option<PathBuf>,
    /// Bumped by each rollback.
    epoch: u64,
    /// `(epoch a rollback started, offset it cut at)`, newest last.
    rollbacks: VecDeque<(u64, u64)>,
    closed: bool,
    sync_in_flight: bool,
    /// A roll created files whose directory entries are not yet durable.
    dir_dirty: bool,
    bytes_since_sync: u64,
    last_sync_ms: i64,
    /// The idempotent producers' state implied by every batch assigned an
    /// offset (see `producer_state`); changed only under this lock, in
    /// offset order, together with the offsets it describes.
    producers: ProducerStateMap,
    producer_rebuild: ProducerRebuild,
}

impl Inner {
    fn active(&self) -> &Segment {
        // Invariant of Inner: open, retention and truncation keep a segment.
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        // Invariant of Inner: open, retention and truncation keep a segment.
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    fn segment_mut(&mut self, base: u64) -> Option<&mut Segment> {
        let i = self
            .segments
            .binary_search_by_key(&base, |s| s.base_offset)
            .ok()?;
        self.segments.get_mut(i)
    }

    /// Index of the segment holding `offset` (the last with base <= offset).
    fn segment_index_for(&self, offset: u64) -> Option<usize> {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed {
            return Err(StorageError::Closed);
        }
        if let Some(dir) = &self.read_only {
            return Err(StorageError::ReadOnly { dir: dir.clone() });
        }
        match (&self.failed, &self.rollback) {
            (Some(reason), _) => Err(StorageError::LogFailed {
                reason: reason.clone(),
            }),
            (None, Some(cut)) => Err(StorageError::WriteRefused {
                reason: format!(
                    "{}; the log rolls back to offset {} once writes in flight finish",
                    cut.reason, cut.offset
                ),
            }),
            (None, None) => Ok(()),
        }
    }

    fn out_of_range(&self, requested: u64) -> StorageError {
        StorageError::OffsetOutOfRange {
            requested,
            log_start: self.log_start,
            log_end: self.written_end,
        }
    }
}

/// One partition's log. `Send + Sync`; share it as `Arc<PartitionLog>`.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    backend: Arc<dyn IoBackend>,
    inner: Mutex<Inner>,
    end_tx: watch::Sender<u64>,
    /// Bumped whenever the written or durable end moves, a sync leader
    /// steps down, or the log fails: what waiters in `sync_to` wake on.
    progress_tx: watch::Sender<()>,
    appends: AtomicU64,
    bytes_appended: AtomicU64,
    syncs: AtomicU64,
    corrupt_reads: AtomicU64,
    write_rollbacks: AtomicU64,
    duplicates: AtomicU64,
    recovery: RecoveryStats,
}

const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<PartitionLog>();
};

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it if the
    /// last run did not close it cleanly. Synchronous: runs at start-up.
    pub fn open(dir: &Path, config: LogConfig, backend: Arc<dyn IoBackend>) -> Result<Self> {
        Self::open_in(dir, config, backend, false)
    }

    /// Opens the log in `dir` for reading only, for a data directory that
    /// cannot be written. Recovery still validates (a torn or corrupt tail is
    /// not served) but nothing on disk changes: the clean-shutdown marker
    /// stays, no file is cut, created or removed, indexes are rebuilt in
    /// memory. Every append, flush of new data, truncation or retention
    /// deletion returns [`StorageError::ReadOnly`]; `close` writes nothing.
    /// A missing `dir` opens as an empty log.
    pub fn open_read_only(
        dir: &Path,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
    ) -> Result<Self> {
        Self::open_in(dir, config, backend, true)
    }

    fn open_in(
        dir: &Path,
        config: LogConfig,
        backend: Arc<dyn IoBackend>,
        read_only: bool,
    ) -> Result<Self> {
        config.validate()?;
        let (mut segments, recovery) = recovery::recover(
            dir,
            config.index_interval_bytes,
            backend.as_ref(),
            read_only,
        )?;
        let now = wall_ms();
        if let Some(active) = segments.last_mut() {
            active.first_append_ms = (!active.is_empty()).then_some(now);
        }
        let log_start = segments.first().map_or(0, |s| s.base_offset);
        let end = segments.last().map_or(0, |s| s.next_offset);
        // See the module docs: after a crash nothing is known to be durable.
        let unclean = !recovery.clean_shutdown;
        if unclean {
            for segment in &mut segments {
                segment.synced_size = 0;
            }
        }
        let (mut producers, producer_rebuild) = producers::rebuild(
            dir,
            &segments,
            log_start,
            end,
            config.producer_ids_max,
            config.producer_id_expiration_ms,
            !read_only,
            now,
        )?;
        producers.remove_expired(now);
        // What the rebuild read is not read again at the next open (a
        // directory written before producer snapshots existed is scanned
        // once). Not fatal: the next open would replay the same headers.
        let replayed =
            producer_rebuild.batches_replayed > 0 || producer_rebuild.snapshot_offset.is_none();
        if !read_only && replayed {
            if let Err(e) = producers::write_snapshot(dir, &producers, end, true) {
                tracing::warn!(dir = %dir.display(), error = %e, "producer state snapshot at open failed");
            }
        }
        tracing::info!(
            dir = %dir.display(), log_start, log_end = end, segments = segments.len(),
            clean = recovery.clean_shutdown, bytes_truncated = recovery.bytes_truncated,
            backend = backend.kind().as_str(), read_only, producers = producers.len(),
            producer_snapshot = ?producer_rebuild.snapshot_offset,
            producer_batches_replayed = producer_rebuild.batches_replayed,
            "partition log opened"
        );
        let inner = Inner {
            segments,
            log_start,
            next_offset: end,
            written_end: end,
            durable_end: if unclean { log_start } else { end },
            pending: VecDeque::new(),
            failed: None,
            rollback: None,
            read_only: read_only.then(|| dir.to_path_buf()),
            epoch: 0,
            rollbacks: VecDeque::new(),
            closed: false,
            sync_in_flight: false,
            dir_dirty: unclean,
            bytes_since_sync: 0,
            last_sync_ms: now,
            producers,
            producer_rebuild,
        };
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config,
            backend,
            inner: Mutex::new(inner),
            end_tx: watch::Sender::new(end),
            progress_tx: watch::Sender::new(()),
            appends: AtomicU64::new(0),
            bytes_appended: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            corrupt_reads: AtomicU64::new(0),
            write_rollbacks: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            recovery,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves bookkeeping that was updated
        // step by step; the data files are unaffected and reads stay bounded
        // by the written end, so carrying on is safer than poisoning the log.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, inner: &Inner) {
        self.progress_tx.send_replace(());
        self.end_tx.send_if_modified(|end| {
            let changed = *end != inner.written_end;
            *end = inner.written_end;
            changed
        });
    }

    fn fail(&self, inner: &mut Inner, reason: String) {
        if inner.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), %reason, "partition log failed; refusing appends until reopened");
            inner.failed = Some(reason);
        }
        self.publish(inner);
    }

    /// Checks a batch as it arrived: header, exact length, CRC, size limit.
    fn check_batch(&self, batch: &[u8]) -> Result<BatchHeader> {
        let limit = self.config.max_batch_bytes as usize;
        if batch.len() > limit {
            return Err(BatchError::TooLarge {
                size: batch.len(),
                limit,
            }
            .into());
        }
        let view = BatchView::new(batch)?;
        if view.len() != batch.len() {
            return Err(BatchError::BadLength {
                field: RecordBatchHeaderField::BatchLength,
                value: u64::from(view.header().batch_length),
            }
            .into());
        }
        view.validate()?;
        Ok(*view.header())
    }

    /// Appends one batch: validates it, stamps the next offset into it and
    /// writes it. Returns once it is readable, and with
    /// [`Durability::Synced`] (or a due fsync policy) once it is durable.
    ///
    /// An idempotent batch (producer id set) first passes the producer
    /// checks (`producer_state`): a gap, a fenced epoch or an unknown
    /// producer is refused with [`StorageError::Producer`]; a retry of a
    /// batch already appended is not written again but answered with the
    /// original's offsets, once the original is as durable as
    /// `durability` asks (a duplicate with `Synced` waits for the
    /// original's fsync, even if the original was appended `Written`).
    pub async fn append(&self, batch: BytesMut, durability: Durability) -> Result<AppendInfo> {
        let header = self.check_batch(&batch)?;
        let len = batch.len() as u64;
        let now = wall_ms();
        // The lock guard must not live across an await (the future would
        // not be `Send`): the decision leaves the block as a value.
        let started = {
            let mut inner = self.lock();
            self.try_roll_back(&mut inner);
            inner.check_writable()?;
            match inner.producers.check(&header, now)? {
                Check::Append => Ok(self.start_append(&mut inner, batch, &header, len, now)?),
                Check::Duplicate(kept) => Err((kept, inner.epoch)),
            }
        };
        let (info, end, epoch, guard) = match started {
            Ok(started) => started,
            Err((kept, epoch)) => {
                return self
                    .answer_duplicate(kept, epoch, durability, header.max_timestamp)
                    .await;
            }
        };
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.bytes_appended.fetch_add(len, Ordering::Relaxed);
        guard.finish().await?;
        self.wait_written(end, epoch).await?;
        let sync = {
            let mut inner = self.lock();
            durability == Durability::Synced || self.sync_due(&mut inner, now)
        };
        if sync {
            self.sync_to(end).await?;
        }
        Ok(info)
    }

    /// The locked part of an append: rolls if due, assigns and stamps the
    /// offset, books the batch (indexes, producer state) and queues its
    /// write.
    fn start_append<'a>(
        &'a self,
        inner: &mut Inner,
        mut batch: BytesMut,
        header: &BatchHeader,
        len: u64,
        now: i64,
    ) -> Result<(AppendInfo, u64, u64, WriteGuard<'a>)> {
        // The log's end comes from file names: near `u64::MAX` the
        // batch's offsets may not fit (the same check parsing applies
        // to a batch's own base offset).
        if inner
            .next_offset
            .checked_add(u64::from(header.record_count))
            .is_none()
        {
            return Err(BatchError::BadLength {
                field: RecordBatchHeaderField::BaseOffset,
                value: inner.next_offset,
            }
            .into());
        }
        self.maybe_roll(inner, header, len, now)?;
        let base = inner.next_offset;
        stamp_base_offset(&mut batch, base);
        let header = BatchHeader {
            base_offset: base,
            ..*header
        };
        inner.producers.record(&header, base, now);
        let interval = self.config.index_interval_bytes;
        let segment = inner.active_mut();
        let position = segment.size;
        segment.note_batch(&header, position, len, interval);
        segment.first_append_ms.get_or_insert(now);
        let segment_base = segment.base_offset;
        let completion = segment.log.write_at(position, batch.freeze());
        let path = segment.path().to_path_buf();
        let end = header.next_offset();
        inner.next_offset = end;
        inner.bytes_since_sync += len;
        inner.pending.push_back(Pending {
            base,
            end,
            segment_base,
            position,
            end_position: position + len,
            done: false,
            aborted: false,
        });
        let info = AppendInfo {
            base_offset: base,
            last_offset: header.last_offset(),
            position: Some(position),
            max_timestamp: header.max_timestamp,
            duplicate: false,
        };
        let guard = WriteGuard {
            log: self,
            base,
            path,
            completion: Some(completion),
        };
        Ok((info, end, inner.epoch, guard))
    }

    /// Answers a retry of the batch `kept` describes: once the original is
    /// written (and, with `Synced`, durable). If a rollback since `epoch`
    /// discarded the original, the retry gets the rollback's retriable
    /// error, and its next attempt finds the state rebuilt without it.
    async fn answer_duplicate(
        &self,
        kept: BatchMeta,
        epoch: u64,
        durability: Durability,
        max_timestamp: i64,
    ) -> Result<AppendInfo> {
        let end = kept.last_offset() + 1;
        {
            let inner = self.lock();
            // Every suffix removal rebuilds the state, so the original is
            // always below the assigned end; were it not, waiting for it
            // would never end.
            if inner.epoch == epoch && end > inner.next_offset {
                return Err(StorageError::WriteRefused {
                    reason: format!(
                        "the original of this retry ended at offset {end}, past the log end {}",
                        inner.next_offset
                    ),
                });
            }
        }
        self.wait_written(end, epoch).await?;
        // As durable as a first write of the same batch would be: synced
        // for `Synced`, and under `fsync=always` whatever was asked (the
        // original's own appender may still be waiting for its fsync).
        if durability == Durability::Synced || self.config.fsync == FsyncPolicy::Always {
            self.sync_to(end).await?;
        }
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        Ok(AppendInfo {
            base_offset: kept.base_offset,
            last_offset: kept.last_offset(),
            position: None,
            max_timestamp,
            duplicate: true,
        })
    }

    /// Rebuilds the producer state from what the log now holds, after a
    /// suffix of it was removed (see `producers`).
    fn rebuild_producers(&self, inner: &mut Inner) -> Result<()> {
        let (mut producers, report) = producers::rebuild(
            &self.dir,
            &inner.segments,
            inner.log_start,
            inner.next_offset,
            self.config.producer_ids_max,
            self.config.producer_id_expiration_ms,
            true,
            wall_ms(),
        )?;
        producers.carry_counters(&inner.producers);
        inner.producers = producers;
        inner.producer_rebuild = report;
        Ok(())
    }

    /// Applies a finished write: marks it done and advances the written end
    /// over every leading done write.
    fn apply_write(&self, base: u64, path: &Path, result: std::io::Result<()>) -> Result<()> {
        let mut inner = self.lock();
        if let Err(e) = result {
            if is_space_error(&e) && inner.failed.is_none() {
                self.abort_write(&mut inner, base, path, &e);
            } else {
                self.fail(
                    &mut inner,
                    format!("write to {} failed: {e}", path.display()),
                );
            }
            return Err(StorageError::io(path, e));
        }
        let i = inner.pending.partition_point(|p| p.base < base);
        if let Some(p) = inner.pending.get_mut(i).filter(|p| p.base == base) {
            p.done = true;
        }
        let mut advanced = false;
        while inner.pending.front().is_some_and(|p| p.done) {
            let Some(p) = inner.pending.pop_front() else {
                break;
            };
            if let Some(segment) = inner.segment_mut(p.segment_base) {
                segment.written_size = segment.written_size.max(p.end_position);
            }
            inner.written_end = p.end;
            advanced = true;
        }
        if advanced {
            self.publish(&inner);
        }
        Ok(())
    }

    /// Marks the write of the batch at `base` refused for lack of space:
    /// it and everything after it will be rolled back (module docs).
    fn abort_write(&self, inner: &mut Inner, base: u64, path: &Path, e: &std::io::Error) {
        let i = inner.pending.partition_point(|p| p.base < base);
        let Some(p) = inner.pending.get_mut(i).filter(|p| p.base == base) else {
            self.fail(inner, format!("write to {} failed: {e}", path.display()));
            return;
        };
        p.aborted = true;
        let cut = Cut {
            offset: p.base,
            segment_base: p.segment_base,
            position: p.position,
            reason: "no space left on the device or quota",
        };
        if inner.rollback.is_none_or(|c| cut.offset < c.offset) {
            inner.rollback = Some(cut);
        }
        tracing::warn!(
            dir = %self.dir.display(), path = %path.display(), offset = base, error = %e,
            "write refused for lack of space; refusing appends until writes in flight finish, then rolling back"
        );
        self.publish(inner);
    }

    /// Runs a pending rollback once no write or sync is in flight: cuts the
    /// log back to the first refused batch. A failure here (the files and
    /// the bookkeeping may disagree) fails the log for good.
    fn try_roll_back(&self, inner: &mut Inner) {
        let Some(cut) = inner.rollback else { return };
        if inner.failed.is_some()
            || inner.sync_in_flight
            || inner.pending.iter().any(|p| !p.done && !p.aborted)
        {
            return;
        }
        match self.roll_back_locked(inner, cut) {
            Ok(()) => {
                inner.rollback = None;
                inner.rollbacks.push_back((inner.epoch, cut.offset));
                if inner.rollbacks.len() > ROLLBACK_HISTORY_MAX {
                    inner.rollbacks.pop_front();
                }
                inner.epoch += 1;
                self.write_rollbacks.fetch_add(1, Ordering::Relaxed);
                tracing::info!(dir = %self.dir.display(), log_end = cut.offset, "rolled back after a refused write; accepting appends again");
                self.publish(inner);
            }
            Err(e) => self.fail(inner, format!("rollback after a refused write failed: {e}")),
        }
    }

    fn roll_back_locked(&self, inner: &mut Inner, cut: Cut) -> Result<()> {
        // Every write before the cut completed and was applied (the
        // rollback waits for them), so the written end is the cut.
        debug_assert_eq!(inner.written_end, cut.offset);
        let keep = inner
            .segments
            .partition_point(|s| s.base_offset <= cut.segment_base)
            .max(1);
        let removed: Vec<Segment> = inner.segments.drain(keep..).collect();
        for segment in &removed {
            recovery::remove_segment_files(&self.dir, segment.base_offset, self.backend.as_ref())?;
        }
        let interval = self.config.index_interval_bytes;
        let active = inner.active_mut();
        // Cut first: it frees the space the index rewrite below needs. The
        // index files are reloaded and checked against the cut log (entries
        // past it dropped, a torn entry rebuilt), not rewritten from memory.
        active
            .log
            .set_len(cut.position)
            .map_err(|e| StorageError::io(active.path(), e))?;
        let synced = active.synced_size.min(cut.position);
        let first_append_ms = active.first_append_ms;
        let mut scratch = RecoveryStats::default();
        let mut rebuilt = recovery::recover_segment(
            &self.dir,
            active.base_offset,
            active.log.clone(),
            cut.position,
            interval,
            false,
            &mut scratch,
        )?;
        rebuilt.synced_size = synced;
        rebuilt.first_append_ms = first_append_ms.filter(|_| !rebuilt.is_empty());
        *active = rebuilt;
        let end = active.next_offset;
        inner.pending.clear();
        inner.next_offset = end;
        inner.written_end = end;
        inner.durable_end = inner.durable_end.min(end);
        if !removed.is_empty() {
            inner.dir_dirty = true;
        }
        self.rebuild_producers(inner)
    }

    /// Returns once every write below `end` completed (earlier appends may
    /// still be in flight when this one's write completes). Fails if an
    /// earlier write failed: this batch then sits after a hole, or if a
    /// rollback since `epoch` (the log's epoch at the append) discarded it.
    async fn wait_written(&self, end: u64, epoch: u64) -> Result<()> {
        let mut rx = self.progress_tx.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let inner = self.lock();
                if inner.epoch != epoch {
                    // The first rollback after the append decides: it kept
                    // exactly the batches below its cut.
                    let kept = inner
                        .rollbacks
                        .iter()
                        .find(|(e, _)| *e == epoch)
                        .is_some_and(|(_, cut)| end <= *cut);
                    return if kept {
                        Ok(())
                    } else {
                        Err(StorageError::WriteRefused {
                            reason: "the batch was discarded by a rollback or a truncation".into(),
                        })
                    };
                }
                if inner.written_end >= end {
                    return Ok(());
                }
                // A rollback pending at a later offset keeps this batch:
                // only the earlier writes it waits for are still running.
                match inner.rollback {
                    Some(cut) if end <= cut.offset && inner.failed.is_none() => {}
                    _ => inner.check_writable()?,
                }
            }
            if rx.changed().await.is_err() {
                return Err(StorageError::Closed);
            }
        }
    }

    /// Whether the fsync policy asks for a sync now; claims it if so.
    fn sync_due(&self, inner: &mut Inner, now_ms: i64) -> bool {
        match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Never => false,
            FsyncPolicy::IntervalBytes(bytes) => {
                let due = inner.bytes_since_sync >= bytes;
                if due {
                    inner.bytes_since_sync = 0;
                }
                due
            }
            FsyncPolicy::IntervalMs(ms) => {
                let due = now_ms.saturating_sub(inner.last_sync_ms) >= ms_i64(ms);
                if due {
                    inner.last_sync_ms = now_ms;
                }
                due
            }
        }
    }

    fn maybe_roll(
        &self,
        inner: &mut Inner,
        header: &BatchHeader,
        len: u64,
        now_ms: i64,
    ) -> Result<()> {
        let active = inner.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size + len > self.config.segment_bytes;
        let offsets = !active.fits_offsets(header);
        if full || offsets || self.segment_expired(active, now_ms) {
            self.roll(inner)?;
        }
        Ok(())
    }

    fn segment_expired(&self, segment: &Segment, now_ms: i64) -> bool {
        match (self.config.segment_ms, segment.first_append_ms) {
            (Some(ms), Some(first)) => now_ms.saturating_sub(first) > ms_i64(ms),
            _ => false,
        }
    }

    /// Starts a new active segment at the log end. See the module docs for
    /// why nothing here waits for an fsync.
    fn roll(&self, inner: &mut Inner) -> Result<()> {
        let base = inner.next_offset;
        let old = inner.active_mut();
        old.seal_time_index();
        let old_base = old.base_offset;
        // Sealed: direct I/O's padding and reserved room can go once its
        // writes land (and its recent-write window with it). Not awaited,
        // and not synced (an fsync whose failure nobody reads must not
        // run): the cut is ordered after those writes on the I/O thread, a
        // crash before it is durable leaves zeros that recovery cuts, and
        // `close` syncs it before the clean-shutdown marker.
        drop(old.log.trim(false));
        // Not fatal: without it the next open replays from an older
        // snapshot (or the log start) instead.
        if let Err(e) = producers::write_snapshot(&self.dir, &inner.producers, base, false) {
            tracing::warn!(dir = %self.dir.display(), offset = base, error = %e, "producer state snapshot failed");
        }
        let segment = Segment::create(&self.dir, base, self.backend.as_ref())?;
        inner.segments.push(segment);
        inner.dir_dirty = true;
        tracing::debug!(dir = %self.dir.display(), old_base, new_base = base, "rolled segment");
        Ok(())
    }

    /// Returns once every offset below `target` is durable, leading a sync
    /// or riding on another task's.
    async fn sync_to(&self, target: u64) -> Result<()> {
        let mut rx = self.progress_tx.subscribe();
        loop {
            rx.borrow_and_update();
            let job = {
                let mut inner = self.lock();
                if inner.durable_end >= target {
                    return Ok(());
                }
                if let Some(reason) = &inner.failed {
                    return Err(StorageError::LogFailed {
                        reason: reason.clone(),
                    });
                }
                if inner.rollback.is_some_and(|cut| target > cut.offset) {
                    return inner.check_writable();
                }
                if target > inner.next_offset {
                    return Err(StorageError::WriteRefused {
                        reason: "offsets to sync were discarded by a rollback or a truncation"
                            .into(),
                    });
                }
                if inner.written_end < target || inner.sync_in_flight {
                    None
                } else {
                    inner.sync_in_flight = true;
                    let files: Vec<(u64, Arc<dyn LogFile>, u64)> = inner
                        .segments
                        .iter()
                        .filter(|s| s.synced_size < s.written_size)
                        .map(|s| (s.base_offset, s.log.clone(), s.written_size))
                        .collect();
                    let dir = std::mem::take(&mut inner.dir_dirty);
                    Some(SyncJob {
                        files,
                        dir,
                        covers: inner.written_end,
                    })
                }
            };
            match job {
                // The job covered the written end, at least `target`: done,
                // even if a truncation has moved the log end since.
                Some(job) => return self.run_sync(job).await,
                None => {
                    if rx.changed().await.is_err() {
                        return Err(StorageError::Closed);
                    }
                }
            }
        }
    }

    async fn run_sync(&self, job: SyncJob) -> Result<()> {
        let mut guard = SyncGuard {
            log: self,
            dir: job.dir,
            armed: true,
            syncs: Vec::new(),
        };
        if job.dir {
            if let Err(e) = self.backend.sync_dir(&self.dir) {
                let mut inner = self.lock();
                guard.release(&mut inner);
                self.fail(&mut inner, format!("directory sync failed: {e}"));
                return Err(StorageError::io(&self.dir, e));
            }
        }
        guard.syncs = job
            .files
            .iter()
            .map(|(_, f, _)| (f.path().to_path_buf(), f.sync_data()))
            .collect();
        self.syncs
            .fetch_add(guard.syncs.len() as u64, Ordering::Relaxed);
        let mut failure = None;
        while let Some((_, completion)) = guard.syncs.last_mut() {
            let result = completion.await;
            // Popped only once awaited, with no await in between: if this
            // future is dropped, the guard still holds every unfinished sync.
            if let (Some((path, _)), Err(e)) = (guard.syncs.pop(), result) {
                failure.get_or_insert((path, e));
            }
        }
        let mut inner = self.lock();
        guard.dir = false;
        guard.release(&mut inner);
        if let Some((path, e)) = failure {
            self.fail(
                &mut inner,
                format!("fsync of {} failed: {e}", path.display()),
            );
            return Err(StorageError::io(path, e));
        }
        for (base, _, size) in &job.files {
            if let Some(segment) = inner.segment_mut(*base) {
                segment.synced_size = segment.synced_size.max(*size);
            }
        }
        inner.durable_end = inner.durable_end.max(job.covers);
        inner.last_sync_ms = wall_ms();
        self.publish(&inner);
        Ok(())
    }

    /// Reads whole batches starting with the one holding `offset`, up to
    /// `max_bytes` — but always at least one whole batch. Empty at the log
    /// end; [`StorageError::OffsetOutOfRange`] below the start or past the end.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes> {
        let (file, mut pos, limit) = {
            let inner = self.lock();
            if offset < inner.log_start || offset > inner.written_end {
                return Err(inner.out_of_range(offset));
            }
            if offset == inner.written_end {
                return Ok(Bytes::new());
            }
            let segment = inner
                .segment_index_for(offset)
                .and_then(|i| inner.segments.get(i))
                .ok_or_else(|| inner.out_of_range(offset))?;
            let (pos, _) = segment.scan_start_for(offset);
            (segment.log.clone(), pos, segment.written_size)
        };
        let first = loop {
            let header = read_header(file.as_ref(), pos, limit)?;
            if header.next_offset() > offset {
                break header;
            }
            pos += u64::from(header.batch_length);
        };
        let available = usize::try_from(limit - pos).unwrap_or(usize::MAX);
        let want = max_bytes.min(available).max(first.batch_length as usize);
        let mut buf = vec![0u8; want];
        file.read_at(pos, &mut buf)
            .map_err(|e| StorageError::io(file.path(), e))?;
        let mut end = 0usize;
        let mut bad = None;
        while let Some(rest) = buf.get(end..).filter(|r| r.len() >= HEADER_LEN) {
            match BatchHeader::parse(rest) {
                Ok(h) if h.batch_length as usize <= rest.len() => {
                    let len = h.batch_length as usize;
                    // The CRC was checked on append; checking it again here
                    // (cheap next to the pread) keeps bytes that rotted or
                    // were altered on disk since from ever being served.
                    let checked = BatchView::new(rest).and_then(|v| v.validate());
                    if let Err(e) = checked {
                        bad = Some(e.to_string());
                        break;
                    }
                    end += len;
                }
                _ => break,
            }
        }
        if let Some(reason) = &bad {
            self.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                path = %file.path().display(), position = pos + end as u64, %reason,
                "batch on disk fails its check; not serving it"
            );
        }
        if end == 0 {
            return Err(StorageError::Corrupt {
                path: file.path().to_path_buf(),
                position: pos,
                reason: bad.unwrap_or_else(|| "batch changed under a read".into()),
            });
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }

    pub fn log_start_offset(&self) -> u64 {
        self.lock().log_start
    }

    /// One past the last readable offset (the written end).
    pub fn log_end_offset(&self) -> u64 {
        self.lock().written_end
    }

    /// The base offset of the earliest batch whose max timestamp is at least
    /// `ts_ms` (Kafka's ListOffsets answered at batch granularity: the
    /// consumer skips the batch's older records itself). `None` if no
    /// written batch is that new.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>> {
        let candidates: Vec<(Arc<dyn LogFile>, u64, u64)> = {
            let inner = self.lock();
            inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= ts_ms && s.written_size > 0)
                .map(|s| {
                    let pos = s
                        .time_index
                        .scan_start(ts_ms)
                        .map_or(0, |rel| s.scan_start_for(s.base_offset + u64::from(rel)).0);
                    (s.log.clone(), pos, s.written_size)
                })
                .collect()
        };
        for (file, mut pos, limit) in candidates {
            while pos < limit {
                let header = read_header(file.as_ref(), pos, limit)?;
                if header.max_timestamp >= ts_ms {
                    return Ok(Some(header.base_offset));
                }
                pos += u64::from(header.batch_length);
            }
        }
        Ok(None)
    }

    /// Returns once everything appended so far is durable.
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut inner = self.lock();
            if inner.read_only.is_some() && !inner.closed {
                // Nothing was appended since the open: nothing to make durable.
                return Ok(());
            }
            self.try_roll_back(&mut inner);
            inner.check_writable()?;
            inner.next_offset
        };
        self.sync_to(target).await
    }

    /// Watches the log end offset (the written end), for long-poll fetches.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end_tx.subscribe()
    }

    /// Deletes whole closed segments, oldest first, while they are older
    /// than `retention_ms` (by their newest timestamp) or the log stays at
    /// least `retention_bytes` without them. Never the active segment.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let (removed, log_start) = {
            let mut inner = self.lock();
            if inner.read_only.is_some() {
                // Deleting files is a write; the expired segments stay
                // served until the directory is writable again.
                return Ok(RetentionOutcome {
                    segments_deleted: 0,
                    bytes_deleted: 0,
                    log_start_offset: inner.log_start,
                });
            }
            let mut total: u64 = inner.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while let Some(s) = inner
                .segments
                .get(n)
                .filter(|_| n + 1 < inner.segments.len())
            {
                if s.written_size < s.size {
                    break;
                }
                let by_time = self
                    .config
                    .retention_ms
                    .is_some_and(|ms| s.max_timestamp < now_ms.saturating_sub(ms_i64(ms)));
                let by_size = self
                    .config
                    .retention_bytes
                    .is_some_and(|bytes| total - s.size >= bytes);
                if !(by_time || by_size) {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            let removed: Vec<Segment> = inner.segments.drain(..n).collect();
            inner.log_start = inner.active_start();
            (removed, inner.log_start)
        };
        let mut outcome = RetentionOutcome {
            segments_deleted: removed.len(),
            bytes_deleted: 0,
            log_start_offset: log_start,
        };
        for segment in &removed {
            outcome.bytes_deleted += segment.size;
            recovery::remove_segment_files(&self.dir, segment.base_offset, self.backend.as_ref())?;
        }
        if !removed.is_empty() {
            // A failed fsync (of the directory, or of the snapshot kept)
            // cannot be retried safely: the log fails, as for a segment.
            let synced = producers::prune_below(&self.dir, log_start, self.backend.as_ref())
                .and_then(|()| {
                    self.backend
                        .sync_dir(&self.dir)
                        .map_err(|e| StorageError::io(&self.dir, e))
                });
            if let Err(e) = synced {
                let mut inner = self.lock();
                self.fail(&mut inner, format!("directory sync failed: {e}"));
                return Err(e);
            }
            tracing::info!(
                dir = %self.dir.display(), segments = outcome.segments_deleted,
                bytes = outcome.bytes_deleted, log_start, "retention deleted segments"
            );
        }
        Ok(outcome)
    }

    /// Periodic work: rolls an active segment older than `segment_ms` and,
    /// under `interval_ms`, syncs an idle log whose interval has passed.
    /// May block the calling thread for one fdatasync: call it from a
    /// blocking-friendly context (`spawn_blocking` or a timer thread).
    pub fn tick(&self, now_ms: i64) {
        let target = {
            let mut inner = self.lock();
            inner.producers.remove_expired(now_ms);
            if inner.check_writable().is_err() {
                return;
            }
            let active = inner.active();
            if !active.is_empty() && self.segment_expired(active, now_ms) {
                if let Err(e) = self.roll(&mut inner) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "time-based roll failed");
                }
            }
            let idle_due = match self.config.fsync {
                FsyncPolicy::IntervalMs(ms) => {
                    now_ms.saturating_sub(inner.last_sync_ms) >= ms_i64(ms)
                        && inner.durable_end < inner.written_end
                }
                _ => false,
            };
            if idle_due {
                inner.last_sync_ms = now_ms;
            }
            idle_due.then_some(inner.written_end)
        };
        if let Some(target) = target {
            if let Err(e) = pollster::block_on(self.sync_to(target)) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "interval fsync failed");
            }
        }
    }

    /// Bytes in all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Whether the log was opened with [`PartitionLog::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.lock().read_only.is_some()
    }

    pub fn stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            appends: self.appends.load(Ordering::Relaxed),
            bytes_appended: self.bytes_appended.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            failed: inner.failed.is_some(),
            corrupt_reads: self.corrupt_reads.load(Ordering::Relaxed),
            write_rollbacks: self.write_rollbacks.load(Ordering::Relaxed),
            recovery: self.recovery.clone(),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            producers: inner.producers.len(),
            producer_evictions: inner.producers.evictions(),
            producer_expirations: inner.producers.expirations(),
            producer_rebuild: inner.producer_rebuild,
        }
    }

    /// The epoch and last batches the log remembers of `producer_id`
    /// (oldest first), if it remembers it.
    pub fn producer_state(&self, producer_id: i64) -> Option<(i16, Vec<BatchMeta>)> {
        self.lock().producers.producer(producer_id)
    }

    /// Flushes, writes and syncs the indexes, then leaves the clean-shutdown
    /// marker so the next open trusts the indexes instead of scanning.
    pub async fn close(self) -> Result<()> {
        {
            let mut inner = self.lock();
            if inner.read_only.is_some() {
                // Writes nothing: a marker left by the last writable run
                // is still there, and still true.
                inner.closed = true;
                tracing::info!(dir = %self.dir.display(), "read-only partition log closed");
                return Ok(());
            }
        }
        self.flush().await?;
        // Direct I/O pads each file's last block; the marker below makes
        // the next open trust file sizes, so they must be exact first.
        let files: Vec<Arc<dyn LogFile>> = self
            .lock()
            .segments
            .iter()
            .map(|s| Arc::clone(&s.log))
            .collect();
        for file in files {
            file.trim(true)
                .await
                .map_err(|e| StorageError::io(file.path(), e))?;
        }
        let mut inner = self.lock();
        inner.closed = true;
        inner.active_mut().seal_time_index();
        for segment in &mut inner.segments {
            segment.index.repair_if_dirty()?;
            segment.time_index.repair_if_dirty()?;
            segment.sync_indexes()?;
        }
        // Best effort: without it the next open replays from an older
        // snapshot instead (a full disk must not turn a clean stop into an
        // unclean one).
        if let Err(e) =
            producers::write_snapshot(&self.dir, &inner.producers, inner.next_offset, true)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "producer state snapshot at close failed");
        }
        let state = CleanState {
            end_offset: inner.next_offset,
            active_size: inner.active().size,
        };
        let path = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&path)?;
            std::io::Write::write_all(&mut &file, state.encode().as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| StorageError::io(&path, e))?;
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        tracing::info!(dir = %self.dir.display(), log_end = state.end_offset, "partition log closed cleanly");
        Ok(())
    }

    /// Drops every offset at or above `offset`. A batch is never split: if
    /// `offset` falls inside one, that whole batch goes and the log ends at
    /// its base. Waits for in-flight writes and syncs first (a sync that
    /// finished afterwards would count the reassigned offsets as durable);
    /// meant for a replicator that holds off appends while it truncates.
    pub fn truncate_to(&self, offset: u64) -> Result<()> {
        let mut rx = self.progress_tx.subscribe();
        let mut inner = loop {
            rx.borrow_and_update();
            let inner = self.lock();
            inner.check_writable()?;
            if inner.pending.is_empty() && !inner.sync_in_flight {
                break inner;
            }
            drop(inner);
            if pollster::block_on(rx.changed()).is_err() {
                return Err(StorageError::Closed);
            }
        };
        if offset >= inner.next_offset {
            return Ok(());
        }
        if offset < inner.log_start {
            return Err(inner.out_of_range(offset));
        }
        // Past this point files change step by step: a failure leaves the
        // bookkeeping and the files disagreeing (or the directory not
        // durable), so the log fails until a reopen recovers it.
        let result = self.truncate_locked(&mut inner, offset);
        if let Err(e) = &result {
            // Later segments may be gone already: reads stop where the
            // remaining ones end.
            let end = inner.active().next_offset.min(inner.next_offset);
            inner.next_offset = end;
            inner.written_end = inner.written_end.min(end);
            inner.durable_end = inner.durable_end.min(end);
            self.fail(&mut inner, format!("truncation to {offset} failed: {e}"));
        }
        result
    }

    fn truncate_locked(&self, inner: &mut Inner, offset: u64) -> Result<()> {
        let keep = inner
            .segments
            .partition_point(|s| s.base_offset < offset)
            .max(1);
        let removed: Vec<Segment> = inner.segments.drain(keep..).collect();
        for segment in &removed {
            recovery::remove_segment_files(&self.dir, segment.base_offset, self.backend.as_ref())?;
        }
        let interval = self.config.index_interval_bytes;
        let active = inner.active_mut();
        if active.next_offset > offset {
            let (mut pos, _) = active.scan_start_for(offset);
            loop {
                let header = read_header(active.log.as_ref(), pos, active.size)?;
                if header.next_offset() > offset {
                    break;
                }
                pos += u64::from(header.batch_length);
            }
            active.index.repair_if_dirty()?;
            active.time_index.repair_if_dirty()?;
            active
                .log
                .set_len(pos)
                .map_err(|e| StorageError::io(active.path(), e))?;
            let mut scratch = RecoveryStats::default();
            let rebuilt = recovery::recover_segment(
                &self.dir,
                active.base_offset,
                active.log.clone(),
                pos,
                interval,
                false,
                &mut scratch,
            )?;
            *active = rebuilt;
        }
        active.first_append_ms = (!active.is_empty()).then(wall_ms);
        let end = active.next_offset;
        inner.next_offset = end;
        inner.written_end = end;
        inner.durable_end = inner.durable_end.min(end);
        self.rebuild_producers(inner)?;
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        // Like a rollback: late waiters of appends learn through the epoch
        // whether their batch survived the cut (see `wait_written`).
        inner.rollbacks.push_back((inner.epoch, end));
        if inner.rollbacks.len() > ROLLBACK_HISTORY_MAX {
            inner.rollbacks.pop_front();
        }
        inner.epoch += 1;
        tracing::info!(dir = %self.dir.display(), offset, log_end = end, "log truncated");
        self.publish(inner);
        Ok(())
    }
}

impl Inner {
    fn active_start(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.next_offset, |s| s.base_offset)
    }
}

struct SyncJob {
    files: Vec<(u64, Arc<dyn LogFile>, u64)>,
    dir: bool,
    covers: u64,
}

/// Hands the sync leadership back if the leader's future is dropped
/// mid-sync, so waiters do not wait forever — after waiting (on the calling
/// thread, like [`WriteGuard`]) for the fsyncs it queued: a failure among
/// them must fail the log, see the module docs.
struct SyncGuard<'a> {
    log: &'a PartitionLog,
    /// The directory sync was claimed and has not succeeded.
    dir: bool,
    armed: bool,
    /// Queued fsyncs not yet awaited.
    syncs: Vec<(PathBuf, Completion)>,
}

impl SyncGuard<'_> {
    fn release(&mut self, inner: &mut Inner) {
        if self.armed {
            inner.sync_in_flight = false;
            inner.dir_dirty |= self.dir;
            self.armed = false;
        }
    }
}

impl Drop for SyncGuard<'_> {
    fn drop(&mut self) {
        let mut failure = None;
        for (path, completion) in self.syncs.drain(..) {
            if let Err(e) = completion.wait() {
                failure.get_or_insert((path, e));
            }
        }
        if self.armed || failure.is_some() {
            let mut inner = self.log.lock();
            self.release(&mut inner);
            match failure {
                Some((path, e)) => self.log.fail(
                    &mut inner,
                    format!("fsync of {} failed: {e}", path.display()),
                ),
                None => self.log.publish(&inner),
            }
        }
    }
}

/// Owns a submitted write until its completion is applied. If the append
/// future is dropped first (a client went away), the drop waits for the
/// write on the calling thread — it is already queued and cannot be
/// recalled — so the written end never stalls behind an abandoned write.
struct WriteGuard<'a> {
    log: &'a PartitionLog,
    base: u64,
    path: PathBuf,
    completion: Option<Completion>,
}

impl WriteGuard<'_> {
    async fn finish(mut self) -> Result<()> {
        let result = match self.completion.as_mut() {
            Some(c) => c.await,
            None => Ok(()),
        };
        self.completion = None;
        self.log.apply_write(self.base, &self.path, result)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            let result = completion.wait();
            // The error, if any, is recorded as the log's failure.
            let _ = self.log.apply_write(self.base, &self.path, result);
        }
    }
}
