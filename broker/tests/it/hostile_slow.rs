//! Slow senders against the real broker process: a frame trickled a byte at
//! a time is cut off `request_read_timeout_ms` after its first byte (so it
//! cannot hold its in-flight budget for ever), while a well-behaved client
//! keeps its rate; a slow but complete frame and long idle gaps between
//! frames are still served.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use rill_protocol::wire::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Client;
use crate::hostile_common::{
    connections_open, create, good_client_rate, long_mode, measure_for, report, Attack,
    BrokerProcess,
};

/// The read timeout the tests configure, short so the CI form takes seconds.
const READ_TIMEOUT_CI: Duration = Duration::from_millis(1_000);
/// Under `RILL_LONG=1`: the byte per second needs a longer frame
/// deadline to show a few bytes arriving before the cut.
const READ_TIMEOUT_LONG: Duration = Duration::from_millis(5_000);
/// Gap between the slow clients' bytes (the "a byte per second"
/// under `RILL_LONG=1`).
const BYTE_INTERVAL_CI: Duration = Duration::from_millis(100);
const BYTE_INTERVAL_LONG: Duration = Duration::from_secs(1);
/// Slow clients at once, each reconnecting after every cut.
const SLOW_CLIENTS: usize = 16;
/// The frame length the slow clients announce (the broker takes budget
/// only for the bytes that arrive).
const SLOW_FRAME_CLAIM: u32 = 1024 * 1024;
/// Slack on the cut-off time: scheduling on a busy 2-core box.
const CUTOFF_SLACK: Duration = Duration::from_secs(3);
/// Scrapes (50 ms apart) before the read-timeout counter must be complete.
const METRIC_POLLS: usize = 40;

fn read_timeout() -> Duration {
    if long_mode() {
        READ_TIMEOUT_LONG
    } else {
        READ_TIMEOUT_CI
    }
}

/// Announces a `SLOW_FRAME_CLAIM`-byte frame and trickles its body until
/// the broker closes the connection; returns the time from the first byte
/// to the close.
async fn trickle_until_cut(addr: std::net::SocketAddr, byte_interval: Duration) -> Duration {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    wr.write_all(&SLOW_FRAME_CLAIM.to_le_bytes())
        .await
        .expect("send the prefix");
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            // The broker never answers an incomplete frame: any read
            // result is the close.
            _ = rd.read(&mut scratch) => return started.elapsed(),
            _ = tokio::time::sleep(byte_interval) => {
                if wr.write_all(&[0]).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

/// Slowloris clients are cut at the read timeout, again and again, and a well-behaved client keeps its rate meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_frames_are_cut_off_at_the_read_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let timeout = read_timeout();
    let timeout_ms = timeout.as_millis().to_string();
    let broker = BrokerProcess::spawn(dir.path(), &["--request-read-timeout-ms", &timeout_ms]);
    create(broker.addr, "good").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;

    let byte_interval = if long_mode() {
        BYTE_INTERVAL_LONG
    } else {
        BYTE_INTERVAL_CI
    };
    let attack_for = measure_for().max(timeout + timeout);
    let attackers: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let addr = broker.addr;
            tokio::spawn(async move {
                let until = Instant::now() + attack_for;
                let mut cuts = Vec::new();
                while Instant::now() < until {
                    cuts.push(trickle_until_cut(addr, byte_interval).await);
                }
                cuts
            })
        })
        .collect();
    let attacked = good_client_rate(broker.addr, "good", attack_for).await;
    let mut cuts = Vec::new();
    for a in attackers {
        cuts.extend(a.await.expect("slow client"));
    }
    assert!(cuts.len() >= SLOW_CLIENTS, "only {} cuts", cuts.len());
    for cut in &cuts {
        assert!(
            *cut + byte_interval >= timeout && *cut <= timeout + CUTOFF_SLACK,
            "a slow frame was cut after {cut:?}, read timeout {timeout:?}"
        );
    }
    // The broker closed them for the timeout, not for anything else. It
    // counts a close just after the client sees it: poll briefly.
    let want = cuts.len() as f64;
    let mut counted = 0.0;
    for _ in 0..METRIC_POLLS {
        let text = crate::common::scrape(broker.metrics).await;
        counted = crate::common::sample(
            &text,
            "rill_connection_errors_total{reason=\"read_timeout\"}",
        );
        if counted >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, want, "read timeouts counted");
    let slowest = cuts.iter().max().copied().unwrap_or_default();
    eprintln!(
        "hostile slow: {} slow frames cut, the latest after {slowest:?} (timeout {timeout:?})",
        cuts.len()
    );
    report("slow_frames", solo, attacked, &broker);
}

