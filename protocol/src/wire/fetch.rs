//! Fetch (key 6): read record batches from partitions.
//!
//! Records are opaque blobs both ways: the broker sends them without
//! copying them into the response buffer ([`FetchResponse::encode_vectored`]),
//! and the client decodes them as `Bytes` slices of the received frame.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, encoded_len, get_array, get_blob_len, get_error_code, get_string, get_u32,
    get_u64, Chunks, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, BLOB_MIN_LEN, STRING_MIN_LEN,
    U16_LEN, U32_LEN, U64_LEN,
};
use super::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequest {
    /// Longest the broker may hold the request waiting for `min_bytes`.
    pub max_wait_ms: u32,
    /// Answer as soon as this many record bytes are available.
    pub min_bytes: u32,
    /// Upper bound on record bytes in the whole response.
    pub max_bytes: u32,
    pub topics: Vec<FetchTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: u32,
    pub fetch_offset: u64,
    /// Upper bound on record bytes for this partition.
    pub partition_max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// An error for the whole request; per-partition errors are below.
    pub error: ErrorCode,
    pub topics: Vec<FetchTopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    pub name: String,
    pub partitions: Vec<FetchPartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// The log end offset: one past the last offset a consumer may read.
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// Whole record batches back to back, opaque to the wire layer.
    pub records: Bytes,
}

impl Encode for FetchPartition {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.u64(self.fetch_offset);
        e.u32(self.partition_max_bytes);
    }
}

impl<B: Buf> Decode<B> for FetchPartition {
    const MIN_LEN: usize = 2 * U32_LEN + U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(FetchPartition {
            partition: get_u32(buf)?,
            fetch_offset: get_u64(buf)?,
            partition_max_bytes: get_u32(buf)?,
        })
    }
}

impl Encode for FetchTopic {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for FetchTopic {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(FetchTopic {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for FetchRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.max_wait_ms);
        e.u32(self.min_bytes);
        e.u32(self.max_bytes);
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for FetchRequest {
    const MIN_LEN: usize = 3 * U32_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(FetchRequest {
            max_wait_ms: get_u32(buf)?,
            min_bytes: get_u32(buf)?,
            max_bytes: get_u32(buf)?,
            topics: get_array(buf)?,
        })
    }
}

impl Encode for FetchPartitionResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.error_code(self.error);
        e.u64(self.high_watermark);
        e.u64(self.log_start_offset);
        e.shared_blob("records", &self.records);
    }
}

impl Decode<Bytes> for FetchPartitionResponse {
    const MIN_LEN: usize = U32_LEN + U16_LEN + 2 * U64_LEN + BLOB_MIN_LEN;
    fn decode_from(buf: &mut Bytes) -> Result<Self, WireError> {
        let partition = get_u32(buf)?;
        let error = get_error_code(buf)?;
        let high_watermark = get_u64(buf)?;
        let log_start_offset = get_u64(buf)?;
        let len = get_blob_len(buf)?;
        Ok(FetchPartitionResponse {
            partition,
            error,
            high_watermark,
            log_start_offset,
            records: buf.split_to(len),
        })
    }
}

impl Encode for FetchTopicResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl Decode<Bytes> for FetchTopicResponse {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut Bytes) -> Result<Self, WireError> {
        Ok(FetchTopicResponse {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for FetchResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.array("topics", &self.topics);
    }
}

impl Decode<Bytes> for FetchResponse {
    const MIN_LEN: usize = U16_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut Bytes) -> Result<Self, WireError> {
        Ok(FetchResponse {
            error: get_error_code(buf)?,
            topics: get_array(buf)?,
        })
    }
}

impl FetchResponse {
    /// The body as chunks for a vectored write: small fields coalesced,
    /// each non-empty records blob its own chunk sharing the caller's
    /// buffer (no copy). The chunks concatenated equal [`Self::encode`]'s
    /// output. See [`super::encode_response_frame_vectored`] for a whole
    /// frame.
    pub fn encode_vectored(&self) -> Result<Vec<Bytes>, WireError> {
        // The size pass also catches values too long for the wire before
        // any chunk is built.
        encoded_len(self)?;
        let mut chunks = Chunks::default();
        let mut e = Encoder::new(&mut chunks);
        self.encode_to(&mut e);
        e.finish()?;
        Ok(chunks.finish())
    }
}

body_methods!(FetchRequest, BytesMut);
body_methods!(FetchResponse, Bytes);
