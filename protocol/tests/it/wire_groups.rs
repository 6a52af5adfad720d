//! The consumer group bodies (keys 10..=17): random values survive encode
//! -> decode (alone and in whole frames) with `encoded_len` exact; every
//! truncation and every out-of-domain value is a typed error; one golden
//! encoding pins the byte layout.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
use rill_protocol::wire::*;

use crate::wire_common::{error_code, header_for, opt_string, string, WIRE_CASES};
use crate::wire_common::{read_request_frame, read_response_frame};

fn few<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    vec(s, 0..4)
}

fn topic_partitions() -> impl Strategy<Value = TopicPartitions> {
    (string(), few(any::<u32>()))
        .prop_map(|(topic, partitions)| TopicPartitions { topic, partitions })
}

fn heartbeat_request() -> impl Strategy<Value = ConsumerGroupHeartbeatRequest> {
    (
        (string(), string(), any::<i32>(), opt_string()),
        (any::<u32>(), any::<u32>()),
        (
            proptest::option::of(few(string())),
            opt_string(),
            proptest::option::of(few(topic_partitions())),
        ),
    )
        .prop_map(
            |(
                (group_id, member_id, member_epoch, instance_id),
                (rebalance_timeout_ms, session_timeout_ms),
                (subscribed_topics, assignor, owned),
            )| ConsumerGroupHeartbeatRequest {
                group_id,
                member_id,
                member_epoch,
                instance_id,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscribed_topics,
                assignor,
                owned,
            },
        )
}

fn heartbeat_response() -> impl Strategy<Value = ConsumerGroupHeartbeatResponse> {
    (
        error_code(),
        opt_string(),
        string(),
        any::<i32>(),
        any::<u32>(),
        proptest::option::of(few(topic_partitions())),
    )
        .prop_map(
            |(error, error_message, member_id, member_epoch, heartbeat_interval_ms, assignment)| {
                ConsumerGroupHeartbeatResponse {
                    error,
                    error_message,
                    member_id,
                    member_epoch,
                    heartbeat_interval_ms,
                    assignment,
                }
            },
        )
}

fn leave_request() -> impl Strategy<Value = LeaveGroupRequest> {
    (string(), string()).prop_map(|(group_id, member_id)| LeaveGroupRequest {
        group_id,
        member_id,
    })
}

fn leave_response() -> impl Strategy<Value = LeaveGroupResponse> {
    error_code().prop_map(|error| LeaveGroupResponse { error })
}

fn commit_request() -> impl Strategy<Value = OffsetCommitRequest> {
    let partition =
        (any::<u32>(), any::<u64>(), opt_string()).prop_map(|(partition, offset, metadata)| {
            OffsetCommitPartition {
                partition,
                offset,
                metadata,
            }
        });
    let topic = (string(), few(partition))
        .prop_map(|(name, partitions)| OffsetCommitTopic { name, partitions });
    (string(), string(), any::<i32>(), few(topic)).prop_map(
        |(group_id, member_id, member_epoch, topics)| OffsetCommitRequest {
            group_id,
            member_id,
            member_epoch,
            topics,
        },
    )
}

fn commit_response() -> impl Strategy<Value = OffsetCommitResponse> {
    let partition = (any::<u32>(), error_code())
        .prop_map(|(partition, error)| OffsetCommitPartitionResponse { partition, error });
    few((string(), few(partition))
        .prop_map(|(name, partitions)| OffsetCommitTopicResponse { name, partitions }))
    .prop_map(|topics| OffsetCommitResponse { topics })
}

fn fetch_request() -> impl Strategy<Value = OffsetFetchRequest> {
    (string(), proptest::option::of(few(topic_partitions())))
        .prop_map(|(group_id, topics)| OffsetFetchRequest { group_id, topics })
}

fn fetch_response() -> impl Strategy<Value = OffsetFetchResponse> {
    let partition = (any::<u32>(), any::<i64>(), opt_string(), error_code()).prop_map(
        |(partition, offset, metadata, error)| OffsetFetchPartitionResponse {
            partition,
            offset,
            metadata,
            error,
        },
    );
    let topic = (string(), few(partition))
        .prop_map(|(name, partitions)| OffsetFetchTopicResponse { name, partitions });
    (error_code(), few(topic)).prop_map(|(error, topics)| OffsetFetchResponse { error, topics })
}

