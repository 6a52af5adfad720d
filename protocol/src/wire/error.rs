//! [`WireError`]: everything that can be wrong with bytes claiming to be a
//! frame, or with a value too large to be put on the wire.
//!
//! This is the codec's own error; the broker converts it to an
//! [`ErrorCode`] at its boundary (see [`WireError::error_code`]).

use super::{ApiKey, ErrorCode};

/// A frame could not be decoded, or a value could not be encoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end before the field being read.
    #[error("frame truncated: needed {needed} more bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    /// A frame's length prefix is over the configured limit (on decode), or
    /// an encoded frame would not fit the `u32` prefix (on encode).
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unknown API key {0}")]
    UnknownApiKey(u16),
    /// A known API at a version this build does not implement (this
    /// includes the consumer-group keys reserved before their bodies exist).
    #[error("API {key:?} version {version} is not supported")]
    UnsupportedVersion { key: ApiKey, version: u16 },
    #[error("string is not valid UTF-8: {0}")]
    BadString(#[source] std::str::Utf8Error),
    /// An array count over [`crate::limits::WIRE_ARRAY_ITEMS_MAX`] or over
    /// what the remaining bytes could hold.
    #[error("array claims {count} items, at most {max} possible here")]
    ArrayTooLong { count: usize, max: usize },
    /// A body decoded completely but bytes were left over.
    #[error("{0} unexpected bytes after the end of the body")]
    TrailingBytes(usize),
    /// A field holds a value outside its domain (a bool that is not 0 or 1,
    /// an unknown `acks`, a negative nullable length other than -1, a
    /// request whose header names another API than its body).
    #[error("field {field} has invalid value {value}")]
    InvalidValue { field: &'static str, value: i64 },
    /// Encode side: a string, blob or array is longer than its length
    /// prefix (or the decoder's limit) allows.
    #[error("{field} is {len} long, the wire allows at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl WireError {
    /// The code a broker answers with when it cannot decode a request.
    ///
    /// Malformed bodies are the client's fault ([`ErrorCode::InvalidRequest`]);
    /// [`WireError::TooLong`] only arises when encoding, i.e. the broker
    /// failed to build its own response ([`ErrorCode::UnknownServerError`]).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnknownApiKey(_) => ErrorCode::UnknownApi,
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::Truncated { .. }
            | WireError::BadString(_)
            | WireError::ArrayTooLong { .. }
            | WireError::TrailingBytes(_)
            | WireError::InvalidValue { .. } => ErrorCode::InvalidRequest,
            WireError::TooLong { .. } => ErrorCode::UnknownServerError,
        }
    }
}
