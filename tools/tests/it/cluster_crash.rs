//! The kill -9 campaign: three real `rill-broker` processes in cluster mode
//! on loopback (free ports, one data directory each), a topic of 6
//! partitions with 3 replicas, and three idempotent acks=all producers of
//! `rill_client` (bootstrap list of all three brokers) writing keyed
//! records without pause. Each cycle SIGKILLs one broker (seeded RNG; the
//! first three cycles take the controller's leader, a partition leader and
//! the broker leading the fewest partitions, in a random order; later ones
//! any broker), waits until every partition takes acknowledged writes again
//! from the two left, restarts the victim on the same data directory and
//! ports, and waits until its replicas caught up with the leaders' high
//! watermarks.
//!
//! Afterwards the producers close (every record sent is then acknowledged
//! or failed: a failure fails the test), every partition is consumed from
//! the beginning, and a history checker asserts: each acknowledged record is
//! present exactly once at the partition and offset it was acknowledged
//! with, no record is read that was not acknowledged, no offset holds two
//! records, and each producer's records keep their send order within a
//! partition. Then the brokers get SIGTERM and every replica's log, opened
//! read-only from its data directory, must hold the same bytes as the
//! others up to the high watermark.
//!
//! Raft timing is shorter than the broker's defaults (election timeout
//! 1000 ms instead of 1500, heartbeat 100 ms instead of 200) to keep the CI
//! run short: 20 cycles take one to two minutes on two cores.
//!
//! Knobs: `RILL_LONG=1` runs 200 cycles, `RILL_CYCLES=N` runs N;
//! `RILL_SEED=N` replays a seed (printed first); `RILL_PARTITIONS=N` sets
//! the topic's partitions; `RILL_RAFT_DEFAULTS=1` runs the brokers with
//! their default Raft timing; `RILL_BROKER_LOG=filter`
//! sets the brokers' `RUST_LOG` (default `warn`) and
//! `RILL_BROKER_LOG_DIR=dir` keeps their stderr there (otherwise the tail
//! of each is printed when the test fails); `RUST_LOG` applies to the test
//! process (`rill_client=debug` shows the producers' retries and leader
//! changes).
//!
//! The summary line on stderr gives the cycles, the records acknowledged
//! and the failover times: from the kill to the next acknowledged write
//! (any partition), and to the moment every partition had an acknowledged
//! write again, separately for kills of a leader (of the controller or of a
//! partition) and of a broker leading nothing. A killed process's sockets
//! are closed by the kernel, so the followers see their leader's
//! connection end and elect at once (not after its lease and their
//! election timeout), and the producers resend to the new leader as soon as
//! their metadata names it, without finishing the backoff they took for
//! the old one.
//!
//! Waits on the cluster poll Metadata with a short pause (no event crosses
//! the wire); waits on acknowledgements are woken by the producers'
//! delivery callbacks. Every wait is bounded and says what it waited for.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rill_client::partitioner::partition_for_key;
use rill_client::{
    Acks, Admin, AdminConfig, Connection, ConnectionConfig, Consumer, ConsumerConfig, OffsetSpec,
    Producer, ProducerConfig, ProducerStats, RecordMetadata, SeekTo,
};
use rill_protocol::wire::{MetadataRequest, MetadataResponse};
use rill_protocol::BatchIter;
use rill_storage::io::{open_backend, IoBackendChoice};
use rill_storage::{LogConfig, PartitionLog};
use tokio::sync::{watch, Notify, Semaphore};

const TOPIC: &str = "campaign";
/// Partitions of the topic unless `RILL_PARTITIONS` says otherwise.
const PARTITIONS_DEFAULT: u32 = 6;
const REPLICATION: u16 = 3;
const BROKERS: [u32; 3] = [1, 2, 3];
const PRODUCERS: u32 = 3;
/// Keys per partition each producer writes (chosen so every partition gets
/// records: murmur2 decides where a key goes).
const KEYS_PER_PARTITION: usize = 2;
/// Records of one key a producer has unacknowledged at once: a partition
/// whose leader is gone holds up only its own keys, not the others.
const WINDOW_PER_KEY: usize = 16;
const CYCLES: usize = 20;
const CYCLES_LONG: usize = 200;
const ELECTION_TIMEOUT_MS: &str = "1000";
const HEARTBEAT_MS: &str = "100";

