//! The kill -9 harness: runs the real `rill-broker` binary as a child
//! process, kills it with SIGKILL at a seeded random moment while clients
//! work against it, restarts it on the same data directory, and reads back
//! everything to check what every acknowledgement promised.
//!
//! Where the binary comes from: a test of `rill-client` cannot use
//! `env!("CARGO_BIN_EXE_rill-broker")` (that is only set for the broker's own
//! tests), so it is found next to this test binary:
//! `…/target/<profile>/deps/it-<hash>` → `…/target/<profile>/rill-broker`.
//! `cargo test --workspace` builds every binary of the workspace before
//! running tests; with `cargo test -p rill-client` run
//! `cargo build -p rill-broker --bin rill-broker` first (or set
//! `RILL_BROKER_BIN`). A missing binary fails with that advice.
//!
//! Seeds: `RILL_CRASH_SEED` replays a run; otherwise the seed comes from the
//! clock and is printed, with every kill moment, on stderr.
//! `RILL_LONG=1` selects the long form (more kill cycles);
//! `RILL_CRASH_IO_BACKEND=std|uring|auto` picks the broker's storage
//! backend (default: the broker's own default, `auto`).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_client::{
    Acks, Admin, AdminConfig, Consumer, DeliveryFuture, OffsetSpec, Producer, ProducerConfig,
    SeekTo,
};
use tokio::sync::mpsc;

use crate::common::consumer_config;

/// Kill cycles in `cargo test`.
pub const CYCLES_SHORT: u32 = 3;
/// Kill cycles with `RILL_LONG=1`.
pub const CYCLES_LONG: u32 = 25;
/// Kill moments are drawn from this window after the workload starts: late
/// enough that some work was acknowledged, early enough to keep data small.
pub const KILL_AFTER_MS_MIN: u64 = 30;
pub const KILL_AFTER_MS_MAX: u64 = 400;
/// Longest wait for the broker's start line (recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Client request timeout: a dead broker fails requests by closing the
/// socket, this only bounds a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the read-back waits for a partition to reach its log end.
const READ_BACK_DEADLINE: Duration = Duration::from_secs(60);
/// Distinct keys: spread over every partition by the murmur2 partitioner.
const KEYS: u64 = 64;
/// Filler bytes after the id in each value, derived from the id, so any
/// corruption of a value is detected beyond the batch CRC.
const VALUE_FILL_BYTES: usize = 48;
const ID_BYTES: usize = std::mem::size_of::<u64>();
pub const VALUE_BYTES: usize = ID_BYTES + VALUE_FILL_BYTES;
/// Small batches and buffer: many batches and requests in flight at a kill.
const BATCH_BYTES: usize = 8 * 1024;
const BUFFER_BYTES: usize = 256 * 1024;
const LINGER: Duration = Duration::from_millis(2);

/// Kill cycles for this run: the long form with `RILL_LONG=1`.
pub fn cycles() -> u32 {
    if std::env::var_os("RILL_LONG").is_some_and(|v| v == "1") {
        CYCLES_LONG
    } else {
        CYCLES_SHORT
    }
}

/// The run's seed: `RILL_CRASH_SEED`, else the clock (printed to replay).
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("RILL_CRASH_SEED") {
        Ok(s) => s.parse().expect("RILL_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    eprintln!("{test}: seed {seed} (replay with RILL_CRASH_SEED={seed})");
    seed
}

/// SplitMix64: a seeded, dependency-free source of kill moments.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A kill moment in `KILL_AFTER_MS_MIN..=KILL_AFTER_MS_MAX`.
    pub fn kill_after(&mut self) -> Duration {
        let span = KILL_AFTER_MS_MAX - KILL_AFTER_MS_MIN + 1;
        Duration::from_millis(KILL_AFTER_MS_MIN + self.next_u64() % span)
    }
}

/// The `rill-broker` binary next to this test binary (see the module docs).
pub fn broker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RILL_BROKER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary under target/<profile>/deps");
    let bin = profile_dir.join("rill-broker");
    assert!(
        bin.is_file(),
        "the rill-broker binary is not at {}: run `cargo build -p rill-broker --bin rill-broker` \
         first (`cargo test --workspace` builds it), or set RILL_BROKER_BIN",
        bin.display()
    );
    bin
}

