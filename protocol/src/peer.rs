//! Inter-broker frames: the envelope every broker-to-broker message travels
//! in on the one connection a pair of brokers keeps.
//!
//! Cluster mode multiplexes every Raft group (the controller's and one per
//! replicated partition) on one connection per broker pair, so each request
//! names its group. What a request *carries* (openraft's append, vote and
//! snapshot messages) is the replication crate's business and opaque here:
//! this module only frames, bounds and routes it, so the codec stays free
//! of the consensus engine's types and its churn.
//!
//! ```text
//! frame    = u32 length (little-endian; the bytes after it) + body
//! body     = u8 kind + the kind's fields
//! kind 0   Hello     u32 magic "RLPR" | u16 version | [16] cluster id |
//!                    u64 from node | u64 to node
//! kind 1   Request   u64 correlation id | group | u8 rpc | payload (the rest)
//! kind 2   Response  u64 correlation id | u8 status (0 ok, 1 error) |
//!                    payload (the rest)
//! kind 3   Refused   u16 reason | u16 length + UTF-8 message
//! group    = u8 0 (the controller) | u8 1, u16 length + UTF-8 topic, u32 partition
//! ```
//!
//! Each side sends a Hello first and checks the other's: a peer of another
//! cluster, the wrong node, or another protocol version is answered with
//! Refused and dropped. The decoder is strict: every length is checked
//! against the bytes present and the limits in [`crate::limits`] before
//! anything is allocated, and only canonical encodings are accepted (a
//! decoded frame re-encodes to exactly its bytes; a fuzz target checks it).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::{PEER_FRAME_BYTES_MAX, WIRE_STRING_BYTES_MAX};

/// First bytes of a Hello: tells a broker's peer listener from anything
/// else that connects to it.
pub const PEER_MAGIC: u32 = u32::from_le_bytes(*b"RLPR");
/// The inter-broker protocol version this build speaks.
pub const PEER_PROTOCOL_VERSION: u16 = 1;
/// Bytes of a frame's length prefix.
pub const PEER_LENGTH_PREFIX_BYTES: usize = std::mem::size_of::<u32>();
/// Bytes of a cluster id (a random 128-bit id written at the cluster's
/// first start).
pub const CLUSTER_ID_BYTES: usize = 16;

const KIND_HELLO: u8 = 0;
const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_REFUSED: u8 = 3;
const GROUP_CONTROLLER: u8 = 0;
const GROUP_PARTITION: u8 = 1;

/// What failed in decoding or encoding an inter-broker frame.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    #[error("peer frame truncated: needed {needed} more bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("peer frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("unknown peer frame kind {0}")]
    UnknownKind(u8),
    #[error("unknown raft group tag {0}")]
    UnknownGroup(u8),
    #[error("unknown peer rpc {0}")]
    UnknownRpc(u8),
    #[error("unknown response status {0}")]
    UnknownStatus(u8),
    #[error("unknown refusal reason {0}")]
    UnknownReason(u16),
    #[error("not a Rill broker's peer hello (magic {0:#010x})")]
    BadMagic(u32),
    #[error("string field is not UTF-8")]
    BadUtf8,
    #[error("string of {len} bytes is over the limit of {max}")]
    StringTooLong { len: usize, max: usize },
    #[error("{0} bytes left over after the frame's fields")]
    TrailingBytes(usize),
}

/// The Raft group a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupId {
    /// The cluster metadata group, on every broker.
    Controller,
    /// One replicated partition's group, among its replicas.
    Partition { topic: String, partition: u32 },
}

/// The consensus message a request carries (its payload's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PeerRpc {
    AppendEntries = 1,
    Vote = 2,
    /// A whole snapshot in one message.
    Snapshot = 3,
    /// Asks the receiver to campaign now (leader transfer).
    TransferLeader = 4,
    /// A write forwarded to the group's leader by a replica that is not the
    /// leader (the payload is one batch; the answer is what applying it
    /// answered). Brokers forward metadata changes to the controller so.
    Propose = 5,
}

impl PeerRpc {
    fn from_u8(v: u8) -> Result<PeerRpc, PeerError> {
        Ok(match v {
            1 => PeerRpc::AppendEntries,
            2 => PeerRpc::Vote,
            3 => PeerRpc::Snapshot,
            4 => PeerRpc::TransferLeader,
            5 => PeerRpc::Propose,
            other => return Err(PeerError::UnknownRpc(other)),
        })
    }
}

/// Why a peer was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum RefusedReason {
    /// Its Hello names another cluster id.
    OtherCluster = 1,
    /// Its Hello is addressed to another node id.
    WrongNode = 2,
    /// It speaks another inter-broker protocol version.
    Version = 3,
    /// It sent bytes that are not a valid frame.
    Malformed = 4,
    /// Its node id is not a member of this cluster.
    UnknownNode = 5,
}

