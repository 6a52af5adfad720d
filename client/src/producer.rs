//! The producer: buffers records into per-partition batches and sends them,
//! idempotently by default.
//!
//! # Data path
//! [`Producer::send`] picks a partition (see [`crate::partitioner`]), waits
//! for room in the bounded buffer, and pushes the record into that
//! partition's open [`BatchBuilder`]. A background sender task seals a batch
//! when it reaches `batch_size` or has waited `linger`, gives it its
//! producer id, epoch and sequence, finishes it (serialize once, zstd if
//! configured) and queues it in a Produce request together with the ready
//! batches of other partitions. When the broker answers, every record's
//! [`DeliveryFuture`] resolves (or its callback runs) with its offset and
//! the batch's buffer bytes are released.
//!
//! # In flight, ordering and retries
//! Up to `max_in_flight_per_partition` (default 5) requests of one
//! partition are in flight at once, all on one connection, which the broker
//! answers and appends in order. Only full batches (`batch_size`) join
//! requests already in flight; a batch still filling waits until its
//! partition has nothing in flight, so at light load records gather while a
//! request is out (natural batching) and at heavy load full batches keep
//! several requests, and the broker's group commit, busy. A partition's batches keep their order
//! through failures: when one fails retriably (a lost connection, a
//! timeout, a retriable broker error) the partition sends nothing new,
//! waits until none of its requests is in flight, then, after a backoff,
//! resends every batch not yet acknowledged, in the original order, with
//! the original sequences. A batch is failed only once `delivery_timeout`
//! (Kafka's `delivery.timeout.ms`) has passed since it was created, or after
//! `retries` attempts (unbounded by default, as Kafka's).
//!
//! # Idempotence
//! With `enable_idempotence` (the default, as Kafka's) the producer gets a
//! producer id and epoch from the broker (InitProducerId) and numbers each
//! partition's records: the broker writes a resent batch it already holds
//! no second time and answers with the original offsets, so retries add no
//! duplicate and reorder nothing (per producer session and partition; this
//! is not a transaction). The broker's answers drive it:
//!
//! - `OutOfOrderSequenceNumber` for a batch behind one that failed is
//!   retriable: it is resent after its predecessor.
//! - `UnknownProducerId` (the partition forgot the id: it expired), an
//!   out-of-order that outlives its predecessors, a batch failed for good,
//!   or one timed out with its outcome unknown all leave a gap in the
//!   partition's sequences. The producer then bumps its epoch
//!   (InitProducerId with its id and epoch) and resends that partition's
//!   unacknowledged batches from sequence 0 under the new epoch. Other
//!   partitions move to the new epoch once their in-flight batches of the
//!   old one are acknowledged, so no partition ever sees the old epoch
//!   after the new one.
//! - `DuplicateSequenceNumber`: written long ago; delivered, offset unknown.
//! - `InvalidProducerEpoch`: a newer session of this producer id fenced
//!   this one. That is fatal: every record not yet acknowledged fails with
//!   [`ClientError::ProducerFenced`], and so do later sends.
//!
//! With [`Acks::None`] the broker answers nothing, so there is nothing to
//! deduplicate by: idempotence is off (the producer logs it), and a delivery
//! future resolves once its batch is written to the socket, with
//! [`RecordMetadata::offset`] `None`. Without idempotence a retry after a
//! lost answer can write a batch twice, and with several requests in flight
//! a resent batch can land after a later one: delivery is at least once.
//!
//! # Leaders
//! A partition's batches go to its leader, as the client's metadata cache
//! (`cluster`) names it, on that node's connection; a request carries
//! batches of partitions with the same leader. When a batch fails with
//! `NotLeaderOrFollower`, `LeaderNotAvailable`, `FencedLeaderEpoch`,
//! `NotEnoughReplicas`, `RequestTimedOut`, `UnknownTopicOrPartition` or a
//! broken connection, the producer asks for a metadata refresh (paced:
//! `retry_backoff`, growing to `retry_backoff_max` after ten in a row) and
//! the batch takes the
//! ordinary resend path above: same producer id, epoch and sequence, same
//! order, after the partition's other requests are answered. The first
//! four codes also make it forget the leader, so the resend waits for the
//! refresh and goes to the new leader; after a broken connection or a
//! timeout the resend goes wherever the cache says by then. A resend to a
//! leader other than the one the batch failed at does not wait out its
//! backoff (KIP-951): that pause was for the old leader. A partition
//! never has requests in flight to two nodes: after a leader change its
//! next batches wait until those in flight to the old leader are answered,
//! so the new leader sees its sequences in order (and deduplicates what the
//! old one already wrote, if replicated). Nothing is renumbered because a
//! leader moved: a leader error is retriable, and a batch whose outcome is
//! unknown keeps its sequence.
//!
//! # Metadata
//! The partition count of a topic is fetched on first use and cached; an
//! `UnknownTopicOrPartition` answer marks it stale so the next send refetches
//! it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rill_protocol::batch::{sequence_add, stamp_producer};
use rill_protocol::limits::BATCH_BYTES_MAX;
use rill_protocol::wire::{
    self, ErrorCode, InitProducerIdRequest, ProducePartitionResponse, ProduceResponse,
    SharedProducePartition, SharedProduceRequest, SharedProduceTopic, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
};
use rill_protocol::{BatchBuilder, Compression};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cluster::{is_leader_error, is_not_leader, Cluster, LinkKind, Reason};
use crate::connection::{ConnectionConfig, ResponseFuture, REQUEST_TIMEOUT_DEFAULT};
use crate::error::{ClientError, Result};
use crate::partitioner::partition_for_key;

