//! The broker's integration tests: one binary (see STYLE.md), each module a
//! scenario family against a real broker over real sockets.

mod bad_input;
mod cluster;
mod common;
mod coordinator;
mod hostile_common;
mod hostile_connections;
mod hostile_flood;
mod hostile_slow;
mod idempotence;
mod limits;
mod long_poll;
mod metrics_endpoint;
mod process;
mod produce_fetch;
mod random_requests;
mod read_only;
mod restart;
