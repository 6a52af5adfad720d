//! Three replication nodes in one process, each with its own partition log
//! on disk and its own inter-broker listener on a loopback port, talking
//! over the real transport: elections, commits on every replica, a
//! follower refusing writes, failover, a restarted and a wiped replica
//! caught up, a deposed leader's uncommitted suffix truncated, and
//! written mode committing without fsyncs, and
//! retention: the leader's log start replicated, segments below it deleted
//! on every replica, a replica behind it sent a snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::batch::{BatchBuilder, BatchHeader, Compression, HEADER_LEN};
use rill_protocol::peer::GroupId;
use rill_replication::{
    default_state_path, AppendError, AppendWait, FlushMode, NodeConfig, PartitionReplica,
    PeerIdentity, ReplicationNode,
};
use rill_storage::io::{open_backend, IoBackendChoice};
use rill_storage::{LogConfig, PartitionLog};
use tempfile::TempDir;

use crate::support::{config, tempdir};

const CLUSTER: [u8; 16] = [0x5e; 16];
/// Bounds every wait, so a hang fails the test instead of stalling CI.
const DEADLINE: Duration = Duration::from_secs(20);
const IDS: [u64; 3] = [1, 2, 3];

fn group() -> GroupId {
    GroupId::Partition {
        topic: "orders".into(),
        partition: 0,
    }
}

struct Member {
    dir: PathBuf,
    node: ReplicationNode,
    log: Arc<PartitionLog>,
    replica: PartitionReplica,
}

/// Retention by size (only the retention tests ask for a cut).
const RETENTION_BYTES: u64 = 8 * 1024;

fn open_log(dir: &Path) -> Arc<PartitionLog> {
    let backend = open_backend(IoBackendChoice::Std).expect("std backend");
    let config = LogConfig {
        retention_bytes: Some(RETENTION_BYTES),
        ..config()
    };
    Arc::new(PartitionLog::open(&dir.join("orders-0"), config, backend).expect("open log"))
}

/// The election timeout of most tests.
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

async fn start_node(id: u64, listen: &str, election_timeout: Duration) -> ReplicationNode {
    ReplicationNode::start(NodeConfig {
        identity: PeerIdentity {
            cluster_id: CLUSTER,
            node_id: id,
        },
        listen: listen.parse().expect("addr"),
        peers: BTreeMap::from([(id, listen.to_string())]),
        election_timeout,
        heartbeat: Duration::from_millis(100),
        request_timeout: Duration::from_secs(2),
    })
    .await
    .expect("start node")
}

