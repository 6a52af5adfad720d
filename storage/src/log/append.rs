//! The append path: checking a batch, assigning its offsets under the
//! lock, queueing its write, and applying completions in offset order.
//!
//! Offsets are assigned and writes queued under the log's lock, in one
//! order; the writes then complete on the I/O thread in any order. The
//! written end (what reads and the end watch expose) moves only over a
//! prefix of completed writes, so it never covers a hole, and an appender
//! returns only once everything below its batch is written. This is also
//! where a write error is sorted: lack of space marks the write aborted
//! for the rollback in `truncate`, anything else fails the log.
//!
//! An idempotent batch passes the producer checks under the same lock that
//! assigns its offsets, and is recorded there, so the producer state always
//! describes exactly the batches assigned an offset, in offset order.
//!
//! A replica's copy of its leader's batch ([`PartitionLog::append_replica`])
//! takes the same path, so that everything a follower derives from a batch
//! (segments, indexes, producer state, durability) is derived exactly as on
//! the leader. It differs in what the leader already decided: the offsets
//! (the batch must continue the log where its stamped base offset says,
//! and is not stamped again) and the producer checks' outcome (recorded,
//! never refused or deduplicated). [`AppendMode`] carries that difference.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use rill_protocol::batch::{
    stamp_base_offset, BatchError, BatchHeader, BatchView, RecordBatchHeaderField,
};

use super::{wall_ms, AppendInfo, Cut, Durability, Inner, PartitionLog, Pending};
use crate::config::FsyncPolicy;
use crate::error::{Result, StorageError};
use crate::io::Completion;
use crate::producer_state::{BatchMeta, Check};

/// Whose decisions an appended batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppendMode {
    /// A producer's batch to this log as leader: the log assigns its
    /// offsets and runs the producer checks.
    Leader,
    /// A batch as the leader's log holds it, copied by a replica: its
    /// offsets and its producer outcome were decided by the leader.
    Replica,
}

impl AppendMode {
    /// What to do with a batch arriving at `inner`'s end, under the lock
    /// (the next offset and the producer state move only under it).
    fn admit(self, inner: &Inner, header: &BatchHeader, now: i64) -> Result<Check> {
        match self {
            AppendMode::Leader => Ok(inner.producers.check(header, now)?),
            // The leader accepted it; refusing or deduplicating it here
            // would make this log differ from the leader's. It is still
            // recorded (in `start_append`), so the producer state follows.
            AppendMode::Replica if header.base_offset == inner.next_offset => Ok(Check::Append),
            AppendMode::Replica => Err(StorageError::OffsetMismatch {
                expected: inner.next_offset,
                got: header.base_offset,
            }),
        }
    }
}

/// Write errors that mean "no space", after which the log rolls back
/// instead of failing for good.
fn is_space_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

impl PartitionLog {
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
        self.append_as(batch, durability, AppendMode::Leader).await
    }

    /// Appends a batch exactly as a leader's log holds it, for a replica
    /// copying that log: the bytes written are the leader's, byte for byte
    /// (the base offset is not stamped again, nor anything else), so the
    /// replica's segment files come out identical to the leader's.
    ///
    /// The batch's base offset must be this log's next offset (the log end
    /// plus any appends still in flight), else
    /// [`StorageError::OffsetMismatch`] and nothing is written; offsets are
    /// taken in the order append futures are first polled, so a replicator
    /// that pipelines appends starts them in offset order. The batch is
    /// checked as [`PartitionLog::append`] checks it (length, CRC, size) and
    /// takes the same path: completion order, `durability` and group
    /// commit, rolls, indexes. An idempotent batch is recorded in the
    /// producer state but never refused nor answered as a duplicate: the
    /// leader already decided, and recording it keeps this log's producer
    /// state equal to the leader's, so a producer's retry is answered here
    /// as the leader would answer it.
    pub async fn append_replica(
        &self,
        batch: BytesMut,
        durability: Durability,
    ) -> Result<AppendInfo> {
        self.append_as(batch, durability, AppendMode::Replica).await
    }

    async fn append_as(
        &self,
        batch: BytesMut,
        durability: Durability,
        mode: AppendMode,
    ) -> Result<AppendInfo> {
        let header = self.check_batch(&batch)?;
        let len = batch.len() as u64;
        let now = wall_ms();
        // The lock guard must not live across an await (the future would
        // not be `Send`): the decision leaves the block as a value.
        let started = {
            let mut inner = self.lock();
            self.try_roll_back(&mut inner);
            inner.check_writable()?;
            match mode.admit(&inner, &header, now)? {
                Check::Append => Ok(self.start_append(&mut inner, batch, &header, len, now, mode)?),
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

    /// The locked part of an append: rolls if due, assigns and (as leader)
    /// stamps the offset, books the batch (indexes, producer state) and
    /// queues its write.
    fn start_append<'a>(
        &'a self,
        inner: &mut Inner,
        mut batch: BytesMut,
        header: &BatchHeader,
        len: u64,
        now: i64,
        mode: AppendMode,
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
        // A replica's batch already holds `base` (`admit` checked it), and
        // its bytes stay exactly the leader's.
        if mode == AppendMode::Leader {
            stamp_base_offset(&mut batch, base);
        }
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
    /// it and everything after it will be rolled back (see `truncate`).
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
