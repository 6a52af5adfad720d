//! ListGroups (key 14): every consumer group this broker coordinates.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_string, get_u32, Decode, Encode, Encoder, Sink,
    ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN,
};
use super::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsResponse {
    pub error: ErrorCode,
    pub groups: Vec<ListedGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedGroup {
    pub group_id: String,
    /// "Empty", "Reconciling" or "Stable".
    pub state: String,
    pub members: u32,
}

impl Encode for ListGroupsRequest {
    fn encode_to<S: Sink>(&self, _e: &mut Encoder<'_, S>) {}
}

impl<B: Buf> Decode<B> for ListGroupsRequest {
    const MIN_LEN: usize = 0;
    fn decode_from(_buf: &mut B) -> Result<Self, WireError> {
        Ok(ListGroupsRequest {})
    }
}

impl Encode for ListedGroup {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.string("group state", &self.state);
        e.u32(self.members);
    }
}

impl<B: Buf> Decode<B> for ListedGroup {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN + U32_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListedGroup {
            group_id: get_string(buf)?,
            state: get_string(buf)?,
            members: get_u32(buf)?,
        })
    }
}

impl Encode for ListGroupsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.array("groups", &self.groups);
    }
}

impl<B: Buf> Decode<B> for ListGroupsResponse {
    const MIN_LEN: usize = U16_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListGroupsResponse {
            error: get_error_code(buf)?,
            groups: get_array(buf)?,
        })
    }
}

body_methods!(ListGroupsRequest, BytesMut);
body_methods!(ListGroupsResponse, Bytes);
