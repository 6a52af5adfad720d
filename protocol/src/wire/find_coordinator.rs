//! FindCoordinator (key 19): which broker coordinates a consumer group.
//!
//! A client sends it to any broker, then sends the group's APIs
//! (ConsumerGroupHeartbeat, OffsetCommit, ...) to the broker named in the
//! answer. Any other broker answers those with
//! [`ErrorCode::NotCoordinator`]; the client then asks again. A broker that
//! cannot name a coordinator yet answers
//! [`ErrorCode::CoordinatorNotAvailable`], with `node_id` [`NO_NODE_ID`],
//! an empty `host` and `port` 0.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_error_code, get_i32, get_string, get_u16, get_u8, Decode, Encode, Encoder,
    Sink, STRING_MIN_LEN, U16_LEN, U32_LEN, U8_LEN,
};
use super::{ErrorCode, WireError};

/// `key_type` of a consumer group id, the only kind of key there is; any
/// other is answered [`ErrorCode::InvalidRequest`].
pub const COORDINATOR_KEY_GROUP: u8 = 0;
/// `node_id` of an error response.
pub const NO_NODE_ID: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindCoordinatorRequest {
    /// The group id.
    pub key: String,
    /// [`COORDINATOR_KEY_GROUP`].
    pub key_type: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindCoordinatorResponse {
    pub error: ErrorCode,
    /// The coordinator's node id; [`NO_NODE_ID`] with an error.
    pub node_id: i32,
    /// The coordinator's advertised host, as in Metadata's brokers.
    pub host: String,
    pub port: u16,
}

impl Encode for FindCoordinatorRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("coordinator key", &self.key);
        e.u8(self.key_type);
    }
}

impl<B: Buf> Decode<B> for FindCoordinatorRequest {
    const MIN_LEN: usize = STRING_MIN_LEN + U8_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(FindCoordinatorRequest {
            key: get_string(buf)?,
            key_type: get_u8(buf)?,
        })
    }
}

impl Encode for FindCoordinatorResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.i32(self.node_id);
        e.string("coordinator host", &self.host);
        e.u16(self.port);
    }
}

impl<B: Buf> Decode<B> for FindCoordinatorResponse {
    const MIN_LEN: usize = U16_LEN + U32_LEN + STRING_MIN_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(FindCoordinatorResponse {
            error: get_error_code(buf)?,
            node_id: get_i32(buf)?,
            host: get_string(buf)?,
            port: get_u16(buf)?,
        })
    }
}

body_methods!(FindCoordinatorRequest, BytesMut);
body_methods!(FindCoordinatorResponse, Bytes);
