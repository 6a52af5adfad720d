//! Consumer groups in a 3-broker cluster (in process, real sockets): the
//! group lives on one coordinator, found with FindCoordinator. Two members
//! that bootstrap at different brokers join the same group and split its
//! partitions; the offsets they commit are where a third consumer, that
//! bootstraps at the third broker, resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{
    Acks, Admin, AdminConfig, GroupConsumer, Producer, ProducerConfig, Records, TopicPartition,
};
use tempfile::TempDir;
use tokio::time::Instant;

use crate::group_harness::{group_config, HEARTBEAT_INTERVAL_MS, SETTLE_DEADLINE};

const IDS: [u32; 3] = [1, 2, 3];
const TOPIC: &str = "clicks";
const GROUP: &str = "sessions";
const PARTITIONS: u32 = 4;
/// Records per partition before the first two members, and again after.
const BEFORE: u64 = 40;
const AFTER: u64 = 25;
/// Bounds every wait on the cluster (registration, topic creation).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Three brokers of one cluster, each with its own data directory.
async fn start_cluster() -> (TempDir, BTreeMap<u32, BrokerHandle>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let peers = IDS
        .iter()
        .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut brokers = BTreeMap::new();
    for id in IDS {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let config = BrokerConfig {
            listen,
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: tmp.path().join(format!("d{id}")),
            node_id: id,
            peers: Some(peers.clone()),
            raft_election_timeout_ms: 1_000,
            raft_heartbeat_ms: 100,
            group_heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            ..BrokerConfig::default()
        };
        brokers.insert(id, Broker::start(config).await.expect("broker starts"));
    }
    (tmp, brokers)
}

