//! Leader routing: clients send each partition's Produce and Fetch to the
//! partition's leader at the address Metadata names for it (the broker's
//! `advertised_addr`, Kafka's `advertised.listeners`), not to the
//! bootstrap broker that answered first, and follow the leader when it
//! moves.
//!
//! A test-owned TCP forwarder stands at the advertised address and pipes
//! bytes to the real broker, counting connections and bytes each way, so
//! the tests see where the traffic went. Moving the leader: the forwarder
//! stops (closes its connections, accepts no more), the broker restarts on
//! the same data as another node id advertising a second forwarder, and
//! the producer must refresh its metadata and deliver everything exactly
//! once, in order per partition.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{
    Admin, AdminConfig, Consumer, DeliveryFuture, OffsetSpec, Producer, ProducerConfig, SeekTo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::common::{consume, consumer_config, create_topic, Owned};

/// Bytes and connections a forwarder carried.
#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    /// Client to broker.
    up: AtomicU64,
    /// Broker to client.
    down: AtomicU64,
}

/// Pipes every connection it accepts to `upstream`, both ways, counting.
struct Forwarder {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Binds first, so the broker can advertise the address before the
    /// forwarder knows where the broker listens.
    async fn bind() -> TcpListener {
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forwarder")
    }

    fn start(listener: TcpListener, upstream: SocketAddr) -> Forwarder {
        let addr = listener.local_addr().expect("forwarder address");
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = watch::channel(false);
        let counted = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            let mut relays = JoinSet::new();
            let mut stopping = stopped.clone();
            loop {
                tokio::select! {
                    _ = stopping.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { break };
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            continue;
                        };
                        counted.connections.fetch_add(1, Ordering::Relaxed);
                        relays.spawn(relay(client, server, Arc::clone(&counted), stopped.clone()));
                    }
                }
            }
            // No more accepts: the listener closes here, and every relay
            // ends on the stop signal.
            drop(listener);
            while relays.join_next().await.is_some() {}
        });
        Forwarder {
            addr,
            counts,
            stop,
            task,
        }
    }

    fn up(&self) -> u64 {
        self.counts.up.load(Ordering::Relaxed)
    }

    fn down(&self) -> u64 {
        self.counts.down.load(Ordering::Relaxed)
    }

    fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::Relaxed)
    }

    /// Closes every connection and the listener; returns once all are
    /// closed.
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("forwarder task");
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    if *stop.borrow() {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = pipe(&mut client_read, &mut server_write, &counts.up);
    let down = pipe(&mut server_read, &mut client_write, &counts.down);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = stop.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

async fn pipe(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn start_broker(
    data_dir: &Path,
    listen: SocketAddr,
    node_id: u32,
    advertised: SocketAddr,
) -> BrokerHandle {
    Broker::start(BrokerConfig {
        listen,
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.to_path_buf(),
        node_id,
        advertised_addr: Some(advertised.to_string()),
        ..BrokerConfig::default()
    })
    .await
    .expect("broker starts")
}

const VALUE_BYTES: usize = 1024;

fn value_of(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.resize(VALUE_BYTES, (id % 251) as u8);
    v
}

fn id_of(r: &Owned) -> u64 {
    u64::from_le_bytes(r.value[..8].try_into().expect("an id"))
}

/// The bootstrap broker only answers Metadata (and InitProducerId); every
/// record goes up, and comes back down, through the address Metadata names
/// as the partitions' leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_go_to_the_leader_metadata_names() {
    const RECORDS: u64 = 300;
    let payload = RECORDS * VALUE_BYTES as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let advertised = Forwarder::bind().await;
    let broker = start_broker(
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
        7,
        advertised.local_addr().expect("addr"),
    )
    .await;
    let leader = Forwarder::start(advertised, broker.local_addr());
    // The clients' bootstrap address: a second forwarder the broker does
    // not advertise, to count what the bootstrap connection carries.
    let bootstrap = Forwarder::start(Forwarder::bind().await, broker.local_addr());
    let bootstrap_addr = bootstrap.addr.to_string();
    create_topic(&broker.local_addr().to_string(), "routed", 2).await;

    let producer = Producer::new(ProducerConfig::new(&bootstrap_addr))
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for id in 0..RECORDS {
        let key = format!("k{}", id % 4);
        deliveries.push(
            producer
                .send("routed", Some(key.as_bytes()), &value_of(id), &[])
                .await
                .expect("buffered"),
        );
    }
    for d in deliveries {
        d.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
    assert!(
        leader.up() >= payload,
        "the records went to the leader's address: {} bytes up, {payload} produced",
        leader.up()
    );
    assert!(
        bootstrap.up() < payload / 10,
        "the bootstrap broker carried no records: {} bytes up",
        bootstrap.up()
    );

    let down_before = leader.down();
    let bootstrap_down_before = bootstrap.down();
    let mut consumer = Consumer::new(consumer_config(&bootstrap_addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("routed".to_owned(), 0), ("routed".to_owned(), 1)]);
    let got = consume(&mut consumer, RECORDS as usize).await;
    assert_eq!(got.len() as u64, RECORDS);
    assert!(
        leader.down() - down_before >= payload,
        "the records came back from the leader's address: {} bytes down",
        leader.down() - down_before
    );
    assert!(
        bootstrap.down() - bootstrap_down_before < payload / 10,
        "the bootstrap broker served no records: {} bytes down",
        bootstrap.down() - bootstrap_down_before
    );

    // ListOffsets (a seek) goes to the leader too.
    let leader_up = leader.up();
    consumer
        .seek("routed", 0, SeekTo::Latest)
        .await
        .expect("seek to the end");
    assert!(leader.up() > leader_up, "the seek asked the leader");
    let admin = Admin::connect(AdminConfig::new(&bootstrap_addr))
        .await
        .expect("admin");
    let ends = admin
        .list_offsets("routed", &[0, 1], OffsetSpec::Latest)
        .await
        .expect("list offsets at the leader");
    assert_eq!(ends.iter().map(|o| o.offset).sum::<u64>(), RECORDS);
    assert!(
        leader.connections() >= 2,
        "producer and consumer connected to the leader"
    );
    drop(consumer);
    leader.stop().await;
    bootstrap.stop().await;
    broker.shutdown().await;
}

/// Sends `count` keyed records from `first`, handing each delivery to
/// `out` as soon as it is buffered.
async fn send_range(
    producer: &Producer,
    first: u64,
    count: u64,
    out: &mpsc::UnboundedSender<(u64, DeliveryFuture)>,
) {
    for id in first..first + count {
        let key = format!("k{}", id % 6);
        let d = producer
            .send("moving", Some(key.as_bytes()), &value_of(id), &[])
            .await
            .expect("buffered");
        out.send((id, d)).expect("collector alive");
    }
}

/// The leader moves mid-run: its address stops answering (connections
/// closed, nothing accepted), and the partitions come back under another
/// node id at another address. The idempotent producer refreshes its
/// metadata, resends what was unanswered to the new leader with the same
/// sequences, and every record is in the log exactly once, in send order
/// per key, offsets dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_follows_a_moving_leader_exactly_once_in_order() {
    const BEFORE: u64 = 2_000;
    const DURING: u64 = 1_000;
    const AFTER: u64 = 1_000;
    const PARTITIONS: u32 = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let first_listener = Forwarder::bind().await;
    let broker = start_broker(
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
        1,
        first_listener.local_addr().expect("addr"),
    )
    .await;
    let listen = broker.local_addr();
    let direct = listen.to_string();
    let first = Forwarder::start(first_listener, listen);
    create_topic(&direct, "moving", PARTITIONS).await;

    let producer = Arc::new(
        Producer::new(ProducerConfig {
            batch_size: 16 * 1024,
            retry_backoff: Duration::from_millis(20),
            retry_backoff_max: Duration::from_millis(200),
            ..ProducerConfig::new(&direct)
        })
        .await
        .expect("producer"),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, DeliveryFuture)>();
    let collector = tokio::spawn(async move {
        let mut acked = HashMap::new();
        while let Some((id, d)) = rx.recv().await {
            let meta = d.await.expect("every record delivered across the move");
            acked.insert(id, (meta.partition, meta.offset.expect("an offset")));
        }
        acked
    });

    // Records in flight to the first leader when it goes away: the first
    // BEFORE are buffered, and the move starts once some are acknowledged.
    send_range(&producer, 0, BEFORE, &tx).await;
    let (first_acked_tx, first_acked) = tokio::sync::oneshot::channel();
    producer
        .send_with_callback("moving", Some(b"probe"), &value_of(BEFORE), &[], move |r| {
            let _ = first_acked_tx.send(r.map(|m| (m.partition, m.offset)));
        })
        .await
        .expect("buffered");
    let probe = first_acked
        .await
        .expect("probe answered")
        .expect("probe acknowledged");

    // The move: the old address closes everything and accepts nothing, the
    // broker restarts (same data, same listen address) as node 2,
    // advertising a new address. Records keep coming meanwhile.
    let sender = {
        let producer = Arc::clone(&producer);
        let tx = tx.clone();
        tokio::spawn(async move { send_range(&producer, BEFORE + 1, DURING, &tx).await })
    };
    first.stop().await;
    broker.shutdown().await;
    let second_listener = Forwarder::bind().await;
    let broker = start_broker(
        dir.path(),
        listen,
        2,
        second_listener.local_addr().expect("addr"),
    )
    .await;
    let second = Forwarder::start(second_listener, listen);
    sender.await.expect("sender task");
    send_range(&producer, BEFORE + 1 + DURING, AFTER, &tx).await;
    drop(tx);
    let mut acked = collector.await.expect("collector");
    acked.insert(BEFORE, (probe.0, probe.1.expect("an offset")));
    producer.flush().await.expect("flush");
    let stats = producer.stats();
    let total = BEFORE + 1 + DURING + AFTER;
    assert_eq!(acked.len() as u64, total, "every record acknowledged");
    assert!(
        second.up() >= AFTER * VALUE_BYTES as u64,
        "records after the move went to the new leader's address: {} bytes",
        second.up()
    );
    assert!(
        stats.metadata_refreshes >= 2,
        "the producer refreshed its metadata after the move: {stats:?}"
    );
    assert!(
        stats.batches_resent >= 1,
        "batches sent to the old leader were resent to the new one: {stats:?}"
    );
    assert_eq!(stats.batches_failed, 0, "{stats:?}");

    // Read back through the new leader: each record once, at the offset
    // its acknowledgement gave, offsets dense, send order per key.
    let mut consumer = Consumer::new(consumer_config(&direct))
        .await
        .expect("consumer");
    consumer.assign((0..PARTITIONS).map(|p| ("moving".to_owned(), p)).collect());
    let got = consume(&mut consumer, total as usize).await;
    assert_eq!(got.len() as u64, total, "every record once, none twice");
    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    let mut last_by_key: HashMap<Vec<u8>, u64> = HashMap::new();
    for r in &got {
        let id = id_of(r);
        assert_eq!(
            acked.get(&id),
            Some(&(r.partition, r.offset)),
            "record {id}'s acknowledged offset"
        );
        let expected = next_offset.entry(r.partition).or_insert(0);
        assert_eq!(
            r.offset, *expected,
            "offsets dense in partition {}",
            r.partition
        );
        *expected += 1;
        let key = r.key.clone().expect("keyed");
        if let Some(previous) = last_by_key.insert(key, id) {
            assert!(previous < id, "send order per key: {previous} before {id}");
        }
    }
    drop(consumer);
    match Arc::try_unwrap(producer) {
        Ok(producer) => producer.close().await.expect("close"),
        Err(_) => panic!("producer still shared"),
    }
    second.stop().await;
    broker.shutdown().await;
}

/// A consumer reading through the leader's address keeps reading when the
/// leader moves: its polls report no error while the old address is gone,
/// it finds the new leader, and it reads every record once, in order,
/// from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_follows_a_moving_leader_without_errors() {
    const HALF: u64 = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let first_listener = Forwarder::bind().await;
    let broker = start_broker(
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
        1,
        first_listener.local_addr().expect("addr"),
    )
    .await;
    let listen = broker.local_addr();
    let direct = listen.to_string();
    let first = Forwarder::start(first_listener, listen);
    create_topic(&direct, "read-moving", 1).await;
    let produce = |from: u64| {
        let direct = direct.clone();
        async move {
            let producer = Producer::new(ProducerConfig::new(&direct))
                .await
                .expect("producer");
            let mut deliveries = Vec::new();
            for id in from..from + HALF {
                deliveries.push(
                    producer
                        .send_to_partition("read-moving", 0, None, &value_of(id), &[])
                        .await
                        .expect("buffered"),
                );
            }
            for d in deliveries {
                d.await.expect("acknowledged");
            }
            producer.close().await.expect("close");
        }
    };
    produce(0).await;
    let mut consumer = Consumer::new(consumer_config(&direct))
        .await
        .expect("consumer");
    consumer.assign(vec![("read-moving".to_owned(), 0)]);
    let mut got = consume(&mut consumer, HALF as usize).await;
    assert_eq!(got.len() as u64, HALF);
    assert!(
        first.down() >= HALF * VALUE_BYTES as u64,
        "read through the first leader"
    );

    first.stop().await;
    broker.shutdown().await;
    // Polls while no leader answers: empty, not an error.
    let empty = consumer
        .poll(Duration::from_millis(300))
        .await
        .expect("a poll without a reachable leader is not an error");
    assert!(empty.is_empty());
    let second_listener = Forwarder::bind().await;
    let broker = start_broker(
        dir.path(),
        listen,
        2,
        second_listener.local_addr().expect("addr"),
    )
    .await;
    let second = Forwarder::start(second_listener, listen);
    produce(HALF).await;
    got.extend(consume(&mut consumer, HALF as usize).await);
    let ids: Vec<u64> = got.iter().map(id_of).collect();
    assert_eq!(
        ids,
        (0..2 * HALF).collect::<Vec<_>>(),
        "each record once, in order"
    );
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..2 * HALF).collect::<Vec<_>>());
    assert!(
        second.down() >= HALF * VALUE_BYTES as u64,
        "the second half came from the new leader's address: {} bytes",
        second.down()
    );
    drop(consumer);
    second.stop().await;
    broker.shutdown().await;
}
