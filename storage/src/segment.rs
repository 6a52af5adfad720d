//! One segment: a log file of whole batches plus its two sparse indexes.
//!
//! A segment is named by the offset of its first batch
//! (`{base_offset:020}.log`, `.index`, `.timeindex`), holds batches with
//! dense, increasing offsets starting there, and never exceeds
//! `segment_bytes` plus one batch, so every position fits in a `u32`. The
//! segment keeps three sizes because bytes go through three states: assigned
//! (`size`, the next write position), written (`written_size`, readable) and
//! synced (`synced_size`, durable).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_protocol::batch::{BatchHeader, HEADER_LEN};

use crate::error::{Result, StorageError};
use crate::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::io::{IoBackend, LogFile};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Digits of the zero-padded base offset in file names: enough for `u64::MAX`
/// and sorting names sorts segments.
const FILE_NAME_DIGITS: usize = 20;

pub(crate) fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!(
        "{base_offset:0width$}.{suffix}",
        width = FILE_NAME_DIGITS
    ))
}

/// The base offset a segment log file name stands for, if it is one.
pub(crate) fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?.strip_suffix('.')?;
    if stem.len() != FILE_NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub log: Arc<dyn LogFile>,
    /// Next write position: bytes assigned to batches, written or not.
    pub size: u64,
    /// Bytes whose writes have completed, in order: what reads may see.
    pub written_size: u64,
    /// Bytes covered by a completed fdatasync.
    pub synced_size: u64,
    /// Offset after the last batch assigned to this segment.
    pub next_offset: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index: u64,
    /// Largest batch max timestamp seen; `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Wall-clock ms of the first append (or of the open that found the
    /// segment non-empty): the segment's age for `segment_ms`. Wall clock
    /// rather than batch timestamps, so producers replaying old data do not
    /// roll a segment per batch.
    pub first_append_ms: Option<i64>,
}

impl Segment {
    /// Creates an empty segment at `base_offset`, replacing any files of
    /// that name (left over from a truncation or a half-done roll).
    pub(crate) fn create(dir: &Path, base_offset: u64, backend: &dyn IoBackend) -> Result<Self> {
        let path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = backend
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        if log.len().map_err(|e| StorageError::io(&path, e))? != 0 {
            log.set_len(0).map_err(|e| StorageError::io(&path, e))?;
        }
        let index = OffsetIndex::rebuilt(segment_path(dir, base_offset, INDEX_SUFFIX), Vec::new())?;
        let time_index = TimeIndex::rebuilt(
            segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            Vec::new(),
        )?;
        Ok(Segment::from_parts(
            base_offset,
            log,
            0,
            base_offset,
            index,
            time_index,
        ))
    }

    /// A segment over an existing file whose first `size` bytes hold valid
    /// batches ending before `next_offset`.
    pub(crate) fn from_parts(
        base_offset: u64,
        log: Arc<dyn LogFile>,
        size: u64,
        next_offset: u64,
        index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Self {
        let bytes_since_index = size - index.last().map_or(0, |e| u64::from(e.pos));
        let max_timestamp = time_index.last().map_or(i64::MIN, |e| e.ts);
        Segment {
            base_offset,
            log,
            size,
            written_size: size,
            synced_size: size,
            next_offset,
            index,
            time_index,
            bytes_since_index,
            max_timestamp,
            first_append_ms: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub(crate) fn path(&self) -> &Path {
        self.log.path()
    }

    /// The offset relative to this segment's base, if it is representable.
    pub(crate) fn relative(&self, offset: u64) -> Option<u32> {
        offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
    }

    /// Whether a batch of `header` would keep every relative offset of this
    /// segment within `u32`.
    pub(crate) fn fits_offsets(&self, header: &BatchHeader) -> bool {
        self.relative(self.next_offset + u64::from(header.last_offset_delta))
            .is_some()
    }

    /// Books a batch of `len` bytes placed at `pos`: sizes, offsets, and an
    /// index entry once `interval` bytes have gone by since the last one.
    /// Append and recovery both go through here, so a rebuilt index has the
    /// same shape as a written one.
    pub(crate) fn note_batch(&mut self, header: &BatchHeader, pos: u64, len: u64, interval: u32) {
        let max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.bytes_since_index >= u64::from(interval) {
            if let (Some(rel), Ok(pos32)) = (self.relative(header.base_offset), u32::try_from(pos))
            {
                self.index.push(OffsetEntry { rel, pos: pos32 });
                if self.time_index.last().is_none_or(|e| e.ts < max_timestamp) {
                    self.time_index.push(TimeEntry {
                        ts: max_timestamp,
                        rel,
                    });
                }
                self.bytes_since_index = 0;
            }
        }
        self.bytes_since_index += len;
        self.max_timestamp = max_timestamp;
        self.size = pos + len;
        self.next_offset = header.next_offset();
    }

    /// Appends a last time entry covering the newest batches (on roll and
    /// close), so the segment's max timestamp can be read back without a scan.
    pub(crate) fn seal_time_index(&mut self) {
        if self.is_empty()
            || self
                .time_index
                .last()
                .is_some_and(|e| e.ts >= self.max_timestamp)
        {
            return;
        }
        let last_base = self.last_batch_rel();
        self.time_index.push(TimeEntry {
            ts: self.max_timestamp,
            rel: last_base,
        });
    }

    /// Relative offset of the last offset in the segment (a safe stand-in
    /// for the last batch's base: the time entry's promise still holds).
    fn last_batch_rel(&self) -> u32 {
        self.relative(self.next_offset.saturating_sub(1))
            .unwrap_or(u32::MAX)
    }

    /// Where to start scanning for the batch holding `offset`: the nearest
    /// indexed batch at or before it.
    pub(crate) fn scan_start_for(&self, offset: u64) -> (u64, u64) {
        let entry = self.relative(offset).and_then(|rel| self.index.floor(rel));
        match entry {
            Some(e) => (u64::from(e.pos), self.base_offset + u64::from(e.rel)),
            None => (0, self.base_offset),
        }
    }

    /// Fsyncs both index files.
    pub(crate) fn sync_indexes(&mut self) -> Result<()> {
        self.index.sync()?;
        self.time_index.sync()
    }
}

/// Reads and parses the batch header at `pos` of `file`, which must lie
/// wholly below `limit`.
pub(crate) fn read_header(file: &dyn LogFile, pos: u64, limit: u64) -> Result<BatchHeader> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: file.path().to_path_buf(),
        position: pos,
        reason,
    };
    if pos + HEADER_LEN as u64 > limit {
        return Err(corrupt(format!(
            "batch header runs past the end at {limit}"
        )));
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_at(pos, &mut buf)
        .map_err(|e| StorageError::io(file.path(), e))?;
    let header = BatchHeader::parse(&buf).map_err(|e| corrupt(e.to_string()))?;
    if pos + u64::from(header.batch_length) > limit {
        return Err(corrupt(format!(
            "batch of {} bytes runs past the end at {limit}",
            header.batch_length
        )));
    }
    Ok(header)
}