/// Default largest batch, before compression.
pub const BATCH_SIZE_DEFAULT: usize = 1024 * 1024;
/// Default time a batch waits for more records before it is sent: none.
/// A partition's batch goes as soon as the partition may send; while its
/// requests are in flight, records gather into the next batch, so batches
/// grow with load by themselves. Measured (BENCHMARKS.md, "rill bench"):
/// at half the maximum rate a 5 ms linger tripled the median ack latency
/// (5.1 ms against 1.5 ms) and gained no throughput at the maximum rate.
pub const LINGER_DEFAULT: Duration = Duration::ZERO;
/// Default bound on bytes buffered and in flight.
pub const BUFFER_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Default bound on attempts of a batch: none (Kafka's `retries` default);
/// `delivery_timeout` bounds retrying in time instead.
pub const RETRIES_DEFAULT: u32 = u32::MAX;
/// Default pause before the first retry (Kafka's `retry.backoff.ms`); it
/// doubles with each attempt after the first [`FAST_RETRIES`] up to
/// [`RETRY_BACKOFF_MAX_DEFAULT`].
pub const RETRY_BACKOFF_DEFAULT: Duration = Duration::from_millis(100);
/// Attempts of a batch retried `retry_backoff` apart before the pause
/// starts doubling. A failover, the usual reason for retries in a
/// cluster, takes a few hundred milliseconds, and each failed attempt asks
/// for the new leader: pauses doubling from the first would find it up to
/// half a second late.
pub const FAST_RETRIES: u32 = 10;
/// Longest pause between retries (Kafka's `retry.backoff.max.ms`).
pub const RETRY_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);
/// Default longest a `send` waits for a topic's metadata (Kafka's
/// `max.block.ms`): a topic that stays unknown this long fails the send.
pub const MAX_BLOCK_DEFAULT: Duration = Duration::from_secs(60);
/// Default time from a batch's creation to its acknowledgement, retries
/// included, before it fails (Kafka's `delivery.timeout.ms`).
pub const DELIVERY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// Default and most requests of one partition in flight at once with
/// idempotence: the broker remembers its producers' last five batches
/// per partition, so a retry is always among them (Kafka's limit too).
pub const MAX_IN_FLIGHT_PER_PARTITION_DEFAULT: usize = 5;
pub const MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT_MAX: usize = 5;
/// Longest duration any setting may hold (a year): deadlines are computed
/// as `Instant + setting` and must not overflow.
pub const DURATION_CONFIG_MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);
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
    /// `host:port` of a broker, or a comma-separated list of them (Kafka's
    /// `bootstrap.servers`): connecting tries each until one answers.
    pub bootstrap: String,
    pub acks: Acks,
    /// A partition's batch is sent once its estimated size reaches this.
    pub batch_size: usize,
    /// A partition's batch is sent at most this long after its first record.
    pub linger: Duration,
    pub compression: Compression,
    /// Bytes of records buffered or in flight; `send` waits when full.
    pub buffer_bytes_max: usize,
    /// Attempts of a batch before it fails, on top of `delivery_timeout`.
    pub retries: u32,
    /// Pause before the first resend; after [`FAST_RETRIES`] attempts it
    /// doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// A batch not acknowledged this long after its creation fails (its
    /// outcome then unknown). At least `linger + request_timeout`.
    pub delivery_timeout: Duration,
    /// Longest a send retries the metadata of a topic that is unknown (or
    /// unreachable) before it fails.
    pub max_block: Duration,
    pub request_timeout: Duration,
    /// No duplicates and no reordering under retries (module docs). Off
    /// with [`Acks::None`] whatever this says.
    pub enable_idempotence: bool,
    /// Requests of one partition in flight at once (1..=5 with idempotence).
    pub max_in_flight_per_partition: usize,
    pub client_id: String,
}

impl ProducerConfig {
    /// Defaults: acks all, idempotent, 5 requests in flight per partition,
    /// 1 MiB batches, no linger, no compression, 64 MiB buffer, retries for
    /// up to 120 s with backoff from 100 ms to 1 s, 30 s request timeout.
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
            retry_backoff_max: RETRY_BACKOFF_MAX_DEFAULT,
            delivery_timeout: DELIVERY_TIMEOUT_DEFAULT,
            max_block: MAX_BLOCK_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            enable_idempotence: true,
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION_DEFAULT,
            client_id: "rill-producer".to_owned(),
        }
    }

    /// Whether this producer runs idempotently: asked for, and with acks.
    pub fn idempotent(&self) -> bool {
        self.enable_idempotence && self.acks != Acks::None
    }

    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(ClientError::InvalidConfig { field, reason });
        if self.batch_size == 0 || self.batch_size > BATCH_BYTES_MAX {
            return invalid("batch_size", format!("must be in 1..={BATCH_BYTES_MAX}"));
        }
        if self.buffer_bytes_max == 0 || self.buffer_bytes_max > Semaphore::MAX_PERMITS {
            return invalid(
                "buffer_bytes_max",
                format!("must be in 1..={}", Semaphore::MAX_PERMITS),
            );
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "must be positive".to_owned());
        }
        if self.delivery_timeout < self.linger.saturating_add(self.request_timeout) {
            return invalid(
                "delivery_timeout",
                format!(
                    "{:?} is shorter than linger + request_timeout ({:?}): a batch could time out before its first answer",
                    self.delivery_timeout,
                    self.linger.saturating_add(self.request_timeout)
                ),
            );
        }
        for (field, value) in [
            ("linger", self.linger),
            ("retry_backoff", self.retry_backoff),
            ("retry_backoff_max", self.retry_backoff_max),
            ("delivery_timeout", self.delivery_timeout),
            ("request_timeout", self.request_timeout),
            ("max_block", self.max_block),
        ] {
            if value > DURATION_CONFIG_MAX {
                return invalid(
                    field,
                    format!("{value:?} is over the limit of {DURATION_CONFIG_MAX:?}"),
                );
            }
        }
        if self.retry_backoff_max < self.retry_backoff {
            return invalid(
                "retry_backoff_max",
                "must be at least retry_backoff".to_owned(),
            );
        }
        let max = if self.idempotent() {
            MAX_IN_FLIGHT_PER_PARTITION_IDEMPOTENT_MAX
        } else {
            CONNECTION_PARTITION_INFLIGHT_MAX
        };
        if self.max_in_flight_per_partition == 0 || self.max_in_flight_per_partition > max {
            return invalid(
                "max_in_flight_per_partition",
                format!(
                    "must be in 1..={max}{}",
                    if self.idempotent() {
                        " with idempotence (the broker remembers 5 batches per producer)"
                    } else {
                        ""
                    }
                ),
            );
        }
        Ok(())
    }
}

/// Most requests of one partition in flight without idempotence: a
/// connection keeps at most this many of all requests in flight.
const CONNECTION_PARTITION_INFLIGHT_MAX: usize =
    crate::connection::CONNECTION_INFLIGHT_REQUESTS_MAX;

/// Where an acknowledged record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// The record's offset; `None` with [`Acks::None`], where the broker
    /// does not say, and for a batch the broker reported written long ago
    /// (`DuplicateSequenceNumber`).
    pub offset: Option<u64>,
    /// When the request that delivered the record's batch was queued on the
    /// connection (its last attempt): what separates time spent in the
    /// producer's buffer from time in flight.
    pub sent_at: Option<Instant>,
    /// The record's place in its batch (0 for the batch's first record).
    pub index_in_batch: u32,
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

