//! One client connection: a reader that frames and decodes requests and a
//! writer that sends responses in request order.
//!
//! The reader reads a frame's 4-byte length prefix and checks it against
//! `frame_bytes_max`, then reads the body in chunks of at most
//! `BODY_CHUNK_BYTES` (1 MiB), taking each chunk's bytes from the
//! connection's and the broker's in-flight budgets (semaphores) *before*
//! reading it straight from the socket into the body: a client that sends
//! faster than the broker answers is slowed down by TCP backpressure, not
//! buffered, and a client that announces 100 MiB and trickles it holds at
//! most one chunk more than it has sent (taking the announced length up
//! front let six such clients hold the whole 512 MiB broker budget). A frame larger than a whole budget stops taking at all of
//! it and reads the rest anyway (it then runs alone), so it never waits on
//! itself. A Fetch
//! also reserves its response size (`max_bytes`, shrunk to what the budgets
//! grant; the first batch may still exceed it by one batch) before it is
//! spawned. The permits are released when the response has been written.
//!
//! Each decoded request becomes its own task, so requests on one connection
//! are handled concurrently (pipelining). The reader hands the writer each
//! task's handle through a bounded channel, in request order; the writer
//! awaits them in that order, which is the wire protocol's guarantee:
//! responses come back in request order. Produce requests are the one
//! exception to "spawn and move on": their appends are started on the reader
//! (see `handlers::produce::start`) so that pipelined produces to the same
//! partition get offsets in request order.
//!
//! Slow senders: a connection may sit idle between frames for as long as it
//! likes, but once a frame's first byte has arrived the whole frame must
//! arrive within `request_read_timeout_ms`, else the connection is closed:
//! a client trickling a frame would otherwise hold the budget for the bytes
//! it sent for ever. Waiting for the *first* chunk's budget does not count
//! (the frame holds nothing, it is the broker's delay); waiting for more
//! budget while holding some does. That is the choice that keeps partial
//! frames from deadlocking: several half-read frames can together hold the
//! whole broker budget, each waiting for more, and the oldest one's deadline
//! cuts it and frees its bytes. The cost: a legal big producer that cannot
//! get budget for `request_read_timeout_ms` (30 s by default) mid-frame is
//! cut and must retry; a healthy broker frees budget in milliseconds.
//!
//! Bad input: a length prefix over the limit, EOF inside a frame, a frame
//! sent too slowly, or a header that cannot be decoded closes the connection
//! at once. A request
//! whose header decoded but whose key, version or body is bad gets an error
//! response for its correlation id and then the connection is closed. That
//! error response has the ApiVersions layout (`i16 error`, then the API
//! table): the protocol has no generic error frame, and a client that reads
//! the first `i16` of any failed response's body finds the code (Fetch and
//! ApiVersions responses also start with it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rill_protocol::wire::{
    decode_frame_length, encode_response_frame_vectored, ApiVersionsResponse, ErrorCode, Request,
    RequestHeader, Response, ResponseHeader, WireError, FRAME_LENGTH_PREFIX_BYTES,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::handlers::{self, HandlerOutput};
use crate::metrics;
use crate::shared::Shared;

/// Requests one connection may have decoded and not yet answered; with the
/// byte budget this bounds a connection's memory and task count.
pub const PIPELINE_REQUESTS_MAX: usize = 512;
/// Read buffer per connection: small requests need one syscall for many.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Budget a frame body takes ahead of the bytes it reads: what a client
/// that trickles a huge frame can hold beyond what it sent. Larger than the
/// read buffer, so body reads bypass it.
const BODY_CHUNK_BYTES: usize = 1024 * 1024;
const _: () = assert!(BODY_CHUNK_BYTES > READ_BUFFER_BYTES);
/// Where the correlation id sits in a request body: after `u16 api_key` and
/// `u16 api_version`. Used only to answer a request whose key is unknown
/// (the header decoder rejects those before returning the id).
const HEADER_OFFSET_CORRELATION_ID: usize = 2 * std::mem::size_of::<u16>();
const HEADER_CORRELATION_ID_END: usize = HEADER_OFFSET_CORRELATION_ID + std::mem::size_of::<u32>();

