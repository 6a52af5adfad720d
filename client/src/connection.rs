//! One pipelined TCP connection to a broker.
//!
//! A connection owns two tasks: a writer that drains a queue of encoded
//! frames onto the socket, and a reader that decodes response frames and
//! hands each to the caller waiting for it. Many requests may be in flight;
//! the broker answers on one connection in request order, so pending
//! requests sit in a FIFO and every response must carry the correlation id
//! of the oldest one — anything else means the stream is out of step and the
//! connection is closed rather than guessed at.
//!
//! Pushing onto the FIFO and onto the writer queue happens under one lock,
//! so the FIFO order is exactly the order frames hit the socket.
//!
//! A request timeout closes the connection: a response that never comes
//! would hold up every response behind it. Callers that keep a connection
//! across failures go through [`BrokerLink`], which reconnects.
//!
//! On connect the client sends ApiVersions and picks, for every API it
//! speaks, the highest version both sides support; if the broker shares no
//! version of one of them, connecting fails with
//! [`ClientError::NoCommonVersion`] instead of failing later mid-stream.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rill_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
use rill_protocol::wire::{
    self, ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, ErrorCode, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse,
    Request, RequestHeader, ResetOffsetsRequest, ResetOffsetsResponse, Response, ResponseHeader,
    SharedProduceRequest, FRAME_LENGTH_PREFIX_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn, Instrument};

use crate::error::{ClientError, Result};

/// Requests one connection keeps in flight before `request` waits. Bounds
/// the pending FIFO and the writer queue.
pub const CONNECTION_INFLIGHT_REQUESTS_MAX: usize = 1024;

/// Default time a request may wait for its response.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Capacity of the socket read and write buffers: large enough that small
/// frames cost one syscall per many frames.
const SOCKET_BUFFER_BYTES: usize = 64 * 1024;

/// Numbers connections of this process for log spans.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(0);

/// Versions of each API this client can encode and decode.
pub const CLIENT_API_VERSIONS: &[(ApiKey, u16, u16)] = &[
    (ApiKey::ApiVersions, 0, 0),
    (ApiKey::Metadata, 0, 0),
    (ApiKey::CreateTopics, 0, 0),
    (ApiKey::DeleteTopics, 0, 0),
    (ApiKey::ListOffsets, 0, 0),
    (ApiKey::Produce, 0, 0),
    (ApiKey::Fetch, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 0),
    (ApiKey::LeaveGroup, 0, 0),
    (ApiKey::OffsetCommit, 0, 0),
    (ApiKey::OffsetFetch, 0, 0),
    (ApiKey::ListGroups, 0, 0),
    (ApiKey::DescribeGroups, 0, 0),
    (ApiKey::DeleteGroups, 0, 0),
    (ApiKey::ResetOffsets, 0, 0),
    (ApiKey::InitProducerId, 0, 0),
    (ApiKey::FindCoordinator, 0, 0),
];

/// The answer to a request already queued on a connection.
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header; shows up in broker logs.
    pub client_id: String,
    /// How long a request waits for its response before the connection is
    /// closed. Fetches add their `max_wait` to this.
    pub request_timeout: Duration,
    /// Largest response frame accepted; checked before allocating.
    pub frame_bytes_max: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "rill-client".to_owned(),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        }
    }
}

/// A request waiting for its response.
struct Pending {
    correlation_id: u32,
    api_key: ApiKey,
    api_version: u16,
    tx: oneshot::Sender<Result<Response>>,
}

/// A frame for the writer task, as chunks written back to back (a Produce
/// keeps each batch its own chunk, so batches are never copied into the
/// frame); `written` fires once it is on the socket.
struct Outgoing {
    frame: Vec<Bytes>,
    written: Option<oneshot::Sender<()>>,
}

