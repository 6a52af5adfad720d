//! Metadata (key 1): the cluster's brokers and controller, and topics with
//! their partitions: leader, leader epoch, replicas, in-sync replicas and
//! offsets. (v0 gained the cluster fields in place before any release.)

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
    /// Node id of the broker leading the controller group; -1 when none is
    /// known.
    pub controller_id: i32,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataPartition {
    pub error: ErrorCode,
    pub partition: u32,
    /// Node id of the partition's leader; -1 when there is none.
    pub leader: i32,
    /// The leader's epoch (its Raft term on a replicated partition, 0 on a
    /// partition with one replica).
    pub leader_epoch: u32,
    /// Node ids of the replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Node ids of the replicas in sync with the leader (the leader among
    /// them).
    pub isr: Vec<i32>,
    pub log_start_offset: u64,
    /// The high watermark: the end of what consumers may read.
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
        e.u32(self.leader_epoch);
        e.array("replicas", &self.replicas);
        e.array("isr", &self.isr);
        e.u64(self.log_start_offset);
        e.u64(self.log_end_offset);
    }
}

impl<B: Buf> Decode<B> for MetadataPartition {
    const MIN_LEN: usize = U16_LEN + 3 * U32_LEN + 2 * ARRAY_MIN_LEN + 2 * U64_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataPartition {
            error: get_error_code(buf)?,
            partition: get_u32(buf)?,
            leader: get_i32(buf)?,
            leader_epoch: get_u32(buf)?,
            replicas: get_array(buf)?,
            isr: get_array(buf)?,
            log_start_offset: get_u64(buf)?,
            log_end_offset: get_u64(buf)?,
        })
    }
}

impl Encode for MetadataResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.array("brokers", &self.brokers);
        e.i32(self.controller_id);
        e.array("topics", &self.topics);
    }
}

impl<B: Buf> Decode<B> for MetadataResponse {
    const MIN_LEN: usize = 2 * ARRAY_MIN_LEN + U32_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(MetadataResponse {
            brokers: get_array(buf)?,
            controller_id: get_i32(buf)?,
            topics: get_array(buf)?,
        })
    }
}

body_methods!(MetadataRequest, BytesMut);
body_methods!(MetadataResponse, Bytes);
