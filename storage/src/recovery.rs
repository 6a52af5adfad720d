//! Opening a partition directory: finding its segments, trusting or checking
//! their indexes, and cutting a torn tail after a crash.
//!
//! After a clean shutdown (`.clean_shutdown` present, written by
//! `PartitionLog::close` after everything was synced) the indexes are loaded
//! and only sanity-checked: no batch is read. Without the marker every
//! segment is checked: index entries must be in bounds and point at a batch
//! header with the expected offset (the first one that does not, and all
//! after it, are dropped), then the batches after the last good entry are
//! scanned — each must parse, fit in the file, pass its CRC and carry the
//! next expected offset — and the file is cut at the first one that does
//! not. The active (last) segment, the one a crash tears, is scanned from
//! its first byte as Kafka does: damage before its last index entry must
//! cut the log too, or bytes after a bad batch would be served; its
//! entries are still checked (and counted) and then rebuilt by the scan. A segment whose base does not continue its predecessor's end (the
//! predecessor lost its tail, or it is an orphan of a half-done roll) is
//! removed with everything after it: nothing after a tear is served.
//!
//! A read-only open (`read_only`, for a data directory that cannot be
//! written) runs the same checks but changes nothing on disk: the marker
//! stays, nothing is removed or cut, and indexes are rebuilt in memory
//! only. A torn tail is left in the file and the segment's readable end
//! stops before it, so what is served is exactly what a writable open would
//! keep (`bytes_truncated` then counts bytes left out rather than cut).
//!
//! Known limit: after a crash, a time index that lost entries its offset
//! index kept can understate a segment's max timestamp (the files are
//! written separately and not synced); this only makes time retention and
//! `offset_for_timestamp` err towards older data of that one segment.

use std::path::Path;
use std::sync::Arc;

use rill_protocol::batch::BatchView;

use crate::error::{Result, StorageError};
use crate::index::{IndexFile, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::io::{absent_read_only, IoBackend, LogFile};
use crate::segment::{
    parse_log_name, read_header, segment_path, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// Name of the file `close` leaves behind once everything is durable.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";
const MARKER_END_OFFSET: &str = "end_offset=";
const MARKER_ACTIVE_SIZE: &str = "active_size=";

/// What opening the log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// The clean-shutdown marker was present and valid: indexes were trusted.
    pub clean_shutdown: bool,
    pub segments_loaded: u64,
    /// Bytes of batches read and CRC-checked (0 after a clean shutdown).
    pub bytes_scanned: u64,
    /// Bytes cut from segment tails (torn or corrupt batches and beyond).
    pub bytes_truncated: u64,
    /// Whole segments removed because they did not continue the log.
    pub segments_dropped: u64,
    /// Index files that were missing or malformed and rebuilt by a full scan.
    pub indexes_rebuilt: u64,
    /// Index entries dropped because they pointed past the end or at no batch.
    pub index_entries_dropped: u64,
}

/// What `close` records about the log in the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanState {
    pub end_offset: u64,
    pub active_size: u64,
}

