//! The inter-broker transport: one TCP connection per broker pair, carrying
//! the requests of every Raft group between them.
//!
//! Why one connection for all groups: a broker with a thousand replicated
//! partitions would otherwise hold thousands of sockets per peer and pay a
//! handshake for each. Requests carry their group ([`GroupId`]) and a
//! correlation id; the answering side runs each group's requests one after
//! another, in arrival order (Raft's appends to one follower must not
//! overtake each other), and different groups' concurrently, so a slow
//! fsync in one partition does not hold up another's heartbeat. Answers
//! come back in whatever order they finish and are matched by id.
//!
//! A connection starts with a Hello each way ([`PeerFrame::Hello`]): the
//! cluster id, who is speaking and whom it means. A peer of another
//! cluster, one addressed to another node, an unknown node or another
//! protocol version is answered with [`PeerFrame::Refused`], counted in
//! `rill_peer_connections_refused_total{reason}`, and dropped; so is one
//! that sends bytes that are not a frame. Nothing else is affected: every
//! connection has its own tasks, and a frame's memory grows only as its
//! bytes arrive, never from its length prefix alone.
//!
//! The payloads (openraft's messages) are opaque here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rill_protocol::limits::PEER_FRAME_BYTES_MAX;
use rill_protocol::peer::{
    decode_peer_frame_length, GroupId, PeerError, PeerFrame, PeerRpc, RefusedReason,
    CLUSTER_ID_BYTES, PEER_LENGTH_PREFIX_BYTES, PEER_PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long either side waits for the other's Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for one connection's writer before senders wait.
const WRITE_QUEUE_FRAMES: usize = 1024;
/// Requests of one group queued on the answering side before the
/// connection's reader waits (backpressure to the sender over TCP). While
/// it waits, the other groups' requests on that connection wait too: a
/// group that falls this far behind slows its pair of brokers rather than
/// growing memory without bound. Raft keeps few requests of a group in
/// flight, so in practice the bound is not reached.
const GROUP_QUEUE_REQUESTS: usize = 64;

/// Refused connections, by reason.
pub const PEER_CONNECTIONS_REFUSED_TOTAL: &str = "rill_peer_connections_refused_total";

/// Who this broker is, as it tells its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    pub cluster_id: [u8; CLUSTER_ID_BYTES],
    pub node_id: u64,
}

/// What went wrong talking to a peer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot connect to node {node} at {addr}: {message}")]
    Connect {
        node: u64,
        addr: String,
        message: String,
    },
    #[error("node {node} refused this broker ({reason:?}): {message}")]
    Refused {
        node: u64,
        reason: RefusedReason,
        message: String,
    },
    #[error("{addr} is not node {node} of this cluster: {message}")]
    BadPeer {
        node: u64,
        addr: String,
        message: String,
    },
    #[error("malformed frame from node {node}: {error}")]
    Frame { node: u64, error: PeerError },
    #[error("node {node} sent a {kind} frame where only responses belong")]
    Unexpected { node: u64, kind: &'static str },
    #[error("connection to node {node} closed")]
    Closed { node: u64 },
    #[error("request to node {node} got no answer within {after:?}")]
    Timeout { node: u64, after: Duration },
    #[error("node {node} failed the request: {message}")]
    Remote { node: u64, message: String },
}

/// Answers the requests peers send: one call per request, with the sender's
/// node id. `Err` goes back to the sender as a failed response.
pub trait PeerHandler: Send + Sync + 'static {
    fn handle(
        &self,
        from: u64,
        group: GroupId,
        rpc: PeerRpc,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send + 'static>>;

    /// Node `from` opened a connection to this one (its hello was taken).
    fn peer_connected(&self, _from: u64) {}

    /// A connection node `from` had opened to this one ended: it closed
    /// it, its process died (the kernel closes a killed process's
    /// sockets), or it sent something this side refused.
    fn peer_disconnected(&self, _from: u64) {}
}

/// Which node ids may connect (the cluster's current brokers).
pub type Members = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// Why reading a frame stopped.
#[derive(Debug)]
enum ReadError {
    /// The peer closed the connection between frames.
    Eof,
    Io(std::io::Error),
    Frame(PeerError),
}

