//! No partition is ever held by two members at once: members join and
//! leave while a producer writes, every ownership change is journalled with
//! its time by the members' rebalance listeners, and the intervals of each
//! partition must not overlap; every record a member got falls inside one
//! of its own intervals for that partition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_client::{Acks, Producer, ProducerConfig};

use crate::common::create_topic;
use crate::group_harness::{
    group_config, journal, lock, ownership_intervals, start_group_broker, Member,
};

const TOPIC: &str = "clicks";
const GROUP: &str = "sessions";
const PARTITIONS: u32 = 6;
/// Time between membership changes: enough for a rebalance to settle.
const STEP: Duration = Duration::from_millis(700);
/// Records produced between 10 ms pauses.
const PRODUCE_BURST: u64 = 50;

/// Joins and leaves under load; per-partition ownership intervals from the listeners never overlap; records only reach their owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_intervals_never_overlap_through_joins_and_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;
    let j = journal();

    let producing = Arc::new(AtomicBool::new(true));
    let producer_task = {
        let producing = Arc::clone(&producing);
        let addr = addr.clone();
        tokio::spawn(async move {
            let producer = Producer::new(ProducerConfig {
                acks: Acks::Leader,
                ..ProducerConfig::new(&addr)
            })
            .await
            .expect("producer");
            let mut i = 0u64;
            while producing.load(Ordering::SeqCst) {
                for _ in 0..PRODUCE_BURST {
                    let key = format!("k{i}");
                    // Delivery is not what this test checks.
                    drop(
                        producer
                            .send(TOPIC, Some(key.as_bytes()), &i.to_le_bytes(), &[])
                            .await
                            .expect("send"),
                    );
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer.close().await.expect("close producer");
            i
        })
    };

    let member = |name: &str| {
        Member::spawn(
            name,
            group_config(&addr, GROUP, name),
            TOPIC,
            j.clone(),
            Some(1),
        )
    };
    let a = member("a");
    let b = member("b");
    tokio::time::sleep(STEP).await;
    let c = member("c");
    tokio::time::sleep(STEP).await;
    a.close().await;
    let d = member("d");
    tokio::time::sleep(STEP).await;
    b.close().await;
    tokio::time::sleep(STEP).await;
    let e = member("e");
    tokio::time::sleep(STEP).await;
    c.close().await;
    tokio::time::sleep(STEP).await;
    for m in [d, e] {
        m.close().await;
    }
    producing.store(false, Ordering::SeqCst);
    let produced = producer_task.await.expect("producer task");
    assert!(produced > 0);

    {
        let journal = lock(&j);
        let intervals = ownership_intervals(&journal.ownership, Instant::now());
        assert_eq!(
            intervals.len(),
            PARTITIONS as usize,
            "every partition was owned at some point"
        );
        let changes = journal.ownership.len();
        assert!(
            changes >= 3 * PARTITIONS as usize,
            "only {changes} ownership changes: the membership churn did not happen"
        );
        for (partition, list) in &intervals {
            for pair in list.windows(2) {
                let ((m1, _, end1), (m2, start2, _)) = (&pair[0], &pair[1]);
                assert!(
                    end1 <= start2,
                    "partition {partition}: {m1} held it until {end1:?}, {m2} from {start2:?}"
                );
            }
        }
        assert!(!journal.processed.is_empty(), "members consumed nothing");
        for r in &journal.processed {
            let inside = intervals.get(&r.partition).is_some_and(|list| {
                list.iter()
                    .any(|(m, start, end)| *m == r.member && *start <= r.at && r.at <= *end)
            });
            assert!(
                inside,
                "{} got {}@{} outside its ownership",
                r.member, r.partition, r.offset
            );
        }
    }
    broker.shutdown().await;
}
