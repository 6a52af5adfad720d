//! FindCoordinator, and which broker coordinates the consumer groups.
//!
//! A lone broker coordinates every group itself and names itself (its
//! `--node-id` at its advertised address, as in Metadata).
//!
//! In cluster mode **one broker coordinates all groups**: the registered
//! broker with the lowest node id in the controller's metadata. Every
//! broker computes the same answer from the same metadata, so members that
//! bootstrap at different brokers meet in one group. This is Kafka's model
//! reduced to a single coordinator until a later change moves committed
//! offsets into replicated partitions (Kafka's `__consumer_offsets`) and
//! spreads groups over those partitions' leaders: until then a group's
//! members and offsets live on that broker alone (`data_dir/
//! __consumer_offsets`) and do not survive its loss. Before any broker is
//! registered there is no coordinator: `CoordinatorNotAvailable`.
//!
//! The group APIs (keys 10..=17) at a broker that is not the coordinator
//! are answered `NotCoordinator` ([`not_coordinator`]); the client then
//! asks FindCoordinator again.

use rill_protocol::wire::{
    ConsumerGroupHeartbeatResponse, DeletableGroupResult, DeleteGroupsResponse,
    DescribeGroupsResponse, DescribedGroup, ErrorCode, FindCoordinatorRequest,
    FindCoordinatorResponse, LeaveGroupResponse, ListGroupsResponse, OffsetCommitResponse,
    OffsetFetchResponse, Request, ResetOffsetsResponse, Response, COORDINATOR_KEY_GROUP,
    NO_NODE_ID,
};

use super::count_error;
use super::metadata::this_broker;
use crate::config::parse_host_port;
use crate::shared::Shared;

const API: &str = "find_coordinator";

/// Who coordinates the groups, as this broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Coordinator {
    /// This broker.
    Here,
    /// Another broker (cluster mode).
    Elsewhere,
    /// No broker is registered yet (cluster mode).
    Unknown,
}

/// The coordinating broker's node id and client `host:port`, or `None`
/// while no broker is registered. On a lone broker, itself.
fn coordinator_broker(shared: &Shared) -> Option<(i32, String, u16)> {
    match &shared.cluster {
        None => {
            let this = this_broker(shared);
            Some((this.node_id, this.host, this.port))
        }
        Some(cluster) => {
            let metadata = cluster.metadata();
            // The lowest registered id; a registration whose address does
            // not parse (cannot happen: brokers register their validated
            // address) is skipped rather than named.
            metadata.brokers.iter().find_map(|(id, addr)| {
                let (host, port) = parse_host_port(addr).ok()?;
                Some((i32::try_from(*id).ok()?, host, port))
            })
        }
    }
}

/// Whether this broker coordinates the groups.
pub(crate) fn coordinator(shared: &Shared) -> Coordinator {
    let Some(cluster) = &shared.cluster else {
        return Coordinator::Here;
    };
    match cluster.metadata().brokers.keys().next() {
        None => Coordinator::Unknown,
        Some(&id) if id == cluster.node_id() => Coordinator::Here,
        Some(_) => Coordinator::Elsewhere,
    }
}

pub(crate) fn handle(shared: &Shared, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let refuse = |error| {
        count_error(API, error);
        FindCoordinatorResponse {
            error,
            node_id: NO_NODE_ID,
            host: String::new(),
            port: 0,
        }
    };
    if request.key_type != COORDINATOR_KEY_GROUP {
        return refuse(ErrorCode::InvalidRequest);
    }
    match coordinator_broker(shared) {
        Some((node_id, host, port)) => FindCoordinatorResponse {
            error: ErrorCode::None,
            node_id,
            host,
            port,
        },
        None => refuse(ErrorCode::CoordinatorNotAvailable),
    }
}

/// Counts the codes of a refusal made by [`not_coordinator`] in
/// `rill_request_errors_total`, one per group or partition where the
/// response has no top-level code.
pub(crate) fn count_refusal(response: &Response) {
    let api = super::api_name(response.api_key());
    let codes: Vec<ErrorCode> = match response {
        Response::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error))
            .collect(),
        Response::DescribeGroups(r) => r.groups.iter().map(|g| g.error).collect(),
        Response::DeleteGroups(r) => r.results.iter().map(|g| g.error).collect(),
        Response::ConsumerGroupHeartbeat(r) => vec![r.error],
        Response::LeaveGroup(r) => vec![r.error],
        Response::OffsetFetch(r) => vec![r.error],
        Response::ListGroups(r) => vec![r.error],
        Response::ResetOffsets(r) => vec![r.error],
        _ => Vec::new(),
    };
    for code in codes {
        count_error(api, code);
    }
}

/// The answer to a group API request at a broker that does not coordinate
/// the groups: `error` (`NotCoordinator`, or `CoordinatorNotAvailable`
/// while there is no coordinator) at the top level of the response, or
/// for each group or partition where the response has no top-level code.
/// `None` for a request that is not a group API.
pub(crate) fn not_coordinator(request: &Request, error: ErrorCode) -> Option<Response> {
    Some(match request {
        Request::ConsumerGroupHeartbeat(_) => {
            Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
                error,
                ..Default::default()
            })
        }
        Request::LeaveGroup(_) => Response::LeaveGroup(LeaveGroupResponse { error }),
        Request::OffsetCommit(r) => {
            Response::OffsetCommit(OffsetCommitResponse::answering(r, |_, _| error))
        }
        Request::OffsetFetch(_) => Response::OffsetFetch(OffsetFetchResponse {
            error,
            topics: Vec::new(),
        }),
        Request::ListGroups(_) => Response::ListGroups(ListGroupsResponse {
            error,
            groups: Vec::new(),
        }),
        Request::DescribeGroups(r) => Response::DescribeGroups(DescribeGroupsResponse {
            groups: r
                .group_ids
                .iter()
                .map(|id| DescribedGroup {
                    group_id: id.clone(),
                    error,
                    ..Default::default()
                })
                .collect(),
        }),
        Request::DeleteGroups(r) => Response::DeleteGroups(DeleteGroupsResponse {
            results: r
                .group_ids
                .iter()
                .map(|id| DeletableGroupResult {
                    group_id: id.clone(),
                    error,
                })
                .collect(),
        }),
        Request::ResetOffsets(_) => Response::ResetOffsets(ResetOffsetsResponse {
            error,
            error_message: Some(match error {
                ErrorCode::NotCoordinator => "this broker is not the group coordinator".to_owned(),
                _ => "no group coordinator is known yet".to_owned(),
            }),
            partitions: Vec::new(),
        }),
        Request::ApiVersions(_)
        | Request::Metadata(_)
        | Request::CreateTopics(_)
        | Request::DeleteTopics(_)
        | Request::ListOffsets(_)
        | Request::Produce(_)
        | Request::Fetch(_)
        | Request::InitProducerId(_)
        | Request::FindCoordinator(_) => return None,
    })
}
