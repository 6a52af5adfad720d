//! DescribeGroups (key 15): state, members, assignments, committed
//! offsets and lag of consumer groups.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i32, get_i64, get_string, get_u32, get_u64,
    Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN, U64_LEN,
};
use super::{ErrorCode, TopicPartitions, WireError};

/// `committed` and `lag` of a partition with no committed offset.
pub const NO_OFFSET: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsRequest {
    pub group_ids: Vec<String>,
}

/// One entry per requested group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsResponse {
    pub groups: Vec<DescribedGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorCode,
    /// "Empty", "Reconciling" or "Stable".
    pub state: String,
    pub assignor: String,
    pub group_epoch: i32,
    pub members: Vec<DescribedGroupMember>,
    pub offsets: Vec<DescribedGroupOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedGroupMember {
    pub member_id: String,
    pub client_id: String,
    pub member_epoch: i32,
    /// Partitions the member consumes.
    pub assignment: Vec<TopicPartitions>,
    /// Partitions it was told to release and has not released yet.
    pub pending_revocation: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedGroupOffset {
    pub topic: String,
    pub partition: u32,
    /// The committed offset, or [`NO_OFFSET`].
    pub committed: i64,
    pub log_end: u64,
    /// `log_end - committed`, or [`NO_OFFSET`] without a commit.
    pub lag: i64,
}

impl Encode for DescribeGroupsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("group ids", &self.group_ids);
    }
}

impl<B: Buf> Decode<B> for DescribeGroupsRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DescribeGroupsRequest {
            group_ids: get_array(buf)?,
        })
    }
}

impl Encode for DescribedGroupMember {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("member id", &self.member_id);
        e.string("client id", &self.client_id);
        e.i32(self.member_epoch);
        e.array("assignment", &self.assignment);
        e.array("pending revocation", &self.pending_revocation);
    }
}

impl<B: Buf> Decode<B> for DescribedGroupMember {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN + U32_LEN + 2 * ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DescribedGroupMember {
            member_id: get_string(buf)?,
            client_id: get_string(buf)?,
            member_epoch: get_i32(buf)?,
            assignment: get_array(buf)?,
            pending_revocation: get_array(buf)?,
        })
    }
}

impl Encode for DescribedGroupOffset {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.topic);
        e.u32(self.partition);
        e.i64(self.committed);
        e.u64(self.log_end);
        e.i64(self.lag);
    }
}

impl<B: Buf> Decode<B> for DescribedGroupOffset {
    const MIN_LEN: usize = STRING_MIN_LEN + U32_LEN + 3 * U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DescribedGroupOffset {
            topic: get_string(buf)?,
            partition: get_u32(buf)?,
            committed: get_i64(buf)?,
            log_end: get_u64(buf)?,
            lag: get_i64(buf)?,
        })
    }
}

impl Encode for DescribedGroup {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.error_code(self.error);
        e.string("group state", &self.state);
        e.string("assignor", &self.assignor);
        e.i32(self.group_epoch);
        e.array("members", &self.members);
        e.array("offsets", &self.offsets);
    }
}

impl<B: Buf> Decode<B> for DescribedGroup {
    const MIN_LEN: usize =
        STRING_MIN_LEN + U16_LEN + 2 * STRING_MIN_LEN + U32_LEN + 2 * ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DescribedGroup {
            group_id: get_string(buf)?,
            error: get_error_code(buf)?,
            state: get_string(buf)?,
            assignor: get_string(buf)?,
            group_epoch: get_i32(buf)?,
            members: get_array(buf)?,
            offsets: get_array(buf)?,
        })
    }
}

impl Encode for DescribeGroupsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("groups", &self.groups);
    }
}

impl<B: Buf> Decode<B> for DescribeGroupsResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DescribeGroupsResponse {
            groups: get_array(buf)?,
        })
    }
}

body_methods!(DescribeGroupsRequest, BytesMut);
body_methods!(DescribeGroupsResponse, Bytes);
