//! Admin calls against a real broker: create, list, describe, list
//! offsets, delete, and the errors for duplicates and unknown topics.

use rill_client::{Admin, AdminConfig, OffsetSpec, Producer, ProducerConfig};
use rill_protocol::wire::ErrorCode;

use crate::common::broker;

/// Create (with a config override), duplicate, list, describe, produce, list offsets and delete, each checked against the broker's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_lifecycle_and_offsets() {
    let (_dir, broker, addr) = broker().await;
    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    admin
        .create_topic("alpha", 3, &[("retention.ms", "60000")])
        .await
        .expect("create alpha");
    admin
        .create_topic("beta", 1, &[])
        .await
        .expect("create beta");

    let dup = admin
        .create_topic("alpha", 3, &[])
        .await
        .expect_err("duplicate");
    assert_eq!(dup.code(), Some(ErrorCode::TopicAlreadyExists), "{dup:?}");
    assert!(!dup.is_retriable());

    assert_eq!(
        admin.list_topics().await.expect("list"),
        vec!["alpha", "beta"]
    );
    let described = admin.describe_topic("alpha").await.expect("describe");
    assert_eq!(described.partitions.len(), 3);
    assert!(described
        .partitions
        .iter()
        .all(|p| p.log_start_offset == 0 && p.log_end_offset == 0));

    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0u32..5 {
        deliveries.push(
            producer
                .send("beta", None, &i.to_le_bytes(), &[])
                .await
                .expect("send"),
        );
    }
    for d in deliveries {
        d.await.expect("ack");
    }
    producer.close().await.expect("close");

    let latest = admin
        .list_offsets("beta", &[0], OffsetSpec::Latest)
        .await
        .expect("latest");
    assert_eq!(latest[0].offset, 5);
    let earliest = admin
        .list_offsets("beta", &[0], OffsetSpec::Earliest)
        .await
        .expect("earliest");
    assert_eq!(earliest[0].offset, 0);
    let described = admin.describe_topic("beta").await.expect("describe");
    assert_eq!(described.partitions[0].log_end_offset, 5);

    admin.delete_topic("alpha").await.expect("delete");
    assert_eq!(admin.list_topics().await.expect("list"), vec!["beta"]);
    let gone = admin.describe_topic("alpha").await.expect_err("deleted");
    assert!(
        gone.code() == Some(ErrorCode::UnknownTopicOrPartition)
            || matches!(gone, rill_client::ClientError::UnknownTopic(_)),
        "{gone:?}"
    );
    broker.shutdown().await;
}

/// acks=none deliveries resolve with no offset, yet the broker's log end reaches the count sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_resolves_without_offsets_and_the_records_arrive() {
    let (_dir, broker, addr) = broker().await;
    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    admin.create_topic("fire", 1, &[]).await.expect("create");
    let producer = Producer::new(ProducerConfig {
        acks: rill_client::Acks::None,
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0u32..100 {
        deliveries.push(
            producer
                .send("fire", None, &i.to_le_bytes(), &[])
                .await
                .expect("send"),
        );
    }
    for d in deliveries {
        assert_eq!(d.await.expect("written").offset, None);
    }
    producer.close().await.expect("close");
    // The broker got them although nobody was told: wait for the log end.
    let deadline = tokio::time::Instant::now() + crate::common::CONSUME_DEADLINE;
    loop {
        let end = admin
            .list_offsets("fire", &[0], OffsetSpec::Latest)
            .await
            .expect("latest");
        if end[0].offset == 100 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "end offset {}",
            end[0].offset
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    broker.shutdown().await;
}

/// A send to a topic the broker does not know fails with its error after the configured metadata retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producing_to_a_missing_topic_fails_after_retries() {
    let (_dir, broker, addr) = broker().await;
    let producer = Producer::new(ProducerConfig {
        retries: 2,
        retry_backoff: std::time::Duration::from_millis(10),
        ..ProducerConfig::new(&addr)
    })
    .await
    .expect("producer");
    let err = producer
        .send("nope", None, b"x", &[])
        .await
        .expect_err("no such topic");
    assert!(
        err.code() == Some(ErrorCode::UnknownTopicOrPartition)
            || matches!(err, rill_client::ClientError::UnknownTopic(_)),
        "{err:?}"
    );
    producer.close().await.expect("close");
    broker.shutdown().await;
}
