//! Storage faults end to end, through a real in-process broker and the
//! client: segment and index files damaged offline (flipped bytes, a cut
//! file, a deleted index, a half-written batch), a segment that rots while
//! the broker runs, a full disk (a real small tmpfs, enlarged while the
//! broker runs) and a read-only data directory. Consumers get exactly the
//! valid prefix, never a batch failing its CRC; what recovery dropped shows
//! on `/metrics`. The tmpfs tests skip with a line on stderr where mounting
//! is refused (they need root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rill_broker::{Broker, BrokerConfig, BrokerHandle};
use rill_client::{
    Acks, ClientError, Connection, ConnectionConfig, Consumer, Producer, ProducerConfig, SeekTo,
};
use rill_protocol::batch::{BatchBuilder, BatchHeader, Compression, HEADER_LEN};
use rill_protocol::wire::{
    Acks as WireAcks, ErrorCode, FetchPartition, FetchRequest, FetchTopic, MetadataRequest,
    ProducePartition, ProduceRequest, ProduceTopic,
};

use crate::common::{consumer_config, start_broker, to_owned, Owned};

/// Small segments, so a few dozen batches span several of them.
const SEGMENT_BYTES: &str = "16384";
/// Batches produced before a fault.
const BATCHES: u64 = 24;
const RECORDS_PER_BATCH: usize = 4;
const VALUE_BYTES: usize = 400;
/// Polls that must stay empty before "nothing more is served" is believed.
const QUIET_POLLS: usize = 4;
const QUIET_POLL: Duration = Duration::from_millis(200);
/// Longest a test waits for records it knows are there.
const DEADLINE: Duration = Duration::from_secs(30);
const PRODUCE_TIMEOUT_MS: u32 = 10_000;
/// `rill_storage::CLEAN_SHUTDOWN_MARKER` (storage is not a dependency of
/// the client): removing it makes the next open recover as after a crash.
const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";
/// Bound on batches while filling a disk: one that never fills is a bug.
const FILL_BATCHES_MAX: u64 = 5_000;

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

async fn connect(handle: &BrokerHandle) -> Connection {
    Connection::connect(
        &handle.local_addr().to_string(),
        ConnectionConfig::default(),
    )
    .await
    .expect("connect")
}

async fn create(handle: &BrokerHandle, topic: &str, partitions: u32) {
    let admin = rill_client::Admin::connect(rill_client::AdminConfig::new(
        handle.local_addr().to_string(),
    ))
    .await
    .expect("admin");
    admin
        .create_topic(topic, partitions, &[("segment.bytes", SEGMENT_BYTES)])
        .await
        .expect("create topic");
}

/// The records of one batch, derived from `seed`.
fn records(seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..RECORDS_PER_BATCH)
        .map(|i| {
            let key = format!("k{seed}-{i}").into_bytes();
            let value = (0..VALUE_BYTES)
                .map(|j| (seed as usize * 31 + i * 7 + j) as u8)
                .collect();
            (key, value)
        })
        .collect()
}

fn build(seed: u64) -> bytes::BytesMut {
    let mut b = BatchBuilder::new(Compression::None);
    for (key, value) in records(seed) {
        // Now, not a fixed date: time retention would delete old segments.
        b.push(now_ms(), Some(&key), &value, &[]);
    }
    b.finish_into_mut().expect("batch")
}

/// Produces the batch of `seed` alone (acks=all); the partition's answer.
async fn produce(
    conn: &Connection,
    topic: &str,
    partition: u32,
    seed: u64,
) -> (ErrorCode, u64, Option<String>) {
    let response = conn
        .produce(ProduceRequest {
            acks: WireAcks::All,
            timeout_ms: PRODUCE_TIMEOUT_MS,
            topics: vec![ProduceTopic {
                name: topic.to_owned(),
                partitions: vec![ProducePartition {
                    partition,
                    records: build(seed),
                }],
            }],
        })
        .await
        .expect("produce answered");
    let p = response
        .topics
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("a partition answer");
    (p.error, p.base_offset, p.error_message)
}

