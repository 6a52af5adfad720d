//! rill-client integration tests: one binary (see STYLE.md, ripgrep).
//! Everything but `connection` runs against a real broker started in
//! process on 127.0.0.1:0 with its data in a tempdir.

mod admin;
mod backpressure;
mod common;
mod compression;
mod connection;
mod long_poll;
mod partitioning;
mod produce_consume;
mod retries;
mod seek;
