//! The consumer: fetches assigned partitions and hands out records read in
//! place from the fetched bytes.
//!
//! # Zero copy
//! A fetch response's record bytes are a `Bytes` slice of the response
//! frame. [`Records`] keeps those slices and decodes nothing up front except
//! batch headers and CRCs. [`Records::batches`] opens each batch with
//! `BatchView::records()`, which reads an uncompressed batch's archive in
//! place, and every [`ConsumerRecord`] borrows its key, value and headers
//! from it — no per-record copy. A zstd batch is decompressed once, into a
//! buffer that lives as long as its [`RecordBatch`]; that is why iteration is
//! two-level (batches, then records): a flat iterator would have to own the
//! buffer its items borrow from.
//!
//! # Positions and prefetch
//! Each assigned partition has a position: the offset of the next record to
//! return. A fetch asks for every partition from its position; the bytes
//! may start with a batch that begins earlier (the broker sends whole
//! batches), and records below the position are skipped. After a poll
//! returns, the next fetch is already sent in the background, so the broker
//! works (and long-polls) while the caller processes records. A seek or a
//! new assignment drops that prefetch.
//!
//! # Leaders
//! A partition is read from its leader. A fetch is one request per leader
//! node, sent together; the poll takes them all. Fetches use their own
//! connection to each node so that a long-polling fetch never delays a
//! ListOffsets behind it (responses come back in request order). When a
//! leader refuses a partition (`NotLeaderOrFollower`, `LeaderNotAvailable`,
//! `FencedLeaderEpoch`, ...) or its node cannot be reached, the partition's
//! leader is forgotten and the next poll refreshes the metadata (paced with
//! `retry_backoff` growing to `retry_backoff_max`, see `cluster`) before
//! fetching it again; no error reaches the caller and no position moves.
//!
//! # Errors
//! `OffsetOutOfRange` is returned to the caller as an error and the position
//! is left as it was; an automatic reset policy arrives with consumer groups.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::batch::records::RecordRef;
use rill_protocol::batch::view::BatchIter;
use rill_protocol::wire::{ErrorCode, FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::admin::{partition_offset, OffsetSpec};
use crate::cluster::{is_leader_error, Cluster, LinkKind, Reason};
use crate::connection::{ConnectionConfig, REQUEST_TIMEOUT_DEFAULT};
use crate::error::{ClientError, Result};
use crate::producer::{RETRY_BACKOFF_DEFAULT, RETRY_BACKOFF_MAX_DEFAULT};

/// Default longest time the broker holds a fetch waiting for data.
pub const FETCH_MAX_WAIT_DEFAULT: Duration = Duration::from_millis(500);
/// Default bytes the broker waits for before answering a fetch early.
pub const FETCH_MIN_BYTES_DEFAULT: u32 = 1;
/// Default bound on one fetch response's record bytes.
pub const FETCH_MAX_BYTES_DEFAULT: u32 = 50 * 1024 * 1024;
/// Default bound on one partition's record bytes in a fetch response.
pub const PARTITION_MAX_BYTES_DEFAULT: u32 = 1024 * 1024;

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `host:port` of a broker, or a comma-separated list of them (Kafka's
    /// `bootstrap.servers`): connecting tries each until one answers.
    pub bootstrap: String,
    /// Longest time the broker holds a fetch that has less than
    /// `fetch_min_bytes` to return.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    pub partition_max_bytes: u32,
    /// Time a request may take beyond the fetch's own wait. Also bounds
    /// how long a seek retries a partition whose leader is moving.
    pub request_timeout: Duration,
    /// Least pause between metadata refreshes after a leader error; it
    /// doubles while refreshes do not help, up to `retry_backoff_max`
    /// (Kafka's `retry.backoff.ms` and `retry.backoff.max.ms`).
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub client_id: String,
}

impl ConsumerConfig {
    /// Defaults: 500 ms max wait, 1 byte min, 50 MiB per fetch, 1 MiB per
    /// partition, 30 s request timeout.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ConsumerConfig {
            bootstrap: bootstrap.into(),
            fetch_max_wait: FETCH_MAX_WAIT_DEFAULT,
            fetch_min_bytes: FETCH_MIN_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            partition_max_bytes: PARTITION_MAX_BYTES_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            retry_backoff: RETRY_BACKOFF_DEFAULT,
            retry_backoff_max: RETRY_BACKOFF_MAX_DEFAULT,
            client_id: "rill-consumer".to_owned(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.partition_max_bytes == 0 || self.fetch_max_bytes == 0 {
            return Err(ClientError::InvalidConfig {
                field: "partition_max_bytes",
                reason: "fetch byte limits must be positive".to_owned(),
            });
        }
        if self.retry_backoff_max < self.retry_backoff {
            return Err(ClientError::InvalidConfig {
                field: "retry_backoff_max",
                reason: "must be at least retry_backoff".to_owned(),
            });
        }
        if u32::try_from(self.fetch_max_wait.as_millis()).is_err() {
            return Err(ClientError::InvalidConfig {
                field: "fetch_max_wait",
                reason: "must fit in u32 milliseconds".to_owned(),
            });
        }
        Ok(())
    }
}

/// Where [`Consumer::seek`] moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Offset(u64),
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on.
    Latest,
    /// The first record with a timestamp at or after this many ms since the
    /// Unix epoch.
    Timestamp(i64),
}

