//! The end-to-end check: 100,000 keyed records through a broker restart
//! come back exactly once, in per-key order, at dense offsets.

use std::collections::HashMap;
use std::time::Duration;

use rill_client::partitioner::partition_for_key;
use rill_client::{Acks, Admin, AdminConfig, Consumer, Producer, ProducerConfig, SeekTo};

use crate::common::{consume, consumer_config, create_topic, start_broker};

const RECORDS: u64 = 100_000;
const KEYS: u64 = 1_000;
const PARTITIONS: u32 = 8;
const TOPIC: &str = "events";

fn key_of(i: u64) -> String {
    format!("key-{:04}", i % KEYS)
}

/// FNV-1a: an order-independent multiset checksum is the wrapping sum of
/// each record's hash.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// 100k keyed records over 8 partitions, broker restarted, read back: exact count, checksum, per-key order, dense offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_keyed_records_survive_restart_exactly_once_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;

    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::with_capacity(RECORDS as usize);
    let mut checksum_sent = 0u64;
    for i in 0..RECORDS {
        let key = key_of(i);
        // Sequence number of this record among its key's records.
        let seq = (i / KEYS).to_le_bytes();
        checksum_sent = checksum_sent.wrapping_add(fnv1a(&[key.as_bytes(), &seq]));
        let delivery = producer
            .send(TOPIC, Some(key.as_bytes()), &seq, &[])
            .await
            .expect("buffered");
        deliveries.push((i, delivery));
    }
    let mut expected_count = [0u64; PARTITIONS as usize];
    for (i, delivery) in deliveries {
        let meta = delivery.await.expect("acknowledged");
        let key = key_of(i);
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), PARTITIONS)
        );
        assert!(meta.offset.is_some(), "acks=all reports offsets");
        expected_count[meta.partition as usize] += 1;
    }
    producer.close().await.expect("close");

    broker.shutdown().await;
    let broker = start_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();

    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let described = admin.describe_topic(TOPIC).await.expect("describe");
    for p in &described.partitions {
        assert_eq!(p.log_start_offset, 0);
        assert_eq!(p.log_end_offset, expected_count[p.partition as usize]);
    }

    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign((0..PARTITIONS).map(|p| (TOPIC.to_owned(), p)).collect());
    for p in 0..PARTITIONS {
        consumer
            .seek(TOPIC, p, SeekTo::Earliest)
            .await
            .expect("seek");
    }
    let records = consume(&mut consumer, RECORDS as usize).await;
    assert_eq!(records.len() as u64, RECORDS, "exact count");
    // Nothing more arrives.
    let extra = consumer
        .poll(Duration::from_millis(200))
        .await
        .expect("poll");
    assert!(extra.is_empty(), "no records beyond those sent");

    let mut next_offset = [0u64; PARTITIONS as usize];
    let mut next_seq: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut checksum_read = 0u64;
    for r in &records {
        let p = r.partition as usize;
        assert_eq!(r.offset, next_offset[p], "dense offsets in partition {p}");
        next_offset[p] += 1;
        let key = r.key.clone().expect("keyed");
        assert_eq!(r.partition, partition_for_key(&key, PARTITIONS));
        let seq = u64::from_le_bytes(r.value.as_slice().try_into().expect("8-byte value"));
        let want = next_seq.entry(key.clone()).or_insert(0);
        assert_eq!(
            seq,
            *want,
            "per-key order for {:?}",
            String::from_utf8_lossy(&key)
        );
        *want += 1;
        checksum_read = checksum_read.wrapping_add(fnv1a(&[&key, &r.value]));
    }
    assert_eq!(next_offset, expected_count);
    assert_eq!(next_seq.len() as u64, KEYS);
    assert!(next_seq.values().all(|&n| n == RECORDS / KEYS));
    assert_eq!(checksum_read, checksum_sent, "multiset checksum");
    for p in 0..PARTITIONS {
        assert_eq!(
            consumer.position(TOPIC, p),
            Some(expected_count[p as usize])
        );
    }
    broker.shutdown().await;
}
