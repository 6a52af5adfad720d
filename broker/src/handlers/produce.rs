//! Produce: split each partition's records into batches, append them, and
//! answer per partition (or not at all for `acks=none`, as Kafka).
//!
//! | acks | partition call | answered when |
//! |---|---|---|
//! | none | `AckLevel::Leader` | never |
//! | leader | `AckLevel::Leader` | the batches are written (readable) |
//! | all | `AckLevel::All` | the batches are durable (one replica: fdatasync'd, group commit) |
//!
//! Ordering: [`start`] runs on the connection's reader and *starts* every
//! append before the reader decodes the next request. The log assigns a
//! batch's offset on the first poll of `append` (synchronously, under its
//! lock), so starting here fixes the offsets of pipelined produces to the
//! request order; the returned future, spawned, waits for the writes and
//! fsyncs of all partitions concurrently.
//!
//! A partition's records are all checked (header, length, size limit, and
//! the CRC when there is more than one batch) before any of them is
//! appended, so a bad batch fails its partition as a whole. `timeout_ms`
//! bounds a replicated partition's wait for its commit (`RequestTimedOut`);
//! a single replica waits on nothing but its own disk and ignores it.
//!
//! Idempotent batches (producer id set) go through the log's producer
//! checks (`rill_storage::producer_state`): a retry of a batch already in
//! the log is answered with its original offsets and counted in the
//! response's `duplicate_batches` and `rill_produce_duplicate_batches_total`;
//! a gap, a fenced epoch or an unknown producer fails the partition with
//! Kafka's code for it. As in Kafka, such a partition must carry exactly one
//! batch: its answer is one base offset, which a mix of a duplicate and a
//! new batch could not give.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use rill_protocol::wire::produce::NO_LOG_APPEND_TIME;
use rill_protocol::wire::{
    Acks, ErrorCode, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopicResponse, Response,
};
use rill_protocol::BatchView;
use rill_storage::{AppendInfo, StorageError};
use std::time::Duration;

use super::{count_error, HandlerOutput};
use crate::error::{batch_error_code, partition_error_code};
use crate::metrics;
use crate::partition::{AckLevel, Partition, PartitionError};
use crate::shared::Shared;

const API: &str = "produce";

/// A future polled once; either already finished or still running.
enum Started<F: Future> {
    Done(F::Output),
    Running(Pin<Box<F>>),
}

impl<F: Future> Started<F> {
    async fn finish(self) -> F::Output {
        match self {
            Started::Done(out) => out,
            Started::Running(fut) => fut.await,
        }
    }
}

/// Polls `fut` once in the caller's task (which is where its synchronous
/// prefix runs) and returns it for finishing elsewhere.
async fn kick<F: Future>(fut: F) -> Started<F> {
    let mut fut = Box::pin(fut);
    // Ready on the first call, so the closure polls `fut` exactly once.
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Started::Done(out),
        Poll::Pending => Started::Running(fut),
    }
}

type AppendFuture = Pin<Box<dyn Future<Output = Result<AppendInfo, PartitionError>> + Send>>;

/// One partition's part of the request.
enum PartitionWork {
    Rejected(ErrorCode, String),
    Appending {
        partition: Arc<Partition>,
        appends: Vec<Started<AppendFuture>>,
        bytes: u64,
        records: u64,
    },
}

/// Cuts `records` into whole batches (each its own `BytesMut`, no copy) and
/// checks each; returns the batches and their record count.
fn split_batches(
    mut records: BytesMut,
    max_message_bytes: u32,
) -> Result<(Vec<BytesMut>, u64), (ErrorCode, String)> {
    if records.is_empty() {
        return Err((ErrorCode::CorruptMessage, "no record batches".into()));
    }
    let mut batches = Vec::new();
    let mut count = 0u64;
    let check_crc = {
        let first = BatchView::new(&records).map_err(|e| (batch_error_code(&e), e.to_string()))?;
        let several = first.len() < records.len();
        if several && first.header().is_idempotent() {
            return Err((
                ErrorCode::InvalidRequest,
                "an idempotent produce carries one batch per partition".into(),
            ));
        }
        several
    };
    while !records.is_empty() {
        let view = BatchView::new(&records).map_err(|e| (batch_error_code(&e), e.to_string()))?;
        if view.header().is_control() {
            // Control batches are the replication layer's own entries; a
            // producer's would be read as one (Kafka refuses them alike).
            return Err((
                ErrorCode::InvalidRecord,
                "producers may not write control batches".into(),
            ));
        }
        let len = view.len();
        if len > max_message_bytes as usize {
            return Err((
                ErrorCode::MessageTooLarge,
                format!("batch of {len} bytes is over max.message.bytes {max_message_bytes}"),
            ));
        }
        // With one batch the log's own CRC check keeps the partition
        // all-or-nothing; with several, check them all before any append.
        if check_crc {
            view.validate()
                .map_err(|e| (batch_error_code(&e), e.to_string()))?;
        }
        if check_crc && view.header().is_idempotent() {
            return Err((
                ErrorCode::InvalidRequest,
                "an idempotent produce carries one batch per partition".into(),
            ));
        }
        count += u64::from(view.header().record_count);
        batches.push(records.split_to(len));
    }
    Ok((batches, count))
}

