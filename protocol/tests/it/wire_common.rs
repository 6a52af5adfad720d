//! Shared by the wire tests: proptest strategies for every request and
//! response, and helpers that push them through real frames.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use rill_protocol::wire::*;

/// Case count of the wire property tests: enough to hit every variant
/// many times, small enough for a 2-core CI box.
pub const WIRE_CASES: u32 = 256;

pub fn string() -> impl Strategy<Value = String> {
    "\\PC{0,8}"
}

pub fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(string())
}

pub fn blob() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

/// Known codes and arbitrary numbers (mostly unknown to this build).
pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        3 => proptest::sample::select(ErrorCode::ALL),
        1 => any::<i16>().prop_map(ErrorCode::from_i16),
    ]
}

pub fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)]
}

fn few<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    vec(s, 0..4)
}

pub fn api_versions_request() -> impl Strategy<Value = ApiVersionsRequest> {
    Just(ApiVersionsRequest {})
}

pub fn api_versions_response() -> impl Strategy<Value = ApiVersionsResponse> {
    (
        error_code(),
        few((any::<u16>(), any::<u16>(), any::<u16>())),
    )
        .prop_map(|(error, apis)| ApiVersionsResponse {
            error,
            apis: apis
                .into_iter()
                .map(|(key, min, max)| ApiVersionRange { key, min, max })
                .collect(),
        })
}

pub fn metadata_request() -> impl Strategy<Value = MetadataRequest> {
    proptest::option::of(few(string())).prop_map(|topics| MetadataRequest { topics })
}

pub fn metadata_response() -> impl Strategy<Value = MetadataResponse> {
    let broker =
        (any::<i32>(), string(), any::<u16>()).prop_map(|(node_id, host, port)| MetadataBroker {
            node_id,
            host,
            port,
        });
    let partition = (
        error_code(),
        any::<u32>(),
        any::<i32>(),
        any::<u32>(),
        (few(any::<i32>()), few(any::<i32>())),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                error,
                partition,
                leader,
                leader_epoch,
                (replicas, isr),
                log_start_offset,
                log_end_offset,
            )| {
                MetadataPartition {
                    error,
                    partition,
                    leader,
                    leader_epoch,
                    replicas,
                    isr,
                    log_start_offset,
                    log_end_offset,
                }
            },
        );
    let topic = (error_code(), string(), few(partition)).prop_map(|(error, name, partitions)| {
        MetadataTopic {
            error,
            name,
            partitions,
        }
    });
    (few(broker), any::<i32>(), few(topic)).prop_map(|(brokers, controller_id, topics)| {
        MetadataResponse {
            brokers,
            controller_id,
            topics,
        }
    })
}

pub fn create_topics_request() -> impl Strategy<Value = CreateTopicsRequest> {
    let topic = (
        string(),
        any::<u32>(),
        any::<u16>(),
        few((string(), string())),
    )
        .prop_map(
            |(name, partitions, replication_factor, configs)| CreatableTopic {
                name,
                partitions,
                replication_factor,
                configs,
            },
        );
    (few(topic), any::<bool>()).prop_map(|(topics, validate_only)| CreateTopicsRequest {
        topics,
        validate_only,
    })
}

pub fn create_topics_response() -> impl Strategy<Value = CreateTopicsResponse> {
    few(
        (string(), error_code(), opt_string()).prop_map(|(name, error, error_message)| {
            CreatableTopicResult {
                name,
                error,
                error_message,
            }
        }),
    )
    .prop_map(|topics| CreateTopicsResponse { topics })
}

pub fn delete_topics_request() -> impl Strategy<Value = DeleteTopicsRequest> {
    few(string()).prop_map(|names| DeleteTopicsRequest { names })
}

pub fn delete_topics_response() -> impl Strategy<Value = DeleteTopicsResponse> {
    few((string(), error_code()).prop_map(|(name, error)| DeletableTopicResult { name, error }))
        .prop_map(|results| DeleteTopicsResponse { results })
}

pub fn list_offsets_request() -> impl Strategy<Value = ListOffsetsRequest> {
    let partition =
        (any::<u32>(), any::<i64>()).prop_map(|(partition, timestamp)| ListOffsetsPartition {
            partition,
            timestamp,
        });
    few((string(), few(partition))
        .prop_map(|(name, partitions)| ListOffsetsTopic { name, partitions }))
    .prop_map(|topics| ListOffsetsRequest { topics })
}

