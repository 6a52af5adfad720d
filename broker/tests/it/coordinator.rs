//! FindCoordinator over real sockets: a lone broker names itself and
//! serves the group APIs; in a 3-broker in-process cluster every broker
//! names the same coordinator (the lowest registered node id), which
//! serves the group APIs, while the others answer them `NotCoordinator`,
//! counted in `rill_request_errors_total`.

use rill_protocol::wire::*;

use crate::cluster::{await_metadata, create, TestCluster, IDS};
use crate::common::{config, sample, scrape, Client};

fn find(group: &str) -> Request {
    Request::FindCoordinator(FindCoordinatorRequest {
        key: group.into(),
        key_type: COORDINATOR_KEY_GROUP,
    })
}

async fn find_coordinator(client: &mut Client, group: &str) -> FindCoordinatorResponse {
    match client.call(find(group)).await {
        Response::FindCoordinator(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

fn join(group: &str, topic: &str) -> Request {
    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_epoch: MEMBER_EPOCH_JOIN,
        subscribed_topics: Some(vec![topic.into()]),
        ..Default::default()
    })
}

fn commit(group: &str, topic: &str, partitions: &[u32]) -> Request {
    Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        member_id: String::new(),
        member_epoch: MEMBER_EPOCH_ADMIN_COMMIT,
        topics: vec![OffsetCommitTopic {
            name: topic.into(),
            partitions: partitions
                .iter()
                .map(|&partition| OffsetCommitPartition {
                    partition,
                    offset: 0,
                    metadata: None,
                })
                .collect(),
        }],
    })
}

/// Every group API, with the codes its answer carries (top level, per
/// group or per partition).
fn group_requests(group: &str, topic: &str) -> Vec<Request> {
    vec![
        join(group, topic),
        Request::LeaveGroup(LeaveGroupRequest {
            group_id: group.into(),
            member_id: "m".into(),
        }),
        commit(group, topic, &[0, 1]),
        Request::OffsetFetch(OffsetFetchRequest {
            group_id: group.into(),
            topics: None,
        }),
        Request::ListGroups(ListGroupsRequest {}),
        Request::DescribeGroups(DescribeGroupsRequest {
            group_ids: vec![group.into(), "other".into()],
        }),
        Request::DeleteGroups(DeleteGroupsRequest {
            group_ids: vec![group.into()],
        }),
        Request::ResetOffsets(ResetOffsetsRequest {
            group_id: group.into(),
            topic: topic.into(),
            partitions: None,
            spec: ResetSpec::Earliest,
            value: 0,
            dry_run: true,
        }),
    ]
}

