//! Primitive encoders and decoders every message is built from.
//!
//! Encoding goes through an [`Encoder`] over a [`Sink`], so one description
//! of each layout serves three sinks: a `BytesMut` (normal encode), a byte
//! [`Counter`] (`encoded_len`, and the size pass before a frame prefix is
//! written) and [`Chunks`] (vectored encode, where records blobs are kept by
//! reference instead of copied). An encoder never panics: a value too long
//! for its length prefix records the first error, which `finish` returns.
//!
//! Decoding reads from any [`Buf`], checks that the bytes are present
//! before each read, and checks every length and count against the bytes
//! that remain (and a named maximum) before allocating.

use bytes::{Buf, Bytes, BytesMut};

use super::{ErrorCode, WireError};
use crate::limits::{WIRE_ARRAY_ITEMS_MAX, WIRE_NULLABLE_STRING_BYTES_MAX, WIRE_STRING_BYTES_MAX};

// Lengths read as u32 widen to usize with `as`; this makes that lossless.
const _: () = assert!(usize::BITS >= u32::BITS);

/// Length of a null `nullable string`.
pub(crate) const NULL_STRING_LEN: i16 = -1;
/// Count of a null `nullable array`.
pub(crate) const NULL_ARRAY_COUNT: u32 = u32::MAX;

/// Encoded sizes of the primitives, for the items' `MIN_LEN`.
pub(crate) const U8_LEN: usize = 1;
pub(crate) const U16_LEN: usize = 2;
pub(crate) const U32_LEN: usize = 4;
pub(crate) const U64_LEN: usize = 8;
/// Smallest encoded `string`, `nullable string`, array or blob: its prefix.
pub(crate) const STRING_MIN_LEN: usize = U16_LEN;
pub(crate) const ARRAY_MIN_LEN: usize = U32_LEN;
pub(crate) const BLOB_MIN_LEN: usize = U32_LEN;

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// A records blob, which a sink may keep by reference instead of copying.
    fn put_shared(&mut self, blob: &Bytes) {
        self.put(blob);
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes without writing them.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// Small fields coalesced into owned chunks; each non-empty shared blob
/// becomes its own chunk, referencing the caller's buffer.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    current: BytesMut,
    chunks: Vec<Bytes>,
}

impl Chunks {
    pub(crate) fn with_capacity(first_chunk_bytes: usize) -> Self {
        Chunks {
            current: BytesMut::with_capacity(first_chunk_bytes),
            chunks: Vec::new(),
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        self.chunks
    }
}

impl Sink for Chunks {
    fn put(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
    }

    fn put_shared(&mut self, blob: &Bytes) {
        if blob.is_empty() {
            return;
        }
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        self.chunks.push(blob.clone());
    }
}

/// Writes primitives to a sink, remembering the first value that did not fit.
pub(crate) struct Encoder<'a, S: Sink> {
    sink: &'a mut S,
    error: Option<WireError>,
}

