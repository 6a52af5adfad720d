//! The sparse offset and time indexes of one segment.
//!
//! Both live in memory (a `Vec`) for lookups and are appended to their files
//! with plain std I/O: entries are small, written once per
//! `index_interval_bytes` of log data, and never trusted after a crash
//! without a check (recovery validates or rebuilds them), so they stay off
//! the I/O thread and out of the fsync path.
//!
//! ```text
//! .index      [ relative offset: u32 LE ][ file position: u32 LE ]  per entry
//! .timeindex  [ max timestamp so far: i64 LE ][ relative offset: u32 LE ]
//! ```
//! Offset entries are strictly increasing in both fields. Time entries are
//! strictly increasing in timestamp and non-decreasing in offset; an entry
//! `(ts, rel)` states that no batch up to and including the one at `rel` has
//! a max timestamp above `ts`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

pub(crate) const OFFSET_ENTRY_REL: usize = 0;
pub(crate) const OFFSET_ENTRY_POS: usize = OFFSET_ENTRY_REL + 4;
/// Bytes of one `.index` entry.
pub(crate) const OFFSET_ENTRY_BYTES: usize = OFFSET_ENTRY_POS + 4;
pub(crate) const TIME_ENTRY_TS: usize = 0;
pub(crate) const TIME_ENTRY_REL: usize = TIME_ENTRY_TS + 8;
/// Bytes of one `.timeindex` entry.
pub(crate) const TIME_ENTRY_BYTES: usize = TIME_ENTRY_REL + 4;

/// One offset index entry: the batch holding relative offset `rel` as its
/// base starts at byte `pos` of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel: u32,
    pub pos: u32,
}

/// One time index entry (see the module docs for what it promises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_le_bytes(s))
}

impl OffsetEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel.to_le_bytes());
        out.extend_from_slice(&self.pos.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(OffsetEntry {
            rel: u32_at(b, OFFSET_ENTRY_REL)?,
            pos: u32_at(b, OFFSET_ENTRY_POS)?,
        })
    }
}

impl TimeEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.rel.to_le_bytes());
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(TimeEntry {
            ts: i64_at(b, TIME_ENTRY_TS)?,
            rel: u32_at(b, TIME_ENTRY_REL)?,
        })
    }
}

/// Why an index file could not be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexProblem {
    Missing,
    OddSize(u64),
    NotMonotonic { entry: usize },
}

/// Index of one kind: entries in memory plus the file they are appended to.
#[derive(Debug)]
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// Append handle; `None` after a write error, which also marks the
    /// index dirty so that `rewrite` (on close) fixes the file.
    file: Option<File>,
    dirty: bool,
    /// Whether the file may hold bytes no fsync has covered yet.
    unsynced: bool,
}

pub(crate) type OffsetIndex = IndexFile<OffsetEntry>;
pub(crate) type TimeIndex = IndexFile<TimeEntry>;

/// Encoding of one entry kind.
pub(crate) trait Entry: Copy {
    const BYTES: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Option<Self>;
    /// Whether `next` may follow `self` in a well-formed index.
    fn precedes(&self, next: &Self) -> bool;
}

impl Entry for OffsetEntry {
    const BYTES: usize = OFFSET_ENTRY_BYTES;
    fn encode(&self, out: &mut Vec<u8>) {
        OffsetEntry::encode(self, out)
    }
    fn decode(b: &[u8]) -> Option<Self> {
        OffsetEntry::decode(b)
    }
    fn precedes(&self, next: &Self) -> bool {
        self.rel < next.rel && self.pos < next.pos
    }
}

