//! [`GroupCoordinator`]: what the broker's request handlers call. It puts
//! the pure [`Coordinator`] behind a lock, next to the durable
//! [`OffsetStore`], and turns wire requests into wire responses.
//!
//! The broker supplies the view of its topics through [`TopicView`]
//! (partition counts and each partition's offsets) and calls
//! [`GroupCoordinator::tick`] periodically to expire sessions and notice
//! topics that appeared or grew.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rill_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeletableGroupResult,
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    DescribedGroup, DescribedGroupMember, DescribedGroupOffset, ErrorCode, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsResponse, ListedGroup, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopicResponse, ResetOffsetsRequest, ResetOffsetsResponse, ResetPartitionResult,
    ResetSpec, TopicPartitions, NO_COMMITTED_OFFSET, NO_OFFSET,
};
use rill_storage::io::IoBackend;
use rill_storage::StorageError;

use super::assignor::Assignment;
use super::group::{valid_group_id, Coordinator, CoordinatorConfig, GroupState, HeartbeatRequest};
use super::offsets::{CommittedOffset, GroupOffsets, OffsetStore, OffsetStoreError};

/// The broker's topics as the coordinator needs them. `Sync` so that the
/// handlers' futures, which hold a `&dyn TopicView`, are `Send`.
pub trait TopicView: Send + Sync {
    /// Partition count of every topic.
    fn partition_counts(&self) -> BTreeMap<String, u32>;
    fn log_start_offset(&self, topic: &str, partition: u32) -> Option<u64>;
    fn log_end_offset(&self, topic: &str, partition: u32) -> Option<u64>;
    /// Earliest offset whose record time is at or after `ts_ms`; `None`
    /// when there is none (the reset then uses the log end).
    fn offset_for_timestamp(&self, topic: &str, partition: u32, ts_ms: i64) -> Option<u64>;
}

/// One group's lag on one partition, for [`crate::metrics::GROUP_LAG`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub lag: u64,
}

/// The consumer group coordinator of one broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    state: Mutex<Coordinator>,
    offsets: OffsetStore,
}

fn to_wire(a: &Assignment) -> Vec<TopicPartitions> {
    a.iter()
        .map(|(topic, ps)| TopicPartitions {
            topic: topic.clone(),
            partitions: ps.iter().copied().collect(),
        })
        .collect()
}

fn from_wire(list: Vec<TopicPartitions>) -> Assignment {
    let mut a = Assignment::new();
    for tp in list {
        a.entry(tp.topic).or_default().extend(tp.partitions);
    }
    a.retain(|_, ps| !ps.is_empty());
    a
}

fn as_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

fn storage_code(err: &OffsetStoreError) -> ErrorCode {
    match err {
        OffsetStoreError::Storage(StorageError::LogFailed { .. }) => ErrorCode::LogFailed,
        OffsetStoreError::MetadataTooLarge { .. } => ErrorCode::InvalidRequest,
        OffsetStoreError::InvalidKey => ErrorCode::InvalidGroupId,
        _ => ErrorCode::StorageError,
    }
}

impl GroupCoordinator {
    /// Opens the offsets store in `dir` (the `__consumer_offsets`
    /// directory) and starts with no members: members of groups that
    /// existed before a restart are unknown and rejoin.
    pub fn open(
        dir: &Path,
        backend: Arc<dyn IoBackend>,
        config: CoordinatorConfig,
    ) -> Result<Self, OffsetStoreError> {
        Ok(GroupCoordinator {
            state: Mutex::new(Coordinator::new(config)),
            offsets: OffsetStore::open(dir, backend)?,
        })
    }

    /// [`GroupCoordinator::open`] with the store opened read-only (a
    /// read-only data directory): groups form and offsets are fetched as
    /// usual, while OffsetCommit, DeleteGroups and ResetOffsets answer
    /// `StorageError` (the store refuses every write).
    pub fn open_read_only(
        dir: &Path,
        backend: Arc<dyn IoBackend>,
        config: CoordinatorConfig,
    ) -> Result<Self, OffsetStoreError> {
        Ok(GroupCoordinator {
            state: Mutex::new(Coordinator::new(config)),
            offsets: OffsetStore::open_read_only(dir, backend)?,
        })
    }

