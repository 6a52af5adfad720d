//! Removing a suffix of the log: a replica's truncation (`truncate_to`)
//! and the rollback after a write refused for lack of space. Both drop the
//! segments past the cut, cut the file of the one it falls in, rebuild its
//! indexes from the file and the producer state from what the log still
//! holds, and start a new epoch, by which a late appender learns whether
//! its batch survived the cut.
//!
//! # Full disk
//! A write refused for lack of space (`ENOSPC`, `EDQUOT`, `EFBIG`) does not
//! fail the log: nothing before it is in doubt, and the bytes from the
//! refused batch on are discarded. The log stops accepting appends until
//! every write in flight has finished, then rolls back (on the next append
//! or flush): the file is cut to where the refused batch started, segments
//! rolled after it are removed, the index is rebuilt from the file, and the
//! offsets are handed out again. Appenders of discarded batches, and
//! appends meanwhile, get [`StorageError::WriteRefused`] (the epoch, bumped
//! by each rollback, tells a late waiter whether its batch was kept). So a
//! full disk costs errors, not a restart.

use std::sync::atomic::Ordering;

use super::{wall_ms, Cut, Inner, PartitionLog};
use crate::error::{Result, StorageError};
use crate::producer_state::ProducerStateMap;
use crate::producers;
use crate::recovery::{self, RecoveryStats};
use crate::segment::{read_header, Segment};

/// Rollbacks remembered for late waiters (see `wait_written`);
/// a waiter older than this gets an error even if its batch was kept, which
/// a producer's retry turns into a duplicate at worst.
const ROLLBACK_HISTORY_MAX: usize = 32;

impl Inner {
    /// Closes the epoch in which the log was cut at `end`: an appender of
    /// that epoch finds its batch kept exactly if it ended at or below it.
    fn start_epoch(&mut self, end: u64) {
        self.rollbacks.push_back((self.epoch, end));
        if self.rollbacks.len() > ROLLBACK_HISTORY_MAX {
            self.rollbacks.pop_front();
        }
        self.epoch += 1;
    }
}

impl PartitionLog {
    /// Drops every offset at or above `offset`. A batch is never split: if
    /// `offset` falls inside one, that whole batch goes and the log ends at
    /// its base. Waits (asynchronously, without blocking the thread) for
    /// in-flight writes and syncs first (a sync that finished afterwards
    /// would count the reassigned offsets as durable); meant for a
    /// replicator that holds off appends while it truncates, since appends
    /// arriving meanwhile keep it waiting.
    ///
    /// The truncation itself then runs synchronously, under the log's lock,
    /// in the poll that finds the log idle: a few short file operations
    /// (removing later segments, cutting one file, rebuilding the producer
    /// state from its newest snapshot, one directory fsync) that block the
    /// calling thread briefly, and holding the lock through them means no
    /// append or read starting meanwhile sees the bookkeeping half cut.
    /// So a dropped future has either truncated nothing (it was still
    /// waiting) or truncated completely.
    pub async fn truncate_to(&self, offset: u64) -> Result<()> {
        self.when_idle(|inner| self.truncate_idle(inner, offset))
            .await
    }