/// Why a connection ended; the reason label of `rill_connection_errors_total`.
#[derive(Debug, thiserror::Error)]
enum Closed {
    /// The peer closed between frames, or the broker is shutting down.
    #[error("closed")]
    Clean,
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    /// EOF inside a frame.
    #[error("peer closed the connection inside a frame")]
    Truncated,
    /// A frame was still incomplete `request_read_timeout_ms` after its
    /// first byte.
    #[error("frame not complete within {0:?} of its first byte")]
    ReadTimeout(std::time::Duration),
    #[error("frame length {len} is over the limit {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("undecodable request header: {0}")]
    BadHeader(WireError),
    /// The request was answered with an error, then the connection closed.
    #[error("bad request (answered with an error): {0}")]
    BadRequest(WireError),
    /// The writer stopped (the peer vanished or a write failed).
    #[error("response writer stopped")]
    WriterGone,
}

impl Closed {
    fn reason(&self) -> Option<&'static str> {
        match self {
            Closed::Clean | Closed::WriterGone => None,
            Closed::Io(_) => Some("io"),
            Closed::Truncated => Some("truncated_frame"),
            Closed::ReadTimeout(_) => Some("read_timeout"),
            Closed::FrameTooLarge { .. } => Some("frame_too_large"),
            Closed::BadHeader(_) => Some("bad_header"),
            Closed::BadRequest(WireError::UnknownApiKey(_)) => Some("unknown_api"),
            Closed::BadRequest(WireError::UnsupportedVersion { .. }) => Some("unsupported_version"),
            Closed::BadRequest(_) => Some("malformed_request"),
        }
    }
}

/// Budget bytes held by one request: its frame, from the moment the length
/// prefix is read, plus for a Fetch the response bytes it may return; all
/// released when the response has been written.
struct InflightBytes {
    bytes: usize,
    connection: OwnedSemaphorePermit,
    connection_permits: usize,
    broker: OwnedSemaphorePermit,
    broker_permits: usize,
}

impl InflightBytes {
    /// Counts a frame's bytes beyond what its permits cover (a frame larger
    /// than a budget) in `bytes`, so the gauge shows the memory it holds.
    fn count_unbudgeted(&mut self, frame_len: usize) {
        let extra = frame_len.saturating_sub(self.bytes);
        self.bytes += extra;
        ::metrics::gauge!(metrics::INFLIGHT_BYTES).increment(extra as f64);
    }
}

impl Drop for InflightBytes {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::INFLIGHT_BYTES).decrement(self.bytes as f64);
    }
}

/// The connection's and the broker's in-flight byte budgets.
///
/// Deadlock freedom: on one connection only the reader acquires, in
/// request order, and every permit is released by writing a response,
/// which never waits for permits. One request never holds more than a whole
/// budget (larger frames are capped), so it never waits on itself. Across
/// connections, frames half read can hold budget while waiting for more;
/// that wait is on the frame's read deadline (see module docs), which
/// breaks any cycle.
struct Budgets {
    connection: Arc<Semaphore>,
    connection_budget: usize,
    broker: Arc<Semaphore>,
    broker_budget: usize,
}

impl Budgets {
    /// Takes `len` bytes (capped at each budget) from both budgets; `None`
    /// if a semaphore was closed.
    async fn acquire(&self, len: usize) -> Option<InflightBytes> {
        let connection_permits = len.min(self.connection_budget);
        let broker_permits = len.min(self.broker_budget);
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(as_permits(connection_permits))
            .await
            .ok()?;
        let broker = self
            .broker
            .clone()
            .acquire_many_owned(as_permits(broker_permits))
            .await
            .ok()?;
        ::metrics::gauge!(metrics::INFLIGHT_BYTES).increment(len as f64);
        Some(InflightBytes {
            bytes: len,
            connection,
            connection_permits,
            broker,
            broker_permits,
        })
    }

    /// Adds up to `want` bytes to `held`, never past a whole budget in
    /// total; returns how many were added.
    async fn extend(&self, held: &mut InflightBytes, want: usize) -> Option<usize> {
        let granted = want
            .min(
                self.connection_budget
                    .saturating_sub(held.connection_permits),
            )
            .min(self.broker_budget.saturating_sub(held.broker_permits));
        if granted == 0 {
            return Some(0);
        }
        let permits = as_permits(granted);
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(permits)
            .await
            .ok()?;
        let broker = self.broker.clone().acquire_many_owned(permits).await.ok()?;
        held.connection.merge(connection);
        held.broker.merge(broker);
        held.connection_permits += granted;
        held.broker_permits += granted;
        held.bytes += granted;
        ::metrics::gauge!(metrics::INFLIGHT_BYTES).increment(granted as f64);
        Some(granted)
    }
}