impl Entry for TimeEntry {
    const BYTES: usize = TIME_ENTRY_BYTES;
    fn encode(&self, out: &mut Vec<u8>) {
        TimeEntry::encode(self, out)
    }
    fn decode(b: &[u8]) -> Option<Self> {
        TimeEntry::decode(b)
    }
    fn precedes(&self, next: &Self) -> bool {
        self.ts < next.ts && self.rel <= next.rel
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

impl<E: Entry> IndexFile<E> {
    /// Reads and checks an index file. `Ok(Err(problem))` means the file is
    /// missing or malformed and must be rebuilt from the log.
    pub(crate) fn load(path: &Path) -> Result<std::result::Result<Vec<E>, IndexProblem>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Err(IndexProblem::Missing)),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        if bytes.len() % E::BYTES != 0 {
            return Ok(Err(IndexProblem::OddSize(bytes.len() as u64)));
        }
        let mut entries: Vec<E> = Vec::with_capacity(bytes.len() / E::BYTES);
        for (i, chunk) in bytes.chunks_exact(E::BYTES).enumerate() {
            let Some(entry) = E::decode(chunk) else {
                return Ok(Err(IndexProblem::OddSize(bytes.len() as u64)));
            };
            if let Some(prev) = entries.last() {
                if !prev.precedes(&entry) {
                    return Ok(Err(IndexProblem::NotMonotonic { entry: i }));
                }
            }
            entries.push(entry);
        }
        Ok(Ok(entries))
    }

    /// An index over `entries` whose file already holds exactly them.
    pub(crate) fn with_entries(path: PathBuf, entries: Vec<E>) -> Result<Self> {
        let file = open_append(&path)?;
        Ok(IndexFile {
            path,
            entries,
            file: Some(file),
            dirty: false,
            unsynced: false,
        })
    }

    /// An index over `entries` kept in memory only, for a read-only log:
    /// the file is never opened for writing, later entries are not written.
    pub(crate) fn in_memory(path: PathBuf, entries: Vec<E>) -> Self {
        IndexFile {
            path,
            entries,
            file: None,
            dirty: false,
            unsynced: false,
        }
    }

    /// An index over `entries` whose file must be rewritten to match.
    pub(crate) fn rebuilt(path: PathBuf, entries: Vec<E>) -> Result<Self> {
        let mut index = IndexFile {
            path,
            entries,
            file: None,
            dirty: true,
            unsynced: true,
        };
        index.rewrite()?;
        Ok(index)
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Adds an entry in memory and appends it to the file. A failed file
    /// write is logged, not returned: the in-memory index stays right and
    /// the file is rewritten on close or rebuilt on recovery.
    pub(crate) fn push(&mut self, entry: E) {
        self.entries.push(entry);
        self.unsynced = true;
        if let Some(file) = self.file.as_mut() {
            let mut buf = Vec::with_capacity(E::BYTES);
            entry.encode(&mut buf);
            if let Err(e) = file.write_all(&buf) {
                tracing::warn!(path = %self.path.display(), error = %e, "index append failed; rewriting it on close");
                self.file = None;
                self.dirty = true;
            }
        }
    }

    /// Replaces the file's contents with the in-memory entries.
    pub(crate) fn rewrite(&mut self) -> Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * E::BYTES);
        for e in &self.entries {
            e.encode(&mut buf);
        }
        self.file = None;
        let write = || -> std::io::Result<File> {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
            f.write_all(&buf)?;
            Ok(f)
        };
        write().map_err(|e| StorageError::io(&self.path, e))?;
        self.file = Some(open_append(&self.path)?);
        self.dirty = false;
        self.unsynced = true;
        Ok(())
    }

    /// Rewrites the file if a write failed since the last rewrite.
    pub(crate) fn repair_if_dirty(&mut self) -> Result<()> {
        if self.dirty {
            self.rewrite()?;
        }
        Ok(())
    }

    /// fsyncs the file (on close; index files are otherwise checked on recovery).
    pub(crate) fn sync(&mut self) -> Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some(f) = &self.file {
            f.sync_data().map_err(|e| StorageError::io(&self.path, e))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

impl OffsetIndex {
    /// The last entry whose relative offset is at most `rel`.
    pub(crate) fn floor(&self, rel: u32) -> Option<OffsetEntry> {
        let idx = self.entries.partition_point(|e| e.rel <= rel);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
    }
}

impl TimeIndex {
    /// The relative offset from which a scan for the first batch with max
    /// timestamp >= `ts` may start: every batch up to the returned entry's
    /// offset is known to be older. `None`: scan from the segment start.
    pub(crate) fn scan_start(&self, ts: i64) -> Option<u32> {
        let idx = self.entries.partition_point(|e| e.ts < ts);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.rel)
    }
}
