//! InitProducerId: a new producer id at epoch 0, or the next epoch of an id
//! the producer holds (KIP-360).
//!
//! A bump needs no state here: the partitions hold each id's epoch (in
//! their producer state), and the first batch of the new epoch that reaches
//! a partition fences the older epoch there. The broker refuses only what
//! cannot be right: an id it never handed out, or a negative epoch with an
//! id. At [`PRODUCER_EPOCH_MAX`] the bump hands out a fresh id instead, as
//! Kafka does.

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
            if id >= ids.issued_below().await {
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
