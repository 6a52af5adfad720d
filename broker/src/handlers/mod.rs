//! One module per API: each turns a decoded request into its response.
//!
//! Handlers never fail as a whole: every problem becomes an error code in
//! the response (per topic or partition where the API has one), counted in
//! `rill_request_errors_total{api,code}`.

pub(crate) mod api_versions;
pub(crate) mod create_topics;
pub(crate) mod delete_topics;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod init_producer_id;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod produce;

use std::sync::Arc;

use rill_protocol::wire::{ApiKey, ErrorCode, Request, Response};

use crate::connection::HandlerOutput;
use crate::metrics;
use crate::server::Shared;

/// The `api` label of an API key.
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
        _ => "unsupported",
    }
}

/// Runs the handler of every API but Produce, which the connection starts
/// itself (see [`produce::start`]); Produce is accepted here too for
/// completeness. `client_id` is the request header's.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    client_id: String,
    request: Request,
) -> HandlerOutput {
    match request {
        Request::ApiVersions(r) => Some(Response::ApiVersions(api_versions::handle(r))),
        Request::Metadata(r) => Some(Response::Metadata(metadata::handle(&shared, r))),
        Request::CreateTopics(r) => Some(Response::CreateTopics(
            create_topics::handle(&shared, r).await,
        )),
        Request::DeleteTopics(r) => Some(Response::DeleteTopics(
            delete_topics::handle(&shared, r).await,
        )),
        Request::ListOffsets(r) => Some(Response::ListOffsets(list_offsets::handle(&shared, r))),
        Request::Produce(r) => produce::start(shared, r).await.await,
        Request::Fetch(r) => Some(Response::Fetch(fetch::handle(&shared, r).await)),
        Request::InitProducerId(r) => Some(Response::InitProducerId(
            init_producer_id::handle(&shared, r).await,
        )),
        // The consumer group APIs (keys 10..=17).
        other => groups::handle(&shared, &client_id, other).await,
    }
}

/// Counts a non-`None` code in `rill_request_errors_total`.
pub(crate) fn count_error(api: &'static str, code: ErrorCode) {
    if code.is_error() {
        ::metrics::counter!(metrics::REQUEST_ERRORS_TOTAL, "api" => api, "code" => code.name())
            .increment(1);
    }
}
