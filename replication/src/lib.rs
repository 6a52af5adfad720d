//! Rill's replication layer: what makes a partition live on several
//! brokers.
//!
//! # Layout
//! - [`transport`]: the inter-broker connections: one per broker pair,
//!   a Hello handshake that refuses peers of another cluster, every Raft
//!   group's requests multiplexed on it by correlation id.

pub mod transport;

pub use transport::{PeerClient, PeerHandler, PeerIdentity, PeerListener, TransportError};
