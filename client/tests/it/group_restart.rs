//! Committed offsets survive a broker restart: after the restart the
//! group's committed offsets are the ones committed before, and a member
//! of the group resumes exactly there (nothing before them is delivered
//! again, even though its reset policy is `earliest`), whether it is a new
//! member or one that polled through the restart and had to rejoin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_client::{Admin, AdminConfig, GroupConsumer, RebalanceListener, Records, TopicPartition};

use crate::common::create_topic;
use crate::group_harness::{
    group_config, produce, start_group_broker, start_group_broker_on, SETTLE_DEADLINE,
};

const TOPIC: &str = "audit";
const GROUP: &str = "archiver";
const PARTITIONS: u32 = 3;
const BEFORE: u64 = 300;
const AFTER: u64 = 150;

/// Counts rebalance callbacks.
struct Counter {
    assignments: Arc<AtomicUsize>,
    revocations: Arc<AtomicUsize>,
}

impl RebalanceListener for Counter {
    fn on_assigned(&mut self, _: &[TopicPartition]) {
        self.assignments.fetch_add(1, Ordering::SeqCst);
    }

    fn on_revoked(&mut self, _: &[TopicPartition]) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
    }
}

fn offsets(records: &Records) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    records
        .for_each(|r| out.push((r.partition, r.offset)))
        .expect("records decode");
    out
}

async fn consume(consumer: &mut GroupConsumer, want: usize) -> Vec<(u32, u64)> {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut out = Vec::new();
    while out.len() < want && tokio::time::Instant::now() < deadline {
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll");
        out.extend(offsets(&records));
    }
    out
}

/// Consume and commit, restart the broker, rejoin: committed offsets are back and only later records arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_resumes_from_committed_offsets_after_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;
    produce(&addr, TOPIC, 0, BEFORE).await;

    let mut first = GroupConsumer::new(group_config(&addr, GROUP, "first"))
        .await
        .expect("consumer");
    first.subscribe([TOPIC]).expect("subscribe");
    let got = consume(&mut first, BEFORE as usize).await;
    assert_eq!(got.len() as u64, BEFORE);
    first.commit().await.expect("commit");
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    for (_, p) in first.assignment() {
        committed.insert(p, first.position(TOPIC, p).expect("position"));
    }
    assert_eq!(committed.len(), PARTITIONS as usize);
    assert_eq!(committed.values().sum::<u64>(), BEFORE);
    first.close().await.expect("close");
    produce(&addr, TOPIC, BEFORE, AFTER).await;

    broker.shutdown().await;
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();

    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let described = admin.describe_group(GROUP).await.expect("describe");
    let after_restart: BTreeMap<u32, u64> = described
        .offsets
        .iter()
        .filter(|(t, _)| t == TOPIC)
        .map(|(_, o)| (o.partition, o.committed.expect("committed")))
        .collect();
    assert_eq!(after_restart, committed, "committed offsets came back");

    let mut second = GroupConsumer::new(group_config(&addr, GROUP, "second"))
        .await
        .expect("consumer");
    second.subscribe([TOPIC]).expect("subscribe");
    let mut got = consume(&mut second, AFTER as usize).await;
    // Anything extra would show up now.
    got.extend(offsets(
        &second.poll(Duration::from_millis(300)).await.expect("poll"),
    ));
    assert_eq!(
        got.len() as u64,
        AFTER,
        "exactly the records after the commit"
    );
    for (p, o) in &got {
        let from = committed.get(p).copied().unwrap_or(0);
        assert!(*o >= from, "{p}@{o} is before the committed offset {from}");
    }
    second.close().await.expect("close");
    broker.shutdown().await;
}

/// A member polling through a broker restart on the same port is fenced (the restarted broker does not know it), rejoins, and resumes at its commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_member_rejoins_after_broker_restart_and_resumes_at_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let listen = broker.local_addr();
    let addr = listen.to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;
    produce(&addr, TOPIC, 0, BEFORE).await;

    let mut member = GroupConsumer::new(group_config(&addr, GROUP, "survivor"))
        .await
        .expect("consumer");
    let assignments = Arc::new(AtomicUsize::new(0));
    let revocations = Arc::new(AtomicUsize::new(0));
    member.set_rebalance_listener(Counter {
        assignments: Arc::clone(&assignments),
        revocations: Arc::clone(&revocations),
    });
    member.subscribe([TOPIC]).expect("subscribe");
    let got = consume(&mut member, BEFORE as usize).await;
    assert_eq!(got.len() as u64, BEFORE);
    member.commit().await.expect("commit");
    let committed: BTreeMap<u32, u64> = member
        .assignment()
        .iter()
        .map(|(t, p)| (*p, member.position(t, *p).expect("position")))
        .collect();
    let member_id = member.member_id();
    assert_eq!(
        (
            assignments.load(Ordering::SeqCst),
            revocations.load(Ordering::SeqCst)
        ),
        (1, 0)
    );

    broker.shutdown().await;
    let broker = start_group_broker_on(dir.path(), listen).await;
    produce(&addr, TOPIC, BEFORE, AFTER).await;

    // Polls fail while the broker is away (retriable). The member may read
    // a little before its heartbeat learns it is fenced; once it rejoins
    // (a revocation of everything, then an assignment) it must start again
    // exactly at its commits, as nothing was committed since.
    let mut after_rejoin: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let rejoined = || assignments.load(Ordering::SeqCst) >= 2;
    while !(rejoined() && after_rejoin.values().map(Vec::len).sum::<usize>() as u64 == AFTER) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejoin and full re-read: {} assignments, {} records",
            assignments.load(Ordering::SeqCst),
            after_rejoin.values().map(Vec::len).sum::<usize>()
        );
        match member.poll(Duration::from_millis(200)).await {
            Ok(records) if rejoined() => {
                for (p, o) in offsets(&records) {
                    after_rejoin.entry(p).or_default().push(o);
                }
            }
            Ok(_) => {}
            Err(e) => assert!(e.is_retriable(), "poll failed for good: {e}"),
        }
    }
    assert_eq!(revocations.load(Ordering::SeqCst), 1, "fenced once");
    for (p, list) in &after_rejoin {
        let from = committed.get(p).copied().unwrap_or(0);
        assert_eq!(list.first(), Some(&from), "partition {p} resumed elsewhere");
        let dense: Vec<u64> = (from..from + list.len() as u64).collect();
        assert_eq!(*list, dense, "partition {p} skipped or repeated");
    }
    assert_eq!(member.member_id(), member_id, "rejoined under its id");
    // The restarted broker keeps no members: this one is there because it
    // rejoined.
    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let described = admin.describe_group(GROUP).await.expect("describe");
    let ids: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, [member_id.as_str()]);
    member.close().await.expect("close");
    broker.shutdown().await;
}
