//! DeleteTopics: removes each topic's metadata, closes its logs and removes
//! its partition directories (in cluster mode, through the controller, on
//! every broker).

use rill_protocol::wire::{
    DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse, ErrorCode,
};

use super::count_error;
use crate::cluster::ClusterError;
use crate::error::cluster_error_code;
use crate::shared::Shared;

const API: &str = "delete_topics";

pub(crate) async fn handle(shared: &Shared, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut results = Vec::with_capacity(request.names.len());
    for name in request.names {
        let result = match &shared.cluster {
            Some(cluster) => cluster.delete_topic(&name).await,
            None => shared
                .registry
                .delete(&name)
                .await
                .map_err(ClusterError::from),
        };
        let error = match result {
            Ok(()) => ErrorCode::None,
            Err(e) => {
                tracing::info!(topic = %name, error = %e, "delete topic refused");
                cluster_error_code(&e)
            }
        };
        count_error(API, error);
        results.push(DeletableTopicResult { name, error });
    }
    DeleteTopicsResponse { results }
}
