//! Partitioning through a real broker: keys map to the same partition for
//! every producer (Kafka's murmur2), keyless records stick to a partition
//! until a batch's worth of bytes went there, then move on.

use std::time::Duration;

use rill_client::partitioner::partition_for_key;
use rill_client::{Consumer, Producer, ProducerConfig};

use crate::common::{broker, consume, consumer_config, create_topic};

/// Two producers put each of 50 keys on the same partition, the murmur2 one, and the broker stored it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_lands_on_same_partition_across_producers() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "keys", 6).await;
    let a = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer a");
    let b = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer b");
    let keys: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let mut seen = std::collections::HashSet::new();
    for key in &keys {
        let pa = a
            .send("keys", Some(key.as_bytes()), b"from-a", &[])
            .await
            .expect("send");
        let pb = b
            .send("keys", Some(key.as_bytes()), b"from-b", &[])
            .await
            .expect("send");
        let (pa, pb) = (pa.await.expect("ack a"), pb.await.expect("ack b"));
        assert_eq!(pa.partition, pb.partition, "key {key}");
        assert_eq!(pa.partition, partition_for_key(key.as_bytes(), 6));
        seen.insert(pa.partition);
    }
    assert!(
        seen.len() > 3,
        "50 keys spread over the partitions: {seen:?}"
    );
    a.close().await.expect("close");
    b.close().await.expect("close");

    // The broker stored each key's two records in the partition named.
    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign((0..6).map(|p| ("keys".to_owned(), p)).collect());
    let records = consume(&mut consumer, 100).await;
    assert_eq!(records.len(), 100);
    for r in &records {
        let key = r.key.as_deref().expect("keyed");
        assert_eq!(r.partition, partition_for_key(key, 6));
    }
    broker.shutdown().await;
}

/// Keyless records fill one partition with a batch's worth of bytes, then
/// move to the next, round robin (Kafka's KIP-794), whether or not batches
/// were sent in between: flushes after every few records do not move them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_stick_to_a_partition_for_a_batch_worth_of_bytes() {
    const PARTITIONS: u32 = 4;
    const BATCH_BYTES: usize = 4096;
    const VALUE_BYTES: usize = 100;
    const RECORDS: usize = 400;
    const FLUSH_EVERY: usize = 3;
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "sticky", PARTITIONS).await;
    let producer = Producer::new(ProducerConfig {
        batch_size: BATCH_BYTES,
        linger: Duration::ZERO,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let value = vec![b'v'; VALUE_BYTES];
    let mut partitions = Vec::new();
    for i in 0..RECORDS {
        let delivery = producer
            .send("sticky", None, &value, &[])
            .await
            .expect("send");
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            producer.flush().await.expect("flush");
        }
        partitions.push(delivery);
    }
    producer.flush().await.expect("flush");
    let mut order = Vec::new();
    for d in partitions {
        order.push(d.await.expect("ack").partition);
    }
    // Runs of consecutive records on one partition.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for p in order {
        match runs.last_mut() {
            Some((q, n)) if *q == p => *n += 1,
            _ => runs.push((p, 1)),
        }
    }
    assert!(runs.len() >= PARTITIONS as usize, "{runs:?}");
    for w in runs.windows(2) {
        assert_eq!(
            w[1].0,
            (w[0].0 + 1) % PARTITIONS,
            "not round robin: {runs:?}"
        );
    }
    // Every run but the last is one batch's worth: equal-sized records, so
    // equal runs, each far longer than the flush interval.
    let full = &runs[..runs.len() - 1];
    let len = full[0].1;
    assert!(
        len > FLUSH_EVERY && len * VALUE_BYTES <= BATCH_BYTES,
        "{runs:?}"
    );
    assert!(full.iter().all(|&(_, n)| n == len), "{runs:?}");
    producer.close().await.expect("close");
    broker.shutdown().await;
}

/// With a long linger, a batch keyless records moved away from (a batch's
/// worth of bytes went to its partition) is sent at once, not after linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_sticky_partition_left_goes_without_lingering() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "left", 4).await;
    let producer = Producer::new(ProducerConfig {
        batch_size: 4096,
        linger: Duration::from_secs(30),
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for _ in 0..60 {
        deliveries.push(
            producer
                .send("left", None, &[b'v'; 100], &[])
                .await
                .expect("send"),
        );
    }
    let first = deliveries.remove(0);
    tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("the first batch waited for linger")
        .expect("ack");
    producer.close().await.expect("close");
    broker.shutdown().await;
}

/// Fresh producers of keyless records start at a random partition, not all at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_producers_start_at_random_partitions() {
    const PRODUCERS: usize = 12;
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "start", 4).await;
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..PRODUCERS {
        let producer = Producer::new(ProducerConfig::new(&addr))
            .await
            .expect("producer");
        let d = producer.send("start", None, b"x", &[]).await.expect("send");
        firsts.insert(d.await.expect("ack").partition);
        producer.close().await.expect("close");
    }
    // All 12 on one partition by chance: 4 x (1/4)^12, about 2.4e-7.
    assert!(firsts.len() > 1, "every producer started at {firsts:?}");
    broker.shutdown().await;
}