/// State shared by callers and the reader task.
struct State {
    pending: VecDeque<Pending>,
    /// Set once the connection is unusable; later requests fail with it.
    closed: Option<ClientError>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the queue as it was between
        // statements, which is still a valid queue: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the connection closed and fails every pending request.
    fn close(&self, reason: ClientError) {
        let pending = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason.clone());
            }
            std::mem::take(&mut state.pending)
        };
        for p in pending {
            let _ = p.tx.send(Err(reason.clone()));
        }
    }
}

/// One TCP connection with pipelined requests. Cheap to share behind an
/// `Arc`; dropping the last handle stops its tasks.
pub struct Connection {
    addr: String,
    config: ConnectionConfig,
    shared: Arc<Shared>,
    writer_tx: mpsc::UnboundedSender<Outgoing>,
    inflight: Arc<Semaphore>,
    next_correlation_id: AtomicU32,
    versions: HashMap<ApiKey, u16>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.shared.close(ClientError::ConnectionClosed);
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        // Bounded: a black-holed address would otherwise hold the caller
        // (a producer's sender, and every deadline behind it) for the
        // kernel's SYN timeout, minutes.
        let connect = tokio::time::timeout(config.request_timeout, TcpStream::connect(addr));
        let stream = match connect.await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", config.request_timeout),
            )),
        }
        .map_err(|e| ClientError::Connect {
            addr: addr.to_owned(),
            source: Arc::new(e),
        })?;
        // Requests are small and latency matters more than packet count;
        // the writer task already coalesces frames.
        stream.set_nodelay(true)?;
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                closed: None,
            }),
        });
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let span = tracing::debug_span!(
            "connection",
            peer = addr,
            conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
        );
        let reader = tokio::spawn(
            read_loop(read_half, Arc::clone(&shared), config.frame_bytes_max)
                .instrument(span.clone()),
        );
        let writer =
            tokio::spawn(write_loop(write_half, writer_rx, Arc::clone(&shared)).instrument(span));
        let mut conn = Connection {
            addr: addr.to_owned(),
            config,
            shared,
            writer_tx,
            inflight: Arc::new(Semaphore::new(CONNECTION_INFLIGHT_REQUESTS_MAX)),
            next_correlation_id: AtomicU32::new(0),
            versions: HashMap::new(),
            reader,
            writer,
        };
        conn.negotiate_versions().await?;
        debug!(addr, versions = ?conn.versions, "connected");
        Ok(conn)
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        // ApiVersions is always sent at version 0, which every broker must
        // accept so that a client can learn what else it supports.
        let response = self
            .request_at(
                &Request::ApiVersions(ApiVersionsRequest {}),
                0,
                Duration::ZERO,
            )
            .await?;
        let Response::ApiVersions(resp) = response else {
            return Err(ClientError::UnexpectedResponse {
                expected: ApiKey::ApiVersions,
            });
        };
        self.versions = choose_versions(&resp)?;
        Ok(())
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version negotiated for `api`, if the client uses it.
    pub fn version(&self, api: ApiKey) -> Option<u16> {
        self.versions.get(&api).copied()
    }

    /// The negotiated version of `api`; an API outside the client's table
    /// (a reserved key) has none.
    fn negotiated(&self, api: ApiKey) -> Result<u16> {
        self.version(api).ok_or_else(|| {
            let (client_min, client_max) = CLIENT_API_VERSIONS
                .iter()
                .find(|(key, _, _)| *key == api)
                .map_or((0, 0), |&(_, lo, hi)| (lo, hi));
            ClientError::NoCommonVersion {
                api,
                client_min,
                client_max,
                broker: None,
            }
        })
    }

    /// True once the connection failed or timed out; it will not recover.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some() || self.reader.is_finished()
    }

    /// Sends `request` at the negotiated version and waits for its response.
    /// `extra_wait` extends the timeout for requests the broker may hold on
    /// purpose (a long-poll fetch).
    pub async fn request(&self, request: Request, extra_wait: Duration) -> Result<Response> {
        let version = self.negotiated(request.api_key())?;
        self.request_at(&request, version, extra_wait).await
    }

    async fn request_at(
        &self,
        request: &Request,
        api_version: u16,
        extra_wait: Duration,
    ) -> Result<Response> {
        let api_key = request.api_key();
        self.exchange(api_key, api_version, extra_wait, |correlation_id| {
            self.encode(request, api_key, api_version, correlation_id)
        })
        .await
    }

    /// Sends the frame `encode` makes for the next correlation id and waits
    /// for its response.
    async fn exchange(
        &self,
        api_key: ApiKey,
        api_version: u16,
        extra_wait: Duration,
        encode: impl FnOnce(u32) -> Result<Vec<Bytes>>,
    ) -> Result<Response> {
        self.queue(api_key, api_version, extra_wait, encode)
            .await?
            .await
    }

    /// Queues the frame `encode` makes for the next correlation id and
    /// returns the future of its response. The frame's place on the
    /// connection is fixed when this returns: requests queued one after
    /// another are written, and answered, in that order, whenever their
    /// futures are polled.
    async fn queue(
        &self,
        api_key: ApiKey,
        api_version: u16,
        extra_wait: Duration,
        encode: impl FnOnce(u32) -> Result<Vec<Bytes>>,
    ) -> Result<ResponseFuture<Response>> {
        let permit = Arc::clone(&self.inflight)
            .acquire_owned()
            .await
            .map_err(|_| ClientError::ConnectionClosed)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(correlation_id)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(reason.clone());
            }
            state.pending.push_back(Pending {
                correlation_id,
                api_key,
                api_version,
                tx,
            });
            self.writer_tx
                .send(Outgoing {
                    frame,
                    written: None,
                })
                .map_err(|_| ClientError::ConnectionClosed)?;
        }
        let timeout = self.config.request_timeout.saturating_add(extra_wait);
        let shared = Arc::clone(&self.shared);
        let addr = self.addr.clone();
        Ok(Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(ClientError::ConnectionClosed),
                Err(_) => {
                    warn!(%addr, ?api_key, correlation_id, ?timeout, "request timed out; closing connection");
                    let err = ClientError::Timeout { after: timeout };
                    shared.close(err.clone());
                    Err(err)
                }
            }
        }))
    }

    /// Sends a request the broker does not answer (a produce with
    /// `acks=none`). Resolves once the frame is written to the socket.
    pub async fn send_oneway(&self, request: Request) -> Result<()> {
        let api_key = request.api_key();
        let api_version = self.negotiated(api_key)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(&request, api_key, api_version, correlation_id)?;
        self.write_oneway(frame).await
    }

    /// A Produce with `acks=none` over batches the caller keeps, written
    /// without copying them (see [`wire::encode_produce_frame_vectored`]).
    pub async fn send_oneway_produce(&self, request: &SharedProduceRequest) -> Result<()> {
        let api_version = self.negotiated(ApiKey::Produce)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_produce(request, api_version, correlation_id)?;
        self.write_oneway(frame).await
    }

    /// A Produce that expects a response (`acks` leader or all) over batches
    /// the caller keeps, written without copying them.
    pub async fn produce_shared(&self, request: &SharedProduceRequest) -> Result<ProduceResponse> {
        self.queue_produce(request).await?.await
    }

    /// Queues a Produce as [`Self::produce_shared`] and returns the future
    /// of its response without waiting for it: produces queued one after
    /// another reach the broker, and are appended, in that order. This is
    /// how a producer keeps several requests of one partition in flight
    /// without reordering them.
    pub async fn queue_produce(
        &self,
        request: &SharedProduceRequest,
    ) -> Result<ResponseFuture<ProduceResponse>> {
        let api_version = self.negotiated(ApiKey::Produce)?;
        let response = self
            .queue(
                ApiKey::Produce,
                api_version,
                Duration::ZERO,
                |correlation_id| self.encode_produce(request, api_version, correlation_id),
            )
            .await?;
        Ok(Box::pin(async move {
            match response.await? {
                Response::Produce(r) => Ok(r),
                _ => Err(unexpected(ApiKey::Produce)),
            }
        }))
    }

    /// A producer id and epoch (new, or `request`'s epoch bumped).
    pub async fn init_producer_id(
        &self,
        req: InitProducerIdRequest,
    ) -> Result<InitProducerIdResponse> {
        match self
            .request(Request::InitProducerId(req), Duration::ZERO)
            .await?
        {
            Response::InitProducerId(r) => Ok(r),
            _ => Err(unexpected(ApiKey::InitProducerId)),
        }
    }

    /// Queues a frame nobody answers; resolves once it is on the socket.
    async fn write_oneway(&self, frame: Vec<Bytes>) -> Result<()> {
        self.queue_oneway(frame)?.await
    }

    /// Queues a frame nobody answers and returns the future that resolves
    /// once it is on the socket; its place on the connection is fixed when
    /// this returns.
    fn queue_oneway(&self, frame: Vec<Bytes>) -> Result<ResponseFuture<()>> {
        let (tx, rx) = oneshot::channel();
        {
            let state = self.shared.lock();
            if let Some(reason) = &state.closed {
                return Err(reason.clone());
            }
            self.writer_tx
                .send(Outgoing {
                    frame,
                    written: Some(tx),
                })
                .map_err(|_| ClientError::ConnectionClosed)?;
        }
        let timeout = self.config.request_timeout;
        let shared = Arc::clone(&self.shared);
        Ok(Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(shared
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or(ClientError::ConnectionClosed)),
                Err(_) => {
                    let err = ClientError::Timeout { after: timeout };
                    shared.close(err.clone());
                    Err(err)
                }
            }
        }))
    }

    /// Queues a Produce with `acks=none` as [`Self::send_oneway_produce`]
    /// and returns the future that resolves once it is written: produces
    /// queued one after another are written in that order.
    pub fn queue_oneway_produce(
        &self,
        request: &SharedProduceRequest,
    ) -> Result<ResponseFuture<()>> {
        let api_version = self.negotiated(ApiKey::Produce)?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode_produce(request, api_version, correlation_id)?;
        self.queue_oneway(frame)
    }

    fn header(&self, api_key: ApiKey, api_version: u16, correlation_id: u32) -> RequestHeader {
        RequestHeader {
            api_key,
            api_version,
            correlation_id,
            client_id: self.config.client_id.clone(),
        }
    }

    fn encode_produce(
        &self,
        request: &SharedProduceRequest,
        api_version: u16,
        correlation_id: u32,
    ) -> Result<Vec<Bytes>> {
        let header = self.header(ApiKey::Produce, api_version, correlation_id);
        Ok(wire::encode_produce_frame_vectored(&header, request)?)
    }

    fn encode(
        &self,
        request: &Request,
        api_key: ApiKey,
        api_version: u16,
        correlation_id: u32,
    ) -> Result<Vec<Bytes>> {
        let header = self.header(api_key, api_version, correlation_id);
        let mut buf = BytesMut::new();
        wire::encode_request_frame(&header, request, &mut buf)?;
        Ok(vec![buf.freeze()])
    }

    pub async fn metadata(&self, req: MetadataRequest) -> Result<MetadataResponse> {
        match self.request(Request::Metadata(req), Duration::ZERO).await? {
            Response::Metadata(r) => Ok(r),
            _ => Err(unexpected(ApiKey::Metadata)),
        }
    }

    pub async fn create_topics(&self, req: CreateTopicsRequest) -> Result<CreateTopicsResponse> {
        match self
            .request(Request::CreateTopics(req), Duration::ZERO)
            .await?
        {
            Response::CreateTopics(r) => Ok(r),
            _ => Err(unexpected(ApiKey::CreateTopics)),
        }
    }

    pub async fn delete_topics(&self, req: DeleteTopicsRequest) -> Result<DeleteTopicsResponse> {
        match self
            .request(Request::DeleteTopics(req), Duration::ZERO)
            .await?
        {
            Response::DeleteTopics(r) => Ok(r),
            _ => Err(unexpected(ApiKey::DeleteTopics)),
        }
    }

    pub async fn list_offsets(&self, req: ListOffsetsRequest) -> Result<ListOffsetsResponse> {
        match self
            .request(Request::ListOffsets(req), Duration::ZERO)
            .await?
        {
            Response::ListOffsets(r) => Ok(r),
            _ => Err(unexpected(ApiKey::ListOffsets)),
        }
    }

    /// A produce that expects a response (`acks` leader or all).
    pub async fn produce(&self, req: ProduceRequest) -> Result<ProduceResponse> {
        match self.request(Request::Produce(req), Duration::ZERO).await? {
            Response::Produce(r) => Ok(r),
            _ => Err(unexpected(ApiKey::Produce)),
        }
    }

    /// A fetch; the timeout is extended by the request's `max_wait_ms`.
    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let wait = Duration::from_millis(u64::from(req.max_wait_ms));
        match self.request(Request::Fetch(req), wait).await? {
            Response::Fetch(r) => Ok(r),
            _ => Err(unexpected(ApiKey::Fetch)),
        }
    }

    /// A consumer group heartbeat (join with epoch 0, leave with -1).
    pub async fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
    ) -> Result<ConsumerGroupHeartbeatResponse> {
        match self
            .request(Request::ConsumerGroupHeartbeat(req), Duration::ZERO)
            .await?
        {
            Response::ConsumerGroupHeartbeat(r) => Ok(r),
            _ => Err(unexpected(ApiKey::ConsumerGroupHeartbeat)),
        }
    }

    /// The broker that coordinates a group.
    pub async fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
    ) -> Result<FindCoordinatorResponse> {
        match self
            .request(Request::FindCoordinator(req), Duration::ZERO)
            .await?
        {
            Response::FindCoordinator(r) => Ok(r),
            _ => Err(unexpected(ApiKey::FindCoordinator)),
        }
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest) -> Result<LeaveGroupResponse> {
        match self
            .request(Request::LeaveGroup(req), Duration::ZERO)
            .await?
        {
            Response::LeaveGroup(r) => Ok(r),
            _ => Err(unexpected(ApiKey::LeaveGroup)),
        }
    }

    /// Answered once the offsets are durable on the broker.
    pub async fn offset_commit(&self, req: OffsetCommitRequest) -> Result<OffsetCommitResponse> {
        match self
            .request(Request::OffsetCommit(req), Duration::ZERO)
            .await?
        {
            Response::OffsetCommit(r) => Ok(r),
            _ => Err(unexpected(ApiKey::OffsetCommit)),
        }
    }

    pub async fn offset_fetch(&self, req: OffsetFetchRequest) -> Result<OffsetFetchResponse> {
        match self
            .request(Request::OffsetFetch(req), Duration::ZERO)
            .await?
        {
            Response::OffsetFetch(r) => Ok(r),
            _ => Err(unexpected(ApiKey::OffsetFetch)),
        }
    }

    pub async fn list_groups(&self, req: ListGroupsRequest) -> Result<ListGroupsResponse> {
        match self
            .request(Request::ListGroups(req), Duration::ZERO)
            .await?
        {
            Response::ListGroups(r) => Ok(r),
            _ => Err(unexpected(ApiKey::ListGroups)),
        }
    }

    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
    ) -> Result<DescribeGroupsResponse> {
        match self
            .request(Request::DescribeGroups(req), Duration::ZERO)
            .await?
        {
            Response::DescribeGroups(r) => Ok(r),
            _ => Err(unexpected(ApiKey::DescribeGroups)),
        }
    }

    pub async fn delete_groups(&self, req: DeleteGroupsRequest) -> Result<DeleteGroupsResponse> {
        match self
            .request(Request::DeleteGroups(req), Duration::ZERO)
            .await?
        {
            Response::DeleteGroups(r) => Ok(r),
            _ => Err(unexpected(ApiKey::DeleteGroups)),
        }
    }

    pub async fn reset_offsets(&self, req: ResetOffsetsRequest) -> Result<ResetOffsetsResponse> {
        match self
            .request(Request::ResetOffsets(req), Duration::ZERO)
            .await?
        {
            Response::ResetOffsets(r) => Ok(r),
            _ => Err(unexpected(ApiKey::ResetOffsets)),
        }
    }
}

