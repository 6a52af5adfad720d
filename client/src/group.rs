//! The group consumer: members of a named group share the partitions of
//! the topics they subscribe to; the broker computes who reads what
//! (Kafka's KIP-848 protocol) and keeps the group's committed offsets.
//!
//! # Who does what
//! - The group's **coordinator** is one broker: every group request goes
//!   there. It is found with FindCoordinator at any broker, and found again
//!   (paced: 100 ms doubling to 1 s) when it answers `NotCoordinator` or
//!   `CoordinatorNotAvailable` or cannot be reached; commits, offset
//!   fetches and the leave are then resent, up to `request_timeout`, and
//!   the member rejoins at the new coordinator (which does not know it)
//!   as after a fencing. See `coordinator`.
//! - A **heartbeat task** (its own connection) joins the group, heartbeats
//!   at the broker's interval (or a third of the session timeout, whichever
//!   is shorter) reporting the partitions this member holds, and stores
//!   each new assignment the broker sends. It never touches positions.
//! - The **caller's** [`GroupConsumer::poll`] applies stored assignments
//!   before fetching, so rebalance callbacks run on the caller's task,
//!   between polls, when the records of the previous poll are processed
//!   (Kafka's rule). Fetching reuses [`Consumer`] (positions, prefetch,
//!   records read in place).
//!
//! # A rebalance, as this member sees it
//! 1. Revocation: the broker's assignment leaves out partitions this member
//!    holds. `poll` stops fetching them, commits their positions
//!    synchronously (with `commit_on_revoke`, the default), calls
//!    [`RebalanceListener::on_revoked`], and only then tells the heartbeat
//!    task, which reports the smaller `owned` set at once. The broker hands
//!    those partitions to their new owner only after that report, so no
//!    partition is ever read by two members of a healthy group.
//! 2. Assignment: partitions new to this member start at the group's
//!    committed offset (OffsetFetch), else where `auto_offset_reset` says
//!    (`None`: `poll` fails with [`ClientError::NoCommittedOffset`]); then
//!    [`RebalanceListener::on_assigned`] runs.
//! 3. Fencing: if the broker no longer knows this member (its session
//!    expired, or the broker restarted), `poll` drops every partition
//!    without committing (the commit would be refused), calls `on_revoked`
//!    with them, and the heartbeat task rejoins.
//!
//! # Commits
//! A committed offset is the next offset to read. [`GroupConsumer::commit`]
//! commits the position of every held partition: the offset after the
//! last record `poll` handed out, so commit after processing a poll's
//! records for at-least-once delivery. Auto-commit (`auto_commit`, default
//! every 5 s) commits at the start of a `poll` once the interval has
//! passed: only records of earlier polls, which the caller is done with.
//! Commits carry the member epoch; a commit refused as stale (the epoch
//! moved on under it) is retried with the new epoch.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rill_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ErrorCode, LeaveGroupRequest,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, OffsetFetchRequest,
    TopicPartitions, MEMBER_EPOCH_JOIN,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admin::OffsetSpec;
use crate::connection::{ConnectionConfig, REQUEST_TIMEOUT_DEFAULT};
use crate::consumer::{
    Consumer, ConsumerConfig, Records, SeekTo, FETCH_MAX_BYTES_DEFAULT, FETCH_MAX_WAIT_DEFAULT,
    FETCH_MIN_BYTES_DEFAULT, PARTITION_MAX_BYTES_DEFAULT,
};
use crate::coordinator::{
    coordinator_code, is_coordinator_code, is_coordinator_error, Coordinators,
};
use crate::error::{ClientError, Result};

/// Kafka's `session.timeout.ms` default.
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(45);
/// Kafka's `auto.commit.interval.ms` default.
pub const AUTO_COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Kafka's `max.poll.interval.ms` default: how long the broker waits for
/// this member to release revoked partitions (that is, to call `poll`).
pub const REBALANCE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// Heartbeats per session timeout at least, so that one lost heartbeat
/// never expires a healthy member.
const HEARTBEATS_PER_SESSION_MIN: u32 = 3;
/// Pause before a heartbeat is retried after a connection failure or a
/// retriable broker error.
const HEARTBEAT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long `poll` fetches before it looks again for a rebalance the
/// heartbeat task delivered; bounds how late a revocation is honoured.
const REBALANCE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts of a commit refused because the member epoch moved on.
const COMMIT_ATTEMPTS_MAX: u32 = 3;
/// Pause before such a retry: time for the heartbeat in flight to land.
const COMMIT_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// A partition: `(topic, partition)`.
pub type TopicPartition = (String, u32);

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on (Kafka's
    /// default).
    #[default]
    Latest,
    /// No default: `poll` fails with [`ClientError::NoCommittedOffset`].
    None,
}

