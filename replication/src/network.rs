//! openraft's network over the inter-broker transport: what a Raft group
//! sends to a peer, and how a broker hands what arrives to the right group.
//!
//! Sending: [`GroupNetwork`] is one group's `RaftNetworkFactory`; its
//! clients share the broker's [`PeerClients`] (one [`PeerClient`], so one
//! connection, per peer broker for every group) and tag each request with
//! the group. Receiving: [`RaftRouter`] is the transport's
//! [`PeerHandler`]: it finds the group's `Raft` by [`GroupId`] and calls it.
//!
//! Messages are openraft's own types, serialized with postcard (compact,
//! and a record batch crosses as one byte string). Appends to one follower
//! are pipelined: up to [`APPEND_PIPELINE_DEPTH`] requests in flight, each
//! at most `LIMITED_READ_BYTES` of batches (the log reader's cap, the
//! protocol's `PEER_APPEND_BYTES_MAX`), answered in order because the
//! transport runs one group's requests in arrival order. An answer is
//! `Result<response, String>`: the receiving Raft's error travels back as
//! text; a request for a group this broker does not host is a transport
//! error (the sender's Raft backs off and retries).
//!
//! # A leader's death
//! openraft's followers refuse to vote while the last leader's lease runs
//! (the longest election timeout since its last heartbeat), and start an
//! election only after their own election timeout: with the default
//! 1.5 s timeout a dead leader is replaced after 3 s or more. But a killed
//! or stopped broker's connections are closed by its kernel at once, and
//! the leader of a group keeps a connection open to each follower (its
//! heartbeats). So the router counts each peer's open connections to this
//! broker; when the last one ends, the peer is *gone* until it connects
//! again, and:
//! - every group this broker follows whose leader is that peer starts an
//!   election (no pre-vote), after a pause set by its rank among the
//!   group's remaining voters, an order the same on every broker and
//!   different per group: the first campaigns at once, the next one
//!   heartbeat later unless it has been asked for its vote meanwhile, so
//!   two followers rarely campaign together and split the vote;
//! - a vote request for a group whose leader, as this broker knows it, is
//!   gone is judged on the candidate's log alone, as a leadership transfer
//!   is (openraft's `leadership_transfer` flag).
//!
//! A leader handing its leadership over (to the preferred replica) takes
//! no writes until the target campaigns; if the target's connections end
//! meanwhile, it hands over to another live voter instead (openraft
//! cannot take a transfer back), and it never starts a transfer to a
//! gone peer.
//!
//! Raft's safety does not rest on the lease (a vote is still one per term,
//! for a log at least as long as the voter's): the lease only keeps a live
//! leader from being disturbed. A leader both followers lost their
//! connections from cannot reach a majority anyway. A leader that hangs
//! without its connections closing, or a network cut, still takes the
//! lease and the timeout.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::async_runtime::WatchReceiver;
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::StreamAppendError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Raft, ServerState};
use rill_protocol::peer::{GroupId, PeerRpc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::log_store::LogReader;
use crate::state_machine::DataStateMachine;
use crate::transport::{PeerClient, PeerHandler, TransportError};
use crate::types::{
    BrokerNode, LogId, MetaSnapshot, PartitionSnapshot, SnapshotMeta, TypeConfig, Vote,
};

/// This broker's clients to its peers, by node id: shared by every group.
#[derive(Debug, Default)]
pub struct PeerClients {
    clients: RwLock<HashMap<u64, Arc<PeerClient>>>,
}

impl PeerClients {
    pub fn insert(&self, client: PeerClient) {
        let node = client.node();
        write(&self.clients).insert(node, Arc::new(client));
    }

    pub fn remove(&self, node: u64) -> Option<Arc<PeerClient>> {
        write(&self.clients).remove(&node)
    }

    pub fn get(&self, node: u64) -> Option<Arc<PeerClient>> {
        read(&self.clients).get(&node).cloned()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The maps are changed by single inserts and removals: a panic while
    // one was held leaves them consistent.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a message could not be turned into bytes or back.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
struct CodecError {
    what: &'static str,
    source: postcard::Error,
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Bytes, CodecError> {
    // Sized first (a walk that copies nothing), so an append of a MiB of
    // batches is written into one allocation, not a doubling series.
    let size = postcard::experimental::serialized_size(value)
        .map_err(|source| CodecError { what, source })?;
    postcard::to_extend(value, Vec::with_capacity(size))
        .map(Bytes::from)
        .map_err(|source| CodecError { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|source| CodecError { what, source })
}

/// A whole snapshot in one message (snapshots of data partitions are
/// metadata only: a few hundred bytes).
#[derive(Serialize, Deserialize)]
struct SnapshotMessage {
    vote: Vote,
    meta: SnapshotMeta,
    data: PartitionSnapshot,
}

/// A vote request, or a pre-vote (would you vote for me at the next
/// term? — asked first, so a node that was cut off cannot disrupt a
/// healthy leader by raising the term when it returns).
#[derive(Serialize, Deserialize)]
struct VoteMessage {
    pre: bool,
    rpc: VoteRequest<TypeConfig>,
}

/// Append requests to one follower in flight at once. Each carries at most
/// the log reader's byte cap, so this bounds one group's bytes in flight to
/// a follower.
pub const APPEND_PIPELINE_DEPTH: usize = 4;

/// One Raft group's network: openraft creates a client per target from it.
#[derive(Debug, Clone)]
pub struct GroupNetwork {
    group: GroupId,
    peers: Arc<PeerClients>,
}

impl GroupNetwork {
    pub fn new(group: GroupId, peers: Arc<PeerClients>) -> Self {
        GroupNetwork { group, peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupClient;

    async fn new_client(&mut self, target: u64, _node: &BrokerNode) -> GroupClient {
        GroupClient {
            group: self.group.clone(),
            target,
            peers: Arc::clone(&self.peers),
        }
    }
}

/// What a pipelined append stream yields per request.
type AppendResult =
    Result<Result<Option<LogId>, StreamAppendError<TypeConfig>>, RPCError<TypeConfig>>;

/// One group's messages to one peer.
#[derive(Debug)]
pub struct GroupClient {
    group: GroupId,
    target: u64,
    peers: Arc<PeerClients>,
}

/// The peer was not reached (no client for it, or its connection failed):
/// openraft backs off before retrying.
fn unreachable<E: std::error::Error + 'static>(e: &E) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("no address known for node {0}")]
struct UnknownPeer(u64);

#[derive(Debug, thiserror::Error)]
#[error("node {node} failed the request: {message}")]
struct RemoteFailure {
    node: u64,
    message: String,
}

impl GroupClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: PeerRpc,
        what: &'static str,
        request: &Req,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let Some(peer) = self.peers.get(self.target) else {
            return Err(unreachable(&UnknownPeer(self.target)));
        };
        let payload =
            encode(what, request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = match peer.request(self.group.clone(), rpc, payload).await {
            Ok(answer) => answer,
            Err(e @ TransportError::Timeout { .. }) => {
                return Err(RPCError::Network(NetworkError::new(&e)))
            }
            Err(e) => return Err(unreachable(&e)),
        };
        let answer: Result<Resp, String> =
            decode(what, &answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|message| {
            RPCError::Network(NetworkError::new(&RemoteFailure {
                node: self.target,
                message,
            }))
        })
    }
}

impl RaftNetworkV2<TypeConfig> for GroupClient {
    type SnapshotData = PartitionSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::AppendEntries, "append entries", &rpc)
            .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendResult>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let this: &'s GroupClient = self;
        Box::pin(async move {
            let answers = input
                .map(move |req| {
                    let prev = req.prev_log_id;
                    let last = req.entries.last().map(|e| e.log_id).or(prev);
                    async move {
                        let resp: Result<AppendEntriesResponse<TypeConfig>, _> = this
                            .call(PeerRpc::AppendEntries, "append entries", &req)
                            .await;
                        (prev, last, resp)
                    }
                })
                .buffered(APPEND_PIPELINE_DEPTH);
            // openraft's contract: the stream ends after the first error,
            // conflict, higher vote or partial success (the requests behind
            // it were built on an assumption that no longer holds).
            let strm = answers.scan(false, |stopped, (prev, last, resp)| {
                if *stopped {
                    return std::future::ready(None);
                }
                let item = match resp {
                    Ok(AppendEntriesResponse::Success) => Ok(Ok(last)),
                    Ok(AppendEntriesResponse::PartialSuccess(upto)) => {
                        *stopped = upto != last;
                        Ok(Ok(upto))
                    }
                    Ok(AppendEntriesResponse::Conflict) => {
                        *stopped = true;
                        match prev {
                            Some(p) => Ok(Err(StreamAppendError::Conflict(p))),
                            // A conflict with nothing before it cannot
                            // happen; treat the answer as nonsense.
                            None => Err(RPCError::Network(NetworkError::new(&RemoteFailure {
                                node: this.target,
                                message: "a conflict before the first entry".into(),
                            }))),
                        }
                    }
                    Ok(AppendEntriesResponse::HigherVote(v)) => {
                        *stopped = true;
                        Ok(Err(StreamAppendError::HigherVote(v)))
                    }
                    Err(e) => {
                        *stopped = true;
                        Err(e)
                    }
                };
                std::future::ready(Some(item))
            });
            let strm: BoxStream<'s, AppendResult> = Box::pin(strm);
            Ok(strm)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::Vote, "vote", &VoteMessage { pre: false, rpc })
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::Vote, "pre-vote", &VoteMessage { pre: true, rpc })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: MetaSnapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        self.call(PeerRpc::Snapshot, "snapshot", &message)
            .await
            .map_err(|e| match e {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(never) => match never.source {},
            })
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::TransferLeader, "transfer leader", &req)
            .await
    }
}

/// The data partition Raft of this crate.
pub type PartitionRaft = Raft<TypeConfig, DataStateMachine>;

/// Hands each request that arrives to its group's Raft, and starts the
/// elections a leader's vanished connection calls for (module docs,
/// "A leader's death").
#[derive(Debug)]
pub struct RaftRouter {
    /// Each group's Raft, and its log's reader (for its last log id: what
    /// a vote is judged on).
    groups: RwLock<HashMap<GroupId, (PartitionRaft, LogReader)>>,
    /// Per peer node: its connections to this one that are open, and
    /// whether the last of them has ended since it connected.
    peers: Arc<Mutex<HashMap<u64, PeerLink>>>,
    /// The gap between the peer-loss elections of two followers of a
    /// group, so that they rarely campaign at once and split the vote.
    election_jitter: Duration,
    /// Random per router: the pauses differ between brokers.
    jitter_seed: RandomState,
    /// To ask the other voters before a peer-loss election.
    clients: Arc<PeerClients>,
    /// The leadership transfers this broker started, by group: target,
    /// and the term it led in (a transfer that happened ends that term).
    transfers: Mutex<HashMap<GroupId, (u64, u64)>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PeerLink {
    open: u32,
    gone: bool,
}

impl RaftRouter {
    /// A router whose peer-loss elections are `election_jitter` apart and
    /// ask the other voters through `clients` first.
    pub fn new(election_jitter: Duration, clients: Arc<PeerClients>) -> Self {
        RaftRouter {
            groups: RwLock::default(),
            peers: Arc::default(),
            election_jitter,
            jitter_seed: RandomState::new(),
            clients,
            transfers: Mutex::default(),
        }
    }

    /// Notes that this broker, leading `group`, hands leadership to `to`.
    pub fn transferring(&self, group: GroupId, to: u64) {
        let term = read(&self.groups)
            .get(&group)
            .map(|(raft, _)| raft.metrics().borrow_watched().current_term);
        if let Some(term) = term {
            lock(&self.transfers).insert(group, (to, term));
        }
    }

    /// A leader handing over to `node` takes no writes until `node`
    /// campaigns, which a gone `node` never does: hands over to another
    /// voter instead (openraft cannot take a transfer back), so the group
    /// does not wait out the other follower's election timeout.
    fn redirect_transfers_to(&self, node: u64) {
        let groups: Vec<(GroupId, u64)> = {
            let mut transfers = lock(&self.transfers);
            let to_node: Vec<(GroupId, u64)> = transfers
                .iter()
                .filter(|(_, &(to, _))| to == node)
                .map(|(g, &(_, term))| (g.clone(), term))
                .collect();
            for (g, _) in &to_node {
                transfers.remove(g);
            }
            to_node
        };
        for (group, term) in groups {
            let Some(raft) = read(&self.groups).get(&group).map(|(r, _)| r.clone()) else {
                continue;
            };
            let other = {
                let m = raft.metrics();
                let m = m.borrow_watched();
                // Still leading in the term of the transfer: it is pending.
                if m.state != ServerState::Leader || m.current_term != term {
                    continue;
                }
                let me = m.id;
                let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
                voters
                    .into_iter()
                    .find(|&v| v != me && v != node && !self.peer_gone(v))
            };
            let Some(other) = other else { continue };
            tracing::info!(
                ?group,
                gone = node,
                to = other,
                "the transfer target's connection ended; handing leadership to another replica"
            );
            lock(&self.transfers).insert(group.clone(), (other, term));
            tokio::spawn(async move {
                if let Err(e) = raft.trigger().transfer_leader(other).await {
                    tracing::debug!(?group, error = %e, "transfer not started");
                }
            });
        }
    }

    /// Whether every connection `node` had opened to this broker has
    /// ended and it has not connected again: its process is gone (or cut
    /// off from this broker), so no lease of its binds this broker's vote.
    pub fn peer_gone(&self, node: u64) -> bool {
        gone(&self.peers, node)
    }

    /// Starts an election in each group this broker follows whose leader
    /// is `node`, after a pause set by this broker's rank among the
    /// group's other voters ([`campaign_order`]), if by then `node` still
    /// leads in its eyes and is still gone: the first-ranked campaigns at
    /// once and the next only if, one heartbeat later, nobody has asked
    /// for its vote (the first one's log was behind its own, say).
    fn elect_without(&self, node: u64) {
        let followed: Vec<(GroupId, PartitionRaft, LogReader, usize)> = read(&self.groups)
            .iter()
            .filter_map(|(group, (raft, log))| {
                let m = raft.metrics();
                let m = m.borrow_watched();
                if m.current_leader != Some(node) || m.state != ServerState::Follower {
                    return None;
                }
                let mut left: Vec<u64> = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .filter(|&v| v != node)
                    .collect();
                left.sort_by_key(|&v| campaign_order(group, v));
                let rank = left.iter().position(|&v| v == m.id)?;
                Some((group.clone(), raft.clone(), log.clone(), rank))
            })
            .collect();
        for (group, raft, log, rank) in followed {
            let pause = self.pause(&group, rank);
            let peers = Arc::clone(&self.peers);
            let clients = Arc::clone(&self.clients);
            tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let still = {
                    let m = raft.metrics();
                    let m = m.borrow_watched();
                    m.current_leader == Some(node) && m.state == ServerState::Follower
                };
                if !still || !gone(&peers, node) {
                    return;
                }
                if !would_win(&raft, &log, &group, node, &clients).await {
                    tracing::debug!(
                        ?group,
                        leader = node,
                        "a voter holds a longer log; its own campaign replaces the lost leader"
                    );
                    return;
                }
                tracing::info!(
                    ?group,
                    leader = node,
                    "the leader's connection ended; starting an election"
                );
                ::metrics::counter!(PEER_LOSS_ELECTIONS_TOTAL).increment(1);
                if let Err(e) = raft.trigger().elect(false).await {
                    tracing::debug!(?group, error = %e, "election not started");
                }
            });
        }
    }

    /// The pause before the peer-loss election of the follower ranked
    /// `rank` in its group's campaign order: one `election_jitter` per
    /// rank, plus a random quarter of one so that equal ranks (voters that
    /// disagree on the membership) rarely coincide.
    fn pause(&self, group: &GroupId, rank: usize) -> Duration {
        let mut h = self.jitter_seed.build_hasher();
        group.hash(&mut h);
        std::time::Instant::now().hash(&mut h);
        let quarter = u64::try_from(self.election_jitter.as_micros() / 4)
            .unwrap_or(u64::MAX)
            .max(1);
        let ranked = self
            .election_jitter
            .saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX));
        ranked + Duration::from_micros(h.finish() % quarter)
    }

    pub fn insert(&self, group: GroupId, raft: PartitionRaft, log: LogReader) {
        write(&self.groups).insert(group, (raft, log));
    }

    pub fn remove(&self, group: &GroupId) -> Option<PartitionRaft> {
        lock(&self.transfers).remove(group);
        write(&self.groups).remove(group).map(|(raft, _)| raft)
    }

    /// Forgets every group (at shutdown, so no handle outlives its log).
    pub fn clear(&self) {
        write(&self.groups).clear();
    }
}

