//! Cluster mode: this broker as one of several (`--peers`).
//!
//! What it owns:
//! - the **identity** of the cluster, fixed at a data directory's first
//!   start (`__meta/cluster.toml`: the cluster id and the `--peers` it was
//!   started with); a later start with other peers is refused, naming both;
//! - the broker's [`ReplicationNode`]: its inter-broker listener (at its
//!   own `--peers` entry) and clients to the other brokers;
//! - the **controller group**: one Raft group on every broker whose log is
//!   the partition log `__cluster_metadata-0` (Kafka's KRaft topic of the
//!   same name) and whose entries are [`MetaRecord`]s. Every broker applies
//!   them into its [`ClusterMetadata`]: brokers and their client addresses,
//!   topics with their settings and each partition's replicas. A broker
//!   rebuilds it at start from its own log up to its last known commit, so
//!   it opens its partitions without waiting for a quorum;
//! - the **reconciler**: after each applied change it opens the partitions
//!   this broker has a replica of (a Raft group each when they have several
//!   replicas, the direct single-replica path otherwise) and closes and
//!   deletes those of deleted topics, in the topic registry the handlers
//!   read.
//!
//! Changes (topic creation and deletion, a broker's address) are proposed
//! by whichever broker a client asked; a broker that does not lead the
//! controller forwards the proposal to the one that does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::batch::{BatchBuilder, BatchView, Compression};
use rill_protocol::peer::GroupId;
use rill_replication::{
    default_state_path, ApplyHook, FlushMode, NodeConfig, PartitionReplica, PeerIdentity,
    ReplicaStatus, ReplicationNode,
};
use rill_storage::PartitionLog;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{parse_peers, BrokerConfig};
use crate::partition::Partition;
use crate::topics::{validate_topic_name, Topic, TopicError, TopicRegistry, PARTITIONS_MAX};

/// The controller group's log directory under `data_dir` (not a valid
/// `<topic>-<n>` of a client topic: `__` is reserved).
pub const CLUSTER_METADATA_DIR: &str = "__cluster_metadata-0";
/// The identity file under `data_dir/__meta`.
const IDENTITY_FILE: &str = "cluster.toml";
/// How long one inter-broker request may take, connecting included.
const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a metadata change waits for the controller (an election
/// included) before the client is answered `NotController`.
pub const CONTROLLER_WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why cluster mode could not start or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster identity {path}: {message}")]
    Identity { path: PathBuf, message: String },
    #[error(
        "data directory was first started with --peers {stored:?}, now {given:?}: refusing to \
         start (a broker cannot change clusters; use a new data directory)"
    )]
    PeersChanged { stored: String, given: String },
    #[error("replication: {0}")]
    Replication(#[from] rill_replication::ReplicationError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("invalid replication factor {factor}: the cluster has {brokers} registered brokers")]
    ReplicationFactor { factor: u16, brokers: usize },
    #[error("the controller could not be reached: {0}")]
    NoController(String),
}

/// One change to the cluster's metadata: the data of one controller entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRecord {
    /// A broker's address for clients (Metadata's brokers).
    RegisterBroker {
        id: u64,
        client_addr: String,
    },
    /// A topic with its overrides and each partition's replicas (the first
    /// the preferred leader).
    CreateTopic {
        name: String,
        configs: BTreeMap<String, String>,
        replicas: Vec<Vec<u64>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Hands `node` the next block of idempotent producer ids, starting at
    /// `min_start` or later (a lone broker's ids in use when its directory
    /// joined a cluster stay below every block).
    AllocateProducerIds {
        node: u64,
        min_start: i64,
    },
}

/// A topic as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub configs: BTreeMap<String, String>,
    /// Replicas of each partition, by partition id.
    pub replicas: Vec<Vec<u64>>,
}

/// The cluster's metadata as this broker has applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Node id → `host:port` clients use.
    pub brokers: BTreeMap<u64, String>,
    pub topics: BTreeMap<String, TopicSpec>,
    /// The first producer id no broker was handed yet.
    pub next_producer_id: i64,
    /// The last block of producer ids each broker was handed, `[start, end)`.
    pub producer_id_blocks: BTreeMap<u64, (i64, i64)>,
    /// The controller log index last applied.
    pub applied: u64,
}

