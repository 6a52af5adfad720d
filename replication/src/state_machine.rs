//! The state machine of a data partition.
//!
//! A data partition's state *is* its log: applying an entry changes
//! nothing but the applied position, which is the partition's **high
//! watermark**: the offset just past the last applied (so committed) entry,
//! published on a watch so that fetches and `acks=all` can wait on it. So
//! the state machine tracks the last applied log id and the memberships,
//! answers each entry's responder with its index and base offset, and
//! publishes the partition's **log start**.
//!
//! # Log start and snapshots
//! A log start entry (the leader's retention, `log_store`) raises the log
//! start and names a purge target: the entry just below the new start. Its
//! owner (`node`) then asks openraft for a snapshot and a purge up to that
//! entry. A snapshot here is **metadata only**: its last log id is that
//! target, *not* the applied index, with the membership as of it and the
//! log start ([`PartitionSnapshot`]); never partition data. openraft takes
//! a built snapshot below the applied index (it only requires it to be
//! newer than the last one) and sends it to a replica that lacks entries
//! it purged, which then restarts its log at the log start and receives
//! the entries above by normal replication. (openraft never builds a
//! snapshot by policy nor purges because of one: [`crate::raft_config`].)
//!
//! Nothing is persisted here: the log store saves the snapshot a purge
//! stands on, openraft restores it at start and re-applies the log from
//! there up to the committed id the log store kept, which rebuilds this
//! state.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};

use tokio::sync::watch;

use crate::log_store::{log_start_of, LogReader};
use crate::types::{
    Applied, LogId, MetaSnapshot, PartitionSnapshot, SnapshotMeta, StoredMembership, TypeConfig,
};

/// Memberships remembered, newest last: enough to name the membership as
/// of a purge target (a group's membership changes rarely).
const MEMBERSHIPS_KEPT: usize = 8;

#[derive(Debug, Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Recent memberships, oldest first, the current one last.
    memberships: Vec<StoredMembership>,
    snapshot: Option<(SnapshotMeta, PartitionSnapshot)>,
    /// The newest log start applied and the entry just below it.
    target: Option<(LogId, u64)>,
}

impl SmState {
    fn remember(&mut self, m: StoredMembership) {
        if self.memberships.last() != Some(&m) {
            self.memberships.push(m.clone());
            if self.memberships.len() > MEMBERSHIPS_KEPT {
                self.memberships.remove(0);
            }
        }
        self.membership = m;
    }

