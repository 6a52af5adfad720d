//! Property: every request and response, with random contents, survives
//! encode -> frame -> decode unchanged; `encoded_len` is exact; the
//! vectored Fetch encoding equals the copying one and shares the records.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
use rill_protocol::wire::*;

use crate::wire_common::*;

/// Each top-level body type on its own: `decode(encode(x)) == x`, the
/// whole buffer consumed, and `encoded_len` equal to what was written.
macro_rules! body_roundtrip {
    ($name:ident, $ty:ty, $strategy:expr, $buf:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]
            #[test]
            fn $name(value in $strategy) {
                let mut buf = BytesMut::from(&b"prefix"[..]);
                value.encode(&mut buf).expect("test values fit the wire");
                let mut body: $buf = buf.split_off(6).into();
                prop_assert_eq!(value.encoded_len().expect("fits"), body.len());
                let decoded = <$ty>::decode(&mut body).expect("own encoding decodes");
                prop_assert!(body.is_empty(), "{} bytes left over", body.len());
                prop_assert_eq!(decoded, value);
            }
        }
    };
}

body_roundtrip!(
    wire_api_versions_request_body,
    ApiVersionsRequest,
    api_versions_request(),
    BytesMut
);
body_roundtrip!(
    wire_api_versions_response_body,
    ApiVersionsResponse,
    api_versions_response(),
    Bytes
);
body_roundtrip!(
    wire_metadata_request_body,
    MetadataRequest,
    metadata_request(),
    BytesMut
);
body_roundtrip!(
    wire_metadata_response_body,
    MetadataResponse,
    metadata_response(),
    Bytes
);
body_roundtrip!(
    wire_create_topics_request_body,
    CreateTopicsRequest,
    create_topics_request(),
    BytesMut
);
body_roundtrip!(
    wire_create_topics_response_body,
    CreateTopicsResponse,
    create_topics_response(),
    Bytes
);
body_roundtrip!(
    wire_delete_topics_request_body,
    DeleteTopicsRequest,
    delete_topics_request(),
    BytesMut
);
body_roundtrip!(
    wire_delete_topics_response_body,
    DeleteTopicsResponse,
    delete_topics_response(),
    Bytes
);
body_roundtrip!(
    wire_list_offsets_request_body,
    ListOffsetsRequest,
    list_offsets_request(),
    BytesMut
);
body_roundtrip!(
    wire_list_offsets_response_body,
    ListOffsetsResponse,
    list_offsets_response(),
    Bytes
);
body_roundtrip!(
    wire_produce_request_body,
    ProduceRequest,
    produce_request(),
    BytesMut
);
body_roundtrip!(
    wire_produce_response_body,
    ProduceResponse,
    produce_response(),
    Bytes
);
body_roundtrip!(
    wire_fetch_request_body,
    FetchRequest,
    fetch_request(),
    BytesMut
);
body_roundtrip!(
    wire_fetch_response_body,
    FetchResponse,
    fetch_response(),
    Bytes
);
body_roundtrip!(
    wire_find_coordinator_request_body,
    FindCoordinatorRequest,
    find_coordinator_request(),
    BytesMut
);
body_roundtrip!(
    wire_find_coordinator_response_body,
    FindCoordinatorResponse,
    find_coordinator_response(),
    Bytes
);

