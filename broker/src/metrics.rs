//! Metric names, their descriptions, the process-wide Prometheus recorder and
//! the `/metrics` HTTP endpoint.
//!
//! The `metrics` facade has one global recorder per process, while a process
//! may run several brokers (tests, an embedding tool). So the recorder is
//! installed once ([`recorder_handle`], behind a `OnceLock`) and each broker
//! serves its own `/metrics` listener that renders from that shared handle.
//! If some other recorder was installed first (an embedding program's), the
//! broker still serves what its own (then unattached) recorder holds and logs
//! a warning. The endpoint is a deliberately tiny HTTP/1.1 responder: one
//! GET per connection, no keep-alive, no dependency on an HTTP framework.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BYTES_IN_TOTAL: &str = "rill_bytes_in_total";
pub const BYTES_OUT_TOTAL: &str = "rill_bytes_out_total";
pub const RECORDS_IN_TOTAL: &str = "rill_records_in_total";
pub const RECORDS_OUT_TOTAL: &str = "rill_records_out_total";
pub const REQUESTS_TOTAL: &str = "rill_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "rill_request_duration_seconds";
pub const REQUEST_ERRORS_TOTAL: &str = "rill_request_errors_total";
pub const CONNECTION_ERRORS_TOTAL: &str = "rill_connection_errors_total";
pub const CONNECTIONS_OPEN: &str = "rill_connections_open";
pub const INFLIGHT_BYTES: &str = "rill_inflight_bytes";
pub const FSYNC_TOTAL: &str = "rill_fsync_total";
pub const FSYNC_DURATION_SECONDS: &str = "rill_fsync_duration_seconds";
pub const LOG_END_OFFSET: &str = "rill_log_end_offset";
pub const IO_BACKEND_INFO: &str = "rill_io_backend_info";
pub const LOG_RECOVERIES_TOTAL: &str = "rill_log_recoveries_total";
/// Bytes recovery cut from segment tails (torn or corrupt batches and
/// everything after them) when opening partition logs.
pub const RECOVERY_TRUNCATED_BYTES_TOTAL: &str = "rill_recovery_truncated_bytes_total";
/// Offset or time index files recovery found missing or malformed and
/// rebuilt from the log.
pub const RECOVERY_INDEXES_REBUILT_TOTAL: &str = "rill_recovery_indexes_rebuilt_total";
/// Whole segments recovery removed because they did not continue the log.
pub const RECOVERY_SEGMENTS_DROPPED_TOTAL: &str = "rill_recovery_segments_dropped_total";
/// Fetches refused because a stored batch failed its CRC.
pub const STORAGE_CORRUPT_READS_TOTAL: &str = "rill_storage_corrupt_reads_total";
/// 1 while the broker runs on a read-only data directory (serving reads,
/// refusing writes), else 0.
pub const READ_ONLY: &str = "rill_read_only";
/// A consumer group's lag on one partition: log end offset minus its
/// committed offset (committed partitions only).
pub const GROUP_LAG: &str = "rill_group_lag";
/// Idempotent batches a producer sent again (a retry after a lost answer)
/// that were already in the log: answered with the original offsets, not
/// written twice.
pub const PRODUCE_DUPLICATE_BATCHES_TOTAL: &str = "rill_produce_duplicate_batches_total";
/// Idempotent producer ids the partitions remember, whole broker.
pub const PRODUCER_IDS: &str = "rill_producer_ids";
/// Producer ids a partition evicted at `producer_ids_per_partition_max`.
pub const PRODUCER_ID_EVICTIONS_TOTAL: &str = "rill_producer_id_evictions_total";
/// Producer ids a partition forgot after `producer_id_expiration_ms` idle.
pub const PRODUCER_ID_EXPIRATIONS_TOTAL: &str = "rill_producer_id_expirations_total";
/// 1 where this broker leads a replicated partition, 0 where it follows;
/// by topic and partition.
pub const PARTITION_LEADER: &str = "rill_partition_leader";
/// The Raft term (leader epoch) of each replicated partition this broker
/// hosts: its increases are elections.
pub const PARTITION_LEADER_EPOCH: &str = "rill_partition_leader_epoch";
/// Replicated partitions this broker leads with fewer replicas in sync
/// than it has.
pub const UNDER_REPLICATED_PARTITIONS: &str = "rill_under_replicated_partitions";
/// Entries a follower's log lags behind its leader's, by topic, partition
/// and replica (reported by the leader).
pub const REPLICATION_LAG_ENTRIES: &str = "rill_replication_lag_entries";
/// Leaderships handed back to a partition's preferred replica.
pub const PREFERRED_LEADER_TRANSFERS_TOTAL: &str = "rill_preferred_leader_transfers_total";
/// Time from a replicated append to its commit (acks=all).
pub const COMMIT_DURATION_SECONDS: &str = "rill_commit_duration_seconds";

/// Every name above, for the test that pins them.
pub const ALL: &[&str] = &[
    BYTES_IN_TOTAL,
    BYTES_OUT_TOTAL,
    RECORDS_IN_TOTAL,
    RECORDS_OUT_TOTAL,
    REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
    REQUEST_ERRORS_TOTAL,
    CONNECTION_ERRORS_TOTAL,
    CONNECTIONS_OPEN,
    INFLIGHT_BYTES,
    FSYNC_TOTAL,
    FSYNC_DURATION_SECONDS,
    LOG_END_OFFSET,
    IO_BACKEND_INFO,
    LOG_RECOVERIES_TOTAL,
    GROUP_LAG,
    RECOVERY_TRUNCATED_BYTES_TOTAL,
    RECOVERY_INDEXES_REBUILT_TOTAL,
    RECOVERY_SEGMENTS_DROPPED_TOTAL,
    STORAGE_CORRUPT_READS_TOTAL,
    READ_ONLY,
    PRODUCE_DUPLICATE_BATCHES_TOTAL,
    PRODUCER_IDS,
    PRODUCER_ID_EVICTIONS_TOTAL,
    PRODUCER_ID_EXPIRATIONS_TOTAL,
    PARTITION_LEADER,
    PARTITION_LEADER_EPOCH,
    UNDER_REPLICATED_PARTITIONS,
    REPLICATION_LAG_ENTRIES,
    PREFERRED_LEADER_TRANSFERS_TOTAL,
    COMMIT_DURATION_SECONDS,
];

