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

/// Default largest frame (the bytes after the 4-byte length prefix) a peer
/// accepts. Config may lower or raise it; decoders take the effective value
/// as a parameter. It must hold one maximal batch plus the request around it.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

const _: () = assert!(FRAME_BYTES_MAX_DEFAULT > BATCH_BYTES_MAX);

/// Largest item count any wire array may claim. Far above any real request
/// (a million topics, or a million partitions of one topic), yet it bounds
/// the allocation a hostile count can cause together with the check against
/// the bytes actually present.
pub const WIRE_ARRAY_ITEMS_MAX: usize = 1 << 20;

/// Largest `string` on the wire: its length prefix is a `u16`.
pub const WIRE_STRING_BYTES_MAX: usize = u16::MAX as usize;

/// Largest non-null `nullable string` on the wire: its length prefix is an
/// `i16`, with -1 meaning null.
pub const WIRE_NULLABLE_STRING_BYTES_MAX: usize = i16::MAX as usize;

/// Largest inter-broker frame (the bytes after its length prefix). It must
/// hold an append carrying one maximal batch, with the envelope and the
/// consensus message around it.
pub const PEER_FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;

const _: () = assert!(PEER_FRAME_BYTES_MAX > BATCH_BYTES_MAX + 1024 * 1024);

/// Batch bytes one replication append carries at most (a single larger
/// batch still goes alone): appends are pipelined in pieces this size, so
/// a lagging follower never gets a message of hundreds of MiB and one
/// group's catch-up does not hold the pair's connection for long.
pub const PEER_APPEND_BYTES_MAX: usize = 8 * 1024 * 1024;
