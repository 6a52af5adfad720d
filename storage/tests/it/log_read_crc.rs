//! A batch that goes bad on disk after it was written (a byte flipped in a
//! closed segment while the log is open) is never served: a read starting
//! at it is `Corrupt`, a read that would pass it stops before it, and the
//! log counts it — on both I/O backends.

use std::os::unix::fs::FileExt;

use rill_protocol::batch::{BatchHeader, Compression, HEADER_LEN};
use rill_storage::{Durability, PartitionLog, StorageError};

use crate::log_support::{backends, batch, now_ms, runtime, small_config, split_batches, tempdir};

/// Segments of a few batches each, so the bad one sits in a closed segment.
const SEGMENT_BYTES: u64 = 8 * 1024;
const BATCHES: u64 = 12;

#[test]
fn a_batch_that_rots_on_disk_is_never_served() {
    for (name, backend) in backends() {
        let dir = tempdir();
        runtime().block_on(async {
            let log =
                PartitionLog::open(dir.path(), small_config(SEGMENT_BYTES), backend).expect("open");
            let mut infos = Vec::new();
            for seed in 0..BATCHES {
                let b = batch(4, 500, now_ms(), Compression::None, seed);
                infos.push(log.append(b, Durability::Written).await.expect("append"));
            }
            assert!(log.segment_count() > 2, "{name}: several segments");
            // The second batch of the first segment: closed, not the first.
            let bad = infos.get(1).copied().expect("two batches");
            let path = dir.path().join(format!("{:020}.log", 0));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open segment");
            let bad_position = bad.position.expect("written");
            let at = bad_position + HEADER_LEN as u64 + 10;
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, at).expect("read byte");
            file.write_all_at(&[byte[0] ^ 0x40], at).expect("flip byte");

            // From the start: only the good first batch comes back.
            let bytes = log.read(0, 1 << 20).expect("read from 0");
            let served = split_batches(&bytes);
            assert_eq!(served.len(), 1, "{name}: stops before the bad batch");
            // At the bad batch: refused.
            let err = log.read(bad.base_offset, 1 << 20).expect_err("bad batch");
            assert!(
                matches!(err, StorageError::Corrupt { position, .. } if position == bad_position),
                "{name}: {err}"
            );
            // After it: served again.
            let after = infos.get(2).copied().expect("three batches");
            let bytes = log.read(after.base_offset, 1 << 20).expect("read after");
            let first = split_batches(&bytes);
            assert_eq!(
                first.first().map(|(h, _)| h.base_offset),
                Some(after.base_offset),
                "{name}: batches after the bad one are intact"
            );
            assert!(BatchHeader::parse(&bytes).is_ok());
            assert_eq!(log.stats().corrupt_reads, 2, "{name}: both reads counted");
        });
    }
}
