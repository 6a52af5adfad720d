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
//! - [`error`]: the crate's typed errors.

pub mod error;
pub mod io;

pub use error::StorageError;
