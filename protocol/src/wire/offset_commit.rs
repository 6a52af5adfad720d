//! OffsetCommit (key 12): a group member (or an admin, outside membership,
//! while the group is empty) records the next offsets to consume.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i32, get_nullable_string, get_string, get_u32,
    get_u64, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN,
    U64_LEN,
};
use super::{ErrorCode, WireError};

/// `member_epoch` of a commit made outside group membership (accepted only
/// while the group has no members).
pub const MEMBER_EPOCH_ADMIN_COMMIT: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub topics: Vec<OffsetCommitTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitPartition {
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: Option<String>,
}

/// One result per committed partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitResponse {
    pub topics: Vec<OffsetCommitTopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitTopicResponse {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartitionResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffsetCommitPartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
}

impl OffsetCommitResponse {
    /// The answer to `request`: one entry per partition it named, in its
    /// order, with the code `code(topic, partition)` gives.
    pub fn answering(
        request: &OffsetCommitRequest,
        mut code: impl FnMut(&str, u32) -> ErrorCode,
    ) -> Self {
        OffsetCommitResponse {
            topics: request
                .topics
                .iter()
                .map(|t| OffsetCommitTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| OffsetCommitPartitionResponse {
                            partition: p.partition,
                            error: code(&t.name, p.partition),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl Encode for OffsetCommitPartition {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.u64(self.offset);
        e.nullable_string("metadata", self.metadata.as_deref());
    }
}

impl<B: Buf> Decode<B> for OffsetCommitPartition {
    const MIN_LEN: usize = U32_LEN + U64_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitPartition {
            partition: get_u32(buf)?,
            offset: get_u64(buf)?,
            metadata: get_nullable_string(buf, "metadata")?,
        })
    }
}

impl Encode for OffsetCommitTopic {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for OffsetCommitTopic {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitTopic {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for OffsetCommitRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.string("member id", &self.member_id);
        e.i32(self.member_epoch);
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for OffsetCommitRequest {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN + U32_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitRequest {
            group_id: get_string(buf)?,
            member_id: get_string(buf)?,
            member_epoch: get_i32(buf)?,
            topics: get_array(buf)?,
        })
    }
}

impl Encode for OffsetCommitPartitionResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.error_code(self.error);
    }
}

impl<B: Buf> Decode<B> for OffsetCommitPartitionResponse {
    const MIN_LEN: usize = U32_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitPartitionResponse {
            partition: get_u32(buf)?,
            error: get_error_code(buf)?,
        })
    }
}

impl Encode for OffsetCommitTopicResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for OffsetCommitTopicResponse {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitTopicResponse {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for OffsetCommitResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for OffsetCommitResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(OffsetCommitResponse {
            topics: get_array(buf)?,
        })
    }
}

body_methods!(OffsetCommitRequest, BytesMut);
body_methods!(OffsetCommitResponse, Bytes);