impl ClusterMetadata {
    fn apply(&mut self, index: u64, record: MetaRecord) {
        match record {
            MetaRecord::RegisterBroker { id, client_addr } => {
                self.brokers.insert(id, client_addr);
            }
            MetaRecord::CreateTopic {
                name,
                configs,
                replicas,
            } => {
                // A second creation of a name (two proposers raced) is
                // ignored: the first one applied wins everywhere.
                self.topics
                    .entry(name)
                    .or_insert(TopicSpec { configs, replicas });
            }
            MetaRecord::DeleteTopic { name } => {
                self.topics.remove(&name);
            }
            MetaRecord::AllocateProducerIds { node, min_start } => {
                let start = self.next_producer_id.max(min_start);
                let end = start.saturating_add(crate::producer_ids::PRODUCER_ID_BLOCK_SIZE);
                self.producer_id_blocks.insert(node, (start, end));
                self.next_producer_id = end;
            }
        }
        self.applied = self.applied.max(index);
    }
}

/// Encodes `record` as the one record of a native batch (the controller's
/// entries are batches like any partition's).
pub fn encode_record(record: &MetaRecord) -> Result<Bytes, ClusterError> {
    let value = postcard::to_allocvec(record)
        .map_err(|e| ClusterError::NoController(format!("cannot encode a metadata record: {e}")))?;
    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(now_ms(), None, &value, &[]);
    builder
        .finish()
        .map_err(|e| ClusterError::NoController(format!("cannot build a metadata batch: {e}")))
}

