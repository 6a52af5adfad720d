//! kill -9 durability of the real `rill-broker` process (harness in
//! `crash_harness`): acknowledged records and acknowledged group commits
//! survive SIGKILL at seeded random moments, restarts on the same data
//! directory recover them, and the `acks=leader` loss of a process crash is
//! measured. Figures go to stderr (`--nocapture`); RELIABILITY.md records a
//! long run (`RILL_LONG=1`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_client::{Acks, Admin, AdminConfig, GroupConsumer, Producer};

use crate::common::create_topic;
use crate::crash_harness::{
    cycles, producer_config, read_back, seed, value_of, verify, Acked, BrokerProcess, Commits, Rng,
    Verdict,
};
use crate::group_harness::group_config;

const PARTITIONS: u32 = 4;
/// The broker tells group members to heartbeat this often, so a member
/// joins within a few hundred milliseconds of each restart.
const HEARTBEAT_FLAGS: [&str; 2] = ["--group-heartbeat-interval-ms", "100"];
/// Records produced before each group cycle, so the member has work from
/// its first poll; a producer keeps adding until the kill.
const GROUP_RECORDS_BEFORE: u64 = 500;
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Pause after a failed poll or commit before trying again.
const GROUP_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Totals over every kill cycle of a run.
#[derive(Debug, Default)]
struct Totals {
    cycles: u32,
    sent: u64,
    acked: u64,
    failed: u64,
    last: Verdict,
    restart_ms_max: u128,
}

/// Runs the produce / kill -9 / restart / read-back cycle `cycles()` times
/// with `acks`, checking the whole log after every restart.
async fn kill_cycles(label: &str, acks: Acks, topic: &str) -> Totals {
    let seed = seed(label);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::spawn(dir.path(), &[]);
    create_topic(&broker.bootstrap(), topic, PARTITIONS).await;
    let mut acked: Vec<Acked> = Vec::new();
    let mut totals = Totals::default();
    let mut next_id = 0;
    for cycle in 0..cycles() {
        let kill_after = rng.kill_after();
        let outcome =
            crate::crash_harness::produce_until_killed(broker, topic, acks, next_id, kill_after)
                .await;
        next_id += outcome.sent;
        totals.sent += outcome.sent;
        totals.failed += outcome.failed;
        totals.acked += outcome.acked.len() as u64;
        acked.extend(outcome.acked.iter().copied());
        broker = BrokerProcess::spawn(dir.path(), &[]);
        totals.restart_ms_max = totals.restart_ms_max.max(broker.start_time.as_millis());
        let stored = read_back(&broker.bootstrap(), topic, PARTITIONS).await;
        let verdict = verify(&stored, &acked, next_id);
        assert_eq!(verdict.acked, acked.len() as u64);
        eprintln!(
            "{label}: cycle {cycle}: kill -9 after {kill_after:?}; sent {}, acked {}, failed {}; \
             restart {:?}; stored {}, lost {}, unacked present {}",
            outcome.sent,
            outcome.acked.len(),
            outcome.failed,
            broker.start_time,
            verdict.stored,
            verdict.lost,
            verdict.unacked_present
        );
        // Both acks levels promise survival of a process kill: with
        // acks=leader the bytes were in the page cache, which outlives it.
        assert_eq!(
            verdict.lost, 0,
            "{label}: cycle {cycle} lost acknowledged records"
        );
        totals.cycles += 1;
        totals.last = verdict;
    }
    let partitions_hit: std::collections::BTreeSet<u32> =
        acked.iter().map(|a| a.partition).collect();
    assert_eq!(
        partitions_hit.len() as u32,
        PARTITIONS,
        "every partition got acknowledged records"
    );
    eprintln!(
        "{label}: {} kill -9 cycles (seed {seed}): sent {}, acked {}, failed {}, stored {}, \
         lost {}, unacked present {}, slowest restart {} ms",
        totals.cycles,
        totals.sent,
        totals.acked,
        totals.failed,
        totals.last.stored,
        totals.last.lost,
        totals.last.unacked_present,
        totals.restart_ms_max
    );
    totals
}

/// acks=all: after every kill -9 and restart, each acknowledged record is at its acknowledged offset exactly once, offsets are dense, partition order holds, and everything stored is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_records_survive_kill_9_at_random_moments() {
    let totals = kill_cycles("crash acks=all", Acks::All, "crash-all").await;
    assert!(totals.acked > 0, "the workload got acknowledgements");
    assert_eq!(totals.last.lost, 0, "acks=all lost acknowledged records");
}

/// acks=leader under kill -9 of the process (not the machine): the page cache survives, so the measured loss must be 0; the machine-crash window is measured in storage's crash_window test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_leader_loses_nothing_when_only_the_process_dies() {
    let totals = kill_cycles("crash acks=leader", Acks::Leader, "crash-leader").await;
    assert!(totals.acked > 0, "the workload got acknowledgements");
    assert_eq!(
        totals.last.lost, 0,
        "acks=leader records were in the page cache, which a process kill keeps"
    );
}

/// Produces `count` records (acks=all) so the group has work; returns
/// their acknowledgements.
async fn produce_for_group(bootstrap: &str, topic: &str, first_id: u64, count: u64) -> Vec<Acked> {
    let producer = Producer::new(producer_config(bootstrap, Acks::All))
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for id in first_id..first_id + count {
        let key = format!("g{id}");
        deliveries.push(
            producer
                .send(topic, Some(key.as_bytes()), &value_of(id), &[])
                .await
                .expect("send"),
        );
    }
    let mut acked = Vec::new();
    for (id, d) in (first_id..).zip(deliveries) {
        let meta = d.await.expect("group input acknowledged");
        acked.push(Acked {
            partition: meta.partition,
            offset: meta.offset.expect("acks=all reports the offset"),
            id,
        });
    }
    producer.close().await.expect("close");
    acked
}

