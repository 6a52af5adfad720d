//! Append and read: batches come back byte-for-byte (apart from the stamped
//! base offset) across segment rolls, offsets are dense, reads honour
//! `max_bytes` at batch granularity, out-of-range offsets are refused, and
//! rolls, retention and timestamp lookup work — on every real backend.

use bytes::BytesMut;
use proptest::prelude::*;
use rill_protocol::batch::Compression;
use rill_storage::{Durability, LogConfig, PartitionLog, StorageError};

use super::log_support::{
    backends, batch, now_ms, read_all, runtime, same_batch, segment_files, small_config,
    split_batches, tempdir,
};

#[derive(Debug, Clone)]
struct BatchSpec {
    records: usize,
    value_len: usize,
    zstd: bool,
}

fn spec() -> impl Strategy<Value = BatchSpec> {
    (1usize..6, 0usize..1500, any::<bool>()).prop_map(|(records, value_len, zstd)| BatchSpec {
        records,
        value_len,
        zstd,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random batches (both codecs, random sizes) across rolls of small
    /// segments read back equal, densely, with any `max_bytes`.
    #[test]
    fn log_roundtrip_across_rolls(
        specs in prop::collection::vec(spec(), 1..40),
        segment_bytes in 4096u64..65536,
        max_bytes in 1usize..20_000,
    ) {
        let rt = runtime();
        for (name, backend) in backends() {
            let dir = tempdir();
            let log = PartitionLog::open(dir.path(), small_config(segment_bytes), backend).unwrap();
            let mut sent = Vec::new();
            let mut next = 0u64;
            for (i, s) in specs.iter().enumerate() {
                let codec = if s.zstd { Compression::Zstd } else { Compression::None };
                let b = batch(s.records, s.value_len, 1_000 + i as i64, codec, i as u64);
                let info = rt.block_on(log.append(b.clone(), Durability::Written)).unwrap();
                prop_assert_eq!(info.base_offset, next, "{}", name);
                prop_assert_eq!(info.last_offset, next + s.records as u64 - 1);
                next += s.records as u64;
                sent.push((info.base_offset, b));
            }
            prop_assert_eq!(log.log_end_offset(), next);
            let total: u64 = sent.iter().map(|(_, b)| b.len() as u64).sum();
            prop_assert_eq!(log.size_bytes(), total);
            let read = read_all(&log, max_bytes);
            prop_assert_eq!(read.len(), sent.len());
            for ((h, stored), (base, b)) in read.iter().zip(&sent) {
                prop_assert_eq!(h.base_offset, *base);
                prop_assert!(same_batch(stored, b, *base), "{}: batch at {} differs", name, base);
            }
            // Every offset, not only batch bases, finds its batch.
            for offset in 0..next {
                let bytes = log.read(offset, 1).unwrap();
                let batches = split_batches(&bytes);
                prop_assert_eq!(batches.len(), 1);
                let h = &batches[0].0;
                prop_assert!(h.base_offset <= offset && offset < h.next_offset());
            }
        }
    }
}

fn append_n(
    log: &PartitionLog,
    rt: &tokio::runtime::Runtime,
    n: usize,
    value_len: usize,
    ts: i64,
) -> Vec<BytesMut> {
    (0..n)
        .map(|i| {
            let b = batch(1 + i % 3, value_len, ts, Compression::None, i as u64);
            rt.block_on(log.append(b.clone(), Durability::Written))
                .unwrap();
            b
        })
        .collect()
}

/// Reads below the start or past the end are refused; at the end they are
/// empty; a tiny `max_bytes` still returns exactly one whole batch.
#[test]
fn log_read_bounds_and_max_bytes() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log = PartitionLog::open(dir.path(), small_config(1 << 20), backend).unwrap();
        let sent = append_n(&log, &rt, 10, 300, 1_000);
        let end = log.log_end_offset();
        assert!(
            matches!(
                log.read(end + 1, 1 << 20),
                Err(StorageError::OffsetOutOfRange { requested, log_start: 0, log_end }) if requested == end + 1 && log_end == end
            ),
            "{name}"
        );
        assert!(log.read(end, 1 << 20).unwrap().is_empty());
        let one = log.read(0, 1).unwrap();
        assert_eq!(one.len(), sent[0].len(), "{name}: exactly the first batch");
        let two = log.read(0, sent[0].len() + sent[1].len()).unwrap();
        assert_eq!(split_batches(&two).len(), 2);
        let short = log.read(0, sent[0].len() + sent[1].len() - 1).unwrap();
        assert_eq!(
            split_batches(&short).len(),
            1,
            "{name}: never a partial batch"
        );
    }
}

