//! Shared helpers: a fresh partition log and its Raft log store in a temp
//! dir, entries, and a blocking append.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::EntryPayload;
use rill_protocol::batch::{BatchBuilder, Compression};
use rill_replication::{default_state_path, Entry, LogId, LogStore, RaftBatch, TypeConfig};
use rill_storage::io::{open_backend, IoBackendChoice};
use rill_storage::{FsyncPolicy, LogConfig, PartitionLog};
use tempfile::TempDir;

/// A temp dir under target/, on the build's real disk.
pub fn tempdir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// Small segments, so the tests cross rolls; nothing time-based.
pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        index_interval_bytes: 256,
        retention_ms: None,
        retention_bytes: None,
        fsync: FsyncPolicy::Never,
        max_batch_bytes: 1024 * 1024,
        ..LogConfig::default()
    }
}

pub fn partition_dir(tmp: &Path) -> PathBuf {
    tmp.join("topic-0")
}

pub fn open_log(tmp: &Path) -> Arc<PartitionLog> {
    let backend = open_backend(IoBackendChoice::Std).expect("std backend");
    Arc::new(PartitionLog::open(&partition_dir(tmp), config(), backend).expect("open log"))
}

pub fn open_store(tmp: &Path) -> Result<LogStore, rill_replication::ReplicationError> {
    let log = open_log(tmp);
    LogStore::open(log, default_state_path(&partition_dir(tmp)))
}

/// A data batch of `records` records derived from `seed`.
pub fn data(records: usize, seed: u64) -> RaftBatch {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let value = format!("value-{seed}-{i}-{}", "x".repeat(50));
        b.push(1_000 + seed as i64, Some(b"key"), value.as_bytes(), &[]);
    }
    RaftBatch::new(b.finish().expect("valid batch")).expect("a data batch")
}

pub fn normal(term: u64, index: u64, batch: RaftBatch) -> Entry {
    Entry {
        log_id: LogId::new_term_index(term, index),
        payload: EntryPayload::Normal(batch),
    }
}

pub fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new_term_index(term, index),
        payload: EntryPayload::Blank,
    }
}

/// Appends and waits for the flush callback.
pub async fn append(store: &mut LogStore, entries: Vec<Entry>) -> std::io::Result<()> {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.expect("callback called")
}
