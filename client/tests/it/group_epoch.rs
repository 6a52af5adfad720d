//! Commits are fenced by member epoch: after a rebalance moves a member to
//! a newer epoch, a raw OffsetCommit carrying its old epoch is refused with
//! StaleMemberEpoch (one ahead: FencedMemberEpoch), while the current epoch
//! is accepted.

use std::time::Duration;

use rill_client::{Connection, ConnectionConfig, GroupConsumer};
use rill_protocol::wire::{
    ErrorCode, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic,
};

use crate::common::create_topic;
use crate::group_harness::{group_config, start_group_broker, SETTLE_DEADLINE};

const TOPIC: &str = "epochs";
const GROUP: &str = "fencing";

async fn poll_until(
    consumers: &mut [&mut GroupConsumer],
    mut done: impl FnMut(&[&mut GroupConsumer]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    while !done(consumers) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "group did not settle"
        );
        for c in consumers.iter_mut() {
            c.poll(Duration::from_millis(20)).await.expect("poll");
        }
    }
}

fn commit(member_id: &str, member_epoch: i32) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        member_epoch,
        topics: vec![OffsetCommitTopic {
            name: TOPIC.to_owned(),
            partitions: vec![OffsetCommitPartition {
                partition: 0,
                offset: 0,
                metadata: None,
            }],
        }],
    }
}

/// Join, rebalance to a newer epoch, then commit raw with the old epoch: StaleMemberEpoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_an_old_epoch_after_a_rebalance_is_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_group_broker(dir.path()).await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, TOPIC, 4).await;

    let mut a = GroupConsumer::new(group_config(&addr, GROUP, "a"))
        .await
        .expect("a");
    a.subscribe([TOPIC]).expect("subscribe");
    poll_until(&mut [&mut a], |c| c[0].assignment().len() == 4).await;
    let (member_id, old_epoch) = (a.member_id(), a.member_epoch());
    assert!(old_epoch > 0);

    let mut b = GroupConsumer::new(group_config(&addr, GROUP, "b"))
        .await
        .expect("b");
    b.subscribe([TOPIC]).expect("subscribe");
    poll_until(&mut [&mut a, &mut b], |c| {
        c[0].assignment().len() == 2 && c[1].assignment().len() == 2
    })
    .await;
    let new_epoch = a.member_epoch();
    assert!(new_epoch > old_epoch, "{new_epoch} not past {old_epoch}");

    let conn = Connection::connect(&addr, ConnectionConfig::default())
        .await
        .expect("connect");
    let code = |r: rill_protocol::wire::OffsetCommitResponse| r.topics[0].partitions[0].error;
    let stale = conn
        .offset_commit(commit(&member_id, old_epoch))
        .await
        .expect("commit");
    assert_eq!(code(stale), ErrorCode::StaleMemberEpoch);
    let ahead = conn
        .offset_commit(commit(&member_id, new_epoch + 1))
        .await
        .expect("commit");
    assert_eq!(code(ahead), ErrorCode::FencedMemberEpoch);
    let current = conn
        .offset_commit(commit(&member_id, a.member_epoch()))
        .await
        .expect("commit");
    assert_eq!(code(current), ErrorCode::None);

    a.close().await.expect("close a");
    b.close().await.expect("close b");
    broker.shutdown().await;
}
