//! The fixed batch header: read and patched in place, never deserialized.
//!
//! Every field is little-endian at a fixed offset; offsets are derived from
//! each other so the table in ARCHITECTURE.md and this code cannot drift.
//! The fields the broker writes (base offset, leader epoch) sit before the
//! CRC'd region, so stamping them never invalidates the checksum.

use super::BatchError;
use crate::limits::{BATCH_BYTES_MAX, BATCH_RECORDS_MAX};

/// `b"RILL"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"RILL");
/// The only batch format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

pub const OFFSET_BASE_OFFSET: usize = 0;
pub const OFFSET_BATCH_LENGTH: usize = OFFSET_BASE_OFFSET + 8;
pub const OFFSET_LEADER_EPOCH: usize = OFFSET_BATCH_LENGTH + 4;
pub const OFFSET_MAGIC: usize = OFFSET_LEADER_EPOCH + 4;
pub const OFFSET_CRC: usize = OFFSET_MAGIC + 4;
/// First byte covered by the CRC: everything from here to the batch end.
pub const CRC_START: usize = OFFSET_CRC + 4;
pub const OFFSET_FORMAT_VERSION: usize = CRC_START;
pub const OFFSET_CODEC: usize = OFFSET_FORMAT_VERSION + 1;
pub const OFFSET_HEADER_LENGTH: usize = OFFSET_CODEC + 1;
pub const OFFSET_ATTRIBUTES: usize = OFFSET_HEADER_LENGTH + 2;
pub const OFFSET_PRODUCER_EPOCH: usize = OFFSET_ATTRIBUTES + 2;
pub const OFFSET_RECORD_COUNT: usize = OFFSET_PRODUCER_EPOCH + 2;
pub const OFFSET_LAST_OFFSET_DELTA: usize = OFFSET_RECORD_COUNT + 4;
pub const OFFSET_FIRST_TIMESTAMP: usize = OFFSET_LAST_OFFSET_DELTA + 4;
pub const OFFSET_MAX_TIMESTAMP: usize = OFFSET_FIRST_TIMESTAMP + 8;
pub const OFFSET_PRODUCER_ID: usize = OFFSET_MAX_TIMESTAMP + 8;
pub const OFFSET_BASE_SEQUENCE: usize = OFFSET_PRODUCER_ID + 8;
pub const OFFSET_PAYLOAD_LENGTH: usize = OFFSET_BASE_SEQUENCE + 4;
/// Size of the fixed header; the payload starts here.
pub const HEADER_LEN: usize = OFFSET_PAYLOAD_LENGTH + 4;

const _: () = assert!(HEADER_LEN == 72);

/// Attribute bit of a *control batch*: a record the replication layer
/// writes for itself (a new leader's blank entry, a membership change)
/// rather than one a producer sent. It holds exactly one record whose value
/// is the control payload; consumers skip such batches. Every other
/// attribute bit is reserved and written as 0. The bit lies inside the
/// CRC'd region: it is set when the batch is built, never stamped later.
pub const ATTR_CONTROL: u16 = 1 << 0;

/// Compression codec of the payload, stored in the header's codec byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    #[default]
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(v: u8) -> Result<Self, BatchError> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCodec(other)),
        }
    }
}

/// Names of the header fields, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordBatchHeaderField {
    BatchLength,
    HeaderLength,
    PayloadLength,
    RecordCount,
    LastOffsetDelta,
    /// `base_offset + record_count` would not fit in a u64.
    BaseOffset,
}