/// Reads one frame. The body buffer grows as bytes arrive (`take` +
/// `read_to_end`), so a hostile length prefix under the limit costs only
/// the bytes actually sent.
/// The most a frame's declared length reserves before its bytes arrive;
/// a larger frame grows its buffer as it is read. An append's byte cap
/// plus room for its message fields, so appends arrive into one
/// allocation; a peer lying about a length before its hello reserves no
/// more than this.
const READ_PREALLOC_BYTES: usize = rill_protocol::limits::PEER_APPEND_BYTES_MAX + (1 << 20);

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<PeerFrame, ReadError> {
    let mut prefix = [0u8; PEER_LENGTH_PREFIX_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Eof),
        Err(e) => return Err(ReadError::Io(e)),
    }
    let len = decode_peer_frame_length(prefix, PEER_FRAME_BYTES_MAX).map_err(ReadError::Frame)?;
    // Room for the whole frame at once (no doubling copies) up to a cap: a
    // length is only a claim until the bytes arrive.
    let mut body = Vec::with_capacity(len.min(READ_PREALLOC_BYTES));
    let want = u64::try_from(len).unwrap_or(u64::MAX);
    reader
        .take(want)
        .read_to_end(&mut body)
        .await
        .map_err(ReadError::Io)?;
    if body.len() < len {
        return Err(ReadError::Frame(PeerError::Truncated {
            needed: len,
            available: body.len(),
        }));
    }
    PeerFrame::decode(Bytes::from(body)).map_err(ReadError::Frame)
}

/// A frame ready to write: its head, then its payload from the buffer the
/// payload was built in (a batch crosses without one more copy).
#[derive(Debug)]
struct OutFrame {
    head: BytesMut,
    payload: Bytes,
}

fn encode(frame: &PeerFrame) -> Result<OutFrame, PeerError> {
    let mut head = BytesMut::new();
    let payload = frame.encode_split(&mut head)?;
    Ok(OutFrame { head, payload })
}

/// Writes `frame` whole: head and payload in one vectored write where the
/// socket takes it.
async fn write_frame(writer: &mut OwnedWriteHalf, frame: OutFrame) -> std::io::Result<()> {
    let mut buf = bytes::Buf::chain(frame.head.freeze(), frame.payload);
    writer.write_all_buf(&mut buf).await
}

fn reason_label(reason: RefusedReason) -> &'static str {
    match reason {
        RefusedReason::OtherCluster => "other_cluster",
        RefusedReason::WrongNode => "wrong_node",
        RefusedReason::Version => "version",
        RefusedReason::Malformed => "malformed",
        RefusedReason::UnknownNode => "unknown_node",
    }
}

/// What is wrong with a Hello received by `me`, if anything: another
/// protocol version, another cluster, or addressed to another node.
fn hello_mismatch(
    me: &PeerIdentity,
    version: u16,
    cluster_id: &[u8; CLUSTER_ID_BYTES],
    to: u64,
) -> Option<(RefusedReason, String)> {
    if version != PEER_PROTOCOL_VERSION {
        Some((
            RefusedReason::Version,
            format!("protocol version {version}; this broker speaks {PEER_PROTOCOL_VERSION}"),
        ))
    } else if *cluster_id != me.cluster_id {
        Some((
            RefusedReason::OtherCluster,
            format!(
                "cluster {}; this broker belongs to cluster {}",
                hex(cluster_id),
                hex(&me.cluster_id)
            ),
        ))
    } else if to != me.node_id {
        Some((
            RefusedReason::WrongNode,
            format!("addressed to node {to}; this is node {}", me.node_id),
        ))
    } else {
        None
    }
}

/// Tells the peer why, counts it, and gives up on the connection.
async fn refuse(
    writer: &mut OwnedWriteHalf,
    peer: SocketAddr,
    reason: RefusedReason,
    message: String,
) {
    ::metrics::counter!(PEER_CONNECTIONS_REFUSED_TOTAL, "reason" => reason_label(reason))
        .increment(1);
    tracing::warn!(%peer, ?reason, %message, "refusing peer connection");
    if let Ok(frame) = encode(&PeerFrame::Refused { reason, message }) {
        let _ = write_frame(writer, frame).await;
    }
    let _ = writer.shutdown().await;
}