fn unexpected(expected: ApiKey) -> ClientError {
    ClientError::UnexpectedResponse { expected }
}

/// Picks the highest version both sides support for every API the client
/// speaks; fails on the first API with none in common.
fn choose_versions(resp: &ApiVersionsResponse) -> Result<HashMap<ApiKey, u16>> {
    if resp.error != ErrorCode::None {
        return Err(ClientError::broker(resp.error));
    }
    let mut chosen = HashMap::new();
    for &(api, client_min, client_max) in CLIENT_API_VERSIONS {
        let broker = resp
            .apis
            .iter()
            .find(|a| a.key == api.code())
            .map(|a| (a.min, a.max));
        let common = broker.and_then(|(lo, hi)| {
            let lo = lo.max(client_min);
            let hi = hi.min(client_max);
            (lo <= hi).then_some(hi)
        });
        match common {
            Some(v) => {
                chosen.insert(api, v);
            }
            None => {
                return Err(ClientError::NoCommonVersion {
                    api,
                    client_min,
                    client_max,
                    broker,
                })
            }
        }
    }
    Ok(chosen)
}

async fn write_loop(
    write_half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, write_half);
    let mut written = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut result = Ok(());
        // Coalesce whatever is queued into one flush.
        'queued: while let Some(out) = next.take() {
            // Once the connection is closed (a timeout failed every
            // pending request) nothing queued may still reach the peer:
            // its caller already treats it as failed and may resend it.
            if shared.lock().closed.is_some() {
                let _ = writer.shutdown().await;
                return;
            }
            for chunk in &out.frame {
                result = writer.write_all(chunk).await;
                if result.is_err() {
                    break 'queued;
                }
            }
            written.extend(out.written);
            next = rx.try_recv().ok();
        }
        if result.is_ok() {
            result = writer.flush().await;
        }
        if let Err(e) = result {
            debug!(error = %e, "connection write failed");
            shared.close(ClientError::from(e));
            return;
        }
        for w in written.drain(..) {
            let _ = w.send(());
        }
    }
    let _ = writer.shutdown().await;
}