/// Budgets are validated to fit `u32` (`BrokerConfig::validate`).
fn as_permits(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A response slot in the writer's queue, in request order.
struct Pending {
    correlation_id: u32,
    reply: Reply,
    _inflight: InflightBytes,
}

enum Reply {
    Task(JoinHandle<HandlerOutput>),
    /// An error answer built by the reader; the connection closes after it.
    Immediate(Response),
}

/// Aborts the writer if the connection task itself is aborted (shutdown
/// timeout), so no detached task keeps the socket and its responses alive.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps `rill_connections_open` right on every exit path.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        ::metrics::gauge!(metrics::CONNECTIONS_OPEN).increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Serves one connection until the peer closes it, it misbehaves, or the
/// broker shuts down. `_slot` is the connection-count permit.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("connection", %peer, conn_id);
    async move {
        let _open = OpenConnection::new();
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        tracing::debug!("connection opened");
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(PIPELINE_REQUESTS_MAX);
        let mut writer = AbortOnDrop(tokio::spawn(write_loop(wr, rx).in_current_span()));
        let closed = read_loop(rd, tx, &shared).await;
        // The reader dropped its sender: the writer sends what is queued,
        // then ends.
        let written = (&mut writer.0).await;
        match closed.reason() {
            None => tracing::debug!(%closed, "connection closed"),
            Some(reason) => {
                ::metrics::counter!(metrics::CONNECTION_ERRORS_TOTAL, "reason" => reason)
                    .increment(1);
                tracing::info!(reason, %closed, "connection closed on bad input");
            }
        }
        if let Err(e) = written {
            tracing::error!(error = %e, "connection writer failed");
        }
    }
    .instrument(span)
    .await
}

/// Reads until EOF: `Ok(0)` on a clean EOF before the first byte.
async fn read_full<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = rd.read(buf.get_mut(filled..).unwrap_or(&mut [])).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Reads a `len`-byte frame body, taking budget for each chunk before
/// reading it (see module docs): waiting for bytes is on the frame's clock
/// (`deadline`), and so is waiting for budget once the frame holds some;
/// only the first chunk's wait, holding nothing, is off it.
async fn read_body<R: AsyncRead + Unpin>(
    rd: &mut BufReader<R>,
    budgets: &Budgets,
    len: usize,
    mut deadline: tokio::time::Instant,
    read_timeout: std::time::Duration,
) -> Result<(BytesMut, InflightBytes), Closed> {
    // Full capacity up front: the allocation is address space only until
    // bytes are written into it (the kernel commits pages on first touch),
    // so a trickling client still costs only what it sent, and a big frame
    // is not copied again each time a growing buffer doubles.
    let mut body = BytesMut::with_capacity(len);
    let mut inflight: Option<InflightBytes> = None;
    while body.len() < len {
        // Budget is taken a bounded chunk ahead of the bytes: a trickling
        // client holds at most one chunk more than it sent, and the chunk is
        // read straight from the socket into the body (the read buffer is
        // bypassed for reads larger than it), so a produce is copied once.
        let chunk = (len - body.len()).min(BODY_CHUNK_BYTES);
        match inflight.as_mut() {
            None => {
                // Holding nothing, this wait cannot block anyone: the
                // broker's delay, not the client's.
                let waiting_since = tokio::time::Instant::now();
                inflight = Some(budgets.acquire(chunk).await.ok_or(Closed::Clean)?);
                deadline += waiting_since.elapsed();
            }
            Some(held) => {
                // Holding budget while waiting for more could deadlock with
                // other half-read frames; the frame's deadline breaks it.
                match tokio::time::timeout_at(deadline, budgets.extend(held, chunk)).await {
                    Err(_) => return Err(Closed::ReadTimeout(read_timeout)),
                    Ok(None) => return Err(Closed::Clean),
                    // Granted, or 0 at a whole budget: such a frame runs
                    // alone past the budget, as it always has.
                    Ok(Some(_)) => {}
                }
            }
        }
        let target = body.len() + chunk;
        while body.len() < target {
            let want = target - body.len();
            let mut room = bytes::BufMut::limit(&mut body, want);
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut room)).await {
                Err(_) => return Err(Closed::ReadTimeout(read_timeout)),
                Ok(Err(e)) => return Err(Closed::Io(e)),
                Ok(Ok(0)) => return Err(Closed::Truncated),
                Ok(Ok(_)) => {}
            }
        }
    }
    let mut inflight = match inflight {
        Some(held) => held,
        None => budgets.acquire(0).await.ok_or(Closed::Clean)?,
    };
    // Bytes past a whole budget are still in memory: show them in the gauge.
    inflight.count_unbudgeted(len);
    Ok((body, inflight))
}

