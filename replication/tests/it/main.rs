//! rill-replication integration tests: one binary, one module per concern.

mod cluster;
mod store;
mod suite;
mod support;
mod transport;
