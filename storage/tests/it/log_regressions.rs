//! Regression tests of the partition log, each named after the bug it
//! proved: a failed or abandoned fsync that went unnoticed, a truncation
//! racing a sync or a waiting append, a truncation or directory sync that
//! failed without failing the log, an unclean reopen that acknowledged data
//! it never made durable, and arithmetic overflow on offsets taken from file
//! names. Two guards of hostile recovery inputs that held are kept too.
//!
//! Faults are injected by [`FaultBackend`], a thin wrapper over a real
//! backend: every call goes to the real files except the fsyncs a test
//! picks, which fail (as the kernel reports a writeback error: once, after
//! which the next fsync of the file succeeds) or are held until the test
//! finishes them. A real disk cannot be made to fail one chosen fsync.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::batch::{stamp_base_offset, Compression};
use rill_storage::io::{
    BackendKind, Completion, CompletionHandle, CrashBackend, IoBackend, IoStats, LogFile,
};
use rill_storage::{Durability, PartitionLog, StorageError};

use super::log_support::{
    backends, batch, read_all, runtime, same_batch, small_config, std_backend, tempdir,
};

/// How long a test waits for another task to reach a point before failing.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// What to do with an upcoming `sync_data` call.
#[derive(Debug, Clone, Copy)]
enum SyncFault {
    /// Fail it at once with an EIO-like error, without syncing.
    Fail,
    /// Return a pending completion the test finishes through [`FaultBackend::take_held`].
    Hold,
}

#[derive(Debug, Default)]
struct FaultState {
    /// `sync_data` calls seen, faulted or not.
    syncs: u64,
    /// Faults for the next `sync_data` calls, in order.
    plan: VecDeque<SyncFault>,
    held: Vec<CompletionHandle>,
    /// Hold the next write: it reaches the file only on [`FaultBackend::release_write`].
    hold_write: bool,
    held_write: Option<HeldWrite>,
    /// Fail the next `set_len` of any file.
    fail_set_len: bool,
    /// Fail the next `sync_dir`.
    fail_dir_sync: bool,
}

#[derive(Debug)]
struct HeldWrite {
    file: Arc<dyn LogFile>,
    pos: u64,
    data: Bytes,
    handle: CompletionHandle,
}

