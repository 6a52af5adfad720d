//! One module per API: each turns a decoded request into its response.
//!
//! Handlers never fail as a whole: every problem becomes an error code in
//! the response (per topic or partition where the API has one), counted in
//! `rill_request_errors_total{api,code}`.

pub(crate) mod api_versions;
pub(crate) mod create_topics;
pub(crate) mod delete_topics;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;

use std::sync::Arc;

use rill_protocol::wire::{ApiKey, ErrorCode, Request, Response};

use crate::metrics;
use crate::shared::Shared;

/// What a handler task produces: a response, or nothing (acks=none produce).
pub(crate) type HandlerOutput = Option<Response>;

/// The `api` label of an API key. Exhaustive, like [`dispatch`]: a new
/// API does not compile until it is named and handled.
pub(crate) fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "api_versions",
        ApiKey::Metadata => "metadata",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ConsumerGroupHeartbeat => "consumer_group_heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::ListGroups => "list_groups",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::ResetOffsets => "reset_offsets",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::FindCoordinator => "find_coordinator",
    }
}

/// Runs the handler of every API but Produce, which the connection starts
/// itself (see [`produce::start`]); Produce is accepted here too for
/// completeness. `client_id` is the request header's. The match names every
/// request: an API added to the protocol fails to compile here until a
/// handler takes it, rather than leaving its client without an answer.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    client_id: String,
    request: Request,
) -> HandlerOutput {
    let refusal = match find_coordinator::coordinator(&shared) {
        find_coordinator::Coordinator::Here => None,
        find_coordinator::Coordinator::Elsewhere => Some(ErrorCode::NotCoordinator),
        find_coordinator::Coordinator::Unknown => Some(ErrorCode::CoordinatorNotAvailable),
    };
    // A group API at a broker that does not coordinate the groups.
    if let Some(response) =
        refusal.and_then(|error| find_coordinator::not_coordinator(&request, error))
    {
        find_coordinator::count_refusal(&response);
        return Some(response);
    }
    let groups = &shared.groups;
    let topics = &*shared.registry;
    let response = match request {
        Request::ApiVersions(r) => Response::ApiVersions(api_versions::handle(r)),
        Request::Metadata(r) => Response::Metadata(metadata::handle(&shared, r)),
        Request::CreateTopics(r) => Response::CreateTopics(create_topics::handle(&shared, r).await),
        Request::DeleteTopics(r) => Response::DeleteTopics(delete_topics::handle(&shared, r).await),
        Request::ListOffsets(r) => Response::ListOffsets(list_offsets::handle(&shared, r)),
        Request::Produce(r) => return produce::start(shared, r).await.await,
        Request::Fetch(r) => Response::Fetch(fetch::handle(&shared, r).await),
        Request::InitProducerId(r) => {
            Response::InitProducerId(init_producer_id::handle(&shared, r).await)
        }
        Request::FindCoordinator(r) => {
            Response::FindCoordinator(find_coordinator::handle(&shared, r))
        }
        Request::ConsumerGroupHeartbeat(r) => {
            let resp = groups.heartbeat(&client_id, r, topics);
            groups::count(ApiKey::ConsumerGroupHeartbeat, [resp.error]);
            Response::ConsumerGroupHeartbeat(resp)
        }
        Request::LeaveGroup(r) => {
            let resp = groups.leave(r, topics);
            groups::count(ApiKey::LeaveGroup, [resp.error]);
            Response::LeaveGroup(resp)
        }
        Request::OffsetCommit(r) => {
            let resp = groups.commit(r, topics).await;
            let codes = resp.topics.iter().flat_map(|t| t.partitions.iter());
            groups::count(ApiKey::OffsetCommit, codes.map(|p| p.error));
            Response::OffsetCommit(resp)
        }
        Request::OffsetFetch(r) => {
            let resp = groups.fetch(r);
            groups::count(ApiKey::OffsetFetch, [resp.error]);
            Response::OffsetFetch(resp)
        }
        Request::ListGroups(_) => {
            let resp = groups.list();
            groups::count(ApiKey::ListGroups, [resp.error]);
            Response::ListGroups(resp)
        }
        Request::DescribeGroups(r) => {
            let resp = groups.describe(r, topics);
            groups::count(ApiKey::DescribeGroups, resp.groups.iter().map(|g| g.error));
            Response::DescribeGroups(resp)
        }
        Request::DeleteGroups(r) => {
            let resp = groups.delete(r).await;
            groups::count(ApiKey::DeleteGroups, resp.results.iter().map(|g| g.error));
            Response::DeleteGroups(resp)
        }
        Request::ResetOffsets(r) => {
            let resp = groups.reset(r, topics).await;
            groups::count(ApiKey::ResetOffsets, [resp.error]);
            Response::ResetOffsets(resp)
        }
    };
    Some(response)
}

/// Counts a non-`None` code in `rill_request_errors_total`.
pub(crate) fn count_error(api: &'static str, code: ErrorCode) {
    if code.is_error() {
        ::metrics::counter!(metrics::REQUEST_ERRORS_TOTAL, "api" => api, "code" => code.name())
            .increment(1);
    }
}
