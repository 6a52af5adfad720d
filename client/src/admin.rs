//! Topic administration (create, delete, list, describe, list offsets) and
//! consumer group administration (list, describe with lag, reset offsets,
//! delete).
//!
//! Thin typed calls: each turns a request into one round trip and maps
//! per-topic and per-partition error codes to [`ClientError::Broker`] with
//! the topic and partition filled in. Topic administration goes to any
//! broker (the bootstrap link; a broker forwards what only the controller
//! may do). Group administration goes to the group's coordinator, found
//! with FindCoordinator at any broker and found again (paced) while a
//! broker answers that it is not the coordinator or cannot be reached, up
//! to the request timeout (see `coordinator`); ListGroups goes to the
//! coordinator named for the empty group id (in a cluster one broker
//! coordinates every group, see the broker's `find_coordinator`). ListOffsets goes to each partition's leader, found
//! in the client's metadata cache (`cluster`), and is retried at the new
//! leader when the old one refuses or cannot be reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_protocol::wire::{
    CreatableTopic, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeGroupsRequest, ErrorCode, ListGroupsRequest, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsTopic, MetadataRequest, MetadataResponse, OffsetFetchRequest, ResetOffsetsRequest,
    ResetSpec, TopicPartitions, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};

use crate::cluster::{is_leader_error, Cluster, LinkKind, Reason};
use crate::connection::{BrokerLink, ConnectionConfig};
use crate::coordinator::{coordinator_code, Coordinators};
use crate::error::{ClientError, Result};
use crate::producer::{RETRY_BACKOFF_DEFAULT, RETRY_BACKOFF_MAX_DEFAULT};
use tracing::debug;

/// A replication factor of 0 asks the broker for its default.
pub const DEFAULT_REPLICATION_FACTOR: u16 = 0;

/// Settings of an [`Admin`] client.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `host:port` of a broker, or a comma-separated list of them (Kafka's
    /// `bootstrap.servers`): connecting tries each until one answers.
    pub bootstrap: String,
    pub request_timeout: Duration,
    pub client_id: String,
}

impl AdminConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        let defaults = ConnectionConfig::default();
        AdminConfig {
            bootstrap: bootstrap.into(),
            request_timeout: defaults.request_timeout,
            client_id: defaults.client_id,
        }
    }
}

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the oldest record still kept.
    Earliest,
    /// The log end offset: where the next record will be written.
    Latest,
    /// The first offset whose record timestamp is at or after this many
    /// milliseconds since the Unix epoch (the log end offset if none is).
    Timestamp(i64),
}

impl OffsetSpec {
    pub(crate) fn wire_timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// One partition as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// Node id of the partition's leader (-1: none right now).
    pub leader: i32,
    /// The leader's epoch (its Raft term; 0 on a single replica).
    pub leader_epoch: u32,
    /// Node ids of the replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas in sync with the leader, as the leader reports them.
    pub isr: Vec<i32>,
    pub log_start_offset: u64,
    /// The high watermark: the end of what consumers can read.
    pub log_end_offset: u64,
}

impl PartitionInfo {
    /// Fewer replicas in sync than the partition has.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

/// The cluster as one broker's metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// `(node id, host:port)` of every broker, by node id.
    pub brokers: Vec<(i32, String)>,
    /// Node id of the controller's leader (-1: none right now).
    pub controller_id: i32,
}

/// A topic and its partitions, sorted by partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// The answer of a [`Admin::list_offsets`] lookup for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffset {
    pub partition: u32,
    pub offset: u64,
    /// Timestamp of the record found, -1 when the broker has none to give.
    pub timestamp: i64,
}

/// One row of [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// `Empty`, `Reconciling` or `Stable`.
    pub state: String,
    pub members: u32,
}

/// A member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub member_epoch: i32,
    /// Partitions the member consumes, sorted.
    pub assignment: Vec<(String, u32)>,
    /// Partitions the member was told to give up and has not yet released.
    pub pending_revocation: Vec<(String, u32)>,
}

/// A partition's committed offset and lag in a [`GroupDescription`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartitionOffset {
    pub partition: u32,
    /// `None` when the group has committed nothing for this partition.
    pub committed: Option<u64>,
    pub log_end_offset: u64,
    /// `log_end_offset - committed`; `None` without a commit.
    pub lag: Option<u64>,
}