#[derive(Debug)]
struct FaultBackend {
    inner: Arc<dyn IoBackend>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultBackend {
    fn new(inner: Arc<dyn IoBackend>) -> Arc<Self> {
        Arc::new(FaultBackend {
            inner,
            state: Arc::default(),
        })
    }

    fn plan(&self, fault: SyncFault) {
        self.state.lock().unwrap().plan.push_back(fault);
    }

    fn hold_next_write(&self) {
        self.state.lock().unwrap().hold_write = true;
    }

    /// Writes the held write for real, then completes it.
    fn release_write(&self) {
        let held = self.state.lock().unwrap().held_write.take();
        let w = held.expect("a write was held");
        let result = w.file.write_at(w.pos, w.data).wait();
        w.handle.complete(result);
    }

    fn fail_next_set_len(&self) {
        self.state.lock().unwrap().fail_set_len = true;
    }

    fn fail_next_dir_sync(&self) {
        self.state.lock().unwrap().fail_dir_sync = true;
    }

    fn syncs(&self) -> u64 {
        self.state.lock().unwrap().syncs
    }

    /// Waits until a held sync exists and takes its handle.
    fn take_held(&self) -> CompletionHandle {
        let start = Instant::now();
        loop {
            if let Some(h) = self.state.lock().unwrap().held.pop() {
                return h;
            }
            assert!(start.elapsed() < WAIT_MAX, "no sync was held in time");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl IoBackend for FaultBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        Ok(Arc::new(FaultFile {
            inner: self.inner.open(path)?,
            state: self.state.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if std::mem::take(&mut self.state.lock().unwrap().fail_dir_sync) {
            return Err(io::Error::other("injected EIO"));
        }
        self.inner.sync_dir(dir)
    }
    fn stats(&self) -> IoStats {
        self.inner.stats()
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn LogFile>,
    state: Arc<Mutex<FaultState>>,
}

impl LogFile for FaultFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn write_at(&self, pos: u64, data: Bytes) -> Completion {
        let mut state = self.state.lock().unwrap();
        if std::mem::take(&mut state.hold_write) {
            let (handle, completion) = Completion::pending();
            state.held_write = Some(HeldWrite {
                file: self.inner.clone(),
                pos,
                data,
                handle,
            });
            return completion;
        }
        self.inner.write_at(pos, data)
    }
    fn sync_data(&self) -> Completion {
        let mut state = self.state.lock().unwrap();
        state.syncs += 1;
        match state.plan.pop_front() {
            Some(SyncFault::Fail) => Completion::ready(Err(io::Error::other("injected EIO"))),
            Some(SyncFault::Hold) => {
                let (handle, completion) = Completion::pending();
                state.held.push(handle);
                completion
            }
            None => self.inner.sync_data(),
        }
    }
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(pos, buf)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if std::mem::take(&mut self.state.lock().unwrap().fail_set_len) {
            return Err(io::Error::other("injected EIO"));
        }
        self.inner.set_len(len)
    }
    fn close(&self) {
        self.inner.close()
    }
}

/// One small batch; `seed` varies its bytes (seeds below 10 give batches
/// of one length: the key holds the seed's digits).
fn small(seed: u64) -> bytes::BytesMut {
    batch(1, 100, 1_000, Compression::None, seed)
}

/// A failed fsync of the old segment during a roll must fail the log: the
/// roll used to queue a "best effort" sync and drop its result, so a later
/// sync of the same file succeeded (the kernel reports a writeback error
/// once) and a `Synced` append after the roll was acknowledged although the
/// old segment's bytes, which it depends on, may be lost.
#[test]
fn roll_fsync_failure_fails_the_log() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let len = small(0).len() as u64;
        let log = PartitionLog::open(dir.path(), small_config(len + 1), fault.clone()).unwrap();
        rt.block_on(log.append(small(1), Durability::Written))
            .unwrap();
        // The next fsync of any file fails, whoever issues it.
        fault.plan(SyncFault::Fail);
        let rolled = rt.block_on(log.append(small(2), Durability::Written));
        assert_eq!(log.segment_count(), 2, "{name}: second append rolls");
        let synced = rt.block_on(log.append(small(3), Durability::Synced));
        assert!(
            rolled.is_err() || synced.is_err(),
            "{name}: a synced append was acknowledged after a failed fsync"
        );
        assert!(
            log.stats().failed,
            "{name}: log not failed after a failed fsync"
        );
        let later = rt.block_on(log.append(small(4), Durability::Written));
        assert!(
            matches!(later, Err(StorageError::LogFailed { .. })),
            "{name}: {later:?}"
        );
    }
}

/// A sync leader whose append future is dropped mid-fsync (its client went
/// away) must still see the fsync's outcome: the outcome used to be dropped
/// with the future, so a failed fsync went unnoticed and the next leader's
/// successful fsync acknowledged bytes behind a possibly lost region.
#[test]
fn cancelled_sync_leader_failure_fails_the_log() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let log =
            Arc::new(PartitionLog::open(dir.path(), small_config(1 << 20), fault.clone()).unwrap());
        rt.block_on(log.append(small(1), Durability::Written))
            .unwrap();
        fault.plan(SyncFault::Hold);
        let leader = {
            let log = log.clone();
            rt.spawn(async move { log.append(small(2), Durability::Synced).await })
        };
        let held = fault.take_held();
        leader.abort();
        // The fsync the leader queued fails after its future was dropped.
        held.complete(Err(io::Error::other("injected EIO")));
        let _ = rt.block_on(leader);
        let next = rt.block_on(log.append(small(3), Durability::Synced));
        assert!(
            next.is_err(),
            "{name}: synced append acknowledged after an unobserved failed fsync"
        );
        assert!(log.stats().failed, "{name}");
    }
}

/// `truncate_to` while a sync is in flight must not let that sync's
/// coverage outlive the truncation: the sync used to finish afterwards and
/// raise the durable end over offsets that were then reassigned, so the
/// next `Synced` append at those offsets returned without any fsync.
#[test]
fn truncate_during_sync_then_synced_append_really_syncs() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let log =
            Arc::new(PartitionLog::open(dir.path(), small_config(1 << 20), fault.clone()).unwrap());
        for seed in 0..3 {
            rt.block_on(log.append(small(seed), Durability::Written))
                .unwrap();
        }
        fault.plan(SyncFault::Hold);
        let leader = {
            let log = log.clone();
            rt.spawn(async move { log.append(small(3), Durability::Synced).await })
        };
        let held = fault.take_held();
        // The truncation runs while the sync is held: with the fix it
        // waits for that sync instead of cutting the log under it.
        let mut truncation = std::pin::pin!(log.truncate_to(1));
        assert!(
            poll_once(truncation.as_mut()).is_pending(),
            "{name}: truncated while a sync was in flight"
        );
        assert_eq!(log.log_end_offset(), 4, "{name}");
        held.complete(Ok(()));
        let (synced, truncated) = rt.block_on(async { tokio::join!(leader, truncation) });
        synced.unwrap().unwrap();
        truncated.unwrap();
        assert_eq!(log.log_end_offset(), 1, "{name}");
        let before = fault.syncs();
        let info = rt
            .block_on(log.append(small(9), Durability::Synced))
            .unwrap();
        assert_eq!(info.base_offset, 1, "{name}");
        assert!(
            fault.syncs() > before,
            "{name}: synced append at a reassigned offset returned without an fsync"
        );
    }
}