/// Asks the group's other voters (but `gone`) whether they would vote for
/// this replica at the next term, judged on the logs alone: a campaign
/// that a voter with a longer log refuses would only raise the term past
/// that voter's, so that its own campaign, next in line, is refused in
/// turn and the group waits out election timeouts.
async fn would_win(
    raft: &PartitionRaft,
    log: &LogReader,
    group: &GroupId,
    gone: u64,
    clients: &Arc<PeerClients>,
) -> bool {
    let (me, rpc, voters) = {
        let m = raft.metrics();
        let m = m.borrow_watched();
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let rpc = VoteRequest {
            vote: Vote::new(m.current_term + 1, m.id),
            last_log_id: log.last_log_id(),
            leadership_transfer: true,
        };
        (m.id, rpc, voters)
    };
    let asks = voters
        .iter()
        .filter(|&&v| v != me && v != gone)
        .map(|&target| {
            let client = GroupClient {
                group: group.clone(),
                target,
                peers: Arc::clone(clients),
            };
            let message = VoteMessage {
                pre: true,
                rpc: rpc.clone(),
            };
            async move {
                client
                    .call::<_, VoteResponse<TypeConfig>>(PeerRpc::Vote, "probe", &message)
                    .await
                    .is_ok_and(|r| r.vote_granted)
            }
        });
    let granted = 1 + futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|g| *g)
        .count();
    granted * 2 > voters.len()
}