/// One member: poll, commit the positions, record each acknowledged commit;
/// runs until aborted. Returns nothing: the shared map is the outcome.
async fn commit_loop(bootstrap: String, group: &'static str, topic: &'static str, acked: Commits) {
    let config = group_config(&bootstrap, group, "crash-member");
    let mut member = loop {
        match GroupConsumer::new(config.clone()).await {
            Ok(m) => break m,
            Err(_) => tokio::time::sleep(GROUP_RETRY_PAUSE).await,
        }
    };
    member.subscribe([topic]).expect("subscribe");
    loop {
        match member.poll(GROUP_POLL).await {
            Ok(records) if !records.is_empty() => {}
            Ok(_) => continue,
            Err(_) => {
                tokio::time::sleep(GROUP_RETRY_PAUSE).await;
                continue;
            }
        }
        let positions: Vec<(u32, u64)> = member
            .assignment()
            .iter()
            .filter_map(|(t, p)| member.position(t, *p).map(|o| (*p, o)))
            .collect();
        if member.commit().await.is_ok() {
            // No await between the acknowledgement and this record: an
            // abort cannot separate them.
            let mut acked = acked.lock().expect("commits lock");
            for (p, o) in positions {
                let entry = acked.entry(p).or_insert(o);
                *entry = (*entry).max(o);
            }
        }
    }
}

/// Group commits: after kill -9 at a random moment and a restart, every partition's committed offset is at least the last acknowledged commit (and within the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_group_commits_survive_kill_9() {
    const TOPIC: &str = "crash-group";
    const GROUP: &str = "crash-committer";
    let seed = seed("crash group commits");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::spawn(dir.path(), &HEARTBEAT_FLAGS);
    create_topic(&broker.bootstrap(), TOPIC, PARTITIONS).await;
    let acked: Commits = Arc::new(Mutex::new(BTreeMap::new()));
    let mut produced: Vec<Acked> = Vec::new();
    let mut next_id = 0;
    let (mut cycles_with_commits, mut mid_stream, mut in_flight_landed) = (0, 0, 0);
    for cycle in 0..cycles() {
        produced.extend(
            produce_for_group(&broker.bootstrap(), TOPIC, next_id, GROUP_RECORDS_BEFORE).await,
        );
        next_id += GROUP_RECORDS_BEFORE;
        let before = acked.lock().expect("commits lock").clone();
        let kill_after = rng.kill_after();
        let member = tokio::spawn(commit_loop(
            broker.bootstrap(),
            GROUP,
            TOPIC,
            Arc::clone(&acked),
        ));
        // A producer keeps the member busy up to the kill, so commits are
        // in flight when it comes.
        let outcome = crate::crash_harness::produce_until_killed(
            broker,
            TOPIC,
            Acks::All,
            next_id,
            kill_after,
        )
        .await;
        next_id += outcome.sent;
        produced.extend(outcome.acked.iter().copied());
        member.abort();
        let _ = member.await;
        let acked_now = acked.lock().expect("commits lock").clone();
        if acked_now != before {
            cycles_with_commits += 1;
        }

        broker = BrokerProcess::spawn(dir.path(), &HEARTBEAT_FLAGS);
        let admin = Admin::connect(AdminConfig::new(broker.bootstrap()))
            .await
            .expect("admin");
        let committed: BTreeMap<u32, (Option<u64>, u64)> = if acked_now.is_empty() {
            BTreeMap::new()
        } else {
            admin
                .describe_group(GROUP)
                .await
                .expect("the group has acknowledged commits")
                .offsets
                .into_iter()
                .filter(|(t, _)| t == TOPIC)
                .map(|(_, o)| (o.partition, (o.committed, o.log_end_offset)))
                .collect()
        };
        for (p, want) in &acked_now {
            let (got, end) = committed.get(p).copied().unwrap_or((None, 0));
            let got = got.unwrap_or_else(|| panic!("partition {p}: acknowledged commit lost"));
            assert!(
                got >= *want,
                "partition {p}: committed {got} < acknowledged {want}"
            );
            assert!(
                got <= end,
                "partition {p}: committed {got} past log end {end}"
            );
        }
        if committed
            .values()
            .any(|(c, end)| c.is_some_and(|c| c < *end))
        {
            mid_stream += 1;
        }
        in_flight_landed += acked_now
            .iter()
            .filter(|(p, want)| committed.get(p).is_some_and(|(c, _)| *c > Some(**want)))
            .count();
        // The produced records obey the same rules as in the produce tests.
        let stored = read_back(&broker.bootstrap(), TOPIC, PARTITIONS).await;
        let verdict = verify(&stored, &produced, next_id);
        assert_eq!(verdict.lost, 0, "acks=all records lost beside the group");
        eprintln!(
            "crash group commits: cycle {cycle}: kill -9 after {kill_after:?}; acknowledged \
             {acked_now:?}; after restart (committed, log end) {committed:?}"
        );
    }
    eprintln!(
        "crash group commits: {} kill -9 cycles (seed {seed}): {cycles_with_commits} with new \
         acknowledged commits, {mid_stream} killed mid-stream (a commit below the log end), \
         {in_flight_landed} partition commits in flight at the kill that survived; none lost",
        cycles()
    );
    assert!(
        cycles_with_commits > 0,
        "some cycle must acknowledge commits before its kill"
    );
}