    /// [`GroupCoordinator::open`] over an already opened store.
    pub fn with_store(offsets: OffsetStore, config: CoordinatorConfig) -> Self {
        GroupCoordinator {
            state: Mutex::new(Coordinator::new(config)),
            offsets,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Coordinator> {
        // Every state change is validated before it is applied, so a panic
        // cannot leave a half-applied change behind the poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// ConsumerGroupHeartbeat. `client_id` is the request header's.
    pub fn heartbeat(
        &self,
        client_id: &str,
        req: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
    ) -> ConsumerGroupHeartbeatResponse {
        let counts = topics.partition_counts();
        let (member_id, member_epoch) = (req.member_id.clone(), req.member_epoch);
        let request = HeartbeatRequest {
            group_id: req.group_id,
            member_id: req.member_id,
            member_epoch: req.member_epoch,
            client_id: client_id.to_owned(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            subscribed_topics: req
                .subscribed_topics
                .map(|t| t.into_iter().collect::<BTreeSet<String>>()),
            assignor: req.assignor,
            owned: req.owned.map(from_wire),
        };
        let mut state = self.lock();
        let interval = state.config().heartbeat_interval_ms;
        match state.heartbeat(request, Instant::now(), &counts) {
            Ok(r) => ConsumerGroupHeartbeatResponse {
                error: ErrorCode::None,
                error_message: None,
                member_id: r.member_id,
                member_epoch: r.member_epoch,
                heartbeat_interval_ms: r.heartbeat_interval_ms,
                assignment: r.assignment.as_ref().map(to_wire),
            },
            Err(e) => ConsumerGroupHeartbeatResponse {
                error: e.code(),
                error_message: Some(e.to_string()),
                member_id,
                member_epoch,
                heartbeat_interval_ms: interval,
                assignment: None,
            },
        }
    }

    /// LeaveGroup.
    pub fn leave(&self, req: LeaveGroupRequest, topics: &dyn TopicView) -> LeaveGroupResponse {
        let counts = topics.partition_counts();
        let error = match self.lock().leave(&req.group_id, &req.member_id, &counts) {
            Ok(()) => ErrorCode::None,
            Err(e) => e.code(),
        };
        LeaveGroupResponse { error }
    }

    /// OffsetCommit: membership and epoch checked, then the offsets are
    /// written synced; the answer comes once they are durable.
    pub async fn commit(
        &self,
        req: OffsetCommitRequest,
        topics: &dyn TopicView,
    ) -> OffsetCommitResponse {
        let counts = topics.partition_counts();
        let verdict = self
            .lock()
            .validate_commit(&req.group_id, &req.member_id, req.member_epoch)
            .map_err(|e| e.code());
        let mut entries = Vec::new();
        let mut codes: BTreeMap<(String, u32), ErrorCode> = BTreeMap::new();
        for topic in &req.topics {
            for p in &topic.partitions {
                let exists = counts.get(&topic.name).is_some_and(|&n| p.partition < n);
                let code = match verdict {
                    Err(code) => code,
                    Ok(()) if !exists => ErrorCode::UnknownTopicOrPartition,
                    Ok(()) => {
                        entries.push((
                            topic.name.clone(),
                            p.partition,
                            CommittedOffset {
                                offset: p.offset,
                                metadata: p.metadata.clone(),
                            },
                        ));
                        ErrorCode::None
                    }
                };
                codes.insert((topic.name.clone(), p.partition), code);
            }
        }
        if let Err(e) = self.offsets.commit(&req.group_id, &entries).await {
            tracing::error!(group = %req.group_id, error = %e, "offset commit failed");
            let code = storage_code(&e);
            for (topic, partition, _) in &entries {
                codes.insert((topic.clone(), *partition), code);
            }
        }
        OffsetCommitResponse::answering(&req, |topic, partition| {
            codes
                .get(&(topic.to_owned(), partition))
                .copied()
                .unwrap_or(ErrorCode::None)
        })
    }

    /// OffsetFetch: [`NO_COMMITTED_OFFSET`] where nothing was committed
    /// (the consumer then applies its reset policy).
    pub fn fetch(&self, req: OffsetFetchRequest) -> OffsetFetchResponse {
        if !valid_group_id(&req.group_id) {
            return OffsetFetchResponse {
                error: ErrorCode::InvalidGroupId,
                topics: Vec::new(),
            };
        }
        let committed = self.offsets.group_offsets(&req.group_id);
        let wanted: Vec<TopicPartitions> = match req.topics {
            Some(topics) => topics,
            None => {
                let mut all: BTreeMap<String, Vec<u32>> = BTreeMap::new();
                for (topic, p) in committed.keys() {
                    all.entry(topic.clone()).or_default().push(*p);
                }
                all.into_iter()
                    .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                    .collect()
            }
        };
        let topics = wanted
            .into_iter()
            .map(|tp| OffsetFetchTopicResponse {
                partitions: tp
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let c = committed.get(&(tp.topic.clone(), partition));
                        OffsetFetchPartitionResponse {
                            partition,
                            offset: c.map_or(NO_COMMITTED_OFFSET, |c| as_i64(c.offset)),
                            metadata: c.and_then(|c| c.metadata.clone()),
                            error: ErrorCode::None,
                        }
                    })
                    .collect(),
                name: tp.topic,
            })
            .collect();
        OffsetFetchResponse {
            error: ErrorCode::None,
            topics,
        }
    }

    /// ListGroups: groups with members, and groups known only by their
    /// committed offsets (as Empty).
    pub fn list(&self) -> ListGroupsResponse {
        let mut groups: BTreeMap<String, ListedGroup> = self
            .offsets
            .groups()
            .into_iter()
            .map(|group_id| {
                let listed = ListedGroup {
                    group_id: group_id.clone(),
                    state: GroupState::Empty.name().to_owned(),
                    members: 0,
                };
                (group_id, listed)
            })
            .collect();
        for g in self.lock().list_groups() {
            groups.insert(
                g.group_id.clone(),
                ListedGroup {
                    group_id: g.group_id,
                    state: g.state.name().to_owned(),
                    members: u32::try_from(g.members).unwrap_or(u32::MAX),
                },
            );
        }
        ListGroupsResponse {
            error: ErrorCode::None,
            groups: groups.into_values().collect(),
        }
    }

    fn offsets_with_lag(
        committed: &GroupOffsets,
        assigned: &BTreeSet<(String, u32)>,
        topics: &dyn TopicView,
    ) -> Vec<DescribedGroupOffset> {
        let mut keys: BTreeSet<(String, u32)> = committed.keys().cloned().collect();
        keys.extend(assigned.iter().cloned());
        keys.into_iter()
            .map(|(topic, partition)| {
                let log_end = topics.log_end_offset(&topic, partition).unwrap_or(0);
                let c = committed.get(&(topic.clone(), partition));
                DescribedGroupOffset {
                    committed: c.map_or(NO_OFFSET, |c| as_i64(c.offset)),
                    log_end,
                    lag: c.map_or(NO_OFFSET, |c| as_i64(log_end.saturating_sub(c.offset))),
                    topic,
                    partition,
                }
            })
            .collect()
    }

    /// DescribeGroups: state, members, assignments, committed offsets and
    /// lag (log end minus committed) per partition.
    pub fn describe(
        &self,
        req: DescribeGroupsRequest,
        topics: &dyn TopicView,
    ) -> DescribeGroupsResponse {
        let groups = req
            .group_ids
            .into_iter()
            .map(|group_id| {
                let description = self.lock().describe_group(&group_id);
                let committed = self.offsets.group_offsets(&group_id);
                let Some(d) = description.or_else(|| {
                    (!committed.is_empty()).then(|| super::group::GroupDescription {
                        group_id: group_id.clone(),
                        state: GroupState::Empty,
                        assignor: self.lock().config().default_assignor,
                        group_epoch: 0,
                        members: Vec::new(),
                    })
                }) else {
                    return DescribedGroup {
                        group_id,
                        error: ErrorCode::GroupIdNotFound,
                        ..DescribedGroup::default()
                    };
                };
                let assigned: BTreeSet<(String, u32)> = d
                    .members
                    .iter()
                    .flat_map(|m| m.assignment.iter().chain(&m.pending_revocation))
                    .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.clone(), p)))
                    .collect();
                DescribedGroup {
                    offsets: Self::offsets_with_lag(&committed, &assigned, topics),
                    group_id,
                    error: ErrorCode::None,
                    state: d.state.name().to_owned(),
                    assignor: d.assignor.name().to_owned(),
                    group_epoch: d.group_epoch,
                    members: d
                        .members
                        .into_iter()
                        .map(|m| DescribedGroupMember {
                            member_id: m.member_id,
                            client_id: m.client_id,
                            member_epoch: m.member_epoch,
                            assignment: to_wire(&m.assignment),
                            pending_revocation: to_wire(&m.pending_revocation),
                        })
                        .collect(),
                }
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// DeleteGroups: only groups without members; their offsets are
    /// deleted durably (a tombstone in `__consumer_offsets`).
    pub async fn delete(&self, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.group_ids.len());
        for group_id in req.group_ids {
            let members = self.lock().delete_group(&group_id);
            let error = match members {
                Err(e) => e.code(),
                Ok(()) => match self.offsets.delete_group(&group_id).await {
                    Ok(true) => ErrorCode::None,
                    Ok(false) => ErrorCode::GroupIdNotFound,
                    Err(OffsetStoreError::InvalidKey) => ErrorCode::InvalidGroupId,
                    Err(e) => {
                        tracing::error!(group = %group_id, error = %e, "group delete failed");
                        storage_code(&e)
                    }
                },
            };
            results.push(DeletableGroupResult { group_id, error });
        }
        DeleteGroupsResponse { results }
    }

    /// ResetOffsets: only while the group has no members.
    pub async fn reset(
        &self,
        req: ResetOffsetsRequest,
        topics: &dyn TopicView,
    ) -> ResetOffsetsResponse {
        let fail = |error: ErrorCode, message: String| ResetOffsetsResponse {
            error,
            error_message: Some(message),
            partitions: Vec::new(),
        };
        if !valid_group_id(&req.group_id) {
            return fail(ErrorCode::InvalidGroupId, "invalid group id".to_owned());
        }
        let members = self.lock().member_count(&req.group_id);
        if members > 0 {
            return fail(
                ErrorCode::NonEmptyGroup,
                format!(
                    "group {:?} has {members} members; stop them first",
                    req.group_id
                ),
            );
        }
        let Some(&count) = topics.partition_counts().get(&req.topic) else {
            return fail(
                ErrorCode::UnknownTopicOrPartition,
                format!("no topic {:?}", req.topic),
            );
        };
        let partitions: Vec<u32> = match req.partitions {
            Some(ps) => ps,
            None => (0..count).collect(),
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut entries = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let range = topics
                .log_start_offset(&req.topic, partition)
                .zip(topics.log_end_offset(&req.topic, partition));
            let Some((start, end)) = range.filter(|_| partition < count) else {
                return fail(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("no partition {partition} in {:?}", req.topic),
                );
            };
            let new = match req.spec {
                ResetSpec::Earliest => start,
                ResetSpec::Latest => end,
                ResetSpec::ToOffset => u64::try_from(req.value).unwrap_or(0).clamp(start, end),
                ResetSpec::ToTimestamp => topics
                    .offset_for_timestamp(&req.topic, partition, req.value)
                    .unwrap_or(end)
                    .clamp(start, end),
            };
            let old = self
                .offsets
                .fetch(&req.group_id, &req.topic, partition)
                .map_or(NO_COMMITTED_OFFSET, |c| as_i64(c.offset));
            results.push(ResetPartitionResult {
                partition,
                old,
                new,
            });
            entries.push((
                req.topic.clone(),
                partition,
                CommittedOffset {
                    offset: new,
                    metadata: None,
                },
            ));
        }
        if !req.dry_run {
            if let Err(e) = self.offsets.commit(&req.group_id, &entries).await {
                return fail(storage_code(&e), e.to_string());
            }
        }
        ResetOffsetsResponse {
            error: ErrorCode::None,
            error_message: None,
            partitions: results,
        }
    }

    /// Call periodically (every few hundred ms): expires silent members and
    /// members past their revocation deadline, and rebalances groups whose
    /// subscribed topics appeared or changed partition count.
    pub fn tick(&self, topics: &dyn TopicView) {
        let counts = topics.partition_counts();
        let mut state = self.lock();
        state.expire_sessions(Instant::now(), &counts);
        state.on_topics_changed(&counts);
    }

    /// Lag of every committed partition of every group, for
    /// [`crate::metrics::GROUP_LAG`].
    pub fn lag_by_partition(&self, topics: &dyn TopicView) -> Vec<GroupPartitionLag> {
        let mut lags = Vec::new();
        for group in self.offsets.groups() {
            for ((topic, partition), c) in self.offsets.group_offsets(&group) {
                let end = topics.log_end_offset(&topic, partition).unwrap_or(0);
                lags.push(GroupPartitionLag {
                    group: group.clone(),
                    topic,
                    partition,
                    lag: end.saturating_sub(c.offset),
                });
            }
        }
        lags
    }

    /// Sets the [`crate::metrics::GROUP_LAG`] gauges. Labelled by
    /// partition (as the consumer-lag view operators expect), like
    /// `rill_log_end_offset`.
    pub fn publish_lag_metrics(&self, topics: &dyn TopicView) {
        for l in self.lag_by_partition(topics) {
            // Precision loss above 2^53 is irrelevant for a gauge.
            metrics::gauge!(
                crate::metrics::GROUP_LAG,
                "group" => l.group,
                "topic" => l.topic,
                "partition" => l.partition.to_string()
            )
            .set(l.lag as f64);
        }
    }

    /// Closes the offsets log cleanly.
    pub async fn close(self) -> Result<(), OffsetStoreError> {
        self.offsets.close().await
    }
}

#[cfg(test)]
mod tests {
    //! The coordinator end to end through its wire-level API, over real
    //! partition logs in a tempdir and a real offsets store.

