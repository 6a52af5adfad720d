//! Topics, their settings and their data survive a graceful restart on the
//! same data dir, and the restart skips recovery (clean-shutdown markers).

use rill_broker::topics::CLEAN_SHUTDOWN_MARKER;
use rill_protocol::wire::*;

use crate::common::{batch, batches, sample, scrape, stamped, start, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_data_survive_a_graceful_restart() {
    // Proves: shutdown, then start on the same dir: same topics, settings,
    // bytes and offsets, markers present, no recovery counted.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(
        c.create_topic("keep.me", 2, &[("retention.ms", "-1")])
            .await
            .error,
        ErrorCode::None
    );
    let first = batch(4, "before", 1_000);
    assert_eq!(
        c.produce("keep.me", 1, Acks::All, first.clone())
            .await
            .error,
        ErrorCode::None
    );
    drop(c);
    broker.shutdown().await;

    for p in 0..2 {
        assert!(
            dir.path()
                .join(format!("keep.me-{p}"))
                .join(CLEAN_SHUTDOWN_MARKER)
                .exists(),
            "graceful shutdown leaves the clean-shutdown marker in partition {p}"
        );
    }
    let meta = std::fs::read_to_string(dir.path().join("__meta/topics/keep.me.toml"))
        .expect("topic metadata");
    assert!(meta.contains("retention.ms"), "override persisted: {meta}");

    let broker = start(dir.path()).await;
    // The metric is process-wide; this topic's label is unique to this test.
    let text = scrape(broker.metrics_addr()).await;
    assert_eq!(
        sample(&text, "rill_log_recoveries_total{topic=\"keep.me\"}"),
        0.0
    );
    let mut c = Client::connect(broker.local_addr()).await;
    match c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
    {
        Response::Metadata(m) => {
            let t = m
                .topics
                .iter()
                .find(|t| t.name == "keep.me")
                .expect("topic reopened");
            assert_eq!(t.partitions.len(), 2);
            assert_eq!(t.partitions[1].log_end_offset, 4);
        }
        other => panic!("unexpected {other:?}"),
    }
    let f = c.fetch("keep.me", 1, 0, 0, 0).await;
    assert_eq!(&f.records[..], &stamped(&first, 0)[..]);
    let r = c
        .produce("keep.me", 1, Acks::All, batch(1, "after", 2_000))
        .await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 4));
    let f = c.fetch("keep.me", 1, 0, 0, 0).await;
    assert_eq!(batches(f.records).len(), 2);
    broker.shutdown().await;
}
