//! A partition as the broker serves it: the layer between the handlers and
//! the storage engine.
//!
//! Handlers know the protocol and nothing of how a partition keeps its
//! data; a [`Partition`] knows how its data is kept — today one local
//! [`PartitionLog`], in cluster mode also its replication — and nothing of
//! the protocol. (Kafka splits its `KafkaApis` and `Partition` the same
//! way.) Everything a handler asks of a partition goes through here:
//! append at an ack level, read below the high watermark, the offsets
//! clients see, and the watch that wakes long-polling fetches.
//!
//! With one replica the high watermark is the log's written end: a record
//! is readable once written, and `acks=all` means fsynced (group commit),
//! as ARCHITECTURE.md's ack table says.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rill_storage::{
    AppendInfo, Durability, LogStats, PartitionLog, RetentionOutcome, StorageError,
};
use tokio::sync::watch;

use crate::metrics;

/// How much of a write a producer waits for: Kafka's `acks` without the
/// wire encoding (`acks=none` appends as [`AckLevel::Leader`] and is not
/// answered, which is the handler's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckLevel {
    /// Appended to the leader's log: readable, not yet durable.
    Leader,
    /// Durable: on a single replica, fsynced.
    All,
}

impl AckLevel {
    fn durability(self) -> Durability {
        match self {
            AckLevel::Leader => Durability::Written,
            AckLevel::All => Durability::Synced,
        }
    }
}

/// One partition of a topic, hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    topic: Arc<str>,
    id: u32,
    log: Arc<PartitionLog>,
}

impl Partition {
    pub(crate) fn new(topic: Arc<str>, id: u32, log: PartitionLog) -> Partition {
        Partition {
            topic,
            id,
            log: Arc::new(log),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Appends one batch (its header checked by the log, its offsets
    /// stamped there). The log fixes the batch's offsets in the future's
    /// first poll, synchronously (see `handlers::produce`); the future is
    /// `'static` so that the rest can finish on another task.
    pub fn append(
        &self,
        batch: BytesMut,
        ack: AckLevel,
    ) -> impl Future<Output = Result<AppendInfo, StorageError>> + Send + 'static {
        let log = Arc::clone(&self.log);
        async move {
            let started = Instant::now();
            let result = log.append(batch, ack.durability()).await;
            if ack == AckLevel::All && result.as_ref().is_ok_and(|i| !i.duplicate) {
                ::metrics::histogram!(metrics::FSYNC_DURATION_SECONDS)
                    .record(started.elapsed().as_secs_f64());
            }
            result
        }
    }

    /// Whole batches from `offset`, at most `max_bytes` (but always one
    /// whole batch when there is one), never past the high watermark.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        self.log.read(offset, max_bytes)
    }

    /// The offset below which records are visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        self.log.log_end_offset()
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log.log_start_offset()
    }

    /// The next offset this partition will assign.
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// The first offset whose batch's max timestamp is at or after `ts_ms`.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>, StorageError> {
        self.log.offset_for_timestamp(ts_ms)
    }

    /// A watch of the high watermark, for long-polling fetches.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.log.subscribe()
    }

    /// Opened on a read-only data directory: appends are refused.
    pub fn is_read_only(&self) -> bool {
        self.log.is_read_only()
    }

    /// Periodic work: interval fsync, roll by age, producer id expiry.
    pub(crate) fn tick(&self, now_ms: i64) {
        self.log.tick(now_ms);
    }

    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        self.log.enforce_retention(now_ms)
    }

    pub(crate) fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Closes the log cleanly (flush, indexes, clean-shutdown marker). A log
    /// an unfinished append still holds is flushed instead and recovers on
    /// next start.
    pub(crate) async fn close(self) -> Result<(), StorageError> {
        match Arc::try_unwrap(self.log) {
            Ok(log) => log.close().await,
            Err(shared) => {
                tracing::warn!(topic = %self.topic, partition = self.id, "partition log still in use at shutdown; flushing only (it will recover on next start)");
                shared.flush().await
            }
        }
    }

    /// Makes everything written so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StorageError> {
        self.log.flush().await
    }
}
