//! Scenarios with a known answer: limits checked before allocating, the
//! typed error for each kind of bad input, zero-copy decoding of records,
//! and golden bytes pinning the documented layout.

use bytes::{BufMut, Bytes, BytesMut};
use rill_protocol::limits::{FRAME_BYTES_MAX_DEFAULT, WIRE_ARRAY_ITEMS_MAX};
use rill_protocol::wire::*;

use crate::wire_common::*;

fn header(api_key: ApiKey, api_version: u16) -> RequestHeader {
    RequestHeader {
        api_key,
        api_version,
        correlation_id: 42,
        client_id: "c".into(),
    }
}

#[test]
fn wire_frame_length_over_limit_is_rejected() {
    let max = FRAME_BYTES_MAX_DEFAULT;
    let at_max = u32::try_from(max).expect("limit fits u32").to_le_bytes();
    assert_eq!(decode_frame_length(at_max, max), Ok(max));
    let over = u32::try_from(max + 1).expect("fits u32").to_le_bytes();
    assert_eq!(
        decode_frame_length(over, max),
        Err(WireError::FrameTooLarge { len: max + 1, max })
    );
    assert_eq!(
        decode_frame_length([0xFF; 4], 1024),
        Err(WireError::FrameTooLarge {
            len: u32::MAX as usize,
            max: 1024
        })
    );
    // A lowered limit applies too: the broker's config is the parameter.
    assert_eq!(
        decode_frame_length(17u32.to_le_bytes(), 16).map_err(|e| e.error_code()),
        Err(ErrorCode::FrameTooLarge)
    );
}

/// A count of four billion items in an 8-byte body: allocating first would
/// abort the process; the decoder answers with a typed error instead.
#[test]
fn wire_huge_array_count_rejected_before_allocation() {
    let mut body = BytesMut::new();
    body.put_u32_le(u32::MAX - 1);
    body.put_u32_le(0);
    let err = DeleteTopicsRequest::decode(&mut body.clone()).unwrap_err();
    assert_eq!(
        err,
        WireError::ArrayTooLong {
            count: (u32::MAX - 1) as usize,
            max: 2
        }
    );

    // Even with the bytes present, a count over the named maximum fails.
    let items = WIRE_ARRAY_ITEMS_MAX + 1;
    let mut body = BytesMut::new();
    body.put_u32_le(u32::try_from(items).expect("fits"));
    body.put_bytes(0, items * 2);
    let err = DeleteTopicsRequest::decode(&mut body).unwrap_err();
    assert_eq!(
        err,
        WireError::ArrayTooLong {
            count: items,
            max: WIRE_ARRAY_ITEMS_MAX
        }
    );
}

#[test]
fn wire_string_and_blob_lengths_checked_against_remaining_bytes() {
    // Metadata request: one topic name claiming 65535 bytes, 2 present.
    let mut body = BytesMut::new();
    body.put_u32_le(1);
    body.put_u16_le(u16::MAX);
    body.put_slice(b"ab");
    assert_eq!(
        MetadataRequest::decode(&mut body).unwrap_err(),
        WireError::Truncated {
            needed: 65535,
            available: 2
        }
    );

    // Fetch response: a records blob claiming 4 GiB.
    let mut body = BytesMut::new();
    body.put_i16_le(0); // error
    body.put_u32_le(1); // topics
    body.put_u16_le(1);
    body.put_slice(b"t");
    body.put_u32_le(1); // partitions
    body.put_u32_le(0);
    body.put_i16_le(0);
    body.put_u64_le(0);
    body.put_u64_le(0);
    body.put_u32_le(u32::MAX);
    body.put_slice(&[0; 8]);
    assert_eq!(
        FetchResponse::decode(&mut body.freeze()).unwrap_err(),
        WireError::Truncated {
            needed: u32::MAX as usize,
            available: 8
        }
    );
}

#[test]
fn wire_unknown_api_key_is_typed() {
    for key in [7u16, 8, 9, 20, 999, u16::MAX] {
        let mut frame = BytesMut::new();
        frame.put_u16_le(key);
        frame.put_u16_le(0);
        frame.put_u32_le(1);
        frame.put_u16_le(0);
        assert_eq!(
            RequestHeader::decode(&mut frame),
            Err(WireError::UnknownApiKey(key))
        );
        assert_eq!(ApiKey::from_u16(key), Err(WireError::UnknownApiKey(key)));
    }
    assert_eq!(
        WireError::UnknownApiKey(7).error_code(),
        ErrorCode::UnknownApi
    );
}

