//! The records inside a batch payload: their rkyv type and the reader that
//! walks them in place.
//!
//! The payload is the rkyv archive (unaligned format) of a `Vec<Record>`.
//! Archived values have alignment 1, so a payload can be read wherever it
//! lands in a network or file buffer without copying it to an aligned
//! address. Offsets and timestamps are stored as deltas against the header
//! (`base_offset`, `first_timestamp`), so the broker can stamp the base
//! offset without touching the payload or its CRC.

// Decoder of outside bytes: no panicking shortcuts.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::borrow::Cow;

use rkyv::vec::ArchivedVec;

use super::header::BatchHeader;
use super::BatchError;

/// One record as the producer builds it. The payload archive root is
/// `Vec<Record>`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Record {
    /// Offset relative to the batch's `base_offset`; record `i` has delta `i`.
    pub offset_delta: u32,
    /// Milliseconds relative to the header's `first_timestamp`, wrapping: the
    /// builder subtracts and the reader adds with two's-complement wrap, so
    /// every `i64` timestamp round-trips exactly.
    pub timestamp_delta: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<RecordHeader>,
}

/// An application header attached to a record (Kafka's record headers).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct RecordHeader {
    pub name: String,
    pub value: Vec<u8>,
}

/// The archived payload root.
pub type ArchivedRecords = ArchivedVec<ArchivedRecord>;

// The whole point of the unaligned format: archived records can be read at
// any byte position. If a feature change ever broke that, reading in place
// from a `&[u8]` would become unsound, so fail the build instead.
const _: () = assert!(std::mem::align_of::<ArchivedRecord>() == 1);
const _: () = assert!(std::mem::align_of::<ArchivedRecords>() == 1);

impl ArchivedRecord {
    pub fn offset_delta(&self) -> u32 {
        self.offset_delta.to_native()
    }

    pub fn timestamp_delta(&self) -> i64 {
        self.timestamp_delta.to_native()
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_ref().map(|k| k.as_slice())
    }

    pub fn value(&self) -> &[u8] {
        self.value.as_slice()
    }

    /// The record's headers as `(name, value)` pairs, in the order pushed.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_slice()))
    }

    /// Bytes of application data in the record (key + value + headers), the
    /// figure producers and quotas count.
    pub fn data_len(&self) -> usize {
        let key = self.key().map_or(0, <[u8]>::len);
        let headers: usize = self.headers().map(|(n, v)| n.len() + v.len()).sum();
        key + self.value().len() + headers
    }
}

/// A record read from a batch with its absolute offset and timestamp.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub record: &'a ArchivedRecord,
}

impl<'a> RecordRef<'a> {
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key()
    }

    pub fn value(&self) -> &'a [u8] {
        self.record.value()
    }

    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + 'a {
        self.record.headers()
    }
}

/// The checked records of one batch.
///
/// Borrows the batch's payload when it is uncompressed (no copy) and owns the
/// decompressed bytes when it was zstd-compressed. Construction runs rkyv's
/// bytecheck validation over the whole archive once; iteration afterwards
/// reads the archive directly.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    /// Holds an archive that passed `rkyv::access` validation in
    /// [`Records::new`]; never mutated afterwards.
    archive: Cow<'a, [u8]>,
    len: usize,
    base_offset: u64,
    first_timestamp: i64,
}

impl<'a> Records<'a> {
    /// Validates `archive` as the record archive of the batch `header`
    /// describes, and checks the archive holds `record_count` records.
    pub(crate) fn new(archive: Cow<'a, [u8]>, header: &BatchHeader) -> Result<Self, BatchError> {
        let root = rkyv::access::<ArchivedRecords, rkyv::rancor::Error>(&archive)
            .map_err(|e| BatchError::BadArchive(e.to_string()))?;
        let len = root.len();
        if len != header.record_count as usize {
            return Err(BatchError::RecordCountMismatch {
                header: header.record_count,
                archive: len,
            });
        }
        Ok(Records {
            archive,
            len,
            base_offset: header.base_offset,
            first_timestamp: header.first_timestamp,
        })
    }

    fn root(&self) -> &ArchivedRecords {
        // SAFETY: `self.archive` passed `rkyv::access::<ArchivedRecords>`
        // (full bytecheck validation) in `Records::new` and is immutable
        // since: the `Cow` is private and never handed out mutably. Archived
        // types have alignment 1 (asserted above), so the position of the
        // bytes in memory does not matter.
        unsafe { rkyv::access_unchecked::<ArchivedRecords>(&self.archive) }
    }

    /// Number of records (equals the header's `record_count`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub fn first_timestamp(&self) -> i64 {
        self.first_timestamp
    }

    /// True when the records are read in place from the batch bytes, false
    /// when they were decompressed into an owned buffer.
    pub fn is_borrowed(&self) -> bool {
        matches!(self.archive, Cow::Borrowed(_))
    }

    /// The archived records without absolute offsets or timestamps.
    pub fn archived(&self) -> &[ArchivedRecord] {
        self.root().as_slice()
    }

    pub fn get(&self, index: usize) -> Option<RecordRef<'_>> {
        self.archived().get(index).map(|r| self.resolve(r))
    }

    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            inner: self.archived().iter(),
            base_offset: self.base_offset,
            first_timestamp: self.first_timestamp,
        }
    }

    fn resolve<'r>(&self, record: &'r ArchivedRecord) -> RecordRef<'r> {
        resolve(self.base_offset, self.first_timestamp, record)
    }
}

// Wrapping arithmetic: the header fields come from outside and a hostile
// base offset near `u64::MAX` must not panic a reader. Valid batches never
// wrap the offset; timestamps wrap by design (see `Record::timestamp_delta`).
fn resolve(base_offset: u64, first_timestamp: i64, record: &ArchivedRecord) -> RecordRef<'_> {
    RecordRef {
        offset: base_offset.wrapping_add(u64::from(record.offset_delta())),
        timestamp: first_timestamp.wrapping_add(record.timestamp_delta()),
        record,
    }
}

impl<'r> IntoIterator for &'r Records<'_> {
    type Item = RecordRef<'r>;
    type IntoIter = RecordIter<'r>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the records of a batch, in offset order.
#[derive(Debug, Clone)]
pub struct RecordIter<'r> {
    inner: std::slice::Iter<'r, ArchivedRecord>,
    base_offset: u64,
    first_timestamp: i64,
}

impl<'r> Iterator for RecordIter<'r> {
    type Item = RecordRef<'r>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.inner.next()?;
        Some(resolve(self.base_offset, self.first_timestamp, record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for RecordIter<'_> {}
