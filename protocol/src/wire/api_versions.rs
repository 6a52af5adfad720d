//! ApiVersions (key 0): which APIs and versions the broker speaks.

use bytes::{Buf, Bytes, BytesMut};

use super::codec::{
    body_methods, get_array, get_error_code, get_u16, Decode, Encode, Encoder, Sink, U16_LEN,
};
use super::{ApiVersionRange, ErrorCode, WireError, SUPPORTED_APIS};

/// Asks for the broker's API table. Empty body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiVersionsRequest {}

/// The broker's API table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsResponse {
    pub error: ErrorCode,
    pub apis: Vec<ApiVersionRange>,
}

impl ApiVersionsResponse {
    /// The successful answer of this build: [`SUPPORTED_APIS`].
    pub fn supported() -> Self {
        ApiVersionsResponse {
            error: ErrorCode::None,
            apis: SUPPORTED_APIS.to_vec(),
        }
    }
}

impl Encode for ApiVersionsRequest {
    fn encode_to<S: Sink>(&self, _e: &mut Encoder<'_, S>) {}
}

impl<B: Buf> Decode<B> for ApiVersionsRequest {
    const MIN_LEN: usize = 0;
    fn decode_from(_buf: &mut B) -> Result<Self, WireError> {
        Ok(ApiVersionsRequest {})
    }
}

impl Encode for ApiVersionRange {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.u16(self.key);
        e.u16(self.min);
        e.u16(self.max);
    }
}

impl<B: Buf> Decode<B> for ApiVersionRange {
    const MIN_LEN: usize = 3 * U16_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ApiVersionRange {
            key: get_u16(buf)?,
            min: get_u16(buf)?,
            max: get_u16(buf)?,
        })
    }
}

impl Encode for ApiVersionsResponse {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.error_code(self.error);
        e.array("apis", &self.apis);
    }
}

impl<B: Buf> Decode<B> for ApiVersionsResponse {
    const MIN_LEN: usize = 0;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        Ok(ApiVersionsResponse {
            error: get_error_code(buf)?,
            apis: get_array(buf)?,
        })
    }
}

body_methods!(ApiVersionsRequest, BytesMut);
body_methods!(ApiVersionsResponse, Bytes);