struct Assigned {
    topic: Arc<str>,
    partition: u32,
    /// Next offset to return; `None` until resolved (to the log start, at
    /// the next poll, for a partition assigned without a seek).
    position: Option<u64>,
}

/// One node's share of a fetch: its node, partitions and request topics.
type NodeRequest = (i32, Vec<(Arc<str>, u32)>, Vec<FetchTopic>);

/// One node's answer to its share of a fetch.
struct NodeFetch {
    node: i32,
    /// The partitions asked for, to forget their leader if the node fails.
    partitions: Vec<(Arc<str>, u32)>,
    result: Result<FetchResponse>,
}

/// A fetch sent ahead of the caller (one request per leader node), and
/// the positions it fetched from.
struct Prefetch {
    generation: u64,
    nodes: Vec<i32>,
    handle: JoinHandle<Vec<NodeFetch>>,
}

/// Reads assigned partitions. Not shareable: one caller polls it.
pub struct Consumer {
    config: ConsumerConfig,
    /// Partition leaders and the links to them: fetches on each node's
    /// [`LinkKind::Fetch`] link, ListOffsets on its main one.
    cluster: Arc<Cluster>,
    assigned: Vec<Assigned>,
    prefetch: Option<Prefetch>,
    /// Bumped by assign and seek; a prefetch from an older generation
    /// asked for stale positions and is dropped.
    generation: u64,
    /// Where the next fetch starts in `assigned`. Only the first partition
    /// with data may exceed its `partition_max_bytes` (so a consumer always
    /// progresses); rotating the order means a partition whose batches are
    /// larger than that limit is first in turn and is never starved.
    fetch_rotation: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("assigned", &self.assigned.len())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// The metadata cache and broker links this consumer reads through.
    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(p) = self.prefetch.take() {
            p.handle.abort();
        }
    }
}

impl Consumer {
    /// Validates the config and connects.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
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
        Ok(Consumer {
            config,
            cluster,
            assigned: Vec::new(),
            prefetch: None,
            generation: 0,
            fetch_rotation: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Replaces the assignment. Partitions kept from the old assignment keep
    /// their positions; new ones start at the log start unless sought.
    pub fn assign(&mut self, partitions: Vec<(String, u32)>) {
        let mut next = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if next
                .iter()
                .any(|a: &Assigned| *a.topic == *topic && a.partition == partition)
            {
                continue;
            }
            let position = self
                .find(&topic, partition)
                .and_then(|i| self.assigned.get(i))
                .and_then(|a| a.position);
            next.push(Assigned {
                topic: Arc::from(topic),
                partition,
                position,
            });
        }
        self.assigned = next;
        self.invalidate_prefetch();
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.assigned
            .iter()
            .map(|a| (a.topic.to_string(), a.partition))
            .collect()
    }

    /// Moves a partition's position. `Earliest`, `Latest` and `Timestamp`
    /// ask the broker (ListOffsets) now.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<()> {
        let index = self
            .find(topic, partition)
            .ok_or_else(|| ClientError::NotAssigned {
                topic: topic.to_owned(),
                partition,
            })?;
        let offset = match to {
            SeekTo::Offset(o) => o,
            SeekTo::Earliest => self.lookup(topic, partition, OffsetSpec::Earliest).await?,
            SeekTo::Latest => self.lookup(topic, partition, OffsetSpec::Latest).await?,
            SeekTo::Timestamp(ts) => {
                self.lookup(topic, partition, OffsetSpec::Timestamp(ts))
                    .await?
            }
        };
        if let Some(a) = self.assigned.get_mut(index) {
            a.position = Some(offset);
        }
        self.invalidate_prefetch();
        Ok(())
    }