/// A consumer group as [`Admin::describe_group`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Empty`, `Reconciling` or `Stable`.
    pub state: String,
    pub assignor: String,
    pub group_epoch: i32,
    pub members: Vec<GroupMemberDescription>,
    /// `(topic, offset)` for every partition committed or assigned, sorted.
    pub offsets: Vec<(String, GroupPartitionOffset)>,
}

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// This offset, clamped to the partition's range.
    Offset(u64),
    /// The first offset whose record time is at or after this many ms since
    /// the Unix epoch (the log end if none is).
    Timestamp(i64),
}

impl ResetTo {
    fn to_wire(self) -> (ResetSpec, i64) {
        match self {
            ResetTo::Earliest => (ResetSpec::Earliest, 0),
            ResetTo::Latest => (ResetSpec::Latest, 0),
            ResetTo::Offset(o) => (ResetSpec::ToOffset, i64::try_from(o).unwrap_or(i64::MAX)),
            ResetTo::Timestamp(ts) => (ResetSpec::ToTimestamp, ts),
        }
    }
}

/// One partition's outcome of [`Admin::reset_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetReset {
    pub partition: u32,
    /// The committed offset before; `None` if there was none.
    pub old: Option<u64>,
    /// The committed offset after (or, in a dry run, that would be).
    pub new: u64,
}

fn optional_offset(o: i64) -> Option<u64> {
    u64::try_from(o).ok()
}