struct Cluster {
    _tmp: TempDir,
    election_timeout: Duration,
    flush: FlushMode,
    addrs: BTreeMap<u64, String>,
    members: BTreeMap<u64, Member>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(ELECTION_TIMEOUT, FlushMode::Synced).await
    }

    async fn start_with(election_timeout: Duration, flush: FlushMode) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let tmp = tempdir();
        let mut nodes = BTreeMap::new();
        for id in IDS {
            nodes.insert(id, start_node(id, "127.0.0.1:0", election_timeout).await);
        }
        let addrs: BTreeMap<u64, String> = nodes
            .iter()
            .map(|(id, n)| (*id, n.local_addr().to_string()))
            .collect();
        for node in nodes.values() {
            for (peer, addr) in &addrs {
                node.add_peer(*peer, addr.clone());
            }
        }
        let mut members = BTreeMap::new();
        // The first replica campaigns as it opens: last, so the others
        // already host the group and answer its vote request.
        for (id, node) in nodes.into_iter().rev() {
            let dir = tmp.path().join(format!("node-{id}"));
            let log = open_log(&dir);
            let replica = node
                .open_partition(
                    group(),
                    Arc::clone(&log),
                    default_state_path(&dir.join("orders-0")),
                    &IDS,
                    flush,
                )
                .await
                .expect("open partition");
            members.insert(
                id,
                Member {
                    dir,
                    node,
                    log,
                    replica,
                },
            );
        }
        Cluster {
            _tmp: tmp,
            election_timeout,
            flush,
            addrs,
            members,
        }
    }

    /// Waits until the running members agree on a leader among them.
    async fn leader(&self) -> u64 {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let statuses: Vec<_> = self.members.values().map(|m| m.replica.status()).collect();
                if let Some(leader) = statuses.iter().find(|s| s.is_leader) {
                    let id = leader.node;
                    if statuses.iter().all(|s| s.leader == Some(id)) {
                        return id;
                    }
                }
                let mut changes: Vec<_> =
                    self.members.values().map(|m| m.replica.changes()).collect();
                let waits = changes.iter_mut().map(|c| Box::pin(c.changed()));
                let _ = futures_util::future::select_all(waits).await;
            }
        })
        .await
        .expect("a leader is elected in time")
    }

    /// Stops member `id` (its Raft and its listener); its files stay.
    async fn stop(&mut self, id: u64) -> PathBuf {
        let m = self.members.remove(&id).expect("running member");
        m.replica.shutdown().await;
        m.node.shutdown().await;
        m.dir
    }

    /// Starts member `id` again on its old address over `dir` (as left, or
    /// wiped).
    async fn restart(&mut self, id: u64, dir: PathBuf) {
        let node = start_node(id, &self.addrs[&id], self.election_timeout).await;
        for (peer, addr) in &self.addrs {
            node.add_peer(*peer, addr.clone());
        }
        let log = open_log(&dir);
        let replica = node
            .open_partition(
                group(),
                Arc::clone(&log),
                default_state_path(&dir.join("orders-0")),
                &IDS,
                self.flush,
            )
            .await
            .expect("reopen partition");
        self.members.insert(
            id,
            Member {
                dir,
                node,
                log,
                replica,
            },
        );
    }

    /// Waits until every running member's high watermark is at least `hw`
    /// (a leader change adds a blank entry after it) and no further than
    /// its own log holds.
    async fn all_at(&self, hw: u64) {
        for m in self.members.values() {
            let mut w = m.replica.high_watermark();
            tokio::time::timeout(DEADLINE, w.wait_for(|&h| h >= hw))
                .await
                .expect("replica catches up in time")
                .expect("replica running");
            assert!(
                *w.borrow() <= m.log.log_end_offset(),
                "high watermark past the log"
            );
        }
    }
}

fn batch(seed: u64, records: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..records {
        b.push(
            seed as i64,
            Some(format!("k{seed}").as_bytes()),
            format!("v{seed}-{i}").as_bytes(),
            &[],
        );
    }
    b.finish().expect("valid batch")
}

/// Every batch of `log` from its start to `end`: (base offset, epoch,
/// control, the bytes after the header).
fn batches(log: &PartitionLog, end: u64) -> Vec<(u64, u32, bool, Bytes)> {
    batches_from(log, log.log_start_offset(), end)
}

/// [`batches`] from `start`.
fn batches_from(log: &PartitionLog, start: u64, end: u64) -> Vec<(u64, u32, bool, Bytes)> {
    let mut out = Vec::new();
    let mut offset = start;
    while offset < end {
        let chunk = log.read(offset, 1 << 20).expect("read");
        let mut pos = 0;
        while pos + HEADER_LEN <= chunk.len() {
            let h = BatchHeader::parse(&chunk[pos..]).expect("header");
            let len = h.batch_length as usize;
            if pos + len > chunk.len() || h.base_offset >= end {
                break;
            }
            out.push((
                h.base_offset,
                h.leader_epoch,
                h.is_control(),
                chunk.slice(pos + HEADER_LEN..pos + len),
            ));
            offset = h.next_offset();
            pos += len;
        }
        assert!(pos > 0, "no progress at offset {offset}");
    }
    out
}