/// Starts every append of `request` (see module docs) and returns the
/// future that finishes them and builds the response.
pub(crate) async fn start(
    shared: Arc<Shared>,
    request: ProduceRequest,
) -> impl Future<Output = HandlerOutput> + Send + 'static {
    let timeout = Duration::from_millis(u64::from(request.timeout_ms));
    let ack = match request.acks {
        Acks::None | Acks::Leader => AckLevel::Leader,
        Acks::All => AckLevel::All,
    };
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let entry = shared.registry.get(&topic.name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let work = match entry.as_ref().and_then(|t| {
                Some((
                    t.partition(p.partition)?.clone(),
                    t.config.max_message_bytes,
                ))
            }) {
                None => PartitionWork::Rejected(
                    entry
                        .as_ref()
                        .map_or(ErrorCode::UnknownTopicOrPartition, |t| {
                            t.absent_code(p.partition)
                        }),
                    format!("{}-{} is not hosted here", topic.name, p.partition),
                ),
                Some((partition, max_message_bytes)) => {
                    match split_batches(p.records, max_message_bytes) {
                        Err((code, message)) => PartitionWork::Rejected(code, message),
                        Ok((batches, records)) => {
                            let bytes = batches.iter().map(|b| b.len() as u64).sum();
                            let mut appends = Vec::with_capacity(batches.len());
                            for batch in batches {
                                let append: AppendFuture =
                                    Box::pin(partition.append(batch, ack, timeout));
                                appends.push(kick(append).await);
                            }
                            PartitionWork::Appending {
                                partition,
                                appends,
                                bytes,
                                records,
                            }
                        }
                    }
                }
            };
            partitions.push((p.partition, work));
        }
        topics.push((topic.name, partitions));
    }
    let answer = request.acks != Acks::None;
    async move {
        let mut response = ProduceResponse {
            topics: Vec::with_capacity(topics.len()),
        };
        for (name, partitions) in topics {
            let mut out = Vec::with_capacity(partitions.len());
            for (partition, work) in partitions {
                let result = finish(&name, partition, work).await;
                count_error(API, result.error);
                out.push(result);
            }
            response.topics.push(ProduceTopicResponse {
                name,
                partitions: out,
            });
        }
        answer.then_some(Response::Produce(response))
    }
}

async fn finish(topic: &str, partition: u32, work: PartitionWork) -> ProducePartitionResponse {
    let mut response = ProducePartitionResponse {
        partition,
        error: ErrorCode::None,
        base_offset: 0,
        log_append_time: NO_LOG_APPEND_TIME,
        log_start_offset: 0,
        error_message: None,
        duplicate_batches: 0,
    };
    match work {
        PartitionWork::Rejected(code, message) => {
            tracing::debug!(topic, partition, %code, %message, "produce rejected");
            response.error = code;
            response.error_message = Some(message);
        }
        PartitionWork::Appending {
            partition: log,
            appends,
            bytes,
            records,
        } => {
            let mut first_offset = None;
            for started in appends {
                match started.finish().await {
                    Ok(info) => {
                        first_offset.get_or_insert(info.base_offset);
                        response.duplicate_batches += u32::from(info.duplicate);
                    }
                    Err(e) => {
                        if response.error == ErrorCode::None {
                            let code = partition_error_code(&e);
                            if matches!(
                                e,
                                PartitionError::Storage(
                                    StorageError::LogFailed { .. } | StorageError::Io { .. }
                                )
                            ) {
                                tracing::error!(topic, partition, error = %e, "append failed");
                            } else {
                                tracing::debug!(topic, partition, error = %e, "append refused");
                            }
                            response.error = code;
                            response.error_message = Some(e.to_string());
                        }
                    }
                }
            }
            if response.duplicate_batches > 0 {
                ::metrics::counter!(metrics::PRODUCE_DUPLICATE_BATCHES_TOTAL, "topic" => topic.to_string())
                    .increment(u64::from(response.duplicate_batches));
            }
            if response.error == ErrorCode::None && response.duplicate_batches == 0 {
                ::metrics::counter!(metrics::BYTES_IN_TOTAL, "topic" => topic.to_string())
                    .increment(bytes);
                ::metrics::counter!(metrics::RECORDS_IN_TOTAL, "topic" => topic.to_string())
                    .increment(records);
            }
            response.base_offset = first_offset.unwrap_or(0);
            response.log_start_offset = log.log_start_offset();
        }
    }
    response
}
