//! Produce at every ack level, fetch back, topics admin, metadata and list
//! offsets, against a real in-process broker over real TCP.

use bytes::BytesMut;
use rill_protocol::wire::*;

use crate::common::{batch, batches, stamped, start, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ack_level_appends_and_fetch_returns_the_same_bytes_with_stamped_offsets() {
    // Proves: acks=all/leader answer with dense base offsets, acks=none is
    // never answered yet appended, and fetch returns byte-equal batches.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(
        c.create_topic("orders", 2, &[]).await.error,
        ErrorCode::None
    );

    let a = batch(3, "all", 1_000);
    let l = batch(2, "leader", 2_000);
    let n = batch(4, "none", 3_000);
    let r = c.produce("orders", 1, Acks::All, a.clone()).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 0));
    let r = c.produce("orders", 1, Acks::Leader, l.clone()).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 3));
    // acks=none: no response at all, so the next response on this
    // connection must be the metadata answer.
    c.send(Client::produce_request("orders", 1, Acks::None, n.clone()))
        .await;
    match c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
    {
        Response::Metadata(m) => assert_eq!(m.topics.len(), 1),
        other => panic!("acks=none was answered: {other:?}"),
    }

    let total = (a.len() + l.len() + n.len()) as u32;
    let f = c.fetch("orders", 1, 0, 5_000, total).await;
    assert_eq!(f.error, ErrorCode::None);
    assert_eq!(f.high_watermark, 9);
    let mut expected = stamped(&a, 0);
    expected.extend(stamped(&l, 3));
    expected.extend(stamped(&n, 5));
    assert_eq!(&f.records[..], &expected[..]);

    // Fetch from the middle of a batch returns that whole batch onwards.
    let f = c.fetch("orders", 1, 4, 0, 1).await;
    let got: Vec<u64> = batches(f.records).iter().map(|b| b.0).collect();
    assert_eq!(got, vec![3, 5]);
    // The other partition is untouched.
    let f = c.fetch("orders", 0, 0, 0, 0).await;
    assert_eq!(
        (f.error, f.high_watermark, f.records.len()),
        (ErrorCode::None, 0, 0)
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_batches_in_one_partition_are_split_and_each_appended() {
    // Proves: records holding batches back to back get consecutive offsets.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("multi", 1, &[]).await;
    let (b1, b2, b3) = (batch(2, "x", 1), batch(5, "y", 2), batch(1, "z", 3));
    let mut records = BytesMut::new();
    for b in [&b1, &b2, &b3] {
        records.extend_from_slice(b);
    }
    let r = c.produce("multi", 0, Acks::Leader, records).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 0));
    let f = c.fetch("multi", 0, 0, 0, 0).await;
    let got = batches(f.records);
    assert_eq!(got.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 2, 7]);
    assert_eq!(&got[1].1[..], &stamped(&b2, 2)[..]);
    assert_eq!(f.high_watermark, 8);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produces_get_offsets_and_responses_in_request_order() {
    // Proves: many requests in flight on one connection are answered in
    // order and appended in order.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("pipe", 1, &[]).await;
    const REQUESTS: usize = 64;
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let acks = if i % 2 == 0 { Acks::All } else { Acks::Leader };
        ids.push(
            c.send(Client::produce_request(
                "pipe",
                0,
                acks,
                batch(2, &format!("p{i}"), 10),
            ))
            .await,
        );
    }
    for (i, id) in ids.into_iter().enumerate() {
        match c.recv(ApiKey::Produce, id).await {
            Response::Produce(r) => {
                let p = &r.topics[0].partitions[0];
                assert_eq!((p.error, p.base_offset), (ErrorCode::None, 2 * i as u64));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let f = c.fetch("pipe", 0, 0, 0, 0).await;
    let got = batches(f.records);
    assert_eq!(got.len(), REQUESTS);
    for (i, (base, bytes)) in got.iter().enumerate() {
        assert_eq!(*base, 2 * i as u64);
        assert_eq!(
            &bytes[..],
            &stamped(&batch(2, &format!("p{i}"), 10), *base)[..]
        );
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_list_offsets_report_log_bounds_and_timestamps() {
    // Proves: metadata lists this broker and log start/end; ListOffsets
    // answers earliest, latest and by timestamp.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("meta", 3, &[]).await;
    c.produce("meta", 2, Acks::Leader, batch(3, "a", 1_000))
        .await;
    c.produce("meta", 2, Acks::Leader, batch(3, "b", 5_000))
        .await;

    let m = match c
        .call(Request::Metadata(MetadataRequest {
            topics: Some(vec!["meta".into(), "nope".into(), "bad/name".into()]),
        }))
        .await
    {
        Response::Metadata(m) => m,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].port, broker.local_addr().port());
    assert_eq!(m.brokers[0].node_id, 0);
    let t = &m.topics[0];
    assert_eq!((t.error, t.partitions.len()), (ErrorCode::None, 3));
    assert_eq!(t.partitions[2].log_end_offset, 6);
    assert_eq!(t.partitions[2].log_start_offset, 0);
    assert_eq!(t.partitions[0].log_end_offset, 0);
    assert!(t.partitions.iter().all(|p| p.leader == 0));
    assert_eq!(m.topics[1].error, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(m.topics[2].error, ErrorCode::InvalidTopic);

    assert_eq!(c.list_offset("meta", 2, EARLIEST_TIMESTAMP).await.offset, 0);
    assert_eq!(c.list_offset("meta", 2, LATEST_TIMESTAMP).await.offset, 6);
    assert_eq!(c.list_offset("meta", 2, 500).await.offset, 0);
    assert_eq!(c.list_offset("meta", 2, 3_000).await.offset, 3);
    assert_eq!(c.list_offset("meta", 2, 9_000).await.offset, 6);
    assert_eq!(
        c.list_offset("meta", 7, LATEST_TIMESTAMP).await.error,
        ErrorCode::UnknownTopicOrPartition
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_validates_and_delete_removes_the_data() {
    // Proves: CreateTopics rejects bad names, partition counts, configs and
    // duplicates with their codes; validate_only creates nothing; delete
    // removes metadata and directories.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(
        c.create_topic("..", 1, &[]).await.error,
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        c.create_topic("__consumer_offsets", 1, &[]).await.error,
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        c.create_topic(&"x".repeat(250), 1, &[]).await.error,
        ErrorCode::InvalidTopic
    );
    assert_eq!(
        c.create_topic("big", 100_000, &[]).await.error,
        ErrorCode::InvalidPartitions
    );
    let bad = c.create_topic("cfg", 1, &[("retention.ms", "soon")]).await;
    assert_eq!(bad.error, ErrorCode::InvalidConfig);
    assert!(bad
        .error_message
        .unwrap_or_default()
        .contains("retention.ms"));
    let bad = c
        .create_topic("cfg", 1, &[("flush.policy", "sometimes")])
        .await;
    assert_eq!(bad.error, ErrorCode::InvalidConfig);
    let bad = c.create_topic("cfg", 1, &[("no.such", "1")]).await;
    assert_eq!(bad.error, ErrorCode::InvalidConfig);

    match c
        .call(Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "dry".into(),
                partitions: 1,
                replication_factor: 0,
                configs: vec![],
            }],
            validate_only: true,
        }))
        .await
    {
        Response::CreateTopics(r) => assert_eq!(r.topics[0].error, ErrorCode::None),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!dir.path().join("dry-0").exists());

    let ok = c
        .create_topic(
            "gone",
            2,
            &[("retention.ms", "60000"), ("segment.bytes", "65536")],
        )
        .await;
    assert_eq!(ok.error, ErrorCode::None);
    assert_eq!(
        c.create_topic("gone", 2, &[]).await.error,
        ErrorCode::TopicAlreadyExists
    );
    c.produce("gone", 1, Acks::All, batch(1, "g", 1)).await;
    assert!(dir.path().join("gone-1").is_dir());
    // 0 partitions asks for the broker default (1).
    assert_eq!(c.create_topic("dflt", 0, &[]).await.error, ErrorCode::None);
    assert!(dir.path().join("dflt-0").is_dir() && !dir.path().join("dflt-1").exists());

    let names = vec!["gone".to_string(), "never".to_string()];
    match c
        .call(Request::DeleteTopics(DeleteTopicsRequest { names }))
        .await
    {
        Response::DeleteTopics(r) => {
            assert_eq!(r.results[0].error, ErrorCode::None);
            assert_eq!(r.results[1].error, ErrorCode::UnknownTopicOrPartition);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!dir.path().join("gone-0").exists() && !dir.path().join("gone-1").exists());
    let r = c.produce("gone", 0, Acks::All, batch(1, "g", 1)).await;
    assert_eq!(r.error, ErrorCode::UnknownTopicOrPartition);
    // Re-created under the same name, it starts empty.
    assert_eq!(c.create_topic("gone", 1, &[]).await.error, ErrorCode::None);
    let f = c.fetch("gone", 0, 0, 0, 0).await;
    assert_eq!((f.high_watermark, f.records.len()), (0, 0));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reports_offset_out_of_range_and_respects_size_limits() {
    // Proves: a fetch past the end gets OffsetOutOfRange; max_bytes limits
    // the response but the first partition always gets one whole batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("sz", 2, &[]).await;
    for p in 0..2 {
        for i in 0..3 {
            c.produce("sz", p, Acks::Leader, batch(10, &format!("s{p}{i}"), 1))
                .await;
        }
    }
    let f = c.fetch("sz", 0, 31, 0, 0).await;
    assert_eq!(f.error, ErrorCode::OffsetOutOfRange);

    let one = batch(10, "s00", 1).len() as u32;
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        topics: vec![FetchTopic {
            name: "sz".into(),
            partitions: (0..2)
                .map(|partition| FetchPartition {
                    partition,
                    fetch_offset: 0,
                    partition_max_bytes: one * 10,
                })
                .collect(),
        }],
    });
    match c.call(request).await {
        Response::Fetch(r) => {
            let ps = &r.topics[0].partitions;
            assert_eq!(
                batches(ps[0].records.clone()).len(),
                1,
                "first partition: one batch"
            );
            assert!(ps[1].records.is_empty(), "no room left for the second");
            assert_eq!(ps[1].high_watermark, 30);
        }
        other => panic!("unexpected {other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_spanning_topics_and_partitions_answers_each_partition() {
    // Proves: a produce over several topics/partitions appends each and
    // reports per-partition results (an unknown one fails alone); a fetch
    // over several topics returns each partition's own batches.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("ta", 2, &[]).await;
    c.create_topic("tb", 1, &[]).await;
    c.produce("ta", 1, Acks::Leader, batch(2, "pre", 1)).await;
    let parts = |specs: &[(u32, &str)]| -> Vec<ProducePartition> {
        specs
            .iter()
            .map(|(partition, tag)| ProducePartition {
                partition: *partition,
                records: batch(3, tag, 1),
            })
            .collect()
    };
    let request = Request::Produce(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 1_000,
        topics: vec![
            ProduceTopic {
                name: "ta".into(),
                partitions: parts(&[(0, "a0"), (1, "a1"), (9, "a9")]),
            },
            ProduceTopic {
                name: "tb".into(),
                partitions: parts(&[(0, "b0")]),
            },
        ],
    });
    let Response::Produce(r) = c.call(request).await else {
        panic!("not a produce response")
    };
    let got: Vec<(String, u32, ErrorCode, u64)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.clone(), p.partition, p.error, p.base_offset))
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ta".to_string(), 0, ErrorCode::None, 0),
            ("ta".to_string(), 1, ErrorCode::None, 2),
            ("ta".to_string(), 9, ErrorCode::UnknownTopicOrPartition, 0),
            ("tb".to_string(), 0, ErrorCode::None, 0),
        ]
    );
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: ["ta", "tb"]
            .iter()
            .map(|name| FetchTopic {
                name: name.to_string(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                }],
            })
            .collect(),
    });
    let Response::Fetch(f) = c.call(request).await else {
        panic!("not a fetch response")
    };
    assert_eq!(
        &f.topics[0].partitions[0].records[..],
        &stamped(&batch(3, "a0", 1), 0)[..]
    );
    assert_eq!(
        &f.topics[1].partitions[0].records[..],
        &stamped(&batch(3, "b0", 1), 0)[..]
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fetch_response_arrives_intact_across_partial_socket_writes() {
    // Proves: a multi-megabyte response (more than a socket buffer, so the
    // vectored writes are partial) arrives byte-equal and in order.
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let mut c = Client::connect(broker.local_addr()).await;
    c.create_topic("large", 2, &[]).await;
    let mut expected = [Vec::new(), Vec::new()];
    let mut next = [0u64, 0];
    for i in 0..12u32 {
        let p = (i % 2) as usize;
        // ~800 KiB of varied bytes per batch (key and value carry the tag).
        let value: String = (0..400 * 1024)
            .map(|j| char::from(b'a' + ((j as u32 * 31 + i * 7) % 26) as u8))
            .collect();
        let sent = batch(1, &value, i64::from(i));
        let r = c
            .produce("large", p as u32, Acks::Leader, sent.clone())
            .await;
        assert_eq!((r.error, r.base_offset), (ErrorCode::None, next[p]));
        expected[p].extend(stamped(&sent, next[p]));
        next[p] += 1;
    }
    // Let the client lag so the broker's writes hit a full socket buffer.
    let id = c
        .send(Request::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 32 * 1024 * 1024,
            topics: vec![FetchTopic {
                name: "large".into(),
                partitions: (0..2)
                    .map(|partition| FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 16 * 1024 * 1024,
                    })
                    .collect(),
            }],
        }))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let Response::Fetch(f) = c.recv(ApiKey::Fetch, id).await else {
        panic!("not a fetch response")
    };
    for (p, want) in expected.iter().enumerate() {
        let got = &f.topics[0].partitions[p].records;
        assert_eq!(got.len(), want.len());
        assert!(got[..] == want[..], "partition {p} differs");
    }
    broker.shutdown().await;
}

