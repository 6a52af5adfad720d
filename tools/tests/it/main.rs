//! rill-tools integration tests: the `rill` binary as a real process against
//! a real broker started in the test process.

mod bench;
mod cluster_crash;
mod common;
mod groups;
mod mistakes;
mod netsplit;
mod produce_consume;
mod produce_crash;
mod topics;
