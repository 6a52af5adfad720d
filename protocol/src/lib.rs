//! Rill's shared formats: a pure codec, no I/O, no async runtime.
//!
//! Broker and client both depend on this crate and on nothing of each other,
//! so one definition of every byte that crosses a socket or lands on disk
//! lives here.
//!
//! # Layout
//! - [`batch`]: the record batch — one layout on the wire and on disk. A
//!   fixed little-endian header the broker reads and patches in place, then
//!   an rkyv archive of the records (optionally zstd-compressed).
//! - [`wire`]: frames, API keys, requests and responses, error codes.
//! - [`limits`]: named limits every decoder checks before it allocates.
//! - [`peer`]: the inter-broker frame envelope (hello, requests tagged
//!   with their Raft group, responses); the consensus messages inside are
//!   opaque bytes here.

pub mod batch;
pub mod limits;
pub mod peer;
pub mod wire;

pub use batch::{
    ArchivedRecord, BatchBuilder, BatchError, BatchHeader, BatchIter, BatchView, Compression,
    Record, RecordBatchHeaderField, RecordHeader, RecordRef, Records,
};
