//! The state machine of a data partition.
//!
//! A data partition's state *is* its log: applying an entry changes
//! nothing but the applied position, which is the partition's **high
//! watermark**: the offset just past the last applied (so committed) entry,
//! published on a watch so that fetches and `acks=all` can wait on it. So the state machine tracks the last applied log id
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

use tokio::sync::watch;

use crate::log_store::LogReader;
use crate::types::{Applied, LogId, MetaSnapshot, SnapshotMeta, StoredMembership, TypeConfig};

#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<SnapshotMeta>,
}

/// The state machine of one data partition (see the module docs). Its
/// snapshot data is `()`: a snapshot is its metadata.
#[derive(Clone)]
pub struct DataStateMachine {
    state: Arc<Mutex<SmState>>,
    /// Resolves an applied index to the high watermark; `None` in tests of
    /// the bare state machine.
    reader: Option<LogReader>,
    high_watermark: Arc<watch::Sender<u64>>,
    /// Called with each applied data batch, in log order (the controller's
    /// metadata is built so).
    on_apply: Option<ApplyHook>,
}

/// What a group's owner does with each applied batch (its bytes as the
/// log holds them, stamped). Runs on the group's apply path: keep it short
/// and never block.
pub type ApplyHook = Arc<dyn Fn(u64, &bytes::Bytes) + Send + Sync>;

impl std::fmt::Debug for DataStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStateMachine")
            .field("state", &self.state)
            .field("has_apply_hook", &self.on_apply.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DataStateMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl DataStateMachine {
    /// A state machine that tracks no high watermark.
    pub fn new() -> Self {
        DataStateMachine {
            state: Arc::default(),
            reader: None,
            high_watermark: Arc::new(watch::channel(0).0),
            on_apply: None,
        }
    }

    /// The state machine of the partition `reader` reads: its high
    /// watermark starts at the end of the last entry the log store knows
    /// committed (durable in its state file), or at `floor` (the log start)
    /// before any.
    pub fn for_log(reader: LogReader, committed: Option<LogId>, floor: u64) -> Self {
        let start = committed
            .and_then(|c| reader.end_offset_after(c.index))
            .unwrap_or(floor)
            .max(floor);
        DataStateMachine {
            state: Arc::default(),
            reader: Some(reader),
            high_watermark: Arc::new(watch::channel(start).0),
            on_apply: None,
        }
    }

    /// The same state machine, calling `hook` with each applied batch.
    pub fn with_apply_hook(mut self, hook: ApplyHook) -> Self {
        self.on_apply = Some(hook);
        self
    }

    /// The high watermark now, and changes to it.
    pub fn high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
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
            if let (Some(hook), EntryPayload::Normal(batch)) = (&self.on_apply, &entry.payload) {
                hook(entry.log_id.index, batch.as_bytes());
            }
            {
                let mut st = self.lock();
                st.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    st.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            if let Some(hw) = self
                .reader
                .as_ref()
                .and_then(|r| r.end_offset_after(entry.log_id.index))
            {
                self.high_watermark.send_if_modified(|cur| {
                    let moved = hw > *cur;
                    if moved {
                        *cur = hw;
                    }
                    moved
                });
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