/// Polls `check` every 50 ms until it holds, up to `CLUSTER_DEADLINE`.
async fn await_true<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {CLUSTER_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn produce(bootstrap: &str, first: u64, count: u64) {
    let producer = Producer::new(ProducerConfig {
        acks: Acks::Leader,
        ..ProducerConfig::new(bootstrap)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for p in 0..PARTITIONS {
        for i in first..first + count {
            let value = format!("{p}-{i}");
            deliveries.push(
                producer
                    .send_to_partition(TOPIC, p, None, value.as_bytes(), &[])
                    .await
                    .expect("send"),
            );
        }
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await.expect("close producer");
}

fn offsets(records: &Records) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    records
        .for_each(|r| out.push((r.partition, r.offset)))
        .expect("records decode");
    out
}

/// Whether the two assignments split every partition between them.
fn split(a: &[TopicPartition], b: &[TopicPartition]) -> bool {
    let a: BTreeSet<u32> = a.iter().map(|(_, p)| *p).collect();
    let b: BTreeSet<u32> = b.iter().map(|(_, p)| *p).collect();
    !a.is_empty()
        && !b.is_empty()
        && a.is_disjoint(&b)
        && a.union(&b).copied().collect::<Vec<_>>() == (0..PARTITIONS).collect::<Vec<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_at_different_brokers_share_one_group_and_its_offsets() {
    let (_tmp, brokers) = start_cluster().await;
    let addr = |id: u32| brokers[&id].local_addr().to_string();
    for id in IDS {
        let admin = Admin::connect(AdminConfig::new(addr(id)))
            .await
            .expect("admin");
        await_true("three registered brokers", || async {
            admin
                .describe_cluster()
                .await
                .is_ok_and(|c| c.brokers.len() == 3)
        })
        .await;
    }
    let admin = Admin::connect(AdminConfig::new(addr(2)))
        .await
        .expect("admin");
    // One replica each: the partitions are spread over the three brokers,
    // so each member fetches from brokers other than the coordinator.
    admin
        .create_replicated_topic(TOPIC, PARTITIONS, 1, &[])
        .await
        .expect("create topic");
    for id in IDS {
        let admin = Admin::connect(AdminConfig::new(addr(id)))
            .await
            .expect("admin");
        await_true("every partition led", || async {
            admin.describe_topic(TOPIC).await.is_ok_and(|t| {
                t.partitions.len() == PARTITIONS as usize
                    && t.partitions.iter().all(|p| p.leader > 0)
            })
        })
        .await;
    }
    produce(&addr(1), 0, BEFORE).await;

    // Members bootstrapping at broker 1 and at broker 2.
    let mut a = GroupConsumer::new(group_config(&addr(1), GROUP, "a"))
        .await
        .expect("member a");
    let mut b = GroupConsumer::new(group_config(&addr(2), GROUP, "b"))
        .await
        .expect("member b");
    a.subscribe([TOPIC]).expect("subscribe");
    b.subscribe([TOPIC]).expect("subscribe");
    let mut seen: BTreeSet<(u32, u64)> = BTreeSet::new();
    let all = u64::from(PARTITIONS) * BEFORE;
    let deadline = Instant::now() + SETTLE_DEADLINE * 2;
    while !(split(&a.assignment(), &b.assignment()) && seen.len() as u64 == all) {
        assert!(
            Instant::now() < deadline,
            "no split of every record: a holds {:?}, b holds {:?}, {} of {all} records seen",
            a.assignment(),
            b.assignment(),
            seen.len()
        );
        for member in [&mut a, &mut b] {
            let records = member.poll(Duration::from_millis(50)).await.expect("poll");
            seen.extend(offsets(&records));
        }
    }
    assert!(a.member_epoch() > 0 && b.member_epoch() > 0);
    // One group of two members, seen from the broker neither bootstrapped at.
    let at_3 = Admin::connect(AdminConfig::new(addr(3)))
        .await
        .expect("admin");
    let described = at_3.describe_group(GROUP).await.expect("describe");
    assert_eq!(described.members.len(), 2, "{described:?}");
    let member_ids: BTreeSet<String> = described
        .members
        .iter()
        .map(|m| m.member_id.clone())
        .collect();
    assert_eq!(member_ids, BTreeSet::from([a.member_id(), b.member_id()]));

    // Both commit their positions (the end of every partition) and leave.
    a.commit().await.expect("commit a");
    b.commit().await.expect("commit b");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    let committed = at_3.committed_offsets(GROUP).await.expect("offsets");
    let expected: Vec<((String, u32), u64)> = (0..PARTITIONS)
        .map(|p| ((TOPIC.to_owned(), p), BEFORE))
        .collect();
    assert_eq!(committed, expected);
    let listed = at_3.list_groups().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|g| g.group_id.as_str())
            .collect::<Vec<_>>(),
        [GROUP]
    );

    // More records; a third member, bootstrapping at broker 3, resumes at
    // the committed offsets (its reset policy, earliest, would start at 0).
    produce(&addr(1), BEFORE, AFTER).await;
    let mut c = GroupConsumer::new(group_config(&addr(3), GROUP, "c"))
        .await
        .expect("member c");
    c.subscribe([TOPIC]).expect("subscribe");
    let mut resumed: Vec<(u32, u64)> = Vec::new();
    let want = (u64::from(PARTITIONS) * AFTER) as usize;
    let deadline = Instant::now() + SETTLE_DEADLINE * 2;
    while resumed.len() < want {
        assert!(
            Instant::now() < deadline,
            "c read {} of {want} new records",
            resumed.len()
        );
        let records = c.poll(Duration::from_millis(100)).await.expect("poll");
        resumed.extend(offsets(&records));
    }
    resumed.sort_unstable();
    let expected: Vec<(u32, u64)> = (0..PARTITIONS)
        .flat_map(|p| (BEFORE..BEFORE + AFTER).map(move |o| (p, o)))
        .collect();
    assert_eq!(resumed, expected, "c resumed at the committed offsets");
    c.close().await.expect("close c");
    for (_, broker) in brokers {
        broker.shutdown().await;
    }
}
