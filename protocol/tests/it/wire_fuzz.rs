//! Hostile input: every decoder, fed truncated frames, random bytes or
//! valid frames with corrupted bytes, returns an error or a value whose
//! re-encoding is exactly the bytes it consumed — and never panics.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use rill_protocol::wire::*;

use crate::wire_common::*;

/// Implemented APIs, whose bodies the decoders know.
const IMPLEMENTED: [ApiKey; 7] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::ListOffsets,
    ApiKey::Produce,
    ApiKey::Fetch,
];

/// The encoding is canonical, so any body a decoder accepts must re-encode
/// to exactly the bytes it was decoded from.
fn check_request_body(key: ApiKey, body: &[u8]) -> Result<(), TestCaseError> {
    let header = RequestHeader {
        api_key: key,
        api_version: 0,
        correlation_id: 1,
        client_id: String::new(),
    };
    if let Ok(request) = Request::decode(&header, &mut BytesMut::from(body)) {
        prop_assert_eq!(request.api_key(), key);
        prop_assert_eq!(&request_body(&request)[..], body);
    }
    Ok(())
}

fn check_response_body(key: ApiKey, body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(response) = Response::decode(key, 0, &mut Bytes::copy_from_slice(body)) {
        prop_assert_eq!(response.api_key(), key);
        prop_assert_eq!(&response_body(&response)[..], body);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(WIRE_CASES))]

    /// Cutting a request frame's bytes anywhere short of the end is an
    /// error, never a panic or a silently shorter request.
    #[test]
    fn wire_truncated_request_frames_fail(request in request(), client_id in string()) {
        let header = header_for(&request, 7, client_id);
        let mut frame = BytesMut::new();
        encode_request_frame(&header, &request, &mut frame).expect("fits");
        let frame = frame.split_off(FRAME_LENGTH_PREFIX_BYTES);
        for cut in 0..frame.len() {
            let mut partial = BytesMut::from(&frame[..cut]);
            let result = RequestHeader::decode(&mut partial)
                .and_then(|h| Request::decode(&h, &mut partial));
            prop_assert!(result.is_err(), "cut at {} of {} decoded", cut, frame.len());
        }
    }

    /// The same for responses, and for each body decoder called directly.
    #[test]
    fn wire_truncated_response_frames_fail(response in response()) {
        let key = response.api_key();
        let body = response_body(&response);
        for cut in 0..body.len() {
            let partial = Bytes::copy_from_slice(&body[..cut]);
            prop_assert!(Response::decode(key, 0, &mut partial.clone()).is_err(),
                "cut at {} of {} decoded", cut, body.len());
            let mut header_too = Bytes::from([&[0u8; 4][..], &partial[..]].concat());
            let result = ResponseHeader::decode(&mut header_too)
                .and_then(|_| Response::decode(key, 0, &mut header_too));
            prop_assert!(result.is_err());
        }
    }

    /// Random bytes as the body of every implemented request and response.
    #[test]
    fn wire_garbage_bodies_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        for key in IMPLEMENTED {
            check_request_body(key, &bytes)?;
            check_response_body(key, &bytes)?;
        }
    }

    /// Random bytes as a whole request frame (prefix, header, body).
    #[test]
    fn wire_garbage_request_frames_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let mut frame = BytesMut::from(&bytes[..]);
        if let Ok(header) = RequestHeader::decode(&mut frame) {
            let _ = Request::decode(&header, &mut frame);
        }
        let _ = read_request_frame(BytesMut::from(&bytes[..]), 256);
        let mut frame = Bytes::from(bytes);
        if ResponseHeader::decode(&mut frame).is_ok() {
            for key in ApiKey::ALL {
                let _ = Response::decode(*key, 0, &mut frame.clone());
            }
        }
    }

    /// Valid bodies with a few bytes overwritten: deeper than pure garbage,
    /// since the outer counts and lengths are mostly still plausible.
    #[test]
    fn wire_corrupted_request_bodies_never_panic(
        request in request(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut body = request_body(&request).to_vec();
        if !body.is_empty() {
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
        }
        check_request_body(request.api_key(), &body)?;
    }

    #[test]
    fn wire_corrupted_response_bodies_never_panic(
        response in response(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut body = response_body(&response).to_vec();
        if !body.is_empty() {
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
        }
        check_response_body(response.api_key(), &body)?;
    }
}
