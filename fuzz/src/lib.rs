//! The checks every fuzz target runs, one per decoder the broker (or the
//! client) runs on bytes from the network.
//!
//! They live in this plain library, with no libFuzzer dependency, so that
//! two drivers share one definition: the libFuzzer targets in
//! `fuzz_targets/` (`scripts/fuzz.sh`, needs `cargo fuzz`) and the corpus
//! replay test in `protocol/tests/it/fuzz_corpus.rs`, which includes this
//! file by path and runs in every `cargo test`.
//!
//! Each check takes arbitrary bytes and asserts properties that hold for
//! *any* input: the decoder returns (no panic, no abort, no runaway
//! allocation), and whatever it accepts is canonical — re-encoding the
//! decoded value gives back exactly the bytes it came from. A panic here is
//! a crash found.
//!
//! # Layout
//! - [`TARGETS`]: the target names (= corpus directory names) and their checks.
//! - [`request_frame`], [`request_body`], [`response`]: the wire decoders.
//! - [`batch`], [`batch_iter`]: the record batch readers.
//! - [`peer_frame`]: the inter-broker frame decoder.

use bytes::{Bytes, BytesMut};
use rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
use rill_protocol::limits::PEER_FRAME_BYTES_MAX;
use rill_protocol::peer::{decode_peer_frame_length, PeerFrame, PEER_LENGTH_PREFIX_BYTES};
use rill_protocol::wire::{
    decode_frame_length, encode_request_frame, encode_response_frame, ApiKey, Request,
    RequestHeader, Response, ResponseHeader, FRAME_LENGTH_PREFIX_BYTES,
};
use rill_protocol::{BatchIter, BatchView};

/// Bytes before a `request_body` / `response` input's payload: the API key
/// the body is decoded as (`u16`, little-endian).
pub const SELECTOR_BYTES: usize = std::mem::size_of::<u16>();

/// One fuzz target: its name (also its corpus directory under
/// `fuzz/corpus/`) and its check.
pub struct Target {
    pub name: &'static str,
    /// Runs the decoder; true if it accepted the input.
    pub check: fn(&[u8]) -> bool,
}

/// Every target, in the order the replay test runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "request_frame",
        check: request_frame,
    },
    Target {
        name: "request_body",
        check: request_body,
    },
    Target {
        name: "response",
        check: response,
    },
    Target {
        name: "batch",
        check: batch,
    },
    Target {
        name: "batch_iter",
        check: batch_iter,
    },
    Target {
        name: "peer_frame",
        check: peer_frame,
    },
];

/// A whole request frame as the broker reads it: length prefix (checked
/// against the default limit and against the bytes present), header, body.
pub fn request_frame(data: &[u8]) -> bool {
    let Some((prefix, rest)) = data.split_first_chunk::<FRAME_LENGTH_PREFIX_BYTES>() else {
        return false;
    };
    let Ok(len) = decode_frame_length(*prefix, FRAME_BYTES_MAX_DEFAULT) else {
        return false;
    };
    // The broker reads exactly `len` bytes; a shorter input is a frame
    // still arriving, a longer one the start of the next frame.
    let Some(frame) = rest.get(..len) else {
        return false;
    };
    let mut body = BytesMut::from(frame);
    let Ok(header) = RequestHeader::decode(&mut body) else {
        return false;
    };
    let Ok(request) = Request::decode(&header, &mut body) else {
        return false;
    };
    assert_eq!(request.api_key(), header.api_key);
    let mut again = BytesMut::new();
    let encoded = encode_request_frame(&header, &request, &mut again);
    assert!(
        encoded.is_ok(),
        "accepted request does not re-encode: {encoded:?}"
    );
    assert_eq!(
        again.get(..FRAME_LENGTH_PREFIX_BYTES + len),
        data.get(..FRAME_LENGTH_PREFIX_BYTES + len),
        "accepted request frame is not canonical"
    );
    true
}

/// The API named by the first two bytes, or `None` if they name none.
fn selected_api(data: &[u8]) -> Option<(ApiKey, &[u8])> {
    let (selector, rest) = data.split_first_chunk::<SELECTOR_BYTES>()?;
    let key = ApiKey::from_u16(u16::from_le_bytes(*selector)).ok()?;
    Some((key, rest))
}

