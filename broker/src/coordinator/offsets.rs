//! [`OffsetStore`]: committed consumer offsets, durable on the internal
//! topic `__consumer_offsets`, and rebuilt on start without replaying
//! history.
//!
//! # On disk
//! ```text
//! <dir>/offsets.snapshot        the whole map at the start of generation G
//! <dir>/gen-<G:020>/            a partition log: every commit since then
//! ```
//! A commit appends one batch (built with [`BatchBuilder`]) to the current
//! generation's log with [`Durability::Synced`]: it is acknowledged only
//! once durable. Records:
//! ```text
//! commit     key = group \0 topic \0 partition (u32 LE)
//!            value = offset (u64 LE) | u8 has_metadata | metadata (UTF-8)
//! tombstone  key = group (no NUL)   value = empty      the group was deleted
//! ```
//! Latest record wins. Start-up loads the snapshot and replays only the
//! current generation's log. After [`SNAPSHOT_EVERY_RECORDS_DEFAULT`]
//! records the store **rotates**: with commits held off, it writes the
//! whole map as the snapshot of generation G+1 (temp file, fsync, rename,
//! fsync of the directory), opens an empty log for G+1 and removes G's.
//! The snapshot names its generation, so a crash anywhere in the rotation
//! leaves either the old snapshot with the old log or the new snapshot
//! with an (empty or missing) new log; leftover generations are removed on
//! open. Replay and disk use are both bounded by the rotation interval.
//!
//! The snapshot holds the same records as the log, in CRC-checked batches,
//! framed by a header record (generation, entry count) and an end record,
//! so a cut or damaged snapshot is detected and refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use rill_protocol::batch::{BatchBuilder, BatchError, BatchIter, Compression};
use rill_storage::io::IoBackend;
use rill_storage::{Durability, LogConfig, PartitionLog, StorageError};
use tokio::sync::RwLock;

/// The internal topic's name, as Kafka's.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Records appended between two snapshots (bounds replay at start-up).
pub const SNAPSHOT_EVERY_RECORDS_DEFAULT: u64 = 100_000;
/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// A commit's records are split into batches of at most about this size.
const COMMIT_BATCH_BYTES_TARGET: usize = 256 * 1024;
/// Bytes read from the log per replay step.
const REPLAY_READ_BYTES: usize = 1024 * 1024;
/// Segments of the offsets log: small, the log is rotated away anyway.
const OFFSETS_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

const SNAPSHOT_FILE: &str = "offsets.snapshot";
const SNAPSHOT_TMP_FILE: &str = "offsets.snapshot.tmp";
/// Keys of the snapshot's first and last records; they start with NUL,
/// which no group id does, so they cannot be taken for commits.
const SNAPSHOT_HEADER_KEY: &[u8] = b"\0rill-offsets-snapshot";
const SNAPSHOT_END_KEY: &[u8] = b"\0rill-offsets-snapshot-end";
const GENERATION_PREFIX: &str = "gen-";
const KEY_SEPARATOR: u8 = 0;
const PARTITION_BYTES: usize = size_of::<u32>();
const OFFSET_BYTES: usize = size_of::<u64>();
const FLAG_BYTES: usize = 1;

const _: () = assert!(COMMIT_BATCH_BYTES_TARGET < rill_protocol::limits::BATCH_BYTES_MAX);

/// A committed offset: the next offset the group will consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: Option<String>,
}

/// Committed offsets of one group, by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, u32), CommittedOffset>;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("offsets batch: {0}")]
    Batch(#[from] BatchError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt offsets data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("offset metadata of {len} bytes is over the limit of {max}")]
    MetadataTooLarge { len: usize, max: usize },
    #[error("group id or topic name is empty or holds a NUL byte")]
    InvalidKey,
}