/// Settings of a [`GroupConsumer`].
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// `host:port` of a broker, or a comma-separated list of them (Kafka's
    /// `bootstrap.servers`): connecting tries each until one answers.
    pub bootstrap: String,
    pub group_id: String,
    pub client_id: String,
    /// The broker expires this member if it hears no heartbeat for this
    /// long (the broker bounds it, by default to 1 s ..= 60 s).
    pub session_timeout: Duration,
    /// Time this member gets to release revoked partitions.
    pub rebalance_timeout: Duration,
    /// Commit positions this often (checked in `poll`); `None`: only
    /// explicit commits.
    pub auto_commit: Option<Duration>,
    pub auto_offset_reset: AutoOffsetReset,
    /// `range`, `roundrobin` or `sticky`; `None`: the broker's default.
    pub assignor: Option<String>,
    /// Commit the positions of revoked partitions before releasing them.
    pub commit_on_revoke: bool,
    /// Fetch settings, as [`ConsumerConfig`]'s.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: u32,
    pub fetch_max_bytes: u32,
    pub partition_max_bytes: u32,
    pub request_timeout: Duration,
}

impl GroupConsumerConfig {
    /// Kafka's defaults: 45 s session, auto-commit every 5 s, reset to
    /// latest, commit on revoke; [`ConsumerConfig`]'s fetch defaults.
    pub fn new(bootstrap: impl Into<String>, group_id: impl Into<String>) -> Self {
        GroupConsumerConfig {
            bootstrap: bootstrap.into(),
            group_id: group_id.into(),
            client_id: "rill-group-consumer".to_owned(),
            session_timeout: SESSION_TIMEOUT_DEFAULT,
            rebalance_timeout: REBALANCE_TIMEOUT_DEFAULT,
            auto_commit: Some(AUTO_COMMIT_INTERVAL_DEFAULT),
            auto_offset_reset: AutoOffsetReset::default(),
            assignor: None,
            commit_on_revoke: true,
            fetch_max_wait: FETCH_MAX_WAIT_DEFAULT,
            fetch_min_bytes: FETCH_MIN_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            partition_max_bytes: PARTITION_MAX_BYTES_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ClientError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.group_id.is_empty() || self.group_id.contains('\0') {
            return invalid("group_id", "must be non-empty and free of NUL bytes");
        }
        for (field, d) in [
            ("session_timeout", self.session_timeout),
            ("rebalance_timeout", self.rebalance_timeout),
        ] {
            if d.is_zero() || u32::try_from(d.as_millis()).is_err() {
                return invalid(field, "must be positive and fit in u32 milliseconds");
            }
        }
        if self.auto_commit.is_some_and(|d| d.is_zero()) {
            return invalid("auto_commit", "the interval must be positive");
        }
        self.consumer_config().validate()
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap: self.bootstrap.clone(),
            fetch_max_wait: self.fetch_max_wait,
            fetch_min_bytes: self.fetch_min_bytes,
            fetch_max_bytes: self.fetch_max_bytes,
            partition_max_bytes: self.partition_max_bytes,
            request_timeout: self.request_timeout,
            client_id: self.client_id.clone(),
            ..ConsumerConfig::new(self.bootstrap.clone())
        }
    }
}

/// Told about partitions coming and going. Both run on the task that
/// calls [`GroupConsumer::poll`] (or `close`), between polls.
pub trait RebalanceListener: Send {
    /// These partitions are now this member's; reading starts at their
    /// committed offsets.
    fn on_assigned(&mut self, _partitions: &[TopicPartition]) {}
    /// These partitions are no longer this member's: no record of them
    /// will be returned any more. With `commit_on_revoke` their positions
    /// are already committed (not when the member was fenced: then the
    /// broker refuses commits and the partitions may already be elsewhere).
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}
}

/// The listener used when none is set.
struct NoListener;

impl RebalanceListener for NoListener {}

