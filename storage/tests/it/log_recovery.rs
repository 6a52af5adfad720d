//! Recovery: after a crash (the log dropped without `close`) and seeded
//! damage to the active segment and its index files, a reopen keeps exactly
//! the valid prefix (computed here from the known batch boundaries),
//! continues offsets from it and finds every offset through the rebuilt
//! indexes; a clean `close` lets the next open skip the scan.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_protocol::batch::header::OFFSET_LEADER_EPOCH;
use rill_protocol::batch::Compression;
use rill_storage::io::IoBackend;
use rill_storage::{Durability, PartitionLog, CLEAN_SHUTDOWN_MARKER};
use tempfile::TempDir;

use super::log_support::{
    backends, batch, read_all, runtime, small_config, split_batches, tempdir, BASE_END,
};

/// Seeded damage cases per backend (the brief asks for >= 100 in total).
const DAMAGE_CASES: u64 = 64;
const SEGMENT_BYTES: u64 = 16 * 1024;

/// One appended batch as it must be stored.
#[derive(Debug, Clone)]
struct Stored {
    base: u64,
    records: u64,
    segment: u64,
    position: u64,
    bytes: Vec<u8>,
}

fn seg_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Appends `n` random batches (both codecs) and drops the log without
/// closing it: a crash after every write completed.
fn write_and_crash(
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn IoBackend>,
    n: usize,
    rng: &mut StdRng,
) -> (TempDir, Vec<Stored>) {
    let dir = tempdir();
    let log = PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
    let mut stored = Vec::new();
    let mut segment = 0;
    for i in 0..n {
        let records = rng.random_range(1..4);
        let codec = if rng.random_bool(0.5) {
            Compression::Zstd
        } else {
            Compression::None
        };
        let b = batch(
            records,
            rng.random_range(0..900),
            1_000 + i as i64,
            codec,
            rng.random(),
        );
        let info = rt
            .block_on(log.append(b.clone(), Durability::Written))
            .unwrap();
        if info.position == Some(0) {
            segment = info.base_offset;
        }
        let mut bytes = b.to_vec();
        bytes[..BASE_END].copy_from_slice(&info.base_offset.to_le_bytes());
        stored.push(Stored {
            base: info.base_offset,
            records: records as u64,
            segment,
            position: info.position.expect("written"),
            bytes,
        });
    }
    drop(log);
    assert!(!dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    (dir, stored)
}

/// Checks the reopened log holds exactly `expected`, finds every offset,
/// and takes the next append at the right offset.
fn check_log(rt: &tokio::runtime::Runtime, log: &PartitionLog, expected: &[Stored], what: &str) {
    let end = expected.last().map_or(0, |s| s.base + s.records);
    assert_eq!(log.log_end_offset(), end, "{what}: log end");
    let read = read_all(log, 64 * 1024);
    assert_eq!(read.len(), expected.len(), "{what}: batch count");
    for ((h, bytes), e) in read.iter().zip(expected) {
        assert_eq!(h.base_offset, e.base, "{what}");
        assert_eq!(&bytes[..], &e.bytes[..], "{what}: batch {} bytes", e.base);
    }
    for offset in 0..end {
        let one = log.read(offset, 1).unwrap();
        let batches = split_batches(&one);
        assert_eq!(batches.len(), 1, "{what}");
        assert!(
            batches[0].0.base_offset <= offset && offset < batches[0].0.next_offset(),
            "{what}: offset {offset}"
        );
    }
    let info = rt
        .block_on(log.append(
            batch(1, 10, 5_000, Compression::None, 77),
            Durability::Written,
        ))
        .unwrap();
    assert_eq!(
        info.base_offset, end,
        "{what}: offsets continue from the recovered end"
    );
}

/// Cuts, flips and garbage on the active segment, deleted and garbage
/// indexes: the valid prefix survives, nothing after the first bad byte does.
#[test]
fn log_recovery_keeps_exactly_the_valid_prefix() {
    let rt = runtime();
    for (name, backend) in backends() {
        for seed in 0..DAMAGE_CASES {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = rng.random_range(1..40);
            let (dir, stored) = write_and_crash(&rt, backend.clone(), n, &mut rng);
            let active = stored.last().unwrap().segment;
            let log_path = seg_path(dir.path(), active, "log");
            let len = std::fs::metadata(&log_path).unwrap().len();
            let mut data = std::fs::read(&log_path).unwrap();

            let mut cut = len;
            let mut flip = None;
            let what = match rng.random_range(0..4) {
                0 => {
                    cut = rng.random_range(0..=len);
                    format!("{name} seed {seed}: cut at {cut} of {len}")
                }
                1 if len > 0 => {
                    let p = rng.random_range(0..len);
                    flip = Some(p);
                    format!("{name} seed {seed}: flip byte {p} of {len}")
                }
                2 if len > 0 => {
                    cut = rng.random_range(1..=len);
                    let p = rng.random_range(0..cut);
                    flip = Some(p);
                    format!("{name} seed {seed}: cut at {cut}, flip {p} of {len}")
                }
                _ => {
                    let extra: Vec<u8> = (0..rng.random_range(1..200))
                        .map(|_| rng.random())
                        .collect();
                    data.extend_from_slice(&extra);
                    format!(
                        "{name} seed {seed}: {} garbage bytes after {len}",
                        extra.len()
                    )
                }
            };
            data.truncate(cut as usize);
            if let Some(p) = flip {
                data[p as usize] ^= 1 << rng.random_range(0..8);
            }
            let damaged_len = data.len() as u64;
            std::fs::write(&log_path, &data).unwrap();

            let index_path = seg_path(dir.path(), active, "index");
            let index_damage = rng.random_range(0..5);
            match index_damage {
                1 => std::fs::remove_file(&index_path).unwrap(),
                2 => std::fs::remove_file(seg_path(dir.path(), active, "timeindex")).unwrap(),
                3 => std::fs::write(&index_path, b"not an index").unwrap(),
                4 => {
                    // Well-formed entries pointing at nothing.
                    let mut garbage = Vec::new();
                    for i in 0..5u32 {
                        garbage.extend_from_slice(&(i * 3 + 1).to_le_bytes());
                        garbage.extend_from_slice(&(i * 1000 + 7).to_le_bytes());
                    }
                    std::fs::write(&index_path, garbage).unwrap();
                }
                _ => {}
            }

            // The expected survivors, from the known boundaries alone.
            let mut expected: Vec<Stored> = stored
                .iter()
                .filter(|s| s.segment != active)
                .cloned()
                .collect();
            let mut valid_end = 0;
            for s in stored.iter().filter(|s| s.segment == active) {
                let end = s.position + s.bytes.len() as u64;
                if end > cut {
                    break;
                }
                let mut s = s.clone();
                if let Some(p) = flip.filter(|p| (s.position..end).contains(p)) {
                    let at = (p - s.position) as usize;
                    // Only the leader epoch is outside both the CRC and the
                    // checks recovery makes; a flip there leaves a valid batch.
                    if !(OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4).contains(&at) {
                        break;
                    }
                    s.bytes[at] = data[p as usize];
                }
                valid_end = end;
                expected.push(s);
            }

            let log = PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone())
                .unwrap();
            let stats = log.stats().recovery;
            assert!(!stats.clean_shutdown, "{what}");
            assert_eq!(stats.bytes_truncated, damaged_len - valid_end, "{what}");
            if matches!(index_damage, 1..=3) {
                assert!(stats.indexes_rebuilt >= 1, "{what}");
            }
            if index_damage == 4 {
                assert!(
                    stats.index_entries_dropped > 0 || stats.indexes_rebuilt > 0,
                    "{what}"
                );
            }
            assert_eq!(
                std::fs::metadata(&log_path).unwrap().len(),
                valid_end,
                "{what}: file cut"
            );
            let index_len = std::fs::metadata(&index_path).unwrap().len();
            assert_eq!(index_len % 8, 0, "{what}: index rewritten whole");
            check_log(&rt, &log, &expected, &what);
        }
    }
}

