//! The request/response wire protocol: frames, API keys and versions,
//! request and response bodies, stable error codes.
//!
//! This module owns every byte Rill's broker and client exchange over TCP,
//! so that both sides share one definition. It is a pure codec: no I/O, no
//! async. Record batches are opaque here: a Produce or Fetch carries each
//! partition's records as one blob of whole batches back to back (see
//! [`crate::batch`] for their layout).
//!
//! # Framing
//!
//! All integers are little-endian. Every message on a connection is a frame:
//!
//! ```text
//! frame    = u32 length | body[length]        length counts the bytes after itself
//! request  = u16 api_key | u16 api_version | u32 correlation_id | string client_id | request body
//! response = u32 correlation_id | response body
//! ```
//!
//! A reader checks `length` against its configured frame limit
//! ([`crate::limits::FRAME_BYTES_MAX_DEFAULT`] by default) before it
//! allocates anything ([`decode_frame_length`]). A body must be consumed
//! exactly: bytes left over are [`WireError::TrailingBytes`].
//!
//! Many requests may be in flight on one connection. The broker answers
//! them in the order it received them; the correlation id lets the client
//! check that each response is the one it expects. A Produce with
//! [`Acks::None`] gets no response at all (as in Kafka), so it takes no
//! place in that order.
//!
//! If a request cannot be decoded the broker cannot know the shape of its
//! response: for an ApiVersions request at an unsupported version it still
//! answers with [`ErrorCode::UnsupportedVersion`] in an ApiVersions v0
//! response (so clients can discover versions); for anything else it logs
//! and closes the connection. Clients call ApiVersions first.
//!
//! # Primitive types
//!
//! ```text
//! u8 / u16 / u32 / u64, i16 / i32 / i64   fixed size, little-endian
//! bool             u8: 0 = false, 1 = true, anything else is invalid
//! error            i16 ErrorCode (unknown numbers decode as ErrorCode::Unknown)
//! string           u16 length | UTF-8 bytes[length]
//! nullable string  i16 length | UTF-8 bytes[length]; length -1 = null, other negatives invalid
//! bytes            u32 length | bytes[length]
//! [T]              u32 count | T * count
//! nullable [T]     u32 count | T * count; count 0xFFFF_FFFF = null
//! ```
//!
//! An array count is checked before allocating, against
//! [`crate::limits::WIRE_ARRAY_ITEMS_MAX`] and against how many items of the
//! element's smallest encoding the remaining bytes could hold.
//!
//! # API keys and versions
//!
//! See [`ApiKey`] for the numbers and [`SUPPORTED_APIS`] for the version
//! ranges (all APIs are at version 0 for now). Keys 10..=17 are the
//! consumer group APIs; 18 is the idempotent producer's InitProducerId;
//! 19 (FindCoordinator) names the broker that coordinates a group.
//!
//! # Bodies (version 0)
//!
//! ```text
//! ApiVersions (0)
//!   request  = (empty)
//!   response = error | [ApiVersion]
//!     ApiVersion = u16 api_key | u16 min_version | u16 max_version
//!
//! Metadata (1)
//!   request  = nullable [string] topics                     null = all topics
//!   response = [Broker] brokers | [Topic] topics
//!     Broker    = i32 node_id | string host | u16 port
//!     Topic     = error | string name | [Partition] partitions
//!     Partition = error | u32 partition | i32 leader (-1 = none)
//!                 | u64 log_start_offset | u64 log_end_offset
//!
//! CreateTopics (2)
//!   request  = [Topic] topics | bool validate_only
//!     Topic  = string name | u32 partitions | [Config] configs
//!     Config = string key | string value                     Kafka names, e.g. "retention.ms"
//!   response = [Result] topics
//!     Result = string name | error | nullable string error_message
//!
//! DeleteTopics (3)
//!   request  = [string] names
//!   response = [Result] results                             one per name
//!     Result = string name | error
//!
//! ListOffsets (4)
//!   request  = [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | i64 timestamp              -2 = earliest, -1 = latest
//!   response = [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | error | i64 timestamp (-1 = none) | u64 offset
//!
//! Produce (5)
//!   request  = i16 acks (0 = none, 1 = leader, -1 = all) | u32 timeout_ms | [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | bytes records              whole batches back to back;
//!                                                            one batch if it is idempotent
//!   response = [Topic] topics                                not sent when acks = 0
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | error | u64 base_offset | i64 log_append_time (-1 = none)
//!                 | u64 log_start_offset | nullable string error_message
//!                 | u32 duplicate_batches                    idempotent batches already in the
//!                                                            log: not written again, answered
//!                                                            with their original offsets
//!
//! Fetch (6)
//!   request  = u32 max_wait_ms | u32 min_bytes | u32 max_bytes | [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | u64 fetch_offset | u32 partition_max_bytes
//!   response = error | [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | error | u64 high_watermark (= log end offset)
//!                 | u64 log_start_offset | bytes records     whole batches back to back
//!
//! TopicPartitions = string topic | [u32] partitions          (used by the group APIs)
//!
//! ConsumerGroupHeartbeat (10)
//!   request  = string group_id | string member_id ("" to join)
//!              | i32 member_epoch (0 = join, -1 = leave, -2 = static leave)
//!              | nullable string instance_id | u32 rebalance_timeout_ms
//!              | u32 session_timeout_ms (0 = broker default)
//!              | nullable [string] subscribed_topics     null = unchanged
//!              | nullable string assignor                null = unchanged / group default
//!              | nullable [TopicPartitions] owned        null = unchanged
//!   response = error | nullable string error_message | string member_id
//!              | i32 member_epoch | u32 heartbeat_interval_ms
//!              | nullable [TopicPartitions] assignment   null = unchanged
//!
//! LeaveGroup (11)
//!   request  = string group_id | string member_id
//!   response = error
//!
//! OffsetCommit (12)
//!   request  = string group_id | string member_id
//!              | i32 member_epoch (-1 = admin commit while the group is empty)
//!              | [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | u64 offset | nullable string metadata
//!   response = [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | error
//!
//! OffsetFetch (13)
//!   request  = string group_id | nullable [TopicPartitions] topics   null = all
//!   response = error | [Topic] topics
//!     Topic     = string name | [Partition] partitions
//!     Partition = u32 partition | i64 offset (-1 = none) | nullable string metadata | error
//!
//! ListGroups (14)
//!   request  = (empty)
//!   response = error | [Group] groups
//!     Group = string group_id | string state | u32 members
//!
//! DescribeGroups (15)
//!   request  = [string] group_ids
//!   response = [Group] groups                                 one per id
//!     Group  = string group_id | error | string state | string assignor
//!              | i32 group_epoch | [Member] members | [Offset] offsets
//!     Member = string member_id | string client_id | i32 member_epoch
//!              | [TopicPartitions] assignment | [TopicPartitions] pending_revocation
//!     Offset = string topic | u32 partition | i64 committed (-1 = none)
//!              | u64 log_end | i64 lag (-1 = no commit)
//!
//! DeleteGroups (16)
//!   request  = [string] group_ids
//!   response = [Result] results                               one per id
//!     Result = string group_id | error
//!
//! ResetOffsets (17)
//!   request  = string group_id | string topic | nullable [u32] partitions (null = all)
//!              | u8 spec (0 earliest, 1 latest, 2 to offset, 3 to timestamp)
//!              | i64 value | bool dry_run
//!   response = error | nullable string error_message | [Partition] partitions
//!     Partition = u32 partition | i64 old (-1 = none) | u64 new
//!
//! InitProducerId (18)
//!   request  = i64 producer_id | i16 producer_epoch          -1, -1 = a new id
//!   response = error | i64 producer_id | i16 producer_epoch
//!
//! FindCoordinator (19)
//!   request  = string key (the group id) | u8 key_type (0 = group, the only one)
//!   response = error | i32 node_id (-1 with an error) | string host | u16 port
//! ```
//!
//! # Zero copy
//!
//! Request bodies decode from a `BytesMut`: each Produce partition's records
//! are split off the frame as their own unique `BytesMut`, so the broker can
//! stamp base offsets in place. Response bodies decode from `Bytes`: Fetch
//! records are slices of the received frame. The broker writes a Fetch
//! response without copying records via [`encode_response_frame_vectored`].
//!
//! # Layout
//! - `codec`: primitive encoders/decoders and the sinks (buffer, byte
//!   counter, vectored chunks) every layout is written through.
//! - [`frame`]: length prefix, headers, [`Request`] / [`Response`].
//! - [`api`]: [`ApiKey`] and [`SUPPORTED_APIS`]; [`error_code`]:
//!   [`ErrorCode`]; [`error`]: [`WireError`].
//! - one module per API with its request and response bodies.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub(crate) mod codec;