    /// The membership in effect at `at`.
    fn membership_at(&self, at: LogId) -> Option<StoredMembership> {
        self.memberships
            .iter()
            .rev()
            .find(|m| m.log_id().as_ref().is_none_or(|id| *id <= at))
            .cloned()
    }
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
    /// The offset the partition's log starts at for its readers.
    log_start: Arc<watch::Sender<u64>>,
    /// The entry the raft log should be purged up to (the one just below
    /// the newest log start), for the group's owner to act on.
    purge_target: Arc<watch::Sender<Option<LogId>>>,
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
            log_start: Arc::new(watch::channel(0).0),
            purge_target: Arc::new(watch::channel(None).0),
            on_apply: None,
        }
    }

    /// The state machine of the partition `reader` reads: its high
    /// watermark starts at the end of the last entry the log store knows
    /// committed (durable in its state file), or at `floor` (the log start)
    /// before any. Its log start is `floor`, or where the log store's last
    /// purge left it; its snapshot the one that purge stood on (openraft
    /// restores the state from it at start).
    pub fn for_log(reader: LogReader, committed: Option<LogId>, floor: u64) -> Self {
        let log_start = reader.purged_start().unwrap_or(floor).max(floor);
        let start = committed
            .and_then(|c| reader.end_offset_after(c.index))
            .unwrap_or(log_start)
            .max(log_start);
        let state = SmState {
            snapshot: reader.snapshot(),
            ..SmState::default()
        };
        DataStateMachine {
            state: Arc::new(Mutex::new(state)),
            reader: Some(reader),
            high_watermark: Arc::new(watch::channel(start).0),
            log_start: Arc::new(watch::channel(log_start).0),
            purge_target: Arc::new(watch::channel(None).0),
            on_apply: None,
        }
    }

    /// The partition's log start for readers, and its changes.
    pub fn log_start(&self) -> watch::Receiver<u64> {
        self.log_start.subscribe()
    }

    /// The entry the raft log is to be purged up to, and its changes.
    pub fn purge_target(&self) -> watch::Receiver<Option<LogId>> {
        self.purge_target.subscribe()
    }

    /// Applies a log start entry: the log starts at `offset` from now on.
    fn apply_log_start(&self, offset: u64) {
        if offset <= *self.log_start.borrow() {
            return;
        }
        let target = self
            .reader
            .as_ref()
            .and_then(|r| r.log_id_ending_at(offset));
        self.log_start.send_replace(offset);
        if let Some(target) = target {
            self.lock().target = Some((target, offset));
            self.purge_target.send_replace(Some(target));
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
    type SnapshotData = PartitionSnapshot;

    /// The snapshot up to the purge target (see the module docs). With
    /// no target (openraft rebuilds one at start when entries were purged
    /// without a snapshot saved, which retention never does), a snapshot
    /// at the applied index whose log start is where the next entry goes.
    async fn build_snapshot(&mut self) -> Result<MetaSnapshot, io::Error> {
        let mut st = self.sm.lock();
        let Some((target, log_start)) = st.target else {
            let meta = SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.membership.clone(),
            };
            let log_start = st
                .last_applied
                .and_then(|a| self.sm.reader.as_ref()?.end_offset_after(a.index))
                .unwrap_or_else(|| *self.sm.log_start.borrow());
            let data = PartitionSnapshot {
                log_start,
                producers: None,
            };
            st.snapshot = Some((meta.clone(), data.clone()));
            return Ok(Snapshot {
                meta,
                snapshot: data,
            });
        };
        let last_membership = st.membership_at(target).ok_or_else(|| {
            io::Error::other(format!(
                "no membership known as of {target} to build the snapshot with"
            ))
        })?;
        let meta = SnapshotMeta {
            last_log_id: Some(target),
            last_membership,
        };
        let data = PartitionSnapshot {
            log_start,
            producers: None,
        };
        st.snapshot = Some((meta.clone(), data.clone()));
        if let Some(r) = &self.sm.reader {
            r.set_snapshot(meta.clone(), data.clone());
        }
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for DataStateMachine {
    type SnapshotData = PartitionSnapshot;
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
            if let EntryPayload::Normal(batch) = &entry.payload {
                match log_start_of(batch.as_bytes()) {
                    Some(offset) => self.apply_log_start(offset),
                    None => {
                        if let Some(hook) = &self.on_apply {
                            hook(entry.log_id.index, batch.as_bytes());
                        }
                    }
                }
            }
            {
                let mut st = self.lock();
                st.last_applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    st.remember(StoredMembership::new(Some(entry.log_id), m.clone()));
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

    /// Takes the snapshot's position, membership and log start (from the
    /// leader, or the one saved at the last purge when openraft restores
    /// it at start). The log store restarts the log at the log start when
    /// openraft purges up to the snapshot next.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: PartitionSnapshot,
    ) -> Result<(), io::Error> {
        {
            let mut st = self.lock();
            st.last_applied = meta.last_log_id;
            st.remember(meta.last_membership.clone());
            st.snapshot = Some((meta.clone(), snapshot.clone()));
        }
        let start = snapshot.log_start;
        if let Some(r) = &self.reader {
            r.set_snapshot(meta.clone(), snapshot);
        }
        self.log_start.send_if_modified(|cur| {
            let moved = start > *cur;
            if moved {
                *cur = start;
            }
            moved
        });
        self.high_watermark.send_if_modified(|cur| {
            let moved = start > *cur;
            if moved {
                *cur = start;
            }
            moved
        });
        Ok(())
    }

    /// The snapshot to send a replica that lacks the purged entries, with
    /// the producer state below its log start taken from the log now.
    async fn get_current_snapshot(&mut self) -> Result<Option<MetaSnapshot>, io::Error> {
        let current = self.lock().snapshot.clone();
        Ok(current.map(|(meta, mut snapshot)| {
            if let Some(r) = &self.reader {
                snapshot.producers = Some(r.producer_snapshot_before(snapshot.log_start));
            }
            Snapshot { meta, snapshot }
        }))
    }
}
