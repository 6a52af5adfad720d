//! At-least-once through a crash: members commit after processing; one is
//! killed mid-stream (no leave, no commit). Every produced record is
//! processed, and the records processed twice are exactly those the dead
//! member processed after its last commit (or, killed with a commit in
//! flight, after the last one it sent: the broker may have applied it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_client::{Admin, AdminConfig};

use crate::common::create_topic;
use crate::group_harness::{
    disjoint_union, eventually, group_config, journal, lock, produce, start_group_broker, Member,
    SESSION_TIMEOUT, SETTLE_DEADLINE,
};

const TOPIC: &str = "payments";
const GROUP: &str = "ledger";
const PARTITIONS: u32 = 4;
const RECORDS: u64 = 4_000;
/// Records per produce round, and the pause between rounds: production
/// lasts a second or two, so the kill lands mid-stream.
const CHUNK: u64 = 100;
const CHUNK_PAUSE: Duration = Duration::from_millis(30);

/// Kill one of three committing members mid-stream: all records processed, duplicates == the victim's uncommitted window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_member_causes_only_replays_of_its_uncommitted_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, PARTITIONS).await;
    let j = journal();

    let survivor_a = Member::spawn(
        "a",
        group_config(&addr, GROUP, "a"),
        TOPIC,
        j.clone(),
        Some(1),
    );
    let survivor_b = Member::spawn(
        "b",
        group_config(&addr, GROUP, "b"),
        TOPIC,
        j.clone(),
        Some(1),
    );
    // The victim commits every third poll, so it usually dies with
    // processed-but-uncommitted records: the window under test.
    let victim = Member::spawn(
        "victim",
        group_config(&addr, GROUP, "victim"),
        TOPIC,
        j.clone(),
        Some(3),
    );
    let all: BTreeSet<u32> = (0..PARTITIONS).collect();
    let settled = eventually(SETTLE_DEADLINE, || {
        let three = [&survivor_a, &survivor_b, &victim];
        disjoint_union(&three).as_ref() == Some(&all)
            && three.iter().all(|m| !m.partitions().is_empty())
    })
    .await;
    assert!(settled, "the group did not settle");

    // Produce while the members consume, so the victim dies mid-stream.
    let producer = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut first = 0;
            while first < RECORDS {
                produce(&addr, TOPIC, first, CHUNK).await;
                first += CHUNK;
                tokio::time::sleep(CHUNK_PAUSE).await;
            }
        })
    };
    let victim_busy = eventually(SETTLE_DEADLINE, || {
        let j = lock(&j);
        j.processed.iter().filter(|r| r.member == "victim").count() >= 200
            && j.committed.iter().any(|(m, _, _)| m == "victim")
    })
    .await;
    assert!(victim_busy, "the victim never processed and committed");
    victim.kill().await;
    producer.await.expect("producer");

    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let ends: BTreeMap<u32, u64> = admin
        .describe_topic(TOPIC)
        .await
        .expect("describe topic")
        .partitions
        .iter()
        .map(|p| (p.partition, p.log_end_offset))
        .collect();
    assert_eq!(ends.values().sum::<u64>(), RECORDS);
    let expected: BTreeSet<(u32, u64)> = ends
        .iter()
        .flat_map(|(&p, &end)| (0..end).map(move |o| (p, o)))
        .collect();
    let all_seen = eventually(SETTLE_DEADLINE + SESSION_TIMEOUT, || {
        let j = lock(&j);
        let seen: BTreeSet<(u32, u64)> = j
            .processed
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        seen == expected
    })
    .await;
    survivor_a.close().await;
    survivor_b.close().await;

    {
        let j = lock(&j);
        let seen: BTreeSet<(u32, u64)> = j
            .processed
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        assert!(
            all_seen,
            "{} of {} records never processed",
            expected.difference(&seen).count(),
            expected.len()
        );
        let mut times: BTreeMap<(u32, u64), Vec<&str>> = BTreeMap::new();
        for r in &j.processed {
            times
                .entry((r.partition, r.offset))
                .or_default()
                .push(&r.member);
        }
        let duplicates: BTreeSet<(u32, u64)> = times
            .iter()
            .filter(|(_, by)| by.len() > 1)
            .map(|(k, _)| *k)
            .collect();
        for (k, by) in &times {
            assert!(by.len() <= 2, "{k:?} processed {} times: {by:?}", by.len());
            if by.len() == 2 {
                assert!(
                    by.contains(&"victim"),
                    "{k:?} replayed without a crash: {by:?}"
                );
            }
        }
        // The victim's uncommitted window: per partition, from its last commit
        // to the end of what it processed. Killed with a commit in flight,
        // the broker may or may not have applied that commit: the window
        // then starts at either the last acknowledged or the last sent one.
        let window = |commits: &[(String, u32, u64)]| -> BTreeSet<(u32, u64)> {
            let mut last_commit: BTreeMap<u32, u64> = BTreeMap::new();
            for (m, p, next) in commits {
                if m == "victim" {
                    last_commit.insert(*p, *next);
                }
            }
            j.processed
                .iter()
                .filter(|r| r.member == "victim")
                .filter(|r| r.offset >= last_commit.get(&r.partition).copied().unwrap_or(0))
                .map(|r| (r.partition, r.offset))
                .collect()
        };
        let acknowledged = window(&j.committed);
        let sent = window(&j.commit_attempts);
        assert!(
            duplicates == acknowledged || duplicates == sent,
            "replayed records must be exactly the victim's uncommitted window: \
             replayed {duplicates:?}, window after the last acknowledged commit \
             {acknowledged:?}, after the last one sent {sent:?}"
        );
    }
    broker.shutdown().await;
}