/// What the heartbeat task and the poller share.
#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    /// 0 while (re)joining.
    member_epoch: i32,
    /// `None` until `subscribe`: the heartbeat task stays idle.
    subscription: Option<Vec<String>>,
    /// What the poller holds (and the heartbeats report).
    owned: BTreeSet<TopicPartition>,
    /// The latest assignment from the broker not yet applied by the poller.
    target: Option<BTreeSet<TopicPartition>>,
    /// Fenced: the poller must drop everything before the member rejoins.
    lost: bool,
    /// A heartbeat error that will not go away by retrying.
    fatal: Option<ClientError>,
    heartbeat_interval: Duration,
}

struct GroupShared {
    state: Mutex<Membership>,
    /// Wakes the heartbeat task early (subscription changed, partitions
    /// released).
    wake_heartbeat: Notify,
    /// Wakes a poll waiting with no partitions (a new assignment arrived).
    wake_poller: Notify,
}

impl GroupShared {
    fn lock(&self) -> MutexGuard<'_, Membership> {
        // Every update under this lock is a handful of assignments that
        // cannot panic halfway; a poisoned state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the heartbeat task needs from the config.
#[derive(Debug, Clone)]
struct HeartbeatSettings {
    group_id: String,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    assignor: Option<String>,
}

fn to_wire(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (topic, p) in set {
        match out.last_mut() {
            Some(last) if last.topic == *topic => last.partitions.push(*p),
            _ => out.push(TopicPartitions {
                topic: topic.clone(),
                partitions: vec![*p],
            }),
        }
    }
    out
}

fn from_wire(list: Vec<TopicPartitions>) -> BTreeSet<TopicPartition> {
    list.into_iter()
        .flat_map(|tp| {
            let topic = tp.topic;
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect()
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A member of a consumer group. Not shareable: one caller polls it.
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    consumer: Consumer,
    /// The group's coordinator, for commits, offset fetches and the leave.
    control: Arc<Coordinators>,
    shared: Arc<GroupShared>,
    heartbeat: Option<JoinHandle<()>>,
    /// In a mutex only so that `GroupConsumer` is `Sync` (its futures hold
    /// `&self` across awaits and must be `Send`) without asking listeners
    /// to be `Sync`; reached through `get_mut`, never locked.
    listener: Mutex<Box<dyn RebalanceListener>>,
    /// The poller's copy of what it holds (`Membership::owned` follows it).
    owned: BTreeSet<TopicPartition>,
    last_auto_commit: Instant,
    closed: bool,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group_id", &self.config.group_id)
            .field("owned", &self.owned.len())
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Validates the config, connects, and starts the (idle until
    /// [`Self::subscribe`]) heartbeat task.
    pub async fn new(config: GroupConsumerConfig) -> Result<GroupConsumer> {
        config.validate()?;
        let conn = ConnectionConfig {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            ..ConnectionConfig::default()
        };
        let consumer = Consumer::new(config.consumer_config()).await?;
        // Heartbeats get their own links, so they never wait behind a
        // commit.
        let control = Arc::new(Coordinators::new(
            Arc::clone(consumer.cluster()),
            conn.clone(),
        ));
        let heartbeat_coordinator = Coordinators::new(Arc::clone(consumer.cluster()), conn);
        let shared = Arc::new(GroupShared {
            state: Mutex::new(Membership {
                member_epoch: MEMBER_EPOCH_JOIN,
                heartbeat_interval: config.session_timeout / HEARTBEATS_PER_SESSION_MIN,
                ..Membership::default()
            }),
            wake_heartbeat: Notify::new(),
            wake_poller: Notify::new(),
        });
        let settings = HeartbeatSettings {
            group_id: config.group_id.clone(),
            session_timeout_ms: millis_u32(config.session_timeout),
            rebalance_timeout_ms: millis_u32(config.rebalance_timeout),
            assignor: config.assignor.clone(),
        };
        let heartbeat = tokio::spawn(heartbeat_loop(
            heartbeat_coordinator,
            Arc::clone(&shared),
            settings,
            config.session_timeout / HEARTBEATS_PER_SESSION_MIN,
        ));
        Ok(GroupConsumer {
            config,
            consumer,
            control,
            shared,
            heartbeat: Some(heartbeat),
            listener: Mutex::new(Box::new(NoListener)),
            owned: BTreeSet::new(),
            last_auto_commit: Instant::now(),
            closed: false,
        })
    }

    /// Sets the rebalance callbacks (set it before [`Self::subscribe`] to
    /// see the first assignment).
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Mutex::new(Box::new(listener));
    }

    /// Joins the group (or changes the subscription) with these topics.
    /// Returns at once; partitions arrive through [`Self::poll`].
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ensure_open()?;
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if topics.is_empty() {
            return Err(ClientError::InvalidConfig {
                field: "subscribe",
                reason: "subscribe to at least one topic".to_owned(),
            });
        }
        self.shared.lock().subscription = Some(topics.into_iter().collect());
        self.shared.wake_heartbeat.notify_one();
        Ok(())
    }

    /// The partitions this member holds now, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// The member id the broker gave this member (empty before joining).
    pub fn member_id(&self) -> String {
        self.shared.lock().member_id.clone()
    }

    /// The member epoch (0 while joining).
    pub fn member_epoch(&self) -> i32 {
        self.shared.lock().member_epoch
    }

    /// The offset of the next record `poll` returns for a held partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.consumer.position(topic, partition)
    }

    /// Moves a held partition's position (a later commit stores it).
    pub async fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<()> {
        self.consumer.seek(topic, partition, to).await
    }

    /// Applies rebalances, auto-commits when due, and waits up to `timeout`
    /// for records of the held partitions. Returns empty [`Records`] when
    /// none arrive in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Records> {
        self.ensure_open()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.shared.lock().fatal.clone() {
                return Err(e);
            }
            self.apply_rebalance().await?;
            self.maybe_auto_commit().await;
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(REBALANCE_CHECK_INTERVAL);
            if self.owned.is_empty() {
                let _ = tokio::time::timeout(slice, self.shared.wake_poller.notified()).await;
            } else {
                let records = self.consumer.poll(slice).await?;
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            if Instant::now() >= deadline {
                return Ok(Records::default());
            }
        }
    }

