//! Metadata (key 1): brokers, and topics with their partitions and offsets.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i32, get_nullable_array, get_string, get_u16,
    get_u32, get_u64, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN,
    U32_LEN, U64_LEN,
};
use super::{ErrorCode, WireError};

/// Asks for metadata of the named topics, or of all topics when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataRequest {
    pub topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataResponse {
    pub brokers: Vec<MetadataBroker>,
    pub topics: Vec<MetadataTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBroker {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataTopic {
    pub error: ErrorCode,
    pub name: String,
    pub partitions: Vec<MetadataPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataPartition {
    pub error: ErrorCode,
    pub partition: u32,
    /// Node id of the partition's leader; -1 when there is none.
    pub leader: i32,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
}

impl Encode for MetadataRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.nullable_array("topics", self.topics.as_deref());
    }
}

impl<B: Buf> Decode<B> for MetadataRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataRequest {
            topics: get_nullable_array(buf)?,
        })
    }
}

impl Encode for MetadataBroker {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.i32(self.node_id);
        e.string("broker host", &self.host);
        e.u16(self.port);
    }
}

impl<B: Buf> Decode<B> for MetadataBroker {
    const MIN_LEN: usize = U32_LEN + STRING_MIN_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataBroker {
            node_id: get_i32(buf)?,
            host: get_string(buf)?,
            port: get_u16(buf)?,
        })
    }
}

impl Encode for MetadataTopic {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for MetadataTopic {
    const MIN_LEN: usize = U16_LEN + STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataTopic {
            error: get_error_code(buf)?,
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for MetadataPartition {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.u32(self.partition);
        e.i32(self.leader);
        e.u64(self.log_start_offset);
        e.u64(self.log_end_offset);
    }
}

impl<B: Buf> Decode<B> for MetadataPartition {
    const MIN_LEN: usize = U16_LEN + 2 * U32_LEN + 2 * U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataPartition {
            error: get_error_code(buf)?,
            partition: get_u32(buf)?,
            leader: get_i32(buf)?,
            log_start_offset: get_u64(buf)?,
            log_end_offset: get_u64(buf)?,
        })
    }
}

impl Encode for MetadataResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("brokers", &self.brokers);
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for MetadataResponse {
    const MIN_LEN: usize = 2 * ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataResponse {
            brokers: get_array(buf)?,
            topics: get_array(buf)?,
        })
    }
}

body_methods!(MetadataRequest, BytesMut);
body_methods!(MetadataResponse, Bytes);
