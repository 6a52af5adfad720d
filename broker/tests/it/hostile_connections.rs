//! Many connections against the real broker process: 5,000 idle ones cost
//! a bounded amount of memory each and do not slow a working client; a
//! storm of thousands of connects and disconnects (clean, mid-frame, with
//! an oversized length prefix) leaks no connection and keeps the working
//! client's rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rill_protocol::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::IO_TIMEOUT;
use crate::hostile_common::{
    connections_open, create, good_client_rate, long_mode, measure_for, mib, report, Attack,
    BrokerProcess,
};

/// Idle connections held open at once (the 5,000; the broker's
/// `connections_max` default is 10,000).
const IDLE_CONNECTIONS: usize = 5_000;
/// Connections opened at once while building the idle set: the default
/// listen backlog is far above this.
const CONNECT_WAVE: usize = 250;
/// What one idle connection may cost the broker, resident: its task, a
/// 64 KiB read buffer when reading (untouched when idle), socket state.
const IDLE_CONNECTION_BYTES_MAX: u64 = 64 * 1024;
/// Connections in the storm (CI form, and under `RILL_LONG=1`).
const STORM_CI: usize = 3_000;
const STORM_LONG: usize = 50_000;
/// Storm connections in flight at once.
const STORM_PARALLEL: usize = 100;
/// How long the connection gauge may take to fall back after the storm.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// File descriptors the test process needs: the idle set plus slack.
const NOFILE_NEEDED: u64 = IDLE_CONNECTIONS as u64 + 1_000;

fn nofile_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

async fn wait_connections(metrics: SocketAddr, want: impl Fn(f64) -> bool) -> f64 {
    let until = tokio::time::Instant::now() + DRAIN_DEADLINE;
    loop {
        let open = connections_open(metrics).await;
        if want(open) || tokio::time::Instant::now() >= until {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 5,000 idle connections: the broker holds them all, each costs little resident memory, and the good client keeps its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_five_thousand_idle_connections() {
    let limit = nofile_soft_limit();
    assert!(
        limit >= NOFILE_NEEDED,
        "this test needs {NOFILE_NEEDED} open files (ulimit -n), the limit is {limit}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    create(broker.addr, "good").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;
    let rss_before = broker.rss_bytes();

    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE_CONNECTIONS);
    while idle.len() < IDLE_CONNECTIONS {
        let wave = CONNECT_WAVE.min(IDLE_CONNECTIONS - idle.len());
        let connects: Vec<_> = (0..wave)
            .map(|_| tokio::spawn(TcpStream::connect(broker.addr)))
            .collect();
        for c in connects {
            idle.push(c.await.expect("connect task").expect("connect"));
        }
        // A wave the broker has not accepted yet sits in the listen
        // queue; filling it faster than the accept loop drains it makes
        // the kernel drop handshakes, which idle clients never retry.
        let want = idle.len() as f64;
        let open = wait_connections(broker.metrics, |n| n >= want).await;
        assert!(
            open >= want,
            "broker shows {open} of {want} connections open"
        );
    }
    let attacked = good_client_rate(broker.addr, "good", measure_for()).await;
    let rss_idle = broker.rss_bytes();
    let per_connection = rss_idle.saturating_sub(rss_before) / IDLE_CONNECTIONS as u64;
    eprintln!(
        "hostile idle: {IDLE_CONNECTIONS} idle connections, broker RSS {:.1} -> {:.1} MiB \
         ({per_connection} bytes each)",
        mib(rss_before),
        mib(rss_idle)
    );
    assert!(
        per_connection <= IDLE_CONNECTION_BYTES_MAX,
        "an idle connection costs {per_connection} bytes"
    );
    drop(idle);
    let open = wait_connections(broker.metrics, |n| n < 1.0).await;
    assert!(
        open < 1.0,
        "{open} connections still open after closing all"
    );
    report("idle_5000", solo, attacked, &broker);
}

/// One storm connection, by kind: close at once, one request then close,
/// close inside a frame, or an oversized length prefix.
async fn storm_one(addr: SocketAddr, kind: usize) {
    // A refused or reset connection is part of the storm, not a failure.
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return;
    };
    match kind % 4 {
        0 => {}
        1 => {
            let header = RequestHeader {
                api_key: ApiKey::ApiVersions,
                api_version: 0,
                correlation_id: 1,
                client_id: "storm".into(),
            };
            let mut frame = BytesMut::new();
            encode_request_frame(
                &header,
                &Request::ApiVersions(ApiVersionsRequest {}),
                &mut frame,
            )
            .expect("encodes");
            let mut prefix = [0u8; FRAME_LENGTH_PREFIX_BYTES];
            let exchange = async {
                s.write_all(&frame).await?;
                s.read_exact(&mut prefix).await
            };
            let _ = tokio::time::timeout(IO_TIMEOUT, exchange).await;
        }
        2 => {
            let _ = s.write_all(&64u32.to_le_bytes()).await;
            let _ = s.write_all(&[1, 2, 3]).await;
        }
        _ => {
            let _ = s.write_all(&u32::MAX.to_le_bytes()).await;
        }
    }
    drop(s);
}

/// Thousands of short connections of every kind: no connection leaks, peak RSS bounded, the good client keeps its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connection_storm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    create(broker.addr, "good").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;

    let total = if long_mode() { STORM_LONG } else { STORM_CI };
    let stormed = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let storm = {
        let addr = broker.addr;
        let stormed = Arc::clone(&stormed);
        Attack::start(move || async move {
            let mut next = 0usize;
            // At least `total` connections, and for as long as the good
            // client is measured.
            while next < total || started.elapsed() < measure_for() {
                let wave: Vec<_> = (next..next + STORM_PARALLEL)
                    .map(|k| tokio::spawn(storm_one(addr, k)))
                    .collect();
                next += wave.len();
                for w in wave {
                    w.await.expect("storm connection");
                }
                stormed.store(next, Ordering::SeqCst);
            }
        })
    };
    let attacked = good_client_rate(broker.addr, "good", measure_for()).await;
    while stormed.load(Ordering::SeqCst) < total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    storm.stop();
    let storm_took = started.elapsed();
    let stormed = stormed.load(Ordering::SeqCst);
    let open = wait_connections(broker.metrics, |n| n < 1.0).await;
    assert!(open < 1.0, "{open} connections still open after the storm");
    eprintln!(
        "hostile storm: {stormed} connections in {storm_took:?} ({:.0}/s)",
        stormed as f64 / storm_took.as_secs_f64()
    );
    report("connection_storm", solo, attacked, &broker);
}