async fn read_loop(rd: OwnedReadHalf, tx: mpsc::Sender<Pending>, shared: &Arc<Shared>) -> Closed {
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let mut shutdown = shared.shutdown.clone();
    let frame_max = usize::try_from(shared.config.frame_bytes_max).unwrap_or(usize::MAX);
    let connection_budget = budget_permits(shared.config.connection_inflight_bytes_max);
    let budgets = Budgets {
        connection: Arc::new(Semaphore::new(connection_budget)),
        connection_budget,
        broker: shared.broker_inflight.clone(),
        broker_budget: budget_permits(shared.config.broker_inflight_bytes_max),
    };
    let read_timeout = std::time::Duration::from_millis(shared.config.request_read_timeout_ms);
    loop {
        let mut prefix = [0u8; FRAME_LENGTH_PREFIX_BYTES];
        let (prefix_first, prefix_rest) = prefix.split_at_mut(1);
        // Idle between frames is fine; the frame's clock starts at its
        // first byte.
        let got = tokio::select! {
            got = rd.read(prefix_first) => got,
            _ = crate::shutdown::stopped(&mut shutdown) => return Closed::Clean,
        };
        match got {
            Ok(0) => return Closed::Clean,
            Ok(_) => {}
            Err(e) => return Closed::Io(e),
        }
        let deadline = tokio::time::Instant::now() + read_timeout;
        let got = match tokio::time::timeout_at(deadline, read_full(&mut rd, prefix_rest)).await {
            Ok(got) => got,
            Err(_) => return Closed::ReadTimeout(read_timeout),
        };
        match got {
            Ok(n) if n < prefix_rest.len() => return Closed::Truncated,
            Ok(_) => {}
            Err(e) => return Closed::Io(e),
        }
        let len = match decode_frame_length(prefix, frame_max) {
            Ok(len) => len,
            Err(WireError::FrameTooLarge { len, max }) => {
                return Closed::FrameTooLarge { len, max }
            }
            Err(e) => return Closed::BadHeader(e),
        };

        let (mut body, mut inflight) =
            match read_body(&mut rd, &budgets, len, deadline, read_timeout).await {
                Ok(read) => read,
                Err(closed) => return closed,
            };

        let peeked_correlation_id = body
            .get(HEADER_OFFSET_CORRELATION_ID..HEADER_CORRELATION_ID_END)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes);
        let header = match RequestHeader::decode(&mut body) {
            Ok(h) => h,
            Err(e @ WireError::UnknownApiKey(_)) => {
                let Some(correlation_id) = peeked_correlation_id else {
                    return Closed::BadHeader(e);
                };
                count_request_error("unknown", e.error_code());
                let _ = tx
                    .send(Pending {
                        correlation_id,
                        reply: Reply::Immediate(error_response(e.error_code())),
                        _inflight: inflight,
                    })
                    .await;
                return Closed::BadRequest(e);
            }
            Err(e) => return Closed::BadHeader(e),
        };
        let api = handlers::api_name(header.api_key);
        let request = match Request::decode(&header, &mut body) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(api, correlation_id = header.correlation_id, error = %e, "undecodable request");
                count_request_error(api, e.error_code());
                let _ = tx
                    .send(Pending {
                        correlation_id: header.correlation_id,
                        reply: Reply::Immediate(error_response(e.error_code())),
                        _inflight: inflight,
                    })
                    .await;
                return Closed::BadRequest(e);
            }
        };
        // A fetch reserves its response bytes too, here on the reader (in
        // request order, see `Budgets`), so pipelined fetches cannot pile
        // up unbounded responses; its max_bytes shrinks to what it got.
        let request = match request {
            Request::Fetch(mut fetch) => {
                let want = usize::try_from(fetch.max_bytes).unwrap_or(usize::MAX);
                let Some(granted) = budgets.extend(&mut inflight, want).await else {
                    return Closed::Clean;
                };
                fetch.max_bytes = as_permits(granted);
                Request::Fetch(fetch)
            }
            other => other,
        };
        ::metrics::counter!(metrics::REQUESTS_TOTAL, "api" => api).increment(1);
        let span = tracing::debug_span!("request", api, correlation_id = header.correlation_id);
        let started = Instant::now();
        let task = match request {
            // Started here, on the reader, so appends keep request order.
            Request::Produce(produce) => {
                let finish = handlers::produce::start(shared.clone(), produce)
                    .instrument(span.clone())
                    .await;
                tokio::spawn(timed(api, started, finish).instrument(span))
            }
            other => {
                let handler = handlers::dispatch(shared.clone(), header.client_id, other);
                tokio::spawn(timed(api, started, handler).instrument(span))
            }
        };
        let pending = Pending {
            correlation_id: header.correlation_id,
            reply: Reply::Task(task),
            _inflight: inflight,
        };
        if tx.send(pending).await.is_err() {
            return Closed::WriterGone;
        }
    }
}

