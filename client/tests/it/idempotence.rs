//! The idempotent producer end to end, against a real broker: a TCP proxy
//! between them drops the connection after requests reached the broker but
//! before their answers came back, again and again, with several batches
//! outstanding; the producer resends them in order and the log holds each
//! record once, offsets dense, in send order. A second session of the same
//! producer id fences the first, and a producer id the broker forgot
//! (expired) makes the producer bump its epoch and go on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig};
use rill_client::{
    Acks, ClientError, Connection, ConnectionConfig, Consumer, Producer, ProducerConfig,
};
use rill_protocol::wire::{
    Acks as WireAcks, ErrorCode, InitProducerIdRequest, ProducePartition, ProduceRequest,
    ProduceTopic,
};
use rill_protocol::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{consume, consumer_config, create_topic, start_broker, Owned};

/// Connections the proxy cuts before it lets the rest through.
const CUTS: u64 = 25;
/// Enough requests that the proxy finds all its cuts: each cut also makes
/// the producer refresh its metadata on the new connection, and that
/// answer uses up some of the connection's chances to be cut.
const RECORDS: u64 = 10_000;
/// Small batches, so many requests are in flight when a cut comes.
const BATCH_BYTES: usize = 4 * 1024;
const FRAME_PREFIX: usize = 4;

/// Forwards client connections to `upstream`. While it has cuts left, it
/// closes a connection (both ways) right after forwarding an answer, once at
/// least two more requests have reached the broker than answers have come
/// back: those requests were written to the broker, their answers are lost.
struct CuttingProxy {
    addr: SocketAddr,
    cuts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CuttingProxy {
    /// Relays what `listener` accepts to `upstream`. The broker advertises
    /// the proxy's address, so the client's leader connections, not only
    /// its bootstrap one, go through it.
    async fn start(listener: TcpListener, upstream: SocketAddr, cuts_max: u64) -> CuttingProxy {
        let addr = listener.local_addr().expect("proxy address");
        let cuts = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&cuts);
        let task = tokio::spawn(async move {
            let mut connection = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                connection += 1;
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                // Answers let through before this connection may be cut:
                // 1..=4, varied per connection.
                let after = 1 + connection % 4;
                tokio::spawn(relay(client, server, Arc::clone(&counted), cuts_max, after));
            }
        });
        CuttingProxy { addr, cuts, task }
    }

    fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    cuts: Arc<AtomicU64>,
    cuts_max: u64,
    answers_before_cut: u64,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&requests);
    // Client to broker: bytes as they come, counting whole request frames.
    let upward = tokio::spawn(async move {
        let mut frames = FrameCounter::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
            seen.fetch_add(frames.feed(&buf[..n]), Ordering::Relaxed);
        }
    });
    // Broker to client: whole answers, one at a time, so a cut falls
    // between two of them.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut answers = 0u64;
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(len) = whole_frame(&pending) {
            let frame: Vec<u8> = pending.drain(..len).collect();
            if client_write.write_all(&frame).await.is_err() {
                upward.abort();
                return;
            }
            answers += 1;
            let outstanding = requests.load(Ordering::Relaxed).saturating_sub(answers);
            if answers >= answers_before_cut
                && outstanding >= 2
                && cuts
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        (c < cuts_max).then_some(c + 1)
                    })
                    .is_ok()
            {
                upward.abort();
                return;
            }
        }
    }
    upward.abort();
}

/// The length of the whole frame at the front of `bytes`, if it is there.
fn whole_frame(bytes: &[u8]) -> Option<usize> {
    let prefix: [u8; FRAME_PREFIX] = bytes.get(..FRAME_PREFIX)?.try_into().ok()?;
    let len = FRAME_PREFIX + u32::from_le_bytes(prefix) as usize;
    (bytes.len() >= len).then_some(len)
}

/// Counts frames in a byte stream fed in arbitrary pieces.
#[derive(Default)]
struct FrameCounter {
    prefix: Vec<u8>,
    remaining: usize,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut frames = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    frames += 1;
                }
                continue;
            }
            let take = (FRAME_PREFIX - self.prefix.len()).min(bytes.len());
            self.prefix.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.prefix.len() == FRAME_PREFIX {
                let prefix: [u8; FRAME_PREFIX] = self.prefix[..].try_into().expect("four bytes");
                self.remaining = u32::from_le_bytes(prefix) as usize;
                self.prefix.clear();
                if self.remaining == 0 {
                    frames += 1;
                }
            }
        }
        frames
    }
}

fn id_value(id: u64) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.resize(100, (id % 251) as u8);
    v
}

fn id_of(r: &Owned) -> u64 {
    u64::from_le_bytes(r.value[..8].try_into().expect("an id"))
}

