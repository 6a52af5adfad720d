//! The producer: buffers records into per-partition batches and sends them.
//!
//! # Data path
//! [`Producer::send`] picks a partition (see [`crate::partitioner`]), waits
//! for room in the bounded buffer, and pushes the record into that
//! partition's open [`BatchBuilder`]. A background sender task seals a batch
//! when it reaches `batch_size` or has waited `linger`, finishes it
//! (serialize once, zstd if configured) and sends it in a Produce request
//! together with the ready batches of other partitions. When the broker
//! answers, every record's [`DeliveryFuture`] resolves with its offset and
//! the batch's buffer bytes are released.
//!
//! # Ordering and retries
//! At most one produce is in flight per partition. A batch that fails with a
//! retriable error goes back to the head of its partition's queue after
//! `retry_backoff` and nothing behind it is sent meanwhile, so records of one
//! partition (and hence of one key) are written in `send` order even across
//! retries. Without idempotence a retry after a lost response can write a
//! batch twice: delivery is at least once.
//!
//! # Acks
//! With [`Acks::None`] the broker sends no response, so a delivery future
//! resolves once its batch is written to the socket, with
//! [`RecordMetadata::offset`] `None`: nothing is known about whether it
//! arrived.
//!
//! # Metadata
//! The partition count of a topic is fetched on first use and cached; an
//! `UnknownTopicOrPartition` answer marks it stale so the next send refetches
//! it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rill_protocol::limits::BATCH_BYTES_MAX;
use rill_protocol::wire::{
    self, ErrorCode, MetadataRequest, ProduceResponse, SharedProducePartition,
    SharedProduceRequest, SharedProduceTopic,
};
use rill_protocol::{BatchBuilder, Compression};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::admin::describe_from_metadata;
use crate::connection::{BrokerLink, ConnectionConfig, REQUEST_TIMEOUT_DEFAULT};
use crate::error::{ClientError, Result};
use crate::partitioner::partition_for_key;

/// Default largest batch, before compression.
pub const BATCH_SIZE_DEFAULT: usize = 1024 * 1024;
/// Default time a batch waits for more records before it is sent: none.
/// A partition's batch goes as soon as no request of that partition is in
/// flight; while one is, records gather into the next batch, so batches
/// grow with load by themselves. Measured (BENCHMARKS.md, "rill bench"):
/// at half the maximum rate a 5 ms linger tripled the median ack latency
/// (5.1 ms against 1.5 ms) and gained no throughput at the maximum rate.
pub const LINGER_DEFAULT: Duration = Duration::ZERO;
/// Default bound on bytes buffered and in flight.
pub const BUFFER_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Default number of times a batch is retried after a retriable error.
pub const RETRIES_DEFAULT: u32 = 10;
/// Default pause before a retry.
pub const RETRY_BACKOFF_DEFAULT: Duration = Duration::from_millis(100);
/// Bytes one record is charged in the buffer beyond its key, value and
/// headers: the archived record's fixed fields and relative pointers.
const RECORD_OVERHEAD_BYTES: usize = 64;
/// Largest Produce request the sender builds out of several batches; a
/// single batch larger than this still goes alone. Well under the broker's
/// default frame limit, so one slow request does not hold up many partitions.
const PRODUCE_REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(PRODUCE_REQUEST_BYTES_MAX >= BATCH_SIZE_DEFAULT);

/// How many acknowledgements the broker waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// No answer at all: fire and forget.
    None,
    /// Answer once the batch is written to the log (page cache).
    Leader,
    /// Answer once the batch is fsynced.
    #[default]
    All,
}

impl Acks {
    fn to_wire(self) -> wire::Acks {
        match self {
            Acks::None => wire::Acks::None,
            Acks::Leader => wire::Acks::Leader,
            Acks::All => wire::Acks::All,
        }
    }
}