/// The topic's partition count (`RILL_PARTITIONS`, default
/// [`PARTITIONS_DEFAULT`]).
fn partition_count() -> u32 {
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("RILL_PARTITIONS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(PARTITIONS_DEFAULT)
    })
}

/// The Raft timing flags: the shorter ones above, or none (the broker's
/// defaults) with `RILL_RAFT_DEFAULTS=1`.
fn raft_flags() -> Vec<&'static str> {
    if std::env::var("RILL_RAFT_DEFAULTS").is_ok_and(|v| v == "1") {
        Vec::new()
    } else {
        vec![
            "--raft-election-timeout-ms",
            ELECTION_TIMEOUT_MS,
            "--raft-heartbeat-ms",
            HEARTBEAT_MS,
        ]
    }
}

/// A broker prints its start line within this.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Elections, failover and catch-up each finish within this.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);
/// Closing the producers (everything sent acknowledged or failed), reading
/// everything back, a broker's SIGTERM shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between two Metadata polls.
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// The `rill-broker` binary `cargo test --workspace` built beside `rill`.
fn broker_bin() -> PathBuf {
    let rill = PathBuf::from(env!("CARGO_BIN_EXE_rill"));
    let bin = rill.with_file_name("rill-broker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p rill-broker --bin rill-broker` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One `rill-broker` process slot: fixed ports and data directory, the
/// process itself while it runs.
struct BrokerProc {
    id: u32,
    listen: String,
    dir: PathBuf,
    /// Every run's stderr, appended: shown when the test fails.
    log: PathBuf,
    child: Option<Child>,
}

/// Three broker processes; killed (and their logs' tails printed) when the
/// test fails.
struct ProcCluster {
    peers: String,
    brokers: BTreeMap<u32, BrokerProc>,
    _tmp: tempfile::TempDir,
}

impl ProcCluster {
    fn new() -> ProcCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let peers = BROKERS
            .iter()
            .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let brokers = BROKERS
            .iter()
            .map(|&id| {
                let b = BrokerProc {
                    id,
                    listen: format!("127.0.0.1:{}", free_port()),
                    dir: tmp.path().join(format!("d{id}")),
                    log: std::env::var_os("RILL_BROKER_LOG_DIR")
                        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from)
                        .join(format!("broker-{id}.log")),
                    child: None,
                };
                (id, b)
            })
            .collect();
        ProcCluster {
            peers,
            brokers,
            _tmp: tmp,
        }
    }

    fn bootstrap(&self) -> String {
        self.brokers
            .values()
            .map(|b| b.listen.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn addr(&self, id: u32) -> &str {
        &self.brokers[&id].listen
    }

    fn running(&self) -> Vec<u32> {
        self.brokers
            .values()
            .filter(|b| b.child.is_some())
            .map(|b| b.id)
            .collect()
    }

    /// Starts broker `id` and waits for its start line.
    fn start(&mut self, id: u32) {
        let peers = self.peers.clone();
        let b = self.brokers.get_mut(&id).expect("broker slot");
        assert!(b.child.is_none(), "broker {id} already runs");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&b.log)
            .expect("broker log file");
        let mut child = Command::new(broker_bin())
            .args([
                "--node-id",
                &id.to_string(),
                "--peers",
                &peers,
                "--listen",
                &b.listen,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(raft_flags())
            .arg("--data-dir")
            .arg(&b.dir)
            .env(
                "RUST_LOG",
                std::env::var("RILL_BROKER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn rill-broker");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let outcome = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if line.starts_with("rill-broker listening on") => None,
            // No line: its stdout closed, it is exiting; say how.
            Ok(Ok(line)) => {
                if !line.is_empty() {
                    let _ = child.kill();
                }
                let status = child.wait().expect("reap");
                Some(format!(
                    "start line {line:?}, then {status}: {}",
                    describe_exit(&status)
                ))
            }
            Ok(Err(e)) => Some(format!("reading its stdout: {e}")),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Some(format!("no start line within {START_TIMEOUT:?} (killed)"))
            }
        };
        if let Some(outcome) = outcome {
            let log = std::fs::read_to_string(&b.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            panic!(
                "broker {id} did not start: {outcome}; its stderr ends with:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        b.child = Some(child);
    }

    /// SIGKILL: the process dies at once, with whatever it had not synced.
    fn kill(&mut self, id: u32) {
        let mut child = self
            .brokers
            .get_mut(&id)
            .and_then(|b| b.child.take())
            .expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM to every running broker, then each must exit 0 in time.
    fn terminate_all(&mut self) {
        let mut children = Vec::new();
        for b in self.brokers.values_mut() {
            if let Some(child) = b.child.take() {
                let status = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("run kill");
                assert!(status.success(), "kill -TERM broker {}", b.id);
                children.push((b.id, child));
            }
        }
        for (id, child) in children {
            let status = wait_exit(child, DRAIN_DEADLINE).unwrap_or_else(|| {
                panic!("broker {id} did not exit within {DRAIN_DEADLINE:?} of SIGTERM")
            });
            assert!(
                status.success(),
                "broker {id} exited with {status} after SIGTERM"
            );
        }
    }
}

/// An exit status in words: the code, or the signal (and core dump).
fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(9)) => "SIGKILL (the kernel's, e.g. out of memory)".to_owned(),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        ),
        (None, None) => "unknown".to_owned(),
    }
}

/// Waits for `child` to exit, killing it if it takes longer than `limit`.
fn wait_exit(mut child: Child, limit: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => Some(status.expect("wait")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            None
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for b in self.brokers.values_mut() {
            if let Some(mut child) = b.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for b in self.brokers.values() {
                let text = std::fs::read_to_string(&b.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("--- broker {} stderr (last {} lines) ---", b.id, tail.len());
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// One broker's Metadata answer for the topic, or `None` if it does not
/// answer (down, starting) within a second or two.
async fn metadata(addr: &str) -> Option<MetadataResponse> {
    let config = ConnectionConfig {
        client_id: "cluster-crash-probe".to_owned(),
        request_timeout: Duration::from_secs(2),
        ..ConnectionConfig::default()
    };
    let ask = async {
        let conn = Connection::connect(addr, config).await.ok()?;
        conn.metadata(MetadataRequest {
            topics: Some(vec![TOPIC.to_owned()]),
        })
        .await
        .ok()
    };
    tokio::time::timeout(Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

/// Asks broker at `addr` until `check` accepts its Metadata answer, up to
/// [`CLUSTER_DEADLINE`].
async fn await_metadata<T>(
    addr: &str,
    what: &str,
    mut check: impl FnMut(&MetadataResponse) -> Option<T>,
) -> T {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let mut last = None;
    loop {
        if let Some(m) = metadata(addr).await {
            if let Some(found) = check(&m) {
                return found;
            }
            last = Some(m);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {CLUSTER_DEADLINE:?} (asking {addr}); last answer {last:?}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// The controller's leader and each partition's leader, once `addr` knows
/// all of them and they are among `alive`.
fn leadership(m: &MetadataResponse, alive: &[u32]) -> Option<(u32, Vec<u32>)> {
    let is_alive = |id: i32| u32::try_from(id).ok().filter(|id| alive.contains(id));
    let controller = is_alive(m.controller_id)?;
    let topic = m.topics.iter().find(|t| t.name == TOPIC)?;
    if topic.partitions.len() != partition_count() as usize {
        return None;
    }
    let leaders = topic
        .partitions
        .iter()
        .map(|p| is_alive(p.leader))
        .collect::<Option<Vec<u32>>>()?;
    Some((controller, leaders))
}

/// Each partition's high watermark as `m` shows it.
fn high_watermarks(m: &MetadataResponse) -> Option<Vec<u64>> {
    let topic = m.topics.iter().find(|t| t.name == TOPIC)?;
    let mut hw = vec![0; partition_count() as usize];
    for p in &topic.partitions {
        *hw.get_mut(p.partition as usize)? = p.log_end_offset;
    }
    (topic.partitions.len() == partition_count() as usize).then_some(hw)
}

/// One acknowledged record.
#[derive(Debug, Clone, Copy)]
struct Ack {
    producer: u32,
    seq: u64,
    partition: u32,
    offset: Option<u64>,
    at: Instant,
}

/// Every delivery outcome, in the order the producers' callbacks ran.
#[derive(Default)]
struct Journal {
    acks: Mutex<Vec<Ack>>,
    errors: Mutex<Vec<String>>,
    /// Bumped on every acknowledgement: what waits on acknowledgements wake on.
    acked: watch::Sender<u64>,
}

impl Journal {
    fn record(&self, producer: u32, seq: u64, result: rill_client::Result<RecordMetadata>) {
        match result {
            Ok(meta) => {
                {
                    let mut acks = lock(&self.acks);
                    // Stamped under the lock: `at` grows along the vector.
                    acks.push(Ack {
                        producer,
                        seq,
                        partition: meta.partition,
                        offset: meta.offset,
                        at: Instant::now(),
                    });
                }
                self.acked.send_modify(|n| *n += 1);
            }
            Err(e) => lock(&self.errors).push(format!(
                "producer {producer} record {seq}: delivery failed: {e}"
            )),
        }
    }

    fn len(&self) -> usize {
        lock(&self.acks).len()
    }

    fn assert_no_errors(&self) {
        let errors = lock(&self.errors);
        assert!(
            errors.is_empty(),
            "{} delivery errors, first ones: {:#?}",
            errors.len(),
            &errors[..errors.len().min(10)]
        );
    }

    /// Waits until every partition has an acknowledgement stamped after
    /// `since` (acknowledgements from index `from` on are candidates);
    /// returns the time from `since` to the first such acknowledgement and
    /// to the moment the last partition got one.
    async fn await_all_partitions_after(
        &self,
        since: Instant,
        from: usize,
        what: &str,
    ) -> (Duration, Duration) {
        let mut rx = self.acked.subscribe();
        let deadline = tokio::time::Instant::now() + CLUSTER_DEADLINE;
        loop {
            rx.borrow_and_update();
            let mut first_per_partition = vec![None; partition_count() as usize];
            let mut first = None;
            for a in lock(&self.acks)[from..].iter().filter(|a| a.at > since) {
                first.get_or_insert(a.at);
                first_per_partition[a.partition as usize].get_or_insert(a.at);
            }
            if let Some(all) = first_per_partition
                .iter()
                .copied()
                .collect::<Option<Vec<_>>>()
            {
                let last = all.into_iter().max().expect("partitions");
                let first = first.expect("an ack");
                return (first - since, last - since);
            }
            self.assert_no_errors();
            let waiting: Vec<usize> = first_per_partition
                .iter()
                .enumerate()
                .filter(|(_, a)| a.is_none())
                .map(|(p, _)| p)
                .collect();
            assert!(
                tokio::time::timeout_at(deadline, rx.changed()).await.is_ok(),
                "{what}: partitions {waiting:?} had no acknowledged write within {CLUSTER_DEADLINE:?}"
            );
        }
    }
}

/// Keys spread so each partition gets [`KEYS_PER_PARTITION`] of them.
fn keys() -> Vec<Vec<u8>> {
    let mut per_partition = vec![0; partition_count() as usize];
    let mut keys = Vec::new();
    for i in 0u32.. {
        let key = format!("key-{i}").into_bytes();
        let p = partition_for_key(&key, partition_count()) as usize;
        if per_partition[p] < KEYS_PER_PARTITION {
            per_partition[p] += 1;
            keys.push(key);
        }
        if keys.len() == KEYS_PER_PARTITION * partition_count() as usize {
            return keys;
        }
    }
    unreachable!("murmur2 reaches every partition")
}

/// One record read back: its offset, its (producer, sequence) when the
/// value parses, and the value (for the failure message when not).
#[derive(Debug, Clone)]
struct ReadRecord {
    offset: u64,
    id: Option<(u32, u64)>,
    value: Vec<u8>,
}

fn payload(producer: u32, seq: u64) -> String {
    format!("p{producer}-s{seq}")
}

fn parse_payload(value: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (p, s) = text.strip_prefix('p')?.split_once("-s")?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// One producer: keyed records with unique payloads, round robin over the
/// keys, skipping keys whose window is full, until `stop`; then closes
/// (everything sent acknowledged or failed) and returns its counters.
async fn produce(
    id: u32,
    bootstrap: String,
    journal: Arc<Journal>,
    mut stop: watch::Receiver<bool>,
) -> (u64, ProducerStats) {
    let config = ProducerConfig {
        acks: Acks::All,
        enable_idempotence: true,
        client_id: format!("campaign-{id}"),
        ..ProducerConfig::new(bootstrap)
    };
    let producer = Producer::new(config).await.expect("producer starts");
    let keys = keys();
    let windows: Vec<Arc<Semaphore>> = keys
        .iter()
        .map(|_| Arc::new(Semaphore::new(WINDOW_PER_KEY)))
        .collect();
    let freed = Arc::new(Notify::new());
    let mut seq = 0u64;
    let mut next_key = 0usize;
    while !*stop.borrow() {
        let mut chosen = None;
        for _ in 0..keys.len() {
            let k = next_key;
            next_key = (next_key + 1) % keys.len();
            if let Ok(permit) = Arc::clone(&windows[k]).try_acquire_owned() {
                chosen = Some((k, permit));
                break;
            }
        }
        let Some((k, permit)) = chosen else {
            tokio::select! {
                _ = freed.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let journal = Arc::clone(&journal);
        let freed = Arc::clone(&freed);
        let this = seq;
        producer
            .send_with_callback(
                TOPIC,
                Some(&keys[k]),
                payload(id, this).as_bytes(),
                &[],
                move |result| {
                    journal.record(id, this, result);
                    drop(permit);
                    freed.notify_one();
                },
            )
            .await
            .unwrap_or_else(|e| panic!("producer {id}: send of record {this} refused: {e}"));
        seq += 1;
    }
    tokio::time::timeout(DRAIN_DEADLINE, producer.close())
        .await
        .unwrap_or_else(|_| panic!("producer {id}: close not done within {DRAIN_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("producer {id}: close: {e}"));
    (seq, producer.stats())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Controller,
    PartitionLeader,
    Follower,
}

/// The broker to kill for `role`, given the controller and partition
/// leaders.
fn victim_for(role: Role, controller: u32, leaders: &[u32], rng: &mut StdRng) -> u32 {
    let led = |id: u32| leaders.iter().filter(|&&l| l == id).count();
    let mut others: Vec<u32> = BROKERS
        .iter()
        .copied()
        .filter(|&b| b != controller)
        .collect();
    others.shuffle(rng);
    match role {
        Role::Controller => controller,
        // A partition leader that is not also the controller, if any.
        Role::PartitionLeader => others
            .iter()
            .copied()
            .find(|&b| led(b) > 0)
            .unwrap_or(controller),
        // The broker (not the controller) leading the fewest partitions:
        // with luck none, a pure follower.
        Role::Follower => others
            .iter()
            .copied()
            .min_by_key(|&b| led(b))
            .expect("two others"),
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Reads `partition` of every broker's data directory (read-only) and
/// returns each replica's batches' bytes up to `end` (the high watermark).
fn replica_bytes(dir: &Path, partition: u32, end: u64) -> (u64, Vec<u8>) {
    let backend = open_backend(IoBackendChoice::Std).expect("std backend");
    let log = PartitionLog::open_read_only(
        &dir.join(format!("{TOPIC}-{partition}")),
        LogConfig::default(),
        backend,
    )
    .unwrap_or_else(|e| panic!("{}: open {TOPIC}-{partition}: {e}", dir.display()));
    let log_end = log.log_end_offset();
    assert!(
        log_end >= end,
        "{}: {TOPIC}-{partition} ends at {log_end}, below the high watermark {end}",
        dir.display()
    );
    let mut bytes = Vec::new();
    let mut offset = log.log_start_offset();
    assert_eq!(offset, 0, "{}: nothing was deleted", dir.display());
    while offset < end {
        let chunk = log
            .read(offset, 1 << 20)
            .unwrap_or_else(|e| panic!("{}: read at {offset}: {e}", dir.display()));
        let mut iter = BatchIter::new(&chunk);
        for view in iter.by_ref() {
            let view = view.unwrap_or_else(|e| panic!("{}: batch at {offset}: {e}", dir.display()));
            if offset >= end {
                break;
            }
            bytes.extend_from_slice(view.as_bytes());
            offset = view.header().next_offset();
        }
        assert!(
            !iter.failed(),
            "{}: bad batch after {offset}",
            dir.display()
        );
    }
    (offset, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_a_kill_9_campaign_without_losing_or_doubling_an_acknowledged_record() {
    let started = Instant::now();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let seed: u64 = std::env::var("RILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    let cycles = match std::env::var("RILL_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        Some(n) => n,
        None if std::env::var("RILL_LONG").is_ok_and(|v| v == "1") => CYCLES_LONG,
        None => CYCLES,
    };
    eprintln!("cluster_crash: seed {seed} (RILL_SEED={seed} replays it), {cycles} cycles");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut cluster = ProcCluster::new();
    tokio::task::block_in_place(|| {
        for id in BROKERS {
            cluster.start(id);
        }
    });
    let bootstrap = cluster.bootstrap();
    // Every broker registers with the controller before topics spread.
    await_metadata(cluster.addr(1), "three registered brokers", |m| {
        (m.brokers.len() == BROKERS.len() && m.controller_id > 0).then_some(())
    })
    .await;
    let admin = Admin::connect(AdminConfig::new(bootstrap.clone()))
        .await
        .expect("admin connects");
    admin
        .create_replicated_topic(TOPIC, partition_count(), REPLICATION, &[])
        .await
        .expect("create the topic");
    for id in BROKERS {
        await_metadata(cluster.addr(id), "every partition led", |m| {
            leadership(m, &BROKERS)
        })
        .await;
    }

    let journal = Arc::new(Journal::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            tokio::spawn(produce(
                id,
                bootstrap.clone(),
                Arc::clone(&journal),
                stop_rx.clone(),
            ))
        })
        .collect();
    journal
        .await_all_partitions_after(started, 0, "warm-up")
        .await;

    let mut roles: Vec<Role> = vec![Role::Controller, Role::PartitionLeader, Role::Follower];
    roles.shuffle(&mut rng);
    let mut first_ack = Vec::new();
    let mut all_after_leader_kill = Vec::new();
    let mut all_after_follower_kill = Vec::new();
    let (mut controller_kills, mut leader_kills, mut pure_follower_kills) = (0, 0, 0);
    for cycle in 0..cycles {
        let alive = cluster.running();
        assert_eq!(alive.len(), BROKERS.len(), "all brokers run between cycles");
        let probe = alive[rng.random_range(0..alive.len())];
        let (controller, leaders) = await_metadata(
            cluster.addr(probe),
            &format!("cycle {cycle}: the controller and every partition led"),
            |m| leadership(m, &alive),
        )
        .await;
        let victim = match roles.get(cycle) {
            Some(&role) => victim_for(role, controller, &leaders, &mut rng),
            None => BROKERS[rng.random_range(0..BROKERS.len())],
        };
        let led = leaders.iter().filter(|&&l| l == victim).count();
        let what = if victim == controller {
            controller_kills += 1;
            "the controller's leader"
        } else if led > 0 {
            leader_kills += 1;
            "a partition leader"
        } else {
            pure_follower_kills += 1;
            "a follower of every partition"
        };
        eprintln!(
            "cycle {cycle}: kill -9 broker {victim} ({what}; leads {led} partitions; controller {controller}; leaders {leaders:?}; {} acks so far)",
            journal.len()
        );

        let from = journal.len();
        let killed_at = Instant::now();
        tokio::task::block_in_place(|| cluster.kill(victim));
        let survivors = cluster.running();
        let what = format!("cycle {cycle}: writes after broker {victim}'s kill");
        let ((first, all), elected) = tokio::join!(
            journal.await_all_partitions_after(killed_at, from, &what),
            async {
                await_metadata(
                    cluster.addr(survivors[0]),
                    &format!("cycle {cycle}: new leaders among {survivors:?}"),
                    |m| leadership(m, &survivors),
                )
                .await;
                killed_at.elapsed()
            }
        );
        eprintln!(
            "cycle {cycle}: next acknowledged write {first:?} after the kill, every partition written again after {all:?} (broker {} named live leaders after {elected:?})",
            survivors[0]
        );
        first_ack.push(first);
        if led > 0 || victim == controller {
            all_after_leader_kill.push(all);
        } else {
            all_after_follower_kill.push(all);
        }

        // The leaders' high watermarks now: the returning broker must reach
        // them.
        let survivor = survivors[0];
        let target = await_metadata(
            cluster.addr(survivor),
            &format!("cycle {cycle}: leaders among the survivors"),
            |m| leadership(m, &survivors).map(|(_, l)| l),
        )
        .await;
        let mut leader_hw = vec![0; partition_count() as usize];
        for (p, leader) in target.iter().enumerate() {
            let hw = await_metadata(
                cluster.addr(*leader),
                &format!("cycle {cycle}: partition {p}'s leader answers"),
                high_watermarks,
            )
            .await;
            leader_hw[p] = hw[p];
        }
        tokio::task::block_in_place(|| cluster.start(victim));
        await_metadata(
            cluster.addr(victim),
            &format!("cycle {cycle}: broker {victim} back and caught up to {leader_hw:?}"),
            |m| {
                let hw = high_watermarks(m)?;
                (m.controller_id > 0 && hw.iter().zip(&leader_hw).all(|(h, l)| h >= l))
                    .then_some(())
            },
        )
        .await;
        journal.assert_no_errors();
    }

    // Stop the load: every record sent is then acknowledged or failed.
    stop_tx.send_replace(true);
    let mut sent = 0;
    for (id, task) in producers.into_iter().enumerate() {
        let (n, stats) = task.await.expect("producer task");
        eprintln!("producer {id}: {n} records sent; {stats:?}");
        sent += n;
    }
    journal.assert_no_errors();
    let acks = std::mem::take(&mut *lock(&journal.acks));
    assert_eq!(
        acks.len() as u64,
        sent,
        "every record sent was acknowledged"
    );

    // Read everything back.
    let partitions: Vec<u32> = (0..partition_count()).collect();
    let ends: Vec<u64> = admin
        .list_offsets(TOPIC, &partitions, OffsetSpec::Latest)
        .await
        .expect("end offsets")
        .iter()
        .map(|o| o.offset)
        .collect();
    let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap.clone()))
        .await
        .expect("consumer");
    consumer.assign(partitions.iter().map(|&p| (TOPIC.to_owned(), p)).collect());
    for &p in &partitions {
        consumer
            .seek(TOPIC, p, SeekTo::Offset(0))
            .await
            .expect("seek");
    }
    let mut read: Vec<Vec<ReadRecord>> = vec![Vec::new(); partition_count() as usize];
    // Bounded by progress: a long run has much to read.
    let read_started = Instant::now();
    let mut progress_at = Instant::now();
    while partitions
        .iter()
        .any(|&p| consumer.position(TOPIC, p).unwrap_or(0) < ends[p as usize])
    {
        assert!(
            progress_at.elapsed() < DRAIN_DEADLINE,
            "reading back to {ends:?}: nothing new for {DRAIN_DEADLINE:?}, at {:?}",
            partitions
                .iter()
                .map(|&p| consumer.position(TOPIC, p))
                .collect::<Vec<_>>()
        );
        let records = consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll");
        if !records.is_empty() {
            progress_at = Instant::now();
        }
        records
            .for_each(|r| {
                read[r.partition as usize].push(ReadRecord {
                    offset: r.offset,
                    id: parse_payload(r.value),
                    value: r.value.to_vec(),
                })
            })
            .expect("records decode");
    }

    let read_took = read_started.elapsed();

    // The history checker.
    let mut found: HashMap<(u32, u64), Vec<(u32, u64)>> = HashMap::new();
    for (p, records) in read.iter().enumerate() {
        let mut last_offset = None;
        let mut last_seq: HashMap<u32, u64> = HashMap::new();
        for ReadRecord { offset, id, value } in records {
            assert!(
                last_offset.is_none_or(|l| l < *offset),
                "partition {p}: offset {offset} read after {last_offset:?} (two records at one offset, or out of order)"
            );
            last_offset = Some(*offset);
            let (producer, seq) = id.unwrap_or_else(|| {
                panic!(
                    "partition {p} offset {offset}: a record no producer wrote: {:?}",
                    String::from_utf8_lossy(value)
                )
            });
            if let Some(previous) = last_seq.insert(producer, seq) {
                assert!(
                    previous < seq,
                    "partition {p}: producer {producer}'s record {seq} at offset {offset} after its record {previous}"
                );
            }
            found
                .entry((producer, seq))
                .or_default()
                .push((p as u32, *offset));
        }
    }
    let mut without_offset = 0;
    for a in &acks {
        let at = found.remove(&(a.producer, a.seq)).unwrap_or_default();
        let wanted = match a.offset {
            Some(o) => vec![(a.partition, o)],
            None => {
                without_offset += 1;
                at.iter()
                    .filter(|(p, _)| *p == a.partition)
                    .copied()
                    .collect()
            }
        };
        assert!(
            at.len() == 1 && at == wanted,
            "producer {}'s record {} was acknowledged at partition {} offset {:?} but read at {at:?}",
            a.producer,
            a.seq,
            a.partition,
            a.offset
        );
    }
    assert!(
        found.is_empty(),
        "{} records read that were never acknowledged, e.g. {:?}",
        found.len(),
        found.iter().take(5).collect::<Vec<_>>()
    );
    let last_acked: Vec<u64> = (0..partition_count())
        .map(|p| {
            acks.iter()
                .filter(|a| a.partition == p)
                .filter_map(|a| a.offset)
                .max()
                .map_or(0, |o| o + 1)
        })
        .collect();

    // Every replica caught up, then a clean stop, then the logs on disk.
    for id in BROKERS {
        await_metadata(
            cluster.addr(id),
            &format!("broker {id} caught up to {ends:?}"),
            |m| {
                let hw = high_watermarks(m)?;
                hw.iter().zip(&ends).all(|(h, e)| h >= e).then_some(())
            },
        )
        .await;
    }
    drop(consumer);
    drop(admin);
    tokio::task::block_in_place(|| cluster.terminate_all());
    for p in 0..partition_count() {
        let end = ends[p as usize];
        assert!(
            end >= last_acked[p as usize],
            "partition {p}: high watermark {end} below the last acknowledged offset"
        );
        let replicas: Vec<(u32, u64, Vec<u8>)> = BROKERS
            .iter()
            .map(|&id| {
                let (covered, bytes) = replica_bytes(&cluster.brokers[&id].dir, p, end);
                (id, covered, bytes)
            })
            .collect();
        let (first_id, first_covered, first) = &replicas[0];
        for (id, covered, bytes) in &replicas[1..] {
            assert_eq!(
                covered, first_covered,
                "partition {p}: broker {id}'s batches end at {covered}, broker {first_id}'s at {first_covered}"
            );
            if bytes != first {
                let at = bytes
                    .iter()
                    .zip(first.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(bytes.len().min(first.len()));
                panic!(
                    "partition {p}: broker {id}'s log differs from broker {first_id}'s at byte {at} ({} vs {} bytes up to offset {end})",
                    bytes.len(),
                    first.len()
                );
            }
        }
    }

    first_ack.sort();
    all_after_leader_kill.sort();
    all_after_follower_kill.sort();
    let spread = |d: &[Duration]| match d {
        [] => "none".to_owned(),
        _ => format!(
            "median {:?} max {:?} (n={})",
            percentile(d, 0.5),
            d[d.len() - 1],
            d.len()
        ),
    };
    eprintln!(
        "cluster_crash summary: seed {seed}, {cycles} cycles (killed the controller's leader {controller_kills}x, another partition leader {leader_kills}x, a broker leading nothing {pure_follower_kills}x), {} records acknowledged ({without_offset} without an offset); kill -> next acknowledged write: {}; kill -> every partition written again: after a leader's kill {}, after a follower's kill {}; read back in {read_took:?}; ran {:?}",
        acks.len(),
        spread(&first_ack),
        spread(&all_after_leader_kill),
        spread(&all_after_follower_kill),
        started.elapsed()
    );
    if cycles >= 3 {
        assert!(
            controller_kills > 0 && !all_after_leader_kill.is_empty(),
            "the mix killed the controller's leader and a partition leader"
        );
    }
}
