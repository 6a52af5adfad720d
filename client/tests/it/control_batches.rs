//! Control batches (the replication layer's own entries) take an offset in
//! a partition but are never handed to the application: the consumer skips
//! them and moves its position past them.

use rill_client::Producer;
use rill_client::ProducerConfig;
use rill_protocol::BatchBuilder;
use rill_storage::io::{open_backend, IoBackendChoice};
use rill_storage::{Durability, LogConfig, PartitionLog};

use crate::common::{consume, consumer_config, create_topic, start_broker};

async fn produce_one(addr: &str, value: &[u8]) {
    let producer = Producer::new(ProducerConfig::new(addr))
        .await
        .expect("producer");
    producer
        .send("ledger", None, value, &[])
        .await
        .expect("buffered")
        .await
        .expect("acknowledged");
    producer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_skips_control_batches_and_moves_past_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "ledger", 1).await;
    produce_one(&addr, b"before").await;
    broker.shutdown().await;

    // Between two data batches, a control batch appended to the real
    // partition directory, as the replication layer will write one.
    {
        let backend = open_backend(IoBackendChoice::Std).expect("std backend");
        let log = PartitionLog::open(&dir.path().join("ledger-0"), LogConfig::default(), backend)
            .expect("open the partition log");
        let control = BatchBuilder::control(1_700_000_000_000, br#"{"blank":null}"#)
            .expect("control batch builds");
        let info = log
            .append(control, Durability::Synced)
            .await
            .expect("control batch appended");
        assert_eq!(info.base_offset, 1);
        log.close().await.expect("close");
    }

    let broker = start_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    produce_one(&addr, b"after").await;
    let mut consumer = rill_client::Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("ledger".to_owned(), 0)]);
    let got = consume(&mut consumer, 2).await;
    let seen: Vec<(u64, &[u8])> = got.iter().map(|r| (r.offset, &r.value[..])).collect();
    assert_eq!(seen, vec![(0, &b"before"[..]), (2, &b"after"[..])]);
    assert_eq!(
        consumer.position("ledger", 0),
        Some(3),
        "the position passed the control batch"
    );
    broker.shutdown().await;
}
