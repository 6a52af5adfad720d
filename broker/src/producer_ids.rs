//! Producer ids for idempotent producers, unique across restarts.
//!
//! Ids are handed out from blocks of [`PRODUCER_ID_BLOCK_SIZE`]; the first
//! is reserved at start. Before the first id of a block is given to
//! anyone, the end of that block is written
//! to `data_dir/__meta/producer_ids` (temporary file, fsync, rename,
//! directory fsync), so a restart — after `kill -9` too — starts at the
//! next block and never repeats an id; a crash wastes at most the rest of
//! one block. The file holds one line, `next_block_start=<id>`.
//!
//! In cluster mode blocks come from the controller instead (`cluster`);
//! this file then only bounds them from below: ids a lone broker handed
//! out before its directory joined a cluster are never handed out again.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

/// Ids per block persisted at once (Kafka's controller hands out blocks of
/// the same size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
const FILE_NAME: &str = "producer_ids";
const TMP_SUFFIX: &str = "tmp";
const KEY: &str = "next_block_start=";

/// Why an id could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer id file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("producer id file {path} is corrupt: {content:?}")]
    Corrupt { path: PathBuf, content: String },
    #[error("the data directory is read-only: no producer ids can be handed out")]
    ReadOnly,
    #[error("producer ids are exhausted")]
    Exhausted,
    #[error("a blocking task failed: {0}")]
    Task(String),
}

#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

/// Hands out producer ids; see the module docs.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    read_only: bool,
    block: Mutex<Block>,
}

impl ProducerIdAllocator {
    /// Reads where the last run left off and, on a writable directory,
    /// reserves the first block at once: producers can start even if the
    /// disk fills later. Blocking (an fsync): call it at start-up.
    pub fn open(meta_dir: &Path, read_only: bool) -> Result<Self, ProducerIdError> {
        let path = meta_dir.join(FILE_NAME);
        let start = read_next_block_start(&path)?;
        let end = if read_only {
            start
        } else {
            let end = start
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            persist(&path, end)?;
            end
        };
        Ok(ProducerIdAllocator {
            path,
            read_only,
            block: Mutex::new(Block { next: start, end }),
        })
    }

    /// Every id below this was handed out (or wasted by a crash); none at or
    /// above it ever was.
    pub async fn issued_below(&self) -> i64 {
        self.block.lock().await.next
    }

    /// A producer id no one has had, in this run or any before it.
    pub async fn next_id(&self) -> Result<i64, ProducerIdError> {
        let mut block = self.block.lock().await;
        if block.next >= block.end {
            if self.read_only {
                return Err(ProducerIdError::ReadOnly);
            }
            let start = block.next;
            let end = start
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || persist(&path, end))
                .await
                .map_err(|e| ProducerIdError::Task(e.to_string()))??;
            tracing::debug!(start, end, "producer id block allocated");
            block.end = end;
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }
}

fn read_next_block_start(path: &Path) -> Result<i64, ProducerIdError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(ProducerIdError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.trim()
        .strip_prefix(KEY)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .ok_or_else(|| ProducerIdError::Corrupt {
            path: path.to_path_buf(),
            content: text.chars().take(80).collect(),
        })
}

/// Records durably that ids below `end` may have been handed out.
fn persist(path: &Path, end: i64) -> Result<(), ProducerIdError> {
    let io = |source| ProducerIdError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension(TMP_SUFFIX);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(format!("{KEY}{end}\n").as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_never_repeat_across_reopens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let ids = ProducerIdAllocator::open(dir.path(), false).expect("open");
            for _ in 0..1_500 {
                assert!(seen.insert(ids.next_id().await.expect("id")));
            }
        }
        // Three runs of 1,500 ids: two blocks each (the first reserved at
        // open), the rest of the second wasted.
        let ids = ProducerIdAllocator::open(dir.path(), false).expect("open");
        assert_eq!(ids.next_id().await.expect("id"), 6 * PRODUCER_ID_BLOCK_SIZE);
    }

    #[tokio::test]
    async fn corrupt_file_is_an_error_and_read_only_hands_out_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE_NAME), "garbage").expect("write");
        assert!(matches!(
            ProducerIdAllocator::open(dir.path(), false),
            Err(ProducerIdError::Corrupt { .. })
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let ids = ProducerIdAllocator::open(dir.path(), true).expect("open");
        assert!(matches!(
            ids.next_id().await,
            Err(ProducerIdError::ReadOnly)
        ));
    }
}
