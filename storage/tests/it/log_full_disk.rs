//! A full disk costs errors, not a restart: on a real, small tmpfs a write
//! refused with `ENOSPC` rolls the log back to its last written batch, reads
//! keep serving exactly the acknowledged batches, and appends resume at the
//! next offset once the file system is enlarged — on both I/O backends.
//! Skipped (with a line on stderr) where mounting a tmpfs is refused.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rill_protocol::batch::{BatchHeader, Compression};
use rill_storage::io::IoBackend;
use rill_storage::{Durability, PartitionLog, StorageError};

use crate::log_support::{assert_holds_exactly, backends, batch, now_ms, runtime, small_config};

/// Small enough to fill in well under a second of appends.
const FS_BYTES_SMALL: &str = "256k";
/// What the file system is enlarged to once it was full.
const FS_BYTES_LARGE: &str = "4m";
/// Segments roll several times before the disk fills.
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Appends in flight at once in the concurrent test.
const CONCURRENT_APPENDS: usize = 16;
/// Appenders running at once in the continuous-load test, and how many
/// writes the disk refuses in all before they stop.
const LOAD_WORKERS: u64 = 12;
const LOAD_REFUSALS: usize = 100;
/// Bound on appends while filling: a tmpfs that never fills is a bug.
const APPENDS_MAX: u64 = 10_000;
/// Longest any round of appends may take: a stuck rollback is a failure.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// A tmpfs mounted on a fresh directory; unmounted when dropped, on panic
/// too.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (mount(8) syntax), or says why not.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts with new options (`size=4m`, `ro`, `rw`).
    pub fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount,{options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (a log a failed test leaked) must not
        // keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn mount_or_skip(size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(fs) => Some(fs),
        Err(e) => {
            eprintln!("skipped full-disk test: cannot mount a tmpfs ({e})");
            None
        }
    }
}

fn is_enospc(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
}

/// Appends one batch after another until the disk refuses one.
async fn fill(
    log: &PartitionLog,
    acked: &mut Vec<(u64, BytesMut)>,
    seed: &mut u64,
) -> StorageError {
    loop {
        *seed += 1;
        assert!(*seed < APPENDS_MAX, "the small file system never filled");
        let b = batch(8, 1000, now_ms(), Compression::None, *seed);
        // Alternate the durability levels: both paths must roll back.
        let durability = if seed.is_multiple_of(2) {
            Durability::Synced
        } else {
            Durability::Written
        };
        match log.append(b.clone(), durability).await {
            Ok(info) => acked.push((info.base_offset, b)),
            Err(e) => return e,
        }
    }
}

fn refused_write_rolls_back_and_resumes_on(name: &str, backend: Arc<dyn IoBackend>) {
    let Some(fs) = mount_or_skip(FS_BYTES_SMALL) else {
        return;
    };
    let dir = fs.path().join("p0");
    runtime().block_on(async {
        let log = PartitionLog::open(&dir, small_config(SEGMENT_BYTES), backend.clone())
            .expect("open log");
        let mut acked = Vec::new();
        let mut seed = 0;
        let err = fill(&log, &mut acked, &mut seed).await;
        assert!(is_enospc(&err), "{name}: first refusal is ENOSPC: {err}");
        assert!(
            log.segment_count() > 1,
            "{name}: the log rolled before filling"
        );
        assert_eq!(
            log.log_end_offset(),
            end_of(&acked),
            "{name}: end after the refusal"
        );

        // Still full: appends are refused, but never with a lasting failure.
        for _ in 0..3 {
            let again = log
                .append(
                    batch(8, 1000, now_ms(), Compression::None, 0),
                    Durability::Written,
                )
                .await
                .expect_err("still full");
            assert!(
                is_enospc(&again) || matches!(again, StorageError::WriteRefused { .. }),
                "{name}: refusal while full: {again}"
            );
        }
        assert!(
            !log.stats().failed,
            "{name}: a full disk must not fail the log"
        );
        assert_holds_exactly(&log, &acked, name);

        fs.remount(&format!("size={FS_BYTES_LARGE}"));
        for i in 0..20 {
            let b = batch(8, 1000, now_ms(), Compression::None, 10_000 + i);
            let info = log
                .append(b.clone(), Durability::Synced)
                .await
                .expect("append after space returned");
            assert_eq!(info.base_offset, end_of(&acked), "{name}: offsets continue");
            acked.push((info.base_offset, b));
        }
        assert!(log.stats().write_rollbacks >= 1, "{name}: rollback counted");
        assert_holds_exactly(&log, &acked, name);

        log.close().await.expect("close");
        let log =
            PartitionLog::open(&dir, small_config(SEGMENT_BYTES), backend.clone()).expect("reopen");
        assert!(log.stats().recovery.clean_shutdown, "{name}: clean close");
        assert_holds_exactly(&log, &acked, &format!("{name} after reopen"));
    });
}

/// The offset after the last acknowledged batch.
fn end_of(acked: &[(u64, BytesMut)]) -> u64 {
    acked.last().map_or(0, |(base, b)| {
        base + u64::from(BatchHeader::parse(b).expect("header").record_count)
    })
}