async fn timed<F: std::future::Future<Output = HandlerOutput>>(
    api: &'static str,
    started: Instant,
    handler: F,
) -> HandlerOutput {
    let out = handler.await;
    ::metrics::histogram!(metrics::REQUEST_DURATION_SECONDS, "api" => api)
        .record(started.elapsed().as_secs_f64());
    out
}

/// A byte budget as semaphore permits (one permit per byte).
pub(crate) fn budget_permits(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(Semaphore::MAX_PERMITS)
        .min(Semaphore::MAX_PERMITS)
}

fn count_request_error(api: &'static str, code: ErrorCode) {
    ::metrics::counter!(metrics::REQUEST_ERRORS_TOTAL, "api" => api, "code" => code.name())
        .increment(1);
}

/// The error answer to a request that could not be decoded (see module docs).
fn error_response(code: ErrorCode) -> Response {
    Response::ApiVersions(ApiVersionsResponse {
        error: code,
        ..ApiVersionsResponse::supported()
    })
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>) {
    while let Some(pending) = rx.recv().await {
        let response = match pending.reply {
            Reply::Immediate(r) => Some(r),
            Reply::Task(task) => match task.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, correlation_id = pending.correlation_id, "request handler failed; closing connection");
                    break;
                }
            },
        };
        let Some(response) = response else { continue };
        let header = ResponseHeader {
            correlation_id: pending.correlation_id,
        };
        let chunks = match encode_response_frame_vectored(&header, &response) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, correlation_id = pending.correlation_id, "cannot encode response; closing connection");
                break;
            }
        };
        if let Err(e) = write_chunks(&mut wr, &chunks).await {
            tracing::debug!(error = %e, "write failed; closing connection");
            break;
        }
    }
    // Stop the reader's queue so it notices, then close our side.
    rx.close();
    let _ = wr.shutdown().await;
}

/// Writes every chunk with as few syscalls as the kernel allows; record
/// blobs go from the log's buffers to the socket without a copy.
async fn write_chunks(wr: &mut OwnedWriteHalf, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let slices: Vec<std::io::IoSlice<'_>> = chunks
            .iter()
            .skip(index)
            .enumerate()
            .map(|(i, c)| {
                let c = if i == 0 {
                    c.get(offset..).unwrap_or(&[])
                } else {
                    &c[..]
                };
                std::io::IoSlice::new(c)
            })
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(chunk) = chunks.get(index) else {
                break;
            };
            let left = chunk.len() - offset;
            if n >= left {
                n -= left;
                index += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
        // Skip empty chunks so the loop ends.
        while chunks.get(index).is_some_and(|c| c.len() == offset) {
            index += 1;
            offset = 0;
        }
    }
    Ok(())
}
