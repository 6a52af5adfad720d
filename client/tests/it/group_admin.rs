//! Group administration end to end: describe shows members, assignment,
//! committed offsets and lag (0 once everything is consumed, also as the
//! `rill_group_lag` gauge); resets and deletes are refused while members
//! exist; a dry-run reset changes nothing; a real one moves the committed
//! offsets; a deleted group is gone.

use std::net::SocketAddr;
use std::time::Duration;

use rill_client::{Admin, AdminConfig, GroupConsumer, OffsetReset, ResetTo};
use rill_protocol::wire::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::create_topic;
use crate::group_harness::{group_config, produce, start_group_broker, SETTLE_DEADLINE};

const TOPIC: &str = "inventory";
const GROUP: &str = "stock-keeper";
const RECORDS: u64 = 100;

async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send scrape");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read scrape");
    out
}

/// The `rill_group_lag` sample of one partition of [`GROUP`], if present.
fn lag_sample(scrape: &str, partition: u32) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix("rill_group_lag{")?;
        let (labels, value) = rest.split_once("} ")?;
        let ours = labels.contains(&format!("group=\"{GROUP}\""))
            && labels.contains(&format!("topic=\"{TOPIC}\""))
            && labels.contains(&format!("partition=\"{partition}\""));
        ours.then(|| value.trim().parse().ok()).flatten()
    })
}

fn code(e: rill_client::ClientError) -> Option<ErrorCode> {
    e.code()
}

/// Describe/lag with a live member, refusals while non-empty, dry-run and real resets, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_reset_and_delete_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, 2).await;
    produce(&addr, TOPIC, 0, RECORDS).await;
    let admin = Admin::connect(AdminConfig::new(&addr))
        .await
        .expect("admin");
    let ends: Vec<u64> = admin
        .describe_topic(TOPIC)
        .await
        .expect("topic")
        .partitions
        .iter()
        .map(|p| p.log_end_offset)
        .collect();
    assert_eq!(ends.iter().sum::<u64>(), RECORDS);

    let mut member = GroupConsumer::new(group_config(&addr, GROUP, "keeper-1"))
        .await
        .expect("consumer");
    member.subscribe([TOPIC]).expect("subscribe");
    let mut consumed = 0usize;
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    while consumed < RECORDS as usize && tokio::time::Instant::now() < deadline {
        consumed += member
            .poll(Duration::from_millis(100))
            .await
            .expect("poll")
            .len();
    }
    assert_eq!(consumed, RECORDS as usize);
    member.commit().await.expect("commit");

    let described = admin.describe_group(GROUP).await.expect("describe");
    assert_eq!(described.state, "Stable");
    assert_eq!(described.members.len(), 1);
    let m = &described.members[0];
    assert_eq!(m.client_id, "keeper-1");
    assert_eq!(m.member_id, member.member_id());
    assert_eq!(
        m.assignment,
        vec![(TOPIC.to_owned(), 0), (TOPIC.to_owned(), 1)]
    );
    assert!(m.pending_revocation.is_empty());
    let rows: Vec<(u32, Option<u64>, u64, Option<u64>)> = described
        .offsets
        .iter()
        .map(|(_, o)| (o.partition, o.committed, o.log_end_offset, o.lag))
        .collect();
    assert_eq!(
        rows,
        vec![
            (0, Some(ends[0]), ends[0], Some(0)),
            (1, Some(ends[1]), ends[1], Some(0))
        ]
    );
    // The gauges are refreshed once a second by the maintenance task.
    let mut lag_seen = None;
    for _ in 0..40 {
        let text = scrape(broker.metrics_addr()).await;
        lag_seen = lag_sample(&text, 0).zip(lag_sample(&text, 1));
        if lag_seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        lag_seen,
        Some((0.0, 0.0)),
        "rill_group_lag after consuming all"
    );

    let listed = admin.list_groups().await.expect("list");
    let row = listed.iter().find(|g| g.group_id == GROUP).expect("listed");
    assert_eq!((row.state.as_str(), row.members), ("Stable", 1));

    let refused = admin
        .reset_offsets(GROUP, TOPIC, None, ResetTo::Earliest, false)
        .await
        .expect_err("reset with a member");
    assert_eq!(code(refused), Some(ErrorCode::NonEmptyGroup));
    let refused = admin
        .delete_group(GROUP)
        .await
        .expect_err("delete with a member");
    assert_eq!(code(refused), Some(ErrorCode::NonEmptyGroup));

    member.close().await.expect("close");
    let listed = admin.list_groups().await.expect("list");
    let row = listed.iter().find(|g| g.group_id == GROUP).expect("listed");
    assert_eq!((row.state.as_str(), row.members), ("Empty", 0));

    let dry = admin
        .reset_offsets(GROUP, TOPIC, None, ResetTo::Earliest, true)
        .await
        .expect("dry run");
    assert_eq!(
        dry,
        vec![
            OffsetReset {
                partition: 0,
                old: Some(ends[0]),
                new: 0
            },
            OffsetReset {
                partition: 1,
                old: Some(ends[1]),
                new: 0
            }
        ]
    );
    let unchanged = admin.describe_group(GROUP).await.expect("describe");
    assert!(
        unchanged
            .offsets
            .iter()
            .all(|(_, o)| o.committed == Some(o.log_end_offset)),
        "a dry run committed something: {:?}",
        unchanged.offsets
    );

    admin
        .reset_offsets(GROUP, TOPIC, None, ResetTo::Earliest, false)
        .await
        .expect("reset");
    admin
        .reset_offsets(GROUP, TOPIC, Some(&[1]), ResetTo::Offset(3), false)
        .await
        .expect("reset one partition");
    let reset = admin.describe_group(GROUP).await.expect("describe");
    assert_eq!(reset.state, "Empty");
    assert!(reset.members.is_empty());
    let rows: Vec<(u32, Option<u64>, Option<u64>)> = reset
        .offsets
        .iter()
        .map(|(_, o)| (o.partition, o.committed, o.lag))
        .collect();
    assert_eq!(
        rows,
        vec![(0, Some(0), Some(ends[0])), (1, Some(3), Some(ends[1] - 3))]
    );

    admin.delete_group(GROUP).await.expect("delete");
    let listed = admin.list_groups().await.expect("list");
    assert!(listed.iter().all(|g| g.group_id != GROUP));
    let gone = admin.describe_group(GROUP).await.expect_err("deleted");
    assert_eq!(code(gone), Some(ErrorCode::GroupIdNotFound));
    let again = admin.delete_group(GROUP).await.expect_err("deleted twice");
    assert_eq!(code(again), Some(ErrorCode::GroupIdNotFound));
    broker.shutdown().await;
}
