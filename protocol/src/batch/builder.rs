//! Building batches on the producer side.
//!
//! The builder keeps records as plain Rust values and serializes them once,
//! in [`BatchBuilder::finish`]: rkyv archives a `Vec<Record>` in one pass,
//! zstd (if asked) compresses the archive as a whole, and the fixed header
//! with its CRC is written in front. It tracks the size the batch will have
//! so a producer can cut batches at its `batch_size` before finishing.

use std::mem::size_of;

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{
    compute_crc, Compression, FORMAT_VERSION, HEADER_LEN, MAGIC, OFFSET_ATTRIBUTES,
    OFFSET_BASE_OFFSET, OFFSET_BASE_SEQUENCE, OFFSET_BATCH_LENGTH, OFFSET_CODEC, OFFSET_CRC,
    OFFSET_FIRST_TIMESTAMP, OFFSET_FORMAT_VERSION, OFFSET_HEADER_LENGTH, OFFSET_LAST_OFFSET_DELTA,
    OFFSET_LEADER_EPOCH, OFFSET_MAGIC, OFFSET_MAX_TIMESTAMP, OFFSET_PAYLOAD_LENGTH,
    OFFSET_PRODUCER_EPOCH, OFFSET_PRODUCER_ID, OFFSET_RECORD_COUNT,
};
use super::records::{ArchivedRecord, ArchivedRecordHeader, ArchivedRecords, Record, RecordHeader};
use super::{BatchError, RecordBatchHeaderField};
use crate::limits::{BATCH_BYTES_MAX, BATCH_DECOMPRESSED_BYTES_MAX, BATCH_RECORDS_MAX};

/// zstd level for compressed batches. Level 1 is zstd's fastest standard
/// level: producers compress on their send path, and batches of similar
/// records already compress well at low levels.
pub const ZSTD_LEVEL: i32 = 1;

/// Kafka's "no producer" value for the producer id, epoch and sequence fields.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// Accumulates records and finishes them into one batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<Record>,
    first_timestamp: i64,
    max_timestamp: i64,
    /// Size of the uncompressed archive the records will serialize to (an
    /// upper bound: short strings are stored inline and need less).
    archive_bytes: usize,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new(Compression::None)
    }
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            records: Vec::new(),
            first_timestamp: 0,
            max_timestamp: 0,
            archive_bytes: size_of::<ArchivedRecords>(),
        }
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Appends a record. Limits are checked by [`BatchBuilder::finish`];
    /// producers keep batches small by watching [`BatchBuilder::estimated_size`].
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) {
        if self.records.is_empty() {
            self.first_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        }
        // Saturating: the record count limit is checked in `finish`, and a
        // count this large fails it long before any real memory runs out.
        let offset_delta = u32::try_from(self.records.len()).unwrap_or(u32::MAX);
        let headers: Vec<RecordHeader> = headers
            .iter()
            .map(|&(name, value)| RecordHeader {
                name: name.to_owned(),
                value: value.to_vec(),
            })
            .collect();
        self.archive_bytes = self
            .archive_bytes
            .saturating_add(archived_size(key, value, &headers));
        self.records.push(Record {
            offset_delta,
            timestamp_delta: timestamp_ms.wrapping_sub(self.first_timestamp),
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            headers,
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Bytes the finished batch will take, header included, before
    /// compression: exact up to inline short strings, and an upper bound for
    /// zstd batches. Producers cut a batch when this reaches `batch_size`.
    pub fn estimated_size(&self) -> usize {
        HEADER_LEN.saturating_add(self.archive_bytes)
    }

    /// Serializes, compresses and frames the records into one batch.
    pub fn finish(self) -> Result<Bytes, BatchError> {
        self.finish_into_mut().map(BytesMut::freeze)
    }

    /// As [`BatchBuilder::finish`], but mutable so the broker can stamp the
    /// base offset and leader epoch in place without a copy.
    pub fn finish_into_mut(self) -> Result<BytesMut, BatchError> {
        if self.records.is_empty() {
            return Err(BatchError::Empty);
        }
        let record_count = u32::try_from(self.records.len())
            .ok()
            .filter(|&n| n <= BATCH_RECORDS_MAX)
            .ok_or(BatchError::BadLength {
                field: RecordBatchHeaderField::RecordCount,
                value: self.records.len() as u64,
            })?;
        // Checked before serializing so an oversized batch costs no
        // allocation; the estimate is an upper bound of the archive size.
        let archive_limit = match self.compression {
            Compression::None => BATCH_BYTES_MAX - HEADER_LEN,
            Compression::Zstd => BATCH_DECOMPRESSED_BYTES_MAX,
        };
        if self.archive_bytes > archive_limit {
            return Err(BatchError::TooLarge {
                size: self.archive_bytes,
                limit: archive_limit,
            });
        }
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&self.records)
            .map_err(|e| BatchError::Encode(e.to_string()))?;
        let compressed;
        let payload: &[u8] = match self.compression {
            Compression::None => &archive,
            Compression::Zstd => {
                compressed = zstd::bulk::compress(&archive, ZSTD_LEVEL)
                    .map_err(|e| BatchError::Encode(format!("zstd: {e}")))?;
                &compressed
            }
        };
        let batch_length = HEADER_LEN + payload.len();
        if batch_length > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge {
                size: batch_length,
                limit: BATCH_BYTES_MAX,
            });
        }
        let header = HeaderFields {
            codec: self.compression,
            record_count,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            // Both fit: `batch_length <= BATCH_BYTES_MAX`, which is < u32::MAX.
            payload_length: payload.len() as u32,
            batch_length: batch_length as u32,
        };
        let mut batch = BytesMut::with_capacity(batch_length);
        batch.put_slice(&header.encode());
        batch.put_slice(payload);
        let crc = compute_crc(&batch);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(batch)
    }
}