async fn read_loop(read_half: OwnedReadHalf, shared: Arc<Shared>, frame_bytes_max: usize) {
    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, read_half);
    let reason = loop {
        match read_one(&mut reader, &shared, frame_bytes_max).await {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    debug!(error = %reason, "connection reader stopped");
    shared.close(reason);
}

/// Reads one response frame and delivers it to the oldest pending request.
async fn read_one(
    reader: &mut BufReader<OwnedReadHalf>,
    shared: &Shared,
    frame_bytes_max: usize,
) -> Result<()> {
    let mut prefix = [0u8; FRAME_LENGTH_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ClientError::ConnectionClosed)
        }
        Err(e) => return Err(e.into()),
    }
    let len = wire::decode_frame_length(prefix, frame_bytes_max)?;
    // Filled straight from the socket buffer: no zeroing of what may be a
    // fetch response of many megabytes.
    let mut body = BytesMut::with_capacity(len);
    while body.len() < len {
        let want = (len - body.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut body).await? == 0 {
            return Err(ClientError::ConnectionClosed);
        }
    }
    let mut body = body.freeze();
    let header = ResponseHeader::decode(&mut body)?;
    let pending = shared.lock().pending.pop_front();
    let Some(pending) = pending else {
        return Err(ClientError::CorrelationMismatch {
            expected: u32::MAX,
            got: header.correlation_id,
        });
    };
    if pending.correlation_id != header.correlation_id {
        let err = ClientError::CorrelationMismatch {
            expected: pending.correlation_id,
            got: header.correlation_id,
        };
        let _ = pending.tx.send(Err(err.clone()));
        return Err(err);
    }
    let decoded = Response::decode(pending.api_key, pending.api_version, &mut body)
        .map_err(ClientError::from);
    let fatal = decoded.as_ref().err().cloned();
    let _ = pending.tx.send(decoded);
    // A body that does not decode means the stream may be out of step.
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A connection that reopens itself after a failure. Producer, consumer and
/// admin hold one of these to their bootstrap brokers.
///
/// The bootstrap string is Kafka's `bootstrap.servers`: one `host:port` or
/// a comma-separated list. A (re)connect tries the address that worked last
/// first, then the others in order, and fails only when none answers, so a
/// client keeps working while any one listed broker is up.
#[derive(Debug)]
pub(crate) struct BrokerLink {
    addrs: Vec<String>,
    config: ConnectionConfig,
    current: tokio::sync::Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    conn: Option<Arc<Connection>>,
    /// Index in `addrs` of the address that connected last.
    preferred: usize,
}

