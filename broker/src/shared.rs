//! The state every connection and handler shares, built once by the
//! server at start.
//!
//! It lives apart from the server so that handlers depend on the state
//! they use, never on the listener and lifecycle code that creates it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};

use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::coordinator::GroupCoordinator;
use crate::producer_ids::ProducerIdAllocator;
use crate::topics::TopicRegistry;

/// What every connection and handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub registry: Arc<TopicRegistry>,
    pub local_addr: SocketAddr,
    pub shutdown: watch::Receiver<bool>,
    /// Request bytes in flight across the whole broker.
    pub broker_inflight: Arc<Semaphore>,
    /// The consumer group coordinator and its committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Hands out idempotent producer ids.
    pub producer_ids: ProducerIdAllocator,
    /// Cluster mode's state; `None` on a lone broker.
    pub cluster: Option<Arc<Cluster>>,
}