    /// The offset of the next record `poll` returns for this partition;
    /// `None` if it is not assigned or its start is not resolved yet.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.find(topic, partition)
            .and_then(|i| self.assigned.get(i))
            .and_then(|a| a.position)
    }

    /// Waits up to `timeout` for records of the assigned partitions. Returns
    /// empty [`Records`] when none arrive in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Records> {
        let deadline = Instant::now() + timeout;
        if self.assigned.is_empty() {
            tokio::time::sleep_until(deadline).await;
            return Ok(Records::default());
        }
        self.resolve_positions().await?;
        loop {
            let mut prefetch = match self.prefetch.take() {
                Some(p) if p.generation == self.generation => p,
                stale => {
                    if let Some(p) = stale {
                        self.drop_prefetch(p).await;
                    }
                    self.find_leaders(deadline).await?;
                    match self.start_fetch() {
                        Some(p) => p,
                        // No partition has a known leader yet: the next
                        // refresh is paced, so looping does not spin.
                        None if Instant::now() < deadline => continue,
                        None => return Ok(Records::default()),
                    }
                }
            };
            let answers = match tokio::time::timeout_at(deadline, &mut prefetch.handle).await {
                Err(_) => {
                    // Still waiting on the brokers: keep it for the next poll.
                    self.prefetch = Some(prefetch);
                    return Ok(Records::default());
                }
                Ok(Err(join)) => {
                    debug!(error = %join, "fetch task ended abnormally");
                    return Err(ClientError::ConnectionClosed);
                }
                Ok(Ok(answers)) => answers,
            };
            let (records, moved) = self.take_records(answers)?;
            if moved {
                // A leader was forgotten: look it up before fetching again.
                if records.is_empty() && Instant::now() < deadline {
                    continue;
                }
                return Ok(records);
            }
            self.prefetch = self.start_fetch();
            return Ok(records);
        }
    }

    /// Refreshes the metadata (paced) when an assigned partition has no
    /// known leader; gives up at `deadline` and on retriable failures,
    /// which the next poll retries.
    async fn find_leaders(&self, deadline: Instant) -> Result<()> {
        let mut topics: Vec<&str> = Vec::new();
        let mut first_use = false;
        for a in &self.assigned {
            if self.cluster.leader(&a.topic, a.partition).is_none() {
                first_use |= self.cluster.partition_count(&a.topic).is_none();
                if !topics.contains(&&*a.topic) {
                    topics.push(&a.topic);
                }
            }
        }
        let Some(first) = topics.first() else {
            return Ok(());
        };
        let reason = if first_use {
            Reason::first_use(first)
        } else {
            Reason::failure(format!(
                "fetch: partitions of {topics:?} have no known leader"
            ))
        };
        match tokio::time::timeout_at(deadline, self.cluster.refresh(&topics, &reason)).await {
            Ok(Err(e)) if !e.is_retriable() => Err(e),
            Ok(Err(e)) => {
                debug!(error = %e, "metadata refresh for fetching failed; will retry");
                Ok(())
            }
            Ok(Ok(())) | Err(_) => Ok(()),
        }
    }

    fn find(&self, topic: &str, partition: u32) -> Option<usize> {
        self.assigned
            .iter()
            .position(|a| *a.topic == *topic && a.partition == partition)
    }

    /// The partition's offset for `spec`, asked of its leader.
    pub(crate) async fn lookup(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<u64> {
        partition_offset(
            &self.cluster,
            topic,
            partition,
            spec,
            self.config.request_timeout,
        )
        .await
    }

    /// Gives partitions assigned without a seek their log start offset.
    async fn resolve_positions(&mut self) -> Result<()> {
        let unresolved: Vec<(Arc<str>, u32)> = self
            .assigned
            .iter()
            .filter(|a| a.position.is_none())
            .map(|a| (Arc::clone(&a.topic), a.partition))
            .collect();
        for (topic, partition) in unresolved {
            let offset = self.lookup(&topic, partition, OffsetSpec::Earliest).await?;
            if let Some(i) = self.find(&topic, partition) {
                if let Some(a) = self.assigned.get_mut(i) {
                    a.position = Some(offset);
                }
            }
        }
        Ok(())
    }

    fn invalidate_prefetch(&mut self) {
        self.generation += 1;
    }

    /// Cancels a prefetch. If it had not answered yet its connection is
    /// dropped too: the unwanted long-poll would otherwise delay the next
    /// fetch's response on the same connection.
    async fn drop_prefetch(&self, prefetch: Prefetch) {
        if !prefetch.handle.is_finished() {
            prefetch.handle.abort();
            for node in prefetch.nodes {
                if let Ok(link) = self.cluster.link(node, LinkKind::Fetch) {
                    link.close().await;
                }
            }
        }
    }

    /// Sends one fetch to each leader of an assigned partition; `None` if
    /// no partition has a known leader.
    fn start_fetch(&self) -> Option<Prefetch> {
        let mut requests: Vec<NodeRequest> = Vec::new();
        let count = self.assigned.len();
        let start = match count {
            0 => 0,
            n => {
                self.fetch_rotation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % n
            }
        };
        for a in self.assigned.iter().cycle().skip(start).take(count) {
            let Some(fetch_offset) = a.position else {
                continue;
            };
            let Some(leader) = self.cluster.leader(&a.topic, a.partition) else {
                continue;
            };
            let at = match requests
                .iter()
                .position(|(node, _, _)| *node == leader.node)
            {
                Some(at) => at,
                None => {
                    requests.push((leader.node, Vec::new(), Vec::new()));
                    requests.len() - 1
                }
            };
            let Some((_, partitions, topics)) = requests.get_mut(at) else {
                continue;
            };
            partitions.push((Arc::clone(&a.topic), a.partition));
            let partition = FetchPartition {
                partition: a.partition,
                fetch_offset,
                partition_max_bytes: self.config.partition_max_bytes,
            };
            match topics.iter_mut().find(|t| *t.name == *a.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(FetchTopic {
                    name: a.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        if requests.is_empty() {
            return None;
        }
        let max_wait_ms = u32::try_from(self.config.fetch_max_wait.as_millis()).unwrap_or(u32::MAX);
        let nodes: Vec<i32> = requests.iter().map(|(node, _, _)| *node).collect();
        let min_bytes = self.config.fetch_min_bytes;
        let max_bytes = self.config.fetch_max_bytes;
        let cluster = Arc::clone(&self.cluster);
        // The node fetches live in a JoinSet inside the task: aborting the
        // prefetch aborts them all.
        let handle = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for (node, partitions, topics) in requests {
                let request = FetchRequest {
                    max_wait_ms,
                    min_bytes,
                    max_bytes,
                    topics,
                };
                let cluster = Arc::clone(&cluster);
                set.spawn(async move {
                    let result = match cluster.connection(node, LinkKind::Fetch).await {
                        Ok(conn) => conn.fetch(request).await,
                        Err(e) => Err(e),
                    };
                    NodeFetch {
                        node,
                        partitions,
                        result,
                    }
                });
            }
            let mut answers = Vec::with_capacity(set.len());
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(answer) => answers.push(answer),
                    Err(join) => debug!(error = %join, "node fetch task ended abnormally"),
                }
            }
            answers
        });
        Some(Prefetch {
            generation: self.generation,
            nodes,
            handle,
        })
    }

    /// Checks a fetch response, advances positions past its complete
    /// batches, and wraps its bytes. Nothing moves if any partition failed.
    ///
    /// A node that failed, or refused a partition, as a leader error (see
    /// `cluster`) has its partitions' leaders forgotten; the second value
    /// says whether that happened.
    fn take_records(&mut self, answers: Vec<NodeFetch>) -> Result<(Records, bool)> {
        let mut parts = Vec::new();
        let mut moves = Vec::new();
        let mut count = 0usize;
        let mut forgot = false;
        for answer in answers {
            let node = answer.node;
            let failure = match answer.result {
                Ok(response) if response.error == ErrorCode::None => {
                    self.take_node_records(
                        node,
                        response,
                        &mut parts,
                        &mut moves,
                        &mut count,
                        &mut forgot,
                    )?;
                    continue;
                }
                Ok(response) => ClientError::broker(response.error),
                Err(e) => e,
            };
            if !is_leader_error(&failure) {
                return Err(failure);
            }
            debug!(node, error = %failure, "fetch from a leader failed; its partitions' leaders are looked up again");
            for (topic, partition) in &answer.partitions {
                self.cluster.leader_failed(topic, *partition, node);
            }
            forgot = true;
        }
        for (index, next) in moves {
            if let Some(a) = self.assigned.get_mut(index) {
                a.position = Some(a.position.map_or(next, |p| p.max(next)));
            }
        }
        Ok((Records { parts, count }, forgot))
    }

    /// One node's share of [`Self::take_records`]: checks its partitions
    /// and collects their records and position moves.
    fn take_node_records(
        &self,
        node: i32,
        response: FetchResponse,
        parts: &mut Vec<PartitionRecords>,
        moves: &mut Vec<(usize, u64)>,
        count: &mut usize,
        forgot: &mut bool,
    ) -> Result<()> {
        for topic in response.topics {
            let name: Arc<str> = Arc::from(topic.name.as_str());
            for p in topic.partitions {
                let Some(index) = self.find(&name, p.partition) else {
                    continue;
                };
                let Some(position) = self.assigned.get(index).and_then(|a| a.position) else {
                    continue;
                };
                if p.error == ErrorCode::OffsetOutOfRange {
                    return Err(ClientError::partition(
                        p.error,
                        &name,
                        p.partition,
                        Some(format!(
                            "position {position} is outside {}..{}",
                            p.log_start_offset, p.high_watermark
                        )),
                    ));
                }
                if p.error != ErrorCode::None {
                    let err = ClientError::partition(p.error, &name, p.partition, None);
                    if is_leader_error(&err) {
                        debug!(topic = %name, partition = p.partition, node, error = %err, "the leader refused a fetch; looking it up again");
                        self.cluster.leader_failed(&name, p.partition, node);
                        *forgot = true;
                        continue;
                    }
                    if err.is_retriable() {
                        debug!(topic = %name, partition = p.partition, error = %err, "fetch error; will retry");
                        continue;
                    }
                    return Err(err);
                }
                let checked = check_batches(&p.records, position)?;
                if checked.bytes == 0 {
                    if !p.records.is_empty() {
                        return Err(ClientError::BatchLargerThanFetch {
                            topic: name.to_string(),
                            partition: p.partition,
                            offset: position,
                            partition_max_bytes: self.config.partition_max_bytes,
                        });
                    }
                    continue;
                }
                *count += checked.records;
                moves.push((index, checked.next_offset));
                parts.push(PartitionRecords {
                    topic: Arc::clone(&name),
                    partition: p.partition,
                    position,
                    high_watermark: p.high_watermark,
                    bytes: p.records.slice(..checked.bytes),
                });
            }
        }
        Ok(())
    }
}

