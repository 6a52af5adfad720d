//! Rill's storage engine: the partition log and the files under it.
//!
//! This crate knows nothing of networks. It owns how record batches (whose
//! layout is defined in `rill-protocol`) are laid into segment files, found
//! again by offset or time, kept durable, aged out, and recovered after a
//! crash.
//!
//! # Layout
//! - [`io`]: the I/O backends (io_uring, std) behind one trait; an I/O
//!   thread owns each backend and is fed over a crossbeam channel, which is
//!   where many appends become one submission and one fdatasync (group
//!   commit).
//! - [`config`]: [`LogConfig`] and [`FsyncPolicy`], validated once.
//! - [`log`]: [`PartitionLog`] — appends (a leader's and a replica's),
//!   reads, rolls, retention, truncation, the fsync policy with group
//!   commit, the failed state.
//! - `segment`: one segment file and its bookkeeping (three sizes: assigned,
//!   written, synced).
//! - `index`: the sparse offset and time indexes (`.index`, `.timeindex`).
//! - [`recovery`]: opening a directory, the clean-shutdown marker, cutting a
//!   torn tail after a crash.
//! - [`producer_state`]: what a partition remembers of each idempotent
//!   producer (epoch, last five batches) to recognise retries and refuse
//!   gaps; pure, no I/O. `producers`: its snapshot files and its rebuild
//!   from snapshot plus log, at open and after every suffix removal.
//! - [`error`]: the crate's typed errors.

pub mod config;
pub mod error;
mod index;
pub mod io;
pub mod log;
pub mod producer_state;
mod producers;
pub mod recovery;
mod segment;

pub use config::{FsyncPolicy, LogConfig};
pub use error::StorageError;
pub use log::{AppendInfo, Durability, LogStats, PartitionLog, RetentionOutcome};
pub use producer_state::{ProducerError, ProducerStateMap};
pub use producers::ProducerRebuild;
pub use recovery::{RecoveryStats, CLEAN_SHUTDOWN_MARKER};