impl CleanState {
    pub(crate) fn encode(&self) -> String {
        format!(
            "{MARKER_END_OFFSET}{}\n{MARKER_ACTIVE_SIZE}{}\n",
            self.end_offset, self.active_size
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let end_offset = lines
            .next()?
            .strip_prefix(MARKER_END_OFFSET)?
            .parse()
            .ok()?;
        let active_size = lines
            .next()?
            .strip_prefix(MARKER_ACTIVE_SIZE)?
            .parse()
            .ok()?;
        Some(CleanState {
            end_offset,
            active_size,
        })
    }
}

/// Loads the segments of `dir` (created if missing), repairing what a crash
/// left. Returns them oldest first; never empty. With `read_only` nothing
/// on disk changes (see the module docs) and a missing `dir` is an empty log.
pub(crate) fn recover(
    dir: &Path,
    interval: u32,
    backend: &dyn IoBackend,
    read_only: bool,
) -> Result<(Vec<Segment>, RecoveryStats)> {
    let mut stats = RecoveryStats::default();
    let (clean, bases) = if read_only {
        if dir.exists() {
            (read_marker(dir)?, list_segments(dir, read_only)?)
        } else {
            (None, Vec::new())
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        (take_marker(dir, backend)?, list_segments(dir, read_only)?)
    };
    stats.clean_shutdown = clean.is_some();

    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        if let Some(prev) = segments.last() {
            if prev.next_offset != base {
                let dropped = bases.get(i..).unwrap_or(&[]);
                stats.segments_dropped += dropped.len() as u64;
                if read_only {
                    tracing::warn!(
                        dir = %dir.display(), expected = prev.next_offset, found = base,
                        ignored = dropped.len(), "segment does not continue the log; read-only: not serving it or any later segment"
                    );
                    break;
                }
                tracing::warn!(
                    dir = %dir.display(), expected = prev.next_offset, found = base,
                    dropped = dropped.len(), "segment does not continue the log; dropping it and all later segments"
                );
                for &b in dropped {
                    remove_segment_files(dir, b, backend)?;
                }
                backend
                    .sync_dir(dir)
                    .map_err(|e| StorageError::io(dir, e))?;
                break;
            }
        }
        let is_last = i + 1 == bases.len();
        let path = segment_path(dir, base, LOG_SUFFIX);
        let log = if read_only {
            backend.open_read_only(&path)
        } else {
            backend.open(&path)
        }
        .map_err(|e| StorageError::io(&path, e))?;
        let len = log.len().map_err(|e| StorageError::io(&path, e))?;
        let known_end = match clean {
            Some(state) if is_last => (len == state.active_size).then_some(state.end_offset),
            Some(_) => bases.get(i + 1).copied(),
            None => None,
        };
        let trusted = match known_end {
            Some(end) => load_trusted(dir, base, &log, len, end, read_only)?,
            None => None,
        };
        let segment = match trusted {
            Some(s) => s,
            None => recover_segment_in(
                dir, base, log, len, interval, is_last, read_only, &mut stats,
            )?,
        };
        segments.push(segment);
    }
    if segments.is_empty() && read_only {
        let path = segment_path(dir, 0, LOG_SUFFIX);
        segments.push(Segment::from_parts(
            0,
            absent_read_only(&path),
            0,
            0,
            OffsetIndex::in_memory(segment_path(dir, 0, INDEX_SUFFIX), Vec::new()),
            TimeIndex::in_memory(segment_path(dir, 0, TIME_INDEX_SUFFIX), Vec::new()),
        ));
    } else if segments.is_empty() {
        segments.push(Segment::create(dir, 0, backend)?);
        backend
            .sync_dir(dir)
            .map_err(|e| StorageError::io(dir, e))?;
    }
    stats.segments_loaded = segments.len() as u64;
    Ok((segments, stats))
}

/// Reads and removes the clean-shutdown marker, making the removal durable
/// so that a crash from here on is detected on the next open.
fn take_marker(dir: &Path, backend: &dyn IoBackend) -> Result<Option<CleanState>> {
    let path = dir.join(CLEAN_SHUTDOWN_MARKER);
    let Some(text) = read_marker_text(&path)? else {
        return Ok(None);
    };
    std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
    backend
        .sync_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?;
    Ok(decode_marker(&path, &text))
}

/// Reads the clean-shutdown marker and leaves it: a read-only open writes
/// nothing, so the next writable open still finds it.
fn read_marker(dir: &Path) -> Result<Option<CleanState>> {
    let path = dir.join(CLEAN_SHUTDOWN_MARKER);
    Ok(read_marker_text(&path)?.and_then(|text| decode_marker(&path, &text)))
}

fn read_marker_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Some(String::new())),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

fn decode_marker(path: &Path, text: &str) -> Option<CleanState> {
    let state = CleanState::decode(text);
    if state.is_none() {
        tracing::warn!(path = %path.display(), "unreadable clean-shutdown marker; recovering as after a crash");
    }
    state
}

