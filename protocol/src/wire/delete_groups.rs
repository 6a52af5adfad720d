//! DeleteGroups (key 16): forget empty groups and their committed offsets.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_string, Decode, Encode, Encoder, Sink,
    ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN,
};
use super::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsRequest {
    pub group_ids: Vec<String>,
}

/// One result per requested group: [`ErrorCode::NonEmptyGroup`] while it
/// has members, [`ErrorCode::GroupIdNotFound`] if it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsResponse {
    pub results: Vec<DeletableGroupResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeletableGroupResult {
    pub group_id: String,
    pub error: ErrorCode,
}

impl Encode for DeleteGroupsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("group ids", &self.group_ids);
    }
}

impl<B: Buf> Decode<B> for DeleteGroupsRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeleteGroupsRequest {
            group_ids: get_array(buf)?,
        })
    }
}

impl Encode for DeletableGroupResult {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.error_code(self.error);
    }
}

impl<B: Buf> Decode<B> for DeletableGroupResult {
    const MIN_LEN: usize = STRING_MIN_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeletableGroupResult {
            group_id: get_string(buf)?,
            error: get_error_code(buf)?,
        })
    }
}

impl Encode for DeleteGroupsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("results", &self.results);
    }
}

impl<B: Buf> Decode<B> for DeleteGroupsResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeleteGroupsResponse {
            results: get_array(buf)?,
        })
    }
}

body_methods!(DeleteGroupsRequest, BytesMut);
body_methods!(DeleteGroupsResponse, Bytes);
