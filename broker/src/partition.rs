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
//!
//! A partition with several replicas (cluster mode) is a Raft group whose
//! log is this partition's log (`rill_replication`). Only its leader takes
//! appends; the high watermark is the end of the last committed entry, and
//! reads stop there, so no consumer sees a record a failover could remove.
//! The leader runs the idempotent producer checks itself before it hands a
//! batch to Raft (whose appends record producer state but never refuse),
//! one batch at a time up to the moment the batch is in its log, so nothing
//! lands between a check and its append; waiting for the commit happens
//! outside that order.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rill_protocol::batch::BatchHeader;
use rill_replication::{AppendError, PartitionReplica, ReplicaStatus};
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

/// Why an append or a read was not served.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// This replica does not lead the partition; `leader` is the one it
    /// knows of (`None` during an election).
    #[error("this broker does not lead the partition (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// Leadership moved while the write was in flight: it may or may not
    /// be committed by the new leader (an idempotent retry is deduplicated
    /// either way).
    #[error("leadership changed while the write was in flight")]
    LeaderChanged,
    /// No majority acknowledged this leader within an election timeout.
    #[error("no majority of the replicas acknowledged the leader within the election timeout")]
    NotEnoughReplicas,
    /// The write did not commit within the request's `timeout_ms`.
    #[error("not committed within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("replication stopped: {0}")]
    Stopped(String),
}

impl From<AppendError> for PartitionError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::NotLeader { leader } => PartitionError::NotLeader { leader },
            AppendError::LeaderChanged { .. } => PartitionError::LeaderChanged,
            AppendError::NoQuorum => PartitionError::NotEnoughReplicas,
            AppendError::Invalid(m) => {
                PartitionError::Storage(StorageError::WriteRefused { reason: m })
            }
            AppendError::Stopped(m) => PartitionError::Stopped(m),
        }
    }
}

/// A replicated partition's Raft member and the order of its leader's
/// appends.
#[derive(Debug)]
struct Replication {
    replica: PartitionReplica,
    /// Held from a batch's producer check until it is in the leader's log.
    order: Arc<tokio::sync::Mutex<()>>,
    /// The replicas in the controller's order: the first is the preferred
    /// leader.
    replicas: Vec<u64>,
    /// The highest log start this replica proposed as leader and has not
    /// seen fail: retention proposes a cut once, not at every pass while
    /// the entry is on its way.
    log_start_proposed: Arc<AtomicU64>,
}

/// One partition of a topic, hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    topic: Arc<str>,
    id: u32,
    log: Arc<PartitionLog>,
    replication: Option<Replication>,
}

impl Partition {
    pub(crate) fn new(topic: Arc<str>, id: u32, log: PartitionLog) -> Partition {
        Partition {
            topic,
            id,
            log: Arc::new(log),
            replication: None,
        }
    }

    /// A replicated partition: `replica` is this broker's Raft member of
    /// it, whose log store is `log`.
    pub(crate) fn replicated(
        topic: Arc<str>,
        id: u32,
        log: Arc<PartitionLog>,
        replica: PartitionReplica,
        replicas: Vec<u64>,
    ) -> Partition {
        Partition {
            topic,
            id,
            log,
            replication: Some(Replication {
                replica,
                order: Arc::default(),
                replicas,
                log_start_proposed: Arc::default(),
            }),
        }
    }