    /// Commits the position of every held partition and waits until the
    /// broker has them durably.
    pub async fn commit(&mut self) -> Result<()> {
        self.ensure_open()?;
        let offsets = self.positions(self.owned.iter());
        self.commit_offsets(offsets).await
    }

    /// Starts committing the position of every held partition; the handle
    /// tells how it went (dropping it does not cancel the commit).
    pub fn commit_async(&mut self) -> Result<JoinHandle<Result<()>>> {
        self.ensure_open()?;
        let offsets = self.positions(self.owned.iter());
        let control = Arc::clone(&self.control);
        let shared = Arc::clone(&self.shared);
        let group_id = self.config.group_id.clone();
        let give_up_after = self.config.request_timeout;
        Ok(tokio::spawn(async move {
            commit_offsets(&control, &shared, &group_id, offsets, give_up_after).await
        }))
    }

    /// Commits these offsets (each the next offset to read) and waits until
    /// the broker has them durably.
    pub async fn commit_offsets(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, u64)>,
    ) -> Result<()> {
        self.ensure_open()?;
        let offsets: Vec<(TopicPartition, u64)> = offsets.into_iter().collect();
        commit_offsets(
            &self.control,
            &self.shared,
            &self.config.group_id,
            offsets,
            self.config.request_timeout,
        )
        .await
    }

    /// Leaves the group cleanly: stops heartbeating, commits (with
    /// auto-commit on), revokes every partition (`on_revoked`), and tells
    /// the broker, which reassigns them at once.
    pub async fn close(mut self) -> Result<()> {
        self.closed = true;
        if let Some(task) = self.heartbeat.take() {
            task.abort();
            let _ = task.await;
        }
        let commit = if self.config.auto_commit.is_some() && !self.owned.is_empty() {
            let offsets = self.positions(self.owned.iter());
            commit_offsets(
                &self.control,
                &self.shared,
                &self.config.group_id,
                offsets,
                self.config.request_timeout,
            )
            .await
        } else {
            Ok(())
        };
        let all: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        self.consumer.assign(Vec::new());
        if !all.is_empty() {
            self.listener().on_revoked(&all);
        }
        let member_id = self.shared.lock().member_id.clone();
        if !member_id.is_empty() {
            leave(
                &self.control,
                &self.config.group_id,
                &member_id,
                self.config.request_timeout,
            )
            .await?;
        }
        commit
    }

    fn listener(&mut self) -> &mut dyn RebalanceListener {
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        &mut **listener
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    fn positions<'a>(
        &self,
        partitions: impl Iterator<Item = &'a TopicPartition>,
    ) -> Vec<(TopicPartition, u64)> {
        partitions
            .filter_map(|(t, p)| self.consumer.position(t, *p).map(|o| ((t.clone(), *p), o)))
            .collect()
    }

    async fn maybe_auto_commit(&mut self) {
        let Some(every) = self.config.auto_commit else {
            return;
        };
        if self.last_auto_commit.elapsed() < every {
            return;
        }
        self.last_auto_commit = Instant::now();
        if self.owned.is_empty() {
            return;
        }
        let offsets = self.positions(self.owned.iter());
        if let Err(e) = commit_offsets(
            &self.control,
            &self.shared,
            &self.config.group_id,
            offsets,
            self.config.request_timeout,
        )
        .await
        {
            warn!(group = %self.config.group_id, error = %e, "auto-commit failed");
        }
    }

    /// Applies what the heartbeat task stored: a fencing, or a new
    /// assignment (revocations first, then additions).
    async fn apply_rebalance(&mut self) -> Result<()> {
        let (lost, target) = {
            let mut m = self.shared.lock();
            (m.lost, m.target.take())
        };
        if lost {
            self.drop_lost();
            return Ok(());
        }
        let Some(target) = target else {
            return Ok(());
        };
        let revoked: Vec<TopicPartition> = self.owned.difference(&target).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(&revoked).await;
        }
        let added: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if added.is_empty() {
            return Ok(());
        }
        let starts = match self.starting_offsets(&added).await {
            Ok(starts) => starts,
            Err(e) => {
                // Try again at the next poll, unless something newer came.
                self.shared.lock().target.get_or_insert(target);
                return Err(e);
            }
        };
        if self.shared.lock().lost {
            return Ok(());
        }
        self.owned.extend(added.iter().cloned());
        self.consumer.assign(self.owned.iter().cloned().collect());
        for ((topic, partition), offset) in starts {
            self.consumer
                .seek(&topic, partition, SeekTo::Offset(offset))
                .await?;
        }
        self.shared.lock().owned = self.owned.clone();
        self.shared.wake_heartbeat.notify_one();
        info!(group = %self.config.group_id, partitions = ?added, "partitions assigned");
        self.listener().on_assigned(&added);
        Ok(())
    }

    /// Stops reading `revoked`, commits their positions, tells the
    /// listener, then releases them (the heartbeat task reports at once).
    async fn revoke(&mut self, revoked: &[TopicPartition]) {
        if self.config.commit_on_revoke {
            let offsets = self.positions(revoked.iter());
            if let Err(e) = commit_offsets(
                &self.control,
                &self.shared,
                &self.config.group_id,
                offsets,
                self.config.request_timeout,
            )
            .await
            {
                warn!(group = %self.config.group_id, error = %e, "commit of revoked partitions failed");
            }
        }
        for tp in revoked {
            self.owned.remove(tp);
        }
        self.consumer.assign(self.owned.iter().cloned().collect());
        info!(group = %self.config.group_id, partitions = ?revoked, "partitions revoked");
        self.listener().on_revoked(revoked);
        self.shared.lock().owned = self.owned.clone();
        self.shared.wake_heartbeat.notify_one();
    }

    /// The member was fenced: everything it held may already be elsewhere.
    fn drop_lost(&mut self) {
        let all: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        self.consumer.assign(Vec::new());
        if !all.is_empty() {
            warn!(group = %self.config.group_id, partitions = ?all, "member fenced; partitions lost");
            self.listener().on_revoked(&all);
        }
        {
            let mut m = self.shared.lock();
            m.owned.clear();
            m.target = None;
            m.lost = false;
        }
        self.shared.wake_heartbeat.notify_one();
    }

    /// Where each new partition starts: its committed offset, else the
    /// reset policy's.
    async fn starting_offsets(
        &self,
        added: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        let wanted: BTreeSet<TopicPartition> = added.iter().cloned().collect();
        let request = OffsetFetchRequest {
            group_id: self.config.group_id.clone(),
            topics: Some(to_wire(&wanted)),
        };
        let resp = self
            .control
            .call(
                &self.config.group_id,
                self.config.request_timeout,
                |conn| {
                    let request = request.clone();
                    async move { conn.offset_fetch(request).await }
                },
                |resp| coordinator_code(resp.error),
            )
            .await?;
        if resp.error != ErrorCode::None {
            return Err(ClientError::broker(resp.error));
        }
        let mut starts = Vec::with_capacity(added.len());
        for topic in resp.topics {
            for p in topic.partitions {
                if p.error != ErrorCode::None {
                    return Err(ClientError::partition(
                        p.error,
                        &topic.name,
                        p.partition,
                        None,
                    ));
                }
                let tp = (topic.name.clone(), p.partition);
                if !wanted.contains(&tp) {
                    continue;
                }
                let offset = match u64::try_from(p.offset) {
                    Ok(committed) => committed,
                    Err(_) => self.reset_offset(&topic.name, p.partition).await?,
                };
                starts.push((tp, offset));
            }
        }
        for tp in &wanted {
            if !starts.iter().any(|(s, _)| s == tp) {
                return Err(ClientError::partition(
                    ErrorCode::UnknownTopicOrPartition,
                    &tp.0,
                    tp.1,
                    Some("missing from the OffsetFetch response".to_owned()),
                ));
            }
        }
        Ok(starts)
    }

    async fn reset_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        let spec = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => OffsetSpec::Earliest,
            AutoOffsetReset::Latest => OffsetSpec::Latest,
            AutoOffsetReset::None => {
                return Err(ClientError::NoCommittedOffset {
                    topic: topic.to_owned(),
                    partition,
                })
            }
        };
        // Asked of the partition's leader, through the consumer's cache.
        self.consumer.lookup(topic, partition, spec).await
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        if self.closed {
            return;
        }
        // Best effort: leave so the partitions move now rather than after
        // the session timeout. Without a runtime (or with one shutting
        // down) the broker expires the member instead.
        let member_id = self.shared.lock().member_id.clone();
        if member_id.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let control = Arc::clone(&self.control);
            let group_id = self.config.group_id.clone();
            let give_up_after = self.config.request_timeout;
            runtime.spawn(async move {
                if let Err(e) = leave(&control, &group_id, &member_id, give_up_after).await {
                    debug!(group = %group_id, error = %e, "leave on drop failed");
                }
            });
        }
    }
}