/// After an unclean stop (process crash, page cache intact), a reopened log
/// must not take what it recovered as durable: it used to, so a `Synced`
/// append synced only its own segment file and neither the directory entry
/// of that segment (created by a roll nobody synced) nor older segments,
/// and a power loss then took the acknowledged batch with them.
#[test]
fn synced_append_after_unclean_reopen_survives_power_loss() {
    let rt = runtime();
    let dir = tempdir();
    let crash = Arc::new(CrashBackend::new(None).unwrap());
    let len = small(0).len() as u64;
    {
        let config = small_config(2 * len + 1);
        let log = PartitionLog::open(dir.path(), config, crash.clone()).unwrap();
        for seed in 0..5 {
            rt.block_on(log.append(small(seed), Durability::Written))
                .unwrap();
        }
        assert!(log.segment_count() >= 2);
        // Dropped without close: the process died, the OS kept its writes.
    }
    // Large segments now: the append must land in the segment the roll
    // above created, not roll again (a roll makes its own directory sync).
    let log = PartitionLog::open(dir.path(), small_config(1 << 20), crash.clone()).unwrap();
    assert!(!log.stats().recovery.clean_shutdown);
    let segments = log.segment_count();
    let sent = small(9);
    let info = rt
        .block_on(log.append(sent.clone(), Durability::Synced))
        .unwrap();
    assert_eq!(log.segment_count(), segments);
    drop(log);
    let after = tempdir();
    crash.materialize_durable(after.path(), dir.path()).unwrap();
    let log = PartitionLog::open(after.path(), small_config(1 << 20), std_backend()).unwrap();
    let batches = read_all(&log, 1 << 20);
    let found = batches
        .iter()
        .find(|(h, _)| h.base_offset == info.base_offset);
    assert!(
        found.is_some_and(|(_, b)| same_batch(b, &sent, info.base_offset)),
        "acknowledged synced batch at {} lost after power loss (log end {})",
        info.base_offset,
        log.log_end_offset()
    );
}

/// Writes a segment file named for `base` holding one batch of `records`
/// records stamped with `base`.
fn segment_with_batch(dir: &Path, base: u64, records: usize) {
    let mut b = batch(records, 10, 1_000, Compression::None, 7);
    stamp_base_offset(&mut b, base);
    std::fs::write(dir.join(format!("{base:020}.log")), &b).unwrap();
}

/// A hostile directory (a segment named near `u64::MAX`, an index entry
/// whose offset overflows) must open without a panic: checking the index
/// entry used to add its relative offset to the base unchecked.
#[test]
fn index_entry_overflowing_offsets_does_not_panic_recovery() {
    for (name, backend) in backends() {
        let dir = tempdir();
        let base = u64::MAX;
        // A valid batch header at position 0 (it claims offset 0), so the
        // entry's check gets as far as comparing offsets.
        let mut b = batch(1, 10, 1_000, Compression::None, 7);
        stamp_base_offset(&mut b, 0);
        std::fs::write(dir.path().join(format!("{base:020}.log")), &b).unwrap();
        let entry: Vec<u8> = [1u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
        std::fs::write(dir.path().join(format!("{base:020}.index")), entry).unwrap();
        // An empty, well-formed time index, so the offset index is checked
        // rather than discarded with a missing one.
        std::fs::write(dir.path().join(format!("{base:020}.timeindex")), b"").unwrap();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        assert_eq!(log.log_end_offset(), base, "{name}: the stray batch is cut");
        assert_eq!(log.stats().recovery.index_entries_dropped, 1, "{name}");
    }
}

/// Appending to a log whose offsets are nearly exhausted (its segment file
/// names a base near `u64::MAX`) must be refused, not panic: the roll check
/// and the end offset used to add the batch's offsets unchecked.
#[test]
fn append_past_offset_limit_is_refused_not_a_panic() {
    let rt = runtime();
    for (name, backend) in backends() {
        // An empty active segment at the very last offset.
        let dir = tempdir();
        std::fs::write(dir.path().join(format!("{:020}.log", u64::MAX)), b"").unwrap();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend.clone()).unwrap();
        let r = rt.block_on(log.append(small(1), Durability::Written));
        assert!(
            matches!(r, Err(StorageError::InvalidBatch(_))),
            "{name}: {r:?}"
        );
        assert_eq!(log.log_end_offset(), u64::MAX, "{name}");

        // A non-empty active segment three offsets below the limit.
        let dir = tempdir();
        let base = u64::MAX - 5;
        segment_with_batch(dir.path(), base, 3);
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        assert_eq!(log.log_end_offset(), base + 3, "{name}");
        let r = rt.block_on(log.append(
            batch(5, 10, 1_000, Compression::None, 1),
            Durability::Written,
        ));
        assert!(
            matches!(r, Err(StorageError::InvalidBatch(_))),
            "{name}: {r:?}"
        );
        let ok = rt
            .block_on(log.append(
                batch(2, 10, 1_000, Compression::None, 2),
                Durability::Written,
            ))
            .unwrap();
        assert_eq!(
            ok.last_offset,
            u64::MAX - 1,
            "{name}: the last offsets still fit"
        );
        assert_eq!(read_all(&log, 1 << 20).len(), 2, "{name}");
    }
}