struct Checked {
    /// Bytes of the complete batches at the front.
    bytes: usize,
    /// Records at or after the position.
    records: usize,
    /// Offset after the last complete batch.
    next_offset: u64,
}

/// Walks the complete batches of a partition's bytes, checking each header
/// and CRC, and counts the records at or after `position`.
fn check_batches(bytes: &Bytes, position: u64) -> Result<Checked> {
    let mut iter = BatchIter::new(bytes);
    let mut records = 0usize;
    let mut next_offset = position;
    for view in iter.by_ref() {
        let view = view?;
        view.validate()?;
        let header = view.header();
        // A control batch (the replication layer's own entry) takes its
        // offset but holds no record for the application.
        if !header.is_control() {
            let skipped = position.saturating_sub(header.base_offset);
            let count = u64::from(header.record_count).saturating_sub(skipped);
            records += usize::try_from(count).unwrap_or(usize::MAX);
        }
        next_offset = next_offset.max(header.next_offset());
    }
    Ok(Checked {
        bytes: iter.consumed(),
        records,
        next_offset,
    })
}

/// One partition's share of a fetch: whole batches, header- and CRC-checked.
#[derive(Debug, Clone)]
struct PartitionRecords {
    topic: Arc<str>,
    partition: u32,
    /// The position fetched from; records below it are skipped.
    position: u64,
    high_watermark: u64,
    bytes: Bytes,
}

