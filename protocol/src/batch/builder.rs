//! Building batches on the producer side.
//!
//! The builder copies each record's key and value into an arena of large
//! chunks (no allocation per record) and serializes them once, in
//! [`BatchBuilder::finish`]: rkyv archives the records, as a `Vec<Record>`
//! archives (same `ArchivedRecord` type, same bytes), in one pass,
//! zstd (if asked) compresses the archive as a whole, and the fixed header
//! with its CRC is written in front. It tracks the size the batch will have
//! so a producer can cut batches at its `batch_size` before finishing.

use std::mem::size_of;

use bytes::{Bytes, BytesMut};
use rkyv::rancor::Fallible;
use rkyv::ser::{Allocator, Writer};
use rkyv::vec::{ArchivedVec, VecResolver};
use rkyv::{Archive, Place, Serialize};

use super::header::{
    compute_crc, Compression, ATTR_CONTROL, FORMAT_VERSION, HEADER_LEN, MAGIC, OFFSET_ATTRIBUTES,
    OFFSET_BASE_OFFSET, OFFSET_BASE_SEQUENCE, OFFSET_BATCH_LENGTH, OFFSET_CODEC, OFFSET_CRC,
    OFFSET_FIRST_TIMESTAMP, OFFSET_FORMAT_VERSION, OFFSET_HEADER_LENGTH, OFFSET_LAST_OFFSET_DELTA,
    OFFSET_LEADER_EPOCH, OFFSET_MAGIC, OFFSET_MAX_TIMESTAMP, OFFSET_PAYLOAD_LENGTH,
    OFFSET_PRODUCER_EPOCH, OFFSET_PRODUCER_ID, OFFSET_RECORD_COUNT,
};
use super::records::{ArchivedRecord, ArchivedRecordHeader, ArchivedRecords, RecordHeader};
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

/// Size of one arena chunk. Large enough that a 1 MiB batch of 1 KiB
/// records takes 16 allocations instead of 1,000; a larger key or value
/// gets a chunk of its own size.
const ARENA_CHUNK_BYTES: usize = 64 * 1024;

/// Accumulates records and finishes them into one batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: u16,
    records: Vec<PendingRecord>,
    arena: Arena,
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
            attributes: 0,
            records: Vec::new(),
            arena: Arena::default(),
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

    /// A finished control batch ([`ATTR_CONTROL`]): one uncompressed record,
    /// no key, no headers, no producer, whose value is `payload`.
    ///
    /// The replication layer writes its own entries (a leader's blank
    /// entry, a membership change) this way, so they sit in the partition
    /// log between data batches and consumers can tell them apart. Every
    /// replica builds the batch itself from the same payload, so
    /// `timestamp_ms` should be a value they agree on (the replication
    /// layer passes 0) for their logs to come out byte-identical.
    pub fn control(timestamp_ms: i64, payload: &[u8]) -> Result<BytesMut, BatchError> {
        let mut b = BatchBuilder::new(Compression::None);
        b.attributes = ATTR_CONTROL;
        b.push(timestamp_ms, None, payload, &[]);
        b.finish_into_mut()
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
        let key = key.map(|k| self.arena.put(k));
        let value = self.arena.put(value);
        self.records.push(PendingRecord {
            timestamp_delta: timestamp_ms.wrapping_sub(self.first_timestamp),
            key,
            value,
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
        // Uncompressed, the archive is serialized straight behind room for
        // the header, in a buffer sized from the estimate: no second copy
        // and no regrowth. The unaligned format pads nothing and its
        // pointers are relative, so starting at `HEADER_LEN` writes the same
        // bytes as starting at 0 (the golden files pin this).
        let room = match self.compression {
            Compression::None => self.archive_bytes,
            // Unknown until compressed; the batch is sized once then.
            Compression::Zstd => 0,
        };
        let mut batch = Vec::with_capacity(HEADER_LEN.saturating_add(room));
        batch.resize(HEADER_LEN, 0);
        let records: Vec<ArenaRecord<'_>> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| ArenaRecord {
                // Fits: the count was checked against BATCH_RECORDS_MAX.
                offset_delta: i as u32,
                timestamp_delta: r.timestamp_delta,
                key: r.key.map(|span| ArenaBytes(self.arena.get(span))),
                value: ArenaBytes(self.arena.get(r.value)),
                headers: HeadersRef(&r.headers),
            })
            .collect();
        let mut batch = match self.compression {
            Compression::None => {
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&records, batch)
                    .map_err(|e| BatchError::Encode(e.to_string()))?
            }
            Compression::Zstd => {
                let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&records)
                    .map_err(|e| BatchError::Encode(e.to_string()))?;
                let compressed = zstd::bulk::compress(&archive, ZSTD_LEVEL)
                    .map_err(|e| BatchError::Encode(format!("zstd: {e}")))?;
                batch.extend_from_slice(&compressed);
                batch
            }
        };
        let batch_length = batch.len();
        let payload_length = batch_length - HEADER_LEN;
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
            attributes: self.attributes,
            // Both fit: `batch_length <= BATCH_BYTES_MAX`, which is < u32::MAX.
            payload_length: payload_length as u32,
            batch_length: batch_length as u32,
        };
        let encoded = header.encode();
        let head = batch
            .get_mut(..HEADER_LEN)
            .ok_or(BatchError::Encode("header room missing".to_owned()))?;
        head.copy_from_slice(&encoded);
        let crc = compute_crc(&batch);
        if let Some(field) = batch.get_mut(OFFSET_CRC..OFFSET_CRC + 4) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        // Both conversions take over the unique allocation: no copy.
        Ok(BytesMut::from(Bytes::from(batch)))
    }
}

