//! The broker's errors, and the single place where storage and topic errors
//! become wire error codes.

use crate::cluster::ClusterError;
use crate::partition::PartitionError;
use rill_protocol::wire::ErrorCode;
use rill_protocol::BatchError;
use rill_storage::{ProducerError, StorageError};

use crate::config::ConfigError;
use crate::topics::TopicError;

/// Why the broker could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The data directory cannot be written for a reason other than a
    /// read-only mount or missing permissions (which start the broker
    /// read-only): the broker does not start.
    #[error("data directory {path} is not writable: {source}")]
    DataDirNotWritable {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the storage I/O backend: {0}")]
    Backend(#[source] std::io::Error),
    #[error("cannot open topics: {0}")]
    Topics(#[from] TopicError),
    #[error("cannot open the consumer offsets store: {0}")]
    Offsets(#[from] crate::coordinator::OffsetStoreError),
    #[error("cannot open the producer id allocator: {0}")]
    ProducerIds(#[from] crate::producer_ids::ProducerIdError),
    #[error("a start-up task failed: {0}")]
    Task(String),
    #[error("cannot start cluster mode: {0}")]
    Cluster(#[from] ClusterError),
}

/// The wire code for a storage error (per partition).
pub fn storage_error_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::InvalidBatch(b) => batch_error_code(b),
        StorageError::LogFailed { .. } => ErrorCode::LogFailed,
        // Bytes on disk that fail their CRC: the batch is withheld, as
        // Kafka answers a corrupt stored record.
        StorageError::Corrupt { .. } => ErrorCode::CorruptMessage,
        // A full disk is retriable: the log rolls back and takes appends
        // again once space returns.
        // A read-only data directory answers Kafka's KAFKA_STORAGE_ERROR
        // (56) too; the message names the read-only directory.
        StorageError::Io { .. }
        | StorageError::WriteRefused { .. }
        | StorageError::ReadOnly { .. }
        | StorageError::Closed => ErrorCode::StorageError,
        StorageError::Config(_) => ErrorCode::InvalidConfig,
        StorageError::Producer(p) => producer_error_code(p),
        _ => ErrorCode::UnknownServerError,
    }
}

/// The wire code for an idempotent batch the producer checks refused
/// (Kafka's numbers).
/// The wire code of a refused cluster change.
pub fn cluster_error_code(e: &ClusterError) -> ErrorCode {
    match e {
        ClusterError::Topic(t) => topic_error_code(t),
        ClusterError::ReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        ClusterError::NoController(_) => ErrorCode::NotController,
        ClusterError::Identity { .. }
        | ClusterError::PeersChanged { .. }
        | ClusterError::Replication(_) => ErrorCode::UnknownServerError,
    }
}

/// The wire code of a partition's refusal (see [`PartitionError`]).
pub fn partition_error_code(e: &PartitionError) -> ErrorCode {
    match e {
        PartitionError::Storage(s) => storage_error_code(s),
        PartitionError::NotLeader { leader: Some(_) } => ErrorCode::NotLeaderOrFollower,
        PartitionError::NotLeader { leader: None } => ErrorCode::LeaderNotAvailable,
        PartitionError::LeaderChanged | PartitionError::Stopped(_) => {
            ErrorCode::NotLeaderOrFollower
        }
        PartitionError::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
        PartitionError::TimedOut(_) => ErrorCode::RequestTimedOut,
    }
}

pub fn producer_error_code(e: &ProducerError) -> ErrorCode {
    match e {
        ProducerError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        ProducerError::DuplicateSequence { .. } => ErrorCode::DuplicateSequenceNumber,
        ProducerError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        ProducerError::UnknownProducerId { .. } => ErrorCode::UnknownProducerId,
        _ => ErrorCode::InvalidRequest,
    }
}

/// The wire code for a batch a producer sent that failed its checks.
pub fn batch_error_code(e: &BatchError) -> ErrorCode {
    match e {
        BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        _ => ErrorCode::CorruptMessage,
    }
}

/// The wire code for a failed topic operation.
pub fn topic_error_code(e: &TopicError) -> ErrorCode {
    match e {
        TopicError::InvalidName(_) => ErrorCode::InvalidTopic,
        TopicError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        TopicError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        TopicError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        TopicError::Unknown(_) => ErrorCode::UnknownTopicOrPartition,
        TopicError::Storage(s) => storage_error_code(s),
        TopicError::Io { .. } | TopicError::BadMeta { .. } | TopicError::ReadOnly { .. } => {
            ErrorCode::StorageError
        }
    }
}
