//! Greedy clients against the real broker process: clients that pipeline
//! requests and never read a response are stopped by TCP backpressure and
//! the in-flight budgets (they end up blocked, the broker's memory stays
//! bounded), and fetches asking for `max_bytes = u32::MAX` get at most what
//! the budgets grant. Meanwhile a well-behaved client keeps its rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rill_protocol::wire::*;
use rill_protocol::{BatchBuilder, BatchIter, Compression};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::Client;
use crate::hostile_common::{
    create, good_client_rate, measure_for, mib, report, Attack, BrokerProcess,
};

/// The topic the greedy clients fetch: `BULK_BATCHES` batches of
/// `BULK_RECORDS` values of `BULK_VALUE_BYTES`, 4 MiB in all.
const BULK_BATCHES: usize = 8;
const BULK_RECORDS: usize = 8;
const BULK_VALUE_BYTES: usize = 64 * 1024;
/// Clients pipelining fetches they never read.
const NON_READERS: usize = 4;
/// Clients pipelining small produces they never read.
const PRODUCE_NON_READERS: usize = 1;
/// Records in each of the produce non-reader's batches (small: the point
/// is the response backlog, not filling the disk).
const PRODUCE_NON_READER_RECORDS: usize = 4;
/// Clients looping over `max_bytes = u32::MAX` fetches (reading them).
const ABSURD_FETCHERS: usize = 4;
/// Pause between one absurd fetcher's fetches: a consumer that asks for
/// everything now and then. Back to back, four clients pulling 4 MiB each
/// are a bandwidth flood that the broker (no per-client quotas) shares
/// evenly with the good client, which then kept only 0.12 of its solo rate
/// (0.24 with a 50 ms pause; see RELIABILITY.md).
const ABSURD_FETCH_PAUSE: Duration = Duration::from_millis(200);
/// The non-readers' fetch size: a quarter of a connection's budget, so
/// each connection holds four fetches before it is stopped.
const FETCH_MAX_BYTES: u32 = 16 * 1024 * 1024;
/// How long the non-readers' frame counts must stay flat to count as
/// blocked by backpressure.
const BLOCKED_PROBE: Duration = Duration::from_millis(500);
/// Longest the non-readers may take to fill every buffer between them and
/// the broker's budgets.
const BLOCKED_DEADLINE: Duration = Duration::from_secs(30);

async fn fill_bulk(addr: std::net::SocketAddr) -> u64 {
    create(addr, "bulk").await;
    let mut c = Client::connect(addr).await;
    let value = vec![0x5a; BULK_VALUE_BYTES];
    for _ in 0..BULK_BATCHES {
        let mut b = BatchBuilder::new(Compression::None);
        for _ in 0..BULK_RECORDS {
            b.push(1, None, &value, &[]);
        }
        let r = c
            .produce("bulk", 0, Acks::Leader, b.finish_into_mut().expect("batch"))
            .await;
        assert_eq!(r.error, ErrorCode::None);
    }
    (BULK_BATCHES * BULK_RECORDS) as u64
}

fn frame(request: &Request, correlation_id: u32) -> BytesMut {
    let header = RequestHeader {
        api_key: request.api_key(),
        api_version: 0,
        correlation_id,
        client_id: "greedy".into(),
    };
    let mut buf = BytesMut::new();
    encode_request_frame(&header, request, &mut buf).expect("encodes");
    buf
}

fn fetch_all(max_bytes: u32) -> Request {
    Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes,
        topics: vec![FetchTopic {
            name: "bulk".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: max_bytes,
            }],
        }],
    })
}

/// Writes `request` frames back to back, never reading, counting frames
/// written, until stopped.
async fn non_reader(addr: std::net::SocketAddr, request: Request, written: Arc<AtomicU64>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut id = 0u32;
    loop {
        id = id.wrapping_add(1);
        if s.write_all(&frame(&request, id)).await.is_err() {
            return;
        }
        written.fetch_add(1, Ordering::Relaxed);
    }
}

