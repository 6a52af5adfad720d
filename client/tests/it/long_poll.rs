//! Long-poll: a consumer waiting at the log end gets a new record soon after
//! it is produced, not when its fetch wait runs out.

use std::time::{Duration, Instant};

use rill_client::{Acks, Consumer, ConsumerConfig, Producer, ProducerConfig, SeekTo};

use crate::common::{broker, create_topic, to_owned};

/// A poll long-polling with a 10 s wait returns the record produced 300 ms in, well before the wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_returns_soon_after_a_produce() {
    let (_dir, broker, addr) = broker().await;
    create_topic(&addr, "lp", 1).await;
    let fetch_max_wait = Duration::from_secs(10);
    let mut consumer = Consumer::new(ConsumerConfig {
        fetch_max_wait,
        ..ConsumerConfig::new(&addr)
    })
    .await
    .expect("consumer");
    consumer.assign(vec![("lp".to_owned(), 0)]);
    consumer.seek("lp", 0, SeekTo::Latest).await.expect("seek");

    let producer_addr = addr.clone();
    let delay = Duration::from_millis(300);
    let produced = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let producer = Producer::new(ProducerConfig {
            acks: Acks::Leader,
            ..ProducerConfig::new(&producer_addr)
        })
        .await
        .expect("producer");
        let d = producer
            .send("lp", None, b"wake up", &[])
            .await
            .expect("send");
        producer.flush().await.expect("flush");
        d.await.expect("ack");
        producer.close().await.expect("close");
        Instant::now()
    });
    let started = Instant::now();
    let records = consumer.poll(fetch_max_wait).await.expect("poll");
    let returned = Instant::now();
    let got = to_owned(&records);
    assert_eq!(got.len(), 1, "the produced record, not a timeout");
    assert_eq!(got[0].value, b"wake up");
    let produced_at = produced.await.expect("producer task");
    assert!(started.elapsed() >= delay);
    assert!(
        returned.saturating_duration_since(produced_at) < Duration::from_secs(2),
        "woke {:?} after the ack while the fetch could wait {fetch_max_wait:?}",
        returned.saturating_duration_since(produced_at)
    );
    broker.shutdown().await;
}