#[test]
fn wire_unsupported_version_is_typed() {
    let err = Request::decode(&header(ApiKey::Fetch, 1), &mut BytesMut::new()).unwrap_err();
    assert_eq!(
        err,
        WireError::UnsupportedVersion {
            key: ApiKey::Fetch,
            version: 1
        }
    );
    assert_eq!(err.error_code(), ErrorCode::UnsupportedVersion);
    let err = Response::decode(ApiKey::Metadata, 3, &mut Bytes::new()).unwrap_err();
    assert_eq!(
        err,
        WireError::UnsupportedVersion {
            key: ApiKey::Metadata,
            version: 3
        }
    );
    // Every defined key is implemented at version 0 (and only 0).
    for key in ApiKey::ALL {
        assert_eq!(key.supported_versions(), Some(0..=0));
        let err = Request::decode(&header(*key, 1), &mut BytesMut::new()).unwrap_err();
        assert_eq!(
            err,
            WireError::UnsupportedVersion {
                key: *key,
                version: 1
            }
        );
    }
}

#[test]
fn wire_trailing_bytes_are_rejected() {
    let mut body = BytesMut::from(&[0u8, 0, 0, 0, 0xAB, 0xCD][..]);
    let err = Request::decode(&header(ApiKey::DeleteTopics, 0), &mut body).unwrap_err();
    assert_eq!(err, WireError::TrailingBytes(2));
    assert_eq!(err.error_code(), ErrorCode::InvalidRequest);
    let mut body = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 1]);
    let err = Response::decode(ApiKey::ApiVersions, 0, &mut body).unwrap_err();
    assert_eq!(err, WireError::TrailingBytes(1));
}

#[test]
fn wire_invalid_values_are_typed() {
    // validate_only must be 0 or 1.
    let mut body = BytesMut::from(&[0u8, 0, 0, 0, 2][..]);
    assert_eq!(
        CreateTopicsRequest::decode(&mut body),
        Err(WireError::InvalidValue {
            field: "validate_only",
            value: 2
        })
    );
    // acks must be 0, 1 or -1.
    let mut body = BytesMut::new();
    body.put_i16_le(2);
    body.put_u32_le(0);
    body.put_u32_le(0);
    assert_eq!(
        ProduceRequest::decode(&mut body),
        Err(WireError::InvalidValue {
            field: "acks",
            value: 2
        })
    );
    // A nullable string's only negative length is -1.
    let mut body = BytesMut::new();
    body.put_u32_le(1);
    body.put_u16_le(0); // name ""
    body.put_i16_le(0); // error
    body.put_i16_le(-2);
    assert!(matches!(
        CreateTopicsResponse::decode(&mut body.freeze()),
        Err(WireError::InvalidValue { value: -2, .. })
    ));
    // Strings must be UTF-8.
    let mut body = BytesMut::new();
    body.put_u32_le(1);
    body.put_u16_le(2);
    body.put_slice(&[0xC3, 0x28]);
    assert!(matches!(
        DeleteTopicsRequest::decode(&mut body),
        Err(WireError::BadString(_))
    ));
}

#[test]
fn wire_values_too_long_fail_to_encode_and_leave_buffer_alone() {
    let long = "x".repeat(usize::from(u16::MAX) + 1);
    let request = Request::DeleteTopics(DeleteTopicsRequest {
        names: vec!["ok".into(), long],
    });
    let mut buf = BytesMut::from(&b"earlier frame"[..]);
    let err =
        encode_request_frame(&header(ApiKey::DeleteTopics, 0), &request, &mut buf).unwrap_err();
    assert!(matches!(
        err,
        WireError::TooLong {
            len: 65536,
            max: 65535,
            ..
        }
    ));
    assert_eq!(&buf[..], b"earlier frame");

    let message = Some("m".repeat(usize::try_from(i16::MAX).expect("fits") + 1));
    let response = CreateTopicsResponse {
        topics: vec![CreatableTopicResult {
            name: "t".into(),
            error: ErrorCode::InvalidConfig,
            error_message: message,
        }],
    };
    assert!(matches!(
        response.encode(&mut buf),
        Err(WireError::TooLong { max: 32767, .. })
    ));
    assert_eq!(&buf[..], b"earlier frame");
    assert!(encode_response_frame_vectored(
        &ResponseHeader { correlation_id: 1 },
        &Response::CreateTopics(response)
    )
    .is_err());
}

#[test]
fn wire_header_must_match_request() {
    let request = Request::Metadata(MetadataRequest { topics: None });
    let mut buf = BytesMut::new();
    let err = encode_request_frame(&header(ApiKey::Fetch, 0), &request, &mut buf).unwrap_err();
    assert!(matches!(
        err,
        WireError::InvalidValue {
            field: "api_key",
            ..
        }
    ));
    assert!(buf.is_empty());
}

