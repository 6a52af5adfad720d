//! `Producer::send_with_callback` against a real broker: every callback
//! runs exactly once, before `flush` returns, in send order per partition,
//! with the offset the broker really gave the record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_client::{ClientError, Consumer, Producer, ProducerConfig, RecordMetadata};

use crate::common::{broker, consume, consumer_config, create_topic};

const TOPIC: &str = "callbacks";
const PARTITIONS: u32 = 3;
const RECORDS: usize = 3_000;

type Outcomes = Arc<Mutex<Vec<(usize, Result<RecordMetadata, ClientError>)>>>;

/// 3,000 keyed records with callbacks: all callbacks ran when flush returned, per-partition offsets rise in send order, and each offset holds that record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_once_in_order_with_the_stored_offsets() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, TOPIC, PARTITIONS).await;
    let producer = Producer::new(ProducerConfig {
        // Small batches: many requests, several in flight at once.
        batch_size: 8 * 1024,
        linger: Duration::ZERO,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let outcomes: Outcomes = Arc::new(Mutex::new(Vec::new()));
    for i in 0..RECORDS {
        let key = format!("key-{}", i % 17);
        let value = format!("value-{i}");
        let outcomes = Arc::clone(&outcomes);
        producer
            .send_with_callback(
                TOPIC,
                Some(key.as_bytes()),
                value.as_bytes(),
                &[],
                move |r| {
                    outcomes.lock().expect("outcomes").push((i, r));
                },
            )
            .await
            .expect("buffered");
    }
    producer.flush().await.expect("flush");
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
    assert_eq!(
        outcomes.len(),
        RECORDS,
        "every callback ran by the time flush returned"
    );

    // Per partition: callbacks ran in send order, at rising offsets.
    let mut last: HashMap<u32, (usize, u64)> = HashMap::new();
    let mut offset_of = HashMap::new();
    for (i, outcome) in &outcomes {
        let meta = outcome.as_ref().expect("acknowledged");
        let offset = meta.offset.expect("acks=leader reports offsets");
        if let Some(&(prev_i, prev_offset)) = last.get(&meta.partition) {
            assert!(
                *i > prev_i && offset > prev_offset,
                "partition {} out of order",
                meta.partition
            );
        }
        last.insert(meta.partition, (*i, offset));
        offset_of.insert((meta.partition, offset), *i);
    }
    assert_eq!(offset_of.len(), RECORDS, "each record its own offset");

    // The broker holds each record where its callback said.
    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign((0..PARTITIONS).map(|p| (TOPIC.to_owned(), p)).collect());
    let got = consume(&mut consumer, RECORDS).await;
    assert_eq!(got.len(), RECORDS);
    for r in got {
        let i = offset_of[&(r.partition, r.offset)];
        assert_eq!(r.value, format!("value-{i}").into_bytes());
    }
    producer.close().await.expect("close");
    broker.shutdown().await;
}

/// A send the producer refuses (record larger than the buffer) returns the error and never runs its callback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_drops_its_callback_uncalled() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, TOPIC, 1).await;
    let producer = Producer::new(ProducerConfig {
        buffer_bytes_max: 4096,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let called = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&called);
    let err = producer
        .send_with_callback(TOPIC, None, &[0u8; 8192], &[], move |_| {
            *flag.lock().expect("flag") = true;
        })
        .await
        .expect_err("oversized record accepted");
    assert!(matches!(err, ClientError::RecordTooLarge { .. }), "{err}");
    producer.flush().await.expect("flush");
    assert!(!*called.lock().expect("flag"));
    producer.close().await.expect("close");
    broker.shutdown().await;
}

/// A callback that panics is caught: later sends to the same partition are acknowledged and flush returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_does_not_wedge_the_producer() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, TOPIC, 1).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    producer
        .send_with_callback(TOPIC, None, b"boom", &[], |_| panic!("callback panics"))
        .await
        .expect("buffered");
    let next = producer
        .send(TOPIC, None, b"next", &[])
        .await
        .expect("buffered");
    let meta = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the next record is not stuck behind the panic")
        .expect("acknowledged");
    assert_eq!(meta.offset, Some(1));
    tokio::time::timeout(Duration::from_secs(10), producer.flush())
        .await
        .expect("flush returns")
        .expect("flush");
    producer.close().await.expect("close");
    broker.shutdown().await;
}
