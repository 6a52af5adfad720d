//! Shared helpers of the log tests: backends, real batches, temp dirs, and a
//! reader that walks a whole log through `read`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rill_protocol::batch::header::OFFSET_BATCH_LENGTH;
use rill_protocol::batch::{BatchBuilder, BatchHeader, BatchView, Compression, HEADER_LEN};
use rill_storage::io::{open_backend, open_backend_with, IoBackend, IoBackendChoice};
use rill_storage::{FsyncPolicy, LogConfig, PartitionLog};
use tempfile::TempDir;

/// Every real backend the log must work on: std always, io_uring where the
/// kernel allows it (else "skipped uring: ..." on stderr), each also with
/// direct I/O (`O_DIRECT` segment writes).
pub fn backends() -> Vec<(&'static str, Arc<dyn IoBackend>)> {
    let mut out: Vec<(&'static str, Arc<dyn IoBackend>)> = vec![
        (
            "std",
            open_backend(IoBackendChoice::Std).expect("std backend"),
        ),
        (
            "std_direct",
            open_backend_with(IoBackendChoice::Std, 1, true).expect("std backend, direct"),
        ),
    ];
    match open_backend(IoBackendChoice::Uring) {
        Ok(b) => out.push(("uring", b)),
        Err(e) => eprintln!("skipped uring: {e}"),
    }
    match open_backend_with(IoBackendChoice::Uring, 1, true) {
        Ok(b) => out.push(("uring_direct", b)),
        Err(e) => eprintln!("skipped uring: {e}"),
    }
    out
}

pub fn std_backend() -> Arc<dyn IoBackend> {
    open_backend(IoBackendChoice::Std).expect("std backend")
}

/// End of the base offset field, the only bytes the log changes in a batch.
pub const BASE_END: usize = OFFSET_BATCH_LENGTH;

/// A temp dir under target/, on the build's real disk.
pub fn tempdir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Small segments and a dense index, nothing time-based: tests opt in.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        index_interval_bytes: 256,
        retention_ms: None,
        retention_bytes: None,
        fsync: FsyncPolicy::Never,
        max_batch_bytes: 1024 * 1024,
        ..LogConfig::default()
    }
}

/// A real batch of `records` records with values of `value_len` bytes
/// derived from `seed`, every record at `ts_ms`.
pub fn batch(
    records: usize,
    value_len: usize,
    ts_ms: i64,
    codec: Compression,
    seed: u64,
) -> BytesMut {
    let mut b = BatchBuilder::new(codec);
    for i in 0..records {
        let value: Vec<u8> = (0..value_len)
            .map(|j| (seed as usize).wrapping_mul(31).wrapping_add(i * 7 + j) as u8)
            .collect();
        let key = format!("k{seed}-{i}");
        b.push(ts_ms, Some(key.as_bytes()), &value, &[("h", b"v")]);
    }
    b.finish_into_mut().expect("valid batch")
}

/// Splits bytes returned by `read` into whole batches, checking each.
pub fn split_batches(mut bytes: &[u8]) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let view = BatchView::new(bytes).expect("read returned a whole valid batch");
        view.validate().expect("CRC of a served batch");
        let len = view.len();
        out.push((*view.header(), Bytes::copy_from_slice(&bytes[..len])));
        bytes = &bytes[len..];
    }
    out
}

/// Reads the whole log from its start through `read(offset, max_bytes)`,
/// checking offsets are dense; returns every batch.
pub fn read_all(log: &PartitionLog, max_bytes: usize) -> Vec<(BatchHeader, Bytes)> {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut out = Vec::new();
    while offset < end {
        let bytes = log.read(offset, max_bytes).expect("read inside the log");
        let batches = split_batches(&bytes);
        assert!(
            !batches.is_empty(),
            "read at {offset} < end {end} returned nothing"
        );
        for (h, b) in batches {
            assert_eq!(h.base_offset, offset, "offsets must be dense");
            offset = h.next_offset();
            out.push((h, b));
        }
    }
    assert!(log.read(end, max_bytes).expect("read at end").is_empty());
    out
}

/// Whether `stored` is `sent` with `base` stamped in: equal apart from the
/// base offset field, which holds `base`.
pub fn same_batch(stored: &[u8], sent: &[u8], base: u64) -> bool {
    stored.len() == sent.len()
        && stored.len() >= HEADER_LEN
        && stored[BASE_END..] == sent[BASE_END..]
        && stored[..BASE_END] == base.to_le_bytes()
}

/// Whether the log holds exactly `acked` (base offset, bytes sent), in
/// order, read back through `read`.
pub fn assert_holds_exactly(log: &PartitionLog, acked: &[(u64, BytesMut)], what: &str) {
    let stored = read_all(log, 32 * 1024);
    assert_eq!(stored.len(), acked.len(), "{what}: batch count");
    for ((h, bytes), (base, sent)) in stored.iter().zip(acked) {
        assert_eq!(h.base_offset, *base, "{what}: offsets");
        assert!(same_batch(bytes, sent, *base), "{what}: bytes at {base}");
    }
}

/// The segment (`.log`) files of `dir`, in offset order.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}
