//! The bench's producers and consumers: one tokio task each, each with its
//! own client (and so its own connections).
//!
//! A producer's send loop stamps each value with its send time (or, at a
//! fixed rate, its *intended* send time, so a stalled broker shows up as
//! latency instead of as fewer samples: no coordinated omission) and sends
//! it with a delivery callback; the producer runs the callback when the
//! record's batch is acknowledged, so each acknowledgement is timed when it
//! arrives, not when an older one from another partition is done. At a
//! fixed rate the loop runs on a thread of its own for exact pacing.
//!
//! A consumer polls its partitions and, per poll, takes one receive time
//! for all records that arrived together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rill_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};
use tokio::sync::watch;

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
    pub enable_idempotence: bool,
    pub max_in_flight: usize,
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
    /// Whether to hash each value for the consume phase's verification.
    pub with_digests: bool,
}

/// Where a producer's acknowledgements are recorded. Delivery callbacks
/// run on the producer's tasks (several at once for different partitions),
/// hence the mutex; each holds it for one record.
type SharedStats = Arc<Mutex<ActorStats>>;

fn lock_stats(stats: &SharedStats) -> MutexGuard<'_, ActorStats> {
    // A panic elsewhere leaves whole samples behind; keep counting.
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

pub async fn run_producer(plan: ProducerPlan) -> Result<ActorStats, CliError> {
    let s = &plan.settings;
    let mut config = ProducerConfig::new(plan.bootstrap.clone());
    config.acks = s.acks.to_client();
    config.compression = s.compression.to_client();
    config.batch_size = s.batch_size;
    config.linger = s.linger;
    config.enable_idempotence = s.enable_idempotence;
    config.max_in_flight_per_partition = s.max_in_flight;
    config.client_id = format!("rill-bench-producer-{}", plan.index);
    let producer = Producer::new(config).await.map_err(|e| {
        CliError::client(
            format!("producer {}: cannot reach {}", plan.index, plan.bootstrap),
            e,
        )
    })?;
    let stats: SharedStats = Arc::new(Mutex::new(ActorStats::new(
        plan.measure_from,
        plan.with_series,
    )));

    // At a fixed rate the send loop gets an OS thread of its own: tokio's
    // timer ticks in whole milliseconds, so a loop paced by it sends in
    // bursts up to a millisecond late, and that lateness (counted, as it
    // must be, from each record's intended time) would swamp the broker's
    // own sub-millisecond latency. The thread drives the loop with
    // `Handle::block_on`, so the producer's tasks and sockets stay on the
    // runtime, and sleeps with the kernel's high-resolution timer.
    let (producer, send_error) = match plan.rate {
        Some(_) => {
            let handle = tokio::runtime::Handle::current();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let index = plan.index;
            let plan = plan.clone();
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name(format!("rill-bench-pacer-{index}"))
                .spawn(move || {
                    let outcome = handle.block_on(send_loop(&plan, producer, &stats));
                    let _ = done_tx.send(outcome);
                })
                .map_err(|e| {
                    CliError::Failed(format!(
                        "producer {index}: cannot start its pacing thread: {e}"
                    ))
                })?;
            done_rx.await.map_err(|_| {
                CliError::Failed(format!("producer {index}: its pacing thread died"))
            })?
        }
        None => send_loop(&plan, producer, &stats).await,
    };
    // Every callback has run once the flush returns.
    let _ = producer.flush().await;
    let _ = producer.close().await;
    let mut stats = std::mem::replace(
        &mut *lock_stats(&stats),
        ActorStats::new(plan.measure_from, false),
    );
    stats.producer = Some(producer.stats());
    if let Some(e) = send_error {
        stats.error(format!("send failed: {e}"));
    }
    Ok(stats)
}

/// Sends records until the plan's quota or deadline; returns the producer
/// and the error that stopped the loop early, if one did. Each record's
/// acknowledgement is timed by its delivery callback when the producer
/// learns of it, so one slow partition does not delay the timing of others.
async fn send_loop(
    plan: &ProducerPlan,
    producer: Producer,
    stats: &SharedStats,
) -> (Producer, Option<rill_client::ClientError>) {
    let s = &plan.settings;
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
                // Only ever on the pacing thread (see `run_producer`), where
                // blocking is what it is for.
                let ahead = intended.saturating_duration_since(Instant::now());
                if !ahead.is_zero() {
                    std::thread::sleep(ahead);
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
        let digest = if plan.with_digests {
            record_digest(&value)
        } else {
            0
        };
        let key = keys.next_key();
        let bytes = (value.len() + key.map_or(0, |k| k.len())) as u64;
        let on_delivery = {
            let stats = Arc::clone(stats);
            let progress = Arc::clone(&plan.progress);
            let measure_from = plan.measure_from;
            move |result: rill_client::Result<rill_client::RecordMetadata>| {
                let acked_at = Instant::now();
                let mut stats = lock_stats(&stats);
                match result {
                    Ok(meta) => {
                        let latency =
                            (sent_at >= measure_from).then(|| acked_at.duration_since(sent_at));
                        // The record's request was queued on the connection
                        // at `request_at`: before it, it sat in the
                        // producer's buffer; after it, it was in flight.
                        if let (Some(_), Some(request_at)) = (latency, meta.sent_at) {
                            stats.split(
                                request_at.saturating_duration_since(sent_at),
                                acked_at.saturating_duration_since(request_at),
                                meta.index_in_batch == 0,
                            );
                        }
                        stats.event(acked_at, bytes, latency, digest);
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => stats.error(format!("delivery failed: {e}")),
                }
            }
        };
        let sent = producer
            .send_with_callback(
                &plan.topic,
                key.as_ref().map(|k| &k[..]),
                &value,
                &[],
                on_delivery,
            )
            .await;
        if let Err(e) = sent {
            // Send fails only for permanent reasons (closed producer,
            // oversized record, unknown topic after retries): stop.
            send_error = Some(e);
            break;
        }
        sequence += 1;
    }
    (producer, send_error)
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