/// A truncation that fails half-way (later segments already deleted, the
/// cut of the kept segment refused) must fail the log: it used to leave the
/// log end where it was while the active segment went back to an older
/// one, so the next append was stamped with an offset that did not
/// continue that segment and reads were no longer dense.
#[test]
fn failed_truncation_fails_the_log() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let len = small(0).len() as u64;
        let log = PartitionLog::open(dir.path(), small_config(2 * len + 1), fault.clone()).unwrap();
        for seed in 0..5 {
            rt.block_on(log.append(small(seed), Durability::Written))
                .unwrap();
        }
        assert_eq!(log.segment_count(), 3, "{name}");
        fault.fail_next_set_len();
        assert!(rt.block_on(log.truncate_to(1)).is_err(), "{name}");
        let next = rt.block_on(log.append(small(5), Durability::Written));
        assert!(
            matches!(next, Err(StorageError::LogFailed { .. })),
            "{name}: append after a failed truncation: {next:?}"
        );
        // Reads still serve a dense log (what was written is still there).
        read_all(&log, 1 << 20);
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), std_backend()).unwrap();
        read_all(&log, 1 << 20);
    }
}

/// A failed directory fsync after retention deleted segments must fail the
/// log, like every other failed fsync (the directory's pending error is
/// consumed by the failed call: a later directory sync, e.g. the one making
/// a new segment durable, would report success for lost entries).
#[test]
fn failed_retention_dir_sync_fails_the_log() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let len = small(0).len() as u64;
        let mut config = small_config(len + 1);
        config.retention_bytes = Some(len);
        let log = PartitionLog::open(dir.path(), config, fault.clone()).unwrap();
        for seed in 0..3 {
            rt.block_on(log.append(small(seed), Durability::Written))
                .unwrap();
        }
        fault.fail_next_dir_sync();
        assert!(log.enforce_retention(0).is_err(), "{name}");
        let next = rt.block_on(log.append(small(5), Durability::Written));
        assert!(
            matches!(next, Err(StorageError::LogFailed { .. })),
            "{name}: append after a failed directory sync: {next:?}"
        );
    }
}

/// A log of `n` small batches in segments of two, dropped without close;
/// returns its directory and the segment bases, oldest first.
fn crashed_log(
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn IoBackend>,
    n: u64,
) -> (tempfile::TempDir, Vec<u64>) {
    let dir = tempdir();
    let len = small(0).len() as u64;
    let log = PartitionLog::open(dir.path(), small_config(2 * len + 1), backend).unwrap();
    let mut bases = Vec::new();
    for seed in 0..n {
        let info = rt
            .block_on(log.append(small(seed % 10), Durability::Written))
            .unwrap();
        if info.position == Some(0) {
            bases.push(info.base_offset);
        }
    }
    (dir, bases)
}

