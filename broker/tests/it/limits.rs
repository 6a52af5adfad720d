//! Configured limits hold on a real broker: frame size, a frame larger than
//! the in-flight budget, the connection count, and background retention.

use std::time::{Duration, Instant};

use rill_broker::{Broker, BrokerConfig};
use rill_protocol::wire::*;

use crate::common::{batch, config, Client};

async fn start_with(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut BrokerConfig),
) -> rill_broker::BrokerHandle {
    let mut c = config(dir);
    tweak(&mut c);
    Broker::start(c).await.expect("broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_frame_bytes_max_close_and_frames_over_the_inflight_budget_still_pass() {
    // Proves: the configured frame limit closes the connection; a legal
    // frame bigger than the whole per-connection budget does not deadlock.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |c| {
        c.frame_bytes_max = 64 * 1024;
        c.max_message_bytes = 32 * 1024;
        c.connection_inflight_bytes_max = 1024;
        c.broker_inflight_bytes_max = 2048;
    })
    .await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("lim", 1, &[]).await;
    let big = batch(1, &"b".repeat(8 * 1024), 1);
    assert!(big.len() > 2048);
    let r = c.produce("lim", 0, Acks::All, big).await;
    assert_eq!(r.error, ErrorCode::None);

    let too_big = batch(1, &"t".repeat(80 * 1024), 1);
    c.send(Client::produce_request("lim", 0, Acks::All, too_big))
        .await;
    assert!(c.closed_by_peer().await);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_until_a_slot_frees() {
    // Proves: with connections_max = 1 a second client is not served while
    // the first is connected, and is served once it leaves.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |c| c.connections_max = 1).await;
    let mut first = Client::connect(broker.local_addr()).await;
    assert!(matches!(
        first
            .call(Request::ApiVersions(ApiVersionsRequest {}))
            .await,
        Response::ApiVersions(_)
    ));
    let mut second = Client::connect(broker.local_addr()).await;
    let id = second
        .send(Request::ApiVersions(ApiVersionsRequest {}))
        .await;
    let early = tokio::time::timeout(Duration::from_millis(300), second.recv_raw()).await;
    assert!(early.is_err(), "second connection served over the limit");
    drop(first);
    match second.recv(ApiKey::ApiVersions, id).await {
        Response::ApiVersions(r) => assert_eq!(r.apis, SUPPORTED_APIS.to_vec()),
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_task_enforces_retention() {
    // Proves: the background task applies retention.bytes without any
    // request asking for it (log start offset moves).
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |c| c.retention_check_interval_ms = 50).await;
    let mut c = Client::connect(broker.local_addr()).await;
    let created = c
        .create_topic(
            "aging",
            1,
            &[("segment.bytes", "1024"), ("retention.bytes", "1")],
        )
        .await;
    assert_eq!(created.error, ErrorCode::None);
    for i in 0..20 {
        c.produce(
            "aging",
            0,
            Acks::Leader,
            batch(1, &format!("r{i:03}{}", "p".repeat(200)), 1),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = c.list_offset("aging", 0, EARLIEST_TIMESTAMP).await.offset;
        if start > 0 {
            let end = c.list_offset("aging", 0, LATEST_TIMESTAMP).await.offset;
            assert_eq!(end, 20);
            assert!(start < end, "the active segment is never deleted");
            break;
        }
        assert!(Instant::now() < deadline, "retention never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_responses_are_bounded_by_the_connection_budget() {
    // Proves: a fetch's response is reserved from the in-flight budget, so
    // a fetch asking for 1 MiB on a 16 KiB budget gets at most 16 KiB, and
    // pipelined fetches all complete (no deadlock on the budget).
    const BUDGET: u64 = 16 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_with(dir.path(), |c| c.connection_inflight_bytes_max = BUDGET).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("bounded", 1, &[]).await;
    for i in 0..40 {
        let r = c
            .produce(
                "bounded",
                0,
                Acks::Leader,
                batch(1, &format!("{i:02}{}", "v".repeat(2000)), 1),
            )
            .await;
        assert_eq!(r.error, ErrorCode::None);
    }
    let ids: Vec<u32> = {
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(c.send(Client::fetch_request("bounded", 0, 0, 0, 0)).await);
        }
        ids
    };
    for id in ids {
        let Response::Fetch(f) = c.recv(ApiKey::Fetch, id).await else {
            panic!("not a fetch response")
        };
        let got = f.topics[0].partitions[0].records.len() as u64;
        assert!(
            got > 0 && got <= BUDGET,
            "fetch returned {got} bytes on a {BUDGET}-byte budget"
        );
    }
    broker.shutdown().await;
}