const _: () = assert!(BATCH_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(BATCH_RECORDS_MAX as u64 <= u32::MAX as u64);

/// Where one key or value sits in the [`Arena`].
#[derive(Debug, Clone, Copy)]
struct Span {
    chunk: usize,
    start: usize,
    len: usize,
}

/// Append-only byte storage in chunks: pushing a record copies its bytes
/// once and allocates only when a chunk is full.
#[derive(Debug, Clone, Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
}

impl Arena {
    fn put(&mut self, bytes: &[u8]) -> Span {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= bytes.len());
        if !fits {
            self.chunks
                .push(Vec::with_capacity(bytes.len().max(ARENA_CHUNK_BYTES)));
        }
        let chunk = self.chunks.len() - 1;
        let mut start = 0;
        if let Some(c) = self.chunks.last_mut() {
            start = c.len();
            c.extend_from_slice(bytes);
        }
        Span {
            chunk,
            start,
            len: bytes.len(),
        }
    }

    /// The bytes `put` stored at `span`; spans only come from `put`.
    fn get(&self, span: Span) -> &[u8] {
        self.chunks
            .get(span.chunk)
            .and_then(|c| c.get(span.start..span.start + span.len))
            .unwrap_or_default()
    }
}

/// A record waiting in the builder: its key and value are in the arena.
#[derive(Debug, Clone)]
struct PendingRecord {
    timestamp_delta: i64,
    key: Option<Span>,
    value: Span,
    headers: Vec<RecordHeader>,
}

/// A borrowed record that archives as [`ArchivedRecord`], field for field
/// as the owned `Record` does, so the payload bytes are the same (the
/// golden batch files pin this). Written by hand because rkyv's derive
/// with `as = ...` cannot see through the borrowed field types.
struct ArenaRecord<'a> {
    offset_delta: u32,
    timestamp_delta: i64,
    key: Option<ArenaBytes<'a>>,
    value: ArenaBytes<'a>,
    headers: HeadersRef<'a>,
}

struct ArenaRecordResolver {
    key: Option<VecResolver>,
    value: VecResolver,
    headers: VecResolver,
}

impl Archive for ArenaRecord<'_> {
    type Archived = ArchivedRecord;
    type Resolver = ArenaRecordResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedRecord { offset_delta, timestamp_delta, key, value, headers } = out);
        self.offset_delta.resolve((), offset_delta);
        self.timestamp_delta.resolve((), timestamp_delta);
        self.key.resolve(resolver.key, key);
        self.value.resolve(resolver.value, value);
        self.headers.resolve(resolver.headers, headers);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for ArenaRecord<'_>
where
    RecordHeader: Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        // Same order as the derived `Record` serializer: the out-of-line
        // bytes land in the archive in field order.
        Ok(ArenaRecordResolver {
            key: self.key.serialize(serializer)?,
            value: self.value.serialize(serializer)?,
            headers: self.headers.serialize(serializer)?,
        })
    }
}

/// Borrowed bytes that archive as a `Vec<u8>` does.
struct ArenaBytes<'a>(&'a [u8]);

impl Archive for ArenaBytes<'_> {
    type Archived = ArchivedVec<u8>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_slice(self.0, resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for ArenaBytes<'_> {
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::serialize_from_slice(self.0, serializer)
    }
}

/// Borrowed headers that archive as a `Vec<RecordHeader>` does.
struct HeadersRef<'a>(&'a [RecordHeader]);

impl Archive for HeadersRef<'_> {
    type Archived = ArchivedVec<ArchivedRecordHeader>;
    type Resolver = VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: Place<Self::Archived>) {
        ArchivedVec::resolve_from_slice(self.0, resolver, out);
    }
}

impl<S: Fallible + Allocator + Writer + ?Sized> Serialize<S> for HeadersRef<'_>
where
    RecordHeader: Serialize<S>,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        ArchivedVec::serialize_from_slice(self.0, serializer)
    }
}

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
    attributes: u16,
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
        put(&mut h, OFFSET_ATTRIBUTES, self.attributes.to_le_bytes());
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