/// The records batch `seed` produced at `base`, as the consumer shows them.
fn expected(partition: u32, base: u64, seed: u64) -> Vec<Rec> {
    records(seed)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| (partition, base + i as u64, k, v))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type Rec = (u32, u64, Vec<u8>, Vec<u8>);

/// Equality of consumed and expected records, reported briefly (records
/// are large).
fn assert_same(got: &[Rec], want: &[Rec], what: &str) {
    let offsets = |r: &[Rec]| -> Vec<(u32, u64)> { r.iter().map(|x| (x.0, x.1)).collect() };
    assert_eq!(
        offsets(got),
        offsets(want),
        "{what}: partitions and offsets"
    );
    let differ = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!(
        differ, None,
        "{what}: first record whose key or value differs"
    );
}

fn simplify(records: Vec<Owned>) -> Vec<Rec> {
    records
        .into_iter()
        .map(|r| (r.partition, r.offset, r.key.unwrap_or_default(), r.value))
        .collect()
}

/// Everything a fresh consumer gets from the start of `partition`: polls
/// until `want` records arrived, then until [`QUIET_POLLS`] polls in a row
/// bring nothing more.
async fn consume_all(addr: &str, topic: &str, partition: u32, want: usize) -> Vec<Rec> {
    let mut consumer = Consumer::new(consumer_config(addr))
        .await
        .expect("consumer");
    consumer.assign(vec![(topic.to_owned(), partition)]);
    consumer
        .seek(topic, partition, SeekTo::Earliest)
        .await
        .expect("seek");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want && tokio::time::Instant::now() < deadline {
        let records = consumer.poll(QUIET_POLL).await.expect("poll");
        out.extend(simplify(to_owned(&records)));
    }
    let mut quiet = 0;
    while quiet < QUIET_POLLS {
        let records = consumer.poll(QUIET_POLL).await.expect("poll");
        if records.is_empty() {
            quiet += 1;
        } else {
            quiet = 0;
            out.extend(simplify(to_owned(&records)));
        }
    }
    out
}

/// A fetch of one partition at `offset`: its error code and record bytes.
async fn fetch(
    conn: &Connection,
    topic: &str,
    partition: u32,
    offset: u64,
) -> (ErrorCode, bytes::Bytes) {
    let response = conn
        .fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: topic.to_owned(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 1 << 20,
                }],
            }],
        })
        .await
        .expect("fetch answered");
    let p = response
        .topics
        .into_iter()
        .next()
        .and_then(|t| t.partitions.into_iter().next())
        .expect("a partition answer");
    (p.error, p.records)
}

/// The value of `name{topic="topic"}` in this process's metrics.
fn metric(name: &str, topic: &str) -> f64 {
    let text = rill_broker::metrics::recorder_handle().render();
    let prefix = format!("{name}{{topic=\"{topic}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn partition_dir(data: &Path, topic: &str, partition: u32) -> PathBuf {
    data.join(format!("{topic}-{partition}"))
}

/// Segment log files of a partition, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

/// `(position, length, base offset)` of every batch in a segment file.
fn batches_in(path: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        let h = BatchHeader::parse(rest).expect("intact header");
        out.push((pos as u64, u64::from(h.batch_length), h.base_offset));
        pos += h.batch_length as usize;
    }
    out
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).expect("read byte");
    file.write_all_at(&[byte[0] ^ 0x5a], at)
        .expect("write byte");
}

/// One way of damaging a partition offline.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// A payload byte of a batch in the active segment; unclean stop.
    FlipActive,
    /// The active segment cut in the middle of a batch; clean stop.
    CutActive,
    /// Half of a further valid batch appended to the active segment, as a
    /// crash mid-write leaves it; unclean stop.
    HalfWrittenBatch,
    /// The offset index of the first (closed) segment deleted; clean stop.
    DeleteIndex,
    /// A payload byte of a batch in a closed segment after a clean stop:
    /// recovery trusts closed segments, so the read path must catch it.
    FlipClosed,
}

