//! The broker's integration tests: one binary (see STYLE.md), each module a
//! scenario family against a real broker over real sockets.

mod bad_input;
mod common;
mod limits;
mod long_poll;
mod metrics_endpoint;
mod process;
mod produce_fetch;
mod random_requests;
mod restart;
