//! `rill topic` create, list, describe and delete change and show the
//! broker's real topics.

use crate::common::{ok, stderr, stdout, TestBroker};

#[test]
fn create_list_describe_delete_round_trip() {
    let broker = TestBroker::start();
    let created = broker.rill(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--retention-ms",
        "60000",
        "--segment-bytes",
        "1048576",
        "--fsync",
        "interval_ms:100",
    ]);
    ok(&created);
    assert!(stdout(&created).contains("created topic orders with 3 partitions"));
    ok(&broker.rill(&["topic", "create", "audit"]));

    let listed = broker.rill(&["topic", "list"]);
    assert_eq!(stdout(ok(&listed)), "audit\norders\n");

    // Three records land in partition 1; describe must show them there.
    ok(&broker.rill_with_stdin(&["produce", "orders", "--partition", "1"], b"a\nb\nc\n"));
    let described = broker.rill(&["topic", "describe", "orders"]);
    let text = stdout(ok(&described));
    assert!(text.starts_with("topic orders (3 partitions)"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(2)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // partition, leader, epoch, replicas, in-sync replicas, log start,
    // high watermark: a lone broker (node 0) is every partition's only
    // replica.
    assert_eq!(
        rows,
        vec![
            vec!["0", "0", "0", "0", "0", "0", "0"],
            vec!["1", "0", "0", "0", "0", "0", "3"],
            vec!["2", "0", "0", "0", "0", "0", "0"],
        ]
    );

    ok(&broker.rill(&["topic", "delete", "orders"]));
    let listed = broker.rill(&["topic", "list"]);
    assert_eq!(stdout(ok(&listed)), "audit\n");

    let gone = broker.rill(&["topic", "describe", "orders"]);
    assert_eq!(gone.status.code(), Some(1));
    let err = stderr(&gone);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("orders"), "{err}");
}

#[test]
fn creating_a_topic_twice_or_with_bad_settings_fails_with_a_hint() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "dup"]));
    let again = broker.rill(&["topic", "create", "dup"]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("TopicAlreadyExists") && err.contains("rill topic delete"),
        "{err}"
    );

    let bad = broker.rill(&["topic", "create", "bad", "--fsync", "sometimes"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
}
