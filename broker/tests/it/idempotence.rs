//! The idempotent producer's broker side over the wire, against the real
//! `rill-broker` process: InitProducerId hands out ids and bumps epochs; a
//! resent batch is answered with its original offset (also after a clean
//! restart, from the snapshot, and after `kill -9`, from the log); gaps,
//! fenced epochs, expired and evicted producer ids get Kafka's error codes
//! and are counted in the metrics.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use rill_protocol::wire::*;
use rill_protocol::{BatchBuilder, Compression};

use crate::common::{batches, sample, scrape, BrokerProcess, Client, IO_TIMEOUT};
use crate::process::sigterm_and_wait;

const TOPIC: &str = "orders";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An idempotent batch of `records` records from `(pid, epoch)` whose
/// first record has sequence `seq`.
fn idem(pid: i64, epoch: i16, seq: i32, records: usize) -> BytesMut {
    let mut b = BatchBuilder::new(Compression::None).with_producer(pid, epoch, seq);
    for i in 0..records {
        b.push(
            now_ms(),
            Some(b"k"),
            format!("{pid}/{epoch}/{seq}/{i}").as_bytes(),
            &[],
        );
    }
    b.finish_into_mut().expect("batch builds")
}

async fn init(
    client: &mut Client,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    let request = Request::InitProducerId(InitProducerIdRequest {
        producer_id,
        producer_epoch,
    });
    match client.call(request).await {
        Response::InitProducerId(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn new_id(client: &mut Client) -> (i64, i16) {
    let r = init(client, NO_PRODUCER_ID, NO_PRODUCER_EPOCH).await;
    assert_eq!(r.error, ErrorCode::None);
    assert_eq!(r.producer_epoch, 0);
    (r.producer_id, r.producer_epoch)
}

async fn produce(client: &mut Client, records: BytesMut) -> ProducePartitionResponse {
    client.produce(TOPIC, 0, Acks::All, records).await
}

async fn connected(broker: &BrokerProcess) -> Client {
    Client::connect(broker.addr).await
}

/// Polls `/metrics` until `name` reaches `at_least` (the maintenance pass
/// samples the logs every second).
async fn await_metric(metrics: SocketAddr, name: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let value = sample(&scrape(metrics).await, name);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_resend_is_answered_with_the_original_offset_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::spawn(dir.path(), &[]);
    let mut c = connected(&broker).await;
    c.create_topic(TOPIC, 1, &[]).await;
    let (pid, epoch) = new_id(&mut c).await;
    let a = idem(pid, epoch, 0, 3);
    let b = idem(pid, epoch, 3, 2);
    let first = produce(&mut c, a.clone()).await;
    let second = produce(&mut c, b.clone()).await;
    assert_eq!(
        (first.error, second.error),
        (ErrorCode::None, ErrorCode::None)
    );
    assert_eq!((first.base_offset, second.base_offset), (0, 3));
    assert_eq!(first.duplicate_batches + second.duplicate_batches, 0);
    let again = produce(&mut c, b.clone()).await;
    assert_eq!(again.error, ErrorCode::None);
    assert_eq!((again.base_offset, again.duplicate_batches), (3, 1));

    // Clean restart: the state comes back from the close's snapshot.
    drop(c);
    assert!(sigterm_and_wait(&mut broker.child).success());
    drop(broker);
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    let mut c = connected(&broker).await;
    let again = produce(&mut c, b.clone()).await;
    assert_eq!(
        (again.error, again.base_offset, again.duplicate_batches),
        (ErrorCode::None, 3, 1)
    );
    let third = idem(pid, epoch, 5, 1);
    assert_eq!(produce(&mut c, third.clone()).await.base_offset, 5);
    // No id handed out before the restart is handed out again.
    let (other, _) = new_id(&mut c).await;
    assert_ne!(other, pid);

    // kill -9: no snapshot since; the state is rebuilt from the log.
    drop(c);
    drop(broker);
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    let mut c = connected(&broker).await;
    for (batch, base) in [(third, 5), (b, 3), (a, 0)] {
        let again = produce(&mut c, batch).await;
        assert_eq!(
            (again.error, again.base_offset, again.duplicate_batches),
            (ErrorCode::None, base, 1)
        );
    }
    let fetched = c.fetch(TOPIC, 0, 0, 0, 0).await;
    assert_eq!(batches(fetched.records).len(), 3, "each batch stored once");
    let text = scrape(broker.metrics).await;
    assert!(
        sample(
            &text,
            "rill_produce_duplicate_batches_total{topic=\"orders\"}"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_gaps_fenced_epochs_and_bad_requests_get_kafkas_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::spawn(dir.path(), &[]);
    let mut c = connected(&broker).await;
    c.create_topic(TOPIC, 1, &[]).await;
    let (pid, epoch) = new_id(&mut c).await;
    assert_eq!(
        produce(&mut c, idem(pid, epoch, 0, 2)).await.error,
        ErrorCode::None
    );
    // A gap: sequence 4 where 2 is next.
    let gap = produce(&mut c, idem(pid, epoch, 4, 1)).await;
    assert_eq!(gap.error, ErrorCode::OutOfOrderSequenceNumber, "{gap:?}");
    // A second session of the same id bumps the epoch ...
    let bumped = init(&mut c, pid, epoch).await;
    assert_eq!(
        (bumped.error, bumped.producer_id, bumped.producer_epoch),
        (ErrorCode::None, pid, 1)
    );
    assert_eq!(
        produce(&mut c, idem(pid, 1, 0, 1)).await.error,
        ErrorCode::None
    );
    // ... and the first is fenced.
    let fenced = produce(&mut c, idem(pid, epoch, 2, 1)).await;
    assert_eq!(fenced.error, ErrorCode::InvalidProducerEpoch, "{fenced:?}");
    // A new id that does not start at 0 on this partition: unknown.
    let (fresh, _) = new_id(&mut c).await;
    let unknown = produce(&mut c, idem(fresh, 0, 9, 1)).await;
    assert_eq!(unknown.error, ErrorCode::UnknownProducerId, "{unknown:?}");
    // An id never handed out, and a negative epoch, are refused.
    assert_eq!(
        init(&mut c, 1 << 40, 0).await.error,
        ErrorCode::InvalidRequest
    );
    assert_eq!(init(&mut c, pid, -5).await.error, ErrorCode::InvalidRequest);
    // An idempotent partition carries exactly one batch.
    let mut two = idem(pid, 1, 1, 1);
    two.extend_from_slice(&idem(pid, 1, 2, 1));
    let refused = produce(&mut c, two).await;
    assert_eq!(refused.error, ErrorCode::InvalidRequest, "{refused:?}");
    // Nothing refused was written: offsets 0..3 only.
    let end = c.list_offset(TOPIC, 0, LATEST_TIMESTAMP).await;
    assert_eq!(end.offset, 3);
    let text = scrape(broker.metrics).await;
    for code in [
        "OutOfOrderSequenceNumber",
        "InvalidProducerEpoch",
        "UnknownProducerId",
    ] {
        let line = format!("rill_request_errors_total{{api=\"produce\",code=\"{code}\"}}");
        assert!(sample(&text, &line) >= 1.0, "{code} counted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotence_expired_and_evicted_producer_ids_are_forgotten_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expiration = Duration::from_millis(300);
    let broker = BrokerProcess::spawn(
        dir.path(),
        &[
            "--producer-id-expiration-ms",
            &expiration.as_millis().to_string(),
            "--producer-ids-per-partition-max",
            "2",
        ],
    );
    let mut c = connected(&broker).await;
    c.create_topic(TOPIC, 1, &[]).await;
    // Expiry: idle longer than the expiration, the id is unknown; starting
    // a sequence again is accepted.
    let (idle, _) = new_id(&mut c).await;
    assert_eq!(
        produce(&mut c, idem(idle, 0, 0, 1)).await.error,
        ErrorCode::None
    );
    tokio::time::sleep(expiration + Duration::from_millis(200)).await;
    let expired = produce(&mut c, idem(idle, 0, 1, 1)).await;
    assert_eq!(expired.error, ErrorCode::UnknownProducerId, "{expired:?}");
    assert!(await_metric(broker.metrics, "rill_producer_id_expirations_total", 1.0).await >= 1.0);
    // Eviction (the expired id is gone): a third producer pushes out the
    // least recently used, well within the expiration.
    let ids = [
        new_id(&mut c).await.0,
        new_id(&mut c).await.0,
        new_id(&mut c).await.0,
    ];
    for &pid in &ids {
        assert_eq!(
            produce(&mut c, idem(pid, 0, 0, 1)).await.error,
            ErrorCode::None
        );
    }
    let evicted = produce(&mut c, idem(ids[0], 0, 1, 1)).await;
    assert_eq!(evicted.error, ErrorCode::UnknownProducerId, "{evicted:?}");
    assert_eq!(
        produce(&mut c, idem(ids[2], 0, 1, 1)).await.error,
        ErrorCode::None
    );
    assert!(await_metric(broker.metrics, "rill_producer_id_evictions_total", 1.0).await >= 1.0);
}