impl RefusedReason {
    fn from_u16(v: u16) -> Result<RefusedReason, PeerError> {
        Ok(match v {
            1 => RefusedReason::OtherCluster,
            2 => RefusedReason::WrongNode,
            3 => RefusedReason::Version,
            4 => RefusedReason::Malformed,
            5 => RefusedReason::UnknownNode,
            other => return Err(PeerError::UnknownReason(other)),
        })
    }
}

/// One inter-broker frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFrame {
    Hello {
        version: u16,
        cluster_id: [u8; CLUSTER_ID_BYTES],
        from: u64,
        to: u64,
    },
    Request {
        correlation_id: u64,
        group: GroupId,
        rpc: PeerRpc,
        payload: Bytes,
    },
    Response {
        correlation_id: u64,
        /// `false`: the payload is the receiver's error, not an answer.
        ok: bool,
        payload: Bytes,
    },
    Refused {
        reason: RefusedReason,
        message: String,
    },
}

/// Reads a frame's length prefix and rejects a frame over `max` before the
/// caller allocates anything for it.
pub fn decode_peer_frame_length(
    prefix: [u8; PEER_LENGTH_PREFIX_BYTES],
    max: usize,
) -> Result<usize, PeerError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(PeerError::FrameTooLarge { len, max });
    }
    Ok(len)
}

fn need(buf: &Bytes, n: usize) -> Result<(), PeerError> {
    if buf.remaining() < n {
        return Err(PeerError::Truncated {
            needed: n,
            available: buf.remaining(),
        });
    }
    Ok(())
}

fn get_u8(buf: &mut Bytes) -> Result<u8, PeerError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_u16(buf: &mut Bytes) -> Result<u16, PeerError> {
    need(buf, 2)?;
    Ok(buf.get_u16_le())
}

fn get_u32(buf: &mut Bytes) -> Result<u32, PeerError> {
    need(buf, 4)?;
    Ok(buf.get_u32_le())
}

fn get_u64(buf: &mut Bytes) -> Result<u64, PeerError> {
    need(buf, 8)?;
    Ok(buf.get_u64_le())
}

fn get_string(buf: &mut Bytes) -> Result<String, PeerError> {
    let len = usize::from(get_u16(buf)?);
    need(buf, len)?;
    let bytes = buf.split_to(len);
    String::from_utf8(bytes.to_vec()).map_err(|_| PeerError::BadUtf8)
}

