//! A consumer whose partitions all hold batches larger than
//! `partition_max_bytes` still reads every partition: only the first
//! partition with data may exceed its limit, so the consumer rotates which
//! partition comes first (regression: partition 3 stayed at offset 0).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rill_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};

use crate::common::{broker, create_topic, CONSUME_DEADLINE};

const PARTITIONS: u32 = 4;
const BATCHES_PER_PARTITION: u32 = 3;
const VALUE_BYTES: usize = 4 * 1024;
/// Polls with data whose partitions are checked for rotation.
const EARLY_POLLS: usize = 6;

/// Every partition reaches its end although each batch is larger than the per-partition fetch limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_in_every_partition_do_not_starve_any() {
    let (_dir, _broker, addr) = broker().await;
    create_topic(&addr, "fair", PARTITIONS).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    let value = vec![7u8; VALUE_BYTES];
    for _ in 0..BATCHES_PER_PARTITION {
        let mut deliveries = Vec::new();
        for p in 0..PARTITIONS {
            // Several records per batch: each batch is well over the limit.
            for _ in 0..4 {
                deliveries.push(
                    producer
                        .send_to_partition("fair", p, None, &value, &[])
                        .await
                        .expect("send"),
                );
            }
        }
        producer.flush().await.expect("flush");
        for d in deliveries {
            d.await.expect("ack");
        }
    }

    let mut consumer = Consumer::new(ConsumerConfig {
        fetch_max_wait: Duration::from_millis(50),
        partition_max_bytes: 1024,
        ..ConsumerConfig::new(&addr)
    })
    .await
    .expect("consumer");
    consumer.assign((0..PARTITIONS).map(|p| ("fair".to_owned(), p)).collect());
    for p in 0..PARTITIONS {
        consumer
            .seek("fair", p, SeekTo::Earliest)
            .await
            .expect("seek");
    }
    let expected = u64::from(BATCHES_PER_PARTITION) * 4;
    let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
    // The partitions that answered the first polls with data: with a fixed
    // order these are partition 0 until it is drained, then partition 1, so
    // a partition that never stops receiving data would starve the rest.
    let mut early: Vec<u32> = Vec::new();
    let deadline = Instant::now() + CONSUME_DEADLINE;
    while (0..PARTITIONS).any(|p| seen.get(&p).copied().unwrap_or(0) < expected) {
        assert!(
            Instant::now() < deadline,
            "partitions starved: records per partition {seen:?}, expected {expected} each"
        );
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
        let mut partitions_in_poll = Vec::new();
        records
            .for_each(|r| {
                *seen.entry(r.partition).or_default() += 1;
                partitions_in_poll.push(r.partition);
            })
            .expect("records");
        if early.len() < EARLY_POLLS && !partitions_in_poll.is_empty() {
            early.extend(partitions_in_poll.iter().copied().take(1));
        }
    }
    let mut distinct = early.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "the first {EARLY_POLLS} polls with data came from partitions {early:?}: the fetch order does not rotate"
    );
    assert_eq!(
        seen,
        (0..PARTITIONS)
            .map(|p| (p, expected))
            .collect::<BTreeMap<_, _>>()
    );
}