pub fn list_offsets_response() -> impl Strategy<Value = ListOffsetsResponse> {
    let partition = (any::<u32>(), error_code(), any::<i64>(), any::<u64>()).prop_map(
        |(partition, error, timestamp, offset)| ListOffsetsPartitionResponse {
            partition,
            error,
            timestamp,
            offset,
        },
    );
    few((string(), few(partition))
        .prop_map(|(name, partitions)| ListOffsetsTopicResponse { name, partitions }))
    .prop_map(|topics| ListOffsetsResponse { topics })
}

pub fn produce_request() -> impl Strategy<Value = ProduceRequest> {
    let partition = (any::<u32>(), blob()).prop_map(|(partition, records)| ProducePartition {
        partition,
        records: BytesMut::from(&records[..]),
    });
    let topic =
        (string(), few(partition)).prop_map(|(name, partitions)| ProduceTopic { name, partitions });
    (acks(), any::<u32>(), few(topic)).prop_map(|(acks, timeout_ms, topics)| ProduceRequest {
        acks,
        timeout_ms,
        topics,
    })
}

pub fn produce_response() -> impl Strategy<Value = ProduceResponse> {
    let partition = (
        any::<u32>(),
        error_code(),
        any::<u64>(),
        any::<i64>(),
        any::<u64>(),
        opt_string(),
        any::<u32>(),
    )
        .prop_map(
            |(
                partition,
                error,
                base_offset,
                log_append_time,
                log_start_offset,
                error_message,
                duplicate_batches,
            )| {
                ProducePartitionResponse {
                    partition,
                    error,
                    base_offset,
                    log_append_time,
                    log_start_offset,
                    error_message,
                    duplicate_batches,
                }
            },
        );
    few((string(), few(partition))
        .prop_map(|(name, partitions)| ProduceTopicResponse { name, partitions }))
    .prop_map(|topics| ProduceResponse { topics })
}

pub fn fetch_request() -> impl Strategy<Value = FetchRequest> {
    let partition = (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
        |(partition, fetch_offset, partition_max_bytes)| FetchPartition {
            partition,
            fetch_offset,
            partition_max_bytes,
        },
    );
    let topic =
        (string(), few(partition)).prop_map(|(name, partitions)| FetchTopic { name, partitions });
    (any::<u32>(), any::<u32>(), any::<u32>(), few(topic)).prop_map(
        |(max_wait_ms, min_bytes, max_bytes, topics)| FetchRequest {
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics,
        },
    )
}

pub fn fetch_response() -> impl Strategy<Value = FetchResponse> {
    let partition = (
        any::<u32>(),
        error_code(),
        any::<u64>(),
        any::<u64>(),
        blob(),
    )
        .prop_map(
            |(partition, error, high_watermark, log_start_offset, records)| {
                FetchPartitionResponse {
                    partition,
                    error,
                    high_watermark,
                    log_start_offset,
                    records: Bytes::from(records),
                }
            },
        );
    let topic = (string(), few(partition))
        .prop_map(|(name, partitions)| FetchTopicResponse { name, partitions });
    (error_code(), few(topic)).prop_map(|(error, topics)| FetchResponse { error, topics })
}

pub fn init_producer_id_request() -> impl Strategy<Value = InitProducerIdRequest> {
    (any::<i64>(), any::<i16>()).prop_map(|(producer_id, producer_epoch)| InitProducerIdRequest {
        producer_id,
        producer_epoch,
    })
}

pub fn init_producer_id_response() -> impl Strategy<Value = InitProducerIdResponse> {
    (error_code(), any::<i64>(), any::<i16>()).prop_map(|(error, producer_id, producer_epoch)| {
        InitProducerIdResponse {
            error,
            producer_id,
            producer_epoch,
        }
    })
}

pub fn find_coordinator_request() -> impl Strategy<Value = FindCoordinatorRequest> {
    (string(), any::<u8>()).prop_map(|(key, key_type)| FindCoordinatorRequest { key, key_type })
}