fn put_string(out: &mut BytesMut, s: &str) -> Result<(), PeerError> {
    let len = u16::try_from(s.len()).map_err(|_| PeerError::StringTooLong {
        len: s.len(),
        max: WIRE_STRING_BYTES_MAX,
    })?;
    out.put_u16_le(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn no_trailing(buf: &Bytes) -> Result<(), PeerError> {
    match buf.remaining() {
        0 => Ok(()),
        n => Err(PeerError::TrailingBytes(n)),
    }
}

impl PeerFrame {
    /// Decodes one frame's body (the bytes after its length prefix, exactly
    /// as many as the prefix said). Payloads are slices of `body`: no copy.
    pub fn decode(mut body: Bytes) -> Result<PeerFrame, PeerError> {
        let buf = &mut body;
        let frame = match get_u8(buf)? {
            KIND_HELLO => {
                let magic = get_u32(buf)?;
                if magic != PEER_MAGIC {
                    return Err(PeerError::BadMagic(magic));
                }
                let version = get_u16(buf)?;
                need(buf, CLUSTER_ID_BYTES)?;
                let mut cluster_id = [0u8; CLUSTER_ID_BYTES];
                buf.copy_to_slice(&mut cluster_id);
                let from = get_u64(buf)?;
                let to = get_u64(buf)?;
                no_trailing(buf)?;
                PeerFrame::Hello {
                    version,
                    cluster_id,
                    from,
                    to,
                }
            }
            KIND_REQUEST => {
                let correlation_id = get_u64(buf)?;
                let group = match get_u8(buf)? {
                    GROUP_CONTROLLER => GroupId::Controller,
                    GROUP_PARTITION => GroupId::Partition {
                        topic: get_string(buf)?,
                        partition: get_u32(buf)?,
                    },
                    other => return Err(PeerError::UnknownGroup(other)),
                };
                let rpc = PeerRpc::from_u8(get_u8(buf)?)?;
                PeerFrame::Request {
                    correlation_id,
                    group,
                    rpc,
                    payload: std::mem::take(buf),
                }
            }
            KIND_RESPONSE => {
                let correlation_id = get_u64(buf)?;
                let ok = match get_u8(buf)? {
                    0 => true,
                    1 => false,
                    other => return Err(PeerError::UnknownStatus(other)),
                };
                PeerFrame::Response {
                    correlation_id,
                    ok,
                    payload: std::mem::take(buf),
                }
            }
            KIND_REFUSED => {
                let reason = RefusedReason::from_u16(get_u16(buf)?)?;
                let message = get_string(buf)?;
                no_trailing(buf)?;
                PeerFrame::Refused { reason, message }
            }
            other => return Err(PeerError::UnknownKind(other)),
        };
        Ok(frame)
    }

    /// Appends the whole frame, length prefix included, to `out`. Fails
    /// (leaving `out` as it was) for a string over its `u16` length or a
    /// frame over [`PEER_FRAME_BYTES_MAX`].
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), PeerError> {
        let start = out.len();
        out.put_u32_le(0);
        let result = self.encode_body(out);
        let len = out.len() - start - PEER_LENGTH_PREFIX_BYTES;
        finish_prefix(out, start, len, result)
    }

    /// [`PeerFrame::encode`], but a request's or response's payload is
    /// not copied: `head` gets the length prefix and every field before
    /// the payload, and the payload comes back to be written after it
    /// (vectored I/O) from the buffer it is in. Other frames go whole into
    /// `head`, with an empty payload.
    pub fn encode_split(&self, head: &mut BytesMut) -> Result<Bytes, PeerError> {
        let payload = match self {
            PeerFrame::Request { payload, .. } | PeerFrame::Response { payload, .. } => payload,
            PeerFrame::Hello { .. } | PeerFrame::Refused { .. } => {
                self.encode(head)?;
                return Ok(Bytes::new());
            }
        };
        let start = head.len();
        head.put_u32_le(0);
        let fields = match self {
            PeerFrame::Request {
                correlation_id,
                group,
                rpc,
                ..
            } => {
                head.put_u8(KIND_REQUEST);
                head.put_u64_le(*correlation_id);
                let group = match group {
                    GroupId::Controller => {
                        head.put_u8(GROUP_CONTROLLER);
                        Ok(())
                    }
                    GroupId::Partition { topic, partition } => {
                        head.put_u8(GROUP_PARTITION);
                        put_string(head, topic).map(|()| head.put_u32_le(*partition))
                    }
                };
                group.map(|()| head.put_u8(*rpc as u8))
            }
            PeerFrame::Response {
                correlation_id, ok, ..
            } => {
                head.put_u8(KIND_RESPONSE);
                head.put_u64_le(*correlation_id);
                head.put_u8(if *ok { 0 } else { 1 });
                Ok(())
            }
            PeerFrame::Hello { .. } | PeerFrame::Refused { .. } => Ok(()),
        };
        let len = head.len() - start - PEER_LENGTH_PREFIX_BYTES + payload.len();
        finish_prefix(head, start, len, fields).map(|()| payload.clone())
    }

    fn encode_body(&self, out: &mut BytesMut) -> Result<(), PeerError> {
        match self {
            PeerFrame::Hello {
                version,
                cluster_id,
                from,
                to,
            } => {
                out.put_u8(KIND_HELLO);
                out.put_u32_le(PEER_MAGIC);
                out.put_u16_le(*version);
                out.put_slice(cluster_id);
                out.put_u64_le(*from);
                out.put_u64_le(*to);
            }
            PeerFrame::Request {
                correlation_id,
                group,
                rpc,
                payload,
            } => {
                out.put_u8(KIND_REQUEST);
                out.put_u64_le(*correlation_id);
                match group {
                    GroupId::Controller => out.put_u8(GROUP_CONTROLLER),
                    GroupId::Partition { topic, partition } => {
                        out.put_u8(GROUP_PARTITION);
                        put_string(out, topic)?;
                        out.put_u32_le(*partition);
                    }
                }
                out.put_u8(*rpc as u8);
                out.put_slice(payload);
            }
            PeerFrame::Response {
                correlation_id,
                ok,
                payload,
            } => {
                out.put_u8(KIND_RESPONSE);
                out.put_u64_le(*correlation_id);
                out.put_u8(if *ok { 0 } else { 1 });
                out.put_slice(payload);
            }
            PeerFrame::Refused { reason, message } => {
                out.put_u8(KIND_REFUSED);
                out.put_u16_le(*reason as u16);
                put_string(out, message)?;
            }
        }
        Ok(())
    }
}

/// Writes the length prefix reserved at `start` for a frame of `len`
/// bytes after it, or takes back what was written from `start` on if the
/// fields failed or the frame is over [`PEER_FRAME_BYTES_MAX`].
fn finish_prefix(
    out: &mut BytesMut,
    start: usize,
    len: usize,
    fields: Result<(), PeerError>,
) -> Result<(), PeerError> {
    let checked = fields.and(if len > PEER_FRAME_BYTES_MAX {
        Err(PeerError::FrameTooLarge {
            len,
            max: PEER_FRAME_BYTES_MAX,
        })
    } else {
        Ok(())
    });
    if let Err(e) = checked {
        out.truncate(start);
        return Err(e);
    }
    // `len` ≤ PEER_FRAME_BYTES_MAX, which fits a u32 (checked below).
    let prefix = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    out[start..start + PEER_LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    Ok(())
}

const _: () = assert!(PEER_FRAME_BYTES_MAX <= u32::MAX as usize);
