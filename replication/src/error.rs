//! Typed errors of the replication layer, and their conversion to the
//! `io::Error` openraft's storage traits return.

use std::io;
use std::path::PathBuf;

use rill_protocol::BatchError;
use rill_storage::StorageError;

/// Everything the replication layer can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    #[error("partition log: {0}")]
    Storage(#[from] StorageError),
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    #[error("I/O error on raft state file {path}: {source}")]
    StateFileIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The state file exists but is torn, altered or not ours: the vote and
    /// the log's first index are unknown, so the store refuses to open.
    #[error("raft state file {path} is damaged: {reason}")]
    StateFileCorrupt { path: PathBuf, reason: String },
    /// The state file and the partition log disagree (entries missing,
    /// batches that are not the entries the state file describes).
    #[error("partition log {dir} does not match its raft state: {reason}")]
    LogMismatch { dir: PathBuf, reason: String },
    /// The batch header keeps the term in 32 bits; a larger one is refused
    /// rather than truncated (two terms would then look alike).
    #[error("entry {index} has term {term}, above the largest a batch can carry (u32::MAX)")]
    TermTooLarge { index: u64, term: u64 },
    /// Terms in a Raft log never decrease; an entry that would break this
    /// is refused (the index at open checks the same).
    #[error("entry {index} has term {term}, below the log's last term {last}")]
    TermDecreases { index: u64, term: u64, last: u64 },
    /// An append would leave a hole in the log or rewrite an entry.
    #[error("entry {got} does not continue the log, whose next index is {expected}")]
    NotContiguous { expected: u64, got: u64 },
    /// A normal entry carried a control batch: it would be read back as
    /// one of the log store's own entries.
    #[error("a normal entry's batch has the control attribute set")]
    ControlBatchAsData,
    #[error("control batch at offset {offset}: {reason}")]
    ControlPayload { offset: u64, reason: String },
    #[error("entries [{start}, {end}) were read while the log changed under the read")]
    ReadRaced { start: u64, end: u64 },
    #[error("cannot truncate after index {index}: entries up to {purged} are purged")]
    TruncateBelowPurged { index: u64, purged: u64 },
    #[error("cannot listen for peers on {addr}: {message}")]
    Listen {
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("node {0} is not a broker of this cluster")]
    UnknownNode(u64),
    #[error("node {node} is not one of the replicas {replicas:?}")]
    NotAReplica { node: u64, replicas: Vec<u64> },
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid raft configuration: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("unknown replication flush mode {0:?}: expected synced or written")]
    UnknownFlushMode(String),
}

impl ReplicationError {
    fn kind(&self) -> io::ErrorKind {
        use ReplicationError as E;
        match self {
            E::Storage(StorageError::Io { source, .. }) => source.kind(),
            E::StateFileIo { source, .. } => source.kind(),
            E::TermTooLarge { .. }
            | E::TermDecreases { .. }
            | E::NotContiguous { .. }
            | E::ControlBatchAsData
            | E::Batch(_)
            | E::TruncateBelowPurged { .. }
            | E::Config(_)
            | E::UnknownFlushMode(_) => io::ErrorKind::InvalidInput,
            E::StateFileCorrupt { .. }
            | E::LogMismatch { .. }
            | E::ControlPayload { .. }
            | E::Storage(StorageError::Corrupt { .. }) => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        }
    }
}

impl From<ReplicationError> for io::Error {
    fn from(e: ReplicationError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// A [`ReplicationError`] and the storage operation it failed, as openraft
/// receives it inside an `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("raft log store: {op}: {source}")]
pub struct OpError {
    pub op: &'static str,
    #[source]
    pub source: ReplicationError,
}

impl ReplicationError {
    /// The `io::Error` openraft's storage traits return, naming `op`; the
    /// typed error stays reachable as its inner error.
    pub(crate) fn into_io(self, op: &'static str) -> io::Error {
        io::Error::new(self.kind(), OpError { op, source: self })
    }
}