#[test]
fn refused_write_rolls_back_and_appends_resume_when_space_returns() {
    for (name, backend) in backends() {
        refused_write_rolls_back_and_resumes_on(name, backend);
    }
}

/// Many appends in flight when the disk fills: every append either is
/// acknowledged and in the log, or failed and is not — no offset served
/// twice, no acknowledged batch lost, no hang — and after space returns a
/// whole round succeeds.
#[test]
fn concurrent_appends_on_a_full_disk_ack_exactly_what_is_kept() {
    for (name, backend) in backends() {
        let Some(fs) = mount_or_skip(FS_BYTES_SMALL) else {
            return;
        };
        let dir = fs.path().join("p0");
        runtime().block_on(async {
            let log = Arc::new(
                PartitionLog::open(&dir, small_config(SEGMENT_BYTES), backend.clone())
                    .expect("open log"),
            );
            let mut acked: Vec<(u64, BytesMut)> = Vec::new();
            let mut seed = 0u64;
            let mut refused = 0usize;
            while refused == 0 {
                assert!(
                    seed < APPENDS_MAX,
                    "{name}: the small file system never filled"
                );
                let (ok, failed) = round(&log, &mut seed).await;
                acked.extend(ok);
                refused += failed;
            }
            acked.sort_by_key(|(base, _)| *base);
            assert!(
                !log.stats().failed,
                "{name}: a full disk must not fail the log"
            );
            assert_holds_exactly(&log, &acked, name);

            fs.remount(&format!("size={FS_BYTES_LARGE}"));
            // The first append after the refusals may be the one that still
            // meets a pending rollback's leftovers; from then on all succeed.
            let (ok, failed) = round(&log, &mut seed).await;
            assert_eq!(
                failed, 0,
                "{name}: every append succeeds once space returned"
            );
            acked.extend(ok);
            acked.sort_by_key(|(base, _)| *base);
            assert_holds_exactly(&log, &acked, &format!("{name} after space returned"));
        });
    }
}

/// Runs [`CONCURRENT_APPENDS`] appends at once; returns the acknowledged
/// ones and how many failed (each with a space error, never a lasting one).
async fn round(log: &Arc<PartitionLog>, seed: &mut u64) -> (Vec<(u64, BytesMut)>, usize) {
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENT_APPENDS {
        *seed += 1;
        let b = batch(4, 1500, now_ms(), Compression::None, *seed);
        let log = Arc::clone(log);
        let durability = if seed.is_multiple_of(3) {
            Durability::Synced
        } else {
            Durability::Written
        };
        tasks.push(tokio::spawn(async move {
            let result = log.append(b.clone(), durability).await;
            (result, b)
        }));
    }
    let mut ok = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (result, b) = tokio::time::timeout(ROUND_TIMEOUT, task)
            .await
            .expect("append finished in time")
            .expect("append task");
        match result {
            Ok(info) => ok.push((info.base_offset, b)),
            Err(e) => {
                assert!(
                    is_enospc(&e) || matches!(e, StorageError::WriteRefused { .. }),
                    "refusal on a full disk: {e}"
                );
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// Appenders that keep going while the disk stays full: rollbacks run
/// under load, so a waiter can wake after a rollback already handed its
/// offsets to a newer batch — it must then learn its batch was discarded
/// (the epoch check), never report the newer batch's offset as its own.
#[test]
fn rollbacks_under_continuous_load_never_ack_a_discarded_batch() {
    for (name, backend) in backends() {
        let Some(_fs) = mount_or_skip(FS_BYTES_SMALL) else {
            return;
        };
        let dir = _fs.path().join("p0");
        runtime().block_on(async {
            let log = Arc::new(
                PartitionLog::open(&dir, small_config(SEGMENT_BYTES), backend.clone())
                    .expect("open log"),
            );
            let refusals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for worker in 0..LOAD_WORKERS {
                let log = Arc::clone(&log);
                let refusals = Arc::clone(&refusals);
                tasks.push(tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut seed = worker * APPENDS_MAX;
                    while refusals.load(std::sync::atomic::Ordering::Relaxed) < LOAD_REFUSALS {
                        seed += 1;
                        // Small batches: the disk fills, and a rollback
                        // frees room for a few more, again and again.
                        let b = batch(
                            1,
                            300 + (seed % 7) as usize * 200,
                            now_ms(),
                            Compression::None,
                            seed,
                        );
                        match log.append(b.clone(), Durability::Written).await {
                            Ok(info) => acked.push((info.base_offset, b)),
                            Err(e) if is_enospc(&e) => {
                                refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => {
                                assert!(
                                    matches!(e, StorageError::WriteRefused { .. }),
                                    "refusal on a full disk: {e}"
                                );
                                // Writes still in flight hold the rollback
                                // back; let them finish.
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for task in tasks {
                let part = tokio::time::timeout(ROUND_TIMEOUT, task)
                    .await
                    .expect("workers finish in time")
                    .expect("worker");
                acked.extend(part);
            }
            acked.sort_by_key(|(base, _)| *base);
            assert!(
                !log.stats().failed,
                "{name}: a full disk must not fail the log"
            );
            assert!(
                log.stats().write_rollbacks > 1,
                "{name}: several rollbacks under load"
            );
            assert_holds_exactly(&log, &acked, name);
        });
    }
}
