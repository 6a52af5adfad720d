//! The Prometheus endpoint over real HTTP: counters move with traffic, and
//! the metric names are pinned.

use rill_protocol::wire::*;

use crate::common::{batch, sample, scrape, start, Client};

#[test]
fn metric_names_are_stable() {
    // A rename breaks dashboards: this list changes only on purpose.
    let expected = [
        "rill_bytes_in_total",
        "rill_bytes_out_total",
        "rill_records_in_total",
        "rill_records_out_total",
        "rill_requests_total",
        "rill_request_duration_seconds",
        "rill_request_errors_total",
        "rill_connection_errors_total",
        "rill_connections_open",
        "rill_inflight_bytes",
        "rill_fsync_total",
        "rill_fsync_duration_seconds",
        "rill_log_end_offset",
        "rill_io_backend_info",
        "rill_log_recoveries_total",
        "rill_group_lag",
        "rill_recovery_truncated_bytes_total",
        "rill_recovery_indexes_rebuilt_total",
        "rill_recovery_segments_dropped_total",
        "rill_storage_corrupt_reads_total",
        "rill_read_only",
        "rill_produce_duplicate_batches_total",
        "rill_producer_ids",
        "rill_producer_id_evictions_total",
        "rill_producer_id_expirations_total",
        "rill_partition_leader",
        "rill_partition_leader_epoch",
        "rill_under_replicated_partitions",
        "rill_replication_lag_entries",
        "rill_preferred_leader_transfers_total",
        "rill_commit_duration_seconds",
    ];
    assert_eq!(rill_broker::metrics::ALL, &expected[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_after_traffic() {
    // Proves: a real HTTP GET of /metrics shows per-topic counters growing by
    // exactly the traffic sent (deltas, since the recorder is process-wide).
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("metered", 1, &[]).await;
    let before = scrape(broker.metrics_addr()).await;
    let sent = batch(5, "m", 1);
    c.produce("metered", 0, Acks::All, sent.clone()).await;
    c.produce("metered", 0, Acks::Leader, sent.clone()).await;
    let f = c.fetch("metered", 0, 0, 0, 0).await;
    let after = scrape(broker.metrics_addr()).await;

    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(
        delta("rill_bytes_in_total{topic=\"metered\"}"),
        2.0 * sent.len() as f64
    );
    assert_eq!(delta("rill_records_in_total{topic=\"metered\"}"), 10.0);
    assert_eq!(
        delta("rill_bytes_out_total{topic=\"metered\"}"),
        f.records.len() as f64
    );
    assert_eq!(delta("rill_records_out_total{topic=\"metered\"}"), 10.0);
    assert!(delta("rill_requests_total{api=\"produce\"}") >= 2.0);
    assert!(delta("rill_requests_total{api=\"fetch\"}") >= 1.0);
    assert!(after.contains("rill_request_duration_seconds_bucket{api=\"produce\""));
    assert!(after.contains("rill_fsync_duration_seconds_bucket"));
    assert!(sample(&after, "rill_connections_open") >= 1.0);
    assert!(after.contains("rill_io_backend_info{backend="));
    assert!(after.contains("# HELP rill_bytes_in_total"));

    // The fsync counter and log end gauge are sampled by the maintenance
    // task every second.
    tokio::time::sleep(rill_broker::server::TICK_INTERVAL * 2).await;
    let later = scrape(broker.metrics_addr()).await;
    assert!(sample(&later, "rill_fsync_total") >= 1.0);
    assert_eq!(
        sample(
            &later,
            "rill_log_end_offset{topic=\"metered\",partition=\"0\"}"
        ),
        10.0
    );
    broker.shutdown().await;
}