/// Counters of one producer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Batches sent for the first time.
    pub batches_sent: u64,
    /// Batches sent again after a failure (each resend counts).
    pub batches_resent: u64,
    /// Resend rounds: a partition resending its unacknowledged batches.
    pub resend_rounds: u64,
    /// Most batches one partition resent in one round.
    pub most_resent_at_once: u64,
    /// Resent batches the broker already held: not written twice.
    pub duplicates_suppressed: u64,
    /// Epoch bumps (InitProducerId) to close a gap in the sequences.
    pub epoch_bumps: u64,
    /// Metadata answers received: the first lookup of each topic, and
    /// refreshes after a leader refused a batch or could not be reached.
    pub metadata_refreshes: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Batches failed for good.
    pub batches_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches_sent: AtomicU64,
    batches_resent: AtomicU64,
    resend_rounds: AtomicU64,
    most_resent_at_once: AtomicU64,
    duplicates_suppressed: AtomicU64,
    epoch_bumps: AtomicU64,
    batches_acked: AtomicU64,
    batches_failed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ProducerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProducerStats {
            batches_sent: get(&self.batches_sent),
            batches_resent: get(&self.batches_resent),
            resend_rounds: get(&self.resend_rounds),
            most_resent_at_once: get(&self.most_resent_at_once),
            duplicates_suppressed: get(&self.duplicates_suppressed),
            epoch_bumps: get(&self.epoch_bumps),
            metadata_refreshes: 0,
            batches_acked: get(&self.batches_acked),
            batches_failed: get(&self.batches_failed),
        }
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
            // batch would stay outstanding, and every later send to its
            // partition, `flush` and `close` would hang.
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

/// Who a batch's sequences belong to: a producer id and epoch.
type SequenceOwner = (i64, i16);

/// Where a sent batch stands.
#[derive(Debug)]
enum Flight {
    /// Not in flight: waiting for its (re)send.
    Waiting,
    Sent,
    /// Its outcome is known; delivered once every batch before it is.
    Done(Result<Option<u64>>),
}

/// A batch on its way: records, their waiters, and the buffer bytes they hold.
struct Batch {
    /// Producer-wide number, increasing in creation order; `flush` waits
    /// for every id below a mark, and answers find their batch by it.
    id: u64,
    topic: Arc<str>,
    partition: u32,
    content: Content,
    records: u32,
    waiters: Vec<Waiter>,
    /// Buffer bytes; released when the batch is done.
    permit: Option<OwnedSemaphorePermit>,
    created: Instant,
    attempts: u32,
    /// `(owner, base sequence)` once it has them (idempotence).
    sequence: Option<(SequenceOwner, i32)>,
    flight: Flight,
    sent_at: Option<Instant>,
    last_error: Option<ClientError>,
}

enum Content {
    Building(BatchBuilder),
    /// Being finished by the sender, outside the lock.
    Finishing,
    /// Finished bytes, kept for resends so a batch is serialized once.
    /// Each request shares them (a reference count, not a copy) as its own
    /// chunk of a vectored frame.
    Built(Bytes),
}

impl Content {
    fn size(&self) -> usize {
        match self {
            Content::Building(b) => b.estimated_size(),
            Content::Finishing => 0,
            Content::Built(b) => b.len(),
        }
    }
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<Batch>,
    /// Sealed, never sent.
    ready: VecDeque<Batch>,
    /// Sent at least once and not yet delivered, in sequence order.
    unacked: VecDeque<Batch>,
    /// Earliest time of the next resend.
    retry_at: Option<Instant>,
    /// Owner and next value of this partition's sequences (idempotence).
    owner: Option<SequenceOwner>,
    next_sequence: i32,
    /// The sequences have a gap (module docs): the unacknowledged batches
    /// are renumbered under a newer epoch before anything is resent.
    resequence: bool,
    /// The broker node this partition's batches in flight went to (its
    /// leader then). New batches and resends go to the current leader only
    /// once none is in flight to another node, so one partition's requests
    /// are never split over two connections.
    node: Option<i32>,
}

impl PartitionQueue {
    fn in_flight(&self) -> usize {
        self.unacked
            .iter()
            .filter(|b| matches!(b.flight, Flight::Sent))
            .count()
    }

    fn waiting(&self) -> usize {
        self.unacked
            .iter()
            .filter(|b| matches!(b.flight, Flight::Waiting))
            .count()
    }
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
    /// Ids of batches not yet delivered or failed.
    outstanding: BTreeSet<u64>,
    /// Open batches with an id below this are sent without lingering.
    flush_below: u64,
    closed: bool,
    /// The producer id and epoch batches are stamped with now (idempotence).
    identity: Option<SequenceOwner>,
    /// An InitProducerId to bump the epoch is under way.
    bumping: bool,
    /// After a failed bump, the next is not asked for before this.
    bump_not_before: Option<Instant>,
    /// Fenced: nothing more is sent (module docs).
    fatal: Option<ClientError>,
}

struct Inner {
    config: ProducerConfig,
    idempotent: bool,
    /// Where each partition's leader is, and the links to the nodes.
    cluster: Arc<Cluster>,
    buffer: Arc<Semaphore>,
    state: Mutex<State>,
    /// Held while answering waiters, so the waiters of one partition are
    /// answered in send order even when two answers are processed at once.
    delivering: Mutex<()>,
    /// Wakes the sender task: a batch became ready, a partition may send,
    /// a new deadline exists, an epoch was bumped, a flush or close was
    /// asked for.
    wake: Notify,
    /// Bumped whenever a batch completes; flush waits on it.
    completed: watch::Sender<u64>,
    counters: Counters,
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
    /// Validates the config, connects, gets a producer id (with
    /// idempotence) and starts the sender task.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let conn = ConnectionConfig {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            ..ConnectionConfig::default()
        };
        let cluster = Cluster::connect(
            &config.bootstrap,
            conn,
            config.retry_backoff,
            config.retry_backoff_max,
        )
        .await?;
        if config.enable_idempotence && config.acks == Acks::None {
            info!("idempotence is off with acks=none: the broker sends no answers to deduplicate retries by");
        }
        let idempotent = config.idempotent();
        let inner = Arc::new(Inner {
            buffer: Arc::new(Semaphore::new(config.buffer_bytes_max)),
            idempotent,
            config,
            cluster,
            state: Mutex::new(State::default()),
            delivering: Mutex::new(()),
            wake: Notify::new(),
            completed: watch::Sender::new(0),
            counters: Counters::default(),
        });
        if idempotent {
            let identity = inner.init_producer_id(None).await?;
            debug!(
                producer_id = identity.0,
                epoch = identity.1,
                "idempotent producer"
            );
            inner.lock().identity = Some(identity);
        }
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
    /// and logged. Callbacks of one partition run in send order, and all of
    /// them have run when [`Self::flush`] returns. When
    /// `send_with_callback` itself returns an error the record was not
    /// buffered and the callback is dropped uncalled.
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
        if let Some(fatal) = self.inner.lock().fatal.clone() {
            return Err(fatal);
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
        self.inner.cluster.close().await;
        flushed
    }

    /// What this producer has done so far: sends, resends, duplicates the
    /// broker suppressed, epoch bumps.
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            metadata_refreshes: self.inner.cluster.refreshes(),
            ..self.inner.counters.snapshot()
        }
    }

    /// The producer id and epoch batches are stamped with now; `None`
    /// without idempotence.
    pub fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        self.inner.lock().identity
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