/// A running `rill-broker` process; killed (SIGKILL) and reaped on drop.
pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
    /// From spawn to the start line: process start plus log recovery.
    pub start_time: Duration,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BrokerProcess {
    /// Starts the binary on 127.0.0.1:0 with `data_dir` and `extra` flags,
    /// and waits for its start line.
    pub fn spawn(data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        let started = Instant::now();
        let mut child = Command::new(broker_bin())
            .args(["--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .args(
                std::env::var("RILL_CRASH_IO_BACKEND")
                    .ok()
                    .map(|b| ["--io-backend".to_owned(), b])
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rill-broker");
        let stdout = child.stdout.take().expect("stdout piped");
        // The start line is read on a thread so a broker that hangs in
        // recovery fails the test after START_TIMEOUT instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(read.map(|_| line));
        });
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .expect("broker start line in time")
            .expect("read the start line");
        // "rill-broker listening on <addr> metrics on <addr>"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.get(..3),
            Some(&["rill-broker", "listening", "on"][..]),
            "start line {line:?}"
        );
        let addr = words
            .get(3)
            .and_then(|w| w.parse().ok())
            .expect("listen address");
        BrokerProcess {
            child,
            addr,
            start_time: started.elapsed(),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// SIGKILL (`Child::kill` on Unix), then reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }
}

/// A record's value: its id, then filler derived from the id.
pub fn value_of(id: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    v[..ID_BYTES].copy_from_slice(&id.to_le_bytes());
    for (i, b) in v[ID_BYTES..].iter_mut().enumerate() {
        *b = (id.wrapping_mul(31).wrapping_add(i as u64)) as u8;
    }
    v
}

/// The id of a value written by [`value_of`], `None` if it is not one.
pub fn id_of(value: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(value.get(..ID_BYTES)?.try_into().ok()?);
    (value == value_of(id)).then_some(id)
}

fn key_of(id: u64) -> String {
    format!("key-{}", id % KEYS)
}

/// A record the broker acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub partition: u32,
    pub offset: u64,
    pub id: u64,
}

/// What one produce cycle saw.
#[derive(Debug, Default)]
pub struct ProduceOutcome {
    /// Records handed to the producer (ids `first_id..first_id + sent`).
    pub sent: u64,
    pub acked: Vec<Acked>,
    /// Records whose delivery failed (in flight or buffered at the kill).
    pub failed: u64,
}

pub fn producer_config(bootstrap: &str, acks: Acks) -> ProducerConfig {
    ProducerConfig {
        acks,
        batch_size: BATCH_BYTES,
        linger: LINGER,
        buffer_bytes_max: BUFFER_BYTES,
        // No retries, and so no idempotence: these runs measure what each
        // ack level keeps when the broker dies, and check that no id
        // appears twice; a retry without idempotence could store a batch
        // twice. (tests/it/idempotence.rs kills the broker under an
        // idempotent producer that retries.)
        retries: 0,
        enable_idempotence: false,
        request_timeout: REQUEST_TIMEOUT,
        ..ProducerConfig::new(bootstrap)
    }
}

