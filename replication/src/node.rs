//! A broker's replication node: its inter-broker listener, its clients to
//! the other brokers, and the Raft groups (one per replicated partition) it
//! hosts. This is the one type the broker uses; openraft stays behind it.
//!
//! [`ReplicationNode::open_partition`] turns a partition log into a
//! [`PartitionReplica`]: a Raft member whose log store is that log. The
//! replica writes (as leader) with [`PartitionReplica::append`], reports
//! its high watermark (the end of the last committed entry), its leader and
//! its term (the leader epoch).
//!
//! A group is *initialised* (openraft's `initialize`, which writes the
//! first membership entry) by every replica whose Raft state is empty; all
//! replicas initialise with the same voter set, which openraft allows. A
//! replica with any state (vote, entry, purge) never initialises again: it
//! rejoins its group and is caught up by the leader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, RaftError};
use openraft::impls::ProgressResponder;
use openraft::Instant as _;
use openraft::{Config, ServerState};
use rill_protocol::peer::{GroupId, PeerRpc};
use rill_storage::PartitionLog;
use tokio::sync::{watch, Mutex};

use crate::config::FlushMode;
use crate::error::ReplicationError;
use crate::log_store::{AppendWaiters, LogStore};
use crate::network::{GroupNetwork, PartitionRaft, PeerClients, RaftRouter};
use crate::state_machine::{ApplyHook, DataStateMachine};
use crate::transport::{PeerClient, PeerIdentity, PeerListener};
use crate::types::{Applied, BrokerNode, RaftBatch, TypeConfig};

/// How a broker takes part in replication.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub identity: PeerIdentity,
    /// Where this broker's inter-broker listener binds.
    pub listen: SocketAddr,
    /// Every broker of the cluster (this one included): node id → the
    /// `host:port` of its inter-broker listener. More can be added later
    /// ([`ReplicationNode::add_peer`]).
    pub peers: BTreeMap<u64, String>,
    /// The election timeout (randomised in `[t, 2t)`).
    pub election_timeout: Duration,
    pub heartbeat: Duration,
    /// How long one inter-broker request may take, connecting included.
    pub request_timeout: Duration,
}

/// A broker's replication: see the module docs.
pub struct ReplicationNode {
    id: u64,
    listener: Mutex<Option<PeerListener>>,
    local_addr: SocketAddr,
    peers: Arc<PeerClients>,
    /// The cluster's brokers and their inter-broker addresses; the
    /// listener admits exactly these node ids.
    addrs: Arc<RwLock<BTreeMap<u64, String>>>,
    identity: PeerIdentity,
    request_timeout: Duration,
    router: Arc<RaftRouter>,
    raft_config: Arc<Config>,
}