pub mod api;
pub mod api_versions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_groups;
pub mod error;
pub mod error_code;
pub mod fetch;
pub mod find_coordinator;
pub mod frame;
pub mod group_heartbeat;
pub mod init_producer_id;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod reset_offsets;

pub use api::{ApiKey, ApiVersionRange, SUPPORTED_APIS};
pub use api_versions::{ApiVersionsRequest, ApiVersionsResponse};
pub use create_topics::{
    topic_config, CreatableTopic, CreatableTopicResult, CreateTopicsRequest, CreateTopicsResponse,
};
pub use delete_groups::{DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse};
pub use delete_topics::{DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse};
pub use describe_groups::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
    DescribedGroupOffset, NO_OFFSET,
};
pub use error::WireError;
pub use error_code::ErrorCode;
pub use fetch::{
    FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic,
    FetchTopicResponse,
};
pub use find_coordinator::{
    FindCoordinatorRequest, FindCoordinatorResponse, COORDINATOR_KEY_GROUP, NO_NODE_ID,
};
pub use frame::{
    decode_frame_length, encode_produce_frame_vectored, encode_request_frame,
    encode_response_frame, encode_response_frame_vectored, Request, RequestHeader, Response,
    ResponseHeader, FRAME_LENGTH_PREFIX_BYTES,
};
pub use group_heartbeat::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicPartitions,
    MEMBER_EPOCH_JOIN, MEMBER_EPOCH_LEAVE, MEMBER_EPOCH_STATIC_LEAVE,
};
pub use init_producer_id::{
    InitProducerIdRequest, InitProducerIdResponse, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    PRODUCER_EPOCH_MAX,
};
pub use leave_group::{LeaveGroupRequest, LeaveGroupResponse};
pub use list_groups::{ListGroupsRequest, ListGroupsResponse, ListedGroup};
pub use list_offsets::{
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopic, ListOffsetsTopicResponse, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, NO_TIMESTAMP,
};
pub use metadata::{
    MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic,
};
pub use offset_commit::{
    OffsetCommitPartition, OffsetCommitPartitionResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetCommitTopic, OffsetCommitTopicResponse, MEMBER_EPOCH_ADMIN_COMMIT,
};
pub use offset_fetch::{
    OffsetFetchPartitionResponse, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopicResponse, NO_COMMITTED_OFFSET,
};
pub use produce::{
    Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopic, ProduceTopicResponse, SharedProducePartition, SharedProduceRequest,
    SharedProduceTopic, NO_LOG_APPEND_TIME,
};
pub use reset_offsets::{
    ResetOffsetsRequest, ResetOffsetsResponse, ResetPartitionResult, ResetSpec,
};