fn pairs(list: Vec<TopicPartitions>) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = list
        .into_iter()
        .flat_map(|tp| {
            let topic = tp.topic;
            tp.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect();
    out.sort();
    out
}

/// Administrative client.
#[derive(Debug)]
pub struct Admin {
    cluster: Arc<Cluster>,
    /// The coordinators of the groups administered.
    coordinators: Coordinators,
    request_timeout: Duration,
}

impl Admin {
    /// Connects to the broker and negotiates API versions.
    pub async fn connect(config: AdminConfig) -> Result<Admin> {
        let conn = ConnectionConfig {
            client_id: config.client_id,
            request_timeout: config.request_timeout,
            ..ConnectionConfig::default()
        };
        let cluster = Cluster::connect(
            &config.bootstrap,
            conn.clone(),
            RETRY_BACKOFF_DEFAULT,
            RETRY_BACKOFF_MAX_DEFAULT,
        )
        .await?;
        Ok(Admin {
            coordinators: Coordinators::new(Arc::clone(&cluster), conn),
            cluster,
            request_timeout: config.request_timeout,
        })
    }

    /// Any broker: the bootstrap link.
    fn link(&self) -> &BrokerLink {
        self.cluster.bootstrap()
    }

    /// Creates `name` with `partitions` partitions and per-topic config
    /// overrides (Kafka names: `retention.ms`, `segment.bytes`, ...), each
    /// partition with the broker's default replication factor.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        self.create_replicated_topic(name, partitions, DEFAULT_REPLICATION_FACTOR, configs)
            .await
    }

    /// [`Admin::create_topic`] with `replication_factor` copies of each
    /// partition ([`DEFAULT_REPLICATION_FACTOR`] for the broker's default,
    /// `min(3, brokers)`).
    pub async fn create_replicated_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let req = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.to_owned(),
                partitions,
                replication_factor,
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }],
            validate_only: false,
        };
        let resp = self.link().get().await?.create_topics(req).await?;
        let topic = resp
            .topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or(ClientError::UnknownTopic(name.to_owned()))?;
        check(topic.error, name, topic.error_message)
    }

    /// Deletes `name` and its data.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let req = DeleteTopicsRequest {
            names: vec![name.to_owned()],
        };
        let resp = self.link().get().await?.delete_topics(req).await?;
        let topic = resp
            .results
            .into_iter()
            .find(|t| t.name == name)
            .ok_or(ClientError::UnknownTopic(name.to_owned()))?;
        check(topic.error, name, None)
    }

    /// Names of all topics, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let resp = self.metadata(None).await?;
        let mut names: Vec<String> = resp.topics.into_iter().map(|t| t.name).collect();
        names.sort();
        Ok(names)
    }

    /// The partitions of `name` with their log start and end offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let resp = self.metadata(Some(vec![name.to_owned()])).await?;
        let mut description = describe_from_metadata(resp, name)?;
        // In-sync replicas and the high watermark are the leader's to say:
        // each partition's row comes from its leader where it answers.
        let leaders: std::collections::BTreeSet<i32> = description
            .partitions
            .iter()
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
            .collect();
        if leaders.len() > 1 || description.partitions.iter().any(|p| p.replicas.len() > 1) {
            let _ = self
                .cluster
                .refresh(&[name], &Reason::failure("describe asks each leader"))
                .await;
            for leader in leaders {
                let Ok(conn) = self.cluster.connection(leader, LinkKind::Main).await else {
                    continue;
                };
                let Ok(resp) = conn
                    .metadata(MetadataRequest {
                        topics: Some(vec![name.to_owned()]),
                    })
                    .await
                else {
                    continue;
                };
                let Ok(seen) = describe_from_metadata(resp, name) else {
                    continue;
                };
                for theirs in seen.partitions.into_iter().filter(|p| p.leader == leader) {
                    if let Some(ours) = description
                        .partitions
                        .iter_mut()
                        .find(|p| p.partition == theirs.partition)
                    {
                        *ours = theirs;
                    }
                }
            }
        }
        Ok(description)
    }

    /// The brokers and the controller, as the bootstrap broker knows them.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let resp = self.metadata(Some(Vec::new())).await?;
        let mut brokers: Vec<(i32, String)> = resp
            .brokers
            .into_iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        brokers.sort();
        Ok(ClusterDescription {
            brokers,
            controller_id: resp.controller_id,
        })
    }

    /// Looks up one offset per partition of `topic`, each asked of the
    /// partition's leader (retried at a new leader for up to the request
    /// timeout while leadership moves).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        list_offsets(&self.cluster, topic, partitions, spec, self.request_timeout).await
    }

    /// Every consumer group: those with members and those known only by
    /// their committed offsets (shown `Empty`).
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        // Any key names the broker that coordinates every group.
        let resp = self
            .coordinators
            .call(
                "",
                self.request_timeout,
                |conn| async move { conn.list_groups(ListGroupsRequest {}).await },
                |resp| coordinator_code(resp.error),
            )
            .await?;
        if resp.error != ErrorCode::None {
            return Err(ClientError::broker(resp.error));
        }
        Ok(resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id,
                state: g.state,
                members: g.members,
            })
            .collect())
    }

    /// A group's state, members with their assignments, and committed
    /// offsets with lag. `GroupIdNotFound` if it has neither members nor
    /// offsets.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let request = DescribeGroupsRequest {
            group_ids: vec![group_id.to_owned()],
        };
        let resp = self
            .coordinators
            .call(
                group_id,
                self.request_timeout,
                |conn| {
                    let request = request.clone();
                    async move { conn.describe_groups(request).await }
                },
                |resp| resp.groups.iter().find_map(|g| coordinator_code(g.error)),
            )
            .await?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id == group_id)
            .ok_or_else(|| ClientError::broker(ErrorCode::GroupIdNotFound))?;
        if g.error != ErrorCode::None {
            return Err(group_error(g.error, group_id));
        }
        let mut offsets: Vec<(String, GroupPartitionOffset)> = g
            .offsets
            .into_iter()
            .map(|o| {
                (
                    o.topic,
                    GroupPartitionOffset {
                        partition: o.partition,
                        committed: optional_offset(o.committed),
                        log_end_offset: o.log_end,
                        lag: optional_offset(o.lag),
                    },
                )
            })
            .collect();
        offsets.sort_by(|a, b| (&a.0, a.1.partition).cmp(&(&b.0, b.1.partition)));
        Ok(GroupDescription {
            group_id: g.group_id,
            state: g.state,
            assignor: g.assignor,
            group_epoch: g.group_epoch,
            members: g
                .members
                .into_iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    member_epoch: m.member_epoch,
                    assignment: pairs(m.assignment),
                    pending_revocation: pairs(m.pending_revocation),
                })
                .collect(),
            offsets,
        })
    }

    /// Deletes a group's committed offsets. Refused with `NonEmptyGroup`
    /// while it has members.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        let request = DeleteGroupsRequest {
            group_ids: vec![group_id.to_owned()],
        };
        let resp = self
            .coordinators
            .call(
                group_id,
                self.request_timeout,
                |conn| {
                    let request = request.clone();
                    async move { conn.delete_groups(request).await }
                },
                |resp| resp.results.iter().find_map(|g| coordinator_code(g.error)),
            )
            .await?;
        let result = resp
            .results
            .into_iter()
            .find(|r| r.group_id == group_id)
            .ok_or_else(|| ClientError::broker(ErrorCode::GroupIdNotFound))?;
        if result.error != ErrorCode::None {
            return Err(group_error(result.error, group_id));
        }
        Ok(())
    }

    /// Moves a group's committed offsets on `topic` (every partition when
    /// `partitions` is `None`). With `dry_run` nothing is written and the
    /// answer says what would be. Refused with `NonEmptyGroup` while the
    /// group has members.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        partitions: Option<&[u32]>,
        to: ResetTo,
        dry_run: bool,
    ) -> Result<Vec<OffsetReset>> {
        let (spec, value) = to.to_wire();
        let request = ResetOffsetsRequest {
            group_id: group_id.to_owned(),
            topic: topic.to_owned(),
            partitions: partitions.map(<[u32]>::to_vec),
            spec,
            value,
            dry_run,
        };
        let resp = self
            .coordinators
            .call(
                group_id,
                self.request_timeout,
                |conn| {
                    let request = request.clone();
                    async move { conn.reset_offsets(request).await }
                },
                |resp| coordinator_code(resp.error),
            )
            .await?;
        if resp.error != ErrorCode::None {
            return Err(ClientError::Broker {
                code: resp.error,
                topic: Some(topic.to_owned()),
                partition: None,
                message: resp.error_message,
            });
        }
        Ok(resp
            .partitions
            .into_iter()
            .map(|p| OffsetReset {
                partition: p.partition,
                old: optional_offset(p.old),
                new: p.new,
            })
            .collect())
    }

    /// A group's committed offsets, `((topic, partition), offset)` sorted:
    /// each the next offset its consumers read.
    pub async fn committed_offsets(&self, group_id: &str) -> Result<Vec<((String, u32), u64)>> {
        let request = OffsetFetchRequest {
            group_id: group_id.to_owned(),
            topics: None,
        };
        let resp = self
            .coordinators
            .call(
                group_id,
                self.request_timeout,
                |conn| {
                    let request = request.clone();
                    async move { conn.offset_fetch(request).await }
                },
                |resp| coordinator_code(resp.error),
            )
            .await?;
        if resp.error != ErrorCode::None {
            return Err(group_error(resp.error, group_id));
        }
        let mut out = Vec::new();
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
                if let Some(offset) = optional_offset(p.offset) {
                    out.push(((topic.name.clone(), p.partition), offset));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
        self.link()
            .get()
            .await?
            .metadata(MetadataRequest { topics })
            .await
    }
}