impl<'a, S: Sink> Encoder<'a, S> {
    pub(crate) fn new(sink: &'a mut S) -> Self {
        Encoder { sink, error: None }
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn fail(&mut self, err: WireError) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.sink.put(&[v]);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn i16(&mut self, v: i16) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.sink.put(&v.to_le_bytes());
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    pub(crate) fn error_code(&mut self, code: ErrorCode) {
        self.i16(code.code());
    }

    pub(crate) fn string(&mut self, field: &'static str, s: &str) {
        match u16::try_from(s.len()) {
            Ok(len) => {
                self.u16(len);
                self.sink.put(s.as_bytes());
            }
            Err(_) => self.fail(WireError::TooLong {
                field,
                len: s.len(),
                max: WIRE_STRING_BYTES_MAX,
            }),
        }
    }

    pub(crate) fn nullable_string(&mut self, field: &'static str, s: Option<&str>) {
        let Some(s) = s else {
            self.i16(NULL_STRING_LEN);
            return;
        };
        match i16::try_from(s.len()) {
            Ok(len) => {
                self.i16(len);
                self.sink.put(s.as_bytes());
            }
            Err(_) => self.fail(WireError::TooLong {
                field,
                len: s.len(),
                max: WIRE_NULLABLE_STRING_BYTES_MAX,
            }),
        }
    }

    fn blob_len(&mut self, field: &'static str, len: usize) -> bool {
        match u32::try_from(len) {
            Ok(len) => {
                self.u32(len);
                true
            }
            Err(_) => {
                self.fail(WireError::TooLong {
                    field,
                    len,
                    max: u32::MAX as usize,
                });
                false
            }
        }
    }

    /// A `bytes` field copied into the sink.
    pub(crate) fn blob(&mut self, field: &'static str, blob: &[u8]) {
        if self.blob_len(field, blob.len()) {
            self.sink.put(blob);
        }
    }

    /// A `bytes` field a vectored sink keeps by reference.
    pub(crate) fn shared_blob(&mut self, field: &'static str, blob: &Bytes) {
        if self.blob_len(field, blob.len()) {
            self.sink.put_shared(blob);
        }
    }

    fn array_count(&mut self, field: &'static str, len: usize) -> bool {
        match u32::try_from(len) {
            Ok(count) if len <= WIRE_ARRAY_ITEMS_MAX => {
                self.u32(count);
                true
            }
            _ => {
                self.fail(WireError::TooLong {
                    field,
                    len,
                    max: WIRE_ARRAY_ITEMS_MAX,
                });
                false
            }
        }
    }

    pub(crate) fn array<T: Encode>(&mut self, field: &'static str, items: &[T]) {
        if self.array_count(field, items.len()) {
            for item in items {
                item.encode_to(self);
            }
        }
    }

    pub(crate) fn nullable_array<T: Encode>(&mut self, field: &'static str, items: Option<&[T]>) {
        match items {
            None => self.u32(NULL_ARRAY_COUNT),
            Some(items) => self.array(field, items),
        }
    }
}

/// A value with a wire layout.
pub(crate) trait Encode {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>);
}

/// A value decodable from the front of a `B`.
pub(crate) trait Decode<B>: Sized {
    /// Fewest bytes any encoding of the value takes; bounds array counts.
    const MIN_LEN: usize;
    fn decode_from(buf: &mut B) -> Result<Self, WireError>;
}

/// Appends `value` to `buf`; on error `buf` is left as it was.
pub(crate) fn encode_into<T: Encode>(value: &T, buf: &mut BytesMut) -> Result<(), WireError> {
    let start = buf.len();
    let mut e = Encoder::new(buf);
    value.encode_to(&mut e);
    let result = e.finish();
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// The exact number of bytes `encode_into` would append.
pub(crate) fn encoded_len<T: Encode>(value: &T) -> Result<usize, WireError> {
    let mut counter = Counter::default();
    let mut e = Encoder::new(&mut counter);
    value.encode_to(&mut e);
    e.finish()?;
    Ok(counter.0)
}

pub(crate) fn need<B: Buf>(buf: &B, needed: usize) -> Result<(), WireError> {
    let available = buf.remaining();
    if available < needed {
        return Err(WireError::Truncated { needed, available });
    }
    Ok(())
}

pub(crate) fn get_u8<B: Buf>(buf: &mut B) -> Result<u8, WireError> {
    need(buf, U8_LEN)?;
    Ok(buf.get_u8())
}
pub(crate) fn get_u16<B: Buf>(buf: &mut B) -> Result<u16, WireError> {
    need(buf, U16_LEN)?;
    Ok(buf.get_u16_le())
}
pub(crate) fn get_i16<B: Buf>(buf: &mut B) -> Result<i16, WireError> {
    need(buf, U16_LEN)?;
    Ok(buf.get_i16_le())
}
pub(crate) fn get_u32<B: Buf>(buf: &mut B) -> Result<u32, WireError> {
    need(buf, U32_LEN)?;
    Ok(buf.get_u32_le())
}
pub(crate) fn get_i32<B: Buf>(buf: &mut B) -> Result<i32, WireError> {
    need(buf, U32_LEN)?;
    Ok(buf.get_i32_le())
}
pub(crate) fn get_u64<B: Buf>(buf: &mut B) -> Result<u64, WireError> {
    need(buf, U64_LEN)?;
    Ok(buf.get_u64_le())
}
pub(crate) fn get_i64<B: Buf>(buf: &mut B) -> Result<i64, WireError> {
    need(buf, U64_LEN)?;
    Ok(buf.get_i64_le())
}

pub(crate) fn get_bool<B: Buf>(buf: &mut B, field: &'static str) -> Result<bool, WireError> {
    match get_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(WireError::InvalidValue {
            field,
            value: i64::from(other),
        }),
    }
}

