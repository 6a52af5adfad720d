//! Read-only open: a torn tail is validated away but left on disk, every
//! file (and the clean-shutdown marker) is byte-for-byte unchanged after
//! open, reads and close, appends fail with `StorageError::ReadOnly`, and a
//! later writable open still recovers the log normally. Both backends.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rill_protocol::batch::Compression;
use rill_storage::{Durability, PartitionLog, StorageError, CLEAN_SHUTDOWN_MARKER};

use super::log_support::{backends, batch, read_all, runtime, same_batch, small_config, tempdir};

const SEGMENT_BYTES: u64 = 4 * 1024;
const BATCHES: u64 = 12;
const RECORDS_PER_BATCH: usize = 3;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn active_segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap()
}

#[test]
fn read_only_open_hides_a_torn_tail_and_modifies_nothing() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        let mut sent = Vec::new();
        for i in 0..BATCHES {
            let b = batch(
                RECORDS_PER_BATCH,
                100,
                1_000 + i as i64,
                Compression::None,
                i,
            );
            sent.push(b.clone().freeze());
            rt.block_on(log.append(b, Durability::Written)).unwrap();
        }
        let end = log.log_end_offset();
        assert!(
            log.segment_count() > 1,
            "{name}: test needs several segments"
        );
        // A crash: no close, so no marker; then half of one more batch.
        drop(log);
        let torn = batch(RECORDS_PER_BATCH, 100, 5_000, Compression::None, 99);
        let active = active_segment(dir.path());
        let mut f = OpenOptions::new().append(true).open(&active).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(f);
        let before = snapshot(dir.path());

        let ro =
            PartitionLog::open_read_only(dir.path(), small_config(SEGMENT_BYTES), backend.clone())
                .unwrap();
        assert!(ro.is_read_only());
        assert_eq!(
            ro.log_end_offset(),
            end,
            "{name}: the torn tail is not served"
        );
        assert_eq!(ro.stats().recovery.bytes_truncated, (torn.len() / 2) as u64);
        let served = read_all(&ro, 64 * 1024);
        assert_eq!(served.len() as u64, BATCHES, "{name}");
        for (i, ((h, stored), sent)) in served.iter().zip(&sent).enumerate() {
            assert_eq!(h.base_offset, i as u64 * RECORDS_PER_BATCH as u64);
            assert!(
                same_batch(stored, sent, h.base_offset),
                "{name}: batch {i} served byte for byte"
            );
        }
        let err = rt
            .block_on(ro.append(
                batch(1, 10, 9_000, Compression::None, 7),
                Durability::Written,
            ))
            .unwrap_err();
        match &err {
            StorageError::ReadOnly { dir: d } => assert_eq!(d, dir.path()),
            other => panic!("{name}: expected ReadOnly, got {other:?}"),
        }
        assert!(err.to_string().contains("read-only"), "{err}");
        assert!(matches!(
            rt.block_on(ro.truncate_to(0)),
            Err(StorageError::ReadOnly { .. })
        ));
        rt.block_on(ro.flush()).unwrap();
        rt.block_on(ro.close()).unwrap();
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{name}: a read-only open changed files"
        );

        // The next writable open recovers as after any crash and continues.
        let rw =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        assert!(!rw.stats().recovery.clean_shutdown);
        assert_eq!(rw.stats().recovery.bytes_truncated, (torn.len() / 2) as u64);
        let info = rt
            .block_on(rw.append(
                batch(1, 10, 9_000, Compression::None, 7),
                Durability::Written,
            ))
            .unwrap();
        assert_eq!(info.base_offset, end, "{name}");
        rt.block_on(rw.close()).unwrap();
    }
}

#[test]
fn read_only_open_keeps_the_clean_shutdown_marker() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        for i in 0..4 {
            let b = batch(
                RECORDS_PER_BATCH,
                50,
                1_000 + i,
                Compression::Zstd,
                i as u64,
            );
            rt.block_on(log.append(b, Durability::Synced)).unwrap();
        }
        rt.block_on(log.close()).unwrap();
        let before = snapshot(dir.path());
        assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());

        let ro =
            PartitionLog::open_read_only(dir.path(), small_config(SEGMENT_BYTES), backend.clone())
                .unwrap();
        assert!(ro.stats().recovery.clean_shutdown, "{name}");
        assert_eq!(read_all(&ro, 64 * 1024).len(), 4, "{name}");
        assert_eq!(ro.enforce_retention(i64::MAX).unwrap().segments_deleted, 0);
        rt.block_on(ro.close()).unwrap();
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{name}: marker or files changed"
        );

        let rw =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        assert!(
            rw.stats().recovery.clean_shutdown,
            "{name}: the marker survived for the next open"
        );
    }
}

#[test]
fn read_only_open_of_a_missing_directory_is_an_empty_log() {
    let rt = runtime();
    let (_, backend) = backends().remove(0);
    let parent = tempdir();
    let dir = parent.path().join("never-created");
    let ro = PartitionLog::open_read_only(&dir, small_config(SEGMENT_BYTES), backend).unwrap();
    assert_eq!(ro.log_end_offset(), 0);
    assert!(ro.read(0, 1024).unwrap().is_empty());
    assert!(rt
        .block_on(ro.append(batch(1, 10, 1, Compression::None, 1), Durability::Written))
        .is_err_and(|e| matches!(e, StorageError::ReadOnly { .. })));
    rt.block_on(ro.close()).unwrap();
    assert!(!dir.exists(), "a read-only open created the directory");
}
