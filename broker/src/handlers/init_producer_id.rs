//! InitProducerId: a new producer id at epoch 0, or the next epoch of an id
//! the producer holds (KIP-360).
//!
//! A bump needs no state here: the partitions hold each id's epoch (in
//! their producer state), and the first batch of the new epoch that reaches
//! a partition fences the older epoch there. The broker refuses only what
//! cannot be right: an id it never handed out, or a negative epoch with an
//! id. At [`PRODUCER_EPOCH_MAX`] the bump hands out a fresh id instead, as
//! Kafka does. In cluster mode ids come in blocks from the controller, so
//! no two brokers hand out the same id.

use rill_protocol::wire::{
    ErrorCode, InitProducerIdRequest, InitProducerIdResponse, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    PRODUCER_EPOCH_MAX,
};

use super::count_error;
use crate::producer_ids::ProducerIdError;
use crate::shared::Shared;

const API: &str = "init_producer_id";

pub(crate) async fn handle(
    shared: &Shared,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = answer(shared, request).await;
    count_error(API, response.error);
    response
}

async fn answer(shared: &Shared, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let refuse = |error| InitProducerIdResponse {
        error,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
    };
    let ids = &shared.producer_ids;
    let InitProducerIdRequest {
        producer_id,
        producer_epoch,
    } = request;
    let bump = match (producer_id, producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
        (id, epoch) if id >= 0 && epoch >= 0 => {
            let issued_below = match &shared.cluster {
                Some(cluster) => cluster.metadata().next_producer_id,
                None => ids.issued_below().await,
            };
            if id >= issued_below {
                tracing::debug!(id, "InitProducerId for an id never handed out");
                return refuse(ErrorCode::InvalidRequest);
            }
            Some((id, epoch))
        }
        _ => return refuse(ErrorCode::InvalidRequest),
    };
    if let Some((id, epoch)) = bump.filter(|&(_, epoch)| epoch < PRODUCER_EPOCH_MAX) {
        tracing::debug!(id, epoch = epoch + 1, "producer epoch bumped");
        return InitProducerIdResponse {
            error: ErrorCode::None,
            producer_id: id,
            producer_epoch: epoch + 1,
        };
    }
    if let Some(cluster) = &shared.cluster {
        // Blocks come from the controller, so no two brokers hand out one
        // id; ids the local file handed out (a lone broker's, before its
        // directory joined the cluster) stay below every block.
        let min_start = ids.issued_below().await;
        return match cluster.next_producer_id(min_start).await {
            Ok(id) => InitProducerIdResponse {
                error: ErrorCode::None,
                producer_id: id,
                producer_epoch: 0,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot get a producer id block from the controller");
                refuse(ErrorCode::CoordinatorNotAvailable)
            }
        };
    }
    match ids.next_id().await {
        Ok(id) => {
            tracing::debug!(id, "producer id handed out");
            InitProducerIdResponse {
                error: ErrorCode::None,
                producer_id: id,
                producer_epoch: 0,
            }
        }
        Err(e) => {
            let code = match e {
                ProducerIdError::ReadOnly | ProducerIdError::Io { .. } => ErrorCode::StorageError,
                _ => ErrorCode::UnknownServerError,
            };
            tracing::warn!(error = %e, "cannot hand out a producer id");
            refuse(code)
        }
    }
}
