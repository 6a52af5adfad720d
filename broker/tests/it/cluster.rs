//! Cluster mode in one process: three real brokers (`Broker::start` with
//! `--peers`), each with its own data directory, client listener and
//! inter-broker listener on loopback, talking over real sockets. Clients
//! speak the real wire protocol to them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_protocol::wire::*;
use tempfile::TempDir;

use crate::common::{batch, batches, config, scrape, Client};

/// A sample's value, 0 when the series does not exist yet.
fn sample_or_zero(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub(crate) const IDS: [u32; 3] = [1, 2, 3];
/// Bounds every wait on the cluster (elections, catch-up).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// A free loopback port (bound and released: the kernel does not hand it
/// out again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) struct Node {
    dir: PathBuf,
    config: BrokerConfig,
    pub(crate) handle: Option<BrokerHandle>,
}

pub(crate) struct TestCluster {
    _tmp: TempDir,
    pub(crate) nodes: BTreeMap<u32, Node>,
}

impl TestCluster {
    pub(crate) async fn start() -> TestCluster {
        Self::start_with(|_| {}).await
    }

    /// [`TestCluster::start`] with each broker's config changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl Fn(&mut BrokerConfig)) -> TestCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let peers = IDS
            .iter()
            .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = BTreeMap::new();
        for id in IDS {
            let dir = tmp.path().join(format!("d{id}"));
            let mut config = config(&dir);
            config.listen = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("address");
            config.node_id = id;
            config.peers = Some(peers.clone());
            config.raft_election_timeout_ms = 1_000;
            config.raft_heartbeat_ms = 100;
            tweak(&mut config);
            nodes.insert(
                id,
                Node {
                    dir,
                    config,
                    handle: None,
                },
            );
        }
        let mut cluster = TestCluster { _tmp: tmp, nodes };
        for id in IDS {
            cluster.restart(id).await;
        }
        cluster
    }

    pub(crate) async fn restart(&mut self, id: u32) {
        let node = self.nodes.get_mut(&id).expect("node");
        assert!(node.handle.is_none(), "node {id} is running");
        node.handle = Some(
            Broker::start(node.config.clone())
                .await
                .expect("broker starts"),
        );
    }

    pub(crate) async fn stop(&mut self, id: u32) {
        let handle = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.handle.take())
            .expect("running");
        handle.shutdown().await;
    }

    pub(crate) fn addr(&self, id: u32) -> SocketAddr {
        self.nodes[&id].config.listen
    }

    pub(crate) async fn client(&self, id: u32) -> Client {
        Client::connect(self.addr(id)).await
    }

    fn running(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.handle.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) async fn shutdown(mut self) -> TempDir {
        for id in self.running() {
            self.stop(id).await;
        }
        self._tmp
    }
}

/// Broker `id`'s inter-broker listener, from its `--peers` entry.
fn peer_addr(cluster: &TestCluster, id: u32) -> SocketAddr {
    let peers = cluster.nodes[&id].config.peers.clone().expect("peers");
    peers
        .split(',')
        .find_map(|e| e.strip_prefix(&format!("{id}@")))
        .expect("own entry")
        .parse()
        .expect("address")
}

async fn metadata(client: &mut Client, topic: Option<&str>) -> MetadataResponse {
    let request = Request::Metadata(MetadataRequest {
        topics: topic.map(|t| vec![t.to_owned()]),
    });
    match client.call(request).await {
        Response::Metadata(m) => m,
        other => panic!("unexpected {other:?}"),
    }
}

