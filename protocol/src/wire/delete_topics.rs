//! DeleteTopics (key 3): delete topics by name.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_string, Decode, Encode, Encoder, Sink,
    ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN,
};
use super::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsRequest {
    pub names: Vec<String>,
}

/// One result per requested name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsResponse {
    pub results: Vec<DeletableTopicResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableTopicResult {
    pub name: String,
    pub error: ErrorCode,
}

impl Encode for DeleteTopicsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("names", &self.names);
    }
}

impl<B: Buf> Decode<B> for DeleteTopicsRequest {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeleteTopicsRequest {
            names: get_array(buf)?,
        })
    }
}

impl Encode for DeletableTopicResult {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.error_code(self.error);
    }
}

impl<B: Buf> Decode<B> for DeletableTopicResult {
    const MIN_LEN: usize = STRING_MIN_LEN + U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeletableTopicResult {
            name: get_string(buf)?,
            error: get_error_code(buf)?,
        })
    }
}

impl Encode for DeleteTopicsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("results", &self.results);
    }
}

impl<B: Buf> Decode<B> for DeleteTopicsResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(DeleteTopicsResponse {
            results: get_array(buf)?,
        })
    }
}

body_methods!(DeleteTopicsRequest, BytesMut);
body_methods!(DeleteTopicsResponse, Bytes);
