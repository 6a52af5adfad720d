//! Frames: the length prefix, the request and response headers, and the
//! [`Request`] / [`Response`] enums that dispatch on the API key.
//!
//! Reading a request on the broker:
//! 1. read 4 bytes, [`decode_frame_length`] against the configured limit;
//! 2. read that many bytes into a `BytesMut`;
//! 3. [`RequestHeader::decode`], then [`Request::decode`] (checks the
//!    version and that the body has no trailing bytes).
//!
//! The client does the same with [`ResponseHeader::decode`] and
//! [`Response::decode`] on a `Bytes`, passing the key and version it sent.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    encoded_len, get_string, get_u16, get_u32, Chunks, Counter, Encode, Encoder, Sink, U32_LEN,
};
use super::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    ResetOffsetsRequest, ResetOffsetsResponse, WireError,
};

/// Size of the `u32` length prefix before every frame.
pub const FRAME_LENGTH_PREFIX_BYTES: usize = U32_LEN;

/// Largest frame length the `u32` prefix can express.
const FRAME_LENGTH_ENCODABLE_MAX: usize = u32::MAX as usize;

/// Reads a frame's length prefix (the bytes that follow it) and rejects it
/// if over `max`, before the caller allocates anything for the frame.
pub fn decode_frame_length(
    prefix: [u8; FRAME_LENGTH_PREFIX_BYTES],
    max: usize,
) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(WireError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// The start of every request frame's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: ApiKey,
    pub api_version: u16,
    /// Chosen by the client, echoed in the response.
    pub correlation_id: u32,
    /// Free-form client name, for broker logs.
    pub client_id: String,
}

impl Encode for RequestHeader {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u16(self.api_key.code());
        e.u16(self.api_version);
        e.u32(self.correlation_id);
        e.string("client id", &self.client_id);
    }
}

impl RequestHeader {
    /// Decodes the header from the front of a request frame. Fails with
    /// [`WireError::UnknownApiKey`] for keys this build does not know; the
    /// version is checked by [`Request::decode`].
    pub fn decode(buf: &mut BytesMut) -> Result<Self, WireError> {
        Ok(RequestHeader {
            api_key: ApiKey::from_u16(get_u16(buf)?)?,
            api_version: get_u16(buf)?,
            correlation_id: get_u32(buf)?,
            client_id: get_string(buf)?,
        })
    }
}

/// The start of every response frame's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: u32,
}

impl Encode for ResponseHeader {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u32(self.correlation_id);
    }
}

impl ResponseHeader {
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Self, WireError> {
        Ok(ResponseHeader {
            correlation_id: get_u32(buf)?,
        })
    }
}

/// A decoded request body of any implemented API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    ListOffsets(ListOffsetsRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    ResetOffsets(ResetOffsetsRequest),
    InitProducerId(InitProducerIdRequest),
    FindCoordinator(FindCoordinatorRequest),
}

/// A decoded response body of any implemented API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    ApiVersions(ApiVersionsResponse),
    Metadata(MetadataResponse),
    CreateTopics(CreateTopicsResponse),
    DeleteTopics(DeleteTopicsResponse),
    ListOffsets(ListOffsetsResponse),
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroups(DescribeGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    ResetOffsets(ResetOffsetsResponse),
    InitProducerId(InitProducerIdResponse),
    FindCoordinator(FindCoordinatorResponse),
}

/// Fails with [`WireError::TrailingBytes`] unless the body was consumed.
fn expect_end<B: Buf>(body: &B) -> Result<(), WireError> {
    match body.remaining() {
        0 => Ok(()),
        left => Err(WireError::TrailingBytes(left)),
    }
}