/// Hostile files beside a crashed log that damage no batch (index entries
/// into the middle of a batch or past the file, a garbage time index,
/// names that do not parse, an empty active segment at the log end) change
/// nothing: every batch is served, offsets continue. Checked while hunting
/// for bugs; kept as a guard.
#[test]
fn hostile_index_and_name_files_lose_and_serve_nothing_wrong() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (dir, bases) = crashed_log(&rt, backend.clone(), 7);
        assert_eq!(bases, [0, 2, 4, 6], "{name}");
        let seg = |base: u64, ext: &str| dir.path().join(format!("{base:020}.{ext}"));
        let entry = |rel: u32, pos: u32| [rel.to_le_bytes(), pos.to_le_bytes()].concat();
        // Older segment: an entry 10 bytes into its first batch.
        std::fs::write(seg(0, "index"), entry(1, 10)).unwrap();
        // Older segment: an entry far past the end of the file.
        std::fs::write(seg(2, "index"), entry(1, 1 << 30)).unwrap();
        // Active segment: an entry into the middle of its batch, and a
        // time index of an odd size.
        std::fs::write(seg(6, "index"), entry(0, 3)).unwrap();
        std::fs::write(seg(6, "timeindex"), [0xA5u8; 13]).unwrap();
        // Names that are not segments: ignored, never opened.
        for stray in ["abc.log", "1.log", "99999999999999999999.log"] {
            std::fs::write(dir.path().join(stray), b"not a segment").unwrap();
        }
        // An empty segment at the log end (a roll cut short).
        std::fs::write(seg(7, "log"), b"").unwrap();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        assert_eq!(log.log_end_offset(), 7, "{name}");
        assert_eq!(log.segment_count(), 5, "{name}");
        let batches = read_all(&log, 1 << 20);
        assert_eq!(batches.len(), 7, "{name}");
        for offset in 0..7 {
            let one = log.read(offset, 1).unwrap();
            assert_eq!(
                super::log_support::split_batches(&one)[0].0.base_offset,
                offset,
                "{name}"
            );
        }
        let info = rt
            .block_on(log.append(small(1), Durability::Written))
            .unwrap();
        assert_eq!(info.base_offset, 7, "{name}");
        assert!(
            dir.path().join("abc.log").exists(),
            "{name}: stray files are left alone"
        );
    }
}

/// A batch in the active segment whose base offset jumps (the field lies
/// outside the CRC, so only the offset check catches it) ends the log there:
/// nothing from it on is served, and offsets continue from before it.
#[test]
fn base_offset_jump_in_active_segment_cuts_the_log_there() {
    let rt = runtime();
    for (name, backend) in backends() {
        let (dir, bases) = crashed_log(&rt, backend.clone(), 6);
        let active = *bases.last().unwrap();
        let path = dir.path().join(format!("{active:020}.log"));
        let mut bytes = std::fs::read(&path).unwrap();
        let second = small(0).len();
        bytes[second..second + 8].copy_from_slice(&(active + 5).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        assert_eq!(log.log_end_offset(), active + 1, "{name}");
        assert_eq!(read_all(&log, 1 << 20).len() as u64, active + 1, "{name}");
        assert_eq!(
            log.stats().recovery.bytes_truncated,
            second as u64,
            "{name}"
        );
        let info = rt
            .block_on(log.append(small(1), Durability::Written))
            .unwrap();
        assert_eq!(info.base_offset, active + 1, "{name}");
    }
}

/// Polls `fut` once without a runtime (its wake-ups are ignored).
fn poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// An append whose batch a truncation removed while its future had not yet
/// seen its write complete must end with an error: it used to wait for the
/// written end to reach its (now discarded) offsets, i.e. forever, or
/// until new appends took those offsets and then report success.
#[test]
fn append_truncated_away_while_waiting_does_not_hang() {
    let rt = runtime();
    for (name, real) in backends() {
        let dir = tempdir();
        let fault = FaultBackend::new(real);
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), fault.clone()).unwrap();
        fault.hold_next_write();
        let mut first = std::pin::pin!(log.append(small(1), Durability::Written));
        let mut second = std::pin::pin!(log.append(small(2), Durability::Written));
        assert!(poll_once(first.as_mut()).is_pending(), "{name}");
        // The second write completes; its append then waits for the first.
        for _ in 0..50 {
            assert!(poll_once(second.as_mut()).is_pending(), "{name}");
            std::thread::sleep(Duration::from_millis(2));
        }
        fault.release_write();
        let kept = rt.block_on(first).unwrap();
        assert_eq!(log.log_end_offset(), 2, "{name}");
        // The second append's future has not run since; cut its batch.
        rt.block_on(log.truncate_to(kept.last_offset + 1)).unwrap();
        let late = rt.block_on(async { tokio::time::timeout(WAIT_MAX, second).await });
        let late = late.expect("the truncated append's future never finished");
        assert!(
            matches!(late, Err(StorageError::WriteRefused { .. })),
            "{name}: {late:?}"
        );
        assert_eq!(log.log_end_offset(), 1, "{name}");
    }
}
