//! Shared parts of the consumer group tests: a broker with a short
//! heartbeat interval, group consumers that run on their own thread and
//! runtime (so a test can kill one the way a crashed process dies: no
//! leave, no commit, connections gone), and a journal of what each member
//! processed, committed, and was assigned or revoked, with times.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{
    Acks, AutoOffsetReset, GroupConsumer, GroupConsumerConfig, Producer, ProducerConfig,
    RebalanceListener, TopicPartition,
};
use tokio::sync::{oneshot, watch};

/// The broker tells members to heartbeat this often: rebalances settle in
/// a few hundred milliseconds.
pub const HEARTBEAT_INTERVAL_MS: u32 = 100;
/// Members' session timeout: short so expiry tests are quick, but 20
/// heartbeat intervals long so a loaded 2-core CI machine does not expire
/// a live member.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a test waits for a group to settle.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(8);
/// How long a member's `poll` waits.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

pub async fn start_group_broker(data_dir: &Path) -> BrokerHandle {
    start_group_broker_on(data_dir, "127.0.0.1:0".parse().expect("addr")).await
}

/// [`start_group_broker`] listening on `listen` (to restart on a port).
pub async fn start_group_broker_on(data_dir: &Path, listen: SocketAddr) -> BrokerHandle {
    let config = BrokerConfig {
        listen,
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.to_path_buf(),
        group_heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        ..BrokerConfig::default()
    };
    Broker::start(config).await.expect("broker starts")
}

/// A member config for tests: short session and fetch wait, manual
/// commits, reading from the start of the log.
pub fn group_config(addr: &str, group: &str, client_id: &str) -> GroupConsumerConfig {
    GroupConsumerConfig {
        client_id: client_id.to_owned(),
        session_timeout: SESSION_TIMEOUT,
        auto_commit: None,
        auto_offset_reset: AutoOffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(50),
        ..GroupConsumerConfig::new(addr, group)
    }
}

/// One ownership change of one partition.
#[derive(Debug, Clone)]
pub struct OwnershipEvent {
    pub member: String,
    pub partition: u32,
    pub assigned: bool,
    pub at: Instant,
}

/// One record handed to a member.
#[derive(Debug, Clone)]
pub struct Processed {
    pub member: String,
    pub partition: u32,
    pub offset: u64,
    pub at: Instant,
}

/// What every member did, in order.
#[derive(Debug, Default)]
pub struct Journal {
    pub processed: Vec<Processed>,
    /// `(member, partition, committed next offset)` after each successful
    /// commit.
    pub committed: Vec<(String, u32, u64)>,
    /// The same, written before each commit is sent: a member killed while
    /// its commit is in flight leaves the broker holding either this or the
    /// last `committed` one, and nothing tells which.
    pub commit_attempts: Vec<(String, u32, u64)>,
    pub ownership: Vec<OwnershipEvent>,
}

pub type SharedJournal = Arc<Mutex<Journal>>;

pub fn journal() -> SharedJournal {
    Arc::new(Mutex::new(Journal::default()))
}

pub fn lock(j: &SharedJournal) -> std::sync::MutexGuard<'_, Journal> {
    j.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct JournalListener {
    member: String,
    journal: SharedJournal,
}

impl JournalListener {
    fn log(&self, partitions: &[TopicPartition], assigned: bool) {
        let at = Instant::now();
        let mut j = lock(&self.journal);
        for (_, partition) in partitions {
            j.ownership.push(OwnershipEvent {
                member: self.member.clone(),
                partition: *partition,
                assigned,
                at,
            });
        }
    }
}

impl RebalanceListener for JournalListener {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.log(partitions, true);
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.log(partitions, false);
    }
}

enum Stop {
    /// Leave cleanly (`close`).
    Close,
    /// Drop the member's runtime: no leave, no commit.
    Kill,
}

/// A group consumer polling on its own thread until closed or killed.
pub struct Member {
    pub name: String,
    assignment: watch::Receiver<Vec<TopicPartition>>,
    stop: Option<oneshot::Sender<Stop>>,
    done: Option<oneshot::Receiver<()>>,
}