async fn leave(
    control: &Coordinators,
    group_id: &str,
    member_id: &str,
    give_up_after: Duration,
) -> Result<()> {
    let request = LeaveGroupRequest {
        group_id: group_id.to_owned(),
        member_id: member_id.to_owned(),
    };
    let resp = control
        .call(
            group_id,
            give_up_after,
            |conn| {
                let request = request.clone();
                async move { conn.leave_group(request).await }
            },
            |resp| coordinator_code(resp.error),
        )
        .await?;
    match resp.error {
        // Already expired or fenced: gone either way.
        ErrorCode::None | ErrorCode::UnknownMemberId => Ok(()),
        code => Err(ClientError::broker(code)),
    }
}

/// One OffsetCommit with the current member id and epoch, retried while
/// the broker says the epoch is stale (a heartbeat moved it on), and sent
/// again to the coordinator found anew while the broker is not it (up to
/// `give_up_after`).
async fn commit_offsets(
    control: &Coordinators,
    shared: &GroupShared,
    group_id: &str,
    offsets: Vec<(TopicPartition, u64)>,
    give_up_after: Duration,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: Vec<OffsetCommitTopic> = Vec::new();
    for ((topic, partition), offset) in offsets {
        let p = OffsetCommitPartition {
            partition,
            offset,
            metadata: None,
        };
        match topics.iter_mut().find(|t| t.name == topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(OffsetCommitTopic {
                name: topic,
                partitions: vec![p],
            }),
        }
    }
    let mut attempt = 1;
    loop {
        let (member_id, member_epoch) = {
            let m = shared.lock();
            (m.member_id.clone(), m.member_epoch)
        };
        let request = OffsetCommitRequest {
            group_id: group_id.to_owned(),
            member_id,
            member_epoch,
            topics: topics.clone(),
        };
        let resp = control
            .call(
                group_id,
                give_up_after,
                |conn| {
                    let request = request.clone();
                    async move { conn.offset_commit(request).await }
                },
                |resp| {
                    resp.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .find_map(|p| coordinator_code(p.error))
                },
            )
            .await?;
        let failed = resp.topics.iter().find_map(|t| {
            t.partitions
                .iter()
                .find(|p| p.error != ErrorCode::None)
                .map(|p| ClientError::partition(p.error, &t.name, p.partition, None))
        });
        match failed {
            None => return Ok(()),
            Some(e)
                if e.code() == Some(ErrorCode::StaleMemberEpoch)
                    && attempt < COMMIT_ATTEMPTS_MAX =>
            {
                attempt += 1;
                tokio::time::sleep(COMMIT_RETRY_BACKOFF).await;
            }
            Some(e) => return Err(e),
        }
    }
}