pub fn find_coordinator_response() -> impl Strategy<Value = FindCoordinatorResponse> {
    (error_code(), any::<i32>(), string(), any::<u16>()).prop_map(|(error, node_id, host, port)| {
        FindCoordinatorResponse {
            error,
            node_id,
            host,
            port,
        }
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        api_versions_request().prop_map(Request::ApiVersions),
        metadata_request().prop_map(Request::Metadata),
        create_topics_request().prop_map(Request::CreateTopics),
        delete_topics_request().prop_map(Request::DeleteTopics),
        list_offsets_request().prop_map(Request::ListOffsets),
        produce_request().prop_map(Request::Produce),
        fetch_request().prop_map(Request::Fetch),
        init_producer_id_request().prop_map(Request::InitProducerId),
        find_coordinator_request().prop_map(Request::FindCoordinator),
    ]
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        api_versions_response().prop_map(Response::ApiVersions),
        metadata_response().prop_map(Response::Metadata),
        create_topics_response().prop_map(Response::CreateTopics),
        delete_topics_response().prop_map(Response::DeleteTopics),
        list_offsets_response().prop_map(Response::ListOffsets),
        produce_response().prop_map(Response::Produce),
        fetch_response().prop_map(Response::Fetch),
        init_producer_id_response().prop_map(Response::InitProducerId),
        find_coordinator_response().prop_map(Response::FindCoordinator),
    ]
}

pub fn header_for(request: &Request, correlation_id: u32, client_id: String) -> RequestHeader {
    RequestHeader {
        api_key: request.api_key(),
        api_version: 0,
        correlation_id,
        client_id,
    }
}

/// Reads one request frame the way the broker does: prefix, limit check,
/// header, body.
pub fn read_request_frame(
    mut frame: BytesMut,
    max: usize,
) -> Result<(RequestHeader, Request), WireError> {
    let prefix = take_prefix(&mut frame)?;
    let len = decode_frame_length(prefix, max)?;
    check_frame_len(len, frame.len())?;
    let header = RequestHeader::decode(&mut frame)?;
    let request = Request::decode(&header, &mut frame)?;
    Ok((header, request))
}

/// Reads one response frame the way the client does.
pub fn read_response_frame(
    mut frame: Bytes,
    key: ApiKey,
    max: usize,
) -> Result<(ResponseHeader, Response), WireError> {
    let prefix: [u8; FRAME_LENGTH_PREFIX_BYTES] = frame
        .get(..FRAME_LENGTH_PREFIX_BYTES)
        .and_then(|p| p.try_into().ok())
        .ok_or(WireError::Truncated {
            needed: FRAME_LENGTH_PREFIX_BYTES,
            available: frame.len(),
        })?;
    let _ = frame.split_to(FRAME_LENGTH_PREFIX_BYTES);
    let len = decode_frame_length(prefix, max)?;
    check_frame_len(len, frame.len())?;
    let header = ResponseHeader::decode(&mut frame)?;
    let response = Response::decode(key, 0, &mut frame)?;
    Ok((header, response))
}

/// The prefix must count exactly the bytes after it (the tests hand over
/// one whole frame, as a connection reader would after reading `len` bytes).
fn check_frame_len(len: usize, available: usize) -> Result<(), WireError> {
    if len > available {
        return Err(WireError::Truncated {
            needed: len,
            available,
        });
    }
    if len < available {
        return Err(WireError::TrailingBytes(available - len));
    }
    Ok(())
}

fn take_prefix(frame: &mut BytesMut) -> Result<[u8; FRAME_LENGTH_PREFIX_BYTES], WireError> {
    let prefix = frame
        .get(..FRAME_LENGTH_PREFIX_BYTES)
        .and_then(|p| p.try_into().ok())
        .ok_or(WireError::Truncated {
            needed: FRAME_LENGTH_PREFIX_BYTES,
            available: frame.len(),
        })?;
    let _ = frame.split_to(FRAME_LENGTH_PREFIX_BYTES);
    Ok(prefix)
}

/// Encodes a response body alone (no frame), through the `Response` enum.
pub fn response_body(response: &Response) -> BytesMut {
    let mut buf = BytesMut::new();
    let header = ResponseHeader { correlation_id: 0 };
    encode_response_frame(&header, response, &mut buf).expect("test values fit the wire");
    // Drop the prefix and the 4-byte correlation id.
    buf.split_off(FRAME_LENGTH_PREFIX_BYTES + 4)
}

/// Encodes a request body alone (no frame, no header).
pub fn request_body(request: &Request) -> BytesMut {
    let mut buf = BytesMut::new();
    let header = header_for(request, 0, String::new());
    encode_request_frame(&header, request, &mut buf).expect("test values fit the wire");
    // Prefix, then header: key, version, correlation id, empty client id.
    buf.split_off(FRAME_LENGTH_PREFIX_BYTES + 2 + 2 + 4 + 2)
}