/// Base offsets of the segment log files in `dir`, sorted. Index files with
/// no log file beside them are removed (left alone when `read_only`).
fn list_segments(dir: &Path, read_only: bool) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_log_name(name) {
            bases.push(base);
        } else if name.ends_with(INDEX_SUFFIX) {
            // Covers `.index` and `.timeindex`.
            index_files.push(entry.path());
        }
    }
    bases.sort_unstable();
    for path in index_files.into_iter().filter(|_| !read_only) {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let has_log = format!("{stem}.{LOG_SUFFIX}");
        if parse_log_name(&has_log).is_none_or(|b| bases.binary_search(&b).is_err()) {
            tracing::warn!(path = %path.display(), "removing index file without a segment");
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        }
    }
    Ok(bases)
}

pub(crate) fn remove_segment_files(dir: &Path, base: u64, backend: &dyn IoBackend) -> Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment_path(dir, base, suffix);
        match backend.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path, e)),
        }
    }
    Ok(())
}

/// After a clean shutdown: the indexes as they are, if they pass a sanity
/// check of sizes and bounds; `None` sends the segment through a scan.
fn load_trusted(
    dir: &Path,
    base: u64,
    log: &Arc<dyn LogFile>,
    len: u64,
    end_offset: u64,
    read_only: bool,
) -> Result<Option<Segment>> {
    let index_path = segment_path(dir, base, INDEX_SUFFIX);
    let time_path = segment_path(dir, base, TIME_INDEX_SUFFIX);
    let (Ok(offsets), Ok(times)) = (
        IndexFile::<OffsetEntry>::load(&index_path)?,
        IndexFile::<TimeEntry>::load(&time_path)?,
    ) else {
        return Ok(None);
    };
    let span = end_offset.saturating_sub(base);
    let in_bounds = offsets
        .last()
        .is_none_or(|e| u64::from(e.pos) < len && u64::from(e.rel) < span)
        && times.last().is_none_or(|e| u64::from(e.rel) < span)
        && (len == 0) == (span == 0)
        && end_offset >= base;
    if !in_bounds {
        tracing::warn!(dir = %dir.display(), base, "index fails its sanity check after clean shutdown; scanning");
        return Ok(None);
    }
    let (index, time_index) = if read_only {
        (
            OffsetIndex::in_memory(index_path, offsets),
            TimeIndex::in_memory(time_path, times),
        )
    } else {
        (
            OffsetIndex::with_entries(index_path, offsets)?,
            TimeIndex::with_entries(time_path, times)?,
        )
    };
    Ok(Some(Segment::from_parts(
        base,
        log.clone(),
        len,
        end_offset,
        index,
        time_index,
    )))
}

/// Whether an index entry points at a batch header with the offset it claims.
fn entry_ok(log: &dyn LogFile, len: u64, base: u64, entry: &OffsetEntry) -> bool {
    match read_header(log, u64::from(entry.pos), len) {
        // `base` comes from a file name: the sum may not fit.
        Ok(h) => base.checked_add(u64::from(entry.rel)) == Some(h.base_offset),
        Err(_) => false,
    }
}

/// After a crash: keeps the index entries that check out, scans from the
/// last of them (from the start with `verify_all`), cuts the file at the
/// first invalid byte.
pub(crate) fn recover_segment(
    dir: &Path,
    base: u64,
    log: Arc<dyn LogFile>,
    len: u64,
    interval: u32,
    verify_all: bool,
    stats: &mut RecoveryStats,
) -> Result<Segment> {
    recover_segment_in(dir, base, log, len, interval, verify_all, false, stats)
}

