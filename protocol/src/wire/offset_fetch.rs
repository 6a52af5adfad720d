//! OffsetFetch (key 13): a group's committed offsets.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i64, get_nullable_array, get_nullable_string,
    get_string, get_u32, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN,
    U32_LEN, U64_LEN,
};
use super::{ErrorCode, TopicPartitions, WireError};

/// `offset` of a partition with no committed offset; the consumer applies
/// its reset policy (earliest, latest or none).
pub const NO_COMMITTED_OFFSET: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// `None` = every partition the group has committed.
    pub topics: Option<Vec<TopicPartitions>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchResponse {
    pub error: ErrorCode,
    pub topics: Vec<OffsetFetchTopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetFetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchPartitionResponse {
    pub partition: u32,
    /// The committed offset, or [`NO_COMMITTED_OFFSET`].
    pub offset: i64,
    pub metadata: Option<String>,
    pub error: ErrorCode,
}

impl Encode for OffsetFetchRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.nullable_array("topics", self.topics.as_deref());
    }
}

impl<B: Buf> Decode<B> for OffsetFetchRequest {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetFetchRequest {
            group_id: get_string(buf)?,
            topics: get_nullable_array(buf)?,
        })
    }
}

impl Encode for OffsetFetchPartitionResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.i64(self.offset);
        e.nullable_string("metadata", self.metadata.as_deref());
        e.error_code(self.error);
    }
}

impl<B: Buf> Decode<B> for OffsetFetchPartitionResponse {
    const MIN_LEN: usize = U32_LEN + U64_LEN + U16_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetFetchPartitionResponse {
            partition: get_u32(buf)?,
            offset: get_i64(buf)?,
            metadata: get_nullable_string(buf, "metadata")?,
            error: get_error_code(buf)?,
        })
    }
}

impl Encode for OffsetFetchTopicResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for OffsetFetchTopicResponse {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetFetchTopicResponse {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for OffsetFetchResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for OffsetFetchResponse {
    const MIN_LEN: usize = U16_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetFetchResponse {
            error: get_error_code(buf)?,
            topics: get_array(buf)?,
        })
    }
}

body_methods!(OffsetFetchRequest, BytesMut);
body_methods!(OffsetFetchResponse, Bytes);
