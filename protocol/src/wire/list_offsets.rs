//! ListOffsets (key 4): the offset of a partition at a timestamp, or its
//! earliest / latest offset.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i64, get_string, get_u32, get_u64, Decode, Encode,
    Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN, U64_LEN,
};
use super::{ErrorCode, WireError};

/// Request timestamp asking for the log start offset (as Kafka).
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Request timestamp asking for the log end offset (as Kafka).
pub const LATEST_TIMESTAMP: i64 = -1;
/// Response timestamp when the answer is not tied to a record's time.
pub const NO_TIMESTAMP: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsRequest {
    pub topics: Vec<ListOffsetsTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    /// Milliseconds since the Unix epoch, or [`EARLIEST_TIMESTAMP`] /
    /// [`LATEST_TIMESTAMP`].
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsResponse {
    pub topics: Vec<ListOffsetsTopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResponse {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// Timestamp of the record found, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
    pub offset: u64,
}

impl Encode for ListOffsetsPartition {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.i64(self.timestamp);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsPartition {
    const MIN_LEN: usize = U32_LEN + U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsPartition {
            partition: get_u32(buf)?,
            timestamp: get_i64(buf)?,
        })
    }
}

impl Encode for ListOffsetsTopic {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsTopic {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsTopic {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for ListOffsetsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsRequest {
            topics: get_array(buf)?,
        })
    }
}

impl Encode for ListOffsetsPartitionResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.error_code(self.error);
        e.i64(self.timestamp);
        e.u64(self.offset);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsPartitionResponse {
    const MIN_LEN: usize = U32_LEN + U16_LEN + 2 * U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsPartitionResponse {
            partition: get_u32(buf)?,
            error: get_error_code(buf)?,
            timestamp: get_i64(buf)?,
            offset: get_u64(buf)?,
        })
    }
}

impl Encode for ListOffsetsTopicResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsTopicResponse {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsTopicResponse {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for ListOffsetsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for ListOffsetsResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ListOffsetsResponse {
            topics: get_array(buf)?,
        })
    }
}

body_methods!(ListOffsetsRequest, BytesMut);
body_methods!(ListOffsetsResponse, Bytes);