    /// Runs `f` under the lock once no write or sync is in flight (see
    /// [`PartitionLog::truncate_to`] for why under the lock).
    async fn when_idle<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        let mut rx = self.progress_tx.subscribe();
        loop {
            rx.borrow_and_update();
            {
                let mut inner = self.lock();
                inner.check_writable()?;
                if inner.pending.is_empty() && !inner.sync_in_flight {
                    return f(&mut inner);
                }
            }
            if rx.changed().await.is_err() {
                return Err(StorageError::Closed);
            }
        }
    }

    /// Drops the whole log and starts it again, empty, at `offset`, which
    /// must not be below the log end (Kafka's `truncateFullyAndStartAt`):
    /// a replica that was sent its leader's log start in place of the
    /// entries it lacked continues from there. Waits for in-flight writes
    /// and syncs as [`PartitionLog::truncate_to`] does. The producer state
    /// starts as `producers` says (a producer snapshot at `offset`, the
    /// leader's [`PartitionLog::producer_snapshot_before`]), or empty: what
    /// this log held described batches now gone. A snapshot that fails its
    /// checks or names another offset is not used (logged).
    pub async fn restart_at(&self, offset: u64, producers: Option<&[u8]>) -> Result<()> {
        let state = producers.and_then(|bytes| {
            match ProducerStateMap::decode_snapshot(
                bytes,
                self.config.producer_ids_max,
                self.config.producer_id_expiration_ms,
            ) {
                Ok((at, state)) if at == offset => Some(state),
                Ok((at, _)) => {
                    tracing::warn!(dir = %self.dir.display(), offset, at, "producer snapshot for a restart names another offset; starting without it");
                    None
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), offset, error = %e, "producer snapshot for a restart unreadable; starting without it");
                    None
                }
            }
        });
        self.when_idle(|inner| {
            if offset < inner.next_offset {
                return Err(inner.out_of_range(offset));
            }
            let result = self.restart_locked(inner, offset, state);
            if let Err(e) = &result {
                self.fail(inner, format!("restart at {offset} failed: {e}"));
            }
            result
        })
        .await
    }

    /// The producer state this log's batches below `offset` left, as a
    /// snapshot at `offset` (see [`ProducerStateMap::before`]): for a
    /// replica that restarts its log there.
    pub fn producer_snapshot_before(&self, offset: u64) -> Vec<u8> {
        self.lock().producers.before(offset).encode_snapshot(offset)
    }

    fn restart_locked(
        &self,
        inner: &mut Inner,
        offset: u64,
        producers: Option<ProducerStateMap>,
    ) -> Result<()> {
        // The old segments go first: recovery wants contiguous segments,
        // so a crash between the two steps must not leave old ones and a
        // new one past their end. (The caller records the new start
        // before, and finishes the restart at its next open.)
        let old: Vec<Segment> = inner.segments.drain(..).collect();
        for segment in &old {
            recovery::remove_segment_files(&self.dir, segment.base_offset, self.backend.as_ref())?;
        }
        let segment = Segment::create(&self.dir, offset, self.backend.as_ref())?;
        inner.segments.push(segment);
        inner.log_start = offset;
        inner.next_offset = offset;
        inner.written_end = offset;
        inner.durable_end = offset;
        producers::remove_all(&self.dir)?;
        if let Some(state) = &producers {
            producers::write_snapshot(&self.dir, state, offset, true)?;
        }
        self.rebuild_producers(inner)?;
        self.backend
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        inner.start_epoch(offset);
        tracing::info!(dir = %self.dir.display(), offset, "log restarted empty");
        self.publish(inner);
        Ok(())
    }

    /// `truncate_to` once no write or sync is in flight.
    fn truncate_idle(&self, inner: &mut Inner, offset: u64) -> Result<()> {
        if offset >= inner.next_offset {
            return Ok(());
        }
        if offset < inner.log_start {
            return Err(inner.out_of_range(offset));
        }
        // Past this point files change step by step: a failure leaves the
        // bookkeeping and the files disagreeing (or the directory not
        // durable), so the log fails until a reopen recovers it.
        let result = self.truncate_locked(inner, offset);
        if let Err(e) = &result {
            // Later segments may be gone already: reads stop where the
            // remaining ones end.
            let end = inner.active().next_offset.min(inner.next_offset);
            inner.next_offset = end;
            inner.written_end = inner.written_end.min(end);
            inner.durable_end = inner.durable_end.min(end);
            self.fail(inner, format!("truncation to {offset} failed: {e}"));
        }
        result
    }

    /// Drops the segments from index `keep` on (never the first: a log
    /// always has an active segment) and removes their files; returns
    /// whether there were any.
    fn remove_segments_from(&self, inner: &mut Inner, keep: usize) -> Result<bool> {
        let removed: Vec<Segment> = inner.segments.drain(keep..).collect();
        for segment in &removed {
            recovery::remove_segment_files(&self.dir, segment.base_offset, self.backend.as_ref())?;
        }
        Ok(!removed.is_empty())
    }

    fn truncate_locked(&self, inner: &mut Inner, offset: u64) -> Result<()> {
        let keep = inner
            .segments
            .partition_point(|s| s.base_offset < offset)
            .max(1);
        self.remove_segments_from(inner, keep)?;
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
        inner.start_epoch(end);
        tracing::info!(dir = %self.dir.display(), offset, log_end = end, "log truncated");
        self.publish(inner);
        Ok(())
    }

    /// Runs a pending rollback once no write or sync is in flight: cuts the
    /// log back to the first refused batch. A failure here (the files and
    /// the bookkeeping may disagree) fails the log for good.
    pub(super) fn try_roll_back(&self, inner: &mut Inner) {
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
                inner.start_epoch(cut.offset);
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
        let removed_any = self.remove_segments_from(inner, keep)?;
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
        if removed_any {
            inner.dir_dirty = true;
        }
        self.rebuild_producers(inner)
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
}
