//! The bounded buffer: a tiny `buffer_bytes_max` makes `send` wait for
//! acknowledgements instead of growing, and still delivers everything.

use std::time::{Duration, Instant};

use rill_client::{ClientError, Consumer, Producer, ProducerConfig};

use crate::common::{broker, consume, consumer_config, create_topic};

/// 2,000 records through a 2 KiB buffer: every key arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_buffer_delivers_everything() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "bp", 2).await;
    let producer = Producer::new(ProducerConfig {
        buffer_bytes_max: 2 * 1024,
        linger: Duration::from_millis(1),
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let value = [7u8; 100];
    let mut deliveries = Vec::new();
    for i in 0u32..2_000 {
        let key = i.to_le_bytes();
        deliveries.push(
            producer
                .send("bp", Some(&key), &value, &[])
                .await
                .expect("send"),
        );
    }
    for d in deliveries {
        d.await.expect("ack");
    }
    producer.close().await.expect("close");

    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("bp".to_owned(), 0), ("bp".to_owned(), 1)]);
    let records = consume(&mut consumer, 2_000).await;
    assert_eq!(records.len(), 2_000);
    let mut keys: Vec<u32> = records
        .iter()
        .map(|r| u32::from_le_bytes(r.key.as_deref().expect("key").try_into().expect("4 bytes")))
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..2_000).collect::<Vec<_>>());
    broker.shutdown().await;
}

/// With the buffer full and nothing acknowledged before the linger, sends take at least the linger; an oversized record is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_makes_send_wait_for_the_linger_to_free_it() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "bp-wait", 1).await;
    let linger = Duration::from_millis(300);
    let producer = Producer::new(ProducerConfig {
        buffer_bytes_max: 2 * 1024,
        linger,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    // ~170 buffer bytes each: about 12 fit. Nothing is released before the
    // first batch lingers out, so the 40 sends cannot all return sooner.
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for _ in 0..40 {
        deliveries.push(
            producer
                .send("bp-wait", None, &[1u8; 100], &[])
                .await
                .expect("send"),
        );
    }
    assert!(
        started.elapsed() >= linger,
        "send waited for room: {:?}",
        started.elapsed()
    );
    for d in deliveries {
        d.await.expect("ack");
    }

    // A record larger than the whole buffer can never fit.
    let err = producer
        .send("bp-wait", None, &[0u8; 4096], &[])
        .await
        .expect_err("too large");
    assert!(matches!(err, ClientError::RecordTooLarge { .. }), "{err:?}");
    producer.close().await.expect("close");
    broker.shutdown().await;
}