/// A batch that would overflow the segment rolls it; no segment file grows
/// past `segment_bytes` with more than one batch in it.
#[test]
fn log_roll_by_size() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let segment_bytes = 4096;
        let log = PartitionLog::open(dir.path(), small_config(segment_bytes), backend).unwrap();
        append_n(&log, &rt, 40, 900, 1_000);
        assert!(
            log.segment_count() >= 8,
            "{name}: {} segments",
            log.segment_count()
        );
        let logs = segment_files(dir.path());
        assert_eq!(logs.len(), log.segment_count());
        assert_eq!(read_all(&log, 1 << 20).len(), 40);
        // Direct I/O reserves room past the active segment's end until the
        // log closes; what stays on disk must hold to the limit.
        rt.block_on(log.close()).unwrap();
        for p in &logs {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(
                len <= segment_bytes,
                "{name}: {} is {len} bytes",
                p.display()
            );
        }
    }
}

/// `segment_ms` rolls the active segment on `tick` once its first append
/// is older than that (wall clock, injected), and not before.
#[test]
fn log_roll_by_time_on_tick() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let config = LogConfig {
            segment_ms: Some(60_000),
            ..small_config(1 << 20)
        };
        let log = PartitionLog::open(dir.path(), config, backend).unwrap();
        let t0 = now_ms();
        append_n(&log, &rt, 3, 100, t0);
        log.tick(t0 + 30_000);
        assert_eq!(log.segment_count(), 1, "{name}: too young to roll");
        log.tick(t0 + 61_000);
        assert_eq!(log.segment_count(), 2, "{name}: rolled by age");
        log.tick(t0 + 120_000);
        assert_eq!(
            log.segment_count(),
            2,
            "{name}: an empty segment never rolls"
        );
        let info = rt
            .block_on(log.append(batch(1, 10, t0, Compression::None, 9), Durability::Written))
            .unwrap();
        assert_eq!(
            info.position,
            Some(0),
            "{name}: appended into the new segment"
        );
        assert_eq!(read_all(&log, 1 << 20).len(), 4);
    }
}

/// Time retention deletes closed segments whose newest batch is too old,
/// oldest first, never the active one; the start moves and older offsets
/// become out of range.
#[test]
fn log_retention_by_time() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let config = LogConfig {
            retention_ms: Some(10_000),
            ..small_config(4096)
        };
        let log = PartitionLog::open(dir.path(), config, backend).unwrap();
        let now = 1_000_000;
        // One ~3 KiB batch per segment, timestamps: old, old, new, old(active).
        for (i, ts) in [now - 50_000, now - 20_000, now - 1_000, now - 90_000]
            .into_iter()
            .enumerate()
        {
            rt.block_on(log.append(
                batch(2, 3000, ts, Compression::None, i as u64),
                Durability::Written,
            ))
            .unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        let size_before = log.size_bytes();
        let out = log.enforce_retention(now).unwrap();
        assert_eq!(
            out.segments_deleted, 2,
            "{name}: the two old segments before a new one"
        );
        assert_eq!(out.log_start_offset, 4);
        assert_eq!(log.log_start_offset(), 4);
        assert_eq!(log.size_bytes(), size_before - out.bytes_deleted);
        assert!(matches!(
            log.read(3, 100),
            Err(StorageError::OffsetOutOfRange { log_start: 4, .. })
        ));
        assert_eq!(split_batches(&log.read(4, 1).unwrap())[0].0.base_offset, 4);
        assert!(!dir.path().join(format!("{:020}.log", 0)).exists());
        assert!(!dir.path().join(format!("{:020}.index", 2)).exists());
        // Much later: everything closed is old, the active segment stays.
        let out = log.enforce_retention(now + 1_000_000).unwrap();
        assert_eq!(out.segments_deleted, 1);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), 6);
        assert_eq!(read_all(&log, 1 << 20).len(), 1);
    }
}

