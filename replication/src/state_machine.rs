//! The state machine of a data partition.
//!
//! A data partition's state *is* its log: applying an entry changes
//! nothing but the applied position (the broker will turn it into the high
//! watermark, later). So the state machine tracks the last applied log id
//! and the last membership, answers each entry's responder with its index
//! and base offset, and its snapshots are **metadata only** (last applied,
//! membership) — never partition data, which followers get from the log.
//! (The Raft config of data partitions, [`crate::raft_config`], never builds
//! snapshots by policy nor purges because of one, so no follower is ever
//! sent a snapshot in place of entries.)
//!
//! Nothing is persisted here for now: after a restart openraft re-applies
//! from the start of the log up to the committed id the log store kept,
//! which rebuilds this state.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};

use crate::types::{Applied, LogId, SnapshotMeta, StoredMembership, TypeConfig};

type MetaSnapshot = Snapshot<crate::types::CommittedLeaderId, u64, crate::types::BrokerNode, ()>;

#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<SnapshotMeta>,
}

/// The state machine of one data partition (see the module docs). Its
/// snapshot data is `()`: a snapshot is its metadata.
#[derive(Debug, Clone, Default)]
pub struct DataStateMachine {
    state: Arc<Mutex<SmState>>,
}

impl DataStateMachine {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SmState> {
        // Each change is one assignment: a panicking holder leaves it whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.lock().last_applied
    }
}

/// Builds the metadata-only snapshot of a [`DataStateMachine`].
#[derive(Debug, Clone)]
pub struct MetaSnapshotBuilder {
    sm: DataStateMachine,
}

impl RaftSnapshotBuilder<TypeConfig> for MetaSnapshotBuilder {
    type SnapshotData = ();

    async fn build_snapshot(&mut self) -> Result<MetaSnapshot, io::Error> {
        let mut st = self.sm.lock();
        let meta = SnapshotMeta {
            last_log_id: st.last_applied,
            last_membership: st.membership.clone(),
        };
        st.snapshot = Some(meta.clone());
        Ok(Snapshot { meta, snapshot: () })
    }
}

impl RaftStateMachine<TypeConfig> for DataStateMachine {
    type SnapshotData = ();
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let st = self.lock();
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let base_offset = match &entry.payload {
                // The stored batch, stamped: its header has the base offset.
                EntryPayload::Normal(batch) => rill_protocol::BatchHeader::parse(batch.as_bytes())
                    .ok()
                    .map(|h| h.base_offset),
                _ => None,
            };
            {
                let mut st = self.lock();
                st.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    st.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            if let Some(r) = responder {
                r.send(Applied {
                    log_index: entry.log_id.index,
                    base_offset,
                });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> MetaSnapshotBuilder {
        MetaSnapshotBuilder { sm: self.clone() }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        _snapshot: (),
    ) -> Result<(), io::Error> {
        let mut st = self.lock();
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.snapshot = Some(meta.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<MetaSnapshot>, io::Error> {
        Ok(self
            .lock()
            .snapshot
            .clone()
            .map(|meta| Snapshot { meta, snapshot: () }))
    }
}
