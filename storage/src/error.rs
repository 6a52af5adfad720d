//! Typed errors of the storage engine.

use std::path::PathBuf;

use rill_protocol::BatchError;

/// Everything the storage engine can report to its caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("offset {requested} is out of range [{log_start}, {log_end})")]
    OffsetOutOfRange {
        requested: u64,
        log_start: u64,
        log_end: u64,
    },
    /// A write or fsync failed earlier; the log's on-disk state is unknown
    /// until it is reopened (and recovered), so it refuses further writes.
    #[error("log is failed after an earlier I/O error ({reason}); reopen it to recover")]
    LogFailed { reason: String },
    /// A write was refused for lack of space (`ENOSPC`, `EDQUOT`, `EFBIG`):
    /// this append was discarded, or waits for the log's rollback. Not a
    /// lasting failure: appends are accepted again once the rollback ran
    /// and space returned.
    #[error("write refused: {reason}")]
    WriteRefused { reason: String },
    /// The log was opened read-only (its data directory cannot be
    /// written): it serves reads and refuses every append.
    #[error("log directory {dir} is read-only (read-only data directory): reads are served, writes refused")]
    ReadOnly { dir: PathBuf },
    /// An idempotent batch was refused by the producer checks (a gap, a
    /// fenced epoch, an unknown producer): nothing was written.
    #[error("{0}")]
    Producer(#[from] crate::producer_state::ProducerError),
    /// A replica's batch does not continue the log: the base offset its
    /// leader stamped is not this log's next offset. Nothing was written.
    #[error("replicated batch has base offset {got}, but the log continues at offset {expected}")]
    OffsetMismatch { expected: u64, got: u64 },
    #[error("log is closed")]
    Closed,
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