/// The records of one applied controller batch. A batch that does not
/// decode is skipped with an error log: it was committed, so every broker
/// skips it alike.
fn decode_records(batch: &Bytes) -> Vec<MetaRecord> {
    let mut out = Vec::new();
    let records = BatchView::new(batch).and_then(|v| v.validate_full());
    match records {
        Ok(records) => {
            for r in records.archived().iter() {
                match postcard::from_bytes::<MetaRecord>(r.value()) {
                    Ok(record) => out.push(record),
                    Err(e) => tracing::error!(error = %e, "undecodable metadata record skipped"),
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "undecodable metadata batch skipped"),
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What `__meta/cluster.toml` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    cluster_id: String,
    peers: String,
}

/// The canonical text of a peer set (sorted by node id).
fn canonical_peers(peers: &BTreeMap<u64, String>) -> String {
    peers
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The id of a cluster first started with `peers`: every broker derives the
/// same one from the same `--peers` without talking to the others (128-bit
/// FNV-1a of the canonical peer list; it is an identity, not a secret).
fn derive_cluster_id(canonical: &str) -> [u8; 16] {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for b in canonical.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h.to_be_bytes()
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Reads the identity of `data_dir`, or writes it at first start.
fn load_identity(data_dir: &Path, peers: &BTreeMap<u64, String>) -> Result<[u8; 16], ClusterError> {
    let dir = data_dir.join(crate::topics::META_DIR);
    let path = dir.join(IDENTITY_FILE);
    let given = canonical_peers(peers);
    let bad = |message: String| ClusterError::Identity {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: Identity = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let stored_peers = parse_peers(&stored.peers).map_err(bad)?;
            if canonical_peers(&stored_peers) != given {
                return Err(ClusterError::PeersChanged {
                    stored: stored.peers,
                    given,
                });
            }
            unhex(&stored.cluster_id).ok_or_else(|| bad("cluster_id is not 32 hex digits".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = derive_cluster_id(&given);
            let identity = Identity {
                cluster_id: hex(&id),
                peers: given,
            };
            let text = toml::to_string(&identity).map_err(|e| bad(e.to_string()))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            };
            write().map_err(|e| bad(e.to_string()))?;
            tracing::info!(cluster_id = %identity.cluster_id, "new cluster identity written");
            Ok(id)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Refuses to start a lone broker (no `--peers`) on a data directory of a
/// cluster: its topics live in that cluster's metadata, not here, and it
/// would come up empty.
pub fn refuse_cluster_dir_without_peers(data_dir: &Path) -> Result<(), ClusterError> {
    let path = data_dir.join(crate::topics::META_DIR).join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: Identity = toml::from_str(&text).map_err(|e| ClusterError::Identity {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Err(ClusterError::Identity {
                path,
                message: format!(
                    "this data directory belongs to cluster {}: start the broker with --peers {}",
                    stored.cluster_id, stored.peers
                ),
            })
        }
        Err(_) => Ok(()),
    }
}

/// This broker's part in the cluster (see the module docs).
pub struct Cluster {
    node_id: u64,
    node: ReplicationNode,
    controller: PartitionReplica,
    controller_log: Arc<PartitionLog>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    /// The controller index up to which the registry matches the metadata.
    reconciled: watch::Sender<u64>,
    default_replication_factor: u16,
    /// Serializes reconcile passes.
    reconcile_lock: tokio::sync::Mutex<()>,
    /// The block of producer ids this broker hands out from, `[next, end)`;
    /// empty at start, so a restarted broker never reuses a block.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts cluster mode for `config` (which has `--peers`): identity,
    /// inter-broker listener, the controller group (metadata replayed from
    /// the local log), then a first reconcile of the registry.
    pub async fn start(
        config: &BrokerConfig,
        registry: &Arc<TopicRegistry>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let peers_text = config.peers.clone().unwrap_or_default();
        let peers = parse_peers(&peers_text).map_err(|m| ClusterError::Identity {
            path: config.data_dir.clone(),
            message: m,
        })?;
        let node_id = u64::from(config.node_id);
        let data_dir = config.data_dir.clone();
        let peers_for_id = peers.clone();
        let cluster_id =
            tokio::task::spawn_blocking(move || load_identity(&data_dir, &peers_for_id))
                .await
                .map_err(|e| ClusterError::NoController(e.to_string()))??;
        let listen_text = peers.get(&node_id).cloned().unwrap_or_default();
        let listen = tokio::net::lookup_host(&listen_text)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ClusterError::Identity {
                path: config.data_dir.clone(),
                message: format!("cannot resolve this broker's peer address {listen_text:?}"),
            })?;
        let node = ReplicationNode::start(NodeConfig {
            identity: PeerIdentity {
                cluster_id,
                node_id,
            },
            listen,
            peers: peers.clone(),
            election_timeout: Duration::from_millis(config.raft_election_timeout_ms),
            heartbeat: Duration::from_millis(config.raft_heartbeat_ms),
            request_timeout: PEER_REQUEST_TIMEOUT,
        })
        .await?;
        tracing::info!(cluster_id = %hex(&cluster_id), node_id, peer_listener = %node.local_addr(), peers = %canonical_peers(&peers), "cluster mode");

        let metadata_state = Arc::new(Mutex::new(ClusterMetadata::default()));
        let (meta_tx, meta_rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        let meta_tx = Arc::new(meta_tx);
        let hook: ApplyHook = {
            let state = Arc::clone(&metadata_state);
            let tx = Arc::clone(&meta_tx);
            Arc::new(move |index, batch: &Bytes| {
                let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                for record in decode_records(batch) {
                    st.apply(index, record);
                }
                st.applied = st.applied.max(index);
                tx.send_replace(Arc::new(st.clone()));
            })
        };
        let dir = config.data_dir.join(CLUSTER_METADATA_DIR);
        let log_config = registry.topic_config(&BTreeMap::new())?.to_log_config();
        let backend = registry.backend();
        let log_dir = dir.clone();
        let log =
            tokio::task::spawn_blocking(move || PartitionLog::open(&log_dir, log_config, backend))
                .await
                .map_err(|e| ClusterError::NoController(e.to_string()))?
                .map_err(TopicError::from)?;
        let log = Arc::new(log);
        let voters: Vec<u64> = peers.keys().copied().collect();
        let controller = node
            .open_group(
                GroupId::Controller,
                Arc::clone(&log),
                default_state_path(&dir),
                &voters,
                Some(hook),
                // Topic changes are rare; the controller's log is synced.
                FlushMode::Synced,
            )
            .await?;
        let cluster = Arc::new(Cluster {
            node_id,
            node,
            controller,
            controller_log: log,
            metadata: meta_rx,
            reconciled: watch::channel(0).0,
            default_replication_factor: config.default_replication_factor,
            reconcile_lock: tokio::sync::Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
        });
        cluster.reconcile(registry).await;
        Ok(cluster)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The metadata applied so far.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.metadata.borrow())
    }

    /// The controller group's leader, if one is known.
    pub fn controller_status(&self) -> ReplicaStatus {
        self.controller.status()
    }

    /// Runs until `shutdown`: registers this broker's client address with
    /// the controller (retrying until a quorum takes it), and reconciles the
    /// registry after every metadata change.
    pub async fn run(
        self: Arc<Self>,
        registry: Arc<TopicRegistry>,
        client_addr: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let register = {
            let this = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            async move {
                loop {
                    if this.metadata().brokers.get(&this.node_id) == Some(&client_addr) {
                        return;
                    }
                    let record = MetaRecord::RegisterBroker {
                        id: this.node_id,
                        client_addr: client_addr.clone(),
                    };
                    match this.propose(&record).await {
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "broker registration not taken yet"),
                    }
                    if !pause_unless_stopped(&mut shutdown).await {
                        return;
                    }
                }
            }
        };
        let import = {
            let this = Arc::clone(&self);
            let registry = Arc::clone(&registry);
            let mut shutdown = shutdown.clone();
            async move {
                loop {
                    match this.import_lone_broker_topics(&registry).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::debug!(error = %e, "lone broker topics not imported yet")
                        }
                    }
                    if !pause_unless_stopped(&mut shutdown).await {
                        return;
                    }
                }
            }
        };
        let reconcile = {
            let this = Arc::clone(&self);
            let mut changes = self.metadata.clone();
            async move {
                while changes.changed().await.is_ok() {
                    this.reconcile(&registry).await;
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(register, import, reconcile) } => {}
            _ = crate::shutdown::stopped(&mut shutdown) => {}
        }
    }

    /// Commits `record` through the controller and waits until this
    /// broker's registry reflects it. Answers its controller index.
    pub async fn propose(&self, record: &MetaRecord) -> Result<u64, ClusterError> {
        let batch = encode_record(record)?;
        let applied = self
            .controller
            .propose(batch, CONTROLLER_WRITE_TIMEOUT)
            .await
            .map_err(|e| ClusterError::NoController(e.to_string()))?;
        let index = applied.log_index;
        let mut metadata = self.metadata.clone();
        tokio::time::timeout(
            CONTROLLER_WRITE_TIMEOUT,
            metadata.wait_for(|m| m.applied >= index),
        )
        .await
        .map_err(|_| {
            ClusterError::NoController(format!(
                "entry {index} committed but not applied here in time"
            ))
        })?
        .map_err(|_| ClusterError::NoController("the broker is stopping".into()))?;
        // Committed and in this broker's metadata: done. Opening what it
        // hosts (a topic's partitions) usually follows within the wait
        // below; a large topic may take longer, and its partitions then
        // answer `LeaderNotAvailable`/`UnknownTopicOrPartition` (retriable)
        // until they are open, as after Kafka's CreateTopics.
        let mut reconciled = self.reconciled.subscribe();
        if tokio::time::timeout(
            CONTROLLER_WRITE_TIMEOUT,
            reconciled.wait_for(|r| *r >= index),
        )
        .await
        .is_err()
        {
            tracing::info!(
                index,
                "controller entry applied; this broker is still opening what it changes"
            );
        }
        Ok(index)
    }

    /// A producer id no broker of the cluster handed out before, from this
    /// broker's block; a new block comes from the controller (Kafka's
    /// `AllocateProducerIds`), at or above `min_start`.
    pub async fn next_producer_id(&self, min_start: i64) -> Result<i64, ClusterError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            self.propose(&MetaRecord::AllocateProducerIds {
                node: self.node_id,
                min_start,
            })
            .await?;
            *block = self
                .metadata()
                .producer_id_blocks
                .get(&self.node_id)
                .copied()
                .ok_or_else(|| ClusterError::NoController("no producer id block applied".into()))?;
            tracing::debug!(
                start = block.0,
                end = block.1,
                "producer id block allocated by the controller"
            );
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Creates a topic through the controller: replicas placed round-robin
    /// over the registered brokers, starting at a different broker for
    /// each topic so leadership spreads (the first replica of each
    /// partition is its preferred leader).
    pub async fn create_topic(
        &self,
        registry: &TopicRegistry,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), ClusterError> {
        validate_topic_name(name).map_err(TopicError::InvalidName)?;
        let partitions = if partitions == 0 {
            registry.default_partitions()
        } else {
            partitions
        };
        if partitions > PARTITIONS_MAX {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} partitions requested; allowed 1..={PARTITIONS_MAX}"
            ))
            .into());
        }
        let mut overrides = BTreeMap::new();
        for (k, v) in configs {
            if overrides.insert(k.clone(), v.clone()).is_some() {
                return Err(TopicError::InvalidConfig(format!("{k} given twice")).into());
            }
        }
        registry.topic_config(&overrides)?;
        let metadata = self.metadata();
        let brokers: Vec<u64> = metadata.brokers.keys().copied().collect();
        let factor = if replication_factor == 0 {
            self.default_replication_factor
                .min(brokers.len().max(1) as u16)
        } else {
            replication_factor
        };
        if factor == 0 || usize::from(factor) > brokers.len() {
            return Err(ClusterError::ReplicationFactor {
                factor,
                brokers: brokers.len(),
            });
        }
        if metadata.topics.contains_key(name) {
            return Err(TopicError::AlreadyExists(name.to_owned()).into());
        }
        if validate_only {
            return Ok(());
        }
        let start = name.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        let replicas = place_replicas(&brokers, partitions, factor, start);
        let record = MetaRecord::CreateTopic {
            name: name.to_owned(),
            configs: overrides.clone(),
            replicas: replicas.clone(),
        };
        self.propose(&record).await?;
        // Two creations of one name may race; the first applied won.
        match self.metadata().topics.get(name) {
            Some(spec) if spec.replicas == replicas && spec.configs == overrides => Ok(()),
            _ => Err(TopicError::AlreadyExists(name.to_owned()).into()),
        }
    }

    /// Imports the topics a lone broker kept in this data directory
    /// (`__meta/topics`) as topics whose partitions have this broker as
    /// their one replica, so their logs open on the direct path exactly as
    /// they were: offsets and data unchanged. A name the cluster already
    /// has is left alone (and logged). Runs until every such topic is in
    /// the metadata; a no-op once they are.
    async fn import_lone_broker_topics(
        &self,
        registry: &TopicRegistry,
    ) -> Result<(), ClusterError> {
        let data_dir = registry.data_dir().to_path_buf();
        let topics =
            tokio::task::spawn_blocking(move || crate::topics::lone_broker_topics(&data_dir))
                .await
                .map_err(|e| ClusterError::NoController(e.to_string()))??;
        for crate::topics::LoneTopic {
            name,
            partitions,
            configs,
        } in topics
        {
            let replicas = vec![vec![self.node_id]; partitions as usize];
            match self.metadata().topics.get(&name) {
                Some(spec) if spec.replicas == replicas => {}
                Some(_) => {
                    tracing::warn!(topic = %name, "a lone broker's topic has the name of a cluster topic: not imported (its data stays in this data directory)");
                    continue;
                }
                None => {
                    self.propose(&MetaRecord::CreateTopic {
                        name: name.clone(),
                        configs,
                        replicas,
                    })
                    .await?;
                    tracing::info!(topic = %name, partitions, "imported a lone broker's topic into the cluster (one replica, on this broker)");
                }
            }
            // The controller holds it now: the file would bring it back
            // after a deletion through the cluster.
            let path = registry.lone_topic_meta_path(&name);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an imported topic's file");
            }
        }
        Ok(())
    }

    /// Deletes a topic through the controller.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClusterError> {
        if !self.metadata().topics.contains_key(name) {
            return Err(TopicError::Unknown(name.to_owned()).into());
        }
        self.propose(&MetaRecord::DeleteTopic {
            name: name.to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Makes the registry match the metadata: opens what this broker hosts
    /// and does not have, closes and deletes what no longer exists.
    async fn reconcile(&self, registry: &Arc<TopicRegistry>) {
        let _pass = self.reconcile_lock.lock().await;
        let metadata = self.metadata();
        let hosted: BTreeSet<String> = registry.list().iter().map(|t| t.name.clone()).collect();
        for name in &hosted {
            if !metadata.topics.contains_key(name) {
                self.remove_topic(registry, name).await;
            }
        }
        for (name, spec) in &metadata.topics {
            if hosted.contains(name) {
                continue;
            }
            match self.open_topic(registry, name, spec).await {
                Ok(topic) => {
                    tracing::info!(topic = %name, hosted = topic.partitions.len(), partitions = topic.partition_count, "topic opened");
                    registry.install(topic);
                }
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "cannot open a topic's partitions")
                }
            }
        }
        self.reconciled.send_replace(metadata.applied);
    }

    async fn open_topic(
        &self,
        registry: &Arc<TopicRegistry>,
        name: &str,
        spec: &TopicSpec,
    ) -> Result<Topic, ClusterError> {
        let config = registry.topic_config(&spec.configs)?;
        let topic: Arc<str> = Arc::from(name);
        let mut partitions = Vec::new();
        for (p, replicas) in spec.replicas.iter().enumerate() {
            let Ok(p) = u32::try_from(p) else { break };
            if !replicas.contains(&self.node_id) {
                continue;
            }
            let (reg, n, cfg) = (Arc::clone(registry), name.to_owned(), config.clone());
            let log = tokio::task::spawn_blocking(move || reg.open_log(&n, p, &cfg, false))
                .await
                .map_err(|e| ClusterError::NoController(e.to_string()))??;
            let partition = if replicas.len() == 1 {
                Partition::new(Arc::clone(&topic), p, log)
            } else {
                let log = Arc::new(log);
                let dir = registry.log_dir(name, p);
                let replica = self
                    .node
                    .open_partition(
                        GroupId::Partition {
                            topic: name.to_owned(),
                            partition: p,
                        },
                        Arc::clone(&log),
                        default_state_path(&dir),
                        replicas,
                        config.replication_flush,
                    )
                    .await?;
                Partition::replicated(Arc::clone(&topic), p, log, replica, replicas.clone())
            };
            partitions.push(Arc::new(partition));
        }
        Ok(Topic {
            name: name.to_owned(),
            config,
            overrides: spec.configs.clone(),
            partition_count: u32::try_from(spec.replicas.len()).unwrap_or(u32::MAX),
            partitions,
        })
    }

    async fn remove_topic(&self, registry: &Arc<TopicRegistry>, name: &str) {
        let Some(topic) = registry.uninstall(name) else {
            return;
        };
        let ids: Vec<u32> = topic.partitions.iter().map(|p| p.id()).collect();
        for p in &topic.partitions {
            if let Some(replica) = p.replica() {
                self.node.close_partition(replica.group());
                replica.shutdown().await;
            }
        }
        drop(topic);
        for p in ids {
            let dir = registry.log_dir(name, p);
            let removed = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || std::fs::remove_dir_all(dir)
            })
            .await;
            match removed {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(Err(e)) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted partition's directory")
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "directory removal task failed")
                }
            }
        }
        tracing::info!(topic = name, "topic deleted");
    }

    /// Stops the inter-broker listener and forgets every group, first at
    /// shutdown, so that closing the registry finds each log unshared.
    pub async fn stop_peers(&self) {
        self.node.shutdown().await;
    }

    /// Stops the controller group (the partitions' groups are stopped as
    /// the registry closes them).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
        self.controller.shutdown().await;
        if let Err(e) = self.controller_log.flush().await {
            tracing::warn!(error = %e, "flushing the controller log failed");
        }
    }
}

