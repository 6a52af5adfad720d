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
//! - [`topics`]: the topic registry: topic metadata on disk, partition logs,
//!   create/delete, name and config rules.
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
pub mod producer_ids;
pub mod server;
pub mod topics;

pub use config::{BrokerConfig, ConfigError, IoBackendSetting};
pub use error::BrokerError;
pub use server::{Broker, BrokerHandle};