impl Member {
    /// Starts a member of `config`'s group subscribed to `topic`. It
    /// journals every record and ownership change; with `commit_every`
    /// `Some(n)` it commits after every n-th poll that returned records.
    pub fn spawn(
        name: &str,
        config: GroupConsumerConfig,
        topic: &str,
        journal: SharedJournal,
        commit_every: Option<usize>,
    ) -> Member {
        let (assignment_tx, assignment) = watch::channel(Vec::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let name_owned = name.to_owned();
        let topic = topic.to_owned();
        std::thread::Builder::new()
            .name(format!("member-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("member runtime");
                let closing = Arc::new(AtomicBool::new(false));
                rt.block_on(async {
                    let task = tokio::spawn(run_member(
                        name_owned,
                        config,
                        topic,
                        journal,
                        commit_every,
                        assignment_tx,
                        Arc::clone(&closing),
                    ));
                    match stop_rx.await {
                        Ok(Stop::Close) => {
                            closing.store(true, Ordering::SeqCst);
                            task.await.expect("member task");
                        }
                        // Kill: return with the task still running; the
                        // runtime's drop below cancels it mid-flight.
                        Ok(Stop::Kill) | Err(_) => {}
                    }
                });
                drop(rt);
                let _ = done_tx.send(());
            })
            .expect("member thread");
        Member {
            name: name.to_owned(),
            assignment,
            stop: Some(stop_tx),
            done: Some(done_rx),
        }
    }

    /// The partitions of the member's last poll.
    pub fn partitions(&self) -> BTreeSet<u32> {
        self.assignment.borrow().iter().map(|(_, p)| *p).collect()
    }

    pub async fn close(mut self) {
        self.finish(Stop::Close).await;
    }

    pub async fn kill(mut self) {
        self.finish(Stop::Kill).await;
    }

    async fn finish(&mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(done) = self.done.take() {
            done.await.expect("member thread ends");
        }
    }
}

async fn run_member(
    name: String,
    config: GroupConsumerConfig,
    topic: String,
    journal: SharedJournal,
    commit_every: Option<usize>,
    assignment_tx: watch::Sender<Vec<TopicPartition>>,
    closing: Arc<AtomicBool>,
) {
    let mut consumer = GroupConsumer::new(config).await.expect("group consumer");
    consumer.set_rebalance_listener(JournalListener {
        member: name.clone(),
        journal: Arc::clone(&journal),
    });
    consumer.subscribe([topic]).expect("subscribe");
    let mut polls_since_commit = 0usize;
    while !closing.load(Ordering::SeqCst) {
        let records = consumer.poll(POLL_TIMEOUT).await.expect("poll");
        if !records.is_empty() {
            let at = Instant::now();
            {
                let mut j = lock(&journal);
                records
                    .for_each(|r| {
                        j.processed.push(Processed {
                            member: name.clone(),
                            partition: r.partition,
                            offset: r.offset,
                            at,
                        })
                    })
                    .expect("records decode");
            }
            polls_since_commit += 1;
            if commit_every.is_some_and(|n| polls_since_commit >= n) {
                polls_since_commit = 0;
                let positions: Vec<(u32, u64)> = consumer
                    .assignment()
                    .into_iter()
                    .filter_map(|(t, p)| Some((p, consumer.position(&t, p)?)))
                    .collect();
                lock(&journal)
                    .commit_attempts
                    .extend(positions.iter().map(|&(p, next)| (name.clone(), p, next)));
                consumer.commit().await.expect("commit");
                lock(&journal)
                    .committed
                    .extend(positions.iter().map(|&(p, next)| (name.clone(), p, next)));
            }
        }
        assignment_tx.send_replace(consumer.assignment());
    }
    consumer.close().await.expect("close");
    assignment_tx.send_replace(Vec::new());
}

/// Polls `check` every 20 ms until it holds or `deadline` passes; returns
/// whether it held.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The members' partitions, or `None` if two members hold one partition.
pub fn disjoint_union(members: &[&Member]) -> Option<BTreeSet<u32>> {
    let mut all = BTreeSet::new();
    for m in members {
        for p in m.partitions() {
            if !all.insert(p) {
                return None;
            }
        }
    }
    Some(all)
}

/// Produces `count` keyed records to `topic` and waits for all acks.
pub async fn produce(addr: &str, topic: &str, first: u64, count: u64) {
    let producer = Producer::new(ProducerConfig {
        acks: Acks::Leader,
        ..ProducerConfig::new(addr)
    })
    .await
    .expect("producer");
    let mut deliveries = Vec::new();
    for i in first..first + count {
        let key = format!("k{i}");
        deliveries.push(
            producer
                .send(topic, Some(key.as_bytes()), &i.to_le_bytes(), &[])
                .await
                .expect("send"),
        );
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await.expect("close producer");
}

/// `(partition -> [start, end))` ownership intervals of each member, from
/// the journal; an interval still open ends at `now`.
pub fn ownership_intervals(
    events: &[OwnershipEvent],
    now: Instant,
) -> BTreeMap<u32, Vec<(String, Instant, Instant)>> {
    let mut open: BTreeMap<(String, u32), Instant> = BTreeMap::new();
    let mut out: BTreeMap<u32, Vec<(String, Instant, Instant)>> = BTreeMap::new();
    for e in events {
        let key = (e.member.clone(), e.partition);
        if e.assigned {
            assert!(
                open.insert(key, e.at).is_none(),
                "{} assigned partition {} twice without a revoke",
                e.member,
                e.partition
            );
        } else {
            let start = open
                .remove(&key)
                .unwrap_or_else(|| panic!("{} revoked unowned {}", e.member, e.partition));
            out.entry(e.partition)
                .or_default()
                .push((e.member.clone(), start, e.at));
        }
    }
    for ((member, partition), start) in open {
        out.entry(partition).or_default().push((member, start, now));
    }
    for list in out.values_mut() {
        list.sort_by_key(|(_, start, _)| *start);
    }
    out
}