    use super::*;
    use bytes::BytesMut;
    use rill_protocol::batch::{BatchBuilder, Compression};
    use rill_protocol::wire::{OffsetCommitPartition, OffsetCommitTopic, MEMBER_EPOCH_JOIN};
    use rill_storage::io::{open_backend, IoBackendChoice};
    use rill_storage::{Durability, LogConfig, PartitionLog};

    struct Topics {
        logs: BTreeMap<(String, u32), PartitionLog>,
    }

    impl TopicView for Topics {
        fn partition_counts(&self) -> BTreeMap<String, u32> {
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for (t, p) in self.logs.keys() {
                let n = counts.entry(t.clone()).or_default();
                *n = (*n).max(p + 1);
            }
            counts
        }
        fn log_start_offset(&self, topic: &str, partition: u32) -> Option<u64> {
            self.logs
                .get(&(topic.to_owned(), partition))
                .map(PartitionLog::log_start_offset)
        }
        fn log_end_offset(&self, topic: &str, partition: u32) -> Option<u64> {
            self.logs
                .get(&(topic.to_owned(), partition))
                .map(PartitionLog::log_end_offset)
        }
        fn offset_for_timestamp(&self, topic: &str, partition: u32, ts_ms: i64) -> Option<u64> {
            let log = self.logs.get(&(topic.to_owned(), partition))?;
            log.offset_for_timestamp(ts_ms).ok().flatten()
        }
    }