fn list_response() -> impl Strategy<Value = ListGroupsResponse> {
    let group =
        (string(), string(), any::<u32>()).prop_map(|(group_id, state, members)| ListedGroup {
            group_id,
            state,
            members,
        });
    (error_code(), few(group)).prop_map(|(error, groups)| ListGroupsResponse { error, groups })
}

fn describe_request() -> impl Strategy<Value = DescribeGroupsRequest> {
    few(string()).prop_map(|group_ids| DescribeGroupsRequest { group_ids })
}

fn describe_response() -> impl Strategy<Value = DescribeGroupsResponse> {
    let member = (
        string(),
        string(),
        any::<i32>(),
        few(topic_partitions()),
        few(topic_partitions()),
    )
        .prop_map(
            |(member_id, client_id, member_epoch, assignment, pending_revocation)| {
                DescribedGroupMember {
                    member_id,
                    client_id,
                    member_epoch,
                    assignment,
                    pending_revocation,
                }
            },
        );
    let offset = (
        string(),
        any::<u32>(),
        any::<i64>(),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(topic, partition, committed, log_end, lag)| DescribedGroupOffset {
                topic,
                partition,
                committed,
                log_end,
                lag,
            },
        );
    let group = (
        (string(), error_code(), string(), string(), any::<i32>()),
        few(member),
        few(offset),
    )
        .prop_map(
            |((group_id, error, state, assignor, group_epoch), members, offsets)| DescribedGroup {
                group_id,
                error,
                state,
                assignor,
                group_epoch,
                members,
                offsets,
            },
        );
    few(group).prop_map(|groups| DescribeGroupsResponse { groups })
}

fn delete_request() -> impl Strategy<Value = DeleteGroupsRequest> {
    few(string()).prop_map(|group_ids| DeleteGroupsRequest { group_ids })
}

fn delete_response() -> impl Strategy<Value = DeleteGroupsResponse> {
    few((string(), error_code())
        .prop_map(|(group_id, error)| DeletableGroupResult { group_id, error }))
    .prop_map(|results| DeleteGroupsResponse { results })
}

fn reset_spec() -> impl Strategy<Value = ResetSpec> {
    prop_oneof![
        Just(ResetSpec::Earliest),
        Just(ResetSpec::Latest),
        Just(ResetSpec::ToOffset),
        Just(ResetSpec::ToTimestamp),
    ]
}

fn reset_request() -> impl Strategy<Value = ResetOffsetsRequest> {
    (
        string(),
        string(),
        proptest::option::of(few(any::<u32>())),
        reset_spec(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(group_id, topic, partitions, spec, value, dry_run)| ResetOffsetsRequest {
                group_id,
                topic,
                partitions,
                spec,
                value,
                dry_run,
            },
        )
}

fn reset_response() -> impl Strategy<Value = ResetOffsetsResponse> {
    let partition = (any::<u32>(), any::<i64>(), any::<u64>()).prop_map(|(partition, old, new)| {
        ResetPartitionResult {
            partition,
            old,
            new,
        }
    });
    (error_code(), opt_string(), few(partition)).prop_map(|(error, error_message, partitions)| {
        ResetOffsetsResponse {
            error,
            error_message,
            partitions,
        }
    })
}

/// `decode(encode(x)) == x` with nothing left over, `encoded_len` exact,
/// and every strict prefix of the encoding refused.
macro_rules! group_body {
    ($name:ident, $ty:ty, $strategy:expr, $buf:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]
            #[test]
            fn $name(value in $strategy) {
                let mut buf = BytesMut::from(&b"prefix"[..]);
                value.encode(&mut buf).expect("test values fit the wire");
                let encoded = buf.split_off(6);
                prop_assert_eq!(value.encoded_len().expect("fits"), encoded.len());
                let mut body: $buf = encoded.clone().into();
                let decoded = <$ty>::decode(&mut body).expect("own encoding decodes");
                prop_assert!(body.is_empty(), "{} bytes left over", body.len());
                prop_assert_eq!(&decoded, &value);
                for cut in 0..encoded.len() {
                    let mut partial: $buf = BytesMut::from(&encoded[..cut]).into();
                    let result = <$ty>::decode(&mut partial);
                    prop_assert!(
                        matches!(result, Err(WireError::Truncated { .. } | WireError::ArrayTooLong { .. })),
                        "cut at {} of {}: {:?}", cut, encoded.len(), result
                    );
                }
            }
        }
    };
}