/// A torn older segment cuts the log there: later segments, and an orphan
/// segment file past the end, are removed rather than served after a hole.
#[test]
fn log_recovery_tear_in_older_segment_drops_later_ones() {
    let rt = runtime();
    for (name, backend) in backends() {
        let mut rng = StdRng::seed_from_u64(4242);
        let (dir, stored) = write_and_crash(&rt, backend.clone(), 60, &mut rng);
        let mut segments: Vec<u64> = stored.iter().map(|s| s.segment).collect();
        segments.dedup();
        assert!(segments.len() >= 3, "{name}: need several segments");
        let victim_segment = segments[1];
        let victims: Vec<&Stored> = stored
            .iter()
            .filter(|s| s.segment == victim_segment)
            .collect();
        let victim = victims[victims.len() / 2];
        let path = seg_path(dir.path(), victim_segment, "log");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(victim.position + 10).unwrap();
        std::fs::write(seg_path(dir.path(), 999_999, "log"), b"").unwrap();

        let log =
            PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend.clone()).unwrap();
        let stats = log.stats().recovery;
        assert_eq!(
            stats.segments_dropped as usize,
            segments.len() - 2 + 1,
            "{name}"
        );
        assert_eq!(log.segment_count(), 2);
        for s in &segments[2..] {
            assert!(
                !seg_path(dir.path(), *s, "log").exists(),
                "{name}: segment {s} removed"
            );
        }
        let expected: Vec<Stored> = stored
            .iter()
            .take_while(|s| s.base < victim.base)
            .cloned()
            .collect();
        check_log(&rt, &log, &expected, name);
    }
}