/// Asks broker `id` until `check` accepts its Metadata answer: the
/// cluster's state is only observable through it (no event crosses the
/// wire), so this polls, with a short pause, up to a deadline.
pub(crate) async fn await_metadata<T>(
    cluster: &TestCluster,
    id: u32,
    topic: Option<&str>,
    what: &str,
    mut check: impl FnMut(&MetadataResponse) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
    let mut client = cluster.client(id).await;
    loop {
        let m = metadata(&mut client, topic).await;
        if let Some(found) = check(&m) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {CLUSTER_DEADLINE:?}; last answer {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader (and its epoch) of partition 0 of `topic` as broker `id`
/// sees it, once that leader is one of `candidates`.
async fn await_leader(
    cluster: &TestCluster,
    id: u32,
    topic: &str,
    candidates: &[u32],
) -> (u32, u32) {
    await_metadata(cluster, id, Some(topic), "a leader", |m| {
        let p = m.topics.first()?.partitions.first()?;
        let leader = u32::try_from(p.leader).ok()?;
        candidates
            .contains(&leader)
            .then_some((leader, p.leader_epoch))
    })
    .await
}

async fn new_producer_id(
    client: &mut Client,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    let request = Request::InitProducerId(InitProducerIdRequest {
        producer_id,
        producer_epoch,
    });
    match client.call(request).await {
        Response::InitProducerId(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

pub(crate) async fn create(
    client: &mut Client,
    topic: &str,
    partitions: u32,
    rf: u16,
) -> CreatableTopicResult {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            partitions,
            replication_factor: rf,
            configs: vec![],
        }],
        validate_only: false,
    });
    match client.call(request).await {
        Response::CreateTopics(mut r) => r.topics.pop().expect("one result"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every data record value in `topic`-0 read from `id`, in offset order
/// (control batches, the replication layer's own entries, skipped).
async fn read_all(client: &mut Client, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let p = client.fetch(topic, 0, offset, 0, 0).await;
        assert_eq!(p.error, ErrorCode::None, "fetch at {offset}");
        if p.records.is_empty() {
            assert_eq!(offset, p.high_watermark, "read to the high watermark");
            return out;
        }
        for (_, bytes) in batches(p.records) {
            let view = rill_protocol::BatchView::new(&bytes).expect("batch");
            offset = view.header().next_offset();
            if view.header().is_control() {
                continue;
            }
            for r in view.validate_full().expect("valid").archived().iter() {
                out.push(String::from_utf8_lossy(r.value()).into_owned());
            }
        }
    }
}

fn segment_file(dir: &Path, topic: &str) -> Vec<u8> {
    std::fs::read(
        dir.join(format!("{topic}-0"))
            .join("00000000000000000000.log"),
    )
    .expect("segment file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replicates_writes_survives_its_leaders_loss_and_catches_up_a_returning_broker() {
    let mut cluster = TestCluster::start().await;
    // Every broker registers with the controller before topics can be
    // spread over them, and each has applied the registrations (topics are
    // created through broker 2 below).
    for id in IDS {
        await_metadata(&cluster, id, None, "three registered brokers", |m| {
            (m.brokers.len() == 3 && m.controller_id > 0).then_some(())
        })
        .await;
    }
    // Producer ids come in blocks from the controller: no two brokers hand
    // out one id, and any broker bumps the epoch of an id another gave.
    let mut ids = std::collections::BTreeSet::new();
    for id in IDS {
        for _ in 0..2 {
            let r = new_producer_id(&mut cluster.client(id).await, -1, -1).await;
            assert_eq!(r.error, ErrorCode::None, "{r:?}");
            assert!(
                ids.insert(r.producer_id),
                "id {} handed out twice",
                r.producer_id
            );
        }
    }
    let given = *ids.first().expect("an id");
    let bumped = new_producer_id(&mut cluster.client(3).await, given, 0).await;
    assert_eq!(
        (bumped.error, bumped.producer_id, bumped.producer_epoch),
        (ErrorCode::None, given, 1)
    );
    let mut admin = cluster.client(2).await;
    assert_eq!(
        create(&mut admin, "orders", 1, 3).await.error,
        ErrorCode::None
    );
    assert_eq!(
        create(&mut admin, "orders", 1, 3).await.error,
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        create(&mut admin, "wide", 1, 4).await.error,
        ErrorCode::InvalidReplicationFactor
    );

    let (leader, epoch) = await_leader(&cluster, 1, "orders", &IDS).await;
    let replicas = await_metadata(&cluster, leader, Some("orders"), "the replicas", |m| {
        Some(m.topics[0].partitions[0].replicas.clone())
    })
    .await;
    assert_eq!(replicas.len(), 3);

    // A peer speaking nonsense on an inter-broker listener is refused,
    // counted, and costs nothing else: the cluster keeps committing below.
    let refused = r#"rill_peer_connections_refused_total{reason="malformed"}"#;
    let metrics_addr = cluster.nodes[&1]
        .handle
        .as_ref()
        .expect("running")
        .metrics_addr();
    let before = sample_or_zero(&scrape(metrics_addr).await, refused);
    for id in IDS {
        let peer = peer_addr(&cluster, id);
        let mut garbage = tokio::net::TcpStream::connect(peer)
            .await
            .expect("connect peer port");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send garbage");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(CLUSTER_DEADLINE, garbage.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "broker {id} did not close a garbage peer connection"
        );
    }
    // One recorder serves the three in-process brokers.
    let after = sample_or_zero(&scrape(metrics_addr).await, refused);
    assert!(
        after >= before + 3.0,
        "refusals counted: {before} -> {after}"
    );

    // acks=all at the leader: committed on a majority before the answer.
    let mut producer = cluster.client(leader).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let tag = format!("a{i}");
        let r = producer
            .produce("orders", 0, Acks::All, batch(3, &tag, 1_000))
            .await;
        assert_eq!(r.error, ErrorCode::None, "{r:?}");
        acked.extend((0..3).map(|j| format!("{tag}-{j}")));
    }
    // A follower refuses clients with Kafka's redirect code.
    let follower = *IDS.iter().find(|id| **id != leader).expect("a follower");
    let mut at_follower = cluster.client(follower).await;
    let r = at_follower
        .produce("orders", 0, Acks::All, batch(1, "no", 1_000))
        .await;
    assert_eq!(r.error, ErrorCode::NotLeaderOrFollower);
    let f = match at_follower
        .call(Client::fetch_request("orders", 0, 0, 0, 0))
        .await
    {
        Response::Fetch(mut f) => f.topics.pop().and_then(|mut t| t.partitions.pop()),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(f.expect("one").error, ErrorCode::NotLeaderOrFollower);
    assert_eq!(read_all(&mut producer, "orders").await, acked);

    // The leader goes; the other two elect a successor with a newer epoch,
    // which holds every acknowledged record and takes new writes.
    cluster.stop(leader).await;
    let survivors: Vec<u32> = IDS.iter().copied().filter(|id| *id != leader).collect();
    let (new_leader, new_epoch) = await_leader(&cluster, survivors[0], "orders", &survivors).await;
    assert!(new_epoch > epoch, "epoch {new_epoch} after {epoch}");
    let mut producer = cluster.client(new_leader).await;
    for i in 0..20 {
        let tag = format!("b{i}");
        let r = producer
            .produce("orders", 0, Acks::All, batch(3, &tag, 1_000))
            .await;
        assert_eq!(r.error, ErrorCode::None, "{r:?}");
        acked.extend((0..3).map(|j| format!("{tag}-{j}")));
    }
    assert_eq!(read_all(&mut producer, "orders").await, acked);
    let hw = producer
        .list_offset("orders", 0, LATEST_TIMESTAMP)
        .await
        .offset;

    // The old leader returns as a follower and is caught up.
    cluster.restart(leader).await;
    await_metadata(
        &cluster,
        leader,
        Some("orders"),
        "the returned broker caught up",
        |m| (m.topics[0].partitions[0].log_end_offset >= hw).then_some(()),
    )
    .await;

    // Every replica's log is the same, byte for byte.
    let dirs: Vec<PathBuf> = IDS.iter().map(|id| cluster.nodes[id].dir.clone()).collect();
    let tmp = cluster.shutdown().await;
    let first = segment_file(&dirs[0], "orders");
    for dir in &dirs[1..] {
        assert!(
            first == segment_file(dir, "orders"),
            "{} differs",
            dir.display()
        );
    }
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_broker_refuses_a_replication_factor_it_cannot_give() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(config(tmp.path())).await.expect("starts");
    let mut client = Client::connect(broker.local_addr()).await;
    assert_eq!(
        create(&mut client, "t", 1, 2).await.error,
        ErrorCode::InvalidReplicationFactor
    );
    assert_eq!(create(&mut client, "t", 1, 1).await.error, ErrorCode::None);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_refuses_other_peers_naming_both() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = format!("1@127.0.0.1:{}", free_port());
    let mut c = config(tmp.path());
    c.node_id = 1;
    c.peers = Some(first.clone());
    let broker = Broker::start(c.clone()).await.expect("starts");
    broker.shutdown().await;
    let other = format!("{first},2@127.0.0.1:{}", free_port());
    c.peers = Some(other.clone());
    let err = Broker::start(c).await.expect_err("other peers refused");
    let text = err.to_string();
    assert!(text.contains(&first) && text.contains(&other), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_brokers_data_directory_opens_as_a_cluster_of_one_with_its_topics_and_offsets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Written by a lone broker, as before cluster mode.
    let lone = Broker::start(config(tmp.path())).await.expect("starts");
    let mut c = Client::connect(lone.local_addr()).await;
    assert_eq!(
        c.create_topic("legacy", 2, &[("retention.ms", "-1")])
            .await
            .error,
        ErrorCode::None
    );
    for i in 0..3 {
        let r = c
            .produce("legacy", 0, Acks::All, batch(2, &format!("old{i}"), 1_000))
            .await;
        assert_eq!((r.error, r.base_offset), (ErrorCode::None, 2 * i));
    }
    let before = c.fetch("legacy", 0, 0, 0, 0).await.records;
    drop(c);
    lone.shutdown().await;

    // The same directory with --peers: a cluster of one that imports the
    // topic with this broker as its one replica, data and offsets as they were.
    let mut clustered = config(tmp.path());
    clustered.node_id = 1;
    clustered.peers = Some(format!("1@127.0.0.1:{}", free_port()));
    let broker = Broker::start(clustered.clone())
        .await
        .expect("starts in cluster mode");
    let mut c = Client::connect(broker.local_addr()).await;
    let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
    loop {
        let m = metadata(&mut c, Some("legacy")).await;
        let led = m.topics[0].error == ErrorCode::None
            && m.topics[0].partitions.len() == 2
            && m.topics[0]
                .partitions
                .iter()
                .all(|p| p.leader == 1 && p.replicas == vec![1]);
        if led {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not imported: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.fetch("legacy", 0, 0, 0, 0).await.records, before);
    let next = c
        .produce("legacy", 0, Acks::All, batch(1, "new", 1_000))
        .await;
    assert_eq!(next.error, ErrorCode::None);
    assert_eq!(
        next.base_offset, 6,
        "offsets continue where the lone broker left them"
    );
    drop(c);
    broker.shutdown().await;

    // It is a cluster's directory now: a start without --peers is refused.
    let err = Broker::start(config(tmp.path()))
        .await
        .expect_err("a lone start on a cluster's directory is refused");
    assert!(err.to_string().contains("--peers"), "{err}");
    // And it still opens as the cluster it became, topic included.
    let broker = Broker::start(clustered).await.expect("restarts");
    let mut c = Client::connect(broker.local_addr()).await;
    let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
    loop {
        let m = metadata(&mut c, Some("legacy")).await;
        if m.topics[0]
            .partitions
            .first()
            .is_some_and(|p| p.leader == 1)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reopened: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = c.fetch("legacy", 0, 0, 0, 0).await.records;
    assert_eq!(batches(records).len(), 4);
    broker.shutdown().await;
}

async fn create_with_configs(
    client: &mut Client,
    topic: &str,
    rf: u16,
    configs: &[(&str, &str)],
) -> CreatableTopicResult {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            partitions: 1,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }],
        validate_only: false,
    });
    match client.call(request).await {
        Response::CreateTopics(mut r) => r.topics.pop().expect("one result"),
        other => panic!("unexpected {other:?}"),
    }
}

// `replication.flush = written` through CreateTopics on three real brokers:
// a bad value is refused with InvalidConfig and creates nothing; an RF 3
// written-mode topic takes acks=all writes, serves them up to the high
// watermark, and every replica's segment file is byte for byte the same.
// (That a written-mode commit waits for no fsync is proven where the fsync
// counter is visible: rill-replication's
// `cluster_in_written_mode_commits_without_fsyncs_and_replicates_byte_for_byte`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_written_mode_topic_takes_acks_all_writes_and_replicates_them_byte_for_byte() {
    let cluster = TestCluster::start().await;
    // The broker the topics are created through must have applied the
    // registrations itself (it validates the factor against them).
    await_metadata(&cluster, 2, None, "three registered brokers", |m| {
        (m.brokers.len() == 3 && m.controller_id > 0).then_some(())
    })
    .await;
    let mut admin = cluster.client(2).await;
    let refused =
        create_with_configs(&mut admin, "cached", 3, &[("replication.flush", "cached")]).await;
    assert_eq!(refused.error, ErrorCode::InvalidConfig, "{refused:?}");
    let message = refused.error_message.clone().unwrap_or_default();
    assert!(
        message.contains("replication.flush") && message.contains("synced or written"),
        "{message}"
    );
    let m = metadata(&mut admin, None).await;
    assert!(
        m.topics.iter().all(|t| t.name != "cached"),
        "a refused topic was created"
    );

    let created = create_with_configs(
        &mut admin,
        "fast",
        3,
        &[("replication.flush", "written"), ("flush.policy", "never")],
    )
    .await;
    assert_eq!(created.error, ErrorCode::None, "{created:?}");
    let (leader, _) = await_leader(&cluster, 1, "fast", &IDS).await;
    let mut producer = cluster.client(leader).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let tag = format!("w{i}");
        let r = producer
            .produce("fast", 0, Acks::All, batch(3, &tag, 1_000))
            .await;
        assert_eq!(r.error, ErrorCode::None, "{r:?}");
        acked.extend((0..3).map(|j| format!("{tag}-{j}")));
    }
    assert_eq!(read_all(&mut producer, "fast").await, acked);
    let hw = producer
        .list_offset("fast", 0, LATEST_TIMESTAMP)
        .await
        .offset;
    for id in IDS {
        await_metadata(
            &cluster,
            id,
            Some("fast"),
            "every replica at the high watermark",
            |m| (m.topics[0].partitions[0].log_end_offset >= hw).then_some(()),
        )
        .await;
    }
    let dirs: Vec<PathBuf> = IDS.iter().map(|id| cluster.nodes[id].dir.clone()).collect();
    let tmp = cluster.shutdown().await;
    let first = segment_file(&dirs[0], "fast");
    assert!(!first.is_empty(), "the writes are in the segment");
    for dir in &dirs[1..] {
        assert!(
            first == segment_file(dir, "fast"),
            "{} differs",
            dir.display()
        );
    }
    drop(tmp);
}

/// The base offsets of the segment files of `topic`-0 in `dir`.
fn segment_bases(dir: &Path, topic: &str) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir.join(format!("{topic}-0")))
        .expect("partition dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_retention_by_size_on_a_replicated_topic_deletes_old_segments_on_every_replica() {
    // Proves the leader's retention cut reaches all three brokers: real
    // brokers, retention checked every 100 ms, a topic with 4 KiB segments
    // and 16 KiB retention; polls (bounded) for the outcome on disk.
    let cluster = TestCluster::start_with(|c| c.retention_check_interval_ms = 100).await;
    await_metadata(&cluster, 1, None, "three registered brokers", |m| {
        (m.brokers.len() == 3 && m.controller_id > 0).then_some(())
    })
    .await;
    let mut admin = cluster.client(1).await;
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "kept".into(),
            partitions: 1,
            replication_factor: 3,
            configs: vec![
                ("segment.bytes".into(), "4096".into()),
                ("retention.bytes".into(), "16384".into()),
            ],
        }],
        validate_only: false,
    });
    match admin.call(request).await {
        Response::CreateTopics(r) => assert_eq!(r.topics[0].error, ErrorCode::None, "{r:?}"),
        other => panic!("unexpected {other:?}"),
    }
    let (leader, _) = await_leader(&cluster, 1, "kept", &IDS).await;
    let mut client = cluster.client(leader).await;
    for i in 0..120 {
        let p = client
            .produce("kept", 0, Acks::All, batch(4, &format!("r{i}"), 1_000 + i))
            .await;
        assert_eq!(p.error, ErrorCode::None, "produce {i}");
    }
    // The leader replicates a log start past offset 0.
    let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
    let start = loop {
        let earliest = client.list_offset("kept", 0, -2).await;
        assert_eq!(earliest.error, ErrorCode::None);
        if earliest.offset > 0 {
            break earliest.offset;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Below it: out of range, as on a single node. From it: the records.
    let below = client.fetch("kept", 0, 0, 0, 0).await;
    assert_eq!(below.error, ErrorCode::OffsetOutOfRange);
    let from = client.fetch("kept", 0, start, 0, 0).await;
    assert_eq!(from.error, ErrorCode::None);
    assert!(!from.records.is_empty(), "records from the new start");
    // Every replica deletes its segments below the start (followers agree
    // on where the log starts; nothing rolls by time here, so their
    // segments are the leader's).
    for id in IDS {
        let dir = cluster.nodes[&id].dir.clone();
        let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
        loop {
            let bases = segment_bases(&dir, "kept");
            if bases.first().is_some_and(|&b| b >= start) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker {id} still holds segments {bases:?} below {start}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.shutdown().await;
}

// The controller's metadata outlives its leader: with the broker leading
// the controller group stopped, the other two elect a new controller
// leader, a topic created through either of them reaches both (with the
// topics from before), and the old one, back, learns what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_controller_metadata_survives_its_leaders_loss() {
    let mut cluster = TestCluster::start().await;
    let controller = await_metadata(&cluster, 1, None, "three registered brokers", |m| {
        let c = u32::try_from(m.controller_id).ok()?;
        (m.brokers.len() == 3 && c > 0).then_some(c)
    })
    .await;
    let mut admin = cluster.client(controller).await;
    assert_eq!(
        create(&mut admin, "before", 2, 3).await.error,
        ErrorCode::None
    );
    drop(admin);
    cluster.stop(controller).await;
    let survivors: Vec<u32> = IDS.iter().copied().filter(|id| *id != controller).collect();
    for id in &survivors {
        await_metadata(&cluster, *id, None, "a new controller leader", |m| {
            let c = u32::try_from(m.controller_id).ok()?;
            (c > 0 && c != controller).then_some(())
        })
        .await;
    }
    let mut admin = cluster.client(survivors[1]).await;
    assert_eq!(
        create(&mut admin, "after", 1, 3).await.error,
        ErrorCode::None
    );
    // The asked topic is known, with its partitions.
    let known = |partitions: usize| {
        move |m: &MetadataResponse| {
            let t = m.topics.first()?;
            (t.error == ErrorCode::None && t.partitions.len() == partitions).then_some(())
        }
    };
    for id in &survivors {
        await_metadata(&cluster, *id, Some("before"), "the old topic", known(2)).await;
        await_metadata(&cluster, *id, Some("after"), "the new topic", known(1)).await;
    }
    cluster.restart(controller).await;
    await_metadata(
        &cluster,
        controller,
        Some("after"),
        "the topic created while it was down",
        known(1),
    )
    .await;
    cluster.shutdown().await;
}