group_body!(
    wire_groups_heartbeat_request,
    ConsumerGroupHeartbeatRequest,
    heartbeat_request(),
    BytesMut
);
group_body!(
    wire_groups_heartbeat_response,
    ConsumerGroupHeartbeatResponse,
    heartbeat_response(),
    Bytes
);
group_body!(
    wire_groups_leave_request,
    LeaveGroupRequest,
    leave_request(),
    BytesMut
);
group_body!(
    wire_groups_leave_response,
    LeaveGroupResponse,
    leave_response(),
    Bytes
);
group_body!(
    wire_groups_commit_request,
    OffsetCommitRequest,
    commit_request(),
    BytesMut
);
group_body!(
    wire_groups_commit_response,
    OffsetCommitResponse,
    commit_response(),
    Bytes
);
group_body!(
    wire_groups_fetch_request,
    OffsetFetchRequest,
    fetch_request(),
    BytesMut
);
group_body!(
    wire_groups_fetch_response,
    OffsetFetchResponse,
    fetch_response(),
    Bytes
);
group_body!(
    wire_groups_list_response,
    ListGroupsResponse,
    list_response(),
    Bytes
);
group_body!(
    wire_groups_describe_request,
    DescribeGroupsRequest,
    describe_request(),
    BytesMut
);
group_body!(
    wire_groups_describe_response,
    DescribeGroupsResponse,
    describe_response(),
    Bytes
);
group_body!(
    wire_groups_delete_request,
    DeleteGroupsRequest,
    delete_request(),
    BytesMut
);
group_body!(
    wire_groups_delete_response,
    DeleteGroupsResponse,
    delete_response(),
    Bytes
);
group_body!(
    wire_groups_reset_request,
    ResetOffsetsRequest,
    reset_request(),
    BytesMut
);
group_body!(
    wire_groups_reset_response,
    ResetOffsetsResponse,
    reset_response(),
    Bytes
);

#[test]
fn wire_groups_null_and_empty_arrays_differ() {
    let null = ConsumerGroupHeartbeatRequest::default();
    let empty = ConsumerGroupHeartbeatRequest {
        subscribed_topics: Some(Vec::new()),
        owned: Some(Vec::new()),
        ..ConsumerGroupHeartbeatRequest::default()
    };
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    null.encode(&mut a).expect("fits");
    empty.encode(&mut b).expect("fits");
    assert_ne!(a, b);
    assert_eq!(
        ConsumerGroupHeartbeatRequest::decode(&mut a).expect("decodes"),
        null
    );
    assert_eq!(
        ConsumerGroupHeartbeatRequest::decode(&mut b).expect("decodes"),
        empty
    );
}

#[test]
fn wire_groups_out_of_domain_values_are_typed_errors() {
    let request = ResetOffsetsRequest {
        group_id: "g".to_owned(),
        topic: "t".to_owned(),
        spec: ResetSpec::ToTimestamp,
        value: 5,
        ..ResetOffsetsRequest::default()
    };
    let mut good = BytesMut::new();
    request.encode(&mut good).expect("fits");
    // group "g" (3) + topic "t" (3) + null partitions (4) = spec at byte 10.
    let spec_at = 3 + 3 + 4;
    assert_eq!(good.get(spec_at), Some(&ResetSpec::ToTimestamp.code()));
    let mut bad = good.clone();
    bad[spec_at] = 4;
    let err = ResetOffsetsRequest::decode(&mut bad).unwrap_err();
    assert_eq!(
        err,
        WireError::InvalidValue {
            field: "reset spec",
            value: 4
        }
    );
    assert_eq!(err.error_code(), ErrorCode::InvalidRequest);
    let mut bad = good.clone();
    let dry_run_at = good.len() - 1;
    bad[dry_run_at] = 2;
    let err = ResetOffsetsRequest::decode(&mut bad).unwrap_err();
    assert_eq!(
        err,
        WireError::InvalidValue {
            field: "dry run",
            value: 2
        }
    );
    for spec in 0..=3u8 {
        assert_eq!(ResetSpec::from_u8(spec).map(ResetSpec::code), Ok(spec));
    }
    // A nullable string length below -1.
    let mut bad_instance = BytesMut::from(&[0u8, 0, 0, 0, 0, 0, 0, 0, 0xFE, 0xFF][..]);
    let err = ConsumerGroupHeartbeatRequest::decode(&mut bad_instance).unwrap_err();
    assert_eq!(
        err,
        WireError::InvalidValue {
            field: "instance id",
            value: -2
        }
    );
}