/// Splits a bootstrap string into its addresses (empty entries, as in a
/// trailing comma, are dropped).
pub(crate) fn bootstrap_addrs(bootstrap: &str) -> Vec<String> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

impl BrokerLink {
    /// Connects once now, so that a wrong address or a version mismatch is
    /// reported at construction.
    pub(crate) async fn connect(bootstrap: &str, config: ConnectionConfig) -> Result<BrokerLink> {
        let addrs = bootstrap_addrs(bootstrap);
        if addrs.is_empty() {
            return Err(ClientError::Connect {
                addr: bootstrap.to_owned(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no broker address given",
                )),
            });
        }
        let link = BrokerLink {
            addrs,
            config,
            current: tokio::sync::Mutex::new(Current {
                conn: None,
                preferred: 0,
            }),
        };
        link.get().await?;
        Ok(link)
    }

    /// A link to `addr` that connects on its first [`Self::get`]: the
    /// cluster's link to one broker node.
    pub(crate) fn lazy(addr: String, config: ConnectionConfig) -> BrokerLink {
        BrokerLink {
            addrs: vec![addr],
            config,
            current: tokio::sync::Mutex::new(Current {
                conn: None,
                preferred: 0,
            }),
        }
    }

    /// Whether a connection is open now (no connecting).
    pub(crate) fn is_connected(&self) -> bool {
        self.current
            .try_lock()
            .is_ok_and(|c| c.conn.as_ref().is_some_and(|conn| !conn.is_closed()))
    }

    /// The live connection, reconnecting if the last one failed.
    pub(crate) async fn get(&self) -> Result<Arc<Connection>> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.conn.as_ref() {
            if !conn.is_closed() {
                return Ok(Arc::clone(conn));
            }
        }
        let n = self.addrs.len();
        let mut last_err = None;
        for i in 0..n {
            let at = (current.preferred + i) % n;
            match Connection::connect(&self.addrs[at], self.config.clone()).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    if i > 0 {
                        debug!(addr = %self.addrs[at], "connected to another bootstrap broker");
                    }
                    current.conn = Some(Arc::clone(&conn));
                    current.preferred = at;
                    return Ok(conn);
                }
                // A broker that answers but speaks no common version is
                // not a transient failure: report it rather than hide it
                // behind the next address.
                Err(e @ ClientError::NoCommonVersion { .. }) => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(ClientError::ConnectionClosed))
    }

    /// Drops the current connection; the next `get` reconnects.
    pub(crate) async fn close(&self) {
        self.current.lock().await.conn.take();
    }
}
