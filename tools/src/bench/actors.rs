//! The bench's producers and consumers: one tokio task each, each with its
//! own client (and so its own connections).
//!
//! A producer is two tasks: the send loop, which stamps each value with its
//! send time (or, at a fixed rate, its *intended* send time, so a stalled
//! broker shows up as latency instead of as fewer samples: no coordinated
//! omission) and hands the delivery future to a collector; and the
//! collector, which keeps every outstanding future in a `FuturesUnordered`
//! so each acknowledgement is timed when it arrives, not when an older one
//! from another partition is done.
//!
//! A consumer polls its partitions and, per poll, takes one receive time
//! for all records that arrived together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rill_client::{Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerConfig, SeekTo};
use tokio::sync::{mpsc, watch};

use super::stats::ActorStats;
use super::workload::{read_stamp, record_digest, record_id, stamp_value, KeyGen, Payload};
use crate::cli::{AcksArg, CompressionArg, KeyMode};
use crate::error::CliError;

/// How long a consumer poll waits before the loop checks its end condition.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// A consumer that knows its end offsets and sees nothing new for this long
/// stops and reports what it got (verification then says what is missing).
pub const CONSUMER_STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Producer client settings shared by every producer of a run.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub acks: AcksArg,
    pub compression: CompressionArg,
    pub batch_size: usize,
    pub linger: Duration,
    pub message_size: usize,
    pub keys: KeyMode,
    pub key_count: u64,
}

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub index: usize,
    pub bootstrap: String,
    pub topic: String,
    pub settings: ProducerSettings,
    /// Records to send; `None`: until `deadline`.
    pub quota: Option<u64>,
    pub deadline: Option<Instant>,
    /// Fixed-rate mode: this producer's records per second.
    pub rate: Option<f64>,
    /// When this producer's schedule starts.
    pub run_start: Instant,
    /// Samples before this are warm-up.
    pub measure_from: Instant,
    /// The shared clock base of the send-time stamps.
    pub base: Instant,
    /// Bumped per acknowledged record (progress bar).
    pub progress: Arc<AtomicU64>,
    pub with_series: bool,
}

/// One record on its way: its delivery and what the collector needs.
struct Pending {
    delivery: DeliveryFuture,
    sent_at: Instant,
    digest: u64,
    bytes: u64,
}

pub async fn run_producer(plan: ProducerPlan) -> Result<ActorStats, CliError> {
    let s = &plan.settings;
    let mut config = ProducerConfig::new(plan.bootstrap.clone());
    config.acks = s.acks.to_client();
    config.compression = s.compression.to_client();
    config.batch_size = s.batch_size;
    config.linger = s.linger;
    config.client_id = format!("rill-bench-producer-{}", plan.index);
    let producer = Producer::new(config).await.map_err(|e| {
        CliError::client(
            format!("producer {}: cannot reach {}", plan.index, plan.bootstrap),
            e,
        )
    })?;

    let (tx, rx) = mpsc::unbounded_channel::<Pending>();
    let collector = tokio::spawn(collect(
        rx,
        ActorStats::new(plan.measure_from, plan.with_series),
        plan.measure_from,
        Arc::clone(&plan.progress),
    ));

    let payload = Payload::new(s.message_size, plan.index as u64 + 1);
    let mut keys = KeyGen::new(s.keys, s.key_count, (plan.index as u64 + 1) * 7919);
    let mut value = Vec::with_capacity(s.message_size);
    let mut send_error = None;
    let mut sequence: u64 = 0;
    loop {
        if plan.quota.is_some_and(|q| sequence >= q) {
            break;
        }
        let sent_at = match plan.rate {
            Some(rate) => {
                // From the sequence number, not a rounded interval, so a
                // long run keeps the exact rate.
                let intended = plan.run_start + Duration::from_secs_f64(sequence as f64 / rate);
                if plan.deadline.is_some_and(|d| intended >= d) {
                    break;
                }
                if intended > Instant::now() {
                    tokio::time::sleep_until(intended.into()).await;
                }
                intended
            }
            None => {
                let now = Instant::now();
                if plan.deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        payload.fill(&mut value, sequence);
        let stamp = u64::try_from(sent_at.duration_since(plan.base).as_nanos()).unwrap_or(u64::MAX);
        stamp_value(&mut value, stamp, record_id(plan.index, sequence));
        let digest = record_digest(&value);
        let key = keys.next_key();
        match producer
            .send(&plan.topic, key.as_ref().map(|k| &k[..]), &value, &[])
            .await
        {
            Ok(delivery) => {
                let bytes = (value.len() + key.map_or(0, |k| k.len())) as u64;
                if tx
                    .send(Pending {
                        delivery,
                        sent_at,
                        digest,
                        bytes,
                    })
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                // Send fails only for permanent reasons (closed producer,
                // oversized record, unknown topic after retries): stop.
                send_error = Some(e);
                break;
            }
        }
        sequence += 1;
    }
    drop(tx);
    let _ = producer.flush().await;
    let mut stats = collector
        .await
        .map_err(|e| CliError::Failed(format!("producer {} collector failed: {e}", plan.index)))?;
    let _ = producer.close().await;
    if let Some(e) = send_error {
        stats.error(format!("send failed: {e}"));
    }
    Ok(stats)
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    mut stats: ActorStats,
    measure_from: Instant,
    progress: Arc<AtomicU64>,
) -> ActorStats {
    let mut outstanding = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((result, acked_at, sent_at, digest, bytes)) = outstanding.next(), if !outstanding.is_empty() => {
                settle(&mut stats, result, acked_at, sent_at, digest, bytes, measure_from, &progress);
            }
            next = rx.recv(), if open => match next {
                Some(p) => outstanding.push(async move {
                    let result = p.delivery.await;
                    (result, Instant::now(), p.sent_at, p.digest, p.bytes)
                }),
                None => open = false,
            },
            else => break,
        }
    }
    stats
}

