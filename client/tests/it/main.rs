//! rill-client integration tests: one binary (see STYLE.md, ripgrep).
//! Everything but `connection` runs against a real broker started in
//! process on 127.0.0.1:0 with its data in a tempdir.

mod admin;
mod backpressure;
mod bootstrap;
mod callbacks;
mod common;
mod compression;
mod connection;
mod control_batches;
mod crash_durability;
mod crash_harness;
mod faults_storage;
mod fetch_fairness;
mod group_admin;
mod group_at_least_once;
mod group_churn;
mod group_cluster;
mod group_epoch;
mod group_harness;
mod group_no_overlap;
mod group_rebalance;
mod group_restart;
mod idempotence;
mod leader_routing;
mod long_poll;
mod partitioning;
mod produce_consume;
mod retries;
mod seek;