/// What a damage leaves: batches still served, recovery's counts.
struct Outcome {
    kept: u64,
    truncated_bytes: u64,
    indexes_rebuilt: u64,
    /// Offset of a batch that must be refused as corrupt, if any.
    corrupt_at: Option<u64>,
}

/// Applies `damage` to a stopped broker's partition; returns what must hold.
fn apply(damage: Damage, dir: &Path) -> Outcome {
    let segs = segments(dir);
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    let first = segs.first().expect("a segment").clone();
    let active = segs.last().expect("a segment").clone();
    let active_batches = batches_in(&active);
    let closed_batches = batches_in(&first);
    // Batches before the active segment (each batch is one produce).
    let before_active = BATCHES - active_batches.len() as u64;
    let unclean = || {
        std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_MARKER)).expect("marker");
    };
    let active_len = std::fs::metadata(&active).expect("stat").len();
    let none = Outcome {
        kept: BATCHES,
        truncated_bytes: 0,
        indexes_rebuilt: 0,
        corrupt_at: None,
    };
    match damage {
        Damage::FlipActive => {
            let &(pos, _, _) = active_batches.get(1).expect("two active batches");
            flip_byte(&active, pos + HEADER_LEN as u64 + 3);
            unclean();
            Outcome {
                kept: before_active + 1,
                truncated_bytes: active_len - pos,
                ..none
            }
        }
        Damage::CutActive => {
            let &(pos, len, _) = active_batches.get(1).expect("two active batches");
            let cut = pos + len / 2;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&active)
                .expect("open")
                .set_len(cut)
                .expect("cut");
            Outcome {
                kept: before_active + 1,
                truncated_bytes: cut - pos,
                ..none
            }
        }
        Damage::HalfWrittenBatch => {
            let mut next = build(999).to_vec();
            next.get_mut(..8)
                .expect("base offset field")
                .copy_from_slice(&(BATCHES * RECORDS_PER_BATCH as u64).to_le_bytes());
            next.truncate(next.len() / 2);
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&active)
                .expect("open");
            std::io::Write::write_all(&mut file, &next).expect("append half a batch");
            unclean();
            Outcome {
                truncated_bytes: next.len() as u64,
                ..none
            }
        }
        Damage::DeleteIndex => {
            std::fs::remove_file(first.with_extension("index")).expect("remove index");
            Outcome {
                indexes_rebuilt: 1,
                ..none
            }
        }
        Damage::FlipClosed => {
            let &(pos, _, base) = closed_batches.get(2).expect("three closed batches");
            flip_byte(&first, pos + HEADER_LEN as u64 + 5);
            Outcome {
                kept: 2,
                corrupt_at: Some(base),
                ..none
            }
        }
    }
}

