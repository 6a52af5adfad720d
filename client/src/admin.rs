//! Topic administration: create, delete, list, describe, list offsets.
//!
//! Thin typed calls over one [`BrokerLink`]: each turns a request into one
//! round trip and maps per-topic and per-partition error codes to
//! [`ClientError::Broker`] with the topic and partition filled in.

use std::time::Duration;

use rill_protocol::wire::{
    CreatableTopic, CreateTopicsRequest, DeleteTopicsRequest, ErrorCode, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsTopic, MetadataRequest, MetadataResponse, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
};

use crate::connection::{BrokerLink, ConnectionConfig};
use crate::error::{ClientError, Result};

/// Settings of an [`Admin`] client.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `host:port` of the broker.
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
    /// Node id of the partition's leader.
    pub leader: i32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
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

/// Administrative client.
#[derive(Debug)]
pub struct Admin {
    link: BrokerLink,
}

impl Admin {
    /// Connects to the broker and negotiates API versions.
    pub async fn connect(config: AdminConfig) -> Result<Admin> {
        let conn = ConnectionConfig {
            client_id: config.client_id,
            request_timeout: config.request_timeout,
            ..ConnectionConfig::default()
        };
        Ok(Admin {
            link: BrokerLink::connect(&config.bootstrap, conn).await?,
        })
    }

    /// Creates `name` with `partitions` partitions and per-topic config
    /// overrides (Kafka names: `retention.ms`, `segment.bytes`, ...).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let req = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.to_owned(),
                partitions,
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }],
            validate_only: false,
        };
        let resp = self.link.get().await?.create_topics(req).await?;
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
        let resp = self.link.get().await?.delete_topics(req).await?;
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
        describe_from_metadata(resp, name)
    }

    /// Looks up one offset per partition of `topic`.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>> {
        list_offsets(&self.link, topic, partitions, spec).await
    }

    async fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
        self.link
            .get()
            .await?
            .metadata(MetadataRequest { topics })
            .await
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
        if p.error != ErrorCode::None {
            return Err(ClientError::partition(p.error, name, p.partition, None));
        }
        partitions.push(PartitionInfo {
            partition: p.partition,
            leader: p.leader,
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

/// One ListOffsets round trip; shared by [`Admin`] and the consumer's seek.
pub(crate) async fn list_offsets(
    link: &BrokerLink,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<Vec<PartitionOffset>> {
    let req = ListOffsetsRequest {
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
    };
    let resp = link.get().await?.list_offsets(req).await?;
    let mut out = Vec::with_capacity(partitions.len());
    for t in resp.topics.into_iter().filter(|t| t.name == topic) {
        for p in t.partitions {
            if p.error != ErrorCode::None {
                return Err(ClientError::partition(p.error, topic, p.partition, None));
            }
            out.push(PartitionOffset {
                partition: p.partition,
                offset: p.offset,
                timestamp: p.timestamp,
            });
        }
    }
    for &wanted in partitions {
        if !out.iter().any(|o| o.partition == wanted) {
            return Err(ClientError::partition(
                ErrorCode::UnknownTopicOrPartition,
                topic,
                wanted,
                Some("missing from the ListOffsets response".to_owned()),
            ));
        }
    }
    Ok(out)
}