/// The decoded fixed header of one batch. Cheap to produce: a handful of
/// little-endian loads, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Total bytes of the batch, header included.
    pub batch_length: u32,
    pub leader_epoch: u32,
    pub magic: u32,
    pub crc: u32,
    pub format_version: u8,
    pub codec: Compression,
    pub header_length: u16,
    pub attributes: u16,
    pub producer_epoch: i16,
    pub record_count: u32,
    pub last_offset_delta: u32,
    /// Milliseconds since the Unix epoch.
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub base_sequence: i32,
    pub payload_length: u32,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl BatchHeader {
    /// Decodes and checks the fixed header found at the start of `bytes`.
    ///
    /// Checks magic, version, codec and that the length fields agree with
    /// each other and with the limits. It does not check that `bytes` holds
    /// the whole batch, nor the CRC: see [`super::BatchView`] for that.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let magic = le_u32(bytes, OFFSET_MAGIC);
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        let format_version = bytes[OFFSET_FORMAT_VERSION];
        if format_version != FORMAT_VERSION {
            return Err(BatchError::UnsupportedVersion(format_version));
        }
        let header = BatchHeader {
            base_offset: le_u64(bytes, OFFSET_BASE_OFFSET),
            batch_length: le_u32(bytes, OFFSET_BATCH_LENGTH),
            leader_epoch: le_u32(bytes, OFFSET_LEADER_EPOCH),
            magic,
            crc: le_u32(bytes, OFFSET_CRC),
            format_version,
            codec: Compression::from_u8(bytes[OFFSET_CODEC])?,
            header_length: le_u16(bytes, OFFSET_HEADER_LENGTH),
            attributes: le_u16(bytes, OFFSET_ATTRIBUTES),
            producer_epoch: le_u16(bytes, OFFSET_PRODUCER_EPOCH) as i16,
            record_count: le_u32(bytes, OFFSET_RECORD_COUNT),
            last_offset_delta: le_u32(bytes, OFFSET_LAST_OFFSET_DELTA),
            first_timestamp: le_u64(bytes, OFFSET_FIRST_TIMESTAMP) as i64,
            max_timestamp: le_u64(bytes, OFFSET_MAX_TIMESTAMP) as i64,
            producer_id: le_u64(bytes, OFFSET_PRODUCER_ID) as i64,
            base_sequence: le_u32(bytes, OFFSET_BASE_SEQUENCE) as i32,
            payload_length: le_u32(bytes, OFFSET_PAYLOAD_LENGTH),
        };
        header.check_lengths()?;
        Ok(header)
    }

    fn check_lengths(&self) -> Result<(), BatchError> {
        use RecordBatchHeaderField as F;
        if usize::from(self.header_length) != HEADER_LEN {
            return Err(BatchError::BadLength {
                field: F::HeaderLength,
                value: u64::from(self.header_length),
            });
        }
        let total = self.batch_length as usize;
        if !(HEADER_LEN..=BATCH_BYTES_MAX).contains(&total) {
            return Err(BatchError::BadLength {
                field: F::BatchLength,
                value: u64::from(self.batch_length),
            });
        }
        if self.payload_length as usize != total - HEADER_LEN {
            return Err(BatchError::BadLength {
                field: F::PayloadLength,
                value: u64::from(self.payload_length),
            });
        }
        if self.record_count == 0 || self.record_count > BATCH_RECORDS_MAX {
            return Err(BatchError::BadLength {
                field: F::RecordCount,
                value: u64::from(self.record_count),
            });
        }
        // Offsets are dense: a batch of n records spans exactly n offsets.
        if self.last_offset_delta != self.record_count - 1 {
            return Err(BatchError::BadLength {
                field: F::LastOffsetDelta,
                value: u64::from(self.last_offset_delta),
            });
        }
        // Bytes from outside may carry any base offset; rejecting one whose
        // last offset would overflow lets `next_offset` use plain addition.
        if self
            .base_offset
            .checked_add(u64::from(self.record_count))
            .is_none()
        {
            return Err(BatchError::BadLength {
                field: F::BaseOffset,
                value: self.base_offset,
            });
        }
        Ok(())
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Offset one past the last record: where the next batch starts.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Whether an idempotent producer wrote the batch: its producer id,
    /// epoch and base sequence are then set (`producer_id >= 0`).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// Whether this is a control batch ([`ATTR_CONTROL`]): written by the
    /// replication layer, not by a producer.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Sequence number of the batch's last record.
    pub fn last_sequence(&self) -> i32 {
        sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + n` in the sequence space of an idempotent producer: sequences
/// run over `0..=i32::MAX` and wrap to 0 (Kafka's rule), so a long-lived
/// producer never runs out. A negative `seq` (no sequence) is kept as is.
pub fn sequence_add(seq: i32, n: u32) -> i32 {
    if seq < 0 {
        return seq;
    }
    let space = i64::from(i32::MAX) + 1;
    // Both fit: the result lies in 0..=i32::MAX.
    ((i64::from(seq) + i64::from(n)) % space) as i32
}

/// Writes an idempotent producer's id, epoch and base sequence into a
/// finished batch and recomputes its CRC (the fields lie inside the CRC'd
/// region). The producer uses it when a batch built under one epoch must
/// be sent under another.
///
/// # Panics
/// As [`stamp_base_offset`].
pub fn stamp_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_le_bytes());
    batch[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2]
        .copy_from_slice(&producer_epoch.to_le_bytes());
    batch[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4]
        .copy_from_slice(&base_sequence.to_le_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

/// CRC32C of the checksummed region of a whole batch (`bytes` is exactly
/// one batch).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or(&[]))
}

/// Writes the base offset into a batch in place. The CRC stays valid.
///
/// # Panics
/// If `batch` is shorter than the header; callers stamp only batches that
/// passed [`BatchHeader::parse`].
pub fn stamp_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
}

/// Writes the partition leader epoch into a batch in place. The CRC stays valid.
///
/// # Panics
/// As [`stamp_base_offset`].
pub fn stamp_leader_epoch(batch: &mut [u8], leader_epoch: u32) {
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_le_bytes());
}