#[expect(
    clippy::too_many_arguments,
    reason = "one acknowledgement's fields; a struct would only rename them"
)]
fn settle(
    stats: &mut ActorStats,
    result: rill_client::Result<rill_client::RecordMetadata>,
    acked_at: Instant,
    sent_at: Instant,
    digest: u64,
    bytes: u64,
    measure_from: Instant,
    progress: &AtomicU64,
) {
    match result {
        Ok(_) => {
            let latency = (sent_at >= measure_from).then(|| acked_at.duration_since(sent_at));
            stats.event(acked_at, bytes, latency, digest);
            progress.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => stats.error(format!("delivery failed: {e}")),
    }
}

/// What one consumer does.
#[derive(Debug)]
pub struct ConsumerPlan {
    pub index: usize,
    pub bootstrap: String,
    pub topic: String,
    /// Partitions and the offset to start each at.
    pub starts: Vec<(u32, u64)>,
    /// End offsets to stop at; `None` until the producers are done.
    pub targets: watch::Receiver<Option<HashMap<u32, u64>>>,
    pub measure_from: Instant,
    pub base: Instant,
    /// Whether values carry send stamps to compute end-to-end latency from.
    pub end_to_end: bool,
    pub progress: Arc<AtomicU64>,
    pub with_series: bool,
}

pub async fn run_consumer(mut plan: ConsumerPlan) -> Result<ActorStats, CliError> {
    let mut stats = ActorStats::new(plan.measure_from, plan.with_series);
    if plan.starts.is_empty() {
        return Ok(stats);
    }
    let mut config = ConsumerConfig::new(plan.bootstrap.clone());
    config.client_id = format!("rill-bench-consumer-{}", plan.index);
    let mut consumer = Consumer::new(config).await.map_err(|e| {
        CliError::client(
            format!("consumer {}: cannot reach {}", plan.index, plan.bootstrap),
            e,
        )
    })?;
    consumer.assign(
        plan.starts
            .iter()
            .map(|&(p, _)| (plan.topic.clone(), p))
            .collect(),
    );
    for &(p, start) in &plan.starts {
        consumer
            .seek(&plan.topic, p, SeekTo::Offset(start))
            .await
            .map_err(|e| {
                CliError::client(
                    format!("consumer {}: cannot seek partition {p}", plan.index),
                    e,
                )
            })?;
    }
    let mut targets: Option<HashMap<u32, u64>> = None;
    let mut last_progress = Instant::now();
    loop {
        if targets.is_none() {
            targets = plan.targets.borrow_and_update().clone();
            if targets.is_some() {
                // The stall clock starts when there is something to wait for.
                last_progress = Instant::now();
            }
        }
        if let Some(t) = &targets {
            let done = plan.starts.iter().all(|&(p, _)| {
                let end = t.get(&p).copied().unwrap_or(0);
                consumer
                    .position(&plan.topic, p)
                    .is_some_and(|pos| pos >= end)
            });
            if done {
                break;
            }
            if last_progress.elapsed() > CONSUMER_STALL_TIMEOUT {
                stats.error(format!(
                    "no records for {}s before reaching the end offsets",
                    CONSUMER_STALL_TIMEOUT.as_secs()
                ));
                break;
            }
        }
        let records = match consumer.poll(POLL_TIMEOUT).await {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("poll failed: {e}"));
                break;
            }
        };
        if records.is_empty() {
            continue;
        }
        let received_at = Instant::now();
        last_progress = received_at;
        let mut count = 0u64;
        let walked = records.for_each(|r| {
            if let Some(t) = &targets {
                if r.offset >= t.get(&r.partition).copied().unwrap_or(0) {
                    return;
                }
            }
            let latency = if plan.end_to_end {
                read_stamp(r.value)
                    .map(|nanos| plan.base + Duration::from_nanos(nanos))
                    .filter(|&sent| sent >= plan.measure_from)
                    .map(|sent| received_at.saturating_duration_since(sent))
            } else {
                None
            };
            let bytes = (r.value.len() + r.key.map_or(0, <[u8]>::len)) as u64;
            stats.event(received_at, bytes, latency, record_digest(r.value));
            count += 1;
        });
        plan.progress.fetch_add(count, Ordering::Relaxed);
        if let Err(e) = walked {
            stats.error(format!("bad batch: {e}"));
            break;
        }
    }
    Ok(stats)
}
