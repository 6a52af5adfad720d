//! Rill's replication layer: what makes a partition live on several
//! brokers, with Raft (openraft) over the partition log.
//!
//! The partition's segment log is its Raft log: one entry is one record
//! batch, stored once, with the entry's term in the batch header's
//! `leader_epoch`. openraft stays inside this crate; its types appear in
//! the API below only where the storage traits need them.
//!
//! # Layout
//! - [`transport`]: the inter-broker connections: one per broker pair,
//!   a Hello handshake that refuses peers of another cluster, every Raft
//!   group's requests multiplexed on it by correlation id.
//! - [`network`]: openraft's network over the transport ([`GroupNetwork`]
//!   sends a group's messages, [`RaftRouter`] hands arriving ones to the
//!   group's Raft).
//! - [`node`]: what the broker uses: [`ReplicationNode`] (listener, peer
//!   clients, the groups it hosts) and [`PartitionReplica`] (one
//!   partition's Raft member: append, high watermark, status).
//! - [`types`]: the Raft type configuration ([`TypeConfig`]) and the types
//!   it names: [`BrokerNode`], [`RaftBatch`] (an entry's data: one batch),
//!   [`Applied`] (what applying answers).
//! - [`log_store`]: [`LogStore`] and [`LogReader`], openraft's log storage
//!   over a `PartitionLog`, with the index it rebuilds at open.
//! - `state_file`: the checksummed file beside the partition directory
//!   holding the vote, the committed and purged ids, where the entries
//!   start and the snapshot of the last purge.
//! - [`state_machine`]: [`DataStateMachine`], which tracks the applied
//!   position, membership and log start (retention); snapshots are
//!   metadata only.
//! - [`config`]: [`raft_config`], openraft's config for data partitions
//!   (no snapshot policy, no snapshot-driven purge), and [`FlushMode`]
//!   (whether a replica counts an entry once synced or once written).
//! - [`error`]: the typed errors, [`ReplicationError`].

pub mod config;
pub mod error;
pub mod log_store;
pub mod network;
pub mod node;
mod state_file;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use config::{raft_config, FlushMode};
pub use error::ReplicationError;
pub use log_store::{default_state_path, LogReader, LogStore};
pub use network::{GroupNetwork, PartitionRaft, PeerClients, RaftRouter};
pub use node::{
    AppendError, AppendWait, CommitFuture, NodeConfig, PartitionReplica, ReplicaStatus,
    ReplicationNode,
};
pub use state_machine::{ApplyHook, DataStateMachine, MetaSnapshotBuilder};
pub use transport::{PeerClient, PeerHandler, PeerIdentity, PeerListener, TransportError};
pub use types::{
    Applied, BrokerNode, Entry, LogId, PartitionSnapshot, RaftBatch, TypeConfig, Vote,
};
