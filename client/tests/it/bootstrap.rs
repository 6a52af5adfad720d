//! A bootstrap list (Kafka's `bootstrap.servers`): clients connect to the
//! first listed broker that answers, and move on to another when theirs
//! goes away.

use rill_client::{Acks, Admin, AdminConfig, ClientError, Consumer, Producer, ProducerConfig};

use crate::common::{broker, consume, consumer_config, create_topic};

/// An address nothing listens on: a port the kernel handed out and that
/// was closed again (connecting is refused at once).
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    addr
}

/// A dead first address is skipped by every client kind: the admin creates
/// a topic, the producer writes to it and the consumer reads it back.
#[tokio::test]
async fn bootstrap_list_skips_a_broker_that_is_down() {
    let (_dir, handle, live) = broker().await;
    let bootstrap = format!("{}, {live},", dead_addr().await);
    let admin = Admin::connect(AdminConfig::new(&bootstrap))
        .await
        .expect("admin connects through the list");
    admin
        .create_topic("orders", 1, &[])
        .await
        .expect("create topic");
    assert_eq!(admin.list_topics().await.expect("list"), vec!["orders"]);

    let mut config = ProducerConfig::new(&bootstrap);
    config.acks = Acks::All;
    let producer = Producer::new(config).await.expect("producer connects");
    let meta = producer
        .send("orders", Some(b"alice"), b"o-1", &[])
        .await
        .expect("send")
        .await
        .expect("acknowledged");
    assert_eq!(meta.offset, Some(0));
    producer.close().await.expect("close");

    let mut consumer = Consumer::new(consumer_config(&bootstrap))
        .await
        .expect("consumer connects");
    consumer.assign(vec![("orders".to_owned(), 0)]);
    let got = consume(&mut consumer, 1).await;
    assert_eq!(got[0].value, b"o-1");
    handle.shutdown().await;
}

/// When the broker a client is connected to stops, its next requests go
/// to the next listed broker (here a separate broker with its own topics,
/// which shows which one answered).
#[tokio::test]
async fn bootstrap_list_moves_to_the_next_broker_when_one_stops() {
    let (_dir_a, a, addr_a) = broker().await;
    let (_dir_b, b, addr_b) = broker().await;
    create_topic(&addr_a, "on-a", 1).await;
    create_topic(&addr_b, "on-b", 1).await;
    let admin = Admin::connect(AdminConfig::new(format!("{addr_a},{addr_b}")))
        .await
        .expect("admin");
    assert_eq!(admin.list_topics().await.expect("list on a"), vec!["on-a"]);

    a.shutdown().await;
    // The request in flight when the connection drops may fail; the one
    // after it reconnects, and only b is up.
    let first = admin.list_topics().await;
    let topics = match first {
        Ok(topics) => topics,
        Err(e) => {
            assert!(e.is_retriable(), "{e}");
            admin.list_topics().await.expect("list after reconnecting")
        }
    };
    assert_eq!(topics, vec!["on-b"]);
    b.shutdown().await;
}

/// With every listed broker down, connecting fails with a connect error.
#[tokio::test]
async fn bootstrap_list_of_dead_brokers_fails_to_connect() {
    let bootstrap = format!("{},{}", dead_addr().await, dead_addr().await);
    let err = Admin::connect(AdminConfig::new(bootstrap))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    let err = Admin::connect(AdminConfig::new(" , "))
        .await
        .expect_err("no address");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}