type Result<T, E = OffsetStoreError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OffsetStoreError + '_ {
    move |source| OffsetStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffsetStoreStats {
    /// Entries loaded from the snapshot at open.
    pub snapshot_entries_loaded: u64,
    /// Log records replayed at open.
    pub records_replayed: u64,
    /// Records appended since open.
    pub records_appended: u64,
    /// Snapshots written since open.
    pub snapshots_written: u64,
    /// Current generation.
    pub generation: u64,
}

#[derive(Debug, Default)]
struct State {
    offsets: BTreeMap<String, GroupOffsets>,
    records_in_log: u64,
    stats: OffsetStoreStats,
}

struct Current {
    generation: u64,
    log: PartitionLog,
}

/// The durable map of committed offsets. Shared as `Arc<OffsetStore>`.
pub struct OffsetStore {
    dir: PathBuf,
    backend: Arc<dyn IoBackend>,
    snapshot_every: u64,
    /// Commits hold it shared across their append; rotation exclusively,
    /// so the map it snapshots holds every acknowledged commit.
    current: RwLock<Current>,
    state: Mutex<State>,
    rotating: AtomicU64,
}

impl std::fmt::Debug for OffsetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: OFFSETS_SEGMENT_BYTES,
        // Never aged out: old records go with their generation.
        retention_ms: None,
        retention_bytes: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{GENERATION_PREFIX}{generation:020}"))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.as_bytes().contains(&KEY_SEPARATOR)
}

fn commit_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + topic.len() + 2 + PARTITION_BYTES);
    key.extend_from_slice(group.as_bytes());
    key.push(KEY_SEPARATOR);
    key.extend_from_slice(topic.as_bytes());
    key.push(KEY_SEPARATOR);
    key.extend_from_slice(&partition.to_le_bytes());
    key
}

fn commit_value(c: &CommittedOffset) -> Vec<u8> {
    let metadata = c.metadata.as_deref().unwrap_or("");
    let mut value = Vec::with_capacity(OFFSET_BYTES + FLAG_BYTES + metadata.len());
    value.extend_from_slice(&c.offset.to_le_bytes());
    value.push(u8::from(c.metadata.is_some()));
    value.extend_from_slice(metadata.as_bytes());
    value
}

/// One decoded record.
enum Entry {
    Commit {
        group: String,
        topic: String,
        partition: u32,
        committed: CommittedOffset,
    },
    Tombstone {
        group: String,
    },
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, String> {
    let Some(split) = key.iter().position(|&b| b == KEY_SEPARATOR) else {
        if !value.is_empty() {
            return Err("a group tombstone has a value".to_owned());
        }
        return Ok(Entry::Tombstone {
            group: utf8(key, "group id")?,
        });
    };
    let (group, rest) = key.split_at(split);
    let rest = rest.get(1..).unwrap_or_default();
    let split = rest
        .iter()
        .position(|&b| b == KEY_SEPARATOR)
        .ok_or("a commit key has no partition")?;
    let (topic, partition) = rest.split_at(split);
    let partition: [u8; PARTITION_BYTES] = partition
        .get(1..)
        .and_then(|p| p.try_into().ok())
        .ok_or("a commit key's partition is not 4 bytes")?;
    let (offset, rest) = value
        .split_first_chunk::<OFFSET_BYTES>()
        .ok_or("a commit value is shorter than an offset")?;
    let (&flag, metadata) = rest.split_first().ok_or("a commit value has no flag")?;
    let metadata = match flag {
        0 if metadata.is_empty() => None,
        1 => Some(utf8(metadata, "metadata")?),
        _ => return Err(format!("bad metadata flag {flag}")),
    };
    Ok(Entry::Commit {
        group: utf8(group, "group id")?,
        topic: utf8(topic, "topic")?,
        partition: u32::from_le_bytes(partition),
        committed: CommittedOffset {
            offset: u64::from_le_bytes(*offset),
            metadata,
        },
    })
}

fn apply(offsets: &mut BTreeMap<String, GroupOffsets>, entry: Entry) {
    match entry {
        Entry::Commit {
            group,
            topic,
            partition,
            committed,
        } => {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), committed);
        }
        Entry::Tombstone { group } => {
            offsets.remove(&group);
        }
    }
}

