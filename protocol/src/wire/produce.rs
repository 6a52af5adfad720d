//! Produce (key 5): append record batches to partitions.
//!
//! Each partition's records decode as their own `BytesMut`, split off the
//! request frame without a copy, so the broker can stamp base offsets into
//! the batch headers in place and hand the same bytes to storage.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_blob_len, get_error_code, get_i16, get_i64, get_nullable_string,
    get_string, get_u32, get_u64, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, BLOB_MIN_LEN,
    STRING_MIN_LEN, U16_LEN, U32_LEN, U64_LEN,
};
use super::{ErrorCode, WireError};

/// Response `log_append_time` when the broker keeps producer timestamps.
pub const NO_LOG_APPEND_TIME: i64 = -1;

/// How much the producer waits for (`i16` on the wire, Kafka's numbers).
///
/// As in Kafka, the broker sends no response to a produce with
/// [`Acks::None`]: the producer learns of nothing, not even errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i16)]
pub enum Acks {
    /// Fire and forget: no response.
    None = 0,
    /// Answered once the leader has appended the records to its log.
    Leader = 1,
    /// Answered once the records are durable on every replica; with one
    /// replica, once the leader has synced them to disk.
    #[default]
    All = -1,
}

impl Acks {
    pub const fn code(self) -> i16 {
        self as i16
    }

    pub const fn from_i16(code: i16) -> Result<Self, WireError> {
        match code {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            -1 => Ok(Acks::All),
            // i64::from is not const; an i16 always widens losslessly.
            other => Err(WireError::InvalidValue {
                field: "acks",
                value: other as i64,
            }),
        }
    }
}

/// A Produce request. `R` holds each partition's batches: `BytesMut` as
/// the broker decodes them (split off the frame, stamped in place), or
/// `Bytes` a producer keeps for retries and sends without copying as its
/// own chunks of a vectored frame ([`SharedProduceRequest`],
/// [`super::encode_produce_frame_vectored`]). Both are the same bytes on
/// the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceRequest<R = BytesMut> {
    pub acks: Acks,
    /// How long the broker may wait for `acks` before answering
    /// [`ErrorCode::RequestTimedOut`].
    pub timeout_ms: u32,
    pub topics: Vec<ProduceTopic<R>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic<R = BytesMut> {
    pub name: String,
    pub partitions: Vec<ProducePartition<R>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition<R = BytesMut> {
    pub partition: u32,
    /// Whole record batches back to back, opaque to the wire layer.
    pub records: R,
}

/// A Produce request over batches the sender keeps as [`Bytes`].
pub type SharedProduceRequest = ProduceRequest<Bytes>;
pub type SharedProduceTopic = ProduceTopic<Bytes>;
pub type SharedProducePartition = ProducePartition<Bytes>;

/// How a partition's batches go into a frame: copied (`BytesMut`), or kept
/// by reference by a vectored sink (`Bytes`).
pub(crate) trait RecordsBlob {
    fn encode_records<S: Sink>(&self, e: &mut Encoder<'_, S>);
}

impl RecordsBlob for BytesMut {
    fn encode_records<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.blob("records", self);
    }
}

impl RecordsBlob for Bytes {
    fn encode_records<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.shared_blob("records", self);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResponse {
    pub name: String,
    pub partitions: Vec<ProducePartitionResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    /// Offset given to the first record of the partition's records.
    pub base_offset: u64,
    /// [`NO_LOG_APPEND_TIME`] unless the topic uses log-append time.
    pub log_append_time: i64,
    pub log_start_offset: u64,
    pub error_message: Option<String>,
    /// Idempotent batches of this partition that were already in the log
    /// (a producer's retry of a batch whose answer it lost): not written
    /// again, and answered with their original offsets.
    pub duplicate_batches: u32,
}

impl<R: RecordsBlob> Encode for ProducePartition<R> {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        self.records.encode_records(e);
    }
}

impl Decode<BytesMut> for ProducePartition {
    const MIN_LEN: usize = U32_LEN + BLOB_MIN_LEN;
    fn decode_from(buf: &mut BytesMut) -> Result<Self, WireError> {
        let partition = get_u32(buf)?;
        let len = get_blob_len(buf)?;
        Ok(ProducePartition {
            partition,
            records: buf.split_to(len),
        })
    }
}

impl<R: RecordsBlob> Encode for ProduceTopic<R> {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl Decode<BytesMut> for ProduceTopic {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut BytesMut) -> Result<Self, WireError> {
        Ok(ProduceTopic {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl<R: RecordsBlob> Encode for ProduceRequest<R> {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.i16(self.acks.code());
        e.u32(self.timeout_ms);
        e.array("topics", &self.topics);
    }
}

impl Decode<BytesMut> for ProduceRequest {
    const MIN_LEN: usize = U16_LEN + U32_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut BytesMut) -> Result<Self, WireError> {
        Ok(ProduceRequest {
            acks: Acks::from_i16(get_i16(buf)?)?,
            timeout_ms: get_u32(buf)?,
            topics: get_array(buf)?,
        })
    }
}

impl Encode for ProducePartitionResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.error_code(self.error);
        e.u64(self.base_offset);
        e.i64(self.log_append_time);
        e.u64(self.log_start_offset);
        e.nullable_string("error message", self.error_message.as_deref());
        e.u32(self.duplicate_batches);
    }
}

impl<B: Buf> Decode<B> for ProducePartitionResponse {
    const MIN_LEN: usize = U32_LEN + U16_LEN + 3 * U64_LEN + STRING_MIN_LEN + U32_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ProducePartitionResponse {
            partition: get_u32(buf)?,
            error: get_error_code(buf)?,
            base_offset: get_u64(buf)?,
            log_append_time: get_i64(buf)?,
            log_start_offset: get_u64(buf)?,
            error_message: get_nullable_string(buf, "error message length")?,
            duplicate_batches: get_u32(buf)?,
        })
    }
}

impl Encode for ProduceTopicResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.name);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for ProduceTopicResponse {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ProduceTopicResponse {
            name: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for ProduceResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for ProduceResponse {
    const MIN_LEN: usize = ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ProduceResponse {
            topics: get_array(buf)?,
        })
    }
}

body_methods!(ProduceRequest, BytesMut);
body_methods!(ProduceResponse, Bytes);
