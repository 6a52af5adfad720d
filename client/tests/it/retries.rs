//! Retries keep order: records sent while the broker is down are retried
//! with backoff, reach the broker once it is back on the same address, and
//! land after the earlier ones, in send order.

use std::time::Duration;

use rill_broker::{Broker, BrokerConfig};
use rill_client::{Consumer, Producer, ProducerConfig};

use crate::common::{consume, consumer_config, create_topic, start_broker};

/// Records sent while the broker is down are retried and land after the earlier ones, in send order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_during_a_broker_restart_are_retried_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path()).await;
    let listen = broker.local_addr();
    let addr = listen.to_string();
    create_topic(&addr, "retry", 1).await;
    let producer = Producer::new(ProducerConfig {
        linger: Duration::from_millis(1),
        retries: 100,
        retry_backoff: Duration::from_millis(30),
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let mut before = Vec::new();
    for i in 0u32..100 {
        before.push(
            producer
                .send("retry", Some(b"k"), &i.to_le_bytes(), &[])
                .await
                .expect("send"),
        );
    }
    for d in before {
        d.await.expect("ack before restart");
    }

    broker.shutdown().await;
    let mut during = Vec::new();
    for i in 100u32..200 {
        during.push(
            producer
                .send("retry", Some(b"k"), &i.to_le_bytes(), &[])
                .await
                .expect("buffered"),
        );
    }
    // Let a few attempts fail against the closed port.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let broker = Broker::start(BrokerConfig {
        listen,
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .await
    .expect("broker restarts on the same address");

    for (i, d) in (100u64..).zip(during) {
        let meta = d.await.expect("retried until acknowledged");
        assert_eq!(meta.offset, Some(i), "offsets follow send order");
    }
    producer.close().await.expect("close");

    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("retry".to_owned(), 0)]);
    let records = consume(&mut consumer, 200).await;
    let values: Vec<u32> = records
        .iter()
        .map(|r| u32::from_le_bytes(r.value.as_slice().try_into().expect("4 bytes")))
        .collect();
    assert_eq!(
        values,
        (0..200).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    broker.shutdown().await;
}
