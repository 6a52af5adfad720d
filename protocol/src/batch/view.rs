//! A checked view over bytes that claim to hold exactly one batch.

use super::header::{compute_crc, BatchHeader};
use super::BatchError;

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
}