/// One batch's part of a request being sent.
struct Sending {
    topic: Arc<str>,
    partition: u32,
    id: u64,
    bytes: Bytes,
    /// The partition's leader when the batch was taken.
    node: i32,
}

/// A batch taken by the sender: its bytes, or the builder to finish them
/// from (with the producer fields already set).
struct Taken {
    topic: Arc<str>,
    partition: u32,
    id: u64,
    work: TakenWork,
    /// The broker node it goes to: its partition's leader.
    node: i32,
}

enum TakenWork {
    Build(BatchBuilder),
    Built(Bytes),
}

/// What the sender loop does next.
struct Plan {
    taken: Vec<Taken>,
    deadline: Option<Instant>,
    bump: Option<SequenceOwner>,
    finished: bool,
}

/// A batch's waiters to answer, once the state lock is released.
struct Delivery {
    id: u64,
    partition: u32,
    waiters: Vec<Waiter>,
    permit: Option<OwnedSemaphorePermit>,
    outcome: Result<Option<u64>>,
    sent_at: Option<Instant>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere
        // must not wedge every later send.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new producer id (`current` `None`), or `current`'s epoch bumped,
    /// retried on retriable errors within `delivery_timeout`.
    async fn init_producer_id(&self, current: Option<SequenceOwner>) -> Result<SequenceOwner> {
        let (producer_id, producer_epoch) = current.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let result = async {
                let response = self
                    .cluster
                    .any()
                    .await?
                    .init_producer_id(InitProducerIdRequest {
                        producer_id,
                        producer_epoch,
                    })
                    .await?;
                match response.error {
                    ErrorCode::None => Ok((response.producer_id, response.producer_epoch)),
                    code => Err(ClientError::broker(code)),
                }
            }
            .await;
            match result {
                Err(e)
                    if e.is_retriable()
                        && attempt < self.config.retries
                        && started.elapsed() < self.config.delivery_timeout =>
                {
                    attempt += 1;
                    debug!(error = %e, attempt, "InitProducerId failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// The pause before attempt `attempt + 1`: `retry_backoff` for the
    /// first [`FAST_RETRIES`], then doubling up to `retry_backoff_max`.
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(FAST_RETRIES).min(16);
        self.config
            .retry_backoff
            .saturating_mul(1 << doublings)
            .min(self.config.retry_backoff_max)
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
        let started = Instant::now();
        let mut attempt = 0;
        let partitions = loop {
            match self.fetch_partition_count(topic).await {
                Ok(n) => break n,
                Err(e)
                    if e.is_retriable()
                        && attempt < self.config.retries
                        && started.elapsed() < self.config.max_block =>
                {
                    attempt += 1;
                    debug!(topic, error = %e, attempt, "metadata lookup failed; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
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
        self.cluster
            .refresh(&[topic], &Reason::first_use(topic))
            .await?;
        self.cluster
            .partition_count(topic)
            .unwrap_or_else(|| Err(ClientError::UnknownTopic(topic.to_owned())))
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
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
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
                    records: 0,
                    waiters: Vec::new(),
                    permit: None,
                    created: Instant::now(),
                    attempts: 0,
                    sequence: None,
                    flight: Flight::Waiting,
                    sent_at: None,
                    last_error: None,
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
            open.records += 1;
            open.waiters.push(waiter);
            match open.permit.as_mut() {
                Some(held) => held.merge(permit),
                None => open.permit = Some(permit),
            }
            // A batch keyless records moved away from is as full as it will
            // get: sealed now, it goes as soon as its partition may send
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

    /// Decides what the sender does now: every batch that may go (resends
    /// first, in order; then new batches with their sequences), the
    /// earliest deadline still pending, an epoch bump to ask for. Expired
    /// batches fail here.
    fn plan(&self, now: Instant, deliveries: &mut Vec<Delivery>) -> Plan {
        let linger = self.config.linger;
        let max_in_flight = self.config.max_in_flight_per_partition;
        let mut guard = self.lock();
        let state = &mut *guard;
        let identity = state.identity;
        let mut taken = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut soonest = |at: Instant| deadline = Some(deadline.map_or(at, |d| d.min(at)));
        let mut bump = None;
        let fatal = state.fatal.clone();
        let flush_below = state.flush_below;
        let closed = state.closed;
        let mut leaderless = Vec::new();
        for ((topic, partition), queue) in state.queues.iter_mut() {
            if let Some(fatal) = &fatal {
                fail_unsent(queue, fatal, deliveries);
                continue;
            }
            // A flush or close sends (or fails) what is open, whatever the
            // partition waits for.
            if queue
                .open
                .as_ref()
                .is_some_and(|open| open.id < flush_below || closed)
            {
                seal(queue);
            }
            if let Some(at) = self.expire(queue, now, deliveries) {
                soonest(at);
            }
            let in_flight = queue.in_flight();
            if queue.resequence && in_flight == 0 {
                match (identity, queue.owner) {
                    (Some(current), Some(owner)) if current == owner => {
                        // Only worth a round trip with something to send.
                        let pending = !queue.unacked.is_empty()
                            || !queue.ready.is_empty()
                            || queue.open.is_some();
                        if pending {
                            bump.get_or_insert(current);
                        }
                        continue;
                    }
                    (Some(current), _) => renumber(queue, current),
                    (None, _) => queue.resequence = false,
                }
            }
            // Routing: everything goes to the partition's leader. Without a
            // known one the partition waits for the background refresh,
            // which wakes the sender.
            let pending = queue.waiting() > 0 || !queue.ready.is_empty() || queue.open.is_some();
            if !pending {
                continue;
            }
            let node = match self.cluster.leader(topic, *partition) {
                Some(leader) => leader.node,
                None => {
                    leaderless.push((Arc::clone(topic), *partition));
                    continue;
                }
            };
            if in_flight > 0 && queue.node != Some(node) {
                // The leader moved under requests still in flight to the
                // old one: their answers come first.
                continue;
            }
            // A new leader is where the failed sends should have gone: the
            // backoff was for the old one (KIP-951's rule), so resend now.
            let moved = queue.node.is_some_and(|old| old != node);
            queue.node = Some(node);
            if queue.waiting() > 0 {
                // Resend round: only once nothing of this partition is in
                // flight, so the resent batches keep their order.
                if in_flight > 0 || queue.resequence {
                    continue;
                }
                if let Some(at) = queue.retry_at.filter(|&at| at > now && !moved) {
                    soonest(at);
                    continue;
                }
                queue.retry_at = None;
                let mut resent = 0u64;
                for batch in queue.unacked.iter_mut().take(max_in_flight) {
                    if !matches!(batch.flight, Flight::Waiting) {
                        continue;
                    }
                    let Content::Built(bytes) = &batch.content else {
                        continue;
                    };
                    batch.flight = Flight::Sent;
                    batch.attempts += 1;
                    resent += 1;
                    taken.push(Taken {
                        topic: Arc::clone(&batch.topic),
                        partition: batch.partition,
                        id: batch.id,
                        work: TakenWork::Built(bytes.clone()),
                        node,
                    });
                }
                if resent > 0 {
                    Counters::add(&self.counters.batches_resent, resent);
                    Counters::add(&self.counters.resend_rounds, 1);
                    self.counters
                        .most_resent_at_once
                        .fetch_max(resent, Ordering::Relaxed);
                }
                continue;
            }
            // New batches, while the partition has room in flight. A batch
            // still filling is sealed only when nothing of its partition is
            // in flight (or a flush or close asks): while requests are in
            // flight records gather into it, so at light load requests
            // follow the round trip, not the record rate; full batches go
            // at once, up to `max_in_flight`, which is what keeps a busy
            // partition's pipe (and one group-committed fsync) full.
            while queue.unacked.len() < max_in_flight && !queue.resequence {
                if queue.ready.is_empty() {
                    if let Some(open) = &queue.open {
                        let due = open.created.checked_add(linger).unwrap_or(now);
                        let forced = open.id < flush_below || closed;
                        if forced || (due <= now && queue.unacked.is_empty()) {
                            seal(queue);
                        } else if queue.unacked.is_empty() {
                            soonest(due);
                        }
                    }
                }
                if queue.ready.is_empty() {
                    break;
                }
                if let Some(current) = identity {
                    if queue.owner != Some(current) {
                        // A new epoch starts a partition's sequences at 0,
                        // once its batches of the old one are delivered.
                        if !queue.unacked.is_empty() {
                            break;
                        }
                        queue.owner = Some(current);
                        queue.next_sequence = 0;
                    }
                }
                let Some(mut batch) = queue.ready.pop_front() else {
                    break;
                };
                let content = std::mem::replace(&mut batch.content, Content::Finishing);
                let work = match content {
                    Content::Building(builder) => {
                        match queue.owner.filter(|_| identity.is_some()) {
                            Some(owner) => {
                                let base = queue.next_sequence;
                                batch.sequence = Some((owner, base));
                                queue.next_sequence = sequence_add(base, batch.records);
                                TakenWork::Build(builder.with_producer(owner.0, owner.1, base))
                            }
                            None => TakenWork::Build(builder),
                        }
                    }
                    Content::Built(bytes) => {
                        Counters::add(&self.counters.batches_sent, 1);
                        batch.content = Content::Built(bytes.clone());
                        TakenWork::Built(bytes)
                    }
                    // Never in `ready` (only taken batches are finishing);
                    // failed rather than lost if it ever were.
                    Content::Finishing => {
                        batch.flight = Flight::Done(Err(ClientError::Closed));
                        queue.unacked.push_back(batch);
                        continue;
                    }
                };
                batch.flight = Flight::Sent;
                batch.attempts = 1;
                taken.push(Taken {
                    topic: Arc::clone(&batch.topic),
                    partition: batch.partition,
                    id: batch.id,
                    work,
                    node,
                });
                queue.unacked.push_back(batch);
            }
        }
        if let Some(at) = state.bump_not_before.filter(|&at| at > now) {
            if bump.is_some() {
                soonest(at);
            }
            bump = None;
        }
        if state.bumping {
            bump = None;
        }
        if bump.is_some() {
            state.bumping = true;
        }
        for (topic, partition) in leaderless {
            self.cluster.want_leader(
                &topic,
                partition,
                "a partition with records to send has no known leader",
            );
        }
        let finished = state.closed && state.outstanding.is_empty();
        Plan {
            taken,
            deadline,
            bump,
            finished,
        }
    }

    /// Stores finished bytes into their batch; a batch whose build failed
    /// fails (and, with idempotence, leaves a gap to close).
    fn store_built(
        &self,
        built: Vec<(Arc<str>, u32, u64, Result<Bytes>)>,
        deliveries: &mut Vec<Delivery>,
    ) {
        let mut state = self.lock();
        for (topic, partition, id, result) in built {
            let Some(queue) = state.queues.get_mut(&(topic, partition)) else {
                continue;
            };
            let Some(batch) = queue.unacked.iter_mut().find(|b| b.id == id) else {
                continue;
            };
            match result {
                Ok(bytes) => {
                    Counters::add(&self.counters.batches_sent, 1);
                    batch.content = Content::Built(bytes);
                }
                Err(e) => {
                    batch.flight = Flight::Done(Err(e));
                    if self.idempotent {
                        queue.resequence = true;
                    }
                }
            }
            deliveries.extend(pop_done(queue));
        }
    }

    /// Applies the outcome of a request to each of its batches (module
    /// docs): delivered, resent, renumbered under a new epoch, or failed.
    fn settle(
        &self,
        sent: &[(Arc<str>, u32, u64)],
        node: i32,
        result: &Result<Option<ProduceResponse>>,
    ) -> Vec<Delivery> {
        let now = Instant::now();
        let mut deliveries = Vec::new();
        let mut guard = self.lock();
        let state = &mut *guard;
        for (topic, partition, id) in sent {
            let outcome = match result {
                Ok(None) => Ok(None),
                Ok(Some(response)) => match find_answer(response, topic, *partition) {
                    Some(answer) => Answer::from_response(answer, topic),
                    None => Err(ClientError::partition(
                        ErrorCode::UnknownServerError,
                        topic,
                        *partition,
                        Some("partition missing from the produce response".to_owned()),
                    )),
                },
                Err(e) => Err(e.clone()),
            };
            let Some(queue) = state.queues.get_mut(&(Arc::clone(topic), *partition)) else {
                continue;
            };
            let Some(index) = queue.unacked.iter().position(|b| b.id == *id) else {
                continue;
            };
            // Every batch before it delivered or failed: it heads the
            // partition's sequence.
            let head = queue
                .unacked
                .iter()
                .take(index)
                .all(|b| matches!(b.flight, Flight::Done(_)));
            let Some(batch) = queue.unacked.get_mut(index) else {
                continue;
            };
            match outcome {
                Ok(Some(Answer::Appended { base, duplicate })) => {
                    if duplicate {
                        Counters::add(&self.counters.duplicates_suppressed, 1);
                    }
                    batch.flight = Flight::Done(Ok(Some(base)));
                }
                Ok(Some(Answer::WrittenLongAgo)) => {
                    Counters::add(&self.counters.duplicates_suppressed, 1);
                    batch.flight = Flight::Done(Ok(None));
                }
                Ok(None) => batch.flight = Flight::Done(Ok(None)),
                Err(e) => {
                    let code = e.code();
                    if is_leader_error(&e) {
                        // The leader may have moved: ask where it is now.
                        // A node that says it is not the leader is
                        // forgotten, so the resend waits for the answer;
                        // after a broken connection or a timeout the
                        // resend goes wherever the cache says by then.
                        if is_not_leader(&e) {
                            self.cluster.leader_failed(topic, *partition, node);
                        }
                        self.cluster.want_leader(
                            topic,
                            *partition,
                            &format!("produce to {topic}-{partition} at node {node} failed: {e}"),
                        );
                    }
                    if code == Some(ErrorCode::UnknownTopicOrPartition) {
                        if let Some(meta) = state.topics.get_mut(topic) {
                            meta.stale = true;
                        }
                    }
                    let gap = matches!(
                        code,
                        Some(ErrorCode::OutOfOrderSequenceNumber | ErrorCode::UnknownProducerId)
                    );
                    if code == Some(ErrorCode::InvalidProducerEpoch) {
                        let (producer_id, epoch) = batch.sequence.map_or((-1, -1), |(o, _)| o);
                        let fenced = ClientError::ProducerFenced {
                            producer_id,
                            epoch,
                            message: e.to_string().into(),
                        };
                        warn!(topic = %topic, partition, producer_id, epoch, "producer fenced by a newer session; failing what is not yet acknowledged");
                        batch.flight = Flight::Done(Err(fenced.clone()));
                        state.fatal.get_or_insert(fenced);
                    } else if gap && !head {
                        // Behind a batch that failed: resent after it,
                        // without spending one of its own attempts.
                        batch.attempts = batch.attempts.saturating_sub(1);
                        self.retry(queue, index, e, now);
                    } else if gap {
                        debug!(topic = %topic, partition, error = %e, "sequence gap; the partition's batches are renumbered under a new epoch");
                        batch.flight = Flight::Waiting;
                        batch.last_error = Some(e);
                        queue.resequence = true;
                    } else if e.is_retriable() || code.is_none() {
                        // No broker answer (a broken or out-of-step
                        // connection): the outcome is unknown, a resend is
                        // the only safe move.
                        self.retry(queue, index, e, now);
                    } else {
                        warn!(topic = %topic, partition, error = %e, "batch failed");
                        batch.flight = Flight::Done(Err(e));
                        if self.idempotent {
                            // The broker refused it: its sequences were
                            // never written, a gap for what follows.
                            queue.resequence = true;
                        }
                    }
                }
            }
        }
        // A fence fails everything not yet sent at once.
        if let Some(fatal) = state.fatal.clone() {
            for queue in state.queues.values_mut() {
                fail_unsent(queue, &fatal, &mut deliveries);
            }
        }
        for (topic, partition, _) in sent {
            if let Some(queue) = state.queues.get_mut(&(Arc::clone(topic), *partition)) {
                deliveries.extend(pop_done(queue));
            }
        }
        deliveries
    }

    /// Fails the batches of `queue` that are not in flight and have passed
    /// `delivery_timeout` (never sent, or waiting for a resend or an epoch
    /// bump); returns when the next one would.
    fn expire(
        &self,
        queue: &mut PartitionQueue,
        now: Instant,
        deliveries: &mut Vec<Delivery>,
    ) -> Option<Instant> {
        let timeout = self.config.delivery_timeout;
        let expired = |b: &Batch| now.saturating_duration_since(b.created) >= timeout;
        if queue.open.as_ref().is_some_and(expired) {
            seal(queue);
        }
        // Failed batches join the tail of `unacked` as done, so their
        // waiters hear after those of every batch sent before them.
        while queue.ready.front().is_some_and(expired) {
            let Some(mut batch) = queue.ready.pop_front() else {
                break;
            };
            batch.flight = Flight::Done(Err(timed_out(timeout, None)));
            queue.unacked.push_back(batch);
        }
        for batch in queue.unacked.iter_mut() {
            if matches!(batch.flight, Flight::Waiting) && expired(batch) {
                // Its last attempt's outcome is unknown: it may be in the
                // log. The batches after it keep their sequences; the
                // broker's answer to the next one tells whether there is
                // a gap (out of order at the head) or not.
                let last = batch.last_error.take();
                batch.flight = Flight::Done(Err(timed_out(timeout, last)));
            }
        }
        deliveries.extend(pop_done(queue));
        let waiting = queue
            .unacked
            .iter()
            .filter(|b| matches!(b.flight, Flight::Waiting));
        queue
            .open
            .iter()
            .chain(queue.ready.front())
            .chain(waiting)
            .map(|b| {
                b.created
                    .checked_add(timeout)
                    .unwrap_or(now + DURATION_CONFIG_MAX)
            })
            .min()
    }

    /// Marks batch `index` of `queue` for a resend after the backoff, or
    /// fails it once out of time or attempts.
    fn retry(&self, queue: &mut PartitionQueue, index: usize, error: ClientError, now: Instant) {
        let Some(batch) = queue.unacked.get_mut(index) else {
            return;
        };
        let elapsed = now.duration_since(batch.created);
        let out_of_time = elapsed >= self.config.delivery_timeout;
        if out_of_time || batch.attempts > self.config.retries {
            warn!(topic = %batch.topic, partition = batch.partition, error = %error, attempts = batch.attempts, "batch failed: out of time or attempts");
            // Kafka's rule: out of time is a timeout, out of attempts the
            // last error.
            let error = if out_of_time {
                timed_out(elapsed, Some(error))
            } else {
                error
            };
            // Written or not: nobody knows, so what follows keeps its
            // sequences and the broker's next answer settles it (see
            // `expire`).
            batch.flight = Flight::Done(Err(error));
            return;
        }
        debug!(topic = %batch.topic, partition = batch.partition, error = %error, attempt = batch.attempts, "batch will be resent");
        let at = now.checked_add(self.backoff(batch.attempts)).unwrap_or(now);
        batch.flight = Flight::Waiting;
        batch.last_error = Some(error);
        queue.retry_at = Some(queue.retry_at.map_or(at, |t| t.max(at)));
    }

    /// Answers waiters in order, releases buffer bytes, and lets `flush`
    /// and the sender know.
    fn deliver(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let mut done = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            match &d.outcome {
                Ok(_) => Counters::add(&self.counters.batches_acked, 1),
                Err(_) => Counters::add(&self.counters.batches_failed, 1),
            }
            for (i, waiter) in d.waiters.into_iter().enumerate() {
                let result = match &d.outcome {
                    Ok(base) => Ok(RecordMetadata {
                        partition: d.partition,
                        offset: base.map(|b| b + i as u64),
                        sent_at: d.sent_at,
                        index_in_batch: u32::try_from(i).unwrap_or(u32::MAX),
                    }),
                    Err(e) => Err(e.clone()),
                };
                waiter.notify(result);
            }
            drop(d.permit);
            done.push(d.id);
        }
        {
            let mut state = self.lock();
            for id in done {
                state.outstanding.remove(&id);
            }
        }
        self.completed.send_modify(|n| *n = n.wrapping_add(1));
        self.wake.notify_one();
    }

    /// Runs `f` (which pops finished batches under the state lock) and
    /// answers what it popped, with delivery serialized so one partition's
    /// waiters hear in order.
    fn with_delivery(&self, f: impl FnOnce(&mut Vec<Delivery>)) {
        let _order = self
            .delivering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut deliveries = Vec::new();
        f(&mut deliveries);
        self.deliver(deliveries);
    }
}

/// A partition's answer, as the producer acts on it.
enum Answer {
    Appended {
        base: u64,
        duplicate: bool,
    },
    /// `DuplicateSequenceNumber`: written long ago, offsets forgotten.
    WrittenLongAgo,
}

impl Answer {
    fn from_response(answer: &ProducePartitionResponse, topic: &str) -> Result<Option<Answer>> {
        match answer.error {
            ErrorCode::None => Ok(Some(Answer::Appended {
                base: answer.base_offset,
                duplicate: answer.duplicate_batches > 0,
            })),
            ErrorCode::DuplicateSequenceNumber => Ok(Some(Answer::WrittenLongAgo)),
            code => Err(ClientError::partition(
                code,
                topic,
                answer.partition,
                answer.error_message.clone(),
            )),
        }
    }
}

fn find_answer<'a>(
    response: &'a ProduceResponse,
    topic: &str,
    partition: u32,
) -> Option<&'a ProducePartitionResponse> {
    response
        .topics
        .iter()
        .filter(|t| *t.name == *topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == partition)
}

fn timed_out(after: Duration, last_error: Option<ClientError>) -> ClientError {
    ClientError::DeliveryTimeout {
        after,
        last_error: last_error.map(Box::new),
    }
}

/// Moves the open batch to the ready queue.
fn seal(queue: &mut PartitionQueue) {
    if let Some(open) = queue.open.take() {
        queue.ready.push_back(open);
    }
}

fn finish_batch(mut batch: Batch, outcome: Result<Option<u64>>) -> Delivery {
    Delivery {
        id: batch.id,
        partition: batch.partition,
        waiters: std::mem::take(&mut batch.waiters),
        permit: batch.permit.take(),
        outcome,
        sent_at: batch.sent_at,
    }
}

/// Pops the batches at the front of `queue` whose outcome is known.
fn pop_done(queue: &mut PartitionQueue) -> Vec<Delivery> {
    let mut out = Vec::new();
    while queue
        .unacked
        .front()
        .is_some_and(|b| matches!(b.flight, Flight::Done(_)))
    {
        let Some(mut batch) = queue.unacked.pop_front() else {
            break;
        };
        let Flight::Done(outcome) = std::mem::replace(&mut batch.flight, Flight::Waiting) else {
            continue;
        };
        out.push(finish_batch(batch, outcome));
    }
    out
}

/// Fails every batch of `queue` not in flight (after a fence).
fn fail_unsent(queue: &mut PartitionQueue, fatal: &ClientError, deliveries: &mut Vec<Delivery>) {
    seal(queue);
    for batch in queue.unacked.iter_mut() {
        if matches!(batch.flight, Flight::Waiting) {
            batch.flight = Flight::Done(Err(fatal.clone()));
        }
    }
    // Behind what was sent, so waiters hear in send order.
    for mut batch in queue.ready.drain(..) {
        batch.flight = Flight::Done(Err(fatal.clone()));
        queue.unacked.push_back(batch);
    }
    deliveries.extend(pop_done(queue));
}

/// Gives `queue`'s unacknowledged batches (none in flight) new sequences
/// under `owner`, from 0, in their order: the bytes are restamped (a copy;
/// this is the rare path) and the batches resent.
fn renumber(queue: &mut PartitionQueue, owner: SequenceOwner) {
    let mut next = 0i32;
    for batch in queue.unacked.iter_mut() {
        if matches!(batch.flight, Flight::Done(_)) {
            continue;
        }
        if let Content::Built(bytes) = &batch.content {
            let mut copy = BytesMut::from(&bytes[..]);
            stamp_producer(&mut copy, owner.0, owner.1, next);
            batch.content = Content::Built(copy.freeze());
        }
        batch.sequence = Some((owner, next));
        batch.flight = Flight::Waiting;
        next = sequence_add(next, batch.records);
    }
    queue.owner = Some(owner);
    queue.next_sequence = next;
    queue.resequence = false;
    queue.retry_at = None;
}

async fn run_sender(inner: Arc<Inner>) {
    // Bumped after every metadata refresh: a partition waiting for its
    // leader may send now.
    let mut metadata = inner.cluster.subscribe();
    loop {
        let mut plan = None;
        inner.with_delivery(|deliveries| plan = Some(inner.plan(Instant::now(), deliveries)));
        let Some(plan) = plan else { return };
        if let Some(current) = plan.bump {
            tokio::spawn(bump_epoch(Arc::clone(&inner), current));
        }
        if !plan.taken.is_empty() {
            send_taken(&inner, plan.taken).await;
            // Sending took time: look again before sleeping.
            continue;
        }
        if plan.finished {
            debug!("producer sender stopped");
            return;
        }
        let sleep = async {
            match plan.deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.wake.notified() => {}
            Ok(()) = metadata.changed() => {}
            _ = sleep => {}
        }
    }
}

/// Asks the broker for the next epoch of `current`; the partitions waiting
/// to renumber do so on the next plan.
async fn bump_epoch(inner: Arc<Inner>, current: SequenceOwner) {
    let result = inner.init_producer_id(Some(current)).await;
    {
        let mut state = inner.lock();
        state.bumping = false;
        match result {
            Ok(next) => {
                info!(
                    producer_id = next.0,
                    epoch = next.1,
                    "producer epoch bumped to close a sequence gap"
                );
                if next.0 == current.0 {
                    Counters::add(&inner.counters.epoch_bumps, 1);
                }
                state.identity = Some(next);
                state.bump_not_before = None;
            }
            // The broker unreachable: batches waiting for the bump expire
            // by their delivery timeout, and the next plan asks again.
            Err(e) if e.is_retriable() => {
                warn!(error = %e, "cannot bump the producer epoch yet");
                state.bump_not_before = Instant::now().checked_add(inner.config.retry_backoff_max);
            }
            Err(e) => {
                warn!(error = %e, "the broker refuses to bump the producer epoch; failing what is not yet acknowledged");
                state.fatal.get_or_insert(e);
            }
        }
    }
    inner.wake.notify_one();
}

/// Finishes the new batches, groups everything taken into requests and
/// queues them on the connection in order, one waiting task per request.
async fn send_taken(inner: &Arc<Inner>, taken: Vec<Taken>) {
    let mut built = Vec::new();
    let mut sends = Vec::with_capacity(taken.len());
    for t in taken {
        match t.work {
            TakenWork::Built(bytes) => sends.push(Sending {
                topic: t.topic,
                partition: t.partition,
                id: t.id,
                bytes,
                node: t.node,
            }),
            TakenWork::Build(builder) => match builder.finish() {
                Ok(bytes) => {
                    built.push((Arc::clone(&t.topic), t.partition, t.id, Ok(bytes.clone())));
                    sends.push(Sending {
                        topic: t.topic,
                        partition: t.partition,
                        id: t.id,
                        bytes,
                        node: t.node,
                    });
                }
                Err(e) => built.push((t.topic, t.partition, t.id, Err(e.into()))),
            },
        }
    }
    if !built.is_empty() {
        inner.with_delivery(|d| inner.store_built(built, d));
    }
    // Each node's batches in taken order (so each partition's in order),
    // on that node's connection.
    let mut by_node: Vec<(i32, Vec<Sending>)> = Vec::new();
    for send in sends {
        match by_node.iter_mut().find(|(node, _)| *node == send.node) {
            Some((_, list)) => list.push(send),
            None => by_node.push((send.node, vec![send])),
        }
    }
    for (node, sends) in by_node {
        send_to_node(inner, node, sends).await;
    }
}

/// Queues `sends` (all led by `node`) on `node`'s connection, one waiting
/// task per request.
async fn send_to_node(inner: &Arc<Inner>, node: i32, sends: Vec<Sending>) {
    let groups = group_requests(sends);
    let conn = match inner.cluster.connection(node, LinkKind::Main).await {
        Ok(conn) => conn,
        Err(e) => {
            debug!(node, error = %e, "cannot reach the partition leader");
            for group in &groups {
                fail_group(inner, group, node, e.clone());
            }
            return;
        }
    };
    let mut failed: Option<ClientError> = None;
    for group in groups {
        if let Some(e) = &failed {
            fail_group(inner, &group, node, e.clone());
            continue;
        }
        let request = shared_request(&inner.config, &group);
        let queued: Result<ResponseFuture<Option<ProduceResponse>>> =
            if inner.config.acks == Acks::None {
                conn.queue_oneway_produce(&request)
                    .map(|f| Box::pin(async move { f.await.map(|()| None) }) as ResponseFuture<_>)
            } else {
                conn.queue_produce(&request)
                    .await
                    .map(|f| Box::pin(async move { f.await.map(Some) }) as ResponseFuture<_>)
            };
        let sent_at = Instant::now();
        let sent: Vec<(Arc<str>, u32, u64)> = group
            .iter()
            .map(|s| (Arc::clone(&s.topic), s.partition, s.id))
            .collect();
        match queued {
            Ok(response) => {
                mark_sent(inner, &sent, sent_at);
                let inner = Arc::clone(inner);
                tokio::spawn(async move {
                    let result = response.await;
                    inner.with_delivery(|d| d.extend(inner.settle(&sent, node, &result)));
                    // The answer may have freed the partition or set a
                    // resend time, with nothing delivered.
                    inner.wake.notify_one();
                });
            }
            Err(e) => {
                fail_group(inner, &group, node, e.clone());
                failed = Some(e);
            }
        }
    }
}

fn mark_sent(inner: &Inner, sent: &[(Arc<str>, u32, u64)], at: Instant) {
    let mut state = inner.lock();
    for (topic, partition, id) in sent {
        if let Some(batch) = state
            .queues
            .get_mut(&(Arc::clone(topic), *partition))
            .and_then(|q| q.unacked.iter_mut().find(|b| b.id == *id))
        {
            batch.sent_at = Some(at);
        }
    }
}

/// A request that never reached the connection: its batches failed as
/// the connection did.
fn fail_group(inner: &Arc<Inner>, group: &[Sending], node: i32, error: ClientError) {
    let sent: Vec<(Arc<str>, u32, u64)> = group
        .iter()
        .map(|s| (Arc::clone(&s.topic), s.partition, s.id))
        .collect();
    let result = Err(error);
    inner.with_delivery(|d| d.extend(inner.settle(&sent, node, &result)));
}

/// Splits batches into Produce requests in order: at most one batch per
/// partition in a request (its answer is one base offset), a partition's
/// later batches in later requests, and at most
/// [`PRODUCE_REQUEST_BYTES_MAX`] per request (a larger single batch goes
/// alone).
fn group_requests(sends: Vec<Sending>) -> Vec<Vec<Sending>> {
    let mut groups: Vec<Vec<Sending>> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    // The last group each partition has a batch in.
    let mut last: HashMap<(Arc<str>, u32), usize> = HashMap::new();
    for send in sends {
        let key = (Arc::clone(&send.topic), send.partition);
        let after = last.get(&key).map_or(0, |&g| g + 1);
        let size = send.bytes.len();
        // Groups from `after` on hold nothing of this partition yet.
        let fits = (after..groups.len())
            .find(|&g| sizes[g] == 0 || sizes[g] + size <= PRODUCE_REQUEST_BYTES_MAX);
        let g = match fits {
            Some(g) => g,
            None => {
                groups.push(Vec::new());
                sizes.push(0);
                groups.len() - 1
            }
        };
        sizes[g] += size;
        groups[g].push(send);
        last.insert(key, g);
    }
    groups
}

/// The Produce request for `batches`, sharing each batch's finished bytes
/// (a reference count, no copy).
fn shared_request(config: &ProducerConfig, batches: &[Sending]) -> SharedProduceRequest {
    let mut topics: Vec<SharedProduceTopic> = Vec::new();
    for batch in batches {
        let partition = SharedProducePartition {
            partition: batch.partition,
            records: batch.bytes.clone(),
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