/// Settings of a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of the broker.
    pub bootstrap: String,
    pub acks: Acks,
    /// A partition's batch is sent once its estimated size reaches this.
    pub batch_size: usize,
    /// A partition's batch is sent at most this long after its first record.
    pub linger: Duration,
    pub compression: Compression,
    /// Bytes of records buffered or in flight; `send` waits when full.
    pub buffer_bytes_max: usize,
    /// Retries of a batch after a retriable error; 0 disables retrying.
    pub retries: u32,
    pub retry_backoff: Duration,
    pub request_timeout: Duration,
    pub client_id: String,
}

impl ProducerConfig {
    /// Defaults: acks all, 1 MiB batches, no linger, no compression,
    /// 64 MiB buffer, 10 retries 100 ms apart, 30 s request timeout.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ProducerConfig {
            bootstrap: bootstrap.into(),
            acks: Acks::default(),
            batch_size: BATCH_SIZE_DEFAULT,
            linger: LINGER_DEFAULT,
            compression: Compression::None,
            buffer_bytes_max: BUFFER_BYTES_MAX_DEFAULT,
            retries: RETRIES_DEFAULT,
            retry_backoff: RETRY_BACKOFF_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            client_id: "rill-producer".to_owned(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.batch_size > BATCH_BYTES_MAX {
            return Err(ClientError::InvalidConfig {
                field: "batch_size",
                reason: format!("must be in 1..={BATCH_BYTES_MAX}"),
            });
        }
        if self.buffer_bytes_max == 0 || self.buffer_bytes_max > Semaphore::MAX_PERMITS {
            return Err(ClientError::InvalidConfig {
                field: "buffer_bytes_max",
                reason: format!("must be in 1..={}", Semaphore::MAX_PERMITS),
            });
        }
        if self.request_timeout.is_zero() {
            return Err(ClientError::InvalidConfig {
                field: "request_timeout",
                reason: "must be positive".to_owned(),
            });
        }
        Ok(())
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// The record's offset; `None` with [`Acks::None`], where the broker
    /// does not say.
    pub offset: Option<u64>,
}

/// Resolves when the record's batch is acknowledged (or written, with
/// [`Acks::None`]), or with the error that made it fail for good.
#[derive(Debug)]
#[must_use = "a delivery future tells whether the record was written"]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

/// How a record's sender hears its outcome: a [`DeliveryFuture`] (its
/// oneshot's sending half) or a callback run by the producer itself.
enum Waiter {
    Future(oneshot::Sender<Result<RecordMetadata>>),
    Callback(Box<dyn FnOnce(Result<RecordMetadata>) + Send>),
}

impl Waiter {
    fn notify(self, outcome: Result<RecordMetadata>) {
        match self {
            // The caller may have dropped its future: nobody to tell.
            Waiter::Future(tx) => {
                let _ = tx.send(outcome);
            }
            // A panicking callback must not unwind through the producer: the
            // batch would stay outstanding and its partition in flight, and
            // every later send to it, `flush` and `close` would hang.
            Waiter::Callback(callback) => {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    callback(outcome);
                }));
                if ran.is_err() {
                    warn!("a delivery callback panicked; the producer carries on");
                }
            }
        }
    }
}

/// A batch on its way: records, their waiters, and the buffer bytes they hold.
struct Batch {
    /// Producer-wide sequence number, increasing in creation order; `flush`
    /// waits for every id below a mark.
    id: u64,
    topic: Arc<str>,
    partition: u32,
    content: Content,
    waiters: Vec<Waiter>,
    /// Buffer bytes; released when the batch is done.
    permit: Option<OwnedSemaphorePermit>,
    created: Instant,
    attempts: u32,
}

enum Content {
    Building(BatchBuilder),
    /// Finished bytes, kept for retries so a batch is serialized once.
    /// Lent to the Produce request while it is being sent and given back
    /// Each request shares them (a reference count, not a copy) as its own
    /// chunk of a vectored frame, so they are never copied for it.
    Built(Bytes),
}

