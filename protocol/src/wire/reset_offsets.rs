//! ResetOffsets (key 17): an admin moves an empty group's committed
//! offsets of one topic to the earliest or latest offset, to a given
//! offset, or to the first offset at a timestamp.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_bool, get_error_code, get_i64, get_nullable_array,
    get_nullable_string, get_string, get_u32, get_u64, get_u8, Decode, Encode, Encoder, Sink,
    ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN, U32_LEN, U64_LEN, U8_LEN,
};
use super::{ErrorCode, WireError};

/// Where to move the offsets (`u8` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ResetSpec {
    /// The partition's log start offset.
    #[default]
    Earliest = 0,
    /// The partition's log end offset.
    Latest = 1,
    /// `value` itself (clamped to the log's range by the broker).
    ToOffset = 2,
    /// The first offset whose record time is at or after `value` (ms since
    /// the Unix epoch); the log end if none.
    ToTimestamp = 3,
}

impl ResetSpec {
    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn from_u8(code: u8) -> Result<Self, WireError> {
        Ok(match code {
            0 => ResetSpec::Earliest,
            1 => ResetSpec::Latest,
            2 => ResetSpec::ToOffset,
            3 => ResetSpec::ToTimestamp,
            other => {
                return Err(WireError::InvalidValue {
                    field: "reset spec",
                    value: other as i64,
                })
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResetOffsetsRequest {
    pub group_id: String,
    pub topic: String,
    /// `None` = every partition of the topic.
    pub partitions: Option<Vec<u32>>,
    pub spec: ResetSpec,
    /// The offset or timestamp for [`ResetSpec::ToOffset`] /
    /// [`ResetSpec::ToTimestamp`]; ignored otherwise.
    pub value: i64,
    /// Compute and answer, commit nothing.
    pub dry_run: bool,
}

/// [`ErrorCode::NonEmptyGroup`] while the group has members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResetOffsetsResponse {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    pub partitions: Vec<ResetPartitionResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResetPartitionResult {
    pub partition: u32,
    /// The offset committed before, or -1 for none.
    pub old: i64,
    pub new: u64,
}

impl Encode for ResetOffsetsRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.string("topic name", &self.topic);
        e.nullable_array("partitions", self.partitions.as_deref());
        e.u8(self.spec.code());
        e.i64(self.value);
        e.bool(self.dry_run);
    }
}

impl<B: Buf> Decode<B> for ResetOffsetsRequest {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN + ARRAY_MIN_LEN + U8_LEN + U64_LEN + U8_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ResetOffsetsRequest {
            group_id: get_string(buf)?,
            topic: get_string(buf)?,
            partitions: get_nullable_array(buf)?,
            spec: ResetSpec::from_u8(get_u8(buf)?)?,
            value: get_i64(buf)?,
            dry_run: get_bool(buf, "dry run")?,
        })
    }
}

impl Encode for ResetPartitionResult {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.partition);
        e.i64(self.old);
        e.u64(self.new);
    }
}

impl<B: Buf> Decode<B> for ResetPartitionResult {
    const MIN_LEN: usize = U32_LEN + 2 * U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ResetPartitionResult {
            partition: get_u32(buf)?,
            old: get_i64(buf)?,
            new: get_u64(buf)?,
        })
    }
}

impl Encode for ResetOffsetsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.nullable_string("error message", self.error_message.as_deref());
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for ResetOffsetsResponse {
    const MIN_LEN: usize = U16_LEN + U16_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ResetOffsetsResponse {
            error: get_error_code(buf)?,
            error_message: get_nullable_string(buf, "error message")?,
            partitions: get_array(buf)?,
        })
    }
}

body_methods!(ResetOffsetsRequest, BytesMut);
body_methods!(ResetOffsetsResponse, Bytes);