fn snapshot(counts: &[Arc<AtomicU64>]) -> Vec<u64> {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// Waits until every count is non-zero and flat over `BLOCKED_PROBE`:
/// the writers are blocked. `None` if that does not happen in time.
async fn blocked(counts: &[Arc<AtomicU64>]) -> Option<Vec<u64>> {
    let until = tokio::time::Instant::now() + BLOCKED_DEADLINE;
    while tokio::time::Instant::now() < until {
        let before = snapshot(counts);
        tokio::time::sleep(BLOCKED_PROBE).await;
        let after = snapshot(counts);
        if before == after && after.iter().all(|n| *n > 0) {
            return Some(after);
        }
    }
    None
}

/// Fetch and produce pipeliners that never read end up blocked; the broker stays under its memory bound and the good client keeps its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_non_reading_pipeliners_are_blocked_with_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    fill_bulk(broker.addr).await;
    create(broker.addr, "good").await;
    create(broker.addr, "junk").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;

    let counts: Vec<Arc<AtomicU64>> = (0..NON_READERS + PRODUCE_NON_READERS)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let attack = {
        let counts = counts.clone();
        let addr = broker.addr;
        Attack::start(move || async move {
            let mut tasks = Vec::new();
            for (i, count) in counts.into_iter().enumerate() {
                let request = if i < NON_READERS {
                    fetch_all(FETCH_MAX_BYTES)
                } else {
                    let mut b = BatchBuilder::new(Compression::None);
                    for r in 0..PRODUCE_NON_READER_RECORDS {
                        b.push(1, None, format!("junk-{r}").as_bytes(), &[]);
                    }
                    let records = b.finish_into_mut().expect("batch");
                    Client::produce_request("junk", 0, Acks::Leader, records)
                };
                tasks.push(tokio::spawn(non_reader(addr, request, count)));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    // Backpressure reaches them: their frame counts stop moving.
    let started = std::time::Instant::now();
    let Some(stuck) = blocked(&counts).await else {
        panic!("non-reading clients still writing after {BLOCKED_DEADLINE:?}");
    };
    let blocked_after = started.elapsed();
    let rss_blocked = broker.rss_bytes();
    let attacked = good_client_rate(broker.addr, "good", measure_for()).await;
    assert_eq!(
        snapshot(&counts),
        stuck,
        "a blocked non-reader could write again while the good client ran"
    );
    attack.stop();
    eprintln!(
        "hostile non_readers: blocked after {blocked_after:?}, frames written {stuck:?}, \
         broker RSS while blocked {:.1} MiB",
        mib(rss_blocked)
    );
    report("non_readers", solo, attacked, &broker);
}

/// Fetches with max_bytes = partition_max_bytes = u32::MAX get the whole (small) log, bounded memory, and the good client keeps its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_absurd_max_bytes_fetches_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    let records = fill_bulk(broker.addr).await;
    create(broker.addr, "good").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;

    let fetched = Arc::new(AtomicU64::new(0));
    let attack = {
        let addr = broker.addr;
        let fetched = Arc::clone(&fetched);
        Attack::start(move || async move {
            let fetchers: Vec<_> = (0..ABSURD_FETCHERS)
                .map(|_| {
                    let fetched = Arc::clone(&fetched);
                    tokio::spawn(async move {
                        let mut c = Client::connect(addr).await;
                        loop {
                            let r = match c.call(fetch_all(u32::MAX)).await {
                                Response::Fetch(r) => r,
                                other => panic!("unexpected {other:?}"),
                            };
                            assert_eq!(r.error, ErrorCode::None);
                            let p = r
                                .topics
                                .into_iter()
                                .flat_map(|t| t.partitions)
                                .next()
                                .expect("one partition");
                            assert_eq!(p.error, ErrorCode::None);
                            // The whole log fits in one connection's budget, so it
                            // all comes back, in whole batches.
                            let batches = BatchIter::new(&p.records).count();
                            assert_eq!(batches, BULK_BATCHES, "whole log in one response");
                            fetched.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(ABSURD_FETCH_PAUSE).await;
                        }
                    })
                })
                .collect();
            for f in fetchers {
                f.await.expect("absurd fetcher");
            }
        })
    };
    let attacked = good_client_rate(broker.addr, "good", measure_for()).await;
    attack.stop();
    let n = fetched.load(Ordering::Relaxed);
    assert!(n > 0, "no absurd fetch completed");
    eprintln!(
        "hostile absurd_fetch: {n} fetches of max_bytes=u32::MAX answered ({records} records, \
         {:.1} MiB each)",
        mib((BULK_BATCHES * BULK_RECORDS * BULK_VALUE_BYTES) as u64)
    );
    report("absurd_max_bytes", solo, attacked, &broker);
}