impl Content {
    fn size(&self) -> usize {
        match self {
            Content::Building(b) => b.estimated_size(),
            Content::Built(b) => b.len(),
        }
    }
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<Batch>,
    ready: VecDeque<Batch>,
    in_flight: bool,
}

/// The partition keyless records of a topic stick to, and the record bytes
/// it has taken since it became the sticky one. It moves on, round robin,
/// once that reaches `batch_size` (Kafka's KIP-794 "uniform sticky"
/// partitioner): not whenever a batch is sent, because at light load every
/// send would then open a new partition whose first record goes out alone,
/// and the producer would send a request per handful of records instead of
/// letting records gather while the partition's request is in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Sticky {
    partition: u32,
    bytes: usize,
}

impl Sticky {
    /// A random first partition (as Kafka's), so short-lived producers of
    /// keyless records do not all pile onto partition 0.
    fn start(partitions: u32) -> Sticky {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded randomly per process and per instance.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Sticky {
            partition: u32::try_from(random % u64::from(partitions.max(1))).unwrap_or(0),
            bytes: 0,
        }
    }
}

struct TopicMeta {
    partitions: u32,
    stale: bool,
}

#[derive(Default)]
struct State {
    queues: HashMap<(Arc<str>, u32), PartitionQueue>,
    topics: HashMap<Arc<str>, TopicMeta>,
    /// Where keyless records of a topic go now (see [`Sticky`]).
    sticky: HashMap<Arc<str>, Sticky>,
    next_batch_id: u64,
    /// Ids of batches not yet acknowledged or failed.
    outstanding: BTreeSet<u64>,
    /// Open batches with an id below this are sent without lingering.
    flush_below: u64,
    closed: bool,
}

struct Inner {
    config: ProducerConfig,
    link: BrokerLink,
    buffer: Arc<Semaphore>,
    state: Mutex<State>,
    /// Wakes the sender task: a batch became ready, a partition became
    /// free, a new linger deadline exists, a flush or close was asked for.
    wake: Notify,
    /// Bumped whenever a batch completes; flush waits on it.
    completed: watch::Sender<u64>,
}

/// Sends records to a broker in batches. Dropping it without [`close`]
/// still sends what was buffered, in the background.
///
/// [`close`]: Producer::close
pub struct Producer {
    inner: Arc<Inner>,
    sender: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender task drains what is left, then stops.
        self.inner.lock().closed = true;
        self.inner.wake.notify_one();
    }
}