/// One request body of the API named by the first two bytes, decoded with a
/// version-0 header: reaches each body decoder without having to find a
/// valid header first.
pub fn request_body(data: &[u8]) -> bool {
    let Some((key, body)) = selected_api(data) else {
        return false;
    };
    let header = RequestHeader {
        api_key: key,
        api_version: 0,
        correlation_id: 0,
        client_id: String::new(),
    };
    let Ok(request) = Request::decode(&header, &mut BytesMut::from(body)) else {
        return false;
    };
    assert_eq!(request.api_key(), key);
    let mut again = BytesMut::new();
    let encoded = encode_request_frame(&header, &request, &mut again);
    assert!(
        encoded.is_ok(),
        "accepted request does not re-encode: {encoded:?}"
    );
    let header_len = again.len().saturating_sub(body.len());
    assert_eq!(
        again.get(header_len..),
        Some(body),
        "accepted request body is not canonical"
    );
    true
}

/// A response frame's contents (header + body, no prefix) decoded as the
/// answer to the API named by the first two bytes: what the client runs on
/// the broker's bytes.
pub fn response(data: &[u8]) -> bool {
    let Some((key, frame)) = selected_api(data) else {
        return false;
    };
    let mut buf = Bytes::copy_from_slice(frame);
    let Ok(header) = ResponseHeader::decode(&mut buf) else {
        return false;
    };
    let Ok(response) = Response::decode(key, 0, &mut buf) else {
        return false;
    };
    assert_eq!(response.api_key(), key);
    let mut again = BytesMut::new();
    let encoded = encode_response_frame(&header, &response, &mut again);
    assert!(
        encoded.is_ok(),
        "accepted response does not re-encode: {encoded:?}"
    );
    assert_eq!(
        again.get(FRAME_LENGTH_PREFIX_BYTES..),
        Some(frame),
        "accepted response is not canonical"
    );
    true
}

/// One batch as the broker checks a produced one: header and length, CRC,
/// then the full payload validation and every record field.
pub fn batch(data: &[u8]) -> bool {
    let Ok(view) = BatchView::new(data) else {
        return false;
    };
    assert!(view.len() <= data.len());
    let crc_ok = view.validate().is_ok();
    let full = view.validate_full();
    if full.is_ok() {
        assert!(crc_ok, "validate_full accepted a batch validate rejects");
    }
    if let Ok(records) = view.records() {
        touch_records(&records);
    }
    match full {
        Ok(records) => {
            touch_records(&records);
            true
        }
        Err(_) => false,
    }
}

fn touch_records(records: &rill_protocol::Records<'_>) {
    let mut seen = 0usize;
    for r in records {
        let _ = (r.offset, r.timestamp, r.key().map(<[u8]>::len));
        let _ = r.value().len();
        for (name, value) in r.headers() {
            let _ = (name.len(), value.len());
        }
        seen += 1;
    }
    assert_eq!(seen, records.len(), "record iterator and len disagree");
}

/// A run of batches as a consumer reads a fetch response's records blob;
/// accepted if at least one whole batch came out and passed its CRC.
pub fn batch_iter(data: &[u8]) -> bool {
    let mut valid = 0usize;
    let mut it = BatchIter::new(data);
    let mut yielded = 0usize;
    // A malformed header yields one error and ends the iteration.
    for view in it.by_ref().flatten() {
        yielded += view.len();
        if view.validate().is_ok() {
            valid += 1;
            if let Ok(records) = view.records() {
                touch_records(&records);
            }
        }
    }
    assert_eq!(
        it.consumed(),
        yielded,
        "consumed() is not the sum of batch lengths"
    );
    assert!(it.consumed() <= data.len());
    assert_eq!(it.consumed() + it.remaining().len(), data.len());
    valid > 0
}

/// A whole inter-broker frame as a broker's peer listener reads it: length
/// prefix (checked against the limit and the bytes present), then the body.
pub fn peer_frame(data: &[u8]) -> bool {
    let Some((prefix, rest)) = data.split_first_chunk::<PEER_LENGTH_PREFIX_BYTES>() else {
        return false;
    };
    let Ok(len) = decode_peer_frame_length(*prefix, PEER_FRAME_BYTES_MAX) else {
        return false;
    };
    let Some(body) = rest.get(..len) else {
        return false;
    };
    let Ok(frame) = PeerFrame::decode(Bytes::copy_from_slice(body)) else {
        return false;
    };
    let mut again = BytesMut::new();
    let encoded = frame.encode(&mut again);
    assert!(
        encoded.is_ok(),
        "accepted peer frame does not re-encode: {encoded:?}"
    );
    assert_eq!(
        again.get(..),
        data.get(..PEER_LENGTH_PREFIX_BYTES + len),
        "accepted peer frame is not canonical"
    );
    true
}
