//! A real network partition: three `rill-broker` processes, each in its own
//! network namespace, joined by a Linux bridge in a fourth ("hub")
//! namespace; the test process reaches them over one veth from the root
//! namespace to the hub, with an address in the same private /24. All of it
//! is made here with `ip` and removed at the end (a guard, also on failure).
//!
//! Acks=all idempotent producers write unique records to a 3-partition,
//! RF-3 topic and journal every acknowledgement. The leader of partition 0
//! is then cut off from the other two brokers (blackhole routes inside the
//! namespaces: the brokers cannot reach each other, the test still reaches
//! all of them). Checked while cut: the old leader stops acknowledging
//! within a bound (its writes fail, never succeed), its Metadata stops
//! naming it, the majority elects a leader with a higher epoch that
//! acknowledges writes. Acks=leader writes sent to the cut-off leader make
//! an unreplicated suffix on it. Healed: the old leader rejoins (and takes
//! its preferred leadership back), its suffix is gone. After a SIGTERM of
//! every broker, a history checker reads every replica's segment files:
//! identical byte for byte up to the high watermark, every acknowledged
//! record exactly once at its acknowledged offset, each producer's records
//! in order per partition, none of the suffix.
//!
//! Needs root (network namespaces): where they cannot be made the test says
//! why and passes without running; `RILL_REQUIRE_NETNS=1` makes that a
//! failure instead. The brokers' data directories and logs are kept when it
//! fails, or always with `RILL_NETSPLIT_KEEP=1`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_client::partitioner::partition_for_key;
use rill_client::{
    Acks, Admin, AdminConfig, ClientError, Connection, ConnectionConfig, Producer, ProducerConfig,
    RecordMetadata,
};
use rill_protocol::wire::{
    self, ErrorCode, MetadataPartition, MetadataRequest, MetadataResponse, ProducePartition,
    ProduceRequest, ProduceTopic,
};
use rill_protocol::{BatchBuilder, BatchHeader, BatchView, Compression};
use tokio::sync::watch;

const TOPIC: &str = "netsplit";
const PARTITIONS: u32 = 3;
const IDS: [u32; 3] = [1, 2, 3];
const ELECTION_TIMEOUT: Duration = Duration::from_millis(1_000);
const HEARTBEAT: Duration = Duration::from_millis(100);
const CLIENT_PORT: u16 = 9092;
const PEER_PORT: u16 = 19100;
/// The test process's address in the private /24.
const CLIENT_HOST: u8 = 100;
const PRODUCERS: usize = 2;
/// Pause between two sends of one producer: a steady load, not a flood.
const SEND_EVERY: Duration = Duration::from_millis(4);
/// Records acknowledged per partition before the cut, and by the new
/// leaders after it.
const ACKS_PER_PHASE: usize = 100;
/// Bounds every wait for the cluster: start, elections, catch-up, exit.
const DEADLINE: Duration = Duration::from_secs(30);
/// The cut-off leader must have stopped acknowledging within this of the
/// cut: its quorum lease is one election timeout; the rest is margin for
/// a 2-core machine shared with builds.
const STOP_ACKING_BOUND: Duration = Duration::from_millis(3 * 1_000 + 1_000);
/// The majority must have elected a new leader within this of the cut:
/// a follower campaigns between one and two election timeouts after the
/// last heartbeat (pre-vote, and the other follower's own lease of one
/// election timeout), plus margin.
const ELECTION_BOUND: Duration = Duration::from_millis(3 * 1_000 + 2_000);
/// The hand-back of partition 0 to its preferred replica after the heal:
/// a leader checks every ten seconds, and a transfer can fail once.
const HANDBACK_BOUND: Duration = Duration::from_secs(45);
/// The producers' request timeout (and the broker's `timeout_ms` for
/// their writes): a write stuck at the cut-off leader comes back after
/// this, and only then does the producer resend it to the new leader.
/// (With the default 30 s the first ack of the new leader came 30.1 s after
/// the cut, though it was elected 3.4 s after it: the cut-off leader holds
/// an appended acks=all write until `timeout_ms`, lease lapsed or not, and
/// the producer sends a partition nothing new while a request of it is in
/// flight.)
const PRODUCER_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The majority must acknowledge writes this soon after the cut: an
/// election, then the producers' stuck requests timing out, then their
/// metadata refresh.
const NEW_LEADER_ACK_BOUND: Duration = Duration::from_secs(15);
/// `timeout_ms` of the probes' writes to the cut-off leader.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two probe writes.
const PROBE_EVERY: Duration = Duration::from_millis(20);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------
// The private network

/// Runs `ip ARGS`, answering its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The namespaces, bridge and veths of one run; dropping it removes them
/// (deleting a namespace deletes the veths in it, and a veth's peer with it).
struct Net {
    pid: u32,
    /// The third octet of 10.77.<subnet>.0/24.
    subnet: u8,
    /// Made so far, for removal.
    namespaces: Vec<String>,
    root_veth: Option<String>,
}

impl Net {
    fn hub(&self) -> String {
        format!("rill-{}-hub", self.pid)
    }

    fn ns(&self, id: u32) -> String {
        format!("rill-{}-b{id}", self.pid)
    }

