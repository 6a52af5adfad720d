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

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::StreamAppendError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Raft};
use rill_protocol::peer::{GroupId, PeerRpc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    postcard::to_allocvec(value)
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

/// Hands each request that arrives to its group's Raft.
#[derive(Debug, Default)]
pub struct RaftRouter {
    groups: RwLock<HashMap<GroupId, PartitionRaft>>,
}

impl RaftRouter {
    pub fn insert(&self, group: GroupId, raft: PartitionRaft) {
        write(&self.groups).insert(group, raft);
    }

    pub fn remove(&self, group: &GroupId) -> Option<PartitionRaft> {
        write(&self.groups).remove(group)
    }

    /// Forgets every group (at shutdown, so no handle outlives its log).
    pub fn clear(&self) {
        write(&self.groups).clear();
    }
}

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
        let raft = read(&self.groups).get(&group).cloned();
        Box::pin(async move {
            let Some(raft) = raft else {
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
                    let m: VoteMessage = decode("vote", &payload).map_err(|e| e.to_string())?;
                    if m.pre {
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
}
