//! ApiVersions: the table of APIs and versions this build speaks.

use rill_protocol::wire::{ApiVersionsRequest, ApiVersionsResponse};

pub(crate) fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::supported()
}
