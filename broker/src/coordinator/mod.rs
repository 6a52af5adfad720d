//! The consumer group coordinator: named groups whose members join with
//! their subscriptions, heartbeat, and get their partitions from the
//! server (Kafka's KIP-848 protocol: assignments are computed here, not by
//! an elected client), plus the durable store of committed offsets.
//!
//! Kept apart from the broker's I/O so the rebalance logic can be tested
//! without sockets or sleeping: the state machine takes the time and the
//! topics' partition counts as arguments.
//!
//! # Layout
//! - [`assignor`]: the range, round-robin and sticky assignors.
//! - [`group`]: [`Coordinator`], the state machine: membership, epochs,
//!   incremental revoke-then-assign reconciliation, session expiry,
//!   commit validation, list/describe/delete.
//! - [`offsets`]: [`OffsetStore`], committed offsets on the internal topic
//!   `__consumer_offsets` (one partition log) with a snapshot for fast
//!   start-up.
//! - [`service`]: [`GroupCoordinator`], what the request handlers call:
//!   the state machine behind a lock next to the offsets store, wire
//!   requests in, wire responses out; the broker supplies its topics
//!   through [`TopicView`] and calls [`GroupCoordinator::tick`].

pub mod assignor;
pub mod group;
pub mod offsets;
pub mod service;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod test_rng;

pub use assignor::{Assignment, Assignor, AssignorKind, MemberId, MemberSpec, UnknownAssignor};
pub use group::{
    Coordinator, CoordinatorConfig, Departure, GroupDescription, GroupError, GroupListing,
    GroupState, HeartbeatRequest, HeartbeatResponse, MemberDescription,
};
pub use offsets::{CommittedOffset, OffsetStore, OffsetStoreError, OffsetStoreStats};
pub use service::{GroupCoordinator, GroupPartitionLag, TopicView};