/// `close` leaves the marker and the next open trusts the indexes (no
/// bytes scanned) and removes it; a dropped log leaves no marker and the
/// next open scans.
#[test]
fn log_clean_shutdown_skips_the_scan() {
    let rt = runtime();
    for (name, backend) in backends() {
        let mut rng = StdRng::seed_from_u64(7);
        let (dir, stored) = write_and_crash(&rt, backend.clone(), 30, &mut rng);
        let config = small_config(SEGMENT_BYTES);

        let log = PartitionLog::open(dir.path(), config.clone(), backend.clone()).unwrap();
        assert!(!log.stats().recovery.clean_shutdown, "{name}");
        assert!(
            log.stats().recovery.bytes_scanned > 0,
            "{name}: a crash is scanned"
        );
        rt.block_on(log.close()).unwrap();
        assert!(
            dir.path().join(CLEAN_SHUTDOWN_MARKER).exists(),
            "{name}: close leaves the marker"
        );

        let log = PartitionLog::open(dir.path(), config.clone(), backend.clone()).unwrap();
        let stats = log.stats().recovery;
        assert!(stats.clean_shutdown, "{name}");
        assert_eq!(stats.bytes_scanned, 0, "{name}: clean open reads no batch");
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_MARKER).exists(),
            "{name}: marker removed on open"
        );
        assert_eq!(read_all(&log, 1 << 20).len(), stored.len());
        assert_eq!(
            log.offset_for_timestamp(1_000 + 29).unwrap(),
            Some(stored[29].base)
        );
        let end = log.log_end_offset();
        let extra = rt
            .block_on(log.append(
                batch(2, 50, 9_000, Compression::None, 1),
                Durability::Written,
            ))
            .unwrap();
        assert_eq!(extra.base_offset, end);
        drop(log);

        let log = PartitionLog::open(dir.path(), config, backend.clone()).unwrap();
        assert!(
            !log.stats().recovery.clean_shutdown,
            "{name}: dropped log is a crash"
        );
        assert!(log.stats().recovery.bytes_scanned > 0);
        assert_eq!(log.log_end_offset(), end + 2);
        let all: Vec<Bytes> = read_all(&log, 1 << 20)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert_eq!(all.len(), stored.len() + 1);
        for (b, s) in all.iter().zip(&stored) {
            assert_eq!(&b[..], &s.bytes[..]);
        }
    }
}
