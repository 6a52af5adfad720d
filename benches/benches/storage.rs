//! Storage engine throughput: append (page cache and durable with group
//! commit) and read, per I/O backend, for 1 KiB records in batches of 1,000;
//! and what the idempotent producer's checks cost per batch (the check
//! alone against maps of 1 to 10,000 producers, and small appends with and
//! without a producer id).
//!
//! Run: `cargo bench -p rill-benches --bench storage`. Compare with this
//! machine's own limits measured by `dd` (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rill_benches::make_batch;
use rill_protocol::{BatchBuilder, BatchHeader, Compression};
use rill_storage::io::{open_backend, IoBackend, IoBackendChoice};
use rill_storage::{Durability, LogConfig, PartitionLog, ProducerStateMap};

const RECORDS_PER_BATCH: usize = 1_000;
const RECORD_BYTES: usize = 1_024;

fn backends() -> Vec<(&'static str, Arc<dyn IoBackend>)> {
    let mut out = Vec::new();
    match open_backend(IoBackendChoice::Uring) {
        Ok(b) => out.push(("uring", b)),
        Err(e) => eprintln!("skipped uring: {e}"),
    }
    out.push((
        "std",
        open_backend(IoBackendChoice::Std).expect("std backend always opens"),
    ));
    out
}

fn bench_config() -> LogConfig {
    LogConfig {
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Appends to the page cache. Each criterion sample writes into a fresh log
/// that is deleted afterwards, so dirty pages never pile up past the
/// kernel's writeback threshold: what is measured is the append path into
/// the page cache, comparable with `dd` without `conv=fdatasync` (which
/// also stays under that threshold at 4 GiB on this machine).
fn append_page_cache(c: &mut Criterion) {
    let batch = make_batch(RECORDS_PER_BATCH, RECORD_BYTES, Compression::None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append_page_cache");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    for (name, backend) in backends() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let inputs = (0..iters).map(|_| BytesMut::from(&batch[..])).collect();
                timed_appends(&rt, &backend, inputs)
            })
        });
    }
    group.finish();
}

/// Appends `inputs` one after another to a fresh log (deleted afterwards)
/// with `Durability::Written`; returns the time the appends took, the log's
/// opening left out.
fn timed_appends(
    rt: &tokio::runtime::Runtime,
    backend: &Arc<dyn IoBackend>,
    inputs: Vec<BytesMut>,
) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = PartitionLog::open(dir.path(), bench_config(), backend.clone()).expect("open log");
    let start = Instant::now();
    rt.block_on(async {
        for bytes in inputs {
            log.append(bytes, Durability::Written)
                .await
                .expect("append");
        }
    });
    start.elapsed()
}

/// `appenders` tasks append concurrently with `Durability::Synced`; the
/// I/O thread's group commit lets one fdatasync cover many of them.
fn append_durable(c: &mut Criterion) {
    let batch = make_batch(RECORDS_PER_BATCH, RECORD_BYTES, Compression::None);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append_durable");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, backend) in backends() {
        for appenders in [1usize, 8, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = Arc::new(
                PartitionLog::open(dir.path(), bench_config(), backend.clone()).expect("open log"),
            );
            group.bench_function(format!("{name}/{appenders}"), |b| {
                b.iter_custom(|iters| rt.block_on(run_appenders(&log, &batch, appenders, iters)))
            });
        }
    }
    group.finish();
}

async fn run_appenders(
    log: &Arc<PartitionLog>,
    batch: &Bytes,
    appenders: usize,
    total: u64,
) -> Duration {
    let per_task = total.div_ceil(appenders as u64);
    let inputs: Vec<Vec<BytesMut>> = (0..appenders)
        .map(|_| (0..per_task).map(|_| BytesMut::from(&batch[..])).collect())
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = inputs
        .into_iter()
        .map(|mine| {
            let log = log.clone();
            tokio::spawn(async move {
                for b in mine {
                    log.append(b, Durability::Synced).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender task");
    }
    // Normalise to the `total` iterations criterion asked for.
    start
        .elapsed()
        .mul_f64(total as f64 / (per_task * appenders as u64) as f64)
}

fn read_page_cache(c: &mut Criterion) {
    const LOG_BYTES: usize = 512 << 20;
    const READ_BYTES: usize = 1 << 20;
    let batch = make_batch(RECORDS_PER_BATCH, RECORD_BYTES, Compression::None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("read_page_cache");
    group.throughput(Throughput::Bytes(READ_BYTES as u64));
    for (name, backend) in backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = PartitionLog::open(dir.path(), bench_config(), backend).expect("open log");
        for _ in 0..LOG_BYTES / batch.len() {
            rt.block_on(log.append(BytesMut::from(&batch[..]), Durability::Written))
                .expect("append");
        }
        let end = log.log_end_offset();
        let mut next = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                if next >= end {
                    next = 0;
                }
                let bytes = log.read(next, READ_BYTES).expect("read");
                next += RECORDS_PER_BATCH as u64 * (bytes.len() / batch.len()).max(1) as u64;
                bytes
            })
        });
    }
    group.finish();
}

/// `check` + `record` of one idempotent batch (what an append adds under
/// the log's lock), the producers taking turns, with `n` producers known.
fn producer_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("producer_check");
    let template = BatchHeader::parse(&idempotent_batch(7, 0, 1)).expect("header");
    for n in [1usize, 1_000, 10_000] {
        let mut map = ProducerStateMap::new(n, u64::MAX);
        let mut next: Vec<i32> = vec![0; n];
        let mut offset = 0u64;
        let mut header = template;
        // Five batches each, as a producer with five in flight leaves.
        for _ in 0..5 {
            for (pid, seq) in next.iter_mut().enumerate() {
                header.producer_id = pid as i64;
                header.base_sequence = *seq;
                map.record(&header, offset, 0);
                *seq += 1;
                offset += 1;
            }
        }
        let mut turn = 0usize;
        group.bench_function(format!("{n}_producers"), |b| {
            b.iter(|| {
                let pid = turn % n;
                turn += 1;
                header.producer_id = pid as i64;
                header.base_sequence = next[pid];
                let decision = map.check(&header, 0).expect("in sequence");
                map.record(&header, offset, 0);
                next[pid] += 1;
                offset += 1;
                decision
            })
        });
    }
    group.finish();
}

fn idempotent_batch(pid: i64, seq: i32, records: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, 0, seq);
    for i in 0..records {
        b.push(1_700_000_000_000, None, &[i as u8; 100], &[]);
    }
    b.finish().expect("small batch")
}

/// Small batches (one 100-byte record) appended to the page cache, with
/// and without a producer id: the per-batch cost idempotence adds to the
/// whole append path.
fn append_small(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append_small");
    group.throughput(Throughput::Elements(1));
    let backend = open_backend(IoBackendChoice::Std).expect("std backend always opens");
    for idempotent in [false, true] {
        let name = if idempotent { "idempotent" } else { "plain" };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let inputs = (0..iters)
                    .map(|i| {
                        let pid = if idempotent { 1 } else { -1 };
                        let seq = if idempotent { i as i32 } else { -1 };
                        BytesMut::from(&idempotent_batch(pid, seq, 1)[..])
                    })
                    .collect();
                timed_appends(&rt, &backend, inputs)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    append_page_cache,
    append_durable,
    read_page_cache,
    producer_check,
    append_small
);
criterion_main!(benches);