impl Request {
    pub fn api_key(&self) -> ApiKey {
        match self {
            Request::ApiVersions(_) => ApiKey::ApiVersions,
            Request::Metadata(_) => ApiKey::Metadata,
            Request::CreateTopics(_) => ApiKey::CreateTopics,
            Request::DeleteTopics(_) => ApiKey::DeleteTopics,
            Request::ListOffsets(_) => ApiKey::ListOffsets,
            Request::Produce(_) => ApiKey::Produce,
            Request::Fetch(_) => ApiKey::Fetch,
            Request::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            Request::LeaveGroup(_) => ApiKey::LeaveGroup,
            Request::OffsetCommit(_) => ApiKey::OffsetCommit,
            Request::OffsetFetch(_) => ApiKey::OffsetFetch,
            Request::ListGroups(_) => ApiKey::ListGroups,
            Request::DescribeGroups(_) => ApiKey::DescribeGroups,
            Request::DeleteGroups(_) => ApiKey::DeleteGroups,
            Request::ResetOffsets(_) => ApiKey::ResetOffsets,
            Request::InitProducerId(_) => ApiKey::InitProducerId,
            Request::FindCoordinator(_) => ApiKey::FindCoordinator,
        }
    }

    /// Decodes the body that follows `header` in a request frame. Checks
    /// that the header's version is supported and that `body` holds exactly
    /// one body, nothing after it.
    pub fn decode(header: &RequestHeader, body: &mut BytesMut) -> Result<Self, WireError> {
        let key = header.api_key;
        key.check_version(header.api_version)?;
        let request = match key {
            ApiKey::ApiVersions => Request::ApiVersions(ApiVersionsRequest::decode(body)?),
            ApiKey::Metadata => Request::Metadata(MetadataRequest::decode(body)?),
            ApiKey::CreateTopics => Request::CreateTopics(CreateTopicsRequest::decode(body)?),
            ApiKey::DeleteTopics => Request::DeleteTopics(DeleteTopicsRequest::decode(body)?),
            ApiKey::ListOffsets => Request::ListOffsets(ListOffsetsRequest::decode(body)?),
            ApiKey::Produce => Request::Produce(ProduceRequest::decode(body)?),
            ApiKey::Fetch => Request::Fetch(FetchRequest::decode(body)?),
            ApiKey::ConsumerGroupHeartbeat => {
                Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::decode(body)?)
            }
            ApiKey::LeaveGroup => Request::LeaveGroup(LeaveGroupRequest::decode(body)?),
            ApiKey::OffsetCommit => Request::OffsetCommit(OffsetCommitRequest::decode(body)?),
            ApiKey::OffsetFetch => Request::OffsetFetch(OffsetFetchRequest::decode(body)?),
            ApiKey::ListGroups => Request::ListGroups(ListGroupsRequest::decode(body)?),
            ApiKey::DescribeGroups => Request::DescribeGroups(DescribeGroupsRequest::decode(body)?),
            ApiKey::DeleteGroups => Request::DeleteGroups(DeleteGroupsRequest::decode(body)?),
            ApiKey::ResetOffsets => Request::ResetOffsets(ResetOffsetsRequest::decode(body)?),
            ApiKey::InitProducerId => Request::InitProducerId(InitProducerIdRequest::decode(body)?),
            ApiKey::FindCoordinator => {
                Request::FindCoordinator(FindCoordinatorRequest::decode(body)?)
            }
        };
        expect_end(body)?;
        Ok(request)
    }
}

impl Encode for Request {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        match self {
            Request::ApiVersions(r) => r.encode_to(e),
            Request::Metadata(r) => r.encode_to(e),
            Request::CreateTopics(r) => r.encode_to(e),
            Request::DeleteTopics(r) => r.encode_to(e),
            Request::ListOffsets(r) => r.encode_to(e),
            Request::Produce(r) => r.encode_to(e),
            Request::Fetch(r) => r.encode_to(e),
            Request::ConsumerGroupHeartbeat(r) => r.encode_to(e),
            Request::LeaveGroup(r) => r.encode_to(e),
            Request::OffsetCommit(r) => r.encode_to(e),
            Request::OffsetFetch(r) => r.encode_to(e),
            Request::ListGroups(r) => r.encode_to(e),
            Request::DescribeGroups(r) => r.encode_to(e),
            Request::DeleteGroups(r) => r.encode_to(e),
            Request::ResetOffsets(r) => r.encode_to(e),
            Request::InitProducerId(r) => r.encode_to(e),
            Request::FindCoordinator(r) => r.encode_to(e),
        }
    }
}