/// The deadline is per frame from its first byte: a frame sent slowly but within it is answered, and idling longer than it between frames is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_but_complete_frames_and_idle_gaps_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let timeout = READ_TIMEOUT_CI;
    let timeout_ms = timeout.as_millis().to_string();
    let broker = BrokerProcess::spawn(dir.path(), &["--request-read-timeout-ms", &timeout_ms]);
    let mut c = Client::connect(broker.addr).await;

    let header = RequestHeader {
        api_key: ApiKey::ApiVersions,
        api_version: 0,
        correlation_id: 1,
        client_id: "slow".into(),
    };
    let mut frame = BytesMut::new();
    encode_request_frame(
        &header,
        &Request::ApiVersions(ApiVersionsRequest {}),
        &mut frame,
    )
    .expect("encodes");
    // Spread over about half the deadline.
    let gap = timeout / 2 / u32::try_from(frame.len()).expect("small frame");
    for byte in frame.iter() {
        c.stream.write_all(&[*byte]).await.expect("send a byte");
        tokio::time::sleep(gap).await;
    }
    match c.recv(ApiKey::ApiVersions, 1).await {
        Response::ApiVersions(r) => assert_eq!(r.error, ErrorCode::None),
        other => panic!("unexpected {other:?}"),
    }

    // Idle for longer than the frame deadline, then a normal request.
    tokio::time::sleep(timeout + timeout / 2).await;
    let id = c.send(Request::ApiVersions(ApiVersionsRequest {})).await;
    match c.recv(ApiKey::ApiVersions, id).await {
        Response::ApiVersions(r) => assert_eq!(r.error, ErrorCode::None),
        other => panic!("unexpected {other:?}"),
    }
}

/// Slow clients announcing the largest legal frame at once (the default
/// `frame_bytes_max`, 100 MiB): more than the broker budget between them.
const HUGE_FRAME_CLIENTS: usize = 8;
/// Their announced frame: the default `frame_bytes_max`.
const HUGE_FRAME_CLAIM: u32 = 100 * 1024 * 1024;
/// A few bytes a second.
const HUGE_FRAME_BYTE_INTERVAL: Duration = Duration::from_millis(300);
/// Under `RILL_LONG=1` the 30 s measurement would reach the default 30 s
/// read timeout and cut the slow clients; they must outlast it.
const HUGE_FRAME_READ_TIMEOUT_LONG: Duration = Duration::from_secs(120);
/// Scrapes (50 ms apart) until every slow client is connected.
const CONNECT_POLLS: usize = 100;

/// Announces a `HUGE_FRAME_CLAIM`-byte frame and trickles its body until
/// the broker closes the connection or the attack stops.
async fn trickle_huge_frame(addr: std::net::SocketAddr) {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    if wr.write_all(&HUGE_FRAME_CLAIM.to_le_bytes()).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            _ = rd.read(&mut scratch) => return,
            _ = tokio::time::sleep(HUGE_FRAME_BYTE_INTERVAL) => {
                if wr.write_all(&[0]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Eight clients announce 100 MiB frames (800 MiB, over the 512 MiB broker budget) and trickle them; budget is taken as bytes arrive, so a good client keeps its rate (with up-front reservation it stalled until the read timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_slow_huge_frames_hold_only_what_they_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Default limits and read timeout (30 s; longer under `RILL_LONG=1`):
    // the attack outlasts the measurement.
    let timeout_ms = HUGE_FRAME_READ_TIMEOUT_LONG.as_millis().to_string();
    let extra: &[&str] = if long_mode() {
        &["--request-read-timeout-ms", &timeout_ms]
    } else {
        &[]
    };
    let broker = BrokerProcess::spawn(dir.path(), extra);
    create(broker.addr, "good").await;
    let solo = good_client_rate(broker.addr, "good", measure_for()).await;

    let addr = broker.addr;
    let attack = Attack::start(move || async move {
        let clients: Vec<_> = (0..HUGE_FRAME_CLIENTS)
            .map(|_| tokio::spawn(trickle_huge_frame(addr)))
            .collect();
        for c in clients {
            let _ = c.await;
        }
    });
    // Every slow client connected (and, a moment later, announced).
    let want = HUGE_FRAME_CLIENTS as f64;
    let mut open = 0.0;
    for _ in 0..CONNECT_POLLS {
        open = connections_open(broker.metrics).await;
        if open >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open >= want, "only {open} slow clients connected");
    tokio::time::sleep(HUGE_FRAME_BYTE_INTERVAL).await;

    let attacked = good_client_rate(broker.addr, "good", measure_for()).await;
    // Every slow client is still connected: none was cut meanwhile.
    let still_open = connections_open(broker.metrics).await;
    attack.stop();
    assert!(
        still_open >= want,
        "slow clients were cut during the measurement ({still_open} open)"
    );
    report("slow_huge_frames", solo, attacked, &broker);
}
