//! Metadata: this broker (its `--node-id`, at its advertised address, the
//! leader of everything it hosts) and the requested topics with their
//! partitions' log start and end offsets.

use rill_protocol::wire::{
    ErrorCode, MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
};

use super::count_error;
use crate::config::parse_host_port;
use crate::shared::Shared;
use crate::topics::{validate_topic_name, Topic};

const API: &str = "metadata";

pub(crate) fn handle(shared: &Shared, request: MetadataRequest) -> MetadataResponse {
    // `validate()` checked both at start; the fallbacks cannot happen.
    let node_id = i32::try_from(shared.config.node_id).unwrap_or(i32::MAX);
    let (host, port) = shared
        .config
        .advertised_addr
        .as_deref()
        .and_then(|a| parse_host_port(a).ok())
        .unwrap_or_else(|| (shared.local_addr.ip().to_string(), shared.local_addr.port()));
    let brokers = vec![MetadataBroker {
        node_id,
        host,
        port,
    }];
    let topics = match request.topics {
        None => shared
            .registry
            .list()
            .iter()
            .map(|t| describe(t, node_id))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|name| match shared.registry.get(&name) {
                Some(t) => describe(&t, node_id),
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
    MetadataResponse {
        brokers,
        controller_id: node_id,
        topics,
    }
}

fn describe(topic: &Topic, leader: i32) -> MetadataTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .filter_map(|(p, log)| {
            Some(MetadataPartition {
                error: ErrorCode::None,
                partition: u32::try_from(p).ok()?,
                leader,
                leader_epoch: 0,
                replicas: vec![leader],
                isr: vec![leader],
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
