//! Rill client library: admin, producer, consumer and group consumer over
//! Rill's wire protocol.
//!
//! The bootstrap string names one broker or a comma-separated list
//! (Kafka's `bootstrap.servers`); the client asks the first of them that
//! answers for the cluster's metadata, and from then on sends each
//! partition's Produce, Fetch and ListOffsets to that partition's leader
//! (see `cluster`), following leaders as they move. All encoding is
//! `rill-protocol`'s; this crate owns connections, leader routing,
//! batching, partitioning, retries and read positions.
//!
//! # Layout
//! - [`error`]: [`ClientError`], one `Clone` error with the broker's code
//!   and `is_retriable()`.
//! - [`connection`]: one pipelined TCP connection (writer and reader tasks,
//!   correlation ids, in-order responses, timeouts, version handshake).
//! - `cluster` (internal): the metadata cache (node addresses, partition
//!   leaders and epochs) and one reconnecting link per broker node;
//!   refreshes paced with backoff after leader errors.
//! - `coordinator` (internal): finds each consumer group's coordinator
//!   (FindCoordinator), one link per coordinator, found again (paced) when
//!   a broker says it is not the coordinator or cannot be reached.
//! - [`admin`]: create, delete, list and describe topics; list offsets;
//!   list, describe, reset and delete consumer groups.
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//! - [`producer`]: per-partition batching with linger, bounded buffer,
//!   compression, ordered retries.
//! - [`consumer`]: assign, seek, long-poll fetch with prefetch, records read
//!   in place.
//! - [`group`]: [`GroupConsumer`]: subscribe, broker-assigned partitions
//!   (KIP-848 heartbeats), rebalance callbacks, commits; fetches through a
//!   [`Consumer`].

pub mod admin;
mod cluster;
pub mod connection;
pub mod consumer;
mod coordinator;
pub mod error;
pub mod group;
pub mod partitioner;
pub mod producer;

pub use admin::{
    Admin, AdminConfig, ClusterDescription, GroupDescription, GroupListing, GroupMemberDescription,
    GroupPartitionOffset, OffsetReset, OffsetSpec, PartitionInfo, PartitionOffset, ResetTo,
    TopicDescription, DEFAULT_REPLICATION_FACTOR,
};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, RecordBatch, Records, SeekTo};
pub use error::{ClientError, Result};
pub use group::{
    AutoOffsetReset, GroupConsumer, GroupConsumerConfig, RebalanceListener, TopicPartition,
};
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerStats, RecordMetadata};
pub use rill_protocol::Compression;