async fn offline_damage(damage: Damage) {
    let topic = format!("dmg-{damage:?}").to_lowercase();
    let data = tempfile::tempdir().expect("tempdir");
    let handle = start_broker(data.path()).await;
    create(&handle, &topic, 1).await;
    let conn = connect(&handle).await;
    let mut all = Vec::new();
    for seed in 0..BATCHES {
        let (code, base, message) = produce(&conn, &topic, 0, seed).await;
        assert_eq!(code, ErrorCode::None, "{damage:?}: produce: {message:?}");
        all.push(expected(0, base, seed));
    }
    drop(conn);
    handle.shutdown().await;

    let dir = partition_dir(data.path(), &topic, 0);
    let outcome = apply(damage, &dir);
    let truncated_before = metric("rill_recovery_truncated_bytes_total", &topic);
    let rebuilt_before = metric("rill_recovery_indexes_rebuilt_total", &topic);
    let handle = start_broker(data.path()).await;
    assert_eq!(
        metric("rill_recovery_truncated_bytes_total", &topic) - truncated_before,
        outcome.truncated_bytes as f64,
        "{damage:?}: truncated bytes counted"
    );
    assert!(
        metric("rill_recovery_indexes_rebuilt_total", &topic) - rebuilt_before
            >= outcome.indexes_rebuilt as f64,
        "{damage:?}: rebuilt index counted"
    );

    let addr = handle.local_addr().to_string();
    let kept: Vec<_> = all
        .iter()
        .take(outcome.kept as usize)
        .flatten()
        .cloned()
        .collect();
    let got = consume_all(&addr, &topic, 0, kept.len()).await;
    assert_same(
        &got,
        &kept,
        &format!("{damage:?}: consumers get exactly the valid prefix"),
    );

    let conn = connect(&handle).await;
    if let Some(at) = outcome.corrupt_at {
        let before = metric("rill_storage_corrupt_reads_total", &topic);
        let (code, records) = fetch(&conn, &topic, 0, at).await;
        assert_eq!(
            code,
            ErrorCode::CorruptMessage,
            "{damage:?}: bad batch refused"
        );
        assert!(
            records.is_empty(),
            "{damage:?}: nothing served with the error"
        );
        assert!(
            metric("rill_storage_corrupt_reads_total", &topic) > before,
            "{damage:?}: corrupt read counted"
        );
    } else {
        // The log continues right after what recovery kept.
        let end = kept.last().map_or(0, |r| r.1 + 1);
        let (code, base, message) = produce(&conn, &topic, 0, 1_000).await;
        assert_eq!(
            code,
            ErrorCode::None,
            "{damage:?}: produce after recovery: {message:?}"
        );
        assert_eq!(base, end, "{damage:?}: offsets continue the kept prefix");
    }
    drop(conn);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_active_segment_is_cut_by_recovery() {
    offline_damage(Damage::FlipActive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_active_segment_keeps_whole_batches() {
    offline_damage(Damage::CutActive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_batch_is_dropped_on_restart() {
    offline_damage(Damage::HalfWrittenBatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_index_is_rebuilt_and_everything_served() {
    offline_damage(Damage::DeleteIndex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_closed_segment_is_never_served() {
    offline_damage(Damage::FlipClosed).await;
}

/// A closed segment going bad while the broker runs: fetches stop before
/// the bad batch, a fetch at it answers CorruptMessage, later batches are
/// still served, and the counter moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_rotting_while_running_is_not_served() {
    let topic = "rot-live";
    let data = tempfile::tempdir().expect("tempdir");
    let handle = start_broker(data.path()).await;
    create(&handle, topic, 1).await;
    let conn = connect(&handle).await;
    let mut all = Vec::new();
    for seed in 0..BATCHES {
        let (code, base, _) = produce(&conn, topic, 0, seed).await;
        assert_eq!(code, ErrorCode::None);
        all.push((base, expected(0, base, seed)));
    }
    let first = segments(&partition_dir(data.path(), topic, 0))
        .into_iter()
        .next()
        .expect("a segment");
    let &(pos, _, bad) = batches_in(&first).get(1).expect("two batches");
    flip_byte(&first, pos + HEADER_LEN as u64 + 7);

    let addr = handle.local_addr().to_string();
    let prefix: Vec<_> = all.iter().take(1).flat_map(|(_, r)| r.clone()).collect();
    let got = consume_all(&addr, topic, 0, prefix.len()).await;
    assert_same(&got, &prefix, "served before the bad batch");

    let before = metric("rill_storage_corrupt_reads_total", topic);
    let (code, records) = fetch(&conn, topic, 0, bad).await;
    assert_eq!(code, ErrorCode::CorruptMessage);
    assert!(records.is_empty());
    assert!(metric("rill_storage_corrupt_reads_total", topic) > before);
    let (after, _) = all.get(2).expect("three batches");
    let (code, records) = fetch(&conn, topic, 0, *after).await;
    assert_eq!(
        code,
        ErrorCode::None,
        "batches after the bad one are served"
    );
    let header = BatchHeader::parse(&records).expect("a batch");
    assert_eq!(header.base_offset, *after);
    drop(conn);
    handle.shutdown().await;
}

/// A tmpfs mounted on a fresh directory; unmounted when dropped (on panic
/// too; lazily, so a file a failed test left open cannot pin it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped storage-fault test: cannot mount a tmpfs ({})",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped storage-fault test: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount,{options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A full disk: the producer gets StorageError with the device's message,
/// the broker stays up and serves reads of every partition, and once the
/// file system is enlarged (no restart) writes resume at the next offset;
/// consumers then read exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_writes_then_resumes_without_restart() {
    let Some(fs) = Tmpfs::mount("512k") else {
        return;
    };
    let topic = "full";
    let handle = Broker::start(config(fs.path()))
        .await
        .expect("broker starts");
    create(&handle, topic, 2).await;
    let addr = handle.local_addr().to_string();
    let conn = connect(&handle).await;
    let mut acked = [Vec::new(), Vec::new()];
    for seed in 0..3 {
        let (code, base, _) = produce(&conn, topic, 1, seed).await;
        assert_eq!(code, ErrorCode::None);
        acked[1].extend(expected(1, base, seed));
    }
    let mut seed = 100;
    let message = loop {
        seed += 1;
        assert!(
            seed < FILL_BATCHES_MAX,
            "the small file system never filled"
        );
        let (code, base, message) = produce(&conn, topic, 0, seed).await;
        if code != ErrorCode::None {
            assert_eq!(code, ErrorCode::StorageError, "{message:?}");
            break message.expect("an error message");
        }
        acked[0].extend(expected(0, base, seed));
    };
    assert!(
        message.contains("No space left"),
        "clear message: {message}"
    );

    // The client library's producer reports it too, after its retries.
    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        retries: 2,
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::new(addr.clone())
    })
    .await
    .expect("producer");
    let delivery = producer
        .send_to_partition(topic, 0, Some(b"k"), &[7u8; 8000], &[])
        .await
        .expect("buffered");
    match delivery.await {
        Err(ClientError::Broker { code, message, .. }) => {
            assert_eq!(code, ErrorCode::StorageError);
            assert!(message.is_some(), "the broker said why");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }

    // Still up: metadata and reads of both partitions.
    conn.metadata(MetadataRequest { topics: None })
        .await
        .expect("metadata while full");
    for p in 0..2u32 {
        let want = acked.get(p as usize).expect("partition").clone();
        let got = consume_all(&addr, topic, p, want.len()).await;
        assert_same(&got, &want, &format!("partition {p} while full"));
    }

    fs.remount("size=16m");
    let end = acked[0].last().map_or(0, |r| r.1 + 1);
    let (code, base, message) = produce(&conn, topic, 0, 5_000).await;
    assert_eq!(code, ErrorCode::None, "writes resume: {message:?}");
    assert_eq!(base, end, "offsets continue after the acknowledged ones");
    acked[0].extend(expected(0, base, 5_000));
    let (code, base, _) = produce(&conn, topic, 1, 5_001).await;
    assert_eq!(code, ErrorCode::None);
    acked[1].extend(expected(1, base, 5_001));
    let sent = producer
        .send_to_partition(topic, 0, Some(b"k"), b"after", &[])
        .await
        .expect("buffered")
        .await
        .expect("producer writes again");
    acked[0].push((
        0,
        sent.offset.expect("acks=all offset"),
        b"k".to_vec(),
        b"after".to_vec(),
    ));
    producer.close().await.expect("close producer");
    for p in 0..2u32 {
        let want = acked.get(p as usize).expect("partition").clone();
        let got = consume_all(&addr, topic, p, want.len()).await;
        assert_same(&got, &want, &format!("partition {p} after space returned"));
    }
    drop(conn);
    handle.shutdown().await;
    drop(fs);
}

/// A read-only data directory: the broker starts read-only (after an
/// unclean stop, so its logs are scanned without being changed), consumers
/// read everything, metadata works, producers and topic creation get
/// `StorageError` with a message naming the read-only directory; restarted
/// on the directory made writable again, it takes writes at the next offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_data_dir_serves_reads_and_refuses_writes() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let topic = "ro";
    let handle = Broker::start(config(fs.path()))
        .await
        .expect("broker starts");
    create(&handle, topic, 1).await;
    let conn = connect(&handle).await;
    let mut acked = Vec::new();
    for seed in 0..BATCHES {
        let (code, base, _) = produce(&conn, topic, 0, seed).await;
        assert_eq!(code, ErrorCode::None);
        acked.extend(expected(0, base, seed));
    }
    drop(conn);
    handle.shutdown().await;
    // As after a crash: the read-only open must scan (and not cut) the log.
    std::fs::remove_file(partition_dir(fs.path(), topic, 0).join(CLEAN_SHUTDOWN_MARKER))
        .expect("remove marker");

    fs.remount("ro");
    let handle = Broker::start(config(fs.path()))
        .await
        .expect("the broker starts on a read-only directory");
    let addr = handle.local_addr().to_string();
    let conn = connect(&handle).await;
    let meta = conn
        .metadata(MetadataRequest { topics: None })
        .await
        .expect("metadata while read-only");
    assert!(meta.topics.iter().any(|t| t.name == topic), "{meta:?}");
    let got = consume_all(&addr, topic, 0, acked.len()).await;
    assert_same(&got, &acked, "read-only");

    let (code, _, message) = produce(&conn, topic, 0, 1_000).await;
    assert_eq!(code, ErrorCode::StorageError, "{message:?}");
    let message = message.expect("an error message");
    assert!(message.contains("read-only"), "clear message: {message}");

    // An idempotent producer cannot even get a producer id: the broker
    // cannot record the id block it would hand out.
    let refused = Producer::new(ProducerConfig {
        acks: Acks::All,
        retries: 1,
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::new(addr.clone())
    })
    .await
    .expect_err("no producer id from a read-only broker");
    assert_eq!(refused.code(), Some(ErrorCode::StorageError), "{refused}");
    let producer = Producer::new(ProducerConfig {
        acks: Acks::All,
        retries: 1,
        retry_backoff: Duration::from_millis(50),
        enable_idempotence: false,
        ..ProducerConfig::new(addr.clone())
    })
    .await
    .expect("producer");
    let delivery = producer
        .send_to_partition(topic, 0, Some(b"k"), b"refused", &[])
        .await
        .expect("buffered");
    match delivery.await {
        Err(ClientError::Broker { code, message, .. }) => {
            assert_eq!(code, ErrorCode::StorageError);
            let message = message.unwrap_or_default();
            assert!(message.contains("read-only"), "clear message: {message}");
        }
        other => panic!("expected a read-only storage error, got {other:?}"),
    }
    producer.close().await.ok();

    let admin = rill_client::Admin::connect(rill_client::AdminConfig::new(addr.clone()))
        .await
        .expect("admin");
    let err = admin
        .create_topic("another", 1, &[])
        .await
        .expect_err("no topic is created on a read-only directory");
    assert!(err.to_string().contains("read-only"), "clear error: {err}");
    drop(conn);
    handle.shutdown().await;

    fs.remount("rw");
    let handle = Broker::start(config(fs.path()))
        .await
        .expect("starts again");
    let addr = handle.local_addr().to_string();
    let conn = connect(&handle).await;
    let end = acked.last().map_or(0, |r| r.1 + 1);
    let (code, base, message) = produce(&conn, topic, 0, 2_000).await;
    assert_eq!(code, ErrorCode::None, "writes resume: {message:?}");
    assert_eq!(base, end, "offsets continue after the acknowledged ones");
    acked.extend(expected(0, base, 2_000));
    let got = consume_all(&addr, topic, 0, acked.len()).await;
    assert_same(&got, &acked, "after the directory is writable again");
    drop(conn);
    handle.shutdown().await;
    drop(fs);
}