/// Sends `RECORDS` records through a cutting proxy and checks that each is
/// in the log once, in send order per key, every acknowledgement giving the
/// offset it really has.
async fn resends_through_cuts(partitions: u32, acks: Acks) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let broker = Broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        advertised_addr: Some(listener.local_addr().expect("proxy address").to_string()),
        ..BrokerConfig::default()
    })
    .await
    .expect("broker");
    let direct = broker.local_addr().to_string();
    create_topic(&direct, "cut", partitions).await;
    let proxy = CuttingProxy::start(listener, broker.local_addr(), CUTS).await;
    let producer = Producer::new(ProducerConfig {
        acks,
        batch_size: BATCH_BYTES,
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(20),
        ..ProducerConfig::new(proxy.addr.to_string())
    })
    .await
    .expect("producer through the proxy");
    let keys = u64::from(partitions) * 3;
    let mut deliveries = Vec::new();
    for id in 0..RECORDS {
        let key = format!("key-{}", id % keys);
        let d = producer
            .send("cut", Some(key.as_bytes()), &id_value(id), &[])
            .await
            .expect("buffered");
        deliveries.push((id, d));
    }
    let mut acked: HashMap<u64, (u32, u64)> = HashMap::new();
    for (id, d) in deliveries {
        let meta = d.await.expect("every record delivered through the cuts");
        acked.insert(id, (meta.partition, meta.offset.expect("an offset")));
    }
    let stats = producer.stats();
    producer.close().await.expect("close");
    assert_eq!(proxy.cuts(), CUTS, "the proxy cut {CUTS} connections");
    assert!(
        stats.most_resent_at_once >= 2,
        "several outstanding batches resent at once: {stats:?}"
    );
    assert!(
        stats.duplicates_suppressed >= 1,
        "the broker suppressed duplicates: {stats:?}"
    );

    let mut consumer = Consumer::new(consumer_config(&direct))
        .await
        .expect("consumer");
    consumer.assign((0..partitions).map(|p| ("cut".to_owned(), p)).collect());
    let got = consume(&mut consumer, RECORDS as usize).await;
    assert_eq!(got.len() as u64, RECORDS, "every record once, none twice");
    let mut last_by_key: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    for r in &got {
        let id = id_of(r);
        assert_eq!(
            acked.get(&id),
            Some(&(r.partition, r.offset)),
            "record {id}'s acknowledged offset"
        );
        let expected = next_offset.entry(r.partition).or_insert(0);
        assert_eq!(r.offset, *expected, "offsets dense");
        *expected += 1;
        let key = r.key.clone().expect("keyed");
        if let Some(previous) = last_by_key.insert(key, id) {
            assert!(previous < id, "per-key order kept: {previous} before {id}");
        }
    }
    // A second look after the producer is gone: nothing more arrived.
    let end: u64 = next_offset.values().sum();
    assert_eq!(end, RECORDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_one_partition_keeps_send_order_through_cut_connections() {
    resends_through_cuts(1, Acks::Leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_keyed_partitions_hold_each_record_once_through_cut_connections() {
    resends_through_cuts(3, Acks::All).await;
}

/// A raw session of the same producer id at the next epoch writes to the
/// partition: the producer is fenced, its records fail clearly, and so do
/// later sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_second_session_of_a_producer_id_fences_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "fence", 1).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    producer
        .send("fence", None, b"first", &[])
        .await
        .expect("buffered")
        .await
        .expect("delivered");
    let (pid, epoch) = producer.producer_id_and_epoch().expect("idempotent");

    let conn = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect("connect");
    let bumped = conn
        .init_producer_id(InitProducerIdRequest {
            producer_id: pid,
            producer_epoch: epoch,
        })
        .await
        .expect("bump");
    assert_eq!(
        (bumped.error, bumped.producer_id, bumped.producer_epoch),
        (ErrorCode::None, pid, epoch + 1)
    );
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch + 1, 0);
    b.push(0, None, b"newer session", &[]);
    let response = conn
        .produce(ProduceRequest {
            acks: WireAcks::All,
            timeout_ms: 5_000,
            topics: vec![ProduceTopic {
                name: "fence".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: b.finish_into_mut().expect("batch"),
                }],
            }],
        })
        .await
        .expect("produce");
    assert_eq!(response.topics[0].partitions[0].error, ErrorCode::None);

    let fenced = producer
        .send("fence", None, b"stale", &[])
        .await
        .expect("buffered")
        .await
        .expect_err("fenced");
    assert!(
        matches!(fenced, ClientError::ProducerFenced { producer_id, .. } if producer_id == pid),
        "{fenced}"
    );
    let later = producer.send("fence", None, b"later", &[]).await;
    assert!(
        matches!(later, Err(ClientError::ProducerFenced { .. })),
        "{later:?}"
    );
}

/// The broker forgets an idle producer id: the next batch gets
/// `UnknownProducerId`, the producer bumps its epoch and the batch is
/// written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_forgotten_producer_id_bumps_the_epoch_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expiration = Duration::from_millis(300);
    let broker = Broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        producer_id_expiration_ms: expiration.as_millis() as u64,
        ..BrokerConfig::default()
    })
    .await
    .expect("broker");
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "idle", 1).await;
    let producer = Producer::new(ProducerConfig::new(&addr))
        .await
        .expect("producer");
    let send = |value: &'static [u8]| producer.send_to_partition("idle", 0, None, value, &[]);
    assert_eq!(
        send(b"a").await.expect("buffered").await.expect("a").offset,
        Some(0)
    );
    let (_, epoch) = producer.producer_id_and_epoch().expect("idempotent");
    // The broker's clock must pass the expiration: there is no event to
    // wait for but time itself.
    tokio::time::sleep(expiration + Duration::from_millis(200)).await;
    assert_eq!(
        send(b"b").await.expect("buffered").await.expect("b").offset,
        Some(1)
    );
    assert_eq!(
        send(b"c").await.expect("buffered").await.expect("c").offset,
        Some(2)
    );
    let stats = producer.stats();
    assert_eq!(stats.epoch_bumps, 1, "{stats:?}");
    assert_eq!(
        producer.producer_id_and_epoch().map(|(_, e)| e),
        Some(epoch + 1)
    );
    let mut consumer = Consumer::new(consumer_config(&addr))
        .await
        .expect("consumer");
    consumer.assign(vec![("idle".to_owned(), 0)]);
    let got = consume(&mut consumer, 3).await;
    let values: Vec<&[u8]> = got.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, [&b"a"[..], b"b", b"c"], "each once, in order");
}
