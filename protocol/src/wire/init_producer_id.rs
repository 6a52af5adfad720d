//! InitProducerId (key 18): an idempotent producer's identity.
//!
//! A producer without an id asks with `producer_id = -1, producer_epoch =
//! -1` and gets a fresh id at epoch 0; ids never repeat, across broker
//! restarts too. A producer that holds `(id, epoch)` and must start its
//! sequences afresh (after `UnknownProducerId`, or a gap it cannot close)
//! sends them and gets `(id, epoch + 1)` (Kafka's KIP-360): every
//! partition that sees the new epoch refuses the old one from then on, so
//! an older session of the same id is fenced. When the epoch would pass
//! [`PRODUCER_EPOCH_MAX`] the broker hands out a new id at epoch 0 instead.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_error_code, get_i16, get_i64, Decode, Encode, Encoder, Sink, U16_LEN, U64_LEN,
};
use super::{ErrorCode, WireError};

/// `producer_id` of a request for a new id, and of an error response.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producer_epoch` of a request for a new id, and of an error response.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Highest epoch handed out; the next bump gets a new producer id (as
/// Kafka, which keeps `i16::MAX` unused).
pub const PRODUCER_EPOCH_MAX: i16 = i16::MAX - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// [`NO_PRODUCER_ID`] for a new id, else the id whose epoch to bump.
    pub producer_id: i64,
    /// [`NO_PRODUCER_EPOCH`] with a new id, else the epoch the producer holds.
    pub producer_epoch: i16,
}

impl Default for InitProducerIdRequest {
    fn default() -> Self {
        InitProducerIdRequest {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    pub error: ErrorCode,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl Encode for InitProducerIdRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.i64(self.producer_id);
        e.i16(self.producer_epoch);
    }
}

impl<B: Buf> Decode<B> for InitProducerIdRequest {
    const MIN_LEN: usize = U64_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(InitProducerIdRequest {
            producer_id: get_i64(buf)?,
            producer_epoch: get_i16(buf)?,
        })
    }
}

impl Encode for InitProducerIdResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.i64(self.producer_id);
        e.i16(self.producer_epoch);
    }
}

impl<B: Buf> Decode<B> for InitProducerIdResponse {
    const MIN_LEN: usize = U16_LEN + U64_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(InitProducerIdResponse {
            error: get_error_code(buf)?,
            producer_id: get_i64(buf)?,
            producer_epoch: get_i16(buf)?,
        })
    }
}

body_methods!(InitProducerIdRequest, BytesMut);
body_methods!(InitProducerIdResponse, Bytes);