/// Histogram buckets for request and fsync latencies: 50 µs .. 10 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Longest a scraper may take to send its request line.
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read; anything longer is not a scrape.
const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installing the recorder on first use.
pub fn recorder_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".to_string()),
                LATENCY_BUCKETS_SECONDS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = ::metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will not show broker metrics");
        }
        describe();
        handle
    })
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        BYTES_IN_TOTAL,
        Unit::Bytes,
        "Record batch bytes appended, by topic"
    );
    describe_counter!(
        BYTES_OUT_TOTAL,
        Unit::Bytes,
        "Record batch bytes sent to consumers, by topic"
    );
    describe_counter!(RECORDS_IN_TOTAL, "Records appended, by topic");
    describe_counter!(
        RECORDS_OUT_TOTAL,
        "Records sent to consumers, by topic (whole batches)"
    );
    describe_counter!(REQUESTS_TOTAL, "Requests handled, by API");
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a request's decode to its response being ready, by API"
    );
    describe_counter!(
        REQUEST_ERRORS_TOTAL,
        "Error codes returned (request or partition level), by API and code"
    );
    describe_counter!(
        CONNECTION_ERRORS_TOTAL,
        "Connections closed because of bad input or I/O errors, by reason"
    );
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open");
    describe_gauge!(
        INFLIGHT_BYTES,
        Unit::Bytes,
        "Bytes of requests not yet answered plus response bytes reserved by fetches, whole broker"
    );
    describe_counter!(FSYNC_TOTAL, "fdatasync calls the partition logs issued (storage stats, sampled every second; group commit makes this far fewer than acks=all appends)");
    describe_histogram!(
        FSYNC_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of acks=all appends: write plus the fdatasync that covered it"
    );
    describe_gauge!(LOG_END_OFFSET, "Log end offset, by topic and partition");
    describe_gauge!(IO_BACKEND_INFO, "1 for the storage I/O backend running");
    describe_gauge!(
        READ_ONLY,
        "1 while the data directory is read-only (reads served, writes refused), else 0"
    );
    describe_counter!(
        LOG_RECOVERIES_TOTAL,
        "Partition logs opened without a clean-shutdown marker (recovery scan ran)"
    );
    describe_counter!(
        RECOVERY_TRUNCATED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes recovery cut from segment tails (torn or corrupt batches and all after them), by topic"
    );
    describe_counter!(
        RECOVERY_INDEXES_REBUILT_TOTAL,
        "Index files found missing or malformed at open and rebuilt from the log, by topic"
    );
    describe_counter!(
        RECOVERY_SEGMENTS_DROPPED_TOTAL,
        "Segments removed at open because they did not continue the log, by topic"
    );
    describe_counter!(
        STORAGE_CORRUPT_READS_TOTAL,
        "Fetches answered CorruptMessage because a stored batch failed its CRC, by topic"
    );
    describe_counter!(
        PRODUCE_DUPLICATE_BATCHES_TOTAL,
        "Idempotent batches received again that were already in the log (answered with their original offsets, not written twice), by topic"
    );
    describe_gauge!(
        PARTITION_LEADER,
        "1 where this broker leads a replicated partition, 0 where it follows (sampled every second)"
    );
    describe_gauge!(
        PARTITION_LEADER_EPOCH,
        "Raft term (leader epoch) of each replicated partition hosted here; increases are elections"
    );
    describe_gauge!(
        UNDER_REPLICATED_PARTITIONS,
        "Replicated partitions led here with fewer replicas in sync than replicas"
    );
    describe_gauge!(
        REPLICATION_LAG_ENTRIES,
        "Entries a follower lags behind its leader, by topic, partition and replica (on the leader)"
    );
    describe_counter!(
        PREFERRED_LEADER_TRANSFERS_TOTAL,
        "Leaderships handed back to a partition's preferred (first) replica"
    );
    describe_histogram!(
        COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Time from a replicated append at the leader to its commit on a majority (acks=all)"
    );
    describe_gauge!(
        PRODUCER_IDS,
        "Idempotent producer ids remembered, summed over partitions (sampled every second)"
    );
    describe_counter!(
        PRODUCER_ID_EVICTIONS_TOTAL,
        "Producer ids evicted at producer_ids_per_partition_max (least recently used first)"
    );
    describe_counter!(
        PRODUCER_ID_EXPIRATIONS_TOTAL,
        "Producer ids forgotten after producer_id_expiration_ms without a batch"
    );
    describe_gauge!(
        GROUP_LAG,
        "Records a consumer group has yet to commit: log end offset minus committed offset, by group, topic and partition"
    );
}

/// Serves `GET /metrics` from `listener` until `shutdown` flips to true.
pub(crate) async fn serve(listener: TcpListener, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream).await {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        }
    }
}

async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HTTP_REQUEST_BYTES_MAX {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(HTTP_REQUEST_TIMEOUT, read_head)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow metrics request"))??;
    let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        let handle = recorder_handle();
        handle.run_upkeep();
        ("200 OK", "text/plain; version=0.0.4", handle.render())
    } else {
        (
            "404 Not Found",
            "text/plain",
            "only GET /metrics is served\n".to_string(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the metrics endpoint.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
