//! Bad input on one connection gets its error code or a closed connection,
//! never a panic, while another client keeps producing and consuming.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rill_protocol::wire::*;
use rill_protocol::BatchBuilder;
use tokio::io::AsyncWriteExt;

use crate::common::{batch, batches, sample, scrape, start, Client};

/// A request frame with a hand-written header: (key, version) need not be
/// valid, `body` is sent as is.
fn raw_frame(key: u16, version: u16, correlation_id: u32, body: &[u8]) -> BytesMut {
    let client_id = b"raw";
    let mut frame = BytesMut::new();
    let len = 2 + 2 + 4 + 2 + client_id.len() + body.len();
    frame.put_u32_le(len as u32);
    frame.put_u16_le(key);
    frame.put_u16_le(version);
    frame.put_u32_le(correlation_id);
    frame.put_u16_le(client_id.len() as u16);
    frame.put_slice(client_id);
    frame.put_slice(body);
    frame
}

/// Sends `frame`, expects an error answer with `code` for `correlation_id`,
/// then the connection closed.
async fn expect_error_then_close(
    addr: SocketAddr,
    frame: &[u8],
    correlation_id: u32,
    code: ErrorCode,
) {
    let mut c = Client::connect(addr).await;
    c.stream.write_all(frame).await.expect("send");
    let (id, mut body): (u32, Bytes) = c.recv_raw().await.expect("an error response");
    assert_eq!(id, correlation_id);
    let r = ApiVersionsResponse::decode(&mut body).expect("error response decodes");
    assert_eq!(r.error, code);
    assert!(
        c.closed_by_peer().await,
        "connection stays open after {code}"
    );
}

