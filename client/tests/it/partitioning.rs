//! Partitioning through a real broker: keys map to the same partition for
//! every producer (Kafka's murmur2), keyless records stick to a partition
//! until its batch is sent, then move on.

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

/// Each flushed round of keyless records shares one partition, and the next round moves to the next partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "sticky", 4).await;
    let producer = Producer::new(ProducerConfig {
        // Long enough that every round below is one batch, cut by flush.
        linger: Duration::from_secs(10),
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let mut round_partitions = Vec::new();
    for round in 0..4 {
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let value = format!("r{round}-{i}");
            deliveries.push(
                producer
                    .send("sticky", None, value.as_bytes(), &[])
                    .await
                    .expect("send"),
            );
        }
        producer.flush().await.expect("flush");
        let mut partitions = Vec::new();
        for d in deliveries {
            partitions.push(d.await.expect("ack").partition);
        }
        assert!(
            partitions.iter().all(|&p| p == partitions[0]),
            "round {round}: one batch, one partition: {partitions:?}"
        );
        round_partitions.push(partitions[0]);
    }
    // Each sent batch moves the sticky partition on, round robin.
    for w in round_partitions.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 4, "{round_partitions:?}");
    }
    producer.close().await.expect("close");
    broker.shutdown().await;
}