/// This broker's answer to a pre-vote for a group whose leader is gone:
/// granted if the candidate's log is at least as long as this replica's
/// and its term is new to it, whatever the lost leader's lease.
fn pre_vote_without_leader(
    raft: &PartitionRaft,
    log: &LogReader,
    rpc: &VoteRequest<TypeConfig>,
) -> VoteResponse<TypeConfig> {
    let last = log.last_log_id();
    let m = raft.metrics();
    let m = m.borrow_watched();
    let granted = m.state != ServerState::Leader
        && rpc.vote.leader_id().term > m.current_term
        && rpc.last_log_id >= last;
    VoteResponse::new(m.vote, last, granted)
}

/// Where `voter` stands among a group's followers when they replace a lost
/// leader: the same on every broker (a fixed hasher), and different from
/// group to group, so the new leaderships spread over the brokers left.
fn campaign_order(group: &GroupId, voter: u64) -> u64 {
    #[allow(deprecated)] // SipHash with fixed keys: the same on every broker.
    let mut h = std::hash::SipHasher::new();
    group.hash(&mut h);
    voter.hash(&mut h);
    h.finish()
}

fn gone(peers: &Mutex<HashMap<u64, PeerLink>>, node: u64) -> bool {
    lock(peers).get(&node).is_some_and(|l| l.gone)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single inserts and field updates: a panic while held leaves it whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts the elections started because a leader's connection ended.
pub const PEER_LOSS_ELECTIONS_TOTAL: &str = "rill_peer_loss_elections_total";

fn answer<T: Serialize, E: std::fmt::Display>(
    what: &'static str,
    result: Result<T, E>,
) -> Result<Bytes, String> {
    encode(what, &result.map_err(|e| e.to_string())).map_err(|e| e.to_string())
}

impl PeerHandler for RaftRouter {
    fn handle(
        &self,
        from: u64,
        group: GroupId,
        rpc: PeerRpc,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'static>> {
        let found = read(&self.groups).get(&group).cloned();
        // Only a vote is judged by whether this group's leader is gone:
        // appends and heartbeats, the bulk of the traffic, skip the look.
        let leader_gone = rpc == PeerRpc::Vote
            && found.as_ref().is_some_and(|(raft, _)| {
                let leader = raft.metrics().borrow_watched().current_leader;
                leader.is_some_and(|l| l != from && self.peer_gone(l))
            });
        Box::pin(async move {
            let Some((raft, log)) = found else {
                return Err(format!(
                    "this broker hosts no replica of {group:?} (asked by node {from})"
                ));
            };
            match rpc {
                PeerRpc::AppendEntries => {
                    let req: AppendEntriesRequest<TypeConfig> =
                        decode("append entries", &payload).map_err(|e| e.to_string())?;
                    answer("append entries", raft.append_entries(req).await)
                }
                PeerRpc::Vote => {
                    let mut m: VoteMessage = decode("vote", &payload).map_err(|e| e.to_string())?;
                    if !m.pre && leader_gone {
                        // The lease protects a leader that may still be
                        // serving; this one's connection is gone (module
                        // docs): vote on the log alone, as for a transfer.
                        m.rpc.leadership_transfer = true;
                    }
                    if m.pre && leader_gone {
                        answer(
                            "pre-vote",
                            Ok::<_, String>(pre_vote_without_leader(&raft, &log, &m.rpc)),
                        )
                    } else if m.pre {
                        answer("pre-vote", raft.pre_vote(m.rpc).await)
                    } else {
                        answer("vote", raft.vote(m.rpc).await)
                    }
                }
                PeerRpc::Snapshot => {
                    let m: SnapshotMessage =
                        decode("snapshot", &payload).map_err(|e| e.to_string())?;
                    let snapshot = MetaSnapshot {
                        meta: m.meta,
                        snapshot: m.data,
                    };
                    answer(
                        "snapshot",
                        raft.install_full_snapshot(m.vote, snapshot).await,
                    )
                }
                PeerRpc::Propose => {
                    let batch = crate::types::RaftBatch::new(payload).map_err(|e| e.to_string())?;
                    answer(
                        "propose",
                        raft.client_write(batch).await.map(|resp| resp.data),
                    )
                }
                PeerRpc::TransferLeader => {
                    let req: TransferLeaderRequest<TypeConfig> =
                        decode("transfer leader", &payload).map_err(|e| e.to_string())?;
                    answer("transfer leader", raft.handle_transfer_leader(req).await)
                }
            }
        })
    }

    fn peer_connected(&self, from: u64) {
        let mut peers = lock(&self.peers);
        let link = peers.entry(from).or_default();
        link.open = link.open.saturating_add(1);
        link.gone = false;
    }

    fn peer_disconnected(&self, from: u64) {
        let now_gone = {
            let mut peers = lock(&self.peers);
            let link = peers.entry(from).or_default();
            link.open = link.open.saturating_sub(1);
            link.gone = link.open == 0;
            link.gone
        };
        if now_gone {
            self.elect_without(from);
            self.redirect_transfers_to(from);
        }
    }
}