fn data_values(log: &PartitionLog, end: u64) -> Vec<(u64, Bytes)> {
    batches(log, end)
        .into_iter()
        .filter(|b| !b.2)
        .map(|b| (b.0, b.3))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_three_replicas_elect_one_leader_and_commit_on_all() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let mut offsets = Vec::new();
    for seed in 0..50 {
        let base = c.members[&leader]
            .replica
            .append(batch(seed, 3), AppendWait::Committed)
            .await
            .expect("committed");
        offsets.push(base);
    }
    assert!(
        offsets.windows(2).all(|w| w[1] >= w[0] + 3),
        "dense, increasing offsets"
    );
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    // Every replica's log is the leader's, byte for byte past the header's
    // broker fields, with the same offsets and epochs.
    let reference = batches(&c.members[&leader].log, hw);
    assert_eq!(reference.iter().filter(|b| !b.2).count(), 50);
    for m in c.members.values() {
        assert_eq!(batches(&m.log, hw), reference, "replica logs agree");
    }
    // The offsets the writes were answered with hold those writes.
    let data = data_values(&c.members[&leader].log, hw);
    for (seed, base) in offsets.iter().enumerate() {
        let (offset, body) = &data[seed];
        assert_eq!(offset, base);
        let want = batch(seed as u64, 3);
        assert_eq!(&want[HEADER_LEN..], &body[..], "batch {seed} at its offset");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_a_follower_refuses_writes_and_names_the_leader() {
    let c = Cluster::start().await;
    let leader = c.leader().await;
    let follower = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    for wait in [AppendWait::Appended, AppendWait::Committed] {
        match c.members[&follower].replica.append(batch(1, 1), wait).await {
            Err(AppendError::NotLeader { leader: named }) => assert_eq!(named, Some(leader)),
            other => panic!("a follower took a write: {other:?}"),
        }
    }
    let status = c.members[&leader].replica.status();
    assert_eq!(status.replicas, IDS.to_vec());
    assert!(status.term >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_keeps_every_committed_write_and_a_restarted_replica_catches_up() {
    let mut c = Cluster::start().await;
    let first = c.leader().await;
    commit(&c, first, 0..20, 2).await;
    let committed = data_values(
        &c.members[&first].log,
        c.members[&first].log.log_end_offset(),
    );
    let dir = c.stop(first).await;
    let second = c.leader().await;
    assert_ne!(second, first);
    let term = c.members[&second].replica.status().term;
    commit(&c, second, 20..40, 2).await;
    c.restart(first, dir).await;
    let hw = c.members[&second].log.log_end_offset();
    c.all_at(hw).await;
    let reference = batches(&c.members[&second].log, hw);
    for m in c.members.values() {
        assert_eq!(batches(&m.log, hw), reference, "replica logs agree");
    }
    let data = data_values(&c.members[&second].log, hw);
    assert_eq!(data.len(), 40, "all 40 writes present once");
    assert_eq!(
        &data[..20],
        &committed[..],
        "the first leader's writes kept"
    );
    // The new leader's entries carry its term as their leader epoch.
    assert!(reference
        .iter()
        .filter(|b| !b.2)
        .skip(20)
        .all(|b| u64::from(b.1) == term));
}

/// Without a heartbeat for an election timeout the followers would elect
/// only after the old leader's lease (the longest election timeout, here
/// two minutes) ran out: far beyond [`DEADLINE`]. The leader's connections
/// ending is what lets them elect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_a_leaders_closed_connections_start_an_election_without_waiting_out_its_lease() {
    let mut c = Cluster::start_with(Duration::from_secs(60), FlushMode::Synced).await;
    let first = c.leader().await;
    c.members[&first]
        .replica
        .append(batch(1, 2), AppendWait::Committed)
        .await
        .expect("committed");
    let term = c.members[&first].replica.status().term;
    let _dir = c.stop(first).await;
    let second = c.leader().await;
    assert_ne!(second, first);
    let status = c.members[&second].replica.status();
    assert!(
        status.term > term,
        "a new term: {} after {term}",
        status.term
    );
    c.members[&second]
        .replica
        .append(batch(2, 2), AppendWait::Committed)
        .await
        .expect("the new leader commits with the one follower left");
    let end = c.members[&second].log.log_end_offset();
    let values = data_values(&c.members[&second].log, end);
    assert_eq!(values.len(), 2, "both batches, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_leadership_moves_to_the_replica_it_is_handed_to() {
    let c = Cluster::start().await;
    let first = c.leader().await;
    c.members[&first]
        .replica
        .append(batch(1, 2), AppendWait::Committed)
        .await
        .expect("committed");
    let to = IDS
        .into_iter()
        .find(|&id| id != first)
        .expect("another replica");
    // openraft hands over only to a replica that holds the leader's log.
    c.all_at(c.members[&first].log.log_end_offset()).await;
    c.members[&first]
        .replica
        .transfer_leader(to)
        .await
        .expect("transfer started");
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut changes = c.members[&to].replica.changes();
            if c.leader().await == to {
                break;
            }
            let _ = changes.changed().await;
        }
    })
    .await
    .expect("the named replica leads in time");
    c.members[&to]
        .replica
        .append(batch(2, 2), AppendWait::Committed)
        .await
        .expect("the new leader commits");
    let end = c.members[&to].log.log_end_offset();
    c.all_at(end).await;
    let reference = batches(&c.members[&to].log, end);
    for m in c.members.values() {
        assert_eq!(batches(&m.log, end), reference, "replica logs agree");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_a_wiped_replica_is_rebuilt_from_the_leader() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    commit(&c, leader, 0..30, 4).await;
    let victim = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let dir = c.stop(victim).await;
    std::fs::remove_dir_all(&dir).expect("wipe");
    std::fs::create_dir_all(&dir).expect("empty dir");
    c.restart(victim, dir).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    assert_eq!(
        batches(&c.members[&victim].log, hw),
        batches(&c.members[&leader].log, hw),
        "the wiped replica holds the leader's log again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_a_deposed_leaders_uncommitted_suffix_is_truncated_on_return() {
    let mut c = Cluster::start().await;
    let old = c.leader().await;
    commit(&c, old, 0..10, 2).await;
    let committed_end = c.members[&old].log.log_end_offset();
    c.all_at(committed_end).await;
    // Cut the leader's messages to its followers: what it appends now
    // reaches its own log only.
    for id in IDS.iter().filter(|&&id| id != old) {
        c.members[&old].node.remove_peer(*id);
    }
    for seed in 100..105 {
        c.members[&old]
            .replica
            .append(batch(seed, 2), AppendWait::Appended)
            .await
            .expect("appended on the isolated leader");
    }
    let old_end = c.members[&old].log.log_end_offset();
    assert!(old_end > committed_end);
    assert_eq!(
        *c.members[&old].replica.high_watermark().borrow(),
        committed_end,
        "nothing past the commit is readable"
    );
    let dir = c.stop(old).await;
    let new = c.leader().await;
    commit(&c, new, 200..210, 2).await;
    c.restart(old, dir).await;
    let hw = c.members[&new].log.log_end_offset();
    c.all_at(hw).await;
    let reference = batches(&c.members[&new].log, hw);
    assert_eq!(batches(&c.members[&old].log, hw), reference);
    assert_eq!(c.members[&old].log.log_end_offset(), hw, "suffix cut");
    let seeds: Vec<i64> = data_values(&c.members[&old].log, hw)
        .iter()
        .map(|(_, body)| {
            // Which write this is: the one whose payload it is.
            (0..300)
                .find(|s| batch(*s, 2)[HEADER_LEN..] == body[..])
                .map(|s| s as i64)
                .unwrap_or(-1)
        })
        .collect();
    let want: Vec<i64> = (0..10).chain(200..210).collect();
    assert_eq!(
        seeds, want,
        "the isolated leader's writes are gone, the majority's kept"
    );
}

/// fdatasyncs each member's log issued since it was opened.
fn syncs(c: &Cluster) -> BTreeMap<u64, u64> {
    c.members
        .iter()
        .map(|(id, m)| (*id, m.log.stats().syncs))
        .collect()
}

/// Commits `count` batches one after the other (each waits for its commit
/// before the next is sent) and returns the fsyncs each member issued
/// meanwhile.
async fn syncs_during_sequential_commits(c: &Cluster, leader: u64, count: u64) -> Vec<u64> {
    let before = syncs(c);
    commit(c, leader, 0..count, 2).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    let after = syncs(c);
    IDS.iter().map(|id| after[id] - before[id]).collect()
}

// In written mode a commit waits for no fsync: with the log's fsync policy
// `never`, a run of commits makes no replica sync at all (an election in
// the middle flushes at its vote, hence the bound below the count rather
// than zero), while in synced mode the leader syncs once per commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_in_written_mode_commits_without_fsyncs_and_replicates_byte_for_byte() {
    const COMMITS: u64 = 40;
    let c = Cluster::start_with(ELECTION_TIMEOUT, FlushMode::Written).await;
    let leader = c.leader().await;
    let synced = syncs_during_sequential_commits(&c, leader, COMMITS).await;
    assert!(
        synced.iter().all(|&n| n < COMMITS / 4),
        "written mode synced per commit: {synced:?} fsyncs for {COMMITS} commits"
    );
    let hw = c.members[&leader].log.log_end_offset();
    let reference = batches(&c.members[&leader].log, hw);
    assert_eq!(reference.iter().filter(|b| !b.2).count(), COMMITS as usize);
    for m in c.members.values() {
        assert_eq!(batches(&m.log, hw), reference, "replica logs agree");
    }

    let c = Cluster::start_with(ELECTION_TIMEOUT, FlushMode::Synced).await;
    let leader = c.leader().await;
    let synced = syncs_during_sequential_commits(&c, leader, COMMITS).await;
    let leader_syncs = synced[IDS.iter().position(|&id| id == leader).expect("leader")];
    assert!(
        leader_syncs >= COMMITS,
        "synced mode: the leader synced {leader_syncs} times for {COMMITS} commits"
    );
}

/// The base offsets of the segment files in a partition directory.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir.join("orders-0"))
        .expect("partition dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Polls `done` until it holds, within [`DEADLINE`] (deletions follow a
/// purge openraft runs when it sees fit: there is no event to await).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Appends one committed batch of `records` records per seed in `seeds`
/// through `leader`, each after the previous one's commit.
async fn commit(c: &Cluster, leader: u64, seeds: std::ops::Range<u64>, records: usize) {
    for seed in seeds {
        c.members[&leader]
            .replica
            .append(batch(seed, records), AppendWait::Committed)
            .await
            .expect("committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_retention_log_start_is_replicated_and_every_replica_deletes_below_it() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    commit(&c, leader, 0..300, 4).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    let cut = c.members[&leader].log.retention_cut(now_ms());
    assert!(cut > 0, "the log outgrew its retention");
    assert_eq!(c.members[&leader].replica.log_start(), 0);
    c.members[&leader]
        .replica
        .advance_log_start(cut)
        .await
        .expect("log start replicated");
    for (id, m) in &c.members {
        eventually(&format!("replica {id} deletes below {cut}"), || {
            m.replica.log_start() == cut && m.log.log_start_offset() == cut
        })
        .await;
        // Same writes, same segment boundaries (nothing rolls by time
        // here): every replica's first segment is the cut.
        assert_eq!(segment_bases(&m.dir).first(), Some(&cut), "replica {id}");
        assert!(m.log.size_bytes() <= c.members[&leader].log.size_bytes() + 4096);
    }
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    let reference = batches_from(&c.members[&leader].log, cut, hw);
    assert!(reference.iter().any(|b| !b.2), "data above the cut");
    for m in c.members.values() {
        assert_eq!(
            batches_from(&m.log, cut, hw),
            reference,
            "replica logs agree"
        );
        assert!(m.log.read(cut - 1, 1).is_err(), "nothing below the cut");
    }
    // The log start survives a restart, and the restarted replica keeps
    // replicating from there.
    let follower = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let dir = c.stop(follower).await;
    c.restart(follower, dir).await;
    commit(&c, leader, 300..320, 4).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    assert_eq!(c.members[&follower].replica.log_start(), cut);
    assert_eq!(c.members[&follower].log.log_start_offset(), cut);
    assert_eq!(
        batches_from(&c.members[&follower].log, cut, hw),
        batches_from(&c.members[&leader].log, cut, hw)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_a_follower_behind_the_log_start_restarts_its_log_there_from_a_snapshot() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    commit(&c, leader, 0..20, 4).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    let lagging = *IDS.iter().find(|&&id| id != leader).expect("a follower");
    let old_end = c.members[&lagging].log.log_end_offset();
    let dir = c.stop(lagging).await;
    // An idempotent producer whose batches all end up below the cut: the
    // restarted replica must still know it, from the snapshot.
    let mut last_of_producer = None;
    for seq in 0..3 {
        let b = BatchBuilder::new(Compression::None).with_producer(77, 0, seq * 2);
        let mut b = b;
        b.push(
            1,
            Some(b"p".as_slice()),
            format!("p{seq}-0").as_bytes(),
            &[],
        );
        b.push(
            1,
            Some(b"p".as_slice()),
            format!("p{seq}-1").as_bytes(),
            &[],
        );
        let bytes = b.finish().expect("valid batch");
        let base = c.members[&leader]
            .replica
            .append(bytes.clone(), AppendWait::Committed)
            .await
            .expect("committed");
        last_of_producer = Some((bytes, base));
    }
    let (retry, retry_base) = last_of_producer.expect("written");
    let retry = BatchHeader::parse(&retry).expect("header");
    commit(&c, leader, 20..320, 4).await;
    let cut = c.members[&leader].log.retention_cut(now_ms());
    assert!(cut > old_end, "the cut passes the stopped follower's end");
    assert!(cut > retry_base, "the producer's batches are below the cut");
    c.members[&leader]
        .replica
        .advance_log_start(cut)
        .await
        .expect("log start replicated by the majority");
    for (id, m) in &c.members {
        eventually(&format!("replica {id} deletes below {cut}"), || {
            m.log.log_start_offset() == cut
        })
        .await;
    }
    c.restart(lagging, dir).await;
    commit(&c, leader, 320..325, 4).await;
    let hw = c.members[&leader].log.log_end_offset();
    c.all_at(hw).await;
    let m = &c.members[&lagging];
    assert_eq!(m.replica.log_start(), cut);
    assert_eq!(
        m.log.log_start_offset(),
        cut,
        "its log restarted at the log start"
    );
    assert_eq!(segment_bases(&m.dir).first(), Some(&cut));
    assert_eq!(
        batches_from(&m.log, cut, hw),
        batches_from(&c.members[&leader].log, cut, hw),
        "byte-identical from the log start"
    );
    let kept = |c: &Cluster| {
        c.members[&lagging]
            .log
            .check_producer(&retry)
            .expect("producer known")
            .map(|k| k.base_offset)
    };
    assert_eq!(
        kept(&c),
        Some(retry_base),
        "a retry of the producer's last batch is a duplicate on the restarted replica too"
    );
    // And it keeps its place, and its producers, after one more restart.
    let dir = c.stop(lagging).await;
    c.restart(lagging, dir).await;
    c.all_at(hw).await;
    assert_eq!(c.members[&lagging].replica.log_start(), cut);
    assert_eq!(kept(&c), Some(retry_base));
}
