//! The Raft type configuration of a data partition, and the small types
//! it names: the node address, the entry data (one record batch) and what
//! applying an entry answers.
//!
//! Standard Raft leader ids (`leader_id_std`, at most one leader per term)
//! are chosen because a log id is then just `(term, index)`, and the term is
//! exactly what a batch header's `leader_epoch` can carry: the log store
//! rebuilds every log id from the batch headers alone.

use std::fmt;

use bytes::Bytes;
use rill_protocol::batch::{BatchHeader, BatchView, RecordBatchHeaderField};
use rill_protocol::BatchError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ReplicationError;

openraft::declare_raft_types!(
    /// Raft types of a data partition: u64 node ids, standard leader ids
    /// (one leader per term), one record batch per entry, tokio.
    pub TypeConfig:
        D = RaftBatch,
        R = Applied,
        NodeId = u64,
        Node = BrokerNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        Vote = openraft::impls::Vote<openraft::impls::leader_id_std::LeaderId<u64, u64>>,
        Entry = openraft::Entry<CommittedLeaderId, openraft::EntryPayload<RaftBatch, u64, BrokerNode>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The committed leader id of a log id: just the term, under standard
/// leader ids.
pub type CommittedLeaderId = openraft::vote::leader_id_std::CommittedLeaderId<u64>;
/// `(term, index)` of an entry.
pub type LogId = openraft::LogId<CommittedLeaderId>;
/// A node's vote (term, voted-for node, committed).
pub type Vote = openraft::impls::Vote<openraft::impls::leader_id_std::LeaderId<u64, u64>>;
/// One Raft log entry.
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
/// A cluster membership over broker nodes.
pub type Membership = openraft::Membership<u64, BrokerNode>;
/// A membership and the log id it was stored at.
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, u64, BrokerNode>;
/// A snapshot of a data partition: its metadata and where the partition's
/// log starts, no data.
pub type MetaSnapshot =
    openraft::storage::Snapshot<CommittedLeaderId, u64, BrokerNode, PartitionSnapshot>;
/// Metadata of a (metadata-only) snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, u64, BrokerNode>;

/// What a data partition's snapshot holds besides openraft's metadata:
/// the offset its log starts at, which is where the entry after the
/// snapshot's last log id begins. A replica that installs the snapshot in
/// place of entries it lacks starts its log, empty, there, with the
/// producer state the leader's batches below that offset left
/// (`producers`), so that as a leader it deduplicates an older producer's
/// retries as the old leader did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub log_start: u64,
    /// A producer snapshot (storage's snapshot file format) at
    /// `log_start`: filled by the leader when it sends the snapshot, never
    /// kept in the Raft state file (it is the leader's to give). Always
    /// serialized (postcard is not self-describing: a skipped field would
    /// shift the fields after it); `default` reads state files written
    /// before it.
    #[serde(default)]
    pub producers: Option<Vec<u8>>,
}

/// A broker as a Raft member: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BrokerNode {
    /// `host:port` of the broker's inter-broker listener.
    pub addr: String,
}

/// The data of a normal entry: exactly one native record batch, as a
/// producer sent it (the log store stamps its base offset and leader epoch
/// when it appends it, and reads it back stamped).
///
/// Serialized as a byte string, so the batch crosses the network unchanged.
/// A leader's own write may carry a *tag* (never serialized): the log store
/// reports the base offset it gave the tagged batch as soon as it is
/// appended, which is what `acks=leader` waits for.
#[derive(Clone, PartialEq, Eq)]
pub struct RaftBatch(Bytes, Option<u64>);

impl RaftBatch {
    /// Checks that `bytes` are exactly one whole batch with a valid CRC,
    /// and not a control batch (those are the log store's own entries; a
    /// producer's batch carrying the bit would be read back as one).
    pub fn new(bytes: Bytes) -> Result<Self, ReplicationError> {
        check_data_batch(&bytes)?;
        Ok(RaftBatch(bytes, None))
    }

    /// The same batch, tagged for [`crate::log_store::AppendWaiters`].
    pub(crate) fn tagged(self, tag: u64) -> Self {
        RaftBatch(self.0, Some(tag))
    }

    pub(crate) fn tag(&self) -> Option<u64> {
        self.1
    }

    /// Wraps bytes without checking them; the log store checks them again
    /// before it appends them, so an invalid batch is refused there.
    pub(crate) fn from_log(bytes: Bytes) -> Self {
        RaftBatch(bytes, None)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// What [`RaftBatch::new`] checks, also applied to every normal entry the
/// log store appends (an entry may arrive deserialized from a peer).
pub(crate) fn check_data_batch(bytes: &[u8]) -> Result<BatchHeader, ReplicationError> {
    let view = BatchView::new(bytes)?;
    if view.len() != bytes.len() {
        return Err(BatchError::BadLength {
            field: RecordBatchHeaderField::BatchLength,
            value: u64::from(view.header().batch_length),
        }
        .into());
    }
    view.validate()?;
    if view.header().is_control() {
        return Err(ReplicationError::ControlBatchAsData);
    }
    Ok(*view.header())
}

impl fmt::Debug for RaftBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RaftBatch({} bytes)", self.0.len())
    }
}

impl fmt::Display for RaftBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.0.len())
    }
}

impl Serialize for RaftBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RaftBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = RaftBatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the bytes of one record batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RaftBatch, E> {
                Ok(RaftBatch(Bytes::copy_from_slice(v), None))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RaftBatch, E> {
                Ok(RaftBatch(Bytes::from(v), None))
            }
            // Formats without a byte string type (JSON) write a sequence.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RaftBatch, A::Error> {
                // The hint comes from the peer: capped, so it cannot make us allocate.
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(RaftBatch(Bytes::from(v), None))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// What applying an entry answers: its log index and, for a normal entry,
/// the base offset the batch was given in the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub log_index: u64,
    /// `None` for the log store's own entries (blank, membership).
    pub base_offset: Option<u64>,
}
