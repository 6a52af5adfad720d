//! Limits shared by every decoder: checked before any allocation, so that a
//! hostile length prefix costs nothing.

/// Largest record batch accepted anywhere (producer, broker, storage).
/// A batch is appended as one write, so this also bounds one write's size.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest number of records one batch may claim. Bounds the work a
/// consumer does per batch and keeps `last_offset_delta` far from `u32::MAX`.
pub const BATCH_RECORDS_MAX: u32 = 1 << 24;

/// Largest decompressed payload a zstd batch may expand to; guards against
/// decompression bombs.
pub const BATCH_DECOMPRESSED_BYTES_MAX: usize = 256 * 1024 * 1024;

const _: () = assert!(BATCH_DECOMPRESSED_BYTES_MAX >= BATCH_BYTES_MAX);