/// Produce records come out as slices of the frame's own allocation (no
/// copy), each its own `BytesMut` the broker can patch in place.
#[test]
fn wire_produce_records_are_split_from_the_frame() {
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 1000,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: vec![
                ProducePartition {
                    partition: 0,
                    records: BytesMut::from(&[1u8; 100][..]),
                },
                ProducePartition {
                    partition: 1,
                    records: BytesMut::from(&[2u8; 50][..]),
                },
            ],
        }],
    });
    let mut frame = BytesMut::new();
    encode_request_frame(&header(ApiKey::Produce, 0), &request, &mut frame).expect("fits");
    let range = frame.as_ptr_range();
    let (_, decoded) = read_request_frame(frame, FRAME_BYTES_MAX_DEFAULT).expect("decodes");
    let Request::Produce(mut produce) = decoded else {
        panic!("not a produce")
    };
    let partitions = &mut produce.topics[0].partitions;
    for p in partitions.iter() {
        assert!(range.contains(&p.records.as_ptr()), "records were copied");
    }
    // Stamping one partition's bytes leaves the other's untouched.
    partitions[0].records[..8].copy_from_slice(&7u64.to_le_bytes());
    assert_eq!(&partitions[0].records[..8], &7u64.to_le_bytes());
    assert_eq!(&partitions[0].records[8..], &[1u8; 92][..]);
    assert_eq!(&partitions[1].records[..], &[2u8; 50][..]);
}

#[test]
fn wire_fetch_records_are_slices_of_the_frame() {
    let response = Response::Fetch(FetchResponse {
        error: ErrorCode::None,
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 3,
                error: ErrorCode::None,
                high_watermark: 10,
                log_start_offset: 0,
                records: Bytes::from(vec![9u8; 300]),
            }],
        }],
    });
    let mut frame = BytesMut::new();
    encode_response_frame(&ResponseHeader { correlation_id: 5 }, &response, &mut frame)
        .expect("fits");
    let frame = frame.freeze();
    let range = frame.as_ptr_range();
    let (header, decoded) =
        read_response_frame(frame, ApiKey::Fetch, FRAME_BYTES_MAX_DEFAULT).expect("decodes");
    assert_eq!(header.correlation_id, 5);
    let Response::Fetch(fetch) = &decoded else {
        panic!("not a fetch")
    };
    let records = &fetch.topics[0].partitions[0].records;
    assert!(range.contains(&records.as_ptr()), "records were copied");
    assert_eq!(decoded, response);
}

/// The bytes of the module docs, written out by hand.
#[test]
fn wire_golden_metadata_request_frame() {
    let request = Request::Metadata(MetadataRequest {
        topics: Some(vec!["t".into()]),
    });
    let header = RequestHeader {
        api_key: ApiKey::Metadata,
        api_version: 0,
        correlation_id: 7,
        client_id: "c".into(),
    };
    let mut buf = BytesMut::new();
    encode_request_frame(&header, &request, &mut buf).expect("fits");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        18, 0, 0, 0,      // frame length
        1, 0,             // api_key Metadata
        0, 0,             // api_version
        7, 0, 0, 0,       // correlation_id
        1, 0, b'c',       // client_id
        1, 0, 0, 0,       // topics: 1
        1, 0, b't',       // "t"
    ];
    assert_eq!(&buf[..], expected);

    let all = Request::Metadata(MetadataRequest { topics: None });
    let mut buf = BytesMut::new();
    encode_request_frame(&header, &all, &mut buf).expect("fits");
    assert_eq!(&buf[..4], &15u32.to_le_bytes());
    assert_eq!(&buf[15..], &[0xFF, 0xFF, 0xFF, 0xFF], "null array");
}

#[test]
fn wire_golden_fetch_response_frame() {
    let response = Response::Fetch(FetchResponse {
        error: ErrorCode::None,
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 2,
                error: ErrorCode::UnknownTopicOrPartition,
                high_watermark: 10,
                log_start_offset: 1,
                records: Bytes::from_static(&[0xAA, 0xBB]),
            }],
        }],
    });
    let mut buf = BytesMut::new();
    encode_response_frame(&ResponseHeader { correlation_id: 9 }, &response, &mut buf)
        .expect("fits");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        45, 0, 0, 0,                 // frame length
        9, 0, 0, 0,                  // correlation_id
        0, 0,                        // error None
        1, 0, 0, 0,                  // topics: 1
        1, 0, b't',                  // name
        1, 0, 0, 0,                  // partitions: 1
        2, 0, 0, 0,                  // partition
        3, 0,                        // error UnknownTopicOrPartition
        10, 0, 0, 0, 0, 0, 0, 0,     // high_watermark
        1, 0, 0, 0, 0, 0, 0, 0,      // log_start_offset
        2, 0, 0, 0, 0xAA, 0xBB,      // records
    ];
    assert_eq!(&buf[..], expected);
}

#[test]
fn wire_api_versions_response_lists_the_table() {
    let response = ApiVersionsResponse::supported();
    assert_eq!(response.error, ErrorCode::None);
    let keys: Vec<ApiKey> = response
        .apis
        .iter()
        .map(|a| a.api_key().expect("known"))
        .collect();
    assert_eq!(keys, ApiKey::ALL);
    assert!(response.apis.iter().all(|a| a.min == 0 && a.max == 0));
    for api in &response.apis {
        let key = api.api_key().expect("known");
        assert_eq!(key.supported_versions(), Some(0..=0));
        assert!(key.check_version(0).is_ok());
        assert!(key.check_version(1).is_err());
    }
}