impl Response {
    pub fn api_key(&self) -> ApiKey {
        match self {
            Response::ApiVersions(_) => ApiKey::ApiVersions,
            Response::Metadata(_) => ApiKey::Metadata,
            Response::CreateTopics(_) => ApiKey::CreateTopics,
            Response::DeleteTopics(_) => ApiKey::DeleteTopics,
            Response::ListOffsets(_) => ApiKey::ListOffsets,
            Response::Produce(_) => ApiKey::Produce,
            Response::Fetch(_) => ApiKey::Fetch,
            Response::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            Response::LeaveGroup(_) => ApiKey::LeaveGroup,
            Response::OffsetCommit(_) => ApiKey::OffsetCommit,
            Response::OffsetFetch(_) => ApiKey::OffsetFetch,
            Response::ListGroups(_) => ApiKey::ListGroups,
            Response::DescribeGroups(_) => ApiKey::DescribeGroups,
            Response::DeleteGroups(_) => ApiKey::DeleteGroups,
            Response::ResetOffsets(_) => ApiKey::ResetOffsets,
            Response::InitProducerId(_) => ApiKey::InitProducerId,
            Response::FindCoordinator(_) => ApiKey::FindCoordinator,
        }
    }

    /// Decodes the body that follows the [`ResponseHeader`] of the answer
    /// to a request of `key` at `version`. Records in a Fetch response
    /// are slices of `body`, not copies.
    pub fn decode(key: ApiKey, version: u16, body: &mut Bytes) -> Result<Self, WireError> {
        key.check_version(version)?;
        let response = match key {
            ApiKey::ApiVersions => Response::ApiVersions(ApiVersionsResponse::decode(body)?),
            ApiKey::Metadata => Response::Metadata(MetadataResponse::decode(body)?),
            ApiKey::CreateTopics => Response::CreateTopics(CreateTopicsResponse::decode(body)?),
            ApiKey::DeleteTopics => Response::DeleteTopics(DeleteTopicsResponse::decode(body)?),
            ApiKey::ListOffsets => Response::ListOffsets(ListOffsetsResponse::decode(body)?),
            ApiKey::Produce => Response::Produce(ProduceResponse::decode(body)?),
            ApiKey::Fetch => Response::Fetch(FetchResponse::decode(body)?),
            ApiKey::ConsumerGroupHeartbeat => {
                Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse::decode(body)?)
            }
            ApiKey::LeaveGroup => Response::LeaveGroup(LeaveGroupResponse::decode(body)?),
            ApiKey::OffsetCommit => Response::OffsetCommit(OffsetCommitResponse::decode(body)?),
            ApiKey::OffsetFetch => Response::OffsetFetch(OffsetFetchResponse::decode(body)?),
            ApiKey::ListGroups => Response::ListGroups(ListGroupsResponse::decode(body)?),
            ApiKey::DescribeGroups => {
                Response::DescribeGroups(DescribeGroupsResponse::decode(body)?)
            }
            ApiKey::DeleteGroups => Response::DeleteGroups(DeleteGroupsResponse::decode(body)?),
            ApiKey::ResetOffsets => Response::ResetOffsets(ResetOffsetsResponse::decode(body)?),
            ApiKey::InitProducerId => {
                Response::InitProducerId(InitProducerIdResponse::decode(body)?)
            }
            ApiKey::FindCoordinator => {
                Response::FindCoordinator(FindCoordinatorResponse::decode(body)?)
            }
        };
        expect_end(body)?;
        Ok(response)
    }
}

impl Encode for Response {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        match self {
            Response::ApiVersions(r) => r.encode_to(e),
            Response::Metadata(r) => r.encode_to(e),
            Response::CreateTopics(r) => r.encode_to(e),
            Response::DeleteTopics(r) => r.encode_to(e),
            Response::ListOffsets(r) => r.encode_to(e),
            Response::Produce(r) => r.encode_to(e),
            Response::Fetch(r) => r.encode_to(e),
            Response::ConsumerGroupHeartbeat(r) => r.encode_to(e),
            Response::LeaveGroup(r) => r.encode_to(e),
            Response::OffsetCommit(r) => r.encode_to(e),
            Response::OffsetFetch(r) => r.encode_to(e),
            Response::ListGroups(r) => r.encode_to(e),
            Response::DescribeGroups(r) => r.encode_to(e),
            Response::DeleteGroups(r) => r.encode_to(e),
            Response::ResetOffsets(r) => r.encode_to(e),
            Response::InitProducerId(r) => r.encode_to(e),
            Response::FindCoordinator(r) => r.encode_to(e),
        }
    }
}