#[test]
fn wire_groups_golden_heartbeat_request() {
    let request = ConsumerGroupHeartbeatRequest {
        group_id: "g".to_owned(),
        member_id: String::new(),
        member_epoch: MEMBER_EPOCH_JOIN,
        instance_id: None,
        rebalance_timeout_ms: 1000,
        session_timeout_ms: 45_000,
        subscribed_topics: Some(vec!["t".to_owned()]),
        assignor: None,
        owned: Some(vec![TopicPartitions {
            topic: "t".to_owned(),
            partitions: vec![1, 2],
        }]),
    };
    let mut buf = BytesMut::new();
    request.encode(&mut buf).expect("fits");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        1, 0, b'g',                 // group_id
        0, 0,                       // member_id ""
        0, 0, 0, 0,                 // member_epoch 0
        0xFF, 0xFF,                 // instance_id null
        0xE8, 0x03, 0, 0,           // rebalance_timeout_ms 1000
        0xC8, 0xAF, 0, 0,           // session_timeout_ms 45000
        1, 0, 0, 0, 1, 0, b't',     // subscribed_topics ["t"]
        0xFF, 0xFF,                 // assignor null
        1, 0, 0, 0,                 // owned: one topic
        1, 0, b't',                 //   "t"
        2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, // [1, 2]
    ];
    assert_eq!(&buf[..], expected);
}

pub(crate) fn group_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        heartbeat_request().prop_map(Request::ConsumerGroupHeartbeat),
        leave_request().prop_map(Request::LeaveGroup),
        commit_request().prop_map(Request::OffsetCommit),
        fetch_request().prop_map(Request::OffsetFetch),
        Just(Request::ListGroups(ListGroupsRequest {})),
        describe_request().prop_map(Request::DescribeGroups),
        delete_request().prop_map(Request::DeleteGroups),
        reset_request().prop_map(Request::ResetOffsets),
    ]
}

pub(crate) fn group_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        heartbeat_response().prop_map(Response::ConsumerGroupHeartbeat),
        leave_response().prop_map(Response::LeaveGroup),
        commit_response().prop_map(Response::OffsetCommit),
        fetch_response().prop_map(Response::OffsetFetch),
        list_response().prop_map(Response::ListGroups),
        describe_response().prop_map(Response::DescribeGroups),
        delete_response().prop_map(Response::DeleteGroups),
        reset_response().prop_map(Response::ResetOffsets),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]

    /// Whole request frames of the group APIs, read as the broker reads them.
    #[test]
    fn wire_groups_request_frames_round_trip(request in group_request(), id in any::<u32>()) {
        let header = header_for(&request, id, "client".to_owned());
        let mut frame = BytesMut::new();
        encode_request_frame(&header, &request, &mut frame).expect("fits");
        let (h, r) = read_request_frame(frame, FRAME_BYTES_MAX_DEFAULT).expect("decodes");
        prop_assert_eq!(h, header);
        prop_assert_eq!(r, request);
    }

    /// Whole response frames, read as the client reads them; the vectored
    /// encoding of a group response is the same bytes.
    #[test]
    fn wire_groups_response_frames_round_trip(response in group_response(), id in any::<u32>()) {
        let header = ResponseHeader { correlation_id: id };
        let mut frame = BytesMut::new();
        encode_response_frame(&header, &response, &mut frame).expect("fits");
        let chunks = encode_response_frame_vectored(&header, &response).expect("fits");
        prop_assert_eq!(chunks.concat(), frame.to_vec());
        let key = response.api_key();
        let (h, r) = read_response_frame(frame.freeze(), key, FRAME_BYTES_MAX_DEFAULT)
            .expect("decodes");
        prop_assert_eq!(h, header);
        prop_assert_eq!(r, response);
    }
}

#[test]
fn wire_groups_apis_are_supported_at_version_zero() {
    let group_keys = [
        ApiKey::ConsumerGroupHeartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::ResetOffsets,
    ];
    for key in group_keys {
        assert_eq!(key.supported_versions(), Some(0..=0), "{key:?}");
        assert!(SUPPORTED_APIS.iter().any(|a| a.key == key.code()));
        let err = Response::decode(key, 1, &mut Bytes::new()).unwrap_err();
        assert_eq!(err, WireError::UnsupportedVersion { key, version: 1 });
    }
}