/// How long a retried controller write waits before its next try.
const CONTROLLER_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Waits [`CONTROLLER_RETRY_PAUSE`]; false if the broker is stopping.
async fn pause_unless_stopped(shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::time::timeout(CONTROLLER_RETRY_PAUSE, crate::shutdown::stopped(shutdown))
        .await
        .is_err()
}

/// Replicas of each of `partitions` partitions: `factor` consecutive
/// brokers round-robin from `start`, so each broker is first (preferred
/// leader) of about as many partitions as the others.
fn place_replicas(brokers: &[u64], partitions: u32, factor: u16, start: usize) -> Vec<Vec<u64>> {
    let n = brokers.len().max(1);
    (0..partitions as usize)
        .map(|p| {
            (0..usize::from(factor))
                .map(|r| brokers[(start + p + r) % n])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_spread_leadership_and_never_repeat_a_broker() {
        let placed = place_replicas(&[1, 2, 3], 12, 3, 7);
        let mut firsts = BTreeMap::new();
        for replicas in &placed {
            let set: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(set.len(), 3);
            *firsts.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(firsts.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn a_record_round_trips_through_a_batch() {
        let record = MetaRecord::CreateTopic {
            name: "orders".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
        };
        let batch = encode_record(&record).expect("encode");
        assert_eq!(decode_records(&batch), vec![record]);
        assert!(decode_records(&Bytes::from_static(b"nonsense")).is_empty());
    }

    #[test]
    fn the_cluster_id_is_the_same_for_the_same_peers_and_kept_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers = parse_peers("2@127.0.0.1:2,1@127.0.0.1:1").expect("peers");
        let id = load_identity(dir.path(), &peers).expect("first start");
        assert_eq!(id, derive_cluster_id("1@127.0.0.1:1,2@127.0.0.1:2"));
        assert_eq!(load_identity(dir.path(), &peers).expect("again"), id);
        let other = parse_peers("1@127.0.0.1:1,3@127.0.0.1:3").expect("peers");
        let err = load_identity(dir.path(), &other).expect_err("other peers refused");
        let text = err.to_string();
        assert!(
            text.contains("2@127.0.0.1:2") && text.contains("3@127.0.0.1:3"),
            "{text}"
        );
    }
}