    /// Publishes this replica's replication gauges; answers whether it
    /// leads a partition with replicas out of sync.
    pub(crate) fn publish_replication_metrics(&self) -> bool {
        let Some(status) = self.replica_status() else {
            return false;
        };
        let (topic, partition) = (self.topic.to_string(), self.id.to_string());
        ::metrics::gauge!(metrics::PARTITION_LEADER, "topic" => topic.clone(), "partition" => partition.clone())
            .set(if status.is_leader { 1.0 } else { 0.0 });
        // Precision loss above 2^53 is irrelevant for a gauge.
        ::metrics::gauge!(metrics::PARTITION_LEADER_EPOCH, "topic" => topic.clone(), "partition" => partition.clone())
            .set(status.term as f64);
        if !status.is_leader {
            return false;
        }
        let last = status.last_log_index.unwrap_or(0);
        for (replica, matched) in &status.matched {
            if *replica == status.node {
                continue;
            }
            let lag = last.saturating_sub(matched.unwrap_or(0));
            ::metrics::gauge!(metrics::REPLICATION_LAG_ENTRIES, "topic" => topic.clone(), "partition" => partition.clone(), "replica" => replica.to_string())
                .set(lag as f64);
        }
        status.in_sync.len() < status.replicas.len()
    }

    /// Hands leadership back to the preferred leader (the first replica)
    /// when this broker leads in its place and the preferred one is in
    /// sync and holds everything committed (Kafka's
    /// preferred leader election, `auto.leader.rebalance.enable`), so
    /// leadership spreads again after a broker returns.
    pub(crate) async fn prefer_leader(&self) {
        let Some(r) = &self.replication else { return };
        let Some(&preferred) = r.replicas.first() else {
            return;
        };
        let status = r.replica.status();
        if !status.is_leader || status.node == preferred || !status.in_sync.contains(&preferred) {
            return;
        }
        // Holding everything committed is enough: the transfer stops this
        // leader's new writes and the target waits (up to an election
        // timeout) for the rest of its log before it campaigns. Asking for
        // the leader's very last entry would starve the hand-back under a
        // steady load, where some entry is always in flight.
        let caught_up = status.matched.get(&preferred).copied().flatten() >= status.committed_index;
        if !caught_up {
            return;
        }
        tracing::info!(topic = %self.topic, partition = self.id, to = preferred, "handing leadership back to the preferred replica");
        ::metrics::counter!(metrics::PREFERRED_LEADER_TRANSFERS_TOTAL).increment(1);
        if let Err(e) = r.replica.transfer_leader(preferred).await {
            tracing::debug!(topic = %self.topic, partition = self.id, error = %e, "leader transfer not started");
        }
    }