impl OffsetStore {
    /// Opens (or creates) the store in `dir`: loads the snapshot, replays
    /// the current generation's log, removes leftover generations.
    pub fn open(dir: &Path, backend: Arc<dyn IoBackend>) -> Result<Self> {
        Self::open_with(dir, backend, SNAPSHOT_EVERY_RECORDS_DEFAULT)
    }

    /// [`OffsetStore::open`] with a rotation interval (tests use small ones).
    pub fn open_with(dir: &Path, backend: Arc<dyn IoBackend>, snapshot_every: u64) -> Result<Self> {
        Self::open_in(dir, backend, snapshot_every, false)
    }

    /// Opens the store for reading only (a read-only data directory):
    /// offsets load as usual, nothing on disk changes (no leftover
    /// generation is removed, the log opens read-only), and every commit
    /// fails with `StorageError::ReadOnly`. A missing `dir` is an empty store.
    pub fn open_read_only(dir: &Path, backend: Arc<dyn IoBackend>) -> Result<Self> {
        Self::open_in(dir, backend, SNAPSHOT_EVERY_RECORDS_DEFAULT, true)
    }

    fn open_in(
        dir: &Path,
        backend: Arc<dyn IoBackend>,
        snapshot_every: u64,
        read_only: bool,
    ) -> Result<Self> {
        if !read_only {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let (generation, mut offsets) = match fs::read(&snapshot_path) {
            Ok(bytes) => decode_snapshot(&bytes).map_err(|reason| OffsetStoreError::Corrupt {
                path: snapshot_path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
            Err(e) => return Err(io_err(&snapshot_path)(e)),
        };
        let mut stats = OffsetStoreStats {
            snapshot_entries_loaded: offsets.values().map(|g| g.len() as u64).sum(),
            generation,
            ..OffsetStoreStats::default()
        };
        let log_dir = generation_dir(dir, generation);
        let log = if read_only {
            PartitionLog::open_read_only(&log_dir, log_config(), Arc::clone(&backend))?
        } else {
            remove_other_generations(dir, generation)?;
            PartitionLog::open(&log_dir, log_config(), Arc::clone(&backend))?
        };
        let replayed = replay(&log, &log_dir, &mut offsets)?;
        stats.records_replayed = replayed;
        tracing::info!(
            dir = %dir.display(),
            generation,
            snapshot_entries = stats.snapshot_entries_loaded,
            replayed,
            read_only,
            "consumer offsets loaded"
        );
        Ok(OffsetStore {
            dir: dir.to_owned(),
            backend,
            snapshot_every: snapshot_every.max(1),
            current: RwLock::new(Current { generation, log }),
            state: Mutex::new(State {
                offsets,
                records_in_log: replayed,
                stats,
            }),
            rotating: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each update is one insert), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Durably records `offsets` for `group`; returns once they are synced.
    /// All or nothing per batch; the map is updated only after the sync.
    pub async fn commit(
        &self,
        group: &str,
        offsets: &[(String, u32, CommittedOffset)],
    ) -> Result<()> {
        if !valid_name(group) || offsets.iter().any(|(t, _, _)| !valid_name(t)) {
            return Err(OffsetStoreError::InvalidKey);
        }
        if let Some(len) = offsets
            .iter()
            .filter_map(|(_, _, c)| c.metadata.as_ref().map(String::len))
            .find(|&len| len > OFFSET_METADATA_BYTES_MAX)
        {
            return Err(OffsetStoreError::MetadataTooLarge {
                len,
                max: OFFSET_METADATA_BYTES_MAX,
            });
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let mut batches = Vec::new();
        let mut builder = BatchBuilder::new(Compression::None);
        let now_ms = wall_ms();
        for (topic, partition, committed) in offsets {
            builder.push(
                now_ms,
                Some(&commit_key(group, topic, *partition)),
                &commit_value(committed),
                &[],
            );
            if builder.estimated_size() >= COMMIT_BATCH_BYTES_TARGET {
                let full = std::mem::replace(&mut builder, BatchBuilder::new(Compression::None));
                batches.push(full.finish_into_mut()?);
            }
        }
        if !builder.is_empty() {
            batches.push(builder.finish_into_mut()?);
        }
        self.append(batches, offsets.len() as u64, |all| {
            let map = all.entry(group.to_owned()).or_default();
            for (topic, partition, committed) in offsets {
                map.insert((topic.clone(), *partition), committed.clone());
            }
        })
        .await?;
        self.maybe_rotate().await
    }

    /// Durably forgets every offset of `group`. Returns whether it had any.
    pub async fn delete_group(&self, group: &str) -> Result<bool> {
        if !valid_name(group) {
            return Err(OffsetStoreError::InvalidKey);
        }
        if !self.lock().offsets.contains_key(group) {
            return Ok(false);
        }
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(wall_ms(), Some(group.as_bytes()), &[], &[]);
        self.append(vec![builder.finish_into_mut()?], 1, |all| {
            all.remove(group);
        })
        .await?;
        self.maybe_rotate().await?;
        Ok(true)
    }

    /// Appends synced, then applies the change to the map while still
    /// holding the generation shared: a rotation cannot snapshot the map
    /// between the append and the update and then drop the record.
    async fn append(
        &self,
        batches: Vec<BytesMut>,
        records: u64,
        update: impl FnOnce(&mut BTreeMap<String, GroupOffsets>),
    ) -> Result<()> {
        let current = self.current.read().await;
        for batch in batches {
            current.log.append(batch, Durability::Synced).await?;
        }
        let mut state = self.lock();
        update(&mut state.offsets);
        state.records_in_log += records;
        state.stats.records_appended += records;
        drop(state);
        drop(current);
        Ok(())
    }

    async fn maybe_rotate(&self) -> Result<()> {
        if self.lock().records_in_log < self.snapshot_every {
            return Ok(());
        }
        // One rotation at a time; others skip (the next commit retries).
        if self
            .rotating
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(());
        }
        let result = self.rotate().await;
        self.rotating.store(0, Ordering::Release);
        result
    }

    /// Writes the snapshot of the next generation and switches to it.
    async fn rotate(&self) -> Result<()> {
        let mut current = self.current.write().await;
        let next = current.generation + 1;
        let bytes = {
            let state = self.lock();
            encode_snapshot(next, &state.offsets)?
        };
        write_atomically(&self.dir, &bytes)?;
        let log_dir = generation_dir(&self.dir, next);
        let log = PartitionLog::open(&log_dir, log_config(), Arc::clone(&self.backend))?;
        let old = std::mem::replace(
            &mut *current,
            Current {
                generation: next,
                log,
            },
        );
        {
            let mut state = self.lock();
            state.records_in_log = 0;
            state.stats.snapshots_written += 1;
            state.stats.generation = next;
        }
        drop(current);
        let old_dir = generation_dir(&self.dir, old.generation);
        if let Err(e) = old.log.close().await {
            tracing::warn!(error = %e, "closing the old offsets log failed; it is removed anyway");
        }
        fs::remove_dir_all(&old_dir).map_err(io_err(&old_dir))?;
        tracing::info!(generation = next, "consumer offsets snapshot written");
        Ok(())
    }

    /// The committed offset of one partition.
    pub fn fetch(&self, group: &str, topic: &str, partition: u32) -> Option<CommittedOffset> {
        self.lock()
            .offsets
            .get(group)
            .and_then(|g| g.get(&(topic.to_owned(), partition)))
            .cloned()
    }

    /// Every committed offset of a group (empty if none).
    pub fn group_offsets(&self, group: &str) -> GroupOffsets {
        self.lock().offsets.get(group).cloned().unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.lock().offsets.keys().cloned().collect()
    }

    pub fn stats(&self) -> OffsetStoreStats {
        self.lock().stats
    }

    /// Flushes and closes the current log (clean shutdown).
    pub async fn close(self) -> Result<()> {
        self.current.into_inner().log.close().await?;
        Ok(())
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn replay(
    log: &PartitionLog,
    path: &Path,
    offsets: &mut BTreeMap<String, GroupOffsets>,
) -> Result<u64> {
    let corrupt = |reason: String| OffsetStoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    let mut replayed = 0u64;
    while next < end {
        let bytes = log.read(next, REPLAY_READ_BYTES)?;
        if bytes.is_empty() {
            break;
        }
        let before = next;
        for batch in BatchIter::new(&bytes) {
            let batch = batch?;
            let records = batch.validate_full()?;
            for record in records.iter() {
                let key = record
                    .key()
                    .ok_or_else(|| corrupt("a record has no key".to_owned()))?;
                apply(offsets, decode_entry(key, record.value()).map_err(corrupt)?);
                replayed += 1;
            }
            next = batch.header().next_offset();
        }
        if next <= before {
            return Err(corrupt(format!("no whole batch readable at offset {next}")));
        }
    }
    Ok(replayed)
}

fn remove_other_generations(dir: &Path, keep: u64) -> Result<()> {
    let keep = generation_dir(dir, keep);
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let is_generation = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(GENERATION_PREFIX));
        if is_generation && path != keep {
            tracing::info!(path = %path.display(), "removing a superseded offsets generation");
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// The snapshot: the same records as the log, in CRC-checked batches,
/// between a header record (generation, entry count) and an end record
/// (entry count), so that a file cut at a batch boundary is detected too.
fn encode_snapshot(
    generation: u64,
    offsets: &BTreeMap<String, GroupOffsets>,
) -> Result<Vec<u8>, BatchError> {
    let count: u64 = offsets.values().map(|g| g.len() as u64).sum();
    let now_ms = wall_ms();
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new(Compression::None);
    let mut header = generation.to_le_bytes().to_vec();
    header.extend_from_slice(&count.to_le_bytes());
    builder.push(now_ms, Some(SNAPSHOT_HEADER_KEY), &header, &[]);
    for (group, map) in offsets {
        for ((topic, partition), committed) in map {
            builder.push(
                now_ms,
                Some(&commit_key(group, topic, *partition)),
                &commit_value(committed),
                &[],
            );
            if builder.estimated_size() >= COMMIT_BATCH_BYTES_TARGET {
                let full = std::mem::replace(&mut builder, BatchBuilder::new(Compression::None));
                out.extend_from_slice(&full.finish()?);
            }
        }
    }
    builder.push(now_ms, Some(SNAPSHOT_END_KEY), &count.to_le_bytes(), &[]);
    out.extend_from_slice(&builder.finish()?);
    Ok(out)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + OFFSET_BYTES)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

fn decode_snapshot(bytes: &[u8]) -> Result<(u64, BTreeMap<String, GroupOffsets>), String> {
    let mut offsets: BTreeMap<String, GroupOffsets> = BTreeMap::new();
    let mut header: Option<(u64, u64)> = None;
    let mut entries = 0u64;
    let mut ended = false;
    let mut batches = BatchIter::new(bytes);
    for batch in batches.by_ref() {
        let batch = batch.map_err(|e| e.to_string())?;
        let records = batch.validate_full().map_err(|e| e.to_string())?;
        for record in records.iter() {
            let key = record.key().ok_or("a snapshot record has no key")?;
            if ended {
                return Err("records after the end record".to_owned());
            }
            match (header, key) {
                (None, SNAPSHOT_HEADER_KEY) => {
                    let v = record.value();
                    let generation = u64_at(v, 0).ok_or("short snapshot header")?;
                    let count = u64_at(v, OFFSET_BYTES).ok_or("short snapshot header")?;
                    header = Some((generation, count));
                }
                (None, _) => return Err("the snapshot does not start with its header".to_owned()),
                (Some((_, count)), SNAPSHOT_END_KEY) => {
                    if u64_at(record.value(), 0) != Some(count) || entries != count {
                        return Err(format!("snapshot holds {entries} entries, says {count}"));
                    }
                    ended = true;
                }
                (Some(_), key) => {
                    apply(&mut offsets, decode_entry(key, record.value())?);
                    entries += 1;
                }
            }
        }
    }
    if !batches.remaining().is_empty() {
        return Err(format!(
            "{} bytes of a cut batch at the end",
            batches.remaining().len()
        ));
    }
    match header {
        Some((generation, _)) if ended => Ok((generation, offsets)),
        _ => Err("the snapshot has no end record (cut short)".to_owned()),
    }
}

/// Temp file, fsync, rename over the snapshot, fsync the directory: the
/// snapshot is the old one or the new one, never a mix.
fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let target = dir.join(SNAPSHOT_FILE);
    let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &target).map_err(io_err(&target))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Real files in a tempdir, the real std I/O backend.

    use super::*;
    use rill_storage::io::{open_backend, IoBackendChoice};

    fn backend() -> Arc<dyn IoBackend> {
        open_backend(IoBackendChoice::Std).expect("std backend")
    }

    fn c(offset: u64, metadata: Option<&str>) -> CommittedOffset {
        CommittedOffset {
            offset,
            metadata: metadata.map(str::to_owned),
        }
    }

    fn entry(topic: &str, p: u32, o: CommittedOffset) -> (String, u32, CommittedOffset) {
        (topic.to_owned(), p, o)
    }

    #[tokio::test]
    async fn commits_survive_a_reopen_latest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OffsetStore::open(dir.path(), backend()).expect("open");
        store
            .commit(
                "g",
                &[entry("t", 0, c(5, None)), entry("t", 1, c(7, Some("m")))],
            )
            .await
            .expect("commit");
        store
            .commit("g", &[entry("t", 0, c(9, Some("")))])
            .await
            .expect("commit");
        store
            .commit("h", &[entry("u", 3, c(1, None))])
            .await
            .expect("commit");
        assert_eq!(store.fetch("g", "t", 0), Some(c(9, Some(""))));
        // Dropped without close: as after a crash; commits were synced.
        drop(store);
        let store = OffsetStore::open(dir.path(), backend()).expect("reopen");
        assert_eq!(store.fetch("g", "t", 0), Some(c(9, Some(""))));
        assert_eq!(store.fetch("g", "t", 1), Some(c(7, Some("m"))));
        assert_eq!(store.fetch("h", "u", 3), Some(c(1, None)));
        assert_eq!(store.fetch("h", "u", 4), None);
        assert_eq!(store.groups(), ["g", "h"]);
        assert_eq!(store.stats().records_replayed, 4);
    }

    #[tokio::test]
    async fn deleted_group_stays_deleted_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OffsetStore::open(dir.path(), backend()).expect("open");
        store
            .commit("g", &[entry("t", 0, c(5, None))])
            .await
            .expect("commit");
        store
            .commit("keep", &[entry("t", 0, c(6, None))])
            .await
            .expect("commit");
        assert!(store.delete_group("g").await.expect("delete"));
        assert!(!store.delete_group("g").await.expect("delete again"));
        store.close().await.expect("close");
        let store = OffsetStore::open(dir.path(), backend()).expect("reopen");
        assert_eq!(store.group_offsets("g"), GroupOffsets::new());
        assert_eq!(store.fetch("keep", "t", 0), Some(c(6, None)));
        // Commits after a delete start the group afresh.
        store
            .commit("g", &[entry("t", 1, c(1, None))])
            .await
            .expect("commit");
        drop(store);
        let store = OffsetStore::open(dir.path(), backend()).expect("reopen");
        assert_eq!(store.group_offsets("g").len(), 1);
    }

    #[tokio::test]
    async fn reopen_after_many_commits_replays_only_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let every = 50;
        let store = OffsetStore::open_with(dir.path(), backend(), every).expect("open");
        let commits = 237u64;
        for i in 0..commits {
            let p = (i % 4) as u32;
            store
                .commit("g", &[entry("t", p, c(i, None))])
                .await
                .expect("commit");
        }
        let stats = store.stats();
        assert_eq!(stats.snapshots_written, commits / every);
        drop(store);
        let store = OffsetStore::open_with(dir.path(), backend(), every).expect("reopen");
        let stats = store.stats();
        assert_eq!(stats.records_replayed, commits % every, "only the tail");
        assert_eq!(stats.snapshot_entries_loaded, 4);
        for p in 0..4u32 {
            let last = (0..commits)
                .filter(|i| i % 4 == u64::from(p))
                .max()
                .expect("some");
            assert_eq!(
                store.fetch("g", "t", p),
                Some(c(last, None)),
                "partition {p}"
            );
        }
        // Superseded generations were removed: one log directory remains.
        let generations = fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(GENERATION_PREFIX)
                })
            })
            .count();
        assert_eq!(generations, 1);
    }

    #[tokio::test]
    async fn crash_between_snapshot_and_switch_keeps_every_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OffsetStore::open_with(dir.path(), backend(), 1_000).expect("open");
        store
            .commit("g", &[entry("t", 0, c(3, Some("x")))])
            .await
            .expect("commit");
        let state = store.lock().offsets.clone();
        drop(store);
        // As if the process died right after renaming the next snapshot in:
        // generation 1's log does not exist yet, generation 0's does.
        let snapshot = encode_snapshot(1, &state).expect("encode");
        write_atomically(dir.path(), &snapshot).expect("snapshot");
        let store = OffsetStore::open(dir.path(), backend()).expect("reopen");
        assert_eq!(store.fetch("g", "t", 0), Some(c(3, Some("x"))));
        assert_eq!(store.stats().generation, 1);
        assert!(
            !generation_dir(dir.path(), 0).exists(),
            "old generation removed"
        );
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_a_corrupt_snapshot_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = OffsetStore::open(dir.path(), backend()).expect("open");
        let big = "x".repeat(OFFSET_METADATA_BYTES_MAX + 1);
        let err = store
            .commit("g", &[entry("t", 0, c(1, Some(&big)))])
            .await
            .unwrap_err();
        assert!(
            matches!(err, OffsetStoreError::MetadataTooLarge { .. }),
            "{err}"
        );
        let err = store
            .commit("g\0x", &[entry("t", 0, c(1, None))])
            .await
            .unwrap_err();
        assert!(matches!(err, OffsetStoreError::InvalidKey), "{err}");
        assert_eq!(store.groups(), Vec::<String>::new());
        drop(store);
        let mut snapshot = encode_snapshot(0, &BTreeMap::new()).expect("encode");
        if let Some(b) = snapshot.last_mut() {
            *b ^= 1;
        }
        fs::write(dir.path().join(SNAPSHOT_FILE), &snapshot).expect("write");
        let err = OffsetStore::open(dir.path(), backend()).unwrap_err();
        assert!(matches!(err, OffsetStoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn snapshot_round_trips_and_rejects_every_truncation() {
        let mut offsets: BTreeMap<String, GroupOffsets> = BTreeMap::new();
        offsets
            .entry("g".to_owned())
            .or_default()
            .insert(("t".to_owned(), 2), c(42, Some("meta")));
        offsets
            .entry("h".to_owned())
            .or_default()
            .insert(("u".to_owned(), 0), c(0, None));
        let bytes = encode_snapshot(7, &offsets).expect("encode");
        assert_eq!(decode_snapshot(&bytes), Ok((7, offsets)));
        for cut in 0..bytes.len() {
            assert!(
                decode_snapshot(bytes.get(..cut).unwrap_or_default()).is_err(),
                "cut {cut}"
            );
        }
    }
}