impl std::fmt::Debug for ReplicationNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationNode")
            .field("id", &self.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ReplicationNode {
    /// Binds the inter-broker listener and prepares a client per peer
    /// (each connects on first use).
    pub async fn start(config: NodeConfig) -> Result<Self, ReplicationError> {
        let raft_config = Arc::new(crate::raft_config(
            duration_ms(config.election_timeout),
            duration_ms(config.heartbeat),
        )?);
        // A peer-loss election waits a random part of one heartbeat: long
        // enough apart that the first candidate's vote request usually
        // reaches the other followers before they start their own.
        let peers = Arc::new(PeerClients::default());
        let router = Arc::new(RaftRouter::new(config.heartbeat, Arc::clone(&peers)));
        let addrs = Arc::new(RwLock::new(config.peers.clone()));
        let members = Arc::clone(&addrs);
        let listener = PeerListener::bind(
            config.listen,
            config.identity,
            Arc::new(move |node| read(&members).contains_key(&node)),
            Arc::clone(&router) as Arc<dyn crate::transport::PeerHandler>,
        )
        .await
        .map_err(|e| ReplicationError::Listen {
            addr: config.listen,
            message: e.to_string(),
        })?;
        for (&node, addr) in &config.peers {
            if node != config.identity.node_id {
                peers.insert(PeerClient::new(
                    config.identity,
                    node,
                    addr.clone(),
                    config.request_timeout,
                ));
            }
        }
        Ok(ReplicationNode {
            id: config.identity.node_id,
            local_addr: listener.local_addr(),
            listener: Mutex::new(Some(listener)),
            peers,
            addrs,
            identity: config.identity,
            request_timeout: config.request_timeout,
            router,
            raft_config,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Makes `node` (at `addr`, its inter-broker listener) a broker this
    /// one talks to and admits, replacing what was known of it.
    pub fn add_peer(&self, node: u64, addr: impl Into<String>) {
        let addr = addr.into();
        write(&self.addrs).insert(node, addr.clone());
        if node != self.id {
            self.peers.insert(PeerClient::new(
                self.identity,
                node,
                addr,
                self.request_timeout,
            ));
        }
    }

    /// Forgets `node`: no more messages to it, its connections refused.
    pub fn remove_peer(&self, node: u64) {
        write(&self.addrs).remove(&node);
        self.peers.remove(node);
    }

    /// Where the inter-broker listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens the Raft group `group` over `log` (this broker's replica), with
    /// its Raft state in `state_path`. `replicas` are the group's voters;
    /// each must be a peer of the cluster. A replica with no Raft state
    /// initialises the group with them (see the module docs). `flush` is
    /// when this replica counts an entry as stored; every replica of a
    /// group must be given the same.
    pub async fn open_partition(
        &self,
        group: GroupId,
        log: Arc<PartitionLog>,
        state_path: PathBuf,
        replicas: &[u64],
        flush: FlushMode,
    ) -> Result<PartitionReplica, ReplicationError> {
        self.open_group(group, log, state_path, replicas, None, flush)
            .await
    }

    /// [`ReplicationNode::open_partition`], calling `on_apply` with each
    /// applied batch in log order (a group whose entries are state to
    /// build, as the controller's metadata records are).
    pub async fn open_group(
        &self,
        group: GroupId,
        log: Arc<PartitionLog>,
        state_path: PathBuf,
        replicas: &[u64],
        on_apply: Option<ApplyHook>,
        flush: FlushMode,
    ) -> Result<PartitionReplica, ReplicationError> {
        let mut voters = BTreeMap::new();
        let addrs = read(&self.addrs).clone();
        for node in replicas {
            let addr = addrs
                .get(node)
                .ok_or(ReplicationError::UnknownNode(*node))?;
            voters.insert(*node, BrokerNode { addr: addr.clone() });
        }
        if !voters.contains_key(&self.id) {
            return Err(ReplicationError::NotAReplica {
                node: self.id,
                replicas: replicas.to_vec(),
            });
        }
        let floor = log.log_start_offset();
        let store = LogStore::open(Arc::clone(&log), state_path)?.with_flush_mode(flush);
        let fresh = store.is_empty();
        let committed = store.committed();
        let waiters = store.append_waiters();
        let store_reader = store.reader();
        let mut sm = DataStateMachine::for_log(store.reader(), committed, floor);
        if let Some(hook) = on_apply {
            sm = sm.with_apply_hook(hook);
        }
        let high_watermark = sm.high_watermark();
        let log_start = sm.log_start();
        let purge_target = sm.purge_target();
        let network = GroupNetwork::new(group.clone(), Arc::clone(&self.peers));
        let raft = PartitionRaft::new(self.id, Arc::clone(&self.raft_config), network, store, sm)
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        self.router
            .insert(group.clone(), raft.clone(), store_reader);
        tokio::spawn(purge_on_log_start(
            group.clone(),
            raft.clone(),
            purge_target,
        ));
        if fresh {
            // The first replica (the preferred leader) initialises at once
            // and so, unopposed, becomes the first leader; the others only
            // if they have heard from nobody after two election timeouts
            // (the first replica is down): all at once would split the
            // first vote three ways.
            let first = replicas.first() == Some(&self.id);
            let delay =
                (!first).then(|| 2 * Duration::from_millis(self.raft_config.election_timeout_max));
            let raft = raft.clone();
            let group = group.clone();
            let init = async move {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                    if raft.metrics().borrow_watched().last_log_index.is_some() {
                        return;
                    }
                }
                match raft.initialize(voters).await {
                    Ok(()) => {}
                    // Another replica's membership reached this one first.
                    Err(RaftError::APIError(e)) => {
                        tracing::debug!(?group, error = %e, "group already initialised")
                    }
                    Err(e) => tracing::warn!(?group, error = %e, "cannot initialise the group"),
                }
            };
            if first {
                init.await;
            } else {
                tokio::spawn(init);
            }
        }
        Ok(PartitionReplica {
            group,
            node: self.id,
            raft,
            waiters,
            high_watermark,
            log_start,
            election_timeout: Duration::from_millis(self.raft_config.election_timeout_min),
            peers: Arc::clone(&self.peers),
            router: Arc::clone(&self.router),
        })
    }

    /// Stops hosting `group` (its Raft is shut down by
    /// [`PartitionReplica::shutdown`]).
    pub fn close_partition(&self, group: &GroupId) {
        self.router.remove(group);
    }

    /// Stops the listener and forgets every group (peers' requests are
    /// refused from now on). The groups' Rafts are shut down by their
    /// replicas.
    pub async fn shutdown(&self) {
        if let Some(listener) = self.listener.lock().await.take() {
            listener.shutdown().await;
        }
        self.router.clear();
    }
}

/// How long one snapshot request may take before it is asked again (a
/// snapshot of a data partition is metadata, built at once; openraft
/// ignores a request while it builds one).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// Purges a group's Raft log below each new log start its state machine
/// applies: asks openraft for a snapshot up to the purge target (the entry
/// just below the log start), waits until openraft holds it, then asks for
/// the purge (openraft purges only what a snapshot covers, and on a leader
/// once no replication task reads those entries). Ends with the group.
async fn purge_on_log_start(
    group: GroupId,
    raft: PartitionRaft,
    mut targets: watch::Receiver<Option<crate::types::LogId>>,
) {
    while targets.changed().await.is_ok() {
        let Some(target) = *targets.borrow_and_update() else {
            continue;
        };
        let mut metrics = raft.metrics();
        loop {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let deadline = tokio::time::Instant::now() + SNAPSHOT_WAIT;
            let covered = loop {
                if metrics.borrow_watched().snapshot.as_ref() >= Some(&target) {
                    break true;
                }
                match tokio::time::timeout_at(deadline, metrics.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => break false,
                }
            };
            if covered {
                break;
            }
            tracing::debug!(?group, %target, "snapshot for the log start not built yet; asking again");
        }
        if raft.trigger().purge_log(target.index).await.is_err() {
            return;
        }
        tracing::debug!(?group, %target, "raft log purge requested below the new log start");
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Changed by single inserts and removals: a panic while held leaves it whole.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Resolves once a staged append is committed (its base offset), or fails
/// if leadership changed before it was.
pub type CommitFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, AppendError>> + Send>>;

/// How long [`PartitionReplica::append`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendWait {
    /// Until the leader's log holds the batch (`acks=leader`).
    Appended,
    /// Until the batch is committed: on a majority of the replicas, durable
    /// as they report it (`acks=all`).
    Committed,
}

/// Why a write was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// This replica is not the leader; `leader` is the one it knows of.
    #[error("not the leader of this partition (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The leader changed after the batch was appended here: it may or may
    /// not be committed by the new leader (an idempotent producer's retry
    /// is deduplicated either way).
    #[error("leadership changed while the write was in flight (leader now: {leader:?})")]
    LeaderChanged { leader: Option<u64> },
    /// This replica leads, but no majority has acknowledged it for an
    /// election timeout: the write was not taken (`NotEnoughReplicas`).
    #[error("no majority of the replicas acknowledged this leader within the election timeout")]
    NoQuorum,
    /// The batch is not one the log can take.
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// The group's Raft stopped (shutdown or a storage failure).
    #[error("replication stopped: {0}")]
    Stopped(String),
}

/// This broker's replica of one partition.
#[derive(Clone)]
pub struct PartitionReplica {
    group: GroupId,
    node: u64,
    raft: PartitionRaft,
    waiters: Arc<AppendWaiters>,
    high_watermark: watch::Receiver<u64>,
    /// Where the partition's log starts for its readers.
    log_start: watch::Receiver<u64>,
    election_timeout: Duration,
    /// To forward a proposal to the leader.
    peers: Arc<PeerClients>,
    /// Which peers are gone, and the leadership transfers under way.
    router: Arc<RaftRouter>,
}

impl std::fmt::Debug for PartitionReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReplica")
            .field("group", &self.group)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Where a replica stands, from openraft's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub node: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    /// The current term: the leader epoch of the batches a leader of this
    /// term writes.
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    /// On a leader, the followers (not itself) that acknowledged it within
    /// the last election timeout, with itself: the in-sync replicas.
    /// Empty on a follower.
    pub in_sync: Vec<u64>,
    /// The voters of the group.
    pub replicas: Vec<u64>,
    /// On a leader, how long since a quorum last acknowledged it.
    pub since_quorum_ack: Option<Duration>,
    /// On a leader: no majority has acknowledged it for an election
    /// timeout (it refuses writes; a partitioned-off leader looks so until
    /// a newer term reaches it).
    pub lease_lapsed: bool,
    /// On a leader, each follower's last index known to match the
    /// leader's log (`None`: nothing matched yet). Empty on a follower.
    pub matched: BTreeMap<u64, Option<u64>>,
}

impl PartitionReplica {
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// Offers `batch` (one whole native batch, as a producer sent it) to the
    /// group as its leader and waits as `wait` says. Answers the base offset
    /// the batch was given.
    ///
    /// A leader whose quorum lease has lapsed (no majority acknowledged it
    /// within an election timeout, as when cut off or right after its
    /// election) waits for a fresh acknowledgement up to one election
    /// timeout, then answers [`AppendError::NoQuorum`].
    pub async fn append(&self, batch: Bytes, wait: AppendWait) -> Result<u64, AppendError> {
        let (base, commit) = self.append_staged(batch).await?;
        match wait {
            AppendWait::Appended => Ok(base),
            AppendWait::Committed => commit.await,
        }
    }

    /// Offers `batch` as [`PartitionReplica::append`] does and returns as
    /// soon as the leader's log holds it: its base offset, and a future
    /// that resolves once the entry is committed (with the same offset) or
    /// fails if leadership changed first. The caller can so release an
    /// ordering lock after the append and wait for the commit outside it.
    pub async fn append_staged(&self, batch: Bytes) -> Result<(u64, CommitFuture), AppendError> {
        let batch = RaftBatch::new(batch).map_err(|e| AppendError::Invalid(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.election_timeout;
        loop {
            if self.lease_lapsed() && !self.await_quorum_ack(deadline).await {
                return Err(AppendError::NoQuorum);
            }
            let (tag, appended) = self.waiters.register();
            let forget = Forget {
                waiters: Arc::clone(&self.waiters),
                tag,
            };
            let (responder, _committed, mut done) = ProgressResponder::<TypeConfig, _>::new();
            if let Err(e) = self
                .raft
                .client_write_ff(batch.clone().tagged(tag), Some(responder))
                .await
            {
                return Err(AppendError::Stopped(e.to_string()));
            }
            let first = tokio::select! {
                biased;
                Ok(base) = appended => Ok(base),
                result = &mut done => Err(result),
            };
            drop(forget);
            match first {
                Ok(base) => {
                    let commit = async move {
                        match done.await {
                            Ok(Ok(resp)) => resp.data.base_offset.ok_or_else(|| {
                                AppendError::Stopped(
                                    "a data entry was applied without an offset".into(),
                                )
                            }),
                            Ok(Err(e)) => Err(match client_write_error(e) {
                                Refusal::LeaseExpired => {
                                    AppendError::LeaderChanged { leader: None }
                                }
                                Refusal::Other(e) => e,
                            }),
                            Err(_) => Err(AppendError::Stopped(
                                "the raft core dropped the write".into(),
                            )),
                        }
                    };
                    return Ok((base, Box::pin(commit)));
                }
                Err(Ok(Ok(resp))) => {
                    // Applied before the append was seen (cannot happen:
                    // appending precedes applying), answer it all the same.
                    let base = resp.data.base_offset.ok_or_else(|| {
                        AppendError::Stopped("a data entry was applied without an offset".into())
                    })?;
                    return Ok((base, Box::pin(std::future::ready(Ok(base)))));
                }
                Err(Ok(Err(e))) => match client_write_error(e) {
                    Refusal::LeaseExpired => {
                        if !self.await_quorum_ack(deadline).await {
                            return Err(AppendError::NoQuorum);
                        }
                    }
                    Refusal::Other(e) => return Err(e),
                },
                Err(Err(_)) => {
                    return Err(AppendError::Stopped(
                        "the raft core dropped the write".into(),
                    ))
                }
            }
        }
    }

    /// A leader that no majority acknowledged within the last election
    /// timeout. openraft's own lease is `election_timeout_max` (twice the
    /// election timeout), so without this check a cut-off leader would
    /// take writes for up to two election timeouts, after its Metadata has
    /// stopped naming it and while a new leader may be being elected.
    fn lease_lapsed(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader && self.lapsed(m.last_quorum_acked.map(|at| at.elapsed()))
    }

    /// No majority acknowledged this leader within the election timeout.
    fn lapsed(&self, since_quorum_ack: Option<Duration>) -> bool {
        since_quorum_ack.is_none_or(|d| d > self.election_timeout)
    }

    /// Whether this replica leads, and the leader it knows of: the cheap
    /// part of [`PartitionReplica::status`], for every append and read.
    pub fn leadership(&self) -> (bool, Option<u64>) {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        (m.state == ServerState::Leader, m.current_leader)
    }

    /// Resolves once this replica can no longer commit what it appended as
    /// leader: it stopped leading, or no majority has acknowledged it for
    /// an election timeout (cut off). A write waiting for its commit then
    /// has an unknown outcome, and its producer should go to the new
    /// leader rather than wait out its request timeout.
    pub async fn lost_leadership(&self) {
        let mut metrics = self.raft.metrics();
        // Lease expiry is a matter of time, not of a metrics change: look
        // again at least four times per election timeout.
        let recheck = self.election_timeout / 4;
        loop {
            {
                let m = metrics.borrow_watched();
                if m.state != ServerState::Leader {
                    return;
                }
                if self.lapsed(m.last_quorum_acked.map(|at| at.elapsed())) {
                    return;
                }
            }
            // The watch closes when the Raft stops: leadership is lost too.
            if let Ok(Err(_)) = tokio::time::timeout(recheck, metrics.changed()).await {
                return;
            }
        }
    }

    /// Waits until this leader's quorum lease is fresh, or `deadline`;
    /// false if it is not by then (or this node is no longer leader).
    async fn await_quorum_ack(&self, deadline: tokio::time::Instant) -> bool {
        let mut metrics = self.raft.metrics();
        let asked = tokio::time::Instant::now();
        loop {
            {
                let m = metrics.borrow_watched();
                if m.state != ServerState::Leader {
                    return false;
                }
                // Acknowledged since the refusal: the lease is fresh.
                if m.last_quorum_acked
                    .is_some_and(|at| at.elapsed() < asked.elapsed())
                {
                    return true;
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Commits `batch` through the group's leader, wherever it is: written
    /// here when this replica leads, else forwarded to the leader over the
    /// inter-broker connection (Kafka's forwarding to the controller,
    /// KIP-590). Waits out an election (no leader known) until `timeout`.
    /// Answers what applying the entry answered (its log index), so the
    /// caller can wait until its own replica has applied it too.
    pub async fn propose(&self, batch: Bytes, timeout: Duration) -> Result<Applied, AppendError> {
        let raft_batch =
            RaftBatch::new(batch.clone()).map_err(|e| AppendError::Invalid(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_watched().current_leader;
            let attempt = match leader {
                Some(l) if l == self.node => match self.raft.client_write(raft_batch.clone()).await
                {
                    Ok(resp) => return Ok(resp.data),
                    Err(RaftError::APIError(e)) => match client_write_error(e) {
                        Refusal::LeaseExpired | Refusal::Other(AppendError::NotLeader { .. }) => {
                            Err(AppendError::NotLeader { leader: None })
                        }
                        Refusal::Other(e) => Err(e),
                    },
                    Err(RaftError::Fatal(f)) => return Err(AppendError::Stopped(f.to_string())),
                },
                Some(l) => self.forward(l, batch.clone()).await,
                None => Err(AppendError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(applied) => return Ok(applied),
                Err(AppendError::Invalid(e)) => return Err(AppendError::Invalid(e)),
                Err(e) => {
                    tracing::debug!(group = ?self.group, error = %e, "proposal not taken; waiting for a leader");
                    // Wake on any change of leader or term, or retry after
                    // a heartbeat's worth of time (the leader may be
                    // unreachable while still known).
                    let retry = tokio::time::Instant::now() + self.election_timeout / 4;
                    let wake = retry.min(deadline);
                    let _ = tokio::time::timeout_at(wake, metrics.changed()).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn forward(&self, leader: u64, batch: Bytes) -> Result<Applied, AppendError> {
        let Some(peer) = self.peers.get(leader) else {
            return Err(AppendError::NotLeader {
                leader: Some(leader),
            });
        };
        let answer = match peer
            .request(self.group.clone(), PeerRpc::Propose, batch)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(group = ?self.group, leader, error = %e, "cannot forward a proposal");
                return Err(AppendError::NotLeader {
                    leader: Some(leader),
                });
            }
        };
        let answer: Result<Applied, String> = postcard::from_bytes(&answer)
            .map_err(|e| AppendError::Stopped(format!("leader {leader} answered nonsense: {e}")))?;
        answer.map_err(|message| {
            tracing::debug!(group = ?self.group, leader, %message, "forwarded proposal refused");
            AppendError::NotLeader {
                leader: Some(leader),
            }
        })
    }

    /// Where the partition's log starts for its readers: raised by each
    /// log start entry applied (the leader's retention) or snapshot
    /// installed. Offsets below it are gone, or about to be.
    pub fn log_start(&self) -> u64 {
        *self.log_start.borrow()
    }

    /// The log start and its changes.
    pub fn log_start_watch(&self) -> watch::Receiver<u64> {
        self.log_start.clone()
    }

    /// As the leader, starts the partition's log at `offset` (the
    /// leader's retention decision): writes a log start entry and waits
    /// until it is applied here. Each replica then raises its log start
    /// and deletes what lies below it once its Raft log is purged there.
    /// `offset` must be where a batch starts, at or below the high
    /// watermark; the caller takes it from its retention cut.
    pub async fn advance_log_start(&self, offset: u64) -> Result<(), AppendError> {
        let hw = *self.high_watermark.borrow();
        if offset > hw {
            return Err(AppendError::Invalid(format!(
                "log start {offset} is past the high watermark {hw}"
            )));
        }
        let batch = crate::log_store::log_start_batch(offset)
            .map_err(|e| AppendError::Invalid(e.to_string()))?;
        match self.raft.client_write(batch).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(e)) => Err(match client_write_error(e) {
                Refusal::LeaseExpired => AppendError::NoQuorum,
                Refusal::Other(e) => e,
            }),
            Err(RaftError::Fatal(f)) => Err(AppendError::Stopped(f.to_string())),
        }
    }

    /// The high watermark (the offset past the last committed entry) and
    /// its changes.
    pub fn high_watermark(&self) -> watch::Receiver<u64> {
        self.high_watermark.clone()
    }

    /// Changes of openraft's view of this replica (leader, term, commit):
    /// the broker watches it to keep its metadata current.
    pub fn changes(&self) -> watch::Receiver<()> {
        let mut metrics = self.raft.metrics();
        let (tx, rx) = watch::channel(());
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        rx
    }

    pub fn status(&self) -> ReplicaStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let is_leader = m.state == ServerState::Leader;
        let since_quorum_ack = m.last_quorum_acked.map(|at| at.elapsed());
        let replicas: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let mut in_sync = Vec::new();
        if is_leader {
            let fresh = |since: Option<u64>| {
                since.is_some_and(|ms| Duration::from_millis(ms) <= self.election_timeout)
            };
            for node in &replicas {
                if *node == self.node {
                    in_sync.push(*node);
                    continue;
                }
                let acked = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(node).copied().flatten())
                    .map(|at| at.elapsed().as_millis() as u64);
                if fresh(acked) {
                    in_sync.push(*node);
                }
            }
        }
        ReplicaStatus {
            node: self.node,
            leader: m.current_leader,
            is_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            committed_index: m.cluster_committed.map(|c| c.index),
            in_sync,
            replicas,
            since_quorum_ack,
            lease_lapsed: is_leader && self.lapsed(since_quorum_ack),
            matched: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(node, id)| (*node, id.map(|id| id.index)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Asks openraft to hand leadership to `to` (it must be caught up).
    /// Not to a broker whose connections are gone: a leader handing over
    /// takes no writes until the target campaigns.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), AppendError> {
        if self.router.peer_gone(to) {
            return Err(AppendError::NotLeader { leader: None });
        }
        self.router.transferring(self.group.clone(), to);
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| AppendError::Stopped(e.to_string()))
    }

    /// Stops this replica's Raft (its log stays open for the caller).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = ?self.group, error = %e, "raft shutdown failed");
        }
    }
}

/// Removes a tag's waiter however the append ends.
struct Forget {
    waiters: Arc<AppendWaiters>,
    tag: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.waiters.forget(self.tag);
    }
}

/// Why one attempt at a write failed: a lapsed lease is worth waiting
/// out; anything else goes back to the caller.
enum Refusal {
    LeaseExpired,
    Other(AppendError),
}

fn client_write_error(e: ClientWriteError<TypeConfig>) -> Refusal {
    match e {
        ClientWriteError::ForwardToLeader(f) if f.reason == ForwardReason::LeaseExpired => {
            Refusal::LeaseExpired
        }
        ClientWriteError::ForwardToLeader(f) => Refusal::Other(AppendError::NotLeader {
            leader: f.leader_id,
        }),
        ClientWriteError::LogEntryDiscarded(f) => Refusal::Other(AppendError::LeaderChanged {
            leader: f.leader_id,
        }),
        other => Refusal::Other(AppendError::Stopped(other.to_string())),
    }
}
