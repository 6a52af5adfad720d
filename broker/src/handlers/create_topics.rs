//! CreateTopics: validates names, partition counts and config overrides,
//! then creates each topic (metadata file, then partition logs). Names
//! starting with `__` are refused here: they are kept for the broker's own
//! topics (such as `__consumer_offsets`), which it creates directly through
//! the registry. In cluster mode the topic is created through the
//! controller (`cluster`), with the request's replication factor.

use rill_protocol::wire::{
    CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse, ErrorCode,
};

use super::count_error;
use crate::cluster::ClusterError;
use crate::error::cluster_error_code;
use crate::shared::Shared;
use crate::topics::{TopicError, INTERNAL_TOPIC_PREFIX};

const API: &str = "create_topics";

pub(crate) async fn handle(shared: &Shared, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = if topic.name.starts_with(INTERNAL_TOPIC_PREFIX) {
            Err(TopicError::InvalidName(format!(
                "{:?}: names starting with {INTERNAL_TOPIC_PREFIX:?} are reserved for internal topics",
                topic.name
            ))
            .into())
        } else if let Some(cluster) = &shared.cluster {
            cluster
                .create_topic(
                    &shared.registry,
                    &topic.name,
                    topic.partitions,
                    topic.replication_factor,
                    &topic.configs,
                    request.validate_only,
                )
                .await
        } else if topic.replication_factor > 1 {
            Err(ClusterError::ReplicationFactor {
                factor: topic.replication_factor,
                brokers: 1,
            })
        } else {
            shared
                .registry
                .create(
                    &topic.name,
                    topic.partitions,
                    &topic.configs,
                    request.validate_only,
                )
                .await
                .map_err(ClusterError::from)
        };
        let (error, error_message) = match result {
            Ok(()) => (ErrorCode::None, None),
            Err(e) => {
                let code = cluster_error_code(&e);
                tracing::info!(topic = %topic.name, error = %e, "create topic refused");
                (code, Some(e.to_string()))
            }
        };
        count_error(API, error);
        topics.push(CreatableTopicResult {
            name: topic.name,
            error,
            error_message,
        });
    }
    CreateTopicsResponse { topics }
}