/// The accepting side: a listener on this broker's inter-broker address.
#[derive(Debug)]
pub struct PeerListener {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl PeerListener {
    /// Binds `addr` and serves peers until [`Self::shutdown`] (or drop).
    pub async fn bind(
        addr: SocketAddr,
        me: PeerIdentity,
        members: Members,
        handler: Arc<dyn PeerHandler>,
    ) -> std::io::Result<PeerListener> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, me, members, handler, stop));
        Ok(PeerListener {
            local_addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every peer connection.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PeerListener {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    me: PeerIdentity,
    members: Members,
    handler: Arc<dyn PeerHandler>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(serve(
                    stream,
                    peer,
                    me,
                    Arc::clone(&members),
                    Arc::clone(&handler),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                // EMFILE and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    connections.shutdown().await;
}

/// One request waiting for its group's worker.
struct Job {
    correlation_id: u64,
    rpc: PeerRpc,
    payload: Bytes,
}

/// Serves one accepted connection: handshake, then requests until the peer
/// closes or misbehaves.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    me: PeerIdentity,
    members: Members,
    handler: Arc<dyn PeerHandler>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await;
    let from = match hello {
        Ok(Ok(PeerFrame::Hello {
            version,
            cluster_id,
            from,
            to,
        })) => {
            let refusal = hello_mismatch(&me, version, &cluster_id, to).or_else(|| {
                (!members(from)).then(|| {
                    (
                        RefusedReason::UnknownNode,
                        format!("node {from} is not a broker of this cluster"),
                    )
                })
            });
            if let Some((reason, message)) = refusal {
                refuse(&mut writer, peer, reason, message).await;
                return;
            }
            from
        }
        Ok(Ok(other)) => {
            let message = format!("expected a hello, got {}", kind_name(&other));
            refuse(&mut writer, peer, RefusedReason::Malformed, message).await;
            return;
        }
        Ok(Err(ReadError::Frame(e))) => {
            refuse(&mut writer, peer, RefusedReason::Malformed, e.to_string()).await;
            return;
        }
        Ok(Err(ReadError::Eof | ReadError::Io(_))) => return,
        Err(_) => {
            let message = format!("no hello within {HELLO_TIMEOUT:?}");
            refuse(&mut writer, peer, RefusedReason::Malformed, message).await;
            return;
        }
    };
    let hello = PeerFrame::Hello {
        version: PEER_PROTOCOL_VERSION,
        cluster_id: me.cluster_id,
        from: me.node_id,
        to: from,
    };
    match encode(&hello) {
        Ok(bytes) => {
            if write_frame(&mut writer, bytes).await.is_err() {
                return;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a hello");
            return;
        }
    }
    tracing::debug!(%peer, node = from, "peer connected");
    handler.peer_connected(from);

    let (out_tx, out_rx) = mpsc::channel::<OutFrame>(WRITE_QUEUE_FRAMES);
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    let mut groups: HashMap<GroupId, mpsc::Sender<Job>> = HashMap::new();
    let mut workers = tokio::task::JoinSet::new();
    loop {
        match read_frame(&mut reader).await {
            Ok(PeerFrame::Request {
                correlation_id,
                group,
                rpc,
                payload,
            }) => {
                let job = Job {
                    correlation_id,
                    rpc,
                    payload,
                };
                let queue = groups.entry(group.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(GROUP_QUEUE_REQUESTS);
                    workers.spawn(group_worker(
                        from,
                        group,
                        rx,
                        Arc::clone(&handler),
                        out_tx.clone(),
                    ));
                    tx
                });
                if queue.send(job).await.is_err() {
                    break;
                }
            }
            Ok(other) => {
                tracing::warn!(%peer, node = from, kind = kind_name(&other), "unexpected frame from a peer; closing");
                ::metrics::counter!(PEER_CONNECTIONS_REFUSED_TOTAL, "reason" => "malformed")
                    .increment(1);
                break;
            }
            Err(ReadError::Frame(e)) => {
                tracing::warn!(%peer, node = from, error = %e, "malformed frame from a peer; closing");
                ::metrics::counter!(PEER_CONNECTIONS_REFUSED_TOTAL, "reason" => "malformed")
                    .increment(1);
                break;
            }
            Err(ReadError::Eof) => break,
            Err(ReadError::Io(e)) => {
                tracing::debug!(%peer, node = from, error = %e, "peer connection failed");
                break;
            }
        }
    }
    handler.peer_disconnected(from);
    drop(groups);
    drop(out_tx);
    // Requests already taken are answered (the peer may still read them);
    // then the writer ends with the last sender.
    while workers.join_next().await.is_some() {}
    let _ = writer_task.await;
}

/// Runs one group's requests in arrival order.
async fn group_worker(
    from: u64,
    group: GroupId,
    mut jobs: mpsc::Receiver<Job>,
    handler: Arc<dyn PeerHandler>,
    out: mpsc::Sender<OutFrame>,
) {
    while let Some(job) = jobs.recv().await {
        let answer = handler
            .handle(from, group.clone(), job.rpc, job.payload)
            .await;
        let (ok, payload) = match answer {
            Ok(payload) => (true, payload),
            Err(message) => (false, Bytes::from(message.into_bytes())),
        };
        let frame = PeerFrame::Response {
            correlation_id: job.correlation_id,
            ok,
            payload,
        };
        match encode(&frame) {
            Ok(bytes) => {
                if out.send(bytes).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, ?group, "a response does not fit a frame");
                let fallback = PeerFrame::Response {
                    correlation_id: job.correlation_id,
                    ok: false,
                    payload: Bytes::from(format!("response not sent: {e}").into_bytes()),
                };
                if let Ok(bytes) = encode(&fallback) {
                    if out.send(bytes).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, mut frames: mpsc::Receiver<OutFrame>) {
    while let Some(frame) = frames.recv().await {
        if write_frame(&mut writer, frame).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

fn kind_name(frame: &PeerFrame) -> &'static str {
    match frame {
        PeerFrame::Hello { .. } => "hello",
        PeerFrame::Request { .. } => "request",
        PeerFrame::Response { .. } => "response",
        PeerFrame::Refused { .. } => "refused",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, TransportError>>>>;

/// One live connection of a [`PeerClient`].
#[derive(Debug)]
struct ClientConn {
    out: mpsc::Sender<OutFrame>,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// The sending side towards one peer: connects on first use, after a
/// failure on the next request, and multiplexes every group's requests on
/// that one connection.
#[derive(Debug)]
pub struct PeerClient {
    me: PeerIdentity,
    node: u64,
    addr: String,
    request_timeout: Duration,
    next_id: AtomicU64,
    conn: tokio::sync::Mutex<Option<Arc<ClientConn>>>,
}

impl PeerClient {
    /// A client for node `node` at `addr` (its inter-broker listener).
    pub fn new(
        me: PeerIdentity,
        node: u64,
        addr: impl Into<String>,
        request_timeout: Duration,
    ) -> Self {
        PeerClient {
            me,
            node,
            addr: addr.into(),
            request_timeout,
            next_id: AtomicU64::new(0),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    /// Sends one request and waits for its answer, at most the request
    /// timeout (connecting included).
    pub async fn request(
        &self,
        group: GroupId,
        rpc: PeerRpc,
        payload: Bytes,
    ) -> Result<Bytes, TransportError> {
        let after = self.request_timeout;
        match tokio::time::timeout(after, self.request_inner(group, rpc, payload)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                node: self.node,
                after,
            }),
        }
    }

    async fn request_inner(
        &self,
        group: GroupId,
        rpc: PeerRpc,
        payload: Bytes,
    ) -> Result<Bytes, TransportError> {
        let conn = self.connection().await?;
        let correlation_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(&PeerFrame::Request {
            correlation_id,
            group,
            rpc,
            payload,
        })
        .map_err(|error| TransportError::Frame {
            node: self.node,
            error,
        })?;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(correlation_id, tx);
        // Removes the entry however this future ends (answer, error,
        // timeout): a late answer then finds nobody and is dropped.
        let _cleanup = Cleanup {
            pending: Arc::clone(&conn.pending),
            id: correlation_id,
        };
        if conn.closed.load(Ordering::Acquire) || conn.out.send(frame).await.is_err() {
            return Err(TransportError::Closed { node: self.node });
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Closed { node: self.node }),
        }
    }

    async fn connection(&self) -> Result<Arc<ClientConn>, TransportError> {
        let mut current = self.conn.lock().await;
        if let Some(conn) = current.as_ref() {
            if !conn.closed.load(Ordering::Acquire) {
                return Ok(Arc::clone(conn));
            }
        }
        *current = None;
        let conn = Arc::new(self.connect().await?);
        *current = Some(Arc::clone(&conn));
        Ok(conn)
    }

    async fn connect(&self) -> Result<ClientConn, TransportError> {
        let connect_err = |message: String| TransportError::Connect {
            node: self.node,
            addr: self.addr.clone(),
            message,
        };
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let hello = encode(&PeerFrame::Hello {
            version: PEER_PROTOCOL_VERSION,
            cluster_id: self.me.cluster_id,
            from: self.me.node_id,
            to: self.node,
        })
        .map_err(|e| connect_err(e.to_string()))?;
        write_frame(&mut writer, hello)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let bad_peer = |message: String| TransportError::BadPeer {
            node: self.node,
            addr: self.addr.clone(),
            message,
        };
        match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
            Ok(Ok(PeerFrame::Hello {
                version,
                cluster_id,
                from,
                to,
            })) => {
                if let Some((_, message)) = hello_mismatch(&self.me, version, &cluster_id, to) {
                    return Err(bad_peer(message));
                }
                if from != self.node {
                    return Err(bad_peer(format!("it is node {from}")));
                }
            }
            Ok(Ok(PeerFrame::Refused { reason, message })) => {
                return Err(TransportError::Refused {
                    node: self.node,
                    reason,
                    message,
                })
            }
            Ok(Ok(other)) => {
                return Err(bad_peer(format!(
                    "it answered the hello with a {}",
                    kind_name(&other)
                )))
            }
            Ok(Err(ReadError::Frame(e))) => return Err(bad_peer(e.to_string())),
            Ok(Err(ReadError::Eof)) => return Err(connect_err("closed during the hello".into())),
            Ok(Err(ReadError::Io(e))) => return Err(connect_err(e.to_string())),
            Err(_) => return Err(bad_peer(format!("no hello within {HELLO_TIMEOUT:?}"))),
        }
        let pending: Arc<Pending> = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (out, out_rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        let writer = tokio::spawn(write_loop(writer, out_rx));
        let reader = tokio::spawn(client_read_loop(
            reader,
            self.node,
            Arc::clone(&pending),
            Arc::clone(&closed),
        ));
        Ok(ClientConn {
            out,
            pending,
            closed,
            reader,
            writer,
        })
    }
}

struct Cleanup {
    pending: Arc<Pending>,
    id: u64,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the map leaves it consistent (single inserts
    // and removals): keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn client_read_loop(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    node: u64,
    pending: Arc<Pending>,
    closed: Arc<AtomicBool>,
) {
    let failure = loop {
        match read_frame(&mut reader).await {
            Ok(PeerFrame::Response {
                correlation_id,
                ok,
                payload,
            }) => {
                let waiter = lock(&pending).remove(&correlation_id);
                if let Some(waiter) = waiter {
                    let result = if ok {
                        Ok(payload)
                    } else {
                        Err(TransportError::Remote {
                            node,
                            message: String::from_utf8_lossy(&payload).into_owned(),
                        })
                    };
                    let _ = waiter.send(result);
                }
            }
            Ok(PeerFrame::Refused { reason, message }) => {
                break TransportError::Refused {
                    node,
                    reason,
                    message,
                }
            }
            Ok(other) => {
                break TransportError::Unexpected {
                    node,
                    kind: kind_name(&other),
                }
            }
            Err(ReadError::Frame(error)) => break TransportError::Frame { node, error },
            Err(ReadError::Eof | ReadError::Io(_)) => break TransportError::Closed { node },
        }
    };
    closed.store(true, Ordering::Release);
    tracing::debug!(node, error = %failure, "peer connection ended");
    let waiters: Vec<_> = lock(&pending).drain().map(|(_, w)| w).collect();
    for waiter in waiters {
        let _ = waiter.send(Err(failure.clone()));
    }
}