    fn batch(ts_ms: i64, records: usize) -> BytesMut {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..records {
            b.push(ts_ms, None, format!("v{i}").as_bytes(), &[]);
        }
        b.finish_into_mut().expect("batch")
    }

    /// Topic "t" with two partitions; p0 holds offsets 0..6 in three
    /// batches stamped 1000, 2000, 3000 ms; p1 is empty.
    async fn topics(dir: &Path) -> Topics {
        let backend = open_backend(IoBackendChoice::Std).expect("backend");
        let mut logs = BTreeMap::new();
        for p in 0..2u32 {
            let log = PartitionLog::open(
                &dir.join(format!("t-{p}")),
                LogConfig::default(),
                Arc::clone(&backend),
            )
            .expect("log");
            logs.insert(("t".to_owned(), p), log);
        }
        if let Some(p0) = logs.get(&("t".to_owned(), 0)) {
            for ts in [1000, 2000, 3000] {
                p0.append(batch(ts, 2), Durability::Written)
                    .await
                    .expect("append");
            }
        }
        Topics { logs }
    }

    fn open(dir: &Path) -> GroupCoordinator {
        let backend = open_backend(IoBackendChoice::Std).expect("backend");
        GroupCoordinator::open(
            &dir.join("__consumer_offsets"),
            backend,
            CoordinatorConfig::default(),
        )
        .expect("open")
    }

