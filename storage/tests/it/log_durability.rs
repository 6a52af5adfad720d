//! Durability: synced appends really fsync, concurrent ones share syncs
//! (group commit), the fsync policies trigger, a failed fsync fails the log,
//! and at every crash point an acknowledged synced append survives in the
//! durable (and torn) image while nothing after a tear is served.

use std::sync::Arc;

use rill_protocol::batch::Compression;
use rill_storage::io::{CrashBackend, IoBackend};
use rill_storage::{Durability, FsyncPolicy, LogConfig, PartitionLog, StorageError};

use super::log_support::{
    backends, batch, now_ms, read_all, runtime, small_config, split_batches, std_backend, tempdir,
    BASE_END,
};

/// Tasks appending at once in the group commit test.
const CONCURRENT_TASKS: usize = 64;
const APPENDS_PER_TASK: usize = 4;
/// Crash points tried: every sync_data call of the workload up to this one.
const CRASH_POINTS: u64 = 24;

/// A synced append issues an fdatasync (seen by the log and the backend); a
/// written one under `Never` does not; `flush` syncs what was written.
#[test]
fn log_synced_append_syncs() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend.clone()).unwrap();
        let io_before = backend.stats().data_syncs;
        rt.block_on(log.append(batch(1, 100, 1, Compression::None, 1), Durability::Written))
            .unwrap();
        assert_eq!(log.stats().syncs, 0, "{name}: written append under Never");
        rt.block_on(log.append(batch(1, 100, 1, Compression::None, 2), Durability::Synced))
            .unwrap();
        let after_synced = log.stats().syncs;
        assert!(after_synced >= 1, "{name}");
        assert!(
            backend.stats().data_syncs > io_before,
            "{name}: the backend really synced"
        );
        rt.block_on(log.append(batch(1, 100, 1, Compression::None, 3), Durability::Written))
            .unwrap();
        rt.block_on(log.flush()).unwrap();
        assert!(
            log.stats().syncs > after_synced,
            "{name}: flush syncs new writes"
        );
        let s = log.stats();
        assert_eq!((s.appends, s.failed), (3, false));
    }
}