/// Heartbeats until aborted: idle until subscribed, then at the interval,
/// or at once when woken.
async fn heartbeat_loop(
    coordinator: Coordinators,
    shared: Arc<GroupShared>,
    settings: HeartbeatSettings,
    interval_max: Duration,
) {
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.wake_heartbeat.notified() => {}
        }
        let Some(request) = heartbeat_request(&shared, &settings) else {
            // Not subscribed, or waiting for the poller to drop lost
            // partitions: it wakes this task when done.
            next = Instant::now() + interval_max;
            continue;
        };
        let sent_epoch = request.member_epoch;
        // Finding the coordinator is paced after failures (module docs).
        let result = match coordinator.link(&settings.group_id).await {
            Ok(link) => {
                let result = match link.get().await {
                    Ok(conn) => conn.consumer_group_heartbeat(request).await,
                    Err(e) => Err(e),
                };
                match &result {
                    Ok(resp) if is_coordinator_code(resp.error) => {
                        let e = ClientError::broker(resp.error);
                        coordinator.failed(&settings.group_id, &link, &e);
                    }
                    Ok(_) => coordinator.succeeded(),
                    Err(e) if is_coordinator_error(e) => {
                        coordinator.failed(&settings.group_id, &link, e)
                    }
                    Err(_) => {}
                }
                result
            }
            Err(e) => Err(e),
        };
        let wait = on_heartbeat_response(&shared, result, sent_epoch, interval_max);
        next = Instant::now() + wait;
    }
}

