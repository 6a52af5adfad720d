//! CreateTopics (key 2): create topics with a partition count and configs.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_bool, get_error_code, get_nullable_string, get_string, get_u16,
    get_u32, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN,
    U8_LEN,
};
use super::{ErrorCode, WireError};

/// Topic config keys the broker interprets (Kafka's names). The wire
/// carries any string; unknown keys are the broker's
/// [`ErrorCode::InvalidConfig`].
pub mod topic_config {
    pub const RETENTION_MS: &str = "retention.ms";
    pub const RETENTION_BYTES: &str = "retention.bytes";
    pub const SEGMENT_BYTES: &str = "segment.bytes";
    pub const SEGMENT_MS: &str = "segment.ms";
    pub const FLUSH_POLICY: &str = "flush.policy";
    pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreatableTopic>,
    /// Check the request as if creating, but create nothing.
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopic {
    pub name: String,
    pub partitions: u32,
    /// Copies of each partition, on as many brokers; 0 asks for the
    /// broker's default (`min(3, brokers)`, Kafka's `-1`).
    pub replication_factor: u16,
    /// `(key, value)` pairs, keys from [`topic_config`].
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsResponse {
    pub topics: Vec<CreatableTopicResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatableTopicResult {
    pub name: String,
    pub error: ErrorCode,
    pub error_message: Option<String>,
}

impl Encode for (String, String) {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("config key", &self.0);
        e.string("config value", &self.1);
    }
}

impl<B: Buf> Decode<B> for (String, String) {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok((get_string(buf)?, get_string(buf)?))
    }
}

impl Encode for CreatableTopic {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.u32(self.partitions);
        e.u16(self.replication_factor);
        e.array("configs", &self.configs);
    }
}

impl<B: Buf> Decode<B> for CreatableTopic {
    const MIN_LEN: usize = STRING_MIN_LEN + U32_LEN + U16_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(CreatableTopic {
            name: get_string(buf)?,
            partitions: get_u32(buf)?,
            replication_factor: get_u16(buf)?,
            configs: get_array(buf)?,
        })
    }
}

impl Encode for CreateTopicsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
        e.bool(self.validate_only);
    }
}

impl<B: Buf> Decode<B> for CreateTopicsRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN + U8_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(CreateTopicsRequest {
            topics: get_array(buf)?,
            validate_only: get_bool(buf, "validate_only")?,
        })
    }
}

impl Encode for CreatableTopicResult {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.error_code(self.error);
        e.nullable_string("error message", self.error_message.as_deref());
    }
}

impl<B: Buf> Decode<B> for CreatableTopicResult {
    const MIN_LEN: usize = STRING_MIN_LEN + U16_LEN + STRING_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(CreatableTopicResult {
            name: get_string(buf)?,
            error: get_error_code(buf)?,
            error_message: get_nullable_string(buf, "error message length")?,
        })
    }
}

impl Encode for CreateTopicsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for CreateTopicsResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(CreateTopicsResponse {
            topics: get_array(buf)?,
        })
    }
}

body_methods!(CreateTopicsRequest, BytesMut);
body_methods!(CreateTopicsResponse, Bytes);