    /// This replica's view of its group; `None` on a partition with one
    /// replica (which leads itself).
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        self.replication.as_ref().map(|r| r.replica.status())
    }

    /// The Raft member of a replicated partition.
    pub fn replica(&self) -> Option<&PartitionReplica> {
        self.replication.as_ref().map(|r| &r.replica)
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
    /// `'static` so that the rest can finish on another task. On a
    /// replicated partition the first poll takes the place in the leader's
    /// append order instead, and `timeout` bounds the wait for the commit
    /// (a single replica waits on nothing but its own disk).
    pub fn append(
        &self,
        batch: BytesMut,
        ack: AckLevel,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<AppendInfo, PartitionError>> + Send + 'static {
        let log = Arc::clone(&self.log);
        let replicated = self
            .replication
            .as_ref()
            .map(|r| (r.replica.clone(), Arc::clone(&r.order)));
        async move {
            let started = Instant::now();
            let result = match replicated {
                None => log
                    .append(batch, ack.durability())
                    .await
                    .map_err(PartitionError::from),
                Some((replica, order)) => {
                    match tokio::time::timeout(
                        timeout,
                        append_replicated(&log, &replica, &order, batch, ack),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(PartitionError::TimedOut(timeout)),
                    }
                }
            };
            if ack == AckLevel::All && result.as_ref().is_ok_and(|i| !i.duplicate) {
                ::metrics::histogram!(metrics::FSYNC_DURATION_SECONDS)
                    .record(started.elapsed().as_secs_f64());
            }
            result
        }
    }

    /// Whole batches from `offset`, at most `max_bytes` (but always one
    /// whole batch when there is one), never past the high watermark.
    /// A replicated partition serves reads only on its leader.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Bytes, PartitionError> {
        let Some(r) = &self.replication else {
            return Ok(self.log.read(offset, max_bytes)?);
        };
        let (leads, leader) = r.replica.leadership();
        if !leads {
            return Err(PartitionError::NotLeader { leader });
        }
        let hw = *r.replica.high_watermark().borrow();
        if offset > hw {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log.log_start_offset(),
                log_end: hw,
            }
            .into());
        }
        if offset == hw {
            return Ok(Bytes::new());
        }
        let log_start = self.log_start_offset();
        if offset < log_start {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                log_start,
                log_end: hw,
            }
            .into());
        }
        let bytes = self.log.read(offset, max_bytes)?;
        Ok(below(bytes, hw))
    }

    /// `Ok` if this broker serves the partition's clients: always with one
    /// replica, on the leader only with several.
    pub fn check_leader(&self) -> Result<(), PartitionError> {
        match self.replica().map(PartitionReplica::leadership) {
            Some((false, leader)) => Err(PartitionError::NotLeader { leader }),
            _ => Ok(()),
        }
    }

    /// The offset below which records are visible to consumers: the log's
    /// written end on a single replica, the commit on a replicated one.
    pub fn high_watermark(&self) -> u64 {
        match &self.replication {
            None => self.log.log_end_offset(),
            Some(r) => *r.replica.high_watermark().borrow(),
        }
    }

    /// The first offset readers may ask for. On a replicated partition,
    /// the log start its leader replicated: the local log may still hold
    /// batches below it (a segment it falls inside, or segments not yet
    /// deleted), which are no longer served.
    pub fn log_start_offset(&self) -> u64 {
        let local = self.log.log_start_offset();
        match &self.replication {
            None => local,
            Some(r) => r.replica.log_start().max(local),
        }
    }

    /// The next offset this partition will assign.
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// The first offset whose batch's max timestamp is at or after `ts_ms`.
    pub fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<u64>, StorageError> {
        let start = self.log_start_offset();
        Ok(self.log.offset_for_timestamp(ts_ms)?.map(|o| o.max(start)))
    }

    /// A watch of the high watermark, for long-polling fetches.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match &self.replication {
            None => self.log.subscribe(),
            Some(r) => r.replica.high_watermark(),
        }
    }

    /// Opened on a read-only data directory: appends are refused.
    pub fn is_read_only(&self) -> bool {
        self.log.is_read_only()
    }

    /// Periodic work: interval fsync, roll by age, producer id expiry.
    pub(crate) fn tick(&self, now_ms: i64) {
        self.log.tick(now_ms);
    }

    /// Deletes what the topic's retention says is old.
    ///
    /// On a replicated partition each replica deleting on its own clock
    /// would leave replicas with different logs, so retention is the
    /// leader's decision: it computes the cut as a single node would
    /// (`PartitionLog::retention_cut`, whole segments, never past the high
    /// watermark) and replicates it as a new log start, on a task of its
    /// own; each replica deletes once its Raft log is purged below it
    /// (`rill_replication`). Nothing is deleted in this call there, and a
    /// follower does nothing. Call it from within the runtime.
    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let Some(r) = &self.replication else {
            return self.log.enforce_retention(now_ms);
        };
        let nothing = RetentionOutcome {
            segments_deleted: 0,
            bytes_deleted: 0,
            log_start_offset: self.log_start_offset(),
        };
        if !r.replica.leadership().0 {
            return Ok(nothing);
        }
        let cut = self.log.retention_cut(now_ms);
        let hw = *r.replica.high_watermark().borrow();
        let proposed = r.log_start_proposed.load(Ordering::Relaxed);
        if cut <= nothing.log_start_offset || cut > hw || cut <= proposed {
            return Ok(nothing);
        }
        r.log_start_proposed.store(cut, Ordering::Relaxed);
        let (replica, proposed) = (r.replica.clone(), Arc::clone(&r.log_start_proposed));
        let (topic, partition) = (Arc::clone(&self.topic), self.id);
        tokio::spawn(async move {
            match replica.advance_log_start(cut).await {
                Ok(()) => {
                    tracing::info!(%topic, partition, log_start = cut, "retention: new log start replicated");
                }
                Err(e) => {
                    // Proposed again at the next pass (by the new leader
                    // if leadership moved).
                    proposed.fetch_min(cut.saturating_sub(1), Ordering::Relaxed);
                    tracing::warn!(%topic, partition, log_start = cut, error = %e, "retention: new log start not replicated");
                }
            }
        });
        Ok(nothing)
    }

    pub(crate) fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Closes the log cleanly (flush, indexes, clean-shutdown marker). A log
    /// an unfinished append still holds is flushed instead and recovers on
    /// next start.
    pub(crate) async fn close(self) -> Result<(), StorageError> {
        if let Some(r) = &self.replication {
            r.replica.shutdown().await;
        }
        drop(self.replication);
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

/// The leader's side of a replicated append (see the module docs): the
/// producer checks and the hand-over to Raft in one order, then the wait
/// for the commit (`acks=all`) outside it.
async fn append_replicated(
    log: &PartitionLog,
    replica: &PartitionReplica,
    order: &tokio::sync::Mutex<()>,
    batch: BytesMut,
    ack: AckLevel,
) -> Result<AppendInfo, PartitionError> {
    let header = BatchHeader::parse(&batch).map_err(StorageError::from)?;
    let records = u64::from(header.record_count);
    let (base, commit) = {
        let _order = order.lock().await;
        let (leads, leader) = replica.leadership();
        if !leads {
            return Err(PartitionError::NotLeader { leader });
        }
        if let Some(kept) = log.check_producer(&header)? {
            drop(_order);
            // A retry of a batch this log holds: answered with the
            // original's offsets once they are as safe as asked. Only while
            // this replica leads: a leader never removes its own entries,
            // so the high watermark passing them means they are committed;
            // a deposed one may have them truncated and the high watermark
            // then passes other entries at those offsets.
            let end = kept.last_offset() + 1;
            if ack == AckLevel::All {
                let mut hw = replica.high_watermark();
                tokio::select! {
                    reached = hw.wait_for(|hw| *hw >= end) => {
                        reached.map_err(|_| PartitionError::Stopped("the partition closed".into()))?;
                    }
                    () = replica.lost_leadership() => {
                        return Err(PartitionError::NotEnoughReplicas);
                    }
                }
            }
            return Ok(AppendInfo {
                base_offset: kept.base_offset,
                last_offset: kept.last_offset(),
                position: None,
                max_timestamp: header.max_timestamp,
                duplicate: true,
            });
        }
        replica.append_staged(batch.freeze()).await?
    };
    let base = match ack {
        AckLevel::Leader => base,
        AckLevel::All => {
            let appended = Instant::now();
            // A leader cut off from the majority cannot commit: answer at
            // once (outcome unknown; an idempotent retry at the new leader
            // is deduplicated) instead of holding the producer until its
            // request times out.
            let base = tokio::select! {
                committed = commit => committed?,
                () = replica.lost_leadership() => {
                    return Err(PartitionError::NotEnoughReplicas);
                }
            };
            ::metrics::histogram!(metrics::COMMIT_DURATION_SECONDS)
                .record(appended.elapsed().as_secs_f64());
            base
        }
    };
    Ok(AppendInfo {
        base_offset: base,
        last_offset: base + records.saturating_sub(1),
        position: None,
        max_timestamp: header.max_timestamp,
        duplicate: false,
    })
}

/// The whole batches of `bytes` that end at or below `hw`.
fn below(mut bytes: Bytes, hw: u64) -> Bytes {
    let mut end = 0usize;
    while let Some(rest) = bytes.get(end..) {
        match BatchHeader::parse(rest) {
            Ok(h) if h.next_offset() <= hw && h.batch_length as usize <= rest.len() => {
                end += h.batch_length as usize;
            }
            _ => break,
        }
    }
    bytes.truncate(end);
    bytes
}
