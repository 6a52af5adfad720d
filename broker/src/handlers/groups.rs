//! The consumer group APIs, until the coordinator (`crate::coordinator`) is
//! wired in: every request is answered with `CoordinatorNotAvailable`
//! (retriable), per item where the response has items, so a client backs
//! off and retries instead of failing to decode an answer.

use rill_protocol::wire::{
    ConsumerGroupHeartbeatResponse, DeletableGroupResult, DeleteGroupsResponse,
    DescribeGroupsResponse, DescribedGroup, ErrorCode, LeaveGroupResponse, ListGroupsResponse,
    OffsetCommitPartitionResponse, OffsetCommitResponse, OffsetCommitTopicResponse,
    OffsetFetchResponse, Request, ResetOffsetsResponse, Response,
};

use super::{api_name, count_error};

const UNAVAILABLE: ErrorCode = ErrorCode::CoordinatorNotAvailable;
const MESSAGE: &str = "the group coordinator is not running on this broker yet";

/// The answer to a group request; `None` for any other request.
pub(crate) fn unavailable(request: Request) -> Option<Response> {
    count_error(api_name(request.api_key()), UNAVAILABLE);
    let response = match request {
        Request::ConsumerGroupHeartbeat(_) => {
            Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
                error: UNAVAILABLE,
                error_message: Some(MESSAGE.into()),
                ..Default::default()
            })
        }
        Request::LeaveGroup(_) => Response::LeaveGroup(LeaveGroupResponse { error: UNAVAILABLE }),
        Request::OffsetCommit(r) => Response::OffsetCommit(OffsetCommitResponse {
            topics: r
                .topics
                .into_iter()
                .map(|t| OffsetCommitTopicResponse {
                    name: t.name,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| OffsetCommitPartitionResponse {
                            partition: p.partition,
                            error: UNAVAILABLE,
                        })
                        .collect(),
                })
                .collect(),
        }),
        Request::OffsetFetch(_) => Response::OffsetFetch(OffsetFetchResponse {
            error: UNAVAILABLE,
            topics: Vec::new(),
        }),
        Request::ListGroups(_) => Response::ListGroups(ListGroupsResponse {
            error: UNAVAILABLE,
            groups: Vec::new(),
        }),
        Request::DescribeGroups(r) => Response::DescribeGroups(DescribeGroupsResponse {
            groups: r
                .group_ids
                .into_iter()
                .map(|group_id| DescribedGroup {
                    group_id,
                    error: UNAVAILABLE,
                    ..Default::default()
                })
                .collect(),
        }),
        Request::DeleteGroups(r) => Response::DeleteGroups(DeleteGroupsResponse {
            results: r
                .group_ids
                .into_iter()
                .map(|group_id| DeletableGroupResult {
                    group_id,
                    error: UNAVAILABLE,
                })
                .collect(),
        }),
        Request::ResetOffsets(_) => Response::ResetOffsets(ResetOffsetsResponse {
            error: UNAVAILABLE,
            error_message: Some(MESSAGE.into()),
            partitions: Vec::new(),
        }),
        _ => return None,
    };
    Some(response)
}
