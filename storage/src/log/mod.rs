//! The partition log: appends, reads by offset and time, rolls, retention,
//! the fsync policy with group commit, and failure handling.
//!
//! [`PartitionLog`] is one object behind one lock. This module owns its
//! state (`Inner`, the watch channels, the counters), opening and closing
//! it, and the small accessors; the submodules each add an
//! `impl PartitionLog` block for one concern and share that state, never
//! each other's private details:
//!
//! - `append`: the append path (a producer's batch, or a replica's copy of
//!   its leader's) and the order in which writes complete.
//! - `commit`: the fsync policy and group commit.
//! - `roll`: sealing the active segment and starting the next.
//! - `read`: reads by offset and by time, and the log-end watch.
//! - `retention`: what the wall clock drives (retention, the periodic tick).
//! - `truncate`: removing a suffix of the log (a replica's truncation, the
//!   rollback after a full disk) and rebuilding the producer state after it.
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
//! How a sync moves the durable end (one leader at a time, group commit)
//! is in `commit`; why a roll does not sync, in `roll`.
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
//! different: nothing before it is in doubt, so the log rolls back to where
//! the refused batch started and takes appends again (`truncate`). A full
//! disk costs errors, not a restart.
//!
//! Reads check every batch's CRC before returning it (`read`).

mod append;
mod commit;
mod read;
mod retention;
mod roll;
mod truncate;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::io::{BackendKind, IoBackend, LogFile};
use crate::producer_state::{BatchMeta, ProducerStateMap};
use crate::producers::{self, ProducerRebuild};
use crate::recovery::{self, CleanState, RecoveryStats, CLEAN_SHUTDOWN_MARKER};
use crate::segment::Segment;

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

    /// Where the log starts now: the first segment's base.
    fn active_start(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.next_offset, |s| s.base_offset)
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

    pub fn log_start_offset(&self) -> u64 {
        self.lock().log_start
    }

    /// One past the last readable offset (the written end).
    pub fn log_end_offset(&self) -> u64 {
        self.lock().written_end
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

    /// The producer checks [`PartitionLog::append`] would run on `header`
    /// now, without recording anything: `Ok(None)` to write it, `Ok(Some)`
    /// with the original's offsets for a retry already in the log, or the
    /// refusal. A replicated partition's leader runs this before it hands
    /// a batch to replication (whose appends record but never refuse), with
    /// its appends serialized so that nothing lands between the check and
    /// the append.
    pub fn check_producer(
        &self,
        header: &rill_protocol::batch::BatchHeader,
    ) -> Result<Option<BatchMeta>> {
        match self.lock().producers.check(header, wall_ms())? {
            crate::producer_state::Check::Append => Ok(None),
            crate::producer_state::Check::Duplicate(kept) => Ok(Some(kept)),
        }
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
}