impl Producer {
    /// Validates the config, connects and starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let conn = ConnectionConfig {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            ..ConnectionConfig::default()
        };
        let link = BrokerLink::connect(&config.bootstrap, conn).await?;
        let inner = Arc::new(Inner {
            buffer: Arc::new(Semaphore::new(config.buffer_bytes_max)),
            config,
            link,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            completed: watch::Sender::new(0),
        });
        let sender = tokio::spawn(run_sender(Arc::clone(&inner)));
        Ok(Producer {
            inner,
            sender: tokio::sync::Mutex::new(Some(sender)),
        })
    }

    /// Buffers one record for `topic` and returns once it is buffered; the
    /// returned [`DeliveryFuture`] resolves when its batch is acknowledged.
    ///
    /// Waits while the buffer is full. Records of one partition are written
    /// in the order their `send` calls returned. Keyed records go to
    /// `murmur2(key) % partitions` (Kafka's partitioner); keyless ones stick
    /// to one partition until `batch_size` bytes went there (KIP-794).
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.send_inner(topic, None, key, value, headers, Waiter::Future(tx))
            .await?;
        Ok(DeliveryFuture { rx })
    }

    /// As [`Self::send`], but the outcome goes to `callback` instead of a
    /// future (Kafka's `send(record, callback)`): the producer runs it once
    /// the record's batch is acknowledged or has failed for good, on its
    /// own task, so it must be quick and must not block (in particular it
    /// must not wait on this producer's `flush`, `close` or buffer space:
    /// its own batch is not done until it returns). A panic in it is caught
    /// and logged. Callbacks of one
    /// partition run in send order, and all of them have run when
    /// [`Self::flush`] returns. When `send_with_callback` itself returns an
    /// error the record was not buffered and the callback is dropped uncalled.
    ///
    /// For senders of many small records this saves a channel and a task
    /// wake-up per record.
    pub async fn send_with_callback<F>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
        callback: F,
    ) -> Result<()>
    where
        F: FnOnce(Result<RecordMetadata>) + Send + 'static,
    {
        let waiter = Waiter::Callback(Box::new(callback));
        self.send_inner(topic, None, key, value, headers, waiter)
            .await
    }

    /// As [`Self::send`], but to `partition` whatever the key: records of
    /// one partition keep their `send` order, batching and retries are the
    /// same. A partition the topic does not have is refused with
    /// `UnknownTopicOrPartition` before anything is buffered.
    pub async fn send_to_partition(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.send_inner(
            topic,
            Some(partition),
            key,
            value,
            headers,
            Waiter::Future(tx),
        )
        .await?;
        Ok(DeliveryFuture { rx })
    }

    /// The one send path: `explicit` overrides the partitioner.
    async fn send_inner(
        &self,
        topic: &str,
        explicit: Option<u32>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
        waiter: Waiter,
    ) -> Result<()> {
        let size = record_size(key, value, headers);
        let max = self.inner.config.buffer_bytes_max.min(BATCH_BYTES_MAX);
        if size > max {
            return Err(ClientError::RecordTooLarge { size, max });
        }
        let (topic, partitions) = self.inner.partition_count(topic).await?;
        if let Some(p) = explicit.filter(|&p| p >= partitions) {
            return Err(ClientError::partition(
                ErrorCode::UnknownTopicOrPartition,
                &topic,
                p,
                Some(format!("the topic has {partitions} partitions")),
            ));
        }
        let permits = u32::try_from(size).map_err(|_| ClientError::RecordTooLarge { size, max })?;
        let permit = Arc::clone(&self.inner.buffer)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::Closed)?;
        self.inner.append(
            topic, partitions, explicit, key, value, headers, permit, waiter,
        )
    }

    /// Sends everything buffered now, without waiting for `linger`, and
    /// waits until all of it is acknowledged or has failed. Failures are
    /// reported through each record's [`DeliveryFuture`], not here. Records
    /// sent concurrently with the flush may or may not be included.
    pub async fn flush(&self) -> Result<()> {
        let mut completed = self.inner.completed.subscribe();
        let target = {
            let mut state = self.inner.lock();
            state.flush_below = state.flush_below.max(state.next_batch_id);
            state.next_batch_id
        };
        self.inner.wake.notify_one();
        loop {
            let done = self
                .inner
                .lock()
                .outstanding
                .first()
                .is_none_or(|&id| id >= target);
            if done {
                return Ok(());
            }
            if completed.changed().await.is_err() {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Flushes, then stops the sender task. Later sends fail with
    /// [`ClientError::Closed`].
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        self.inner.lock().closed = true;
        self.inner.wake.notify_one();
        if let Some(handle) = self.sender.lock().await.take() {
            let _ = handle.await;
        }
        self.inner.link.close().await;
        flushed
    }
}

fn record_size(key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) -> usize {
    let headers: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    RECORD_OVERHEAD_BYTES + key.map_or(0, <[u8]>::len) + value.len() + headers
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere
        // must not wedge every later send.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The topic's shared name and partition count, from the cache or a
    /// metadata round trip (retried while the topic is unknown).
    async fn partition_count(&self, topic: &str) -> Result<(Arc<str>, u32)> {
        {
            let state = self.lock();
            if let Some((name, meta)) = state.topics.get_key_value(topic) {
                if !meta.stale {
                    return Ok((Arc::clone(name), meta.partitions));
                }
            }
        }
        let mut attempt = 0;
        let partitions = loop {
            match self.fetch_partition_count(topic).await {
                Ok(n) => break n,
                Err(e) if e.is_retriable() && attempt < self.config.retries => {
                    attempt += 1;
                    debug!(topic, error = %e, attempt, "metadata lookup failed; retrying");
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        };
        let mut state = self.lock();
        let name = match state.topics.get_key_value(topic) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(topic),
        };
        state.topics.insert(
            Arc::clone(&name),
            TopicMeta {
                partitions,
                stale: false,
            },
        );
        Ok((name, partitions))
    }

    async fn fetch_partition_count(&self, topic: &str) -> Result<u32> {
        let resp = self
            .link
            .get()
            .await?
            .metadata(MetadataRequest {
                topics: Some(vec![topic.to_owned()]),
            })
            .await?;
        let described = describe_from_metadata(resp, topic)?;
        u32::try_from(described.partitions.len())
            .map_err(|_| ClientError::UnknownTopic(topic.to_owned()))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one record's parts plus its permit and waiter; a struct would only rename them"
    )]
    fn append(
        &self,
        topic: Arc<str>,
        partitions: u32,
        explicit: Option<u32>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
        permit: OwnedSemaphorePermit,
        waiter: Waiter,
    ) -> Result<()> {
        let batch_size = self.config.batch_size;
        let compression = self.config.compression;
        let size = permit.num_permits();
        let mut wake = false;
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            if state.closed {
                return Err(ClientError::Closed);
            }
            // Whether keyless records just moved off this record's partition.
            let mut sticky_moved = false;
            let partition = match (explicit, key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => {
                    let sticky = state
                        .sticky
                        .entry(Arc::clone(&topic))
                        .or_insert_with(|| Sticky::start(partitions));
                    // The partition count may have shrunk since we stuck.
                    if sticky.partition >= partitions {
                        *sticky = Sticky::start(partitions);
                    }
                    let partition = sticky.partition;
                    sticky.bytes += size;
                    if sticky.bytes >= batch_size {
                        *sticky = Sticky {
                            partition: (partition + 1) % partitions.max(1),
                            bytes: 0,
                        };
                        sticky_moved = true;
                    }
                    partition
                }
            };
            let queue = state
                .queues
                .entry((Arc::clone(&topic), partition))
                .or_default();
            // Cut before the record that would push the batch past batch_size.
            if let Some(open) = &queue.open {
                if open.content.size() + size > batch_size {
                    seal(queue);
                    wake = true;
                }
            }
            if queue.open.is_none() {
                let id = state.next_batch_id;
                state.next_batch_id += 1;
                state.outstanding.insert(id);
                queue.open = Some(Batch {
                    id,
                    topic: Arc::clone(&topic),
                    partition,
                    content: Content::Building(BatchBuilder::new(compression)),
                    waiters: Vec::new(),
                    permit: None,
                    created: Instant::now(),
                    attempts: 0,
                });
                // A new linger deadline for the sender.
                wake = true;
            }
            let Some(open) = queue.open.as_mut() else {
                return Err(ClientError::Closed);
            };
            if let Content::Building(builder) = &mut open.content {
                builder.push(now_ms(), key, value, headers);
            }
            open.waiters.push(waiter);
            match open.permit.as_mut() {
                Some(held) => held.merge(permit),
                None => open.permit = Some(permit),
            }
            // A batch keyless records moved away from is as full as it will
            // get: sealed now, it goes as soon as its partition is free
            // instead of waiting out `linger`.
            if sticky_moved || open.content.size() >= batch_size {
                seal(queue);
                wake = true;
            }
        }
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Takes every batch that may go now, marks its partition in flight, and
    /// returns them with the earliest linger deadline still pending.
    fn take_sendable(&self, now: Instant) -> (Vec<Batch>, Option<Instant>, bool) {
        let linger = self.config.linger;
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut taken = Vec::new();
        let mut deadline: Option<Instant> = None;
        for queue in state.queues.values_mut() {
            if queue.in_flight {
                continue;
            }
            if queue.ready.is_empty() {
                if let Some(open) = &queue.open {
                    let due = open.created + linger;
                    if due <= now || open.id < state.flush_below || state.closed {
                        seal(queue);
                    } else {
                        deadline = Some(deadline.map_or(due, |d| d.min(due)));
                    }
                }
            }
            if let Some(batch) = queue.ready.pop_front() {
                queue.in_flight = true;
                taken.push(batch);
            }
        }
        let finished = state.closed && state.outstanding.is_empty();
        (taken, deadline, finished)
    }

    /// Records the outcome of a batch: frees its partition, answers its
    /// waiters, releases its buffer bytes.
    fn complete(&self, batch: Batch, outcome: Result<Option<u64>>) {
        // Waiters first, then the partition is freed: the next batch of the
        // partition cannot complete (and run its callbacks) before this
        // one's callbacks have run, and `flush` returns only after them.
        let partition = batch.partition;
        for (i, waiter) in batch.waiters.into_iter().enumerate() {
            let result = match &outcome {
                Ok(base) => Ok(RecordMetadata {
                    partition,
                    offset: base.map(|b| b + i as u64),
                }),
                Err(e) => Err(e.clone()),
            };
            waiter.notify(result);
        }
        drop(batch.permit);
        {
            let mut state = self.lock();
            state.outstanding.remove(&batch.id);
            if let Some(queue) = state
                .queues
                .get_mut(&(Arc::clone(&batch.topic), batch.partition))
            {
                queue.in_flight = false;
            }
        }
        self.completed.send_modify(|n| *n = n.wrapping_add(1));
        self.wake.notify_one();
    }

    /// Puts a failed batch back at the head of its queue after the backoff,
    /// or fails it when out of retries or the error is permanent.
    async fn retry_or_fail(self: Arc<Self>, mut batch: Batch, error: ClientError) {
        if !error.is_retriable() || batch.attempts >= self.config.retries {
            warn!(topic = %batch.topic, partition = batch.partition, error = %error, attempts = batch.attempts, "batch failed");
            self.complete(batch, Err(error));
            return;
        }
        batch.attempts += 1;
        debug!(topic = %batch.topic, partition = batch.partition, error = %error, attempt = batch.attempts, "retrying batch");
        if error.code() == Some(ErrorCode::UnknownTopicOrPartition) {
            if let Some(meta) = self.lock().topics.get_mut(&batch.topic) {
                meta.stale = true;
            }
        }
        tokio::time::sleep(self.config.retry_backoff).await;
        {
            let mut state = self.lock();
            let queue = state
                .queues
                .entry((Arc::clone(&batch.topic), batch.partition))
                .or_default();
            queue.ready.push_front(batch);
            queue.in_flight = false;
        }
        self.wake.notify_one();
    }
}

/// Moves the open batch to the ready queue.
fn seal(queue: &mut PartitionQueue) {
    if let Some(open) = queue.open.take() {
        queue.ready.push_back(open);
    }
}

async fn run_sender(inner: Arc<Inner>) {
    loop {
        let (taken, deadline, finished) = inner.take_sendable(Instant::now());
        for group in group_requests(taken) {
            tokio::spawn(send_group(Arc::clone(&inner), group));
        }
        if finished {
            debug!("producer sender stopped");
            return;
        }
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

/// Splits batches into Produce requests of at most
/// [`PRODUCE_REQUEST_BYTES_MAX`] (a larger single batch goes alone).
fn group_requests(batches: Vec<Batch>) -> Vec<Vec<Batch>> {
    let mut groups = Vec::new();
    let mut current: Vec<Batch> = Vec::new();
    let mut bytes = 0usize;
    for batch in batches {
        let size = batch.content.size();
        if !current.is_empty() && bytes + size > PRODUCE_REQUEST_BYTES_MAX {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(batch);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Finishes the batches of one request, sends it and settles each batch.
async fn send_group(inner: Arc<Inner>, group: Vec<Batch>) {
    let mut batches = Vec::with_capacity(group.len());
    for mut batch in group {
        let content = std::mem::replace(&mut batch.content, Content::Built(Bytes::new()));
        match content {
            Content::Building(builder) => match builder.finish() {
                Ok(bytes) => {
                    batch.content = Content::Built(bytes);
                    batches.push(batch);
                }
                Err(e) => inner.complete(batch, Err(e.into())),
            },
            built @ Content::Built(_) => {
                batch.content = built;
                batches.push(batch);
            }
        }
    }
    if batches.is_empty() {
        return;
    }
    let conn = match inner.link.get().await {
        Ok(conn) => conn,
        Err(e) => {
            for batch in batches {
                tokio::spawn(Arc::clone(&inner).retry_or_fail(batch, e.clone()));
            }
            return;
        }
    };
    let request = shared_request(&inner.config, &batches);
    if inner.config.acks == Acks::None {
        let result = conn.send_oneway_produce(&request).await;
        for batch in batches {
            match &result {
                Ok(()) => inner.complete(batch, Ok(None)),
                Err(e) => {
                    tokio::spawn(Arc::clone(&inner).retry_or_fail(batch, e.clone()));
                }
            }
        }
        return;
    }
    let result = conn.produce_shared(&request).await;
    match result {
        Ok(response) => settle(&inner, batches, &response),
        Err(e) => {
            for batch in batches {
                tokio::spawn(Arc::clone(&inner).retry_or_fail(batch, e.clone()));
            }
        }
    }
}

/// The Produce request for `batches`, sharing each batch's finished bytes
/// (a reference count, no copy). A request holds at most one batch per
/// partition (one in flight per partition), so `(topic, partition)` names a
/// batch within it.
fn shared_request(config: &ProducerConfig, batches: &[Batch]) -> SharedProduceRequest {
    let mut topics: Vec<SharedProduceTopic> = Vec::new();
    for batch in batches {
        let Content::Built(bytes) = &batch.content else {
            continue;
        };
        let partition = SharedProducePartition {
            partition: batch.partition,
            records: bytes.clone(),
        };
        match topics.iter_mut().find(|t| *t.name == *batch.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(SharedProduceTopic {
                name: batch.topic.to_string(),
                partitions: vec![partition],
            }),
        }
    }
    SharedProduceRequest {
        acks: config.acks.to_wire(),
        timeout_ms: u32::try_from(config.request_timeout.as_millis()).unwrap_or(u32::MAX),
        topics,
    }
}

/// Matches each batch with its partition's answer.
fn settle(inner: &Arc<Inner>, batches: Vec<Batch>, response: &ProduceResponse) {
    for batch in batches {
        let answer = response
            .topics
            .iter()
            .filter(|t| *t.name == *batch.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition == batch.partition);
        let Some(answer) = answer else {
            let err = ClientError::partition(
                ErrorCode::UnknownServerError,
                &batch.topic,
                batch.partition,
                Some("partition missing from the produce response".to_owned()),
            );
            inner.complete(batch, Err(err));
            continue;
        };
        if answer.error == ErrorCode::None {
            let base = answer.base_offset;
            inner.complete(batch, Ok(Some(base)));
        } else {
            let err = ClientError::partition(
                answer.error,
                &batch.topic,
                batch.partition,
                answer.error_message.clone(),
            );
            tokio::spawn(Arc::clone(inner).retry_or_fail(batch, err));
        }
    }
}