fn heartbeat_request(
    shared: &GroupShared,
    settings: &HeartbeatSettings,
) -> Option<ConsumerGroupHeartbeatRequest> {
    let m = shared.lock();
    if m.lost {
        return None;
    }
    let subscription = m.subscription.clone()?;
    Some(ConsumerGroupHeartbeatRequest {
        group_id: settings.group_id.clone(),
        member_id: m.member_id.clone(),
        member_epoch: m.member_epoch,
        instance_id: None,
        rebalance_timeout_ms: settings.rebalance_timeout_ms,
        session_timeout_ms: settings.session_timeout_ms,
        subscribed_topics: Some(subscription),
        assignor: settings.assignor.clone(),
        owned: Some(to_wire(&m.owned)),
    })
}

/// Records a heartbeat's outcome; returns how long until the next one.
fn on_heartbeat_response(
    shared: &GroupShared,
    result: Result<ConsumerGroupHeartbeatResponse>,
    sent_epoch: i32,
    interval_max: Duration,
) -> Duration {
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            debug!(error = %e, "heartbeat failed; retrying");
            return HEARTBEAT_RETRY_BACKOFF;
        }
    };
    let mut m = shared.lock();
    match resp.error {
        ErrorCode::None => {
            if sent_epoch == MEMBER_EPOCH_JOIN {
                info!(member = %resp.member_id, epoch = resp.member_epoch, "joined group");
            }
            m.member_id = resp.member_id;
            m.member_epoch = resp.member_epoch;
            m.fatal = None;
            m.heartbeat_interval =
                Duration::from_millis(u64::from(resp.heartbeat_interval_ms)).min(interval_max);
            if let Some(assignment) = resp.assignment {
                m.target = Some(from_wire(assignment));
                drop(m);
                shared.wake_poller.notify_one();
                return shared.lock().heartbeat_interval;
            }
            m.heartbeat_interval
        }
        ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
            warn!(member = %m.member_id, code = ?resp.error, "fenced by the group coordinator; rejoining");
            m.member_epoch = MEMBER_EPOCH_JOIN;
            m.target = None;
            m.lost = true;
            drop(m);
            shared.wake_poller.notify_one();
            Duration::ZERO
        }
        code if code.is_retriable() => {
            debug!(?code, "heartbeat refused for now; retrying");
            HEARTBEAT_RETRY_BACKOFF
        }
        code => {
            m.fatal = Some(ClientError::Broker {
                code,
                topic: None,
                partition: None,
                message: resp.error_message,
            });
            let wait = m.heartbeat_interval;
            drop(m);
            shared.wake_poller.notify_one();
            wait
        }
    }
}