/// 64 tasks appending with `Synced` at once share far fewer syncs than
/// appends, and still get dense, distinct offsets.
#[test]
fn log_group_commit_shares_syncs() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log = Arc::new(PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap());
        let mut bases: Vec<u64> = rt.block_on(async {
            let tasks: Vec<_> = (0..CONCURRENT_TASKS)
                .map(|t| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut bases = Vec::new();
                        for i in 0..APPENDS_PER_TASK {
                            let b = batch(1, 200, 1, Compression::None, (t * 100 + i) as u64);
                            bases
                                .push(log.append(b, Durability::Synced).await.unwrap().base_offset);
                        }
                        bases
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        bases.sort_unstable();
        let appends = (CONCURRENT_TASKS * APPENDS_PER_TASK) as u64;
        assert_eq!(bases, (0..appends).collect::<Vec<_>>(), "{name}");
        let syncs = log.stats().syncs;
        eprintln!("{name}: {appends} synced appends, {syncs} syncs");
        assert!(syncs >= 1);
        assert!(
            syncs * 4 <= appends,
            "{name}: {syncs} syncs for {appends} appends"
        );
    }
}

/// `Always` syncs every append; `IntervalBytes` once enough bytes went by;
/// `IntervalMs` syncs an idle log on `tick`.
#[test]
fn log_fsync_policies() {
    let rt = runtime();
    for (name, backend) in backends() {
        let open = |fsync| {
            let dir = tempdir();
            let config = LogConfig {
                fsync,
                ..small_config(1 << 20)
            };
            let log = PartitionLog::open(dir.path(), config, backend.clone()).unwrap();
            (dir, log)
        };
        let append = |log: &PartitionLog, i: u64| {
            rt.block_on(log.append(batch(1, 400, 1, Compression::None, i), Durability::Written))
                .unwrap();
        };

        let (_d, log) = open(FsyncPolicy::Always);
        for i in 0..5 {
            append(&log, i);
        }
        assert_eq!(log.stats().syncs, 5, "{name}: always");

        let (_d, log) = open(FsyncPolicy::IntervalBytes(4000));
        for i in 0..4 {
            append(&log, i);
        }
        assert_eq!(log.stats().syncs, 0, "{name}: under the byte interval");
        for i in 4..12 {
            append(&log, i);
        }
        let syncs = log.stats().syncs;
        assert!(
            (1..12).contains(&syncs),
            "{name}: interval_bytes gave {syncs}"
        );

        let (_d, log) = open(FsyncPolicy::IntervalMs(60_000));
        append(&log, 0);
        assert_eq!(log.stats().syncs, 0, "{name}");
        log.tick(now_ms() + 1_000);
        assert_eq!(log.stats().syncs, 0, "{name}: interval not over");
        log.tick(now_ms() + 61_000);
        assert_eq!(log.stats().syncs, 1, "{name}: idle log synced on tick");
        log.tick(now_ms() + 200_000);
        assert_eq!(log.stats().syncs, 1, "{name}: nothing new to sync");
    }
}

/// A failed fsync fails the log: later appends get `LogFailed`, reads keep
/// working, and a reopen recovers it.
#[test]
fn log_failed_fsync_fails_the_log() {
    let rt = runtime();
    let dir = tempdir();
    let crash = Arc::new(CrashBackend::new(Some(1)).unwrap());
    let log = PartitionLog::open(dir.path(), small_config(1 << 20), crash.clone()).unwrap();
    let first = batch(2, 100, 1, Compression::None, 1);
    rt.block_on(log.append(first.clone(), Durability::Written))
        .unwrap();
    let synced =
        rt.block_on(log.append(batch(1, 100, 1, Compression::None, 2), Durability::Synced));
    assert!(matches!(synced, Err(StorageError::Io { .. })), "{synced:?}");
    assert!(crash.crashed());
    let later =
        rt.block_on(log.append(batch(1, 100, 1, Compression::None, 3), Durability::Written));
    assert!(
        matches!(later, Err(StorageError::LogFailed { .. })),
        "{later:?}"
    );
    assert!(matches!(
        rt.block_on(log.flush()),
        Err(StorageError::LogFailed { .. })
    ));
    assert!(log.stats().failed);
    let read = split_batches(&log.read(0, 1).unwrap());
    assert_eq!(
        &read[0].1[BASE_END..],
        &first[BASE_END..],
        "reads keep working"
    );
    drop(log);

    let log = PartitionLog::open(dir.path(), small_config(1 << 20), std_backend()).unwrap();
    assert!(!log.stats().failed);
    let info = rt
        .block_on(log.append(batch(1, 10, 1, Compression::None, 4), Durability::Synced))
        .unwrap();
    assert_eq!(info.base_offset, log.log_end_offset() - 1);
}

/// For every crash point: acknowledged synced appends are all in the
/// durable and torn images byte-for-byte at their offsets, everything served
/// is valid and dense, and appends continue.
#[test]
fn log_crash_points_keep_acknowledged_appends() {
    let rt = runtime();
    let mut acked_total = 0;
    for n in 1..=CRASH_POINTS {
        let source = tempdir();
        let crash = Arc::new(CrashBackend::new(Some(n)).unwrap());
        let backend: Arc<dyn IoBackend> = crash.clone();
        // Small segments: crashes land around rolls too.
        let log = Arc::new(PartitionLog::open(source.path(), small_config(2048), backend).unwrap());
        let acked: Vec<(u64, Vec<u8>)> = rt.block_on(async {
            let tasks: Vec<_> = (0..4u64)
                .map(|t| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut acked = Vec::new();
                        for i in 0..10u64 {
                            let b = batch(
                                1 + (i % 3) as usize,
                                150,
                                i as i64,
                                Compression::None,
                                t * 100 + i,
                            );
                            match log.append(b.clone(), Durability::Synced).await {
                                Ok(info) => {
                                    let mut stamped = b.to_vec();
                                    stamped[..BASE_END]
                                        .copy_from_slice(&info.base_offset.to_le_bytes());
                                    acked.push((info.base_offset, stamped));
                                }
                                Err(_) => break,
                            }
                        }
                        acked
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        drop(log);
        acked_total += acked.len();

        for torn in [false, true] {
            let target = tempdir();
            if torn {
                crash
                    .materialize_torn(target.path(), source.path(), n)
                    .unwrap();
            } else {
                crash
                    .materialize_durable(target.path(), source.path())
                    .unwrap();
            }
            let what = format!("crash at sync {n}, torn {torn}");
            let log = PartitionLog::open(target.path(), small_config(2048), std_backend()).unwrap();
            // Everything served is whole, valid and dense (read_all checks).
            let served = read_all(&log, 1 << 16);
            for (base, bytes) in &acked {
                let got = split_batches(&log.read(*base, 1).unwrap());
                assert_eq!(&got[0].1[..], &bytes[..], "{what}: acked batch at {base}");
            }
            let end = log.log_end_offset();
            assert_eq!(served.last().map_or(0, |(h, _)| h.next_offset()), end);
            let info = rt
                .block_on(log.append(batch(1, 10, 1, Compression::None, 999), Durability::Synced))
                .unwrap();
            assert_eq!(info.base_offset, end, "{what}: appends continue");
        }
    }
    assert!(
        acked_total > 0,
        "some crash points must come after acknowledged appends"
    );
}
