//! The producer state's life on disk: snapshot files written at roll and
//! at clean close, and the rebuild of the state from the newest usable
//! snapshot plus the batch headers after it.
//!
//! The state itself is [`crate::producer_state`] (pure, no I/O). This
//! module is how it survives restarts and suffix removals:
//!
//! - **Open** rebuilds it after recovery has cut the log to its valid
//!   prefix, so it reflects exactly the batches that remain.
//! - **Every removal of a log suffix** (the rollback after a refused write,
//!   `truncate_to`) rebuilds it the same way, so a retry is never answered
//!   with offsets that now hold another batch, nor refused as a duplicate
//!   of a batch that is gone.
//! - A snapshot at an offset past the log end claims batches the log does
//!   not hold: it is ignored (and, on a writable log, removed). A snapshot
//!   that fails its checks is skipped for the next older one; with none,
//!   the replay starts at the log start.
//!
//! Snapshots are written to a temporary name and renamed, without an
//! fsync at a roll (the append path never waits for one there): after a
//! power loss a snapshot may be missing or fail its CRC, and the rebuild
//! then starts from an older one. `close` syncs its snapshot before the
//! clean-shutdown marker. The newest [`SNAPSHOTS_KEPT`] are kept, so a
//! truncation below the newest still finds a start.

use std::io::Write;
use std::path::{Path, PathBuf};

use rill_protocol::batch::{BatchHeader, HEADER_LEN};

use crate::error::{Result, StorageError};
use crate::io::{IoBackend, LogFile};
use crate::producer_state::{
    parse_snapshot_name, snapshot_file_name, ProducerStateMap, SNAPSHOT_SUFFIX,
};
use crate::segment::Segment;

/// Snapshot files kept per partition (older ones are removed when a new
/// one is written or retention moves the log start).
pub(crate) const SNAPSHOTS_KEPT: usize = 3;
/// Bytes read at a time while replaying headers: many small batches'
/// headers per read; after a batch larger than half of it, just the next
/// header is read.
const SCAN_CHUNK_BYTES: usize = 64 * 1024;
const TMP_SUFFIX: &str = "tmp";

/// What a rebuild used and read, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerRebuild {
    /// The snapshot the replay started from, if one was usable.
    pub snapshot_offset: Option<u64>,
    /// Batch headers replayed after it.
    pub batches_replayed: u64,
    /// Snapshots skipped: past the log end, or failing their checks.
    pub snapshots_skipped: u64,
}

fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(snapshot_file_name(offset))
}

/// Offsets of the snapshot files in `dir`, ascending. With `remove_tmp`,
/// leftover temporary files of an interrupted write are removed: only
/// under the log's lock, where no roll can be writing one.
pub(crate) fn list_snapshots(dir: &Path, remove_tmp: bool) -> Result<Vec<u64>> {
    let mut offsets = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offsets),
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(offset) = parse_snapshot_name(name) {
            offsets.push(offset);
        } else if remove_tmp && name.ends_with(&format!(".{SNAPSHOT_SUFFIX}.{TMP_SUFFIX}")) {
            remove(&entry.path())?;
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Writes the snapshot of `state` at `offset` (temporary file, rename), then
/// removes all but the newest [`SNAPSHOTS_KEPT`]. With `sync` the file is
/// fsynced before the rename (the directory is the caller's to sync).
pub(crate) fn write_snapshot(
    dir: &Path,
    state: &ProducerStateMap,
    offset: u64,
    sync: bool,
) -> Result<()> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension(format!("{SNAPSHOT_SUFFIX}.{TMP_SUFFIX}"));
    let bytes = state.encode_snapshot(offset);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        if sync {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| StorageError::io(&path, e))?;
    let offsets = list_snapshots(dir, true)?;
    let excess = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
    for old in offsets.iter().take(excess) {
        remove(&snapshot_path(dir, *old))?;
    }
    Ok(())
}

/// Removes snapshots older than `log_start`, keeping the newest one
/// whatever its offset: after retention, producers whose batches were
/// deleted are still in it (retention must not forget live producers).
/// Runs outside the log's lock (retention), so it leaves temporary files
/// alone; and before it removes anything the newest snapshot is made
/// durable, so a power loss cannot leave only snapshots that were never
/// synced (written at rolls) and lose the producers of deleted segments.
pub(crate) fn prune_below(dir: &Path, log_start: u64, backend: &dyn IoBackend) -> Result<()> {
    let offsets = list_snapshots(dir, false)?;
    let Some((newest, older)) = offsets.split_last() else {
        return Ok(());
    };
    let doomed: Vec<u64> = older.iter().copied().filter(|&o| o < log_start).collect();
    if doomed.is_empty() {
        return Ok(());
    }
    let path = snapshot_path(dir, *newest);
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io(&path, e))?;
    backend
        .sync_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?;
    for offset in doomed {
        remove(&snapshot_path(dir, offset))?;
    }
    Ok(())
}

/// Removes every producer snapshot of the log in `dir` (it restarts empty
/// at a later offset: what they describe is gone).
pub(crate) fn remove_all(dir: &Path) -> Result<()> {
    for offset in list_snapshots(dir, true)? {
        remove(&snapshot_path(dir, offset))?;
    }
    Ok(())
}

