//! What the wall clock drives rather than appends: retention, which
//! deletes whole old segments, and the periodic `tick`, which expires
//! producer ids, rolls a segment older than `segment_ms` and runs the
//! interval fsync of an idle log. Both are called from the broker's timer,
//! off the append path, and take the time as an argument so that tests
//! can drive the clock.
//!
//! A replicated partition splits retention in two: its leader asks
//! `retention_cut` where the log would start, and every replica deletes
//! with `delete_segments_below` once the new start is agreed.
//!
//! Retention deletes only closed segments whose writes all completed, and
//! the producer snapshots below the new log start with them; a failed
//! directory sync after a deletion fails the log, as a failed fsync of a
//! segment does.

use super::{ms_i64, Inner, PartitionLog, RetentionOutcome};
use crate::config::FsyncPolicy;
use crate::error::{Result, StorageError};
use crate::producers;
use crate::recovery;
use crate::segment::Segment;

impl PartitionLog {
    /// Deletes whole closed segments, oldest first, while they are older
    /// than `retention_ms` (by their newest timestamp) or the log stays at
    /// least `retention_bytes` without them. Never the active segment.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let (removed, log_start) = {
            let mut inner = self.lock();
            if inner.read_only.is_some() {
                // Deleting files is a write; the expired segments stay
                // served until the directory is writable again.
                return Ok(self.nothing_deleted(&inner));
            }
            let n = self.expired_segments(&inner, now_ms);
            Self::drop_front(&mut inner, n)
        };
        self.remove_dropped(removed, log_start)
    }

    /// The log start [`PartitionLog::enforce_retention`] would leave at
    /// `now_ms` (the base of the first segment it would keep), deleting
    /// nothing. A replicated partition's leader decides its retention so
    /// and replicates the answer; each replica then deletes with
    /// [`PartitionLog::delete_segments_below`].
    pub fn retention_cut(&self, now_ms: i64) -> u64 {
        let inner = self.lock();
        let n = self.expired_segments(&inner, now_ms);
        inner
            .segments
            .get(n)
            .map_or(inner.log_start, |s| s.base_offset)
    }

    /// Deletes the whole closed segments that lie entirely below `offset`
    /// (those the next segment starts at or below it), oldest first. The
    /// log start becomes the first remaining segment's base, which may be
    /// below `offset` when `offset` falls inside a segment. Never the
    /// active segment, never a segment with writes in flight.
    pub fn delete_segments_below(&self, offset: u64) -> Result<RetentionOutcome> {
        let (removed, log_start) = {
            let mut inner = self.lock();
            if inner.read_only.is_some() {
                return Ok(self.nothing_deleted(&inner));
            }
            let mut n = 0;
            while let (Some(s), Some(next)) = (inner.segments.get(n), inner.segments.get(n + 1)) {
                if next.base_offset > offset || s.written_size < s.size {
                    break;
                }
                n += 1;
            }
            Self::drop_front(&mut inner, n)
        };
        self.remove_dropped(removed, log_start)
    }

    fn nothing_deleted(&self, inner: &Inner) -> RetentionOutcome {
        RetentionOutcome {
            segments_deleted: 0,
            bytes_deleted: 0,
            log_start_offset: inner.log_start,
        }
    }

    /// How many segments, from the oldest, retention deletes at `now_ms`.
    fn expired_segments(&self, inner: &Inner, now_ms: i64) -> usize {
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
        n
    }

    /// Takes the `n` oldest segments out of the log (never the active
    /// one) and moves the log start past them.
    fn drop_front(inner: &mut Inner, n: usize) -> (Vec<Segment>, u64) {
        let n = n.min(inner.segments.len().saturating_sub(1));
        let removed: Vec<Segment> = inner.segments.drain(..n).collect();
        inner.log_start = inner.active_start().max(inner.log_start);
        (removed, inner.log_start)
    }

    /// Removes the files of segments taken out of the log, and the
    /// producer snapshots below the new log start.
    fn remove_dropped(&self, removed: Vec<Segment>, log_start: u64) -> Result<RetentionOutcome> {
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
}
