//! The Rill broker: accepts client connections, decodes requests with
//! `rill-protocol`'s wire codec, appends to and reads from `rill-storage`'s
//! partition logs, and exports Prometheus metrics.
//!
//! A single broker (node id 0) leads every partition and coordinates every
//! consumer group; replication is a later issue.
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