    fn commit_req(member_id: &str, epoch: i32, partition: u32, offset: u64) -> OffsetCommitRequest {
        OffsetCommitRequest {
            group_id: "g".to_owned(),
            member_id: member_id.to_owned(),
            member_epoch: epoch,
            topics: vec![OffsetCommitTopic {
                name: "t".to_owned(),
                partitions: vec![OffsetCommitPartition {
                    partition,
                    offset,
                    metadata: Some("m".to_owned()),
                }],
            }],
        }
    }

    fn code_of(r: &OffsetCommitResponse) -> ErrorCode {
        r.topics[0].partitions[0].error
    }

    fn reset_req(spec: ResetSpec, value: i64, dry_run: bool) -> ResetOffsetsRequest {
        ResetOffsetsRequest {
            group_id: "g".to_owned(),
            topic: "t".to_owned(),
            partitions: Some(vec![0]),
            spec,
            value,
            dry_run,
        }
    }

    #[tokio::test]
    async fn group_lifecycle_commit_describe_reset_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topics = topics(dir.path()).await;
        let groups = open(dir.path());

        let joined = groups.heartbeat(
            "client-1",
            ConsumerGroupHeartbeatRequest {
                group_id: "g".to_owned(),
                member_epoch: MEMBER_EPOCH_JOIN,
                subscribed_topics: Some(vec!["t".to_owned()]),
                ..ConsumerGroupHeartbeatRequest::default()
            },
            &topics,
        );
        assert_eq!(joined.error, ErrorCode::None);
        let assignment = joined.assignment.clone().expect("assignment on join");
        assert_eq!(
            assignment,
            vec![TopicPartitions {
                topic: "t".to_owned(),
                partitions: vec![0, 1]
            }]
        );
        let (id, epoch) = (joined.member_id.clone(), joined.member_epoch);

