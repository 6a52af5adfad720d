//! Metadata: this broker (node 0, leader of everything) and the requested
//! topics with their partitions' log start and end offsets.

use rill_protocol::wire::{
    ErrorCode, MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
};

use super::count_error;
use crate::shared::Shared;
use crate::topics::{validate_topic_name, Topic};

/// This broker's id: a single node leads every partition.
pub(crate) const NODE_ID: i32 = 0;
const API: &str = "metadata";

pub(crate) fn handle(shared: &Shared, request: MetadataRequest) -> MetadataResponse {
    let brokers = vec![MetadataBroker {
        node_id: NODE_ID,
        host: shared.local_addr.ip().to_string(),
        port: shared.local_addr.port(),
    }];
    let topics = match request.topics {
        None => shared.registry.list().iter().map(|t| describe(t)).collect(),
        Some(names) => names
            .into_iter()
            .map(|name| match shared.registry.get(&name) {
                Some(t) => describe(&t),
                None => {
                    let error = if validate_topic_name(&name).is_err() {
                        ErrorCode::InvalidTopic
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    };
                    count_error(API, error);
                    MetadataTopic {
                        error,
                        name,
                        partitions: Vec::new(),
                    }
                }
            })
            .collect(),
    };
    MetadataResponse { brokers, topics }
}

fn describe(topic: &Topic) -> MetadataTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(p, log)| {
            Some(MetadataPartition {
                error: ErrorCode::None,
                partition: u32::try_from(p).ok()?,
                leader: NODE_ID,
                log_start_offset: log.log_start_offset(),
                log_end_offset: log.log_end_offset(),
            })
        })
        .collect();
    MetadataTopic {
        error: ErrorCode::None,
        name: topic.name.clone(),
        partitions,
    }
}
