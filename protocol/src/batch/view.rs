//! Checked views over batch bytes: one batch ([`BatchView`]) and batches
//! back to back ([`BatchIter`]).
//!
//! Checks are layered by cost so each reader pays only for what it needs:
//! [`BatchView::new`] checks the header (constant time), [`BatchView::validate`]
//! the CRC (what the broker does on produce), [`BatchView::records`] the rkyv
//! archive (what a consumer does before reading), and
//! [`BatchView::validate_full`] all of that plus the offset invariants.

// Decoder of outside bytes: no panicking shortcuts.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::borrow::Cow;
use std::io::Read;

use super::header::{compute_crc, BatchHeader, Compression, HEADER_LEN};
use super::records::Records;
use super::BatchError;
use crate::limits::BATCH_DECOMPRESSED_BYTES_MAX;

/// Largest zstd window (log2 bytes) a reader accepts. A frame's window sets
/// the decoder's memory, so a hostile frame must not pick it; `2^28` covers
/// a single-segment frame of the largest payload the builder writes.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 28;
const _: () = assert!(1usize << ZSTD_WINDOW_LOG_MAX >= BATCH_DECOMPRESSED_BYTES_MAX);

/// First guess of the zstd expansion ratio, to size the output buffer and
/// skip most regrowth; the limit bounds it whatever the payload claims.
const ZSTD_EXPANSION_GUESS: usize = 4;

/// A view over one batch's bytes. Constructing it checks the header and that
/// `bytes` holds exactly `batch_length` bytes; [`BatchView::validate`] adds
/// the CRC.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> BatchView<'a> {
    /// Checks the header and the total length. `bytes` may hold more than one
    /// batch: the view covers the first one only (see [`BatchView::len`]).
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(bytes)?;
        let len = header.batch_length as usize;
        let bytes = bytes.get(..len).ok_or(BatchError::Truncated {
            needed: len,
            available: bytes.len(),
        })?;
        Ok(BatchView { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes of this batch (its `batch_length`).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The payload bytes (after the fixed header), as stored: compressed if
    /// the codec says so.
    pub fn payload(&self) -> &'a [u8] {
        // `new` checked `batch_length >= HEADER_LEN`; `get` keeps the
        // reader panic-free regardless.
        self.bytes.get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Checks the CRC over the checksummed region. Cheap relative to the I/O
    /// that carried the bytes (crc32c runs at memory speed with SSE4.2).
    pub fn validate(&self) -> Result<(), BatchError> {
        let actual = compute_crc(self.bytes);
        if actual != self.header.crc {
            return Err(BatchError::CrcMismatch {
                expected: self.header.crc,
                actual,
            });
        }
        Ok(())
    }

    /// The batch's records, archive-checked.
    ///
    /// Uncompressed payloads are read in place (no copy); zstd payloads are
    /// decompressed once into an owned buffer, bounded by
    /// [`BATCH_DECOMPRESSED_BYTES_MAX`] whatever the frame claims. Does not
    /// check the CRC: call [`BatchView::validate`] first for untrusted bytes,
    /// or use [`BatchView::validate_full`].
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        let archive = match self.header.codec {
            Compression::None => Cow::Borrowed(self.payload()),
            Compression::Zstd => Cow::Owned(decompress_bounded(self.payload())?),
        };
        Records::new(archive, &self.header)
    }

    /// Every check a batch can pass: CRC, archive validity, the record count
    /// matching the archive, and dense offset deltas `0..record_count`.
    /// Returns the records so the check is not paid twice.
    pub fn validate_full(&self) -> Result<Records<'a>, BatchError> {
        self.validate()?;
        let records = self.records()?;
        for (index, record) in records.archived().iter().enumerate() {
            let offset_delta = record.offset_delta();
            if usize::try_from(offset_delta).ok() != Some(index) {
                return Err(BatchError::NonDenseOffsets {
                    index,
                    offset_delta,
                });
            }
        }
        Ok(records)
    }
}

/// Decompresses a zstd payload, refusing to produce more than
/// [`BATCH_DECOMPRESSED_BYTES_MAX`] bytes.
///
/// Streams through a decoder and stops one byte past the limit, so neither a
/// frame's declared content size nor its window can make us allocate beyond
/// the limits.
fn decompress_bounded(payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    let limit = BATCH_DECOMPRESSED_BYTES_MAX;
    let decompress_err = |e: std::io::Error| BatchError::Decompress(e.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(decompress_err)?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(decompress_err)?;
    let mut out = Vec::with_capacity(
        payload
            .len()
            .saturating_mul(ZSTD_EXPANSION_GUESS)
            .min(limit),
    );
    // `limit + 1` so that exactly-at-limit passes and one byte more is seen.
    let mut bounded = decoder.take(limit as u64 + 1);
    bounded.read_to_end(&mut out).map_err(decompress_err)?;
    if out.len() > limit {
        return Err(BatchError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// Walks batches stored back to back, as in a fetch response or a segment
/// read.
///
/// Yields a [`BatchView`] per complete batch (header-checked, not CRC-checked).
/// A truncated batch at the end — fewer bytes left than a header, or than
/// the header's `batch_length` — ends the iteration cleanly: readers of a
/// byte range routinely cut the last batch, and [`BatchIter::consumed`] tells
/// where the next read must start. A malformed header yields one error and
/// ends the iteration, since no later batch boundary can be trusted.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    consumed: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BatchIter {
            bytes,
            consumed: 0,
            failed: false,
        }
    }

    /// Bytes of the complete batches yielded so far.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The bytes not yet yielded: after the iteration ends cleanly, the
    /// truncated tail (empty if the buffer ended on a batch boundary).
    pub fn remaining(&self) -> &'a [u8] {
        self.bytes.get(self.consumed..).unwrap_or(&[])
    }

    /// True when the iteration stopped on a malformed header.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.remaining();
        if rest.len() < HEADER_LEN {
            return None;
        }
        match BatchView::new(rest) {
            Ok(view) => {
                self.consumed += view.len();
                Some(Ok(view))
            }
            Err(BatchError::Truncated { .. }) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchIter<'_> {}