fn group_error(code: ErrorCode, group_id: &str) -> ClientError {
    ClientError::Broker {
        code,
        topic: None,
        partition: None,
        message: Some(format!("group {group_id:?}")),
    }
}

fn check(code: ErrorCode, topic: &str, message: Option<String>) -> Result<()> {
    if code == ErrorCode::None {
        Ok(())
    } else {
        Err(ClientError::topic(code, topic, message))
    }
}

/// Extracts `name` from a metadata response, with its partitions sorted.
pub(crate) fn describe_from_metadata(
    resp: MetadataResponse,
    name: &str,
) -> Result<TopicDescription> {
    let topic = resp
        .topics
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ClientError::UnknownTopic(name.to_owned()))?;
    check(topic.error, name, None)?;
    let mut partitions = Vec::with_capacity(topic.partitions.len());
    for p in topic.partitions {
        if p.error != ErrorCode::None && p.error != ErrorCode::LeaderNotAvailable {
            return Err(ClientError::partition(p.error, name, p.partition, None));
        }
        partitions.push(PartitionInfo {
            partition: p.partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            replicas: p.replicas,
            isr: p.isr,
            log_start_offset: p.log_start_offset,
            log_end_offset: p.log_end_offset,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    if partitions.is_empty() {
        return Err(ClientError::UnknownTopic(name.to_owned()));
    }
    Ok(TopicDescription {
        name: name.to_owned(),
        partitions,
    })
}

/// ListOffsets for `partitions` of `topic`, one request per leader;
/// shared by [`Admin`] and the consumer's seek. Partitions whose leader
/// refuses or cannot be reached are asked again at their leader after a
/// (paced) metadata refresh, until `give_up_after` has passed.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
    give_up_after: Duration,
) -> Result<Vec<PartitionOffset>> {
    let started = Instant::now();
    let mut out: Vec<PartitionOffset> = Vec::with_capacity(partitions.len());
    let mut left: Vec<u32> = Vec::with_capacity(partitions.len());
    for &p in partitions {
        if !left.contains(&p) {
            left.push(p);
        }
    }
    let mut refresh: Option<Reason> = None;
    let mut last_error: Option<ClientError> = None;
    loop {
        let unknown = left.iter().any(|&p| cluster.leader(topic, p).is_none());
        if unknown && refresh.is_none() {
            refresh = Some(match cluster.partition_count(topic) {
                None => Reason::first_use(topic),
                Some(_) => Reason::failure(format!(
                    "list offsets: {topic} has partitions without a known leader"
                )),
            });
        }
        if let Some(reason) = refresh.take() {
            if let Err(e) = cluster.refresh(&[topic], &reason).await {
                if !e.is_retriable() {
                    return Err(e);
                }
                last_error = Some(e);
            }
        }
        // Requests by leader; a partition the topic does not have, or a
        // topic the broker does not know, fails at once.
        let mut by_node: Vec<(i32, Vec<u32>)> = Vec::new();
        for &p in &left {
            match cluster.leader(topic, p) {
                Some(leader) => match by_node.iter_mut().find(|(n, _)| *n == leader.node) {
                    Some((_, list)) => list.push(p),
                    None => by_node.push((leader.node, vec![p])),
                },
                None => match cluster.partition_count(topic) {
                    Some(Err(e)) => return Err(e),
                    Some(Ok(count)) if p >= count => {
                        return Err(ClientError::partition(
                            ErrorCode::UnknownTopicOrPartition,
                            topic,
                            p,
                            Some(format!("the topic has {count} partitions")),
                        ))
                    }
                    _ => {
                        last_error = Some(ClientError::partition(
                            ErrorCode::LeaderNotAvailable,
                            topic,
                            p,
                            None,
                        ))
                    }
                },
            }
        }
        for (node, asked) in by_node {
            let answer = match cluster.connection(node, LinkKind::Main).await {
                Ok(conn) => conn.list_offsets(request(topic, &asked, spec)).await,
                Err(e) => Err(e),
            };
            let resp = match answer {
                Ok(resp) => resp,
                Err(e) if is_leader_error(&e) => {
                    debug!(node, error = %e, "list offsets at a leader failed; looking it up again");
                    for &p in &asked {
                        cluster.leader_failed(topic, p, node);
                    }
                    refresh = Some(Reason::failure(format!(
                        "list offsets at node {node} failed: {e}"
                    )));
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut retry_here: Vec<u32> = Vec::new();
            for t in resp.topics.into_iter().filter(|t| t.name == topic) {
                for p in t.partitions {
                    if !asked.contains(&p.partition) {
                        continue;
                    }
                    if p.error != ErrorCode::None {
                        let e = ClientError::partition(p.error, topic, p.partition, None);
                        // Unknown partitions fail at once, as before leaders.
                        if is_leader_error(&e) && p.error != ErrorCode::UnknownTopicOrPartition {
                            cluster.leader_failed(topic, p.partition, node);
                            refresh = Some(Reason::failure(format!(
                                "list offsets: node {node} answered {:?} for {topic}-{}",
                                p.error, p.partition
                            )));
                            last_error = Some(e);
                            retry_here.push(p.partition);
                            continue;
                        }
                        return Err(e);
                    }
                    left.retain(|&l| l != p.partition);
                    out.push(PartitionOffset {
                        partition: p.partition,
                        offset: p.offset,
                        timestamp: p.timestamp,
                    });
                }
            }
            for &wanted in &asked {
                if left.contains(&wanted) && !retry_here.contains(&wanted) {
                    return Err(ClientError::partition(
                        ErrorCode::UnknownTopicOrPartition,
                        topic,
                        wanted,
                        Some("missing from the ListOffsets response".to_owned()),
                    ));
                }
            }
        }
        if left.is_empty() {
            break;
        }
        if started.elapsed() >= give_up_after {
            return Err(
                last_error.unwrap_or_else(|| ClientError::broker(ErrorCode::LeaderNotAvailable))
            );
        }
        // A refresh is paced; without one due (no leader yet), wait for
        // the next paced refresh anyway.
        if refresh.is_none() {
            refresh = Some(Reason::failure(format!(
                "list offsets: {topic} has partitions without a leader"
            )));
        }
    }
    // In the order asked.
    out.sort_by_key(|o| partitions.iter().position(|&p| p == o.partition));
    Ok(out)
}

fn request(topic: &str, partitions: &[u32], spec: OffsetSpec) -> ListOffsetsRequest {
    ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: topic.to_owned(),
            partitions: partitions
                .iter()
                .map(|&partition| ListOffsetsPartition {
                    partition,
                    timestamp: spec.wire_timestamp(),
                })
                .collect(),
        }],
    }
}

/// [`list_offsets`] for one partition: its offset for `spec`.
pub(crate) async fn partition_offset(
    cluster: &Cluster,
    topic: &str,
    partition: u32,
    spec: OffsetSpec,
    give_up_after: Duration,
) -> Result<u64> {
    let found = list_offsets(cluster, topic, &[partition], spec, give_up_after).await?;
    found
        .first()
        .map(|o| o.offset)
        .ok_or_else(|| ClientError::NotAssigned {
            topic: topic.to_owned(),
            partition,
        })
}