async fn expect_close(addr: SocketAddr, bytes: &[u8], then_shutdown_write: bool) {
    let mut c = Client::connect(addr).await;
    c.stream.write_all(bytes).await.expect("send");
    if then_shutdown_write {
        c.stream.shutdown().await.expect("half close");
    }
    assert!(c.closed_by_peer().await, "connection not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_batches_fail_alone_while_a_good_client_keeps_working() {
    // Proves: each kind of bad input gets its code or a close, none panics
    // the broker, and a concurrent good client never sees an error.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let addr = broker.local_addr();
    let mut admin = Client::connect(addr).await;
    admin.create_topic("good", 1, &[]).await;
    admin
        .create_topic("small", 1, &[("max.message.bytes", "1024")])
        .await;

    // A well-behaved client producing and consuming throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut c = Client::connect(addr).await;
            let mut produced = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c.produce("good", 0, Acks::All, batch(1, "ok", 1)).await;
                assert_eq!((r.error, r.base_offset), (ErrorCode::None, produced));
                produced += 1;
                let f = c.fetch("good", 0, produced - 1, 0, 0).await;
                assert_eq!(batches(f.records).len(), 1);
            }
            produced
        }
    });

    // Frame-level garbage: closed, no answer possible.
    expect_close(addr, &u32::MAX.to_le_bytes(), false).await;
    let mut truncated = BytesMut::new();
    truncated.put_u32_le(100);
    truncated.put_slice(&[1u8; 10]);
    expect_close(addr, &truncated, true).await;
    expect_close(addr, &[7u8, 0], true).await;
    // A header too short to decode.
    expect_close(addr, &[3, 0, 0, 0, 1, 0, 0], false).await;

    // Header decodes: answered with a code, then closed.
    expect_error_then_close(addr, &raw_frame(999, 0, 7, &[]), 7, ErrorCode::UnknownApi).await;
    expect_error_then_close(
        addr,
        &raw_frame(1, 9, 8, &[]),
        8,
        ErrorCode::UnsupportedVersion,
    )
    .await;
    // Metadata v0 claiming 5 topic names, then nothing.
    expect_error_then_close(
        addr,
        &raw_frame(1, 0, 9, &5u32.to_le_bytes()),
        9,
        ErrorCode::InvalidRequest,
    )
    .await;
    // ApiVersions with trailing garbage.
    expect_error_then_close(
        addr,
        &raw_frame(0, 0, 10, b"junk"),
        10,
        ErrorCode::InvalidRequest,
    )
    .await;
    // Pseudo-random garbage bodies: an answer or a close, never a hang.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..32u32 {
        let mut body = vec![0u8; 8 + (round as usize * 7) % 120];
        for b in body.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let key = (seed % 8) as u16;
        let mut c = Client::connect(addr).await;
        c.stream
            .write_all(&raw_frame(key, 0, round, &body))
            .await
            .expect("send");
        c.stream.shutdown().await.expect("half close");
        // Whatever comes back, the broker must end the exchange.
        loop {
            match c.recv_raw().await {
                Ok(_) => continue,
                Err(e) => {
                    assert_ne!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut,
                        "broker hung on garbage"
                    );
                    break;
                }
            }
        }
    }

    // Bad batches: a per-partition error, the connection stays usable.
    let mut c = Client::connect(addr).await;
    let mut bad_crc = batch(3, "crc", 1);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let r = c.produce("good", 0, Acks::All, bad_crc.clone()).await;
    assert_eq!(r.error, ErrorCode::CorruptMessage);
    // A good batch followed by a bad one: nothing of the partition appended.
    let mut mixed = batch(1, "fine", 1);
    mixed.extend_from_slice(&bad_crc);
    let before = c.list_offset("good", 0, LATEST_TIMESTAMP).await.offset;
    let r = c.produce("good", 0, Acks::Leader, mixed).await;
    assert_eq!(r.error, ErrorCode::CorruptMessage);
    let r = c
        .produce(
            "good",
            0,
            Acks::Leader,
            BytesMut::from(&b"not a batch at all"[..]),
        )
        .await;
    assert_eq!(r.error, ErrorCode::CorruptMessage);
    let r = c.produce("good", 0, Acks::Leader, BytesMut::new()).await;
    assert_eq!(r.error, ErrorCode::CorruptMessage);
    let r = c.produce("nosuch", 0, Acks::All, batch(1, "x", 1)).await;
    assert_eq!(r.error, ErrorCode::UnknownTopicOrPartition);
    let r = c.produce("good", 5, Acks::All, batch(1, "x", 1)).await;
    assert_eq!(r.error, ErrorCode::UnknownTopicOrPartition);
    let r = c
        .produce("small", 0, Acks::All, batch(1, &"x".repeat(2048), 1))
        .await;
    assert_eq!(r.error, ErrorCode::MessageTooLarge);
    // A control batch is the replication layer's own: no producer may
    // write one, alone or behind a data batch.
    let control = BatchBuilder::control(1, b"{}").expect("control batch builds");
    let r = c.produce("good", 0, Acks::All, control.clone()).await;
    assert_eq!(r.error, ErrorCode::InvalidRecord);
    let mut behind = batch(1, "fine", 1);
    behind.extend_from_slice(&control);
    let r = c.produce("good", 0, Acks::Leader, behind).await;
    assert_eq!(r.error, ErrorCode::InvalidRecord);

    stop.store(true, Ordering::Relaxed);
    let produced = good.await.expect("good client never failed");
    assert!(produced > 0);
    // The rejected "good" batches left no trace (only the good client's).
    let end = c.list_offset("good", 0, LATEST_TIMESTAMP).await.offset;
    assert_eq!(end, produced);
    assert!(before <= end);

    let text = scrape(broker.metrics_addr()).await;
    assert!(
        sample(
            &text,
            "rill_connection_errors_total{reason=\"frame_too_large\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "rill_connection_errors_total{reason=\"truncated_frame\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "rill_request_errors_total{api=\"produce\",code=\"CorruptMessage\"}"
        ) >= 3.0
    );
    broker.shutdown().await;
}
