//! Group commit: the fsync policy, and the syncs that move the durable end.
//!
//! A sync is run by one leader at a time: it waits until every write before
//! its target completed, then fdatasyncs every segment holding unsynced
//! written bytes (normally one; two right after a roll) and the directory if
//! a roll created files. Appenders arriving meanwhile wait and are covered
//! by the next leader's sync: group commit at this layer, on top of the I/O
//! thread's merging of syncs of one drain.
//!
//! An fsync whose result nobody reads could fail unseen, and the next fsync
//! of that file would then report success for lost bytes. So a sync leader
//! whose future is dropped still collects the outcome of the fsyncs it
//! queued (`SyncGuard`), and a failed one fails the log. Index files are
//! synced only on close; after a crash recovery checks them against the
//! log.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ms_i64, wall_ms, Inner, PartitionLog};
use crate::config::FsyncPolicy;
use crate::error::{Result, StorageError};
use crate::io::{Completion, LogFile};

impl PartitionLog {
    /// Whether the fsync policy asks for a sync now; claims it if so.
    pub(super) fn sync_due(&self, inner: &mut Inner, now_ms: i64) -> bool {
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

    /// Returns once every offset below `target` is durable, leading a sync
    /// or riding on another task's.
    pub(super) async fn sync_to(&self, target: u64) -> Result<()> {
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
}

/// What a sync leader claimed under the lock, so it can sync without it.
struct SyncJob {
    /// `(segment base, file, written size claimed)`: what each fsync covers.
    files: Vec<(u64, Arc<dyn LogFile>, u64)>,
    dir: bool,
    /// The written end at the claim: durable once every fsync succeeded.
    covers: u64,
}

/// Hands the sync leadership back if the leader's future is dropped
/// mid-sync, so waiters do not wait forever — after waiting (on the calling
/// thread, like `append`'s `WriteGuard`) for the fsyncs it queued: a
/// failure among them must fail the log, see the module docs.
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
