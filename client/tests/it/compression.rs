//! zstd batches round-trip through the broker: keys, values and headers come
//! back exactly, and the fetched bytes really are compressed.

use rill_client::{Compression, Consumer, Producer, ProducerConfig};

use crate::common::{broker, consumer_config, create_topic, Owned};

async fn produce(addr: &str, topic: &str, compression: Compression) {
    let producer = Producer::new(ProducerConfig {
        compression,
        ..ProducerConfig::new(addr)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0u32..1_000 {
        let key = format!("k{}", i % 10);
        let value = format!("a fairly repetitive value number {i} {}", "x".repeat(64));
        let trace = i.to_be_bytes();
        deliveries.push(
            producer
                .send(
                    topic,
                    Some(key.as_bytes()),
                    value.as_bytes(),
                    &[("trace", &trace), ("kind", b"test")],
                )
                .await
                .expect("send"),
        );
    }
    for d in deliveries {
        d.await.expect("ack");
    }
    producer.close().await.expect("close");
}

/// Reads everything of partition 0 and the fetched byte count.
async fn read_all(addr: &str, topic: &str) -> (Vec<Owned>, usize) {
    let mut consumer = Consumer::new(consumer_config(addr))
        .await
        .expect("consumer");
    consumer.assign(vec![(topic.to_owned(), 0)]);
    let mut out = Vec::new();
    let mut bytes = 0;
    let deadline = tokio::time::Instant::now() + crate::common::CONSUME_DEADLINE;
    while out.len() < 1_000 && tokio::time::Instant::now() < deadline {
        let records = consumer
            .poll(std::time::Duration::from_millis(500))
            .await
            .expect("poll");
        bytes += records.bytes_len();
        out.extend(crate::common::to_owned(&records));
    }
    (out, bytes)
}

/// The same 1,000 records produced plain and zstd read back identical, and the zstd bytes fetched are under a third of the plain ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_round_trip_matches_uncompressed() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "plain", 1).await;
    create_topic(&addr, "zstd", 1).await;
    produce(&addr, "plain", Compression::None).await;
    produce(&addr, "zstd", Compression::Zstd).await;
    let (plain, plain_bytes) = read_all(&addr, "plain").await;
    let (zstd, zstd_bytes) = read_all(&addr, "zstd").await;
    assert_eq!(plain.len(), 1_000);
    assert_eq!(zstd.len(), 1_000);
    for (i, (p, z)) in plain.iter().zip(&zstd).enumerate() {
        assert_eq!(p.offset, i as u64);
        assert_eq!(z.offset, i as u64);
        assert_eq!(
            (&p.key, &p.value, &p.headers),
            (&z.key, &z.value, &z.headers)
        );
        let want_value = format!("a fairly repetitive value number {i} {}", "x".repeat(64));
        assert_eq!(z.value, want_value.as_bytes());
        assert_eq!(
            z.headers[0],
            ("trace".to_owned(), (i as u32).to_be_bytes().to_vec())
        );
        assert_eq!(z.headers[1], ("kind".to_owned(), b"test".to_vec()));
    }
    assert!(
        zstd_bytes * 3 < plain_bytes,
        "zstd batches are smaller: {zstd_bytes} vs {plain_bytes}"
    );
    broker.shutdown().await;
}
