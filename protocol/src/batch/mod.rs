//! The record batch: one layout on the wire and on disk.
//!
//! ```text
//! [ fixed header: HEADER_LEN bytes, little-endian ][ payload: payload_length bytes ]
//! ```
//! The payload is an rkyv archive (unaligned format) of the records,
//! zstd-compressed as a whole when the header's codec says so. The broker
//! only ever touches the header: it validates lengths and CRC, then stamps the
//! base offset. Consumers read records in place through [`BatchView`].
//!
//! A batch whose attributes carry [`ATTR_CONTROL`] is a *control batch*:
//! one record, written by the replication layer for its own entries (a
//! leader's blank entry, a membership change), built by
//! [`BatchBuilder::control`]. Consumers are to skip it.
//!
//! - [`header`]: the fixed header's layout, parse and in-place stamps.
//! - [`builder`]: [`BatchBuilder`], the producer side.
//! - [`records`]: the rkyv record type and the in-place record reader.
//! - [`view`]: [`BatchView`] (one batch: CRC, records) and [`BatchIter`]
//!   (batches back to back in a fetch response or segment read).

pub mod header;

pub use header::{
    compute_crc, sequence_add, stamp_base_offset, stamp_leader_epoch, stamp_producer, BatchHeader,
    Compression, RecordBatchHeaderField, ATTR_CONTROL, HEADER_LEN,
};

/// What can be wrong with bytes that claim to be a batch.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch truncated: needed {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("bad batch magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported batch format version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    #[error("batch header field {field:?} has invalid value {value}")]
    BadLength {
        field: RecordBatchHeaderField,
        value: u64,
    },
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("batch payload is not a valid record archive: {0}")]
    BadArchive(String),
    #[error("batch payload failed to decompress: {0}")]
    Decompress(String),
    #[error("batch is too large: {size} bytes, limit {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("batch holds no records")]
    Empty,
    #[error("batch payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("batch header claims {header} records, payload archive holds {archive}")]
    RecordCountMismatch { header: u32, archive: usize },
    #[error("record {index} has offset delta {offset_delta}; offsets in a batch must be dense")]
    NonDenseOffsets { index: usize, offset_delta: u32 },
    #[error("records could not be serialized: {0}")]
    Encode(String),
}

pub mod builder;
pub mod records;
pub mod view;

pub use builder::{BatchBuilder, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, ZSTD_LEVEL};
pub use records::{
    ArchivedRecord, ArchivedRecordHeader, ArchivedRecords, Record, RecordHeader, RecordIter,
    RecordRef, Records,
};
pub use view::{BatchIter, BatchView};
