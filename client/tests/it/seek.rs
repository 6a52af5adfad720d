//! Consumer positions: seek to an offset inside a batch, to the earliest,
//! the latest and a timestamp; out-of-range positions are an error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_client::{Consumer, Producer, ProducerConfig, SeekTo};
use rill_protocol::wire::ErrorCode;

use crate::common::{broker, consume, consumer_config, create_topic, to_owned};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn send_batch(producer: &Producer, from: u32, n: u32) {
    let mut deliveries = Vec::new();
    for i in from..from + n {
        deliveries.push(
            producer
                .send("seek", None, &i.to_le_bytes(), &[])
                .await
                .expect("send"),
        );
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("ack");
    }
}

/// Seeks to a timestamp, to an offset inside a batch, to earliest and to latest each set the position and the next records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_earliest_latest_timestamp_and_offset() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "seek", 1).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    send_batch(&producer, 0, 10).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let middle = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    send_batch(&producer, 10, 10).await;

    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("seek".to_owned(), 0)]);

    consumer
        .seek("seek", 0, SeekTo::Timestamp(middle))
        .await
        .expect("seek ts");
    assert_eq!(consumer.position("seek", 0), Some(10));
    let got = consume(&mut consumer, 10).await;
    assert_eq!(got.first().map(|r| r.offset), Some(10));
    assert!(got.iter().all(|r| r.timestamp >= middle));

    // Offset 5 is inside the first batch: records 0..5 are skipped.
    consumer
        .seek("seek", 0, SeekTo::Offset(5))
        .await
        .expect("seek offset");
    let got = consume(&mut consumer, 15).await;
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (5..20).collect::<Vec<_>>());
    assert_eq!(got[0].value, 5u32.to_le_bytes());

    consumer
        .seek("seek", 0, SeekTo::Earliest)
        .await
        .expect("seek earliest");
    assert_eq!(consumer.position("seek", 0), Some(0));
    let got = consume(&mut consumer, 20).await;
    assert_eq!(got.len(), 20);
    assert_eq!(got[0].offset, 0);

    consumer
        .seek("seek", 0, SeekTo::Latest)
        .await
        .expect("seek latest");
    assert_eq!(consumer.position("seek", 0), Some(20));
    let none = consumer
        .poll(Duration::from_millis(200))
        .await
        .expect("poll");
    assert!(none.is_empty());
    send_batch(&producer, 20, 1).await;
    let got = consume(&mut consumer, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, 20);
    assert_eq!(got[0].value, 20u32.to_le_bytes());
    producer.close().await.expect("close");
    broker.shutdown().await;
}

/// A position past the log end makes poll fail with OffsetOutOfRange without moving it; a seek recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_beyond_log_end_is_an_error_and_position_stays() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "seek", 1).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    send_batch(&producer, 0, 3).await;
    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("seek".to_owned(), 0)]);
    consumer
        .seek("seek", 0, SeekTo::Offset(1_000))
        .await
        .expect("seek");
    let err = consumer
        .poll(Duration::from_secs(5))
        .await
        .expect_err("out of range");
    assert_eq!(err.code(), Some(ErrorCode::OffsetOutOfRange), "{err:?}");
    assert_eq!(consumer.position("seek", 0), Some(1_000));
    // Recovering by seeking works.
    consumer
        .seek("seek", 0, SeekTo::Earliest)
        .await
        .expect("seek");
    let records = consumer.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(to_owned(&records).len(), 3);
    producer.close().await.expect("close");
    broker.shutdown().await;
}
