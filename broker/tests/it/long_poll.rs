//! Long-poll fetch: wakes on a produce well before max_wait, and waits the
//! full max_wait when nothing arrives — real broker, real clock.

use std::time::{Duration, Instant};

use rill_protocol::wire::*;

use crate::common::{batch, start, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_waiting_at_the_log_end_wakes_on_a_produce() {
    // Proves: a fetch with max_wait 10 s returns soon after a produce lands
    // (watch-channel wake-up, not the timeout), carrying the new batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut admin = Client::connect(broker.local_addr()).await;
    admin.create_topic("lp", 2, &[]).await;
    let mut consumer = Client::connect(broker.local_addr()).await;
    let started = Instant::now();
    let id = consumer
        .send(Request::Fetch(FetchRequest {
            max_wait_ms: 10_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "lp".into(),
                partitions: (0..2)
                    .map(|partition| FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    })
                    .collect(),
            }],
        }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = batch(2, "wake", 1);
    let produced_at = Instant::now();
    admin.produce("lp", 1, Acks::Leader, sent.clone()).await;
    let response = consumer.recv(ApiKey::Fetch, id).await;
    let woke_after = produced_at.elapsed();
    let Response::Fetch(r) = response else {
        panic!("unexpected {response:?}")
    };
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered before any data"
    );
    assert!(
        woke_after < Duration::from_secs(1),
        "woke {woke_after:?} after the produce"
    );
    let p1 = &r.topics[0].partitions[1];
    assert_eq!(p1.records.len(), sent.len());
    assert!(r.topics[0].partitions[0].records.is_empty());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_nothing_to_read_waits_max_wait_then_answers_empty() {
    // Proves: with no data the answer comes after max_wait, not before and
    // not much later.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("idle", 1, &[]).await;
    const MAX_WAIT_MS: u32 = 300;
    let started = Instant::now();
    let f = c.fetch("idle", 0, 0, MAX_WAIT_MS, 1).await;
    let took = started.elapsed();
    assert_eq!((f.error, f.records.len()), (ErrorCode::None, 0));
    assert!(
        took >= Duration::from_millis(u64::from(MAX_WAIT_MS)),
        "took {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // min_bytes not reached by a small batch: still waits for max_wait.
    c.produce("idle", 0, Acks::Leader, batch(1, "small", 1))
        .await;
    let started = Instant::now();
    let f = c.fetch("idle", 0, 0, MAX_WAIT_MS, 1 << 20).await;
    assert!(started.elapsed() >= Duration::from_millis(u64::from(MAX_WAIT_MS)));
    assert!(
        !f.records.is_empty(),
        "what there is comes back at the deadline"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_waiting_fetch_early() {
    // Proves: graceful shutdown answers long-polls instead of waiting them out.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("sd", 1, &[]).await;
    let id = c.send(Client::fetch_request("sd", 0, 0, 30_000, 1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(broker.shutdown());
    let response = c.recv(ApiKey::Fetch, id).await;
    assert!(matches!(response, Response::Fetch(_)));
    stopping.await.expect("shutdown completes");
    assert!(started.elapsed() < Duration::from_secs(10));
}
