//! DeleteTopics: removes each topic's metadata, closes its logs and removes
//! its partition directories.

use rill_protocol::wire::{
    DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse, ErrorCode,
};

use super::count_error;
use crate::error::topic_error_code;
use crate::shared::Shared;

const API: &str = "delete_topics";

pub(crate) async fn handle(shared: &Shared, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut results = Vec::with_capacity(request.names.len());
    for name in request.names {
        let error = match shared.registry.delete(&name).await {
            Ok(()) => ErrorCode::None,
            Err(e) => {
                tracing::info!(topic = %name, error = %e, "delete topic refused");
                topic_error_code(&e)
            }
        };
        count_error(API, error);
        results.push(DeletableTopicResult { name, error });
    }
    DeleteTopicsResponse { results }
}