/// Produces records with ids from `first_id` as fast as `acks` allows, kills
/// the broker `kill_after` into it, and collects every delivery outcome.
pub async fn produce_until_killed(
    broker: BrokerProcess,
    topic: &str,
    acks: Acks,
    first_id: u64,
    kill_after: Duration,
) -> ProduceOutcome {
    let producer = Producer::new(producer_config(&broker.bootstrap(), acks))
        .await
        .expect("producer connects");
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, DeliveryFuture)>();
    // Delivery futures keep their result, so awaiting them in id order
    // loses nothing even when a later one resolved first.
    let collector = tokio::spawn(async move {
        let mut outcome = ProduceOutcome::default();
        while let Some((id, delivery)) = rx.recv().await {
            match tokio::time::timeout(REQUEST_TIMEOUT * 2, delivery).await {
                Ok(Ok(meta)) => outcome.acked.push(Acked {
                    partition: meta.partition,
                    offset: meta.offset.expect("acks=leader/all report the offset"),
                    id,
                }),
                Ok(Err(_)) => outcome.failed += 1,
                Err(_) => panic!("delivery of {id} neither succeeded nor failed"),
            }
        }
        outcome
    });
    let killer = tokio::spawn(async move {
        tokio::time::sleep(kill_after).await;
        broker.kill9();
    });
    let mut id = first_id;
    let mut sent = 0;
    loop {
        if killer.is_finished() {
            break;
        }
        let (key, value) = (key_of(id), value_of(id));
        let send = producer.send(topic, Some(key.as_bytes()), &value, &[]);
        match tokio::time::timeout(REQUEST_TIMEOUT * 2, send).await {
            Ok(Ok(delivery)) => {
                tx.send((id, delivery)).expect("collector alive");
                id += 1;
                sent += 1;
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    killer.await.expect("killer task");
    drop(tx);
    let mut outcome = collector.await.expect("collector task");
    outcome.sent = sent;
    assert_eq!(
        outcome.acked.len() as u64 + outcome.failed,
        sent,
        "every delivery resolved"
    );
    drop(producer);
    outcome
}

/// Every partition read back from offset 0 to its log end: `(offset, id)`.
pub type Stored = BTreeMap<u32, Vec<(u64, u64)>>;

/// Reads every record of `topic` through the consumer's `poll` (which
/// checks each batch header and CRC). A value that is not one the harness
/// wrote fails the test: nothing stored may be corrupted.
pub async fn read_back(bootstrap: &str, topic: &str, partitions: u32) -> Stored {
    let admin = Admin::connect(AdminConfig::new(bootstrap))
        .await
        .expect("admin");
    let ids: Vec<u32> = (0..partitions).collect();
    let ends: BTreeMap<u32, u64> = admin
        .list_offsets(topic, &ids, OffsetSpec::Latest)
        .await
        .expect("log end offsets")
        .into_iter()
        .map(|p| (p.partition, p.offset))
        .collect();
    let mut consumer = Consumer::new(consumer_config(bootstrap))
        .await
        .expect("consumer");
    consumer.assign(ids.iter().map(|&p| (topic.to_owned(), p)).collect());
    for &p in &ids {
        consumer
            .seek(topic, p, SeekTo::Offset(0))
            .await
            .expect("seek");
    }
    let mut stored: Stored = ids.iter().map(|&p| (p, Vec::new())).collect();
    let deadline = Instant::now() + READ_BACK_DEADLINE;
    let done = |stored: &Stored| {
        ends.iter().all(|(p, end)| {
            stored
                .get(p)
                .and_then(|v| v.last())
                .map_or(*end == 0, |(o, _)| o + 1 >= *end)
        })
    };
    while !done(&stored) {
        assert!(
            Instant::now() < deadline,
            "read-back stalled before the log ends {ends:?}"
        );
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll: every served batch is whole and passes its CRC");
        let mut bad = None;
        records
            .for_each(|r| match id_of(r.value) {
                Some(id) => stored.entry(r.partition).or_default().push((r.offset, id)),
                None => bad = Some((r.partition, r.offset)),
            })
            .expect("records decode");
        assert_eq!(bad, None, "a stored value is corrupted");
    }
    stored
}

/// What a check of the stored log against the acknowledgements found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verdict {
    pub stored: u64,
    pub acked: u64,
    /// Acknowledged records missing or not at their acknowledged offset.
    pub lost: u64,
    /// Records present that were never acknowledged (in flight at a kill).
    pub unacked_present: u64,
}

/// Checks what is stored against everything acknowledged so far. Panics on
/// a structural violation: offsets not dense from 0, an id stored twice or
/// never sent, ids out of send order in a partition. Acknowledged records
/// not found are counted in `lost` (callers assert on it per acks level).
pub fn verify(stored: &Stored, acked: &[Acked], ids_sent_below: u64) -> Verdict {
    let mut seen = HashSet::new();
    let mut by_position = BTreeMap::new();
    for (&p, records) in stored {
        let mut last_id = None;
        for (i, &(offset, id)) in records.iter().enumerate() {
            assert_eq!(offset, i as u64, "partition {p}: offsets are dense from 0");
            assert!(
                id < ids_sent_below,
                "partition {p}@{offset}: id {id} never sent"
            );
            assert!(
                seen.insert(id),
                "id {id} stored twice (again at {p}@{offset})"
            );
            assert!(
                last_id.is_none_or(|l| l < id),
                "partition {p}@{offset}: id {id} after {last_id:?}, out of send order"
            );
            last_id = Some(id);
            by_position.insert((p, offset), id);
        }
    }
    let lost = acked
        .iter()
        .filter(|a| by_position.get(&(a.partition, a.offset)) != Some(&a.id))
        .count() as u64;
    let stored_count = by_position.len() as u64;
    let acked_count = acked.len() as u64;
    Verdict {
        stored: stored_count,
        acked: acked_count,
        lost,
        unacked_present: stored_count - (acked_count - lost),
    }
}

/// Positions of a group's acknowledged commits, per partition: the highest
/// next-offset the broker acknowledged.
pub type Commits = Arc<Mutex<BTreeMap<u32, u64>>>;