/// [`recover_segment`]; with `read_only` the index is rebuilt in memory and
/// a torn tail is left in the file, past the segment's readable end.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per mode; a struct would only rename them"
)]
fn recover_segment_in(
    dir: &Path,
    base: u64,
    log: Arc<dyn LogFile>,
    len: u64,
    interval: u32,
    verify_all: bool,
    read_only: bool,
    stats: &mut RecoveryStats,
) -> Result<Segment> {
    let index_path = segment_path(dir, base, INDEX_SUFFIX);
    let time_path = segment_path(dir, base, TIME_INDEX_SUFFIX);
    let offsets = IndexFile::<OffsetEntry>::load(&index_path)?;
    let times = IndexFile::<TimeEntry>::load(&time_path)?;
    let (mut offsets, mut times) = match (offsets, times) {
        (Ok(o), Ok(t)) => (o, t),
        (o, t) => {
            tracing::warn!(
                path = %log.path().display(), offset_index = ?o.err(), time_index = ?t.err(),
                "index missing or malformed; rebuilding it from the log"
            );
            stats.indexes_rebuilt += 1;
            (Vec::new(), Vec::new())
        }
    };
    let good = offsets
        .iter()
        .position(|e| !entry_ok(log.as_ref(), len, base, e))
        .unwrap_or(offsets.len());
    if good < offsets.len() {
        stats.index_entries_dropped += (offsets.len() - good) as u64;
        offsets.truncate(good);
    }
    if verify_all {
        // Rebuilt by the full scan below, with the same cadence as appends.
        offsets.clear();
    }
    let (start_pos, start_offset) = match offsets.last() {
        Some(e) => (u64::from(e.pos), base + u64::from(e.rel)),
        None => (0, base),
    };
    match offsets.last() {
        Some(last) => times.retain(|t| t.rel <= last.rel),
        None => times.clear(),
    }
    let (index, time_index) = if read_only {
        (
            OffsetIndex::in_memory(index_path, offsets),
            TimeIndex::in_memory(time_path, times),
        )
    } else {
        (
            OffsetIndex::rebuilt(index_path, offsets)?,
            TimeIndex::rebuilt(time_path, times)?,
        )
    };
    let mut segment = Segment::from_parts(base, log, start_pos, start_offset, index, time_index);
    let valid_end = scan_tail(&mut segment, len, interval, stats)?;
    if valid_end < len && read_only {
        tracing::warn!(
            path = %segment.path().display(), valid_end, file_len = len,
            "torn or corrupt segment tail; read-only: not serving it, file left as it is"
        );
        stats.bytes_truncated += len - valid_end;
    } else if valid_end < len {
        tracing::warn!(
            path = %segment.path().display(), valid_end, file_len = len,
            "cutting torn or corrupt segment tail"
        );
        segment
            .log
            .set_len(valid_end)
            .map_err(|e| StorageError::io(segment.path(), e))?;
        stats.bytes_truncated += len - valid_end;
    }
    segment.written_size = segment.size;
    segment.synced_size = segment.size;
    Ok(segment)
}

/// Reads batches from `segment.size` while they are valid and continue the
/// offsets, booking each. Returns the end of the last valid batch.
fn scan_tail(
    segment: &mut Segment,
    len: u64,
    interval: u32,
    stats: &mut RecoveryStats,
) -> Result<u64> {
    let mut buf = Vec::new();
    // The batch an index entry points at is already indexed: book it
    // without adding a second entry.
    segment.bytes_since_index = 0;
    loop {
        let pos = segment.size;
        if pos == len {
            return Ok(pos);
        }
        let header = match read_header(segment.log.as_ref(), pos, len) {
            Ok(h) => h,
            Err(StorageError::Corrupt { reason, .. }) => {
                tracing::warn!(path = %segment.path().display(), pos, %reason, "invalid batch header");
                return Ok(pos);
            }
            Err(e) => return Err(e),
        };
        if header.base_offset != segment.next_offset || !segment.fits_offsets(&header) {
            tracing::warn!(
                path = %segment.path().display(), pos, expected = segment.next_offset,
                found = header.base_offset, "batch does not continue the offsets"
            );
            return Ok(pos);
        }
        let batch_len = u64::from(header.batch_length);
        buf.resize(header.batch_length as usize, 0);
        segment
            .log
            .read_at(pos, &mut buf)
            .map_err(|e| StorageError::io(segment.path(), e))?;
        if let Err(e) = BatchView::new(&buf).and_then(|v| v.validate()) {
            tracing::warn!(path = %segment.path().display(), pos, error = %e, "invalid batch");
            return Ok(pos);
        }
        stats.bytes_scanned += batch_len;
        segment.note_batch(&header, pos, batch_len, interval);
    }
}
