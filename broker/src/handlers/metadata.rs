//! Metadata: this broker (its `--node-id`, at its advertised address, the
//! leader of everything it hosts) and the requested topics with their
//! partitions' log start and end offsets. In cluster mode: every broker
//! registered with the controller, the controller's leader, and each
//! partition's replicas, with its leader, leader epoch, in-sync replicas
//! and high watermark as this broker's replica sees them (a broker that
//! does not host a partition names its preferred leader, so a client
//! goes there and is redirected if that is stale).

use rill_protocol::wire::{
    ErrorCode, MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
};

use super::count_error;
use crate::cluster::Cluster;
use crate::config::parse_host_port;
use crate::shared::Shared;
use crate::topics::{validate_topic_name, Topic};

const API: &str = "metadata";

pub(crate) fn handle(shared: &Shared, request: MetadataRequest) -> MetadataResponse {
    if let Some(cluster) = &shared.cluster {
        return handle_cluster(shared, cluster, request);
    }
    let this = this_broker(shared);
    let node_id = this.node_id;
    let brokers = vec![this];
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
                None => unknown_topic(name),
            })
            .collect(),
    };
    MetadataResponse {
        brokers,
        controller_id: node_id,
        topics,
    }
}

/// A lone broker as clients see it: its `--node-id` at its advertised
/// address (the listener's address when none is configured).
pub(crate) fn this_broker(shared: &Shared) -> MetadataBroker {
    // `validate()` checked both at start; the fallbacks cannot happen.
    let node_id = i32::try_from(shared.config.node_id).unwrap_or(i32::MAX);
    let (host, port) = shared
        .config
        .advertised_addr
        .as_deref()
        .and_then(|a| parse_host_port(a).ok())
        .unwrap_or_else(|| (shared.local_addr.ip().to_string(), shared.local_addr.port()));
    MetadataBroker {
        node_id,
        host,
        port,
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

fn node(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

fn handle_cluster(
    shared: &Shared,
    cluster: &Cluster,
    request: MetadataRequest,
) -> MetadataResponse {
    let metadata = cluster.metadata();
    let brokers = metadata
        .brokers
        .iter()
        .filter_map(|(id, addr)| {
            let (host, port) = parse_host_port(addr).ok()?;
            Some(MetadataBroker {
                node_id: node(*id),
                host,
                port,
            })
        })
        .collect();
    let controller_id = cluster.controller_status().leader.map_or(-1, node);
    let names: Vec<String> = match request.topics {
        None => metadata.topics.keys().cloned().collect(),
        Some(names) => names,
    };
    let topics = names
        .into_iter()
        .map(|name| match metadata.topics.get(&name) {
            None => unknown_topic(name),
            Some(spec) => {
                let hosted = shared.registry.get(&name);
                let partitions = spec
                    .replicas
                    .iter()
                    .enumerate()
                    .filter_map(|(p, replicas)| {
                        let p = u32::try_from(p).ok()?;
                        let replicas: Vec<i32> = replicas.iter().map(|r| node(*r)).collect();
                        let local = hosted.as_ref().and_then(|t| t.partition(p));
                        let mut out = MetadataPartition {
                            error: ErrorCode::None,
                            partition: p,
                            leader: replicas.first().copied().unwrap_or(-1),
                            leader_epoch: 0,
                            isr: Vec::new(),
                            replicas,
                            log_start_offset: 0,
                            log_end_offset: 0,
                        };
                        let me = node(cluster.node_id());
                        if local.is_none() && out.replicas.contains(&me) {
                            // Ours, but not opened yet (the reconciler runs
                            // just after the metadata is applied).
                            out.leader = -1;
                            out.error = ErrorCode::LeaderNotAvailable;
                        }
                        if let Some(local) = local {
                            out.log_start_offset = local.log_start_offset();
                            out.log_end_offset = local.high_watermark();
                            match local.replica_status() {
                                None => {
                                    out.leader = node(cluster.node_id());
                                    out.isr = vec![out.leader];
                                }
                                Some(status) => {
                                    out.leader = status.leader.map_or(-1, node);
                                    if status.lease_lapsed {
                                        // Leads in name only: cut off from
                                        // the majority, which may have
                                        // elected another leader already.
                                        out.leader = -1;
                                    }
                                    out.leader_epoch =
                                        u32::try_from(status.term).unwrap_or(u32::MAX);
                                    out.isr = status.in_sync.iter().map(|r| node(*r)).collect();
                                    if out.leader < 0 {
                                        out.error = ErrorCode::LeaderNotAvailable;
                                    }
                                }
                            }
                        }
                        Some(out)
                    })
                    .collect();
                MetadataTopic {
                    error: ErrorCode::None,
                    name,
                    partitions,
                }
            }
        })
        .collect();
    MetadataResponse {
        brokers,
        controller_id,
        topics,
    }
}

/// The answer for a topic that does not exist (or whose name is invalid),
/// counted.
fn unknown_topic(name: String) -> MetadataTopic {
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