/// The records of one poll. Holds the fetched bytes; records are read in
/// place when iterated.
#[derive(Debug, Clone, Default)]
pub struct Records {
    parts: Vec<PartitionRecords>,
    count: usize,
}

impl Records {
    /// Number of records this poll returns (skipped ones not counted).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of record batches held.
    pub fn bytes_len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes.len()).sum()
    }

    /// The broker's log end offset of each partition in this poll, as
    /// `(topic, partition, high_watermark)`.
    pub fn high_watermarks(&self) -> impl Iterator<Item = (&str, u32, u64)> + '_ {
        self.parts
            .iter()
            .map(|p| (&*p.topic, p.partition, p.high_watermark))
    }

    /// The batches, in fetch order (per partition, offset order), control
    /// batches left out. Each opens its records in place (decompressing a
    /// zstd batch once).
    pub fn batches(&self) -> impl Iterator<Item = Result<RecordBatch<'_>>> + '_ {
        self.parts.iter().flat_map(|part| {
            BatchIter::new(&part.bytes).filter_map(move |view| {
                let view = match view {
                    Ok(view) if view.header().is_control() => return None,
                    Ok(view) => view,
                    Err(e) => return Some(Err(e.into())),
                };
                Some(Ok(RecordBatch {
                    topic: &part.topic,
                    partition: part.partition,
                    skip_below: part.position,
                    records: match view.records() {
                        Ok(records) => records,
                        Err(e) => return Some(Err(e.into())),
                    },
                }))
            })
        })
    }

    /// Calls `f` with every record, in order.
    pub fn for_each(&self, mut f: impl FnMut(ConsumerRecord<'_>)) -> Result<()> {
        for batch in self.batches() {
            for record in batch?.iter() {
                f(record);
            }
        }
        Ok(())
    }
}

/// One batch of a poll, opened for reading.
#[derive(Debug)]
pub struct RecordBatch<'a> {
    topic: &'a str,
    partition: u32,
    skip_below: u64,
    records: rill_protocol::batch::records::Records<'a>,
}

impl RecordBatch<'_> {
    pub fn topic(&self) -> &str {
        self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The batch's records at or after the consumer's position.
    pub fn iter(&self) -> impl Iterator<Item = ConsumerRecord<'_>> + '_ {
        let topic = self.topic;
        let partition = self.partition;
        let skip_below = self.skip_below;
        self.records
            .iter()
            .filter(move |r| r.offset >= skip_below)
            .map(move |record| ConsumerRecord {
                topic,
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key(),
                value: record.value(),
                record,
            })
    }
}

/// A record borrowed from the fetched bytes.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRecord<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as the producer stamped it.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    record: RecordRef<'a>,
}

impl<'a> ConsumerRecord<'a> {
    /// The record's headers as `(name, value)`, in the order produced.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + 'a {
        self.record.headers()
    }
}