/// Size retention deletes the oldest closed segments while the rest is at
/// least `retention_bytes`.
#[test]
fn log_retention_by_size() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let config = LogConfig {
            retention_bytes: Some(7000),
            ..small_config(4096)
        };
        let log = PartitionLog::open(dir.path(), config, backend).unwrap();
        let mut seg = 0;
        for i in 0..6 {
            let b = batch(1, 3000, 1_000, Compression::None, i);
            seg = b.len() as u64;
            rt.block_on(log.append(b, Durability::Written)).unwrap();
        }
        assert_eq!(log.segment_count(), 6);
        let out = log.enforce_retention(now_ms()).unwrap();
        // 6 segments of `seg` (~3.1 KiB) bytes; keep deleting while the
        // remainder stays >= 7000: down to 3 segments.
        let expect_left = 7000_u64.div_ceil(seg);
        assert_eq!(log.segment_count() as u64, expect_left, "{name}");
        assert_eq!(out.segments_deleted as u64, 6 - expect_left);
        assert_eq!(out.bytes_deleted, seg * (6 - expect_left));
        assert!(log.size_bytes() >= 7000);
        let again = log.enforce_retention(now_ms()).unwrap();
        assert_eq!(again.segments_deleted, 0);
    }
}

/// A replicated partition's retention in its two halves: `retention_cut`
/// names the start `enforce_retention` would leave and deletes nothing;
/// `delete_segments_below` deletes only whole segments below an offset;
/// `restart_at` drops everything and starts empty past the old end.
#[test]
fn log_retention_cut_delete_below_and_restart_at() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let config = LogConfig {
            retention_bytes: Some(7000),
            ..small_config(4096)
        };
        let log = PartitionLog::open(dir.path(), config, backend.clone()).unwrap();
        let mut bases = Vec::new();
        for i in 0..6 {
            let b = batch(1, 3000, 1_000, Compression::None, i);
            bases.push(
                rt.block_on(log.append(b, Durability::Written))
                    .unwrap()
                    .base_offset,
            );
        }
        assert_eq!(log.segment_count(), 6, "{name}");
        let cut = log.retention_cut(now_ms());
        assert_eq!(cut, bases[3], "{name}: keeps the last three segments");
        assert_eq!((log.segment_count(), log.log_start_offset()), (6, 0));
        // One batch of one record per segment: segment k is [k, k + 1).
        let out = log.delete_segments_below(bases[2]).unwrap();
        assert_eq!(out.segments_deleted, 2, "{name}");
        assert_eq!(log.log_start_offset(), bases[2]);
        assert!(log.read(bases[2], 1).is_ok());
        assert_eq!(
            log.delete_segments_below(bases[2])
                .unwrap()
                .segments_deleted,
            0
        );
        let out = log.delete_segments_below(cut).unwrap();
        assert_eq!((out.segments_deleted, log.log_start_offset()), (1, cut));
        assert_eq!(
            log.delete_segments_below(u64::MAX)
                .unwrap()
                .segments_deleted,
            2
        );
        assert_eq!(log.segment_count(), 1, "never the active segment");
        let end = log.log_end_offset();
        assert!(
            rt.block_on(log.restart_at(end - 1, None)).is_err(),
            "{name}: below the end"
        );
        rt.block_on(log.restart_at(end + 100, None)).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (end + 100, end + 100, 1)
        );
        assert!(log.read(end, 1).is_err());
        rt.block_on(log.close()).unwrap();
        let log = PartitionLog::open(dir.path(), small_config(4096), backend).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (end + 100, end + 100),
            "{name}: reopened"
        );
    }
}

