//! The Rill broker: accepts client connections, decodes requests with
//! `rill-protocol`'s wire codec, appends to and reads from `rill-storage`'s
//! partition logs, and exports Prometheus metrics.
//!
//! A lone broker (no `--peers`) leads every partition and coordinates every
//! consumer group. With `--peers` it is one broker of a cluster: topics
//! come from the controller group, and each partition with several replicas
//! is a Raft group among them (`rill-replication`).
//!
//! # Layout
//! - [`config`]: [`BrokerConfig`] — flags, `RILL_*` variables, TOML file,
//!   defaults (in that precedence) and `validate()`.
//! - [`server`]: [`Broker::start`] and [`BrokerHandle`]: the listener, the
//!   maintenance task (fsync ticks, retention, group session expiry and lag
//!   gauges), graceful shutdown.
//! - `connection`: one task pair per connection: a reader that frames,
//!   bounds and decodes requests, and a writer that sends responses in
//!   request order (pipelining).
//! - `handlers`: one module per API, each turning a decoded request into
//!   its response.
//! - [`topics`]: the topic registry: topic metadata on disk, the topics'
//!   partitions, create/delete.
//! - [`topic_config`]: a topic's settings (Kafka's keys), their parsing and
//!   defaults, name rules.
//! - [`partition`]: [`partition::Partition`], the layer between handlers
//!   and storage: appends at an ack level, reads below the high watermark.
//!   Handlers know the protocol and nothing of how a partition keeps its
//!   data; a partition knows that and nothing of the protocol.
//! - `shared`: the state connections and handlers share (registry,
//!   coordinator, producer ids, limits), apart from the server that builds
//!   it, so handlers never import the server.
//! - `shutdown`: the shutdown signal every task waits on.
//! - [`cluster`]: cluster mode (`--peers`): the cluster identity, the
//!   inter-broker listener, the controller group and its metadata, and the
//!   reconciler that opens this broker's replicas in the registry.
//!
//! Dependencies run one way: `server` → `connection` → `handlers` →
//! `shared` → `topics` → `partition` → `metrics`; `config` and `topics`
//! both use `topic_config`. No module imports one that imports it back.
//! - [`metrics`]: metric names, the process-wide Prometheus recorder and the
//!   `/metrics` endpoint.
//! - [`coordinator`]: the consumer group coordinator (KIP-848 heartbeats,
//!   server-side assignment) and the durable committed offsets
//!   (`data_dir/__consumer_offsets`); `handlers::groups` routes the eight
//!   group APIs to it.
//! - [`producer_ids`]: idempotent producer ids, handed out in blocks
//!   persisted under `data_dir/__meta` so none repeats across restarts;
//!   `handlers::init_producer_id` serves them.
//! - [`error`]: start-up errors and the one mapping from storage errors to
//!   wire error codes.

pub mod cluster;
pub mod config;
mod connection;
pub mod coordinator;
pub mod error;
mod handlers;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod server;
mod shared;
mod shutdown;
pub mod topic_config;
pub mod topics;

pub use config::{BrokerConfig, ConfigError, IoBackendSetting};
pub use error::BrokerError;
pub use server::{Broker, BrokerHandle};

/// Raises this process's soft limit on open files to its hard limit and
/// logs both. A broker holds several files per partition (segment, two
/// indexes, per-segment snapshots) and one descriptor per connection, so
/// many partitions pass the common default soft limit of 1,024 long before
/// the hard limit. Called by the binaries at start (a process-wide
/// setting, not the library's to change for an embedding program);
/// returns the soft limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => {
            let hard = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(_, hard)| hard)
                .unwrap_or(soft);
            tracing::info!(soft, hard, "open file limit");
            Some(soft)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open file limit");
            None
        }
    }
}