/// Rebuilds the producer state of the log whose segments are `segments`
/// (oldest first, every one readable up to its `written_size`) and whose
/// readable range is `log_start..end` (module docs). With `writable`,
/// snapshots past `end` or failing their checks are removed (and leftover
/// temporary files: callers hold the log's lock or are opening it).
/// Replayed batches count as recorded at `now_ms`: a batch's own timestamp
/// is the producer's clock, which must not age anyone (producer_state,
/// "Bounds").
#[expect(
    clippy::too_many_arguments,
    reason = "the log's parts and settings; open and the suffix removals pass them from different places"
)]
pub(crate) fn rebuild(
    dir: &Path,
    segments: &[Segment],
    log_start: u64,
    end: u64,
    max_producers: usize,
    expiration_ms: u64,
    writable: bool,
    now_ms: i64,
) -> Result<(ProducerStateMap, ProducerRebuild)> {
    let mut report = ProducerRebuild::default();
    let mut start = None;
    for offset in list_snapshots(dir, writable)?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > end {
            tracing::info!(path = %path.display(), log_end = end, "producer snapshot claims more than the log holds; ignoring it");
            report.snapshots_skipped += 1;
            if writable {
                remove(&path)?;
            }
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        match ProducerStateMap::decode_snapshot(&bytes, max_producers, expiration_ms) {
            Ok((claimed, state)) if claimed == offset => {
                start = Some((offset, state));
                break;
            }
            Ok((claimed, _)) => {
                tracing::warn!(path = %path.display(), claimed, "producer snapshot names another offset than its file; ignoring it");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "producer snapshot unreadable; trying an older one");
            }
        }
        report.snapshots_skipped += 1;
        if writable {
            remove(&path)?;
        }
    }
    let (from, mut state) = match start {
        Some((offset, state)) => {
            report.snapshot_offset = Some(offset);
            (offset.max(log_start), state)
        }
        None => (
            log_start,
            ProducerStateMap::new(max_producers, expiration_ms),
        ),
    };
    for segment in segments
        .iter()
        .filter(|s| s.next_offset > from && s.base_offset < end)
    {
        let pos = if segment.base_offset >= from {
            0
        } else {
            segment.scan_start_for(from).0
        };
        let replayed = for_each_header(segment.log.as_ref(), pos, segment.written_size, |header| {
            if header.base_offset >= from && header.base_offset < end {
                state.record(header, header.base_offset, now_ms);
                report.batches_replayed += 1;
            }
        });
        match replayed {
            Ok(()) => {}
            // Bytes that rotted in a segment trusted at open (reads will
            // refuse them too): the state covers the batches before them.
            Err(e @ StorageError::Corrupt { .. }) => {
                tracing::error!(dir = %dir.display(), error = %e, "producer state replay stopped at a damaged batch");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((state, report))
}

/// Calls `f` with each batch header of `file` from `pos` up to `limit`,
/// reading headers only (never a payload), several per read when batches
/// are small.
fn for_each_header(
    file: &dyn LogFile,
    mut pos: u64,
    limit: u64,
    mut f: impl FnMut(&BatchHeader),
) -> Result<()> {
    let corrupt = |pos: u64, reason: String| StorageError::Corrupt {
        path: file.path().to_path_buf(),
        position: pos,
        reason,
    };
    let mut buf = vec![0u8; SCAN_CHUNK_BYTES];
    let (mut buf_start, mut buf_len) = (0u64, 0usize);
    let mut last_len = 0u64;
    let mut expected: Option<u64> = None;
    while pos + HEADER_LEN as u64 <= limit {
        let held = pos >= buf_start && pos + HEADER_LEN as u64 <= buf_start + buf_len as u64;
        if !held {
            let want = if last_len > (SCAN_CHUNK_BYTES / 2) as u64 {
                HEADER_LEN
            } else {
                SCAN_CHUNK_BYTES
            };
            let n = usize::try_from(limit - pos).unwrap_or(usize::MAX).min(want);
            let chunk = buf.get_mut(..n).unwrap_or_default();
            file.read_at(pos, chunk)
                .map_err(|e| StorageError::io(file.path(), e))?;
            (buf_start, buf_len) = (pos, n);
        }
        // In bounds: `held` or the read above covers a whole header at `pos`.
        let at = (pos - buf_start) as usize;
        let bytes = buf.get(at..at + HEADER_LEN).unwrap_or_default();
        let header = BatchHeader::parse(bytes).map_err(|e| corrupt(pos, e.to_string()))?;
        let len = u64::from(header.batch_length);
        if pos + len > limit {
            return Err(corrupt(
                pos,
                format!("batch of {len} bytes runs past the end at {limit}"),
            ));
        }
        // Headers are not CRC-checked here (trusted segments were never
        // scanned): one that does not continue the offsets is damage, and
        // the replay stops before it as a read would.
        if expected.is_some_and(|e| e != header.base_offset) {
            return Err(corrupt(
                pos,
                format!(
                    "batch at offset {} does not continue the log",
                    header.base_offset
                ),
            ));
        }
        expected = Some(header.next_offset());
        f(&header);
        last_len = len;
        pos += len;
    }
    Ok(())
}