/// `offset_for_timestamp` returns the base of the earliest batch whose max
/// timestamp reaches the target, as a linear search over what was sent.
#[test]
fn log_offset_for_timestamp() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log = PartitionLog::open(dir.path(), small_config(8192), backend).unwrap();
        // Mostly rising timestamps with some going back, across segments.
        let mut sent = Vec::new();
        for i in 0..60i64 {
            let ts = 10_000 + i * 100 - if i % 7 == 3 { 450 } else { 0 };
            let info = rt
                .block_on(log.append(
                    batch(1 + (i as usize) % 4, 400, ts, Compression::None, i as u64),
                    Durability::Written,
                ))
                .unwrap();
            sent.push((info.base_offset, ts));
        }
        assert!(log.segment_count() > 2);
        for target in (9_000..17_000).step_by(37) {
            let expected = sent.iter().find(|(_, ts)| *ts >= target).map(|(b, _)| *b);
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expected,
                "{name}: ts {target}"
            );
        }
    }
}

/// A batch whose bytes do not match its CRC, or that is larger than the
/// configured limit, is refused and takes no offset.
#[test]
fn log_rejects_invalid_batches() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let config = LogConfig {
            max_batch_bytes: 2048,
            ..small_config(1 << 20)
        };
        let log = PartitionLog::open(dir.path(), config, backend).unwrap();
        let mut bad = batch(2, 100, 1_000, Compression::None, 1);
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(
            matches!(
                rt.block_on(log.append(bad, Durability::Written)),
                Err(StorageError::InvalidBatch(_))
            ),
            "{name}"
        );
        let big = batch(1, 4000, 1_000, Compression::None, 2);
        assert!(matches!(
            rt.block_on(log.append(big, Durability::Written)),
            Err(StorageError::InvalidBatch(_))
        ));
        let mut trailing = batch(1, 10, 1_000, Compression::None, 3);
        trailing.extend_from_slice(b"junk");
        assert!(matches!(
            rt.block_on(log.append(trailing, Durability::Written)),
            Err(StorageError::InvalidBatch(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
        let info = rt
            .block_on(log.append(
                batch(1, 10, 1_000, Compression::None, 4),
                Durability::Written,
            ))
            .unwrap();
        assert_eq!(info.base_offset, 0);
    }
}

/// The watch channel publishes the log end after each append, and
/// `truncate_to` drops whole batches from the end and moves it back.
#[test]
fn log_subscribe_and_truncate() {
    let rt = runtime();
    for (name, backend) in backends() {
        let dir = tempdir();
        let log = PartitionLog::open(dir.path(), small_config(4096), backend).unwrap();
        let rx = log.subscribe();
        let sent = append_n(&log, &rt, 20, 500, 1_000);
        assert_eq!(*rx.borrow(), log.log_end_offset(), "{name}");
        let before = read_all(&log, 1 << 20);
        // Offsets of batch i: records 1 + i % 3. Cut inside a batch: the whole batch goes.
        let cut_batch = 12;
        let cut_base = before[cut_batch].0.base_offset;
        let inside = cut_base + u64::from(before[cut_batch].0.last_offset_delta);
        rt.block_on(log.truncate_to(inside)).unwrap();
        let expected_end = cut_base;
        assert_eq!(log.log_end_offset(), expected_end);
        assert_eq!(*rx.borrow(), expected_end);
        let after = read_all(&log, 1 << 20);
        assert_eq!(after.len(), cut_batch);
        for ((h, b), (h0, b0)) in after.iter().zip(&before) {
            assert_eq!(h, h0);
            assert_eq!(b, b0);
        }
        let info = rt
            .block_on(log.append(sent[0].clone(), Durability::Written))
            .unwrap();
        assert_eq!(info.base_offset, expected_end);
        assert_eq!(read_all(&log, 1 << 20).len(), cut_batch + 1);
        // Truncating to a segment base removes that segment entirely.
        rt.block_on(log.truncate_to(0)).unwrap();
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.segment_count(), 1);
        assert!(read_all(&log, 1 << 20).is_empty());
    }
}
