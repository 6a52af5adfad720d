//! Fetch with long-poll: read whole batches from each partition; if fewer
//! than `min_bytes` came back and `max_wait_ms` allows, wait for any of the
//! partitions' high watermarks to move (their `subscribe()` watch channels;
//! no sleep-polling), then read again — until `min_bytes` is met, the wait
//! runs out, or the broker shuts down.
//!
//! Size limits follow Kafka (KIP-74): `partition_max_bytes` and the
//! response's `max_bytes` bound what is returned, except that the first
//! partition with data always returns at least one whole batch, so a
//! consumer can always progress past a batch larger than its limits. Record
//! bytes are `Bytes` from the log, sent as their own chunks (no copy into
//! the response buffer).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::wire::{
    ErrorCode, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
};
use rill_protocol::BatchHeader;
use rill_storage::StorageError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::count_error;
use crate::error::partition_error_code;
use crate::metrics;
use crate::partition::{Partition, PartitionError};
use crate::shared::Shared;

const API: &str = "fetch";

/// One requested partition, resolved once per request.
struct Slot {
    topic: usize,
    partition: u32,
    hosted: Option<Arc<Partition>>,
    /// The answer when `hosted` is `None`.
    absent: ErrorCode,
    fetch_offset: u64,
    partition_max_bytes: usize,
}

pub(crate) async fn handle(shared: &Shared, request: FetchRequest) -> FetchResponse {
    let mut names = Vec::with_capacity(request.topics.len());
    let mut slots = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let entry = shared.registry.get(&topic.name);
        for p in topic.partitions {
            slots.push(Slot {
                topic: t,
                partition: p.partition,
                hosted: entry
                    .as_ref()
                    .and_then(|e| e.partition(p.partition).cloned()),
                absent: entry
                    .as_ref()
                    .map_or(ErrorCode::UnknownTopicOrPartition, |e| {
                        e.absent_code(p.partition)
                    }),
                fetch_offset: p.fetch_offset,
                partition_max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(usize::MAX),
            });
        }
        names.push(topic.name);
    }
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(usize::MAX);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(usize::MAX);
    let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
    // Subscribe before the first read: a batch appended between the read
    // and the wait then still wakes us.
    let mut watches: Vec<watch::Receiver<u64>> = slots
        .iter()
        .filter_map(|s| s.hosted.as_ref().map(|p| p.subscribe()))
        .collect();
    let mut shutdown = shared.shutdown.clone();
    let mut last_read = request.max_wait_ms == 0;
    loop {
        let (partitions, total) = read_all(&slots, &names, max_bytes);
        if total >= min_bytes || last_read || watches.is_empty() || *shutdown.borrow() {
            return respond(names, partitions);
        }
        tokio::select! {
            moved = any_changed(&mut watches) => last_read = !moved,
            _ = tokio::time::sleep_until(deadline) => last_read = true,
            _ = crate::shutdown::stopped(&mut shutdown) => last_read = true,
        }
    }
}

/// Reads every slot once, within the size limits.
fn read_all(
    slots: &[Slot],
    names: &[String],
    max_bytes: usize,
) -> (Vec<(usize, FetchPartitionResponse)>, usize) {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let mut response = FetchPartitionResponse {
            partition: slot.partition,
            error: ErrorCode::None,
            high_watermark: 0,
            log_start_offset: 0,
            records: Bytes::new(),
        };
        match &slot.hosted {
            None => response.error = slot.absent,
            Some(log) => {
                let limit = slot
                    .partition_max_bytes
                    .min(max_bytes.saturating_sub(total));
                // After the first data, a partition with no room left is
                // not read at all.
                if total == 0 || limit > 0 {
                    match log.read(slot.fetch_offset, limit) {
                        // Only the first partition with data may exceed its
                        // limit (one whole batch); later ones skip instead.
                        Ok(records) if total > 0 && records.len() > limit => {}
                        Ok(records) => {
                            total += records.len();
                            response.records = records;
                        }
                        Err(e) => {
                            if matches!(e, PartitionError::Storage(StorageError::Corrupt { .. })) {
                                let topic = names.get(slot.topic).cloned().unwrap_or_default();
                                ::metrics::counter!(metrics::STORAGE_CORRUPT_READS_TOTAL, "topic" => topic)
                                    .increment(1);
                            }
                            response.error = partition_error_code(&e);
                        }
                    }
                }
                response.high_watermark = log.high_watermark();
                response.log_start_offset = log.log_start_offset();
            }
        }
        out.push((slot.topic, response));
    }
    (out, total)
}

fn respond(names: Vec<String>, partitions: Vec<(usize, FetchPartitionResponse)>) -> FetchResponse {
    let mut topics: Vec<FetchTopicResponse> = names
        .into_iter()
        .map(|name| FetchTopicResponse {
            name,
            partitions: Vec::new(),
        })
        .collect();
    for (t, p) in partitions {
        count_error(API, p.error);
        if let Some(topic) = topics.get_mut(t) {
            if !p.records.is_empty() {
                let label = topic.name.clone();
                ::metrics::counter!(metrics::BYTES_OUT_TOTAL, "topic" => label.clone())
                    .increment(p.records.len() as u64);
                ::metrics::counter!(metrics::RECORDS_OUT_TOTAL, "topic" => label)
                    .increment(record_count(&p.records));
            }
            topic.partitions.push(p);
        }
    }
    FetchResponse {
        error: ErrorCode::None,
        topics,
    }
}

/// Records in a run of whole batches (headers only; the log wrote them).
fn record_count(mut batches: &[u8]) -> u64 {
    let mut n = 0;
    while let Ok(h) = BatchHeader::parse(batches) {
        n += u64::from(h.record_count);
        match batches.get(h.batch_length as usize..) {
            Some(rest) => batches = rest,
            None => break,
        }
    }
    n
}

type Changed<'a> = Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

/// Waits until any receiver sees a new value (`true`), or all their logs
/// are gone (`false`).
async fn any_changed(watches: &mut [watch::Receiver<u64>]) -> bool {
    let mut waits: Vec<Option<Changed<'_>>> = watches
        .iter_mut()
        .map(|rx| Some(Box::pin(rx.changed()) as Changed<'_>))
        .collect();
    std::future::poll_fn(|cx| {
        let mut open = false;
        for slot in waits.iter_mut() {
            let Some(wait) = slot.as_mut() else { continue };
            match wait.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(true),
                // The log was closed (topic deleted, shutdown): stop
                // watching it.
                Poll::Ready(Err(_)) => *slot = None,
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(false)
        }
    })
    .await
}