/// FindCoordinator's bytes, pinned.
#[test]
fn wire_find_coordinator_layout() {
    let mut buf = BytesMut::new();
    FindCoordinatorRequest {
        key: "g1".into(),
        key_type: COORDINATOR_KEY_GROUP,
    }
    .encode(&mut buf)
    .expect("fits");
    assert_eq!(&buf[..], &[2, 0, b'g', b'1', 0][..]);
    let mut buf = BytesMut::new();
    let response = FindCoordinatorResponse {
        error: ErrorCode::None,
        node_id: 2,
        host: "h".into(),
        port: 9092,
    };
    response.encode(&mut buf).expect("fits");
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0, 0,                       // error None
        2, 0, 0, 0,                 // node_id
        1, 0, b'h',                 // host
        0x84, 0x23,                 // port 9092
    ];
    assert_eq!(&buf[..], expected);
    let decoded = FindCoordinatorResponse::decode(&mut buf.freeze()).expect("decodes");
    assert_eq!(decoded, response);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]

    /// Whole request frames, read as the broker reads them.
    #[test]
    fn wire_request_frame_roundtrip(
        request in request(),
        correlation_id in any::<u32>(),
        client_id in string(),
    ) {
        let header = header_for(&request, correlation_id, client_id);
        let mut buf = BytesMut::new();
        encode_request_frame(&header, &request, &mut buf).expect("fits");
        let (got_header, got_request) =
            read_request_frame(buf, FRAME_BYTES_MAX_DEFAULT).expect("own frame decodes");
        prop_assert_eq!(got_header, header);
        prop_assert_eq!(got_request, request);
    }

    /// Whole response frames, read as the client reads them.
    #[test]
    fn wire_response_frame_roundtrip(response in response(), correlation_id in any::<u32>()) {
        let header = ResponseHeader { correlation_id };
        let mut buf = BytesMut::new();
        encode_response_frame(&header, &response, &mut buf).expect("fits");
        let (got_header, got_response) =
            read_response_frame(buf.freeze(), response.api_key(), FRAME_BYTES_MAX_DEFAULT)
                .expect("own frame decodes");
        prop_assert_eq!(got_header, header);
        prop_assert_eq!(got_response, response);
    }

    /// The vectored frame is byte for byte the copying frame; every
    /// non-empty records blob is its own chunk pointing at the caller's
    /// buffer; small fields are coalesced (at most one chunk between blobs).
    #[test]
    fn wire_vectored_frame_equals_copying_frame(
        response in response(),
        correlation_id in any::<u32>(),
    ) {
        let header = ResponseHeader { correlation_id };
        let mut copied = BytesMut::new();
        encode_response_frame(&header, &response, &mut copied).expect("fits");
        let chunks = encode_response_frame_vectored(&header, &response).expect("fits");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        prop_assert_eq!(&joined[..], &copied[..]);

        let blobs: Vec<&Bytes> = match &response {
            Response::Fetch(fetch) => fetch
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| &p.records))
                .filter(|r| !r.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        for blob in &blobs {
            prop_assert!(
                chunks.iter().any(|c| c.as_ptr() == blob.as_ptr() && c.len() == blob.len()),
                "records blob was copied instead of shared"
            );
        }
        prop_assert!(chunks.len() <= 2 * blobs.len() + 1, "{} chunks for {} blobs", chunks.len(), blobs.len());
        prop_assert!(chunks.iter().all(|c| !c.is_empty()));
    }

    /// `FetchResponse::encode_vectored` (body only) equals `encode`.
    #[test]
    fn wire_fetch_body_vectored_equals_encode(response in fetch_response()) {
        let mut copied = BytesMut::new();
        response.encode(&mut copied).expect("fits");
        let chunks = response.encode_vectored().expect("fits");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        prop_assert_eq!(&joined[..], &copied[..]);
    }
}

/// The same request over caller-kept `Bytes` batches.
fn shared(request: &ProduceRequest) -> SharedProduceRequest {
    SharedProduceRequest {
        acks: request.acks,
        timeout_ms: request.timeout_ms,
        topics: request
            .topics
            .iter()
            .map(|t| SharedProduceTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| SharedProducePartition {
                        partition: p.partition,
                        records: Bytes::copy_from_slice(&p.records),
                    })
                    .collect(),
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]

    /// The vectored Produce frame is byte for byte the copying frame of the
    /// equivalent request, decodes as it, and shares every non-empty batch.
    #[test]
    fn wire_vectored_produce_frame_equals_copying_frame(
        request in produce_request(),
        correlation_id in any::<u32>(),
        client_id in "[a-z0-9-]{0,12}",
    ) {
        let as_request = Request::Produce(request.clone());
        let header = header_for(&as_request, correlation_id, client_id);
        let mut copied = BytesMut::new();
        encode_request_frame(&header, &as_request, &mut copied).expect("fits");
        let parts = shared(&request);
        let chunks = encode_produce_frame_vectored(&header, &parts).expect("fits");
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        prop_assert_eq!(&joined[..], &copied[..]);
        for blob in parts.topics.iter().flat_map(|t| t.partitions.iter()).map(|p| &p.records) {
            prop_assert!(
                blob.is_empty()
                    || chunks.iter().any(|c| c.as_ptr() == blob.as_ptr() && c.len() == blob.len()),
                "batch was copied instead of shared"
            );
        }
        prop_assert!(chunks.iter().all(|c| !c.is_empty()));
    }
}

/// A header naming another API is refused, not encoded as a Produce.
#[test]
fn wire_vectored_produce_frame_refuses_a_foreign_header() {
    let header = RequestHeader {
        api_key: ApiKey::Fetch,
        api_version: 0,
        correlation_id: 1,
        client_id: "c".into(),
    };
    assert!(matches!(
        encode_produce_frame_vectored(&header, &SharedProduceRequest::default()),
        Err(WireError::InvalidValue {
            field: "api_key",
            ..
        })
    ));
}
