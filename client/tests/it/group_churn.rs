//! Consumer groups under churn: while a producer runs, a member joins or
//! leaves every second (8 s in CI, the full minute under
//! `RILL_LONG=1`); from the members' rebalance listeners no partition ever
//! has two owners at once, and every produced record is processed at least
//! once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_client::{Admin, AdminConfig};

use crate::common::create_topic;
use crate::group_harness::{
    eventually, group_config, journal, lock, ownership_intervals, produce, start_group_broker,
    Member, SESSION_TIMEOUT, SETTLE_DEADLINE,
};

const TOPIC: &str = "churn";
const GROUP: &str = "churners";
const PARTITIONS: u32 = 6;
/// One membership change per step: the "every second".
const CHURN_STEP: Duration = Duration::from_secs(1);
/// How long the churn lasts in CI, and under `RILL_LONG=1`.
const CHURN_CI: Duration = Duration::from_secs(8);
const CHURN_LONG: Duration = Duration::from_secs(60);
/// Members alive at once stay in this range; the lower bound keeps some
/// consumption going through every change.
const MEMBERS_MIN: usize = 1;
const MEMBERS_MAX: usize = 4;
/// Records per produce round and the pause between rounds: a steady trickle
/// (~2,000 records/s) for the whole churn.
const PRODUCE_CHUNK: u64 = 100;
const PRODUCE_PAUSE: Duration = Duration::from_millis(50);

/// A member joins or leaves every second under production: no partition has overlapping owners, every record is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_churn_keeps_single_ownership_and_processes_everything() {
    let churn_for = if std::env::var_os("RILL_LONG").is_some() {
        CHURN_LONG
    } else {
        CHURN_CI
    };
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
            let mut first = 0u64;
            while producing.load(Ordering::SeqCst) {
                produce(&addr, TOPIC, first, PRODUCE_CHUNK).await;
                first += PRODUCE_CHUNK;
                tokio::time::sleep(PRODUCE_PAUSE).await;
            }
            first
        })
    };

    let spawn = |n: usize| {
        let name = format!("m{n}");
        Member::spawn(
            &name,
            group_config(&addr, GROUP, &name),
            TOPIC,
            j.clone(),
            Some(1),
        )
    };
    let mut members: VecDeque<Member> = VecDeque::new();
    let mut spawned = 0usize;
    let (mut joins, mut leaves) = (0usize, 0usize);
    members.push_back(spawn(spawned));
    spawned += 1;
    joins += 1;
    let started = Instant::now();
    let mut step = 0usize;
    while started.elapsed() < churn_for {
        tokio::time::sleep(CHURN_STEP).await;
        step += 1;
        // Mostly alternate join / leave, drifting between the bounds so
        // the group sees both growth and shrinkage from several sizes.
        let join = members.len() < MEMBERS_MIN + 1
            || (members.len() < MEMBERS_MAX && !step.is_multiple_of(3));
        if join {
            members.push_back(spawn(spawned));
            spawned += 1;
            joins += 1;
        } else if let Some(oldest) = members.pop_front() {
            oldest.close().await;
            leaves += 1;
        }
    }
    producing.store(false, Ordering::SeqCst);
    let produced = producer_task.await.expect("producer task");
    assert!(produced > 0, "nothing was produced");

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
    assert_eq!(
        ends.values().sum::<u64>(),
        produced,
        "acked records in the log"
    );
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
        expected.is_subset(&seen)
    })
    .await;
    let remaining = members.len();
    for m in members {
        m.close().await;
    }
    leaves += remaining;

    {
        let journal = lock(&j);
        let seen: BTreeSet<(u32, u64)> = journal
            .processed
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        let missing = expected.difference(&seen).count();
        assert!(
            all_seen && missing == 0,
            "{missing} of {} records never processed",
            expected.len()
        );
        assert!(
            seen.is_subset(&expected),
            "a member processed an offset that was never produced"
        );

        let intervals = ownership_intervals(&journal.ownership, Instant::now());
        assert_eq!(
            intervals.len(),
            PARTITIONS as usize,
            "every partition owned"
        );
        for (partition, list) in &intervals {
            // Sorted by start: each interval must begin after every earlier
            // one ended, not only after its neighbour.
            let mut held_until: Option<(&str, Instant)> = None;
            for (member, start, end) in list {
                if let Some((holder, until)) = held_until {
                    assert!(
                    until <= *start,
                    "partition {partition}: {holder} held it until {until:?}, {member} from {start:?}"
                );
                }
                if held_until.is_none_or(|(_, until)| *end > until) {
                    held_until = Some((member, *end));
                }
            }
        }
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
        let changes = journal.ownership.len();
        assert!(
            joins >= 4 && leaves >= 4,
            "churn too small: {joins} joins, {leaves} leaves"
        );
        let duplicates = journal.processed.len() - seen.len();
        eprintln!(
        "group_churn: {:?} of churn, {joins} joins, {leaves} leaves, {changes} ownership changes, \
         {produced} records produced, {} processed ({duplicates} replays)",
        churn_for,
        journal.processed.len()
    );
    }
    broker.shutdown().await;
}