pub(crate) fn get_error_code<B: Buf>(buf: &mut B) -> Result<ErrorCode, WireError> {
    Ok(ErrorCode::from_i16(get_i16(buf)?))
}

fn get_utf8<B: Buf>(buf: &mut B, len: usize) -> Result<String, WireError> {
    need(buf, len)?;
    let mut bytes = vec![0; len];
    buf.copy_to_slice(&mut bytes);
    String::from_utf8(bytes).map_err(|err| WireError::BadString(err.utf8_error()))
}

pub(crate) fn get_string<B: Buf>(buf: &mut B) -> Result<String, WireError> {
    let len = get_u16(buf)?;
    get_utf8(buf, usize::from(len))
}

pub(crate) fn get_nullable_string<B: Buf>(
    buf: &mut B,
    field: &'static str,
) -> Result<Option<String>, WireError> {
    let len = get_i16(buf)?;
    if len == NULL_STRING_LEN {
        return Ok(None);
    }
    match usize::try_from(len) {
        Ok(len) => get_utf8(buf, len).map(Some),
        Err(_) => Err(WireError::InvalidValue {
            field,
            value: i64::from(len),
        }),
    }
}

/// Reads a blob's length and checks its bytes are present.
pub(crate) fn get_blob_len<B: Buf>(buf: &mut B) -> Result<usize, WireError> {
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    Ok(len)
}

/// Checks an array count against the named maximum and against how many
/// items of at least `min_item_len` bytes the remaining bytes could hold.
fn check_count(count: u32, remaining: usize, min_item_len: usize) -> Result<usize, WireError> {
    let count = count as usize;
    let max = WIRE_ARRAY_ITEMS_MAX.min(remaining / min_item_len.max(1));
    if count > max {
        return Err(WireError::ArrayTooLong { count, max });
    }
    Ok(count)
}

fn get_items<B: Buf, T: Decode<B>>(buf: &mut B, count: u32) -> Result<Vec<T>, WireError> {
    let count = check_count(count, buf.remaining(), T::MIN_LEN)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(T::decode_from(buf)?);
    }
    Ok(items)
}

pub(crate) fn get_array<B: Buf, T: Decode<B>>(buf: &mut B) -> Result<Vec<T>, WireError> {
    let count = get_u32(buf)?;
    get_items(buf, count)
}

pub(crate) fn get_nullable_array<B: Buf, T: Decode<B>>(
    buf: &mut B,
) -> Result<Option<Vec<T>>, WireError> {
    match get_u32(buf)? {
        NULL_ARRAY_COUNT => Ok(None),
        count => get_items(buf, count).map(Some),
    }
}

/// Node ids in arrays (replica lists).
impl Encode for i32 {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.i32(*self);
    }
}

impl<B: Buf> Decode<B> for i32 {
    const MIN_LEN: usize = U32_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        get_i32(buf)
    }
}

impl Encode for String {
    fn encode_to<S: Sink>(&self, e: &mut Encoder<'_, S>) {
        e.string("string", self);
    }
}

impl<B: Buf> Decode<B> for String {
    const MIN_LEN: usize = STRING_MIN_LEN;
    fn decode_from(buf: &mut B) -> Result<Self, WireError> {
        get_string(buf)
    }
}

/// Adds the public `encode`, `encoded_len` and `decode` of a top-level body
/// decoded from a `$buf`.
macro_rules! body_methods {
    ($ty:ty, $buf:ty) => {
        impl $ty {
            /// Appends this body's bytes to `buf`. On error (a value longer
            /// than the wire allows) `buf` is left as it was.
            pub fn encode(
                &self,
                buf: &mut ::bytes::BytesMut,
            ) -> Result<(), $crate::wire::WireError> {
                $crate::wire::codec::encode_into(self, buf)
            }

            /// The exact number of bytes [`Self::encode`] appends.
            pub fn encoded_len(&self) -> Result<usize, $crate::wire::WireError> {
                $crate::wire::codec::encoded_len(self)
            }

            /// Decodes this body from the front of `buf`, consuming its
            /// bytes. Bytes after the body stay in `buf`; the frame-level
            /// decoders reject them as trailing.
            pub fn decode(buf: &mut $buf) -> Result<Self, $crate::wire::WireError> {
                <Self as $crate::wire::codec::Decode<$buf>>::decode_from(buf)
            }
        }
    };
}
pub(crate) use body_methods;