/// Frame length (after the prefix) of `header` + `body`, checked to fit
/// the `u32` prefix and every value to fit its own prefix.
fn frame_len<H: Encode, T: Encode>(header: &H, body: &T) -> Result<u32, WireError> {
    let mut counter = Counter::default();
    let mut e = Encoder::new(&mut counter);
    header.encode_to(&mut e);
    body.encode_to(&mut e);
    e.finish()?;
    u32::try_from(counter.0).map_err(|_| WireError::FrameTooLarge {
        len: counter.0,
        max: FRAME_LENGTH_ENCODABLE_MAX,
    })
}

fn encode_frame<H: Encode, T: Encode>(
    header: &H,
    body: &T,
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    let len = frame_len(header, body)?;
    let start = buf.len();
    buf.reserve(FRAME_LENGTH_PREFIX_BYTES + len as usize);
    let mut e = Encoder::new(buf);
    e.u32(len);
    header.encode_to(&mut e);
    body.encode_to(&mut e);
    let result = e.finish();
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Appends a whole request frame (length prefix, header, body) to `buf`.
///
/// Fails, leaving `buf` as it was, if the header names another API than
/// the request, or if a value does not fit the wire.
pub fn encode_request_frame(
    header: &RequestHeader,
    request: &Request,
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    if header.api_key != request.api_key() {
        return Err(WireError::InvalidValue {
            field: "api_key",
            value: i64::from(header.api_key.code()),
        });
    }
    encode_frame(header, request, buf)
}

/// Appends a whole response frame (length prefix, header, body) to `buf`;
/// on error `buf` is left as it was.
pub fn encode_response_frame(
    header: &ResponseHeader,
    response: &Response,
    buf: &mut BytesMut,
) -> Result<(), WireError> {
    encode_frame(header, response, buf)
}

/// A whole Produce request frame as chunks for a vectored write: the
/// prefix, header and small fields coalesced, each non-empty batch blob its
/// own chunk sharing the caller's buffer. Concatenated, the chunks equal
/// what [`encode_request_frame`] writes for the equivalent
/// [`Request::Produce`].
///
/// Fails if the header names another API than Produce, or if a value does
/// not fit the wire.
pub fn encode_produce_frame_vectored(
    header: &RequestHeader,
    request: &super::SharedProduceRequest,
) -> Result<Vec<Bytes>, WireError> {
    if header.api_key != ApiKey::Produce {
        return Err(WireError::InvalidValue {
            field: "api_key",
            value: i64::from(header.api_key.code()),
        });
    }
    let len = frame_len(header, request)?;
    let mut chunks = Chunks::with_capacity(FRAME_LENGTH_PREFIX_BYTES + encoded_len(header)?);
    let mut e = Encoder::new(&mut chunks);
    e.u32(len);
    header.encode_to(&mut e);
    request.encode_to(&mut e);
    e.finish()?;
    Ok(chunks.finish())
}

/// A whole response frame as chunks for a vectored write: the prefix,
/// header and small fields coalesced, each non-empty Fetch records blob its
/// own chunk sharing the caller's buffer. Concatenated, the chunks equal
/// what [`encode_response_frame`] writes.
pub fn encode_response_frame_vectored(
    header: &ResponseHeader,
    response: &Response,
) -> Result<Vec<Bytes>, WireError> {
    let len = frame_len(header, response)?;
    // Without records the whole frame is one chunk; with them, the first
    // chunk holds at least the prefix and header.
    let first_chunk = match response {
        Response::Fetch(_) => FRAME_LENGTH_PREFIX_BYTES + encoded_len(header)?,
        _ => FRAME_LENGTH_PREFIX_BYTES + len as usize,
    };
    let mut chunks = Chunks::with_capacity(first_chunk);
    let mut e = Encoder::new(&mut chunks);
    e.u32(len);
    header.encode_to(&mut e);
    response.encode_to(&mut e);
    e.finish()?;
    Ok(chunks.finish())
}