const _: () = assert!(BATCH_BYTES_MAX <= u32::MAX as usize);

/// Archived bytes one record adds to the payload.
fn archived_size(key: Option<&[u8]>, value: &[u8], headers: &[RecordHeader]) -> usize {
    let headers_bytes: usize = headers
        .iter()
        .map(|h| size_of::<ArchivedRecordHeader>() + h.name.len() + h.value.len())
        .sum();
    size_of::<ArchivedRecord>() + key.map_or(0, <[u8]>::len) + value.len() + headers_bytes
}

/// The header fields the builder chooses; the rest are constants or are
/// stamped later by the broker (base offset, leader epoch start at 0).
struct HeaderFields {
    codec: Compression,
    record_count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    payload_length: u32,
    batch_length: u32,
}

impl HeaderFields {
    /// The header with a zero CRC, which is written once the payload is in place.
    fn encode(&self) -> [u8; HEADER_LEN] {
        fn put<const N: usize>(h: &mut [u8; HEADER_LEN], at: usize, bytes: [u8; N]) {
            h[at..at + N].copy_from_slice(&bytes);
        }
        let mut h = [0u8; HEADER_LEN];
        put(&mut h, OFFSET_BASE_OFFSET, 0u64.to_le_bytes());
        put(&mut h, OFFSET_BATCH_LENGTH, self.batch_length.to_le_bytes());
        put(&mut h, OFFSET_LEADER_EPOCH, 0u32.to_le_bytes());
        put(&mut h, OFFSET_MAGIC, MAGIC.to_le_bytes());
        put(&mut h, OFFSET_CRC, 0u32.to_le_bytes());
        put(&mut h, OFFSET_FORMAT_VERSION, [FORMAT_VERSION]);
        put(&mut h, OFFSET_CODEC, [self.codec as u8]);
        put(
            &mut h,
            OFFSET_HEADER_LENGTH,
            (HEADER_LEN as u16).to_le_bytes(),
        );
        put(&mut h, OFFSET_ATTRIBUTES, 0u16.to_le_bytes());
        put(
            &mut h,
            OFFSET_PRODUCER_EPOCH,
            self.producer_epoch.to_le_bytes(),
        );
        put(&mut h, OFFSET_RECORD_COUNT, self.record_count.to_le_bytes());
        put(
            &mut h,
            OFFSET_LAST_OFFSET_DELTA,
            (self.record_count - 1).to_le_bytes(),
        );
        put(
            &mut h,
            OFFSET_FIRST_TIMESTAMP,
            self.first_timestamp.to_le_bytes(),
        );
        put(
            &mut h,
            OFFSET_MAX_TIMESTAMP,
            self.max_timestamp.to_le_bytes(),
        );
        put(&mut h, OFFSET_PRODUCER_ID, self.producer_id.to_le_bytes());
        put(
            &mut h,
            OFFSET_BASE_SEQUENCE,
            self.base_sequence.to_le_bytes(),
        );
        put(
            &mut h,
            OFFSET_PAYLOAD_LENGTH,
            self.payload_length.to_le_bytes(),
        );
        h
    }
}

const _: () = assert!(HEADER_LEN <= u16::MAX as usize);