    fn host(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.subnet)
    }

    fn broker_host(&self, id: u32) -> String {
        self.host(u8::try_from(id).expect("small id"))
    }

    fn client_addr(&self, id: u32) -> String {
        format!("{}:{CLIENT_PORT}", self.broker_host(id))
    }

    /// Makes the network, or answers why it cannot be made here (the test
    /// is then skipped). Only the first namespace's failure is such a
    /// reason: once one could be made, any later failure is a real one.
    fn build() -> Result<Net, String> {
        let pid = std::process::id();
        let subnet = free_subnet(pid)?;
        let mut net = Net {
            pid,
            subnet,
            namespaces: Vec::new(),
            root_veth: None,
        };
        let hub = net.hub();
        // A namespace of a crashed earlier run with this pid.
        let _ = ip(&["netns", "del", &hub]);
        ip(&["netns", "add", &hub]).map_err(|e| format!("cannot make a network namespace: {e}"))?;
        net.namespaces.push(hub.clone());
        net.must(&["-n", &hub, "link", "set", "lo", "up"]);
        net.must(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        net.must(&["-n", &hub, "link", "set", "br0", "up"]);
        for id in IDS {
            let ns = net.ns(id);
            let _ = ip(&["netns", "del", &ns]);
            net.must(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            net.must(&["-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("b{id}");
            net.must(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            net.must(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            net.must(&["-n", &hub, "link", "set", &port, "up"]);
            let addr = format!("{}/24", net.broker_host(id));
            net.must(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            net.must(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        // The test process's own way in: one veth from the root namespace
        // to the hub's bridge (name at most 15 bytes).
        let root = format!("rill{pid}c");
        let _ = ip(&["link", "del", &root]);
        net.must(&[
            "link", "add", &root, "type", "veth", "peer", "name", "client", "netns", &hub,
        ]);
        net.root_veth = Some(root.clone());
        net.must(&["-n", &hub, "link", "set", "client", "master", "br0"]);
        net.must(&["-n", &hub, "link", "set", "client", "up"]);
        let addr = format!("{}/24", net.host(CLIENT_HOST));
        net.must(&["addr", "add", &addr, "dev", &root]);
        net.must(&["link", "set", &root, "up"]);
        Ok(net)
    }

    fn must(&self, args: &[&str]) {
        if let Err(e) = ip(args) {
            panic!("building the test network: {e}");
        }
    }

    /// Cuts broker `isolated` off from the other brokers (both ways): each
    /// side's packets to the other are dropped by a blackhole route in its
    /// own namespace. The test process still reaches every broker.
    fn cut(&self, isolated: u32) {
        for other in IDS.into_iter().filter(|id| *id != isolated) {
            let to_other = format!("{}/32", self.broker_host(other));
            let to_isolated = format!("{}/32", self.broker_host(isolated));
            self.must(&[
                "-n",
                &self.ns(isolated),
                "route",
                "add",
                "blackhole",
                &to_other,
            ]);
            self.must(&[
                "-n",
                &self.ns(other),
                "route",
                "add",
                "blackhole",
                &to_isolated,
            ]);
        }
    }

    fn heal(&self, isolated: u32) {
        for other in IDS.into_iter().filter(|id| *id != isolated) {
            let to_other = format!("{}/32", self.broker_host(other));
            let to_isolated = format!("{}/32", self.broker_host(isolated));
            self.must(&[
                "-n",
                &self.ns(isolated),
                "route",
                "del",
                "blackhole",
                &to_other,
            ]);
            self.must(&[
                "-n",
                &self.ns(other),
                "route",
                "del",
                "blackhole",
                &to_isolated,
            ]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(root) = self.root_veth.take() {
            // Usually gone already with its peer; removed first so no
            // address of ours outlives the run in the root namespace.
            let _ = ip(&["link", "del", &root]);
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("netsplit: removing namespace {ns}: {e}");
            }
        }
    }
}

/// A 10.77.x.0/24 that nothing in the root namespace uses.
fn free_subnet(pid: u32) -> Result<u8, String> {
    let taken = format!(
        "{}{}",
        ip_output(&["-4", "-o", "addr", "show"]),
        ip_output(&["-4", "route", "show", "table", "all"])
    );
    if taken.contains("10.77.0.0/16") || taken.contains("10.0.0.0/8") {
        return Err("10.77.0.0/16 is in use on this machine".into());
    }
    let start = pid % 200;
    (0..200)
        .map(|i| u8::try_from(20 + (start + i) % 200).expect("below 256"))
        .find(|x| !taken.contains(&format!("10.77.{x}.")))
        .ok_or_else(|| "no free 10.77.x.0/24 on this machine".into())
}

// ---------------------------------------------------------------------
// The brokers

/// The `rill-broker` binary built beside `rill`.
fn broker_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rill")).with_file_name("rill-broker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p rill-broker --bin rill-broker` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The three broker processes; dropping it kills what still runs, and on a
/// failure prints the end of each broker's log.
struct Brokers {
    /// Kept (not removed) when the test fails, for its logs.
    dir: Option<tempfile::TempDir>,
    children: BTreeMap<u32, Child>,
}

impl Brokers {
    fn path(&self) -> &Path {
        self.dir.as_ref().expect("the brokers' directory").path()
    }

    fn data_dir(&self, id: u32) -> PathBuf {
        self.path().join(format!("d{id}"))
    }

    fn log_file(&self, id: u32) -> PathBuf {
        self.path().join(format!("broker-{id}.log"))
    }

    fn start(net: &Net) -> Brokers {
        let mut brokers = Brokers {
            dir: Some(tempfile::tempdir().expect("tempdir")),
            children: BTreeMap::new(),
        };
        let peers = IDS
            .iter()
            .map(|id| format!("{id}@{}:{PEER_PORT}", net.broker_host(*id)))
            .collect::<Vec<_>>()
            .join(",");
        let mut started = Vec::new();
        for id in IDS {
            let log = File::create(brokers.log_file(id)).expect("broker log file");
            let mut child = Command::new("ip")
                .args(["netns", "exec", &net.ns(id)])
                .arg(broker_bin())
                .args(["--node-id", &id.to_string(), "--peers", &peers])
                .args(["--listen", &net.client_addr(id)])
                .args(["--metrics-addr", "127.0.0.1:0"])
                .arg("--data-dir")
                .arg(brokers.data_dir(id))
                .args([
                    "--raft-election-timeout-ms",
                    &ELECTION_TIMEOUT.as_millis().to_string(),
                    "--raft-heartbeat-ms",
                    &HEARTBEAT.as_millis().to_string(),
                ])
                .env("RUST_LOG", "info,openraft::raft::responder=error")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("spawn ip netns exec rill-broker");
            let stdout = child.stdout.take().expect("stdout piped");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
            });
            brokers.children.insert(id, child);
            started.push((id, rx));
        }
        for (id, rx) in started {
            let line = rx
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("broker {id} printed no start line within {DEADLINE:?}"))
                .expect("start line");
            assert!(
                line.starts_with("rill-broker listening on"),
                "broker {id}: {line:?}"
            );
        }
        brokers
    }

    /// SIGTERM to every broker; each must exit 0 (a clean shutdown) in time.
    fn terminate(&mut self) {
        for (id, child) in &self.children {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "SIGTERM to broker {id}");
        }
        for (id, mut child) in std::mem::take(&mut self.children) {
            let deadline = Instant::now() + DEADLINE;
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait for broker") {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("broker {id} did not exit within {DEADLINE:?} of SIGTERM");
                }
                std::thread::sleep(POLL);
            };
            assert!(status.success(), "broker {id} exited with {status}");
        }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in IDS {
                let log = std::fs::read_to_string(self.log_file(id)).unwrap_or_default();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| !l.contains("progress_responder"))
                    .collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("---- broker {id} log, last {} lines ----", tail.len());
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
        if std::thread::panicking() || std::env::var_os("RILL_NETSPLIT_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "netsplit: data directories and logs kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------
// Watching the cluster

async fn metadata(addr: &str) -> Result<MetadataResponse, ClientError> {
    let config = ConnectionConfig {
        request_timeout: Duration::from_secs(2),
        ..ConnectionConfig::default()
    };
    let ask = async {
        let conn = Connection::connect(addr, config).await?;
        conn.metadata(MetadataRequest {
            topics: Some(vec![TOPIC.to_owned()]),
        })
        .await
    };
    match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(answer) => answer,
        Err(_) => Err(ClientError::Timeout {
            after: Duration::from_secs(3),
        }),
    }
}

async fn metadata_of(net: &Net, id: u32) -> (u32, Result<MetadataResponse, ClientError>) {
    (id, metadata(&net.client_addr(id)).await)
}

fn partition(m: &MetadataResponse, p: u32) -> Option<&MetadataPartition> {
    m.topics
        .iter()
        .find(|t| t.name == TOPIC)?
        .partitions
        .iter()
        .find(|x| x.partition == p)
}

/// Asks broker `id` for Metadata until `check` accepts the answer (the
/// cluster's state is only seen through it), up to `bound`.
async fn await_metadata<T>(
    net: &Net,
    id: u32,
    what: &str,
    bound: Duration,
    mut check: impl FnMut(&MetadataResponse) -> Option<T>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        let answer = metadata(&net.client_addr(id)).await;
        if let Some(found) = answer.as_ref().ok().and_then(&mut check) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what} (asking broker {id}): not within {bound:?}; last answer {answer:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `check` holds for the journal, up to `bound`.
async fn await_journal(
    journal: &Mutex<Journal>,
    what: &str,
    bound: Duration,
    check: impl Fn(&Journal) -> bool,
) {
    let deadline = Instant::now() + bound;
    loop {
        {
            let j = journal.lock().expect("journal");
            if check(&j) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {bound:?} ({} acks, {} failures so far; last failures {:?})",
                j.acks.len(),
                j.failures.len(),
                &j.failures[j.failures.len().saturating_sub(3)..]
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------
// The load and its journal

fn value(producer: usize, seq: u64) -> String {
    format!("p{producer}-{seq:09}")
}

fn parse_value(v: &str) -> Option<(usize, u64)> {
    let (p, seq) = v.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

#[derive(Debug, Clone)]
struct Ack {
    producer: usize,
    seq: u64,
    partition: u32,
    offset: Option<u64>,
    /// When the request that delivered it was queued (its last attempt).
    sent_at: Option<Instant>,
    acked_at: Instant,
}

#[derive(Debug, Default)]
struct Journal {
    acks: Vec<Ack>,
    /// Records that failed for good: (producer, seq, error).
    failures: Vec<(usize, u64, String)>,
    /// Records buffered by each producer (sequence numbers 0..sent).
    sent: [u64; PRODUCERS],
}

impl Journal {
    /// Acks of `partition` whose request was sent after `after`.
    fn acked_since(&self, partition: u32, after: Instant) -> usize {
        self.acks
            .iter()
            .filter(|a| a.partition == partition && a.sent_at.is_some_and(|s| s > after))
            .count()
    }
}

/// One producer's loop: records round-robin over the partitions, each
/// outcome journaled, until `stop`.
async fn produce(
    id: usize,
    producer: Arc<Producer>,
    journal: Arc<Mutex<Journal>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SEND_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A key per partition (the producer's murmur2 partitioner), so the
    // records go round-robin over the partitions through the callback API.
    let keys: Vec<String> = (0..PARTITIONS)
        .map(|p| {
            (0u32..)
                .map(|k| format!("k{k}"))
                .find(|k| partition_for_key(k.as_bytes(), PARTITIONS) == p)
                .expect("a key for every partition")
        })
        .collect();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let key = &keys[usize::try_from(seq % u64::from(PARTITIONS)).expect("small")];
        let v = value(id, seq);
        let j = Arc::clone(&journal);
        let outcome = move |r: Result<RecordMetadata, ClientError>| {
            let mut j = j.lock().expect("journal");
            match r {
                Ok(m) => j.acks.push(Ack {
                    producer: id,
                    seq,
                    partition: m.partition,
                    offset: m.offset,
                    sent_at: m.sent_at,
                    acked_at: Instant::now(),
                }),
                Err(e) => j.failures.push((id, seq, e.to_string())),
            }
        };
        producer
            .send_with_callback(TOPIC, Some(key.as_bytes()), v.as_bytes(), &[], outcome)
            .await
            .unwrap_or_else(|e| panic!("producer {id} refused record {seq}: {e}"));
        journal.lock().expect("journal").sent[id] = seq + 1;
        seq += 1;
    }
}

// ---------------------------------------------------------------------
// Probes: writes sent straight to the leader that is cut off

#[derive(Debug, Clone)]
struct ProbeWrite {
    value: String,
    acks: wire::Acks,
    sent: Instant,
    answered: Instant,
    /// The base offset, or why it was refused.
    outcome: Result<u64, String>,
}

/// Sends one-record batches (not idempotent) to partition 0 at `addr`
/// with `acks`, one at a time, until `stop`.
async fn probe(
    addr: String,
    acks: wire::Acks,
    name: &'static str,
    log: Arc<Mutex<Vec<ProbeWrite>>>,
    mut stop: watch::Receiver<bool>,
) {
    let config = ConnectionConfig {
        request_timeout: PROBE_TIMEOUT + Duration::from_secs(3),
        ..ConnectionConfig::default()
    };
    let mut conn: Option<Connection> = None;
    for n in 0u64.. {
        if *stop.borrow() {
            return;
        }
        let value = format!("probe-{name}-{n:06}");
        let sent = Instant::now();
        let outcome = async {
            if conn.as_ref().is_none_or(Connection::is_closed) {
                conn = Some(
                    Connection::connect(&addr, config.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut builder = BatchBuilder::new(Compression::None);
            builder.push(0, None, value.as_bytes(), &[]);
            let request = ProduceRequest {
                acks,
                timeout_ms: u32::try_from(PROBE_TIMEOUT.as_millis()).expect("small"),
                topics: vec![ProduceTopic {
                    name: TOPIC.to_owned(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        records: builder.finish_into_mut().expect("a batch"),
                    }],
                }],
            };
            let answer = conn
                .as_ref()
                .expect("connected")
                .produce(request)
                .await
                .map_err(|e| e.to_string())?;
            let p = answer
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or("an empty answer")?;
            if p.error == ErrorCode::None {
                Ok(p.base_offset)
            } else {
                Err(format!("{:?}", p.error))
            }
        }
        .await;
        log.lock().expect("probe log").push(ProbeWrite {
            value,
            acks,
            sent,
            answered: Instant::now(),
            outcome,
        });
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

// ---------------------------------------------------------------------
// The logs on disk

/// One data record of a replica's log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogRecord {
    offset: u64,
    value: String,
    leader_epoch: u32,
}

/// Partition `p`'s log in `data_dir`, up to the offset `hw`: its bytes
/// (segment files in order, cut at the batch that ends at `hw`) and its
/// data records.
fn read_log(data_dir: &Path, p: u32, hw: u64) -> (Vec<u8>, Vec<LogRecord>) {
    let dir = data_dir.join(format!("{TOPIC}-{p}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|f| f.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut bytes = Vec::new();
    let mut records = Vec::new();
    let mut next = None;
    'segments: for segment in segments {
        let data = std::fs::read(&segment).expect("segment file");
        let mut at = 0usize;
        while next != Some(hw) {
            let Some(rest) = data.get(at..).filter(|r| !r.is_empty()) else {
                continue 'segments;
            };
            let Ok(header) = BatchHeader::parse(rest) else {
                continue 'segments;
            };
            let len = header.batch_length as usize;
            let Some(whole) = rest.get(..len) else {
                continue 'segments;
            };
            if let Some(expected) = next {
                assert_eq!(
                    header.base_offset,
                    expected,
                    "{}: a gap in the offsets",
                    segment.display()
                );
            }
            assert!(
                header.next_offset() <= hw,
                "{}: a batch across the high watermark {hw}: {header:?}",
                segment.display()
            );
            let view = BatchView::new(whole).expect("a whole batch");
            if !header.is_control() {
                for r in view.validate_full().expect("a valid batch").iter() {
                    records.push(LogRecord {
                        offset: r.offset,
                        value: String::from_utf8_lossy(r.value()).into_owned(),
                        leader_epoch: header.leader_epoch,
                    });
                }
            }
            bytes.extend_from_slice(whole);
            next = Some(header.next_offset());
            at += len;
        }
        break;
    }
    assert!(
        hw == 0 || next == Some(hw),
        "{}: the log ends at {next:?}, short of the high watermark {hw}",
        dir.display()
    );
    (bytes, records)
}

// ---------------------------------------------------------------------
// The test

#[test]
fn a_leader_cut_off_by_a_network_partition_stops_acking_and_loses_only_its_unreplicated_suffix() {
    let net = match Net::build() {
        Ok(net) => net,
        Err(why) => {
            let msg = format!("netsplit test skipped: {why} (it needs root and `ip netns`)");
            assert!(std::env::var_os("RILL_REQUIRE_NETNS").is_none(), "{msg}");
            eprintln!("{msg}");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Declared after `net`: dropped before it, so the brokers are gone
    // before their namespaces are.
    let mut brokers = Brokers::start(&net);
    let started = Instant::now();
    let run = runtime.block_on(scenario(&net));
    brokers.terminate();
    check(&net, &brokers, &run);
    eprintln!("netsplit: whole run {:?}", started.elapsed());
}

/// What the scenario saw, for the checker.
struct Run {
    journal: Journal,
    probes: Vec<ProbeWrite>,
    /// Partition 0's leader before the cut and its epoch.
    old_leader: u32,
    old_epoch: u32,
    new_epoch: u32,
    cut_at: Instant,
    healed_at: Instant,
    /// Each partition's high watermark at the end.
    high_watermarks: BTreeMap<u32, u64>,
}

async fn scenario(net: &Net) -> Run {
    let bootstrap = IDS
        .iter()
        .map(|id| net.client_addr(*id))
        .collect::<Vec<_>>()
        .join(",");

    // Every broker registered, a controller, then the topic, and every
    // partition led by its preferred replica with all three in sync.
    await_metadata(net, 1, "three registered brokers", DEADLINE, |m| {
        (m.brokers.len() == 3 && m.controller_id > 0).then_some(())
    })
    .await;
    let admin = Admin::connect(AdminConfig::new(bootstrap.clone()))
        .await
        .expect("admin connects");
    admin
        .create_replicated_topic(TOPIC, PARTITIONS, 3, &[])
        .await
        .expect("topic created");
    // Every partition led by its preferred replica (as broker 1 sees it),
    // with all three replicas in sync (as its leader says).
    let first = await_metadata(net, 1, "preferred leaders", DEADLINE, |m| {
        let preferred = (0..PARTITIONS).all(|p| {
            partition(m, p)
                .is_some_and(|x| x.replicas.len() == 3 && x.replicas.first() == Some(&x.leader))
        });
        preferred.then(|| leaders(m)).flatten()
    })
    .await;
    for (&p, &leader) in &first {
        await_metadata(net, leader, "all replicas in sync", DEADLINE, |m| {
            partition(m, p)
                .filter(|x| x.leader == i32::try_from(leader).expect("id") && x.isr.len() == 3)
                .map(|_| ())
        })
        .await;
    }
    let old_leader = first[&0];
    let old_epoch = await_metadata(
        net,
        old_leader,
        "partition 0's leader naming itself",
        DEADLINE,
        |m| {
            partition(m, 0)
                .filter(|x| x.leader == i32::try_from(old_leader).expect("id"))
                .map(|x| x.leader_epoch)
        },
    )
    .await;
    let majority: Vec<u32> = IDS.into_iter().filter(|id| *id != old_leader).collect();
    eprintln!("netsplit: partition 0 led by broker {old_leader} at epoch {old_epoch}");

    // The load.
    let journal = Arc::new(Mutex::new(Journal::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut producers = Vec::new();
    let mut tasks = Vec::new();
    for id in 0..PRODUCERS {
        let config = ProducerConfig {
            acks: Acks::All,
            request_timeout: PRODUCER_REQUEST_TIMEOUT,
            client_id: format!("netsplit-{id}"),
            ..ProducerConfig::new(bootstrap.clone())
        };
        assert!(config.idempotent(), "the producers are idempotent");
        let producer = Arc::new(Producer::new(config).await.expect("producer starts"));
        producers.push(Arc::clone(&producer));
        tasks.push(tokio::spawn(produce(
            id,
            producer,
            Arc::clone(&journal),
            stop_rx.clone(),
        )));
    }
    let t0 = Instant::now() - Duration::from_secs(1);
    await_journal(&journal, "acks on every partition", DEADLINE, |j| {
        (0..PARTITIONS).all(|p| j.acked_since(p, t0) >= ACKS_PER_PHASE)
    })
    .await;

    // Probes straight at partition 0's leader, working before the cut.
    let probes = Arc::new(Mutex::new(Vec::new()));
    let (probe_stop_tx, probe_stop_rx) = watch::channel(false);
    let probe_tasks =
        [("leader", wire::Acks::Leader), ("all", wire::Acks::All)].map(|(name, acks)| {
            tokio::spawn(probe(
                net.client_addr(old_leader),
                acks,
                name,
                Arc::clone(&probes),
                probe_stop_rx.clone(),
            ))
        });
    {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ok = |a: wire::Acks| {
                probes
                    .lock()
                    .expect("probes")
                    .iter()
                    .filter(|w| w.acks == a && w.outcome.is_ok())
                    .count()
            };
            if ok(wire::Acks::Leader) >= 3 && ok(wire::Acks::All) >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the probes' writes to broker {old_leader} succeed before the cut: {:?}",
                probes.lock().expect("probes").last()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    // The cut.
    net.cut(old_leader);
    let cut_at = Instant::now();
    eprintln!("netsplit: broker {old_leader} cut off from {majority:?}");

    // Watched at once: the old leader stops acknowledging (the probe's
    // acks=leader writes are refused), its Metadata stops naming it, and
    // the majority elects a new leader with a higher epoch.
    let refused = async {
        let deadline = cut_at + STOP_ACKING_BOUND + PROBE_TIMEOUT;
        loop {
            let refused = probes
                .lock()
                .expect("probes")
                .iter()
                .any(|w| w.acks == wire::Acks::Leader && w.sent > cut_at && w.outcome.is_err());
            if refused {
                return cut_at.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "broker {old_leader}, cut off, still acknowledges acks=leader writes {:?} after the cut",
                deadline - cut_at
            );
            tokio::time::sleep(POLL).await;
        }
    };
    let unnamed = async {
        await_metadata(
            net,
            old_leader,
            "the cut-off leader no longer named by its own Metadata",
            STOP_ACKING_BOUND,
            |m| {
                partition(m, 0)
                    .filter(|x| x.leader != i32::try_from(old_leader).expect("id"))
                    .map(|_| ())
            },
        )
        .await;
        cut_at.elapsed()
    };
    let elected = async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answers =
                futures_util::future::join_all(majority.iter().map(|id| metadata_of(net, *id)))
                    .await;
            for (id, m) in &answers {
                if let Some(x) = m.as_ref().ok().and_then(|m| partition(m, 0)) {
                    if x.leader == i32::try_from(*id).expect("id") && x.leader_epoch > old_epoch {
                        return (*id, x.leader_epoch, cut_at.elapsed());
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader of partition 0 among {majority:?} within {DEADLINE:?} of the cut: {answers:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    };
    let (refused_after, unnamed_after, (new_leader, new_epoch, elected_after)) =
        tokio::join!(refused, unnamed, elected);
    assert!(
        elected_after <= ELECTION_BOUND,
        "broker {new_leader} was seen leading partition 0 only {elected_after:?} after the cut (bound {ELECTION_BOUND:?})"
    );
    eprintln!(
        "netsplit: after the cut: old leader's first refusal answered {refused_after:?}, its Metadata stops naming it {unnamed_after:?}, broker {new_leader} leads at epoch {new_epoch} {elected_after:?}"
    );
    // ...which acknowledges writes sent after the cut.
    await_journal(
        &journal,
        "the new leader acknowledging partition 0's writes",
        NEW_LEADER_ACK_BOUND,
        |j| j.acked_since(0, cut_at) >= ACKS_PER_PHASE,
    )
    .await;

    // Heal. The old leader rejoins as a follower, in sync again.
    net.heal(old_leader);
    let healed_at = Instant::now();
    let _ = probe_stop_tx.send(true);
    for t in probe_tasks {
        tokio::time::timeout(PROBE_TIMEOUT * 3, t)
            .await
            .expect("the probes stop")
            .expect("the probes do not panic");
    }
    await_metadata(
        net,
        old_leader,
        "the old leader following a newer epoch",
        DEADLINE,
        |m| {
            partition(m, 0)
                .filter(|x| x.leader >= 0 && x.leader_epoch >= new_epoch)
                .map(|_| ())
        },
    )
    .await;
    // The preferred replica takes partition 0 back once caught up: the
    // node that lost its suffix leads again, with its producer state.
    let handback_epoch = await_metadata(
        net,
        old_leader,
        "leadership of partition 0 handed back to the old (preferred) leader",
        HANDBACK_BOUND,
        |m| {
            partition(m, 0)
                .filter(|x| x.leader == i32::try_from(old_leader).expect("id") && x.isr.len() == 3)
                .map(|x| x.leader_epoch)
        },
    )
    .await;
    let handed_back = Instant::now();
    eprintln!(
        "netsplit: healed; broker {old_leader} leads partition 0 again at epoch {handback_epoch}, {:?} after the heal",
        handed_back - healed_at
    );
    assert!(handback_epoch > new_epoch);
    await_journal(
        &journal,
        "acks on every partition after the handback",
        DEADLINE,
        |j| (0..PARTITIONS).all(|p| j.acked_since(p, handed_back) >= ACKS_PER_PHASE),
    )
    .await;

    // Stop the load; every record it sent is acknowledged.
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.expect("a producer loop does not panic");
    }
    for (id, p) in producers.iter().enumerate() {
        tokio::time::timeout(DEADLINE, p.close())
            .await
            .unwrap_or_else(|_| panic!("producer {id} closes within {DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("producer {id} closes: {e}"));
    }

    // Each partition's high watermark, and every replica caught up to it.
    let mut high_watermarks = BTreeMap::new();
    let end_leaders = await_metadata(net, 1, "leaders at the end", DEADLINE, leaders).await;
    for (&p, &leader) in &end_leaders {
        let hw = await_metadata(net, leader, "the final high watermark", DEADLINE, |m| {
            partition(m, p)
                .filter(|x| x.leader == i32::try_from(leader).expect("id"))
                .map(|x| x.log_end_offset)
        })
        .await;
        for id in IDS {
            await_metadata(
                net,
                id,
                "every replica at the high watermark",
                DEADLINE,
                |m| {
                    partition(m, p)
                        .filter(|x| x.log_end_offset >= hw)
                        .map(|_| ())
                },
            )
            .await;
        }
        high_watermarks.insert(p, hw);
    }

    let journal = std::mem::take(&mut *journal.lock().expect("journal"));
    let probes = std::mem::take(&mut *probes.lock().expect("probes"));
    Run {
        journal,
        probes,
        old_leader,
        old_epoch,
        new_epoch,
        cut_at,
        healed_at,
        high_watermarks,
    }
}

/// Every partition's leader, once all have one.
fn leaders(m: &MetadataResponse) -> Option<BTreeMap<u32, u32>> {
    (0..PARTITIONS)
        .map(|p| {
            partition(m, p)
                .and_then(|x| u32::try_from(x.leader).ok())
                .map(|leader| (p, leader))
        })
        .collect()
}

/// The history checker, over the logs every replica left on disk.
fn check(net: &Net, brokers: &Brokers, run: &Run) {
    let _ = net;
    let j = &run.journal;
    assert!(
        j.failures.is_empty(),
        "{} records failed for good (the partition healed; the producers retry unboundedly): {:?}",
        j.failures.len(),
        &j.failures[..j.failures.len().min(5)]
    );

    // Every replica's log, identical byte for byte up to the high watermark.
    let mut logs: BTreeMap<u32, Vec<LogRecord>> = BTreeMap::new();
    for (&p, &hw) in &run.high_watermarks {
        let mut first: Option<(u32, Vec<u8>)> = None;
        for id in IDS {
            let (bytes, records) = read_log(&brokers.data_dir(id), p, hw);
            match &first {
                None => {
                    first = Some((id, bytes));
                    logs.insert(p, records);
                }
                Some((first_id, first_bytes)) => {
                    let at = first_bytes
                        .iter()
                        .zip(&bytes)
                        .position(|(a, b)| a != b)
                        .unwrap_or(first_bytes.len().min(bytes.len()));
                    assert!(
                        *first_bytes == bytes,
                        "partition {p}: broker {id}'s log differs from broker {first_id}'s below the high watermark {hw} (from byte {at}; {} and {} bytes)",
                        bytes.len(),
                        first_bytes.len()
                    );
                }
            }
        }
    }

    // Leader epochs never go back along a log; partition 0's holds the old
    // leader's epoch, the new leader's, and a later one (the hand-back).
    for (&p, records) in &logs {
        for w in records.windows(2) {
            assert!(
                w[0].leader_epoch <= w[1].leader_epoch,
                "partition {p}: epoch {} at offset {} after epoch {} at offset {}",
                w[1].leader_epoch,
                w[1].offset,
                w[0].leader_epoch,
                w[0].offset
            );
        }
    }
    let epochs: std::collections::BTreeSet<u32> = logs[&0].iter().map(|r| r.leader_epoch).collect();
    assert!(
        epochs.contains(&run.old_epoch)
            && epochs.contains(&run.new_epoch)
            && epochs.last().is_some_and(|e| *e > run.new_epoch),
        "partition 0's records carry epochs {epochs:?} (old leader {}, new leader {})",
        run.old_epoch,
        run.new_epoch
    );

    // Where each value is, and no value twice.
    let mut at: HashMap<&str, (u32, u64, u32)> = HashMap::new();
    for (&p, records) in &logs {
        for r in records {
            if let Some(before) = at.insert(&r.value, (p, r.offset, r.leader_epoch)) {
                panic!(
                    "{} is in the log twice: partition {} offset {} and partition {p} offset {}",
                    r.value, before.0, before.1, r.offset
                );
            }
            assert!(
                parse_value(&r.value)
                    .is_some_and(|(prod, seq)| prod < PRODUCERS && seq < j.sent[prod])
                    || r.value.starts_with("probe-"),
                "partition {p} offset {}: a record nobody sent: {:?}",
                r.offset,
                r.value
            );
        }
    }

    // Every acknowledged record exactly once, at its acknowledged offset;
    // no offset acknowledged for two records.
    let mut acked_at: HashMap<(u32, u64), String> = HashMap::new();
    let mut acked = 0usize;
    for a in &j.acks {
        let v = value(a.producer, a.seq);
        let Some(&(p, offset, _)) = at.get(v.as_str()) else {
            panic!(
                "acknowledged {v} (partition {}, offset {:?}) is not in the log",
                a.partition, a.offset
            );
        };
        assert_eq!(p, a.partition, "{v}: acknowledged on another partition");
        if let Some(o) = a.offset {
            assert_eq!(
                offset, o,
                "{v}: acknowledged at offset {o}, found at {offset}"
            );
            if let Some(other) = acked_at.insert((p, o), v.clone()) {
                panic!("partition {p} offset {o} acknowledged for {other} and for {v}");
            }
        }
        acked += 1;
    }
    let mut probe_acked_all = 0;
    for w in run.probes.iter().filter(|w| w.acks == wire::Acks::All) {
        if let Ok(o) = w.outcome {
            assert!(
                w.sent < run.cut_at,
                "{} sent to the cut-off leader {:?} after the cut was acknowledged with acks=all at offset {o}",
                w.value,
                w.sent - run.cut_at
            );
            assert_eq!(
                at.get(w.value.as_str()).map(|x| (x.0, x.1)),
                Some((0, o)),
                "{}: acknowledged (acks=all) at offset {o}",
                w.value
            );
            if let Some(other) = acked_at.insert((0, o), w.value.clone()) {
                panic!(
                    "partition 0 offset {o} acknowledged for {other} and for {}",
                    w.value
                );
            }
            probe_acked_all += 1;
        }
    }
    // Acks=all of every record sent, so each producer's records make an
    // unbroken sequence per partition, in offset order.
    assert_eq!(
        acked as u64,
        j.sent.iter().sum::<u64>(),
        "every record sent was acknowledged"
    );
    for (&p, records) in &logs {
        let mut last: HashMap<usize, (u64, u64)> = HashMap::new();
        for r in records {
            let Some((prod, seq)) = parse_value(&r.value) else {
                continue;
            };
            if let Some((before, offset)) = last.insert(prod, (seq, r.offset)) {
                assert!(
                    before < seq,
                    "partition {p}: producer {prod}'s record {seq} at offset {} after its record {before} at offset {offset}",
                    r.offset
                );
            }
        }
    }

    // The cut-off leader's suffix: acks=leader writes it took after the
    // cut are gone; it never took one after it first refused.
    let old = run.old_leader;
    let after_cut: Vec<&ProbeWrite> = run
        .probes
        .iter()
        .filter(|w| w.acks == wire::Acks::Leader && w.sent > run.cut_at)
        .collect();
    let first_refusal = after_cut
        .iter()
        .find(|w| w.outcome.is_err())
        .expect("a refusal after the cut");
    let suffix: Vec<&&ProbeWrite> = after_cut.iter().filter(|w| w.outcome.is_ok()).collect();
    for w in &suffix {
        assert!(
            w.sent < first_refusal.sent,
            "broker {old} took {} {:?} after the cut, after it had refused {}",
            w.value,
            w.sent - run.cut_at,
            first_refusal.value
        );
        assert!(
            !at.contains_key(w.value.as_str()),
            "{} (acks=leader, taken by the cut-off leader {:?} after the cut) survived the heal: {:?}",
            w.value,
            w.sent - run.cut_at,
            at.get(w.value.as_str())
        );
    }
    let refusals: BTreeMap<String, usize> = after_cut
        .iter()
        .filter_map(|w| w.outcome.as_ref().err())
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.clone()).or_default() += 1;
            m
        });
    let last_ack = suffix.last().map(|w| w.answered - run.cut_at);
    assert!(
        last_ack.is_none_or(|t| t <= STOP_ACKING_BOUND),
        "broker {old}, cut off, acknowledged a write {last_ack:?} after the cut (bound {STOP_ACKING_BOUND:?})"
    );
    // A write that finds the lease lapsed waits up to an election timeout
    // for a quorum before it is refused.
    let stopped = first_refusal.answered - run.cut_at;
    assert!(
        stopped <= STOP_ACKING_BOUND + ELECTION_TIMEOUT,
        "broker {old} answered its first refusal {stopped:?} after the cut (bound {:?})",
        STOP_ACKING_BOUND + ELECTION_TIMEOUT
    );
    assert!(
        !suffix.is_empty(),
        "no acks=leader write was taken by the cut-off leader: no suffix to truncate"
    );
    let all_after_cut: Vec<&ProbeWrite> = run
        .probes
        .iter()
        .filter(|w| w.acks == wire::Acks::All && w.sent > run.cut_at)
        .collect();

    // Partition 0's writes sent after the cut were committed by the new
    // leader (the old one could commit nothing more): the first of them is
    // the new leader's first ack. (Their batches may still carry the old
    // epoch: a resend of a batch the old leader had replicated before the
    // cut is answered with the original.)
    let first_new_ack = j
        .acks
        .iter()
        .filter(|a| a.partition == 0 && a.sent_at.is_some_and(|s| s > run.cut_at))
        .map(|a| a.acked_at)
        .min();
    let first_new_ack = first_new_ack.expect("acks after the cut") - run.cut_at;

    eprintln!(
        "netsplit: {} acks=all records acknowledged ({} by probes), all present once at their offsets; high watermarks {:?}",
        acked + probe_acked_all,
        probe_acked_all,
        run.high_watermarks
    );
    eprintln!(
        "netsplit: cut -> old leader's last acks=leader ack {last_ack:?}, its first refusal {stopped:?} (refusals after the cut: {refusals:?}); acks=all probes after the cut: {} sent, none acknowledged",
        all_after_cut.len()
    );
    eprintln!(
        "netsplit: cut -> new leader's first ack {first_new_ack:?}; {} acks=leader writes taken by the cut-off leader, all truncated; cut held {:?}",
        suffix.len(),
        run.healed_at - run.cut_at
    );
}