/// `--node-id` and `--advertised-addr` are what Metadata tells clients:
/// the broker's id, where to reach it, and who leads each partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_names_the_node_id_and_the_advertised_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = rill_broker::BrokerConfig {
        node_id: 3,
        advertised_addr: Some("broker-3.example:19092".to_owned()),
        ..crate::common::config(dir.path())
    };
    let broker = rill_broker::Broker::start(config).await.expect("starts");
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(c.create_topic("meta", 2, &[]).await.error, ErrorCode::None);
    let m = match c
        .call(Request::Metadata(MetadataRequest { topics: None }))
        .await
    {
        Response::Metadata(m) => m,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        m.brokers,
        vec![MetadataBroker {
            node_id: 3,
            host: "broker-3.example".to_owned(),
            port: 19092
        }]
    );
    assert!(m.topics[0].partitions.iter().all(|p| p.leader == 3));
    broker.shutdown().await;

    for (node_id, advertised) in [(u32::MAX, None), (0, Some("no-port")), (0, Some(":9092"))] {
        let bad = rill_broker::BrokerConfig {
            node_id,
            advertised_addr: advertised.map(str::to_owned),
            ..crate::common::config(dir.path())
        };
        assert!(
            matches!(bad.validate(), Err(rill_broker::ConfigError::Invalid(_))),
            "node id {node_id}, advertised {advertised:?} accepted"
        );
    }
}