        // The futures handlers await must be Send (tasks move threads).
        fn send<F: std::future::Future + Send>(f: F) -> F {
            f
        }
        let ok = send(groups.commit(commit_req(&id, epoch, 0, 4), &topics)).await;
        let _ = send(groups.delete(DeleteGroupsRequest::default())).await;
        let none = send(groups.reset(reset_req(ResetSpec::Earliest, 0, true), &topics)).await;
        assert_eq!(none.error, ErrorCode::NonEmptyGroup);
        assert_eq!(code_of(&ok), ErrorCode::None);
        let stale = groups
            .commit(commit_req(&id, epoch - 1, 0, 5), &topics)
            .await;
        assert_eq!(code_of(&stale), ErrorCode::StaleMemberEpoch);
        let unknown = groups.commit(commit_req(&id, epoch, 7, 5), &topics).await;
        assert_eq!(code_of(&unknown), ErrorCode::UnknownTopicOrPartition);

        let fetched = groups.fetch(OffsetFetchRequest {
            group_id: "g".to_owned(),
            topics: None,
        });
        assert_eq!(fetched.topics.len(), 1);
        assert_eq!(fetched.topics[0].partitions[0].offset, 4);
        assert_eq!(
            fetched.topics[0].partitions[0].metadata.as_deref(),
            Some("m")
        );

        let described = groups.describe(
            DescribeGroupsRequest {
                group_ids: vec!["g".to_owned(), "nope".to_owned()],
            },
            &topics,
        );
        let g = &described.groups[0];
        assert_eq!(
            (g.error, g.state.as_str(), g.assignor.as_str()),
            (ErrorCode::None, "Stable", "sticky")
        );
        assert_eq!(g.members[0].client_id, "client-1");
        let lag: Vec<(u32, i64, u64, i64)> = g
            .offsets
            .iter()
            .map(|o| (o.partition, o.committed, o.log_end, o.lag))
            .collect();
        assert_eq!(lag, [(0, 4, 6, 2), (1, NO_OFFSET, 0, NO_OFFSET)]);
        assert_eq!(described.groups[1].error, ErrorCode::GroupIdNotFound);
        assert_eq!(
            groups.lag_by_partition(&topics),
            [GroupPartitionLag {
                group: "g".to_owned(),
                topic: "t".to_owned(),
                partition: 0,
                lag: 2
            }]
        );

