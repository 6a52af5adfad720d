//! ConsumerGroupHeartbeat (key 10): join, stay alive, receive the
//! assignment, leave (Kafka's KIP-848 protocol: the broker computes the
//! assignment; clients elect no leader).
//!
//! Also [`TopicPartitions`], the (topic, partitions) list every group API
//! uses.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_i32, get_nullable_array, get_nullable_string,
    get_string, get_u32, Decode, Encode, Encoder, Sink, ARRAY_MIN_LEN, STRING_MIN_LEN, U16_LEN,
    U32_LEN,
};
use super::{ErrorCode, WireError};

/// `member_epoch` of a member joining.
pub const MEMBER_EPOCH_JOIN: i32 = 0;
/// `member_epoch` of a member leaving.
pub const MEMBER_EPOCH_LEAVE: i32 = -1;
/// `member_epoch` of a static member leaving temporarily (static
/// membership is not implemented: treated as a leave).
pub const MEMBER_EPOCH_STATIC_LEAVE: i32 = -2;

/// Some partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupHeartbeatRequest {
    pub group_id: String,
    /// Empty to join with a broker-chosen id.
    pub member_id: String,
    /// [`MEMBER_EPOCH_JOIN`], [`MEMBER_EPOCH_LEAVE`] or the epoch last received.
    pub member_epoch: i32,
    /// Static membership id; not used yet.
    pub instance_id: Option<String>,
    /// Time to release revoked partitions; 0 = broker default.
    pub rebalance_timeout_ms: u32,
    /// 0 = broker default.
    pub session_timeout_ms: u32,
    /// `None` = unchanged since the last heartbeat (required on join).
    pub subscribed_topics: Option<Vec<String>>,
    /// Server assignor preferred; `None` = unchanged / group default.
    pub assignor: Option<String>,
    /// Partitions the member holds now; `None` = unchanged.
    pub owned: Option<Vec<TopicPartitions>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupHeartbeatResponse {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// The partitions the member may consume; `None` = unchanged.
    pub assignment: Option<Vec<TopicPartitions>>,
}

impl Encode for u32 {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(*self);
    }
}

impl<B: Buf> Decode<B> for u32 {
    const MIN_LEN: usize = U32_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        get_u32(buf)
    }
}

impl Encode for TopicPartitions {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("topic name", &self.topic);
        e.array("partitions", &self.partitions);
    }
}

impl<B: Buf> Decode<B> for TopicPartitions {
    const MIN_LEN: usize = STRING_MIN_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(TopicPartitions {
            topic: get_string(buf)?,
            partitions: get_array(buf)?,
        })
    }
}

impl Encode for ConsumerGroupHeartbeatRequest {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("group id", &self.group_id);
        e.string("member id", &self.member_id);
        e.i32(self.member_epoch);
        e.nullable_string("instance id", self.instance_id.as_deref());
        e.u32(self.rebalance_timeout_ms);
        e.u32(self.session_timeout_ms);
        e.nullable_array("subscribed topics", self.subscribed_topics.as_deref());
        e.nullable_string("assignor", self.assignor.as_deref());
        e.nullable_array("owned", self.owned.as_deref());
    }
}

impl<B: Buf> Decode<B> for ConsumerGroupHeartbeatRequest {
    const MIN_LEN: usize = 2 * STRING_MIN_LEN
        + U32_LEN
        + U16_LEN
        + 2 * U32_LEN
        + ARRAY_MIN_LEN
        + U16_LEN
        + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ConsumerGroupHeartbeatRequest {
            group_id: get_string(buf)?,
            member_id: get_string(buf)?,
            member_epoch: get_i32(buf)?,
            instance_id: get_nullable_string(buf, "instance id")?,
            rebalance_timeout_ms: get_u32(buf)?,
            session_timeout_ms: get_u32(buf)?,
            subscribed_topics: get_nullable_array(buf)?,
            assignor: get_nullable_string(buf, "assignor")?,
            owned: get_nullable_array(buf)?,
        })
    }
}

impl Encode for ConsumerGroupHeartbeatResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.nullable_string("error message", self.error_message.as_deref());
        e.string("member id", &self.member_id);
        e.i32(self.member_epoch);
        e.u32(self.heartbeat_interval_ms);
        e.nullable_array("assignment", self.assignment.as_deref());
    }
}

impl<B: Buf> Decode<B> for ConsumerGroupHeartbeatResponse {
    const MIN_LEN: usize = U16_LEN + U16_LEN + STRING_MIN_LEN + 2 * U32_LEN + ARRAY_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ConsumerGroupHeartbeatResponse {
            error: get_error_code(buf)?,
            error_message: get_nullable_string(buf, "error message")?,
            member_id: get_string(buf)?,
            member_epoch: get_i32(buf)?,
            heartbeat_interval_ms: get_u32(buf)?,
            assignment: get_nullable_array(buf)?,
        })
    }
}

body_methods!(ConsumerGroupHeartbeatRequest, BytesMut);
body_methods!(ConsumerGroupHeartbeatResponse, Bytes);
