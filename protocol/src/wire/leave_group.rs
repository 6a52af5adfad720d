//! LeaveGroup (key 11): a member leaves its group cleanly; its partitions
//! are reassigned at once instead of after its session times out.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_error_code, get_string, Decode, Encode, Encoder, Sink, STRING_MIN_LEN,
    U16_LEN,
};
use super::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub member_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaveGroupResponse {
    pub error: ErrorCode,
}

impl Encode for LeaveGroupRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.string("member id", &self.member_id);
    }
}

impl<B: Buf> Decode<B> for LeaveGroupRequest {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(LeaveGroupRequest {
            group_id: get_string(buf)?,
            member_id: get_string(buf)?,
        })
    }
}

impl Encode for LeaveGroupResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
    }
}

impl<B: Buf> Decode<B> for LeaveGroupResponse {
    const MIN_LEN: usize = U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(LeaveGroupResponse {
            error: get_error_code(buf)?,
        })
    }
}

body_methods!(LeaveGroupRequest, BytesMut);
body_methods!(LeaveGroupResponse, Bytes);