        // Admin operations wait for an empty group.
        assert_eq!(
            groups
                .reset(reset_req(ResetSpec::Earliest, 0, false), &topics)
                .await
                .error,
            ErrorCode::NonEmptyGroup
        );
        let refused = groups
            .delete(DeleteGroupsRequest {
                group_ids: vec!["g".to_owned()],
            })
            .await;
        assert_eq!(refused.results[0].error, ErrorCode::NonEmptyGroup);
        let left = groups.leave(
            LeaveGroupRequest {
                group_id: "g".to_owned(),
                member_id: id.clone(),
            },
            &topics,
        );
        assert_eq!(left.error, ErrorCode::None);
        assert_eq!(
            code_of(&groups.commit(commit_req(&id, epoch, 0, 5), &topics).await),
            ErrorCode::UnknownMemberId
        );

        let new_offset =
            |r: ResetOffsetsResponse| (r.error, r.partitions[0].old, r.partitions[0].new);
        let dry = groups
            .reset(reset_req(ResetSpec::ToTimestamp, 2000, true), &topics)
            .await;
        assert_eq!(new_offset(dry), (ErrorCode::None, 4, 2));
        assert_eq!(
            groups.offsets().fetch("g", "t", 0).map(|c| c.offset),
            Some(4),
            "dry run commits nothing"
        );
        let cases = [
            (ResetSpec::ToTimestamp, 2000, 2),
            (ResetSpec::ToTimestamp, 9999, 6),
            (ResetSpec::Earliest, 0, 0),
            (ResetSpec::Latest, 0, 6),
            (ResetSpec::ToOffset, 3, 3),
            (ResetSpec::ToOffset, 100, 6),
        ];
        let mut old = 4;
        for (spec, value, expected) in cases {
            let r = groups.reset(reset_req(spec, value, false), &topics).await;
            assert_eq!(
                new_offset(r),
                (ErrorCode::None, old, expected),
                "{spec:?} {value}"
            );
            old = expected as i64;
        }
        // An admin commit (epoch -1) is accepted while the group is empty.
        let admin = groups.commit(commit_req("", -1, 1, 0), &topics).await;
        assert_eq!(code_of(&admin), ErrorCode::None);

        let listed = groups.list();
        assert_eq!(listed.groups.len(), 1);
        assert_eq!(
            (listed.groups[0].state.as_str(), listed.groups[0].members),
            ("Empty", 0)
        );
        let deleted = groups
            .delete(DeleteGroupsRequest {
                group_ids: vec!["g".to_owned(), "g".to_owned()],
            })
            .await;
        let codes: Vec<ErrorCode> = deleted.results.iter().map(|r| r.error).collect();
        assert_eq!(codes, [ErrorCode::None, ErrorCode::GroupIdNotFound]);
        let fetched = groups.fetch(OffsetFetchRequest {
            group_id: "g".to_owned(),
            topics: Some(vec![TopicPartitions {
                topic: "t".to_owned(),
                partitions: vec![0],
            }]),
        });
        assert_eq!(fetched.topics[0].partitions[0].offset, NO_COMMITTED_OFFSET);
    }

    #[tokio::test]
    async fn committed_offsets_survive_a_restart_and_members_must_rejoin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topics = topics(dir.path()).await;
        let groups = open(dir.path());
        let joined = groups.heartbeat(
            "c",
            ConsumerGroupHeartbeatRequest {
                group_id: "g".to_owned(),
                subscribed_topics: Some(vec!["t".to_owned()]),
                ..ConsumerGroupHeartbeatRequest::default()
            },
            &topics,
        );
        let r = groups
            .commit(
                commit_req(&joined.member_id, joined.member_epoch, 1, 0),
                &topics,
            )
            .await;
        assert_eq!(code_of(&r), ErrorCode::None);
        groups.close().await.expect("close");

        let groups = open(dir.path());
        assert_eq!(
            groups.offsets().fetch("g", "t", 1).map(|c| c.offset),
            Some(0)
        );
        let listed = groups.list();
        assert_eq!(listed.groups[0].state, "Empty");
        let again = groups.heartbeat(
            "c",
            ConsumerGroupHeartbeatRequest {
                group_id: "g".to_owned(),
                member_id: joined.member_id.clone(),
                member_epoch: joined.member_epoch,
                ..ConsumerGroupHeartbeatRequest::default()
            },
            &topics,
        );
        assert_eq!(again.error, ErrorCode::UnknownMemberId);
        assert!(again.error_message.is_some());
    }
}