fn codes(response: &Response) -> Vec<ErrorCode> {
    match response {
        Response::ConsumerGroupHeartbeat(r) => vec![r.error],
        Response::LeaveGroup(r) => vec![r.error],
        Response::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error))
            .collect(),
        Response::OffsetFetch(r) => vec![r.error],
        Response::ListGroups(r) => vec![r.error],
        Response::DescribeGroups(r) => r.groups.iter().map(|g| g.error).collect(),
        Response::DeleteGroups(r) => r.results.iter().map(|g| g.error).collect(),
        Response::ResetOffsets(r) => vec![r.error],
        other => panic!("not a group response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_broker_coordinates_its_groups_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.node_id = 7;
    let broker = rill_broker::Broker::start(config)
        .await
        .expect("broker starts");
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("t", 2, &[]).await;

    let found = find_coordinator(&mut c, "g").await;
    assert_eq!(found.error, ErrorCode::None, "{found:?}");
    assert_eq!(found.node_id, 7);
    assert_eq!(found.host, broker.local_addr().ip().to_string());
    assert_eq!(found.port, broker.local_addr().port());
    // The same answer as Metadata's one broker.
    let m = match c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
    {
        Response::Metadata(m) => m,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        (m.brokers[0].node_id, &m.brokers[0].host, m.brokers[0].port),
        (found.node_id, &found.host, found.port)
    );

    // A key type other than a group's.
    let r = match c
        .call(Request::FindCoordinator(FindCoordinatorRequest {
            key: "g".into(),
            key_type: 1,
        }))
        .await
    {
        Response::FindCoordinator(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(r.error, ErrorCode::InvalidRequest);
    assert_eq!(r.node_id, NO_NODE_ID);

    // The group APIs are served here: no NotCoordinator anywhere.
    for request in group_requests("g", "t") {
        let key = request.api_key();
        let response = c.call(request).await;
        for code in codes(&response) {
            assert!(
                !matches!(
                    code,
                    ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable
                ),
                "{key:?}: {response:?}"
            );
        }
    }
    // A member joined and got both partitions.
    match c.call(join("g2", "t")).await {
        Response::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error, ErrorCode::None, "{r:?}");
            assert!(!r.member_id.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_has_one_coordinator_and_the_others_redirect() {
    let cluster = TestCluster::start().await;
    for id in IDS {
        await_metadata(&cluster, id, None, "three registered brokers", |m| {
            (m.brokers.len() == 3).then_some(())
        })
        .await;
    }
    let mut admin = cluster.client(2).await;
    assert_eq!(create(&mut admin, "in", 2, 1).await.error, ErrorCode::None);
    for id in IDS {
        await_metadata(&cluster, id, Some("in"), "the topic", |m| {
            (m.topics[0].error == ErrorCode::None).then_some(())
        })
        .await;
    }

    // Every broker names broker 1, the lowest id, at its client address,
    // for every group.
    for id in IDS {
        let mut c = cluster.client(id).await;
        for group in ["g", "another", ""] {
            let found = find_coordinator(&mut c, group).await;
            assert_eq!(found.error, ErrorCode::None, "at {id}: {found:?}");
            assert_eq!(found.node_id, 1, "at {id}");
            assert_eq!(found.host, cluster.addr(1).ip().to_string());
            assert_eq!(found.port, cluster.addr(1).port());
        }
    }

    // The others answer every group API NotCoordinator, counted.
    let metrics = cluster.nodes[&2]
        .handle
        .as_ref()
        .expect("running")
        .metrics_addr();
    let before = scrape(metrics).await;
    for id in [2, 3] {
        let mut c = cluster.client(id).await;
        for request in group_requests("g", "in") {
            let key = request.api_key();
            let response = c.call(request).await;
            let codes = codes(&response);
            assert!(!codes.is_empty(), "{key:?} at {id}");
            assert!(
                codes.iter().all(|c| *c == ErrorCode::NotCoordinator),
                "{key:?} at {id}: {response:?}"
            );
        }
    }
    let after = scrape(metrics).await;
    let delta = |api: &str| {
        let line = format!("rill_request_errors_total{{api=\"{api}\",code=\"NotCoordinator\"}}");
        sample(&after, &line) - sample(&before, &line)
    };
    // Two brokers; two partitions per commit, two groups per describe.
    assert_eq!(delta("consumer_group_heartbeat"), 2.0);
    assert_eq!(delta("leave_group"), 2.0);
    assert_eq!(delta("offset_commit"), 4.0);
    assert_eq!(delta("offset_fetch"), 2.0);
    assert_eq!(delta("list_groups"), 2.0);
    assert_eq!(delta("describe_groups"), 4.0);
    assert_eq!(delta("delete_groups"), 2.0);
    assert_eq!(delta("reset_offsets"), 2.0);

    // The coordinator serves them: a member joins and is given both
    // partitions (one hosted here, one elsewhere), commits, and the
    // offsets read back.
    let mut c = cluster.client(1).await;
    let joined = match c.call(join("g", "in")).await {
        Response::ConsumerGroupHeartbeat(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(joined.error, ErrorCode::None, "{joined:?}");
    let listed = match c.call(Request::ListGroups(ListGroupsRequest {})).await {
        Response::ListGroups(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(listed.error, ErrorCode::None);
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_id, "g");
    // An admin commit to an empty group, over partitions hosted here and
    // elsewhere, reads back. The coordinator knows a topic once its broker
    // has opened it, a moment after Metadata names it: until then the
    // commit is refused as for an unknown topic (never NotCoordinator).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let codes: Vec<ErrorCode> = match c.call(commit("h", "in", &[0, 1])).await {
            Response::OffsetCommit(r) => r.topics[0].partitions.iter().map(|p| p.error).collect(),
            other => panic!("unexpected {other:?}"),
        };
        if codes == [ErrorCode::None, ErrorCode::None] {
            break;
        }
        assert_eq!(
            codes,
            [ErrorCode::UnknownTopicOrPartition; 2],
            "commit at the coordinator"
        );
        assert!(tokio::time::Instant::now() < deadline, "topic never opened");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    match c
        .call(Request::OffsetFetch(OffsetFetchRequest {
            group_id: "h".into(),
            topics: None,
        }))
        .await
    {
        Response::OffsetFetch(r) => {
            assert_eq!(r.error, ErrorCode::None);
            assert_eq!(r.topics[0].partitions.len(), 2, "{r:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(cluster.shutdown().await);
}
