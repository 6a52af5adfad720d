//! Consumer groups from the command line: `rill consume --group` commits
//! what it printed (at the end, at --max-messages, on Ctrl-C), `rill group`
//! shows, resets and deletes groups, and `rill bench group` verifies a
//! balanced run — all against a real broker and the real `rill` binary.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{ok, rill, stderr, stdout, TestBroker};

/// Longest wait for a background consumer to show up in its group.
const MEMBER_WAIT: Duration = Duration::from_secs(20);

/// One row of the partition table of `rill group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OffsetRow {
    topic: String,
    partition: u32,
    committed: Option<u64>,
    log_end: u64,
    lag: Option<u64>,
}

fn describe(broker: &TestBroker, group: &str) -> (String, Vec<OffsetRow>) {
    let text = stdout(ok(&broker.rill(&["group", "describe", group])));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("TOPIC") {
            in_table = true;
            continue;
        }
        if !in_table || line.starts_with("total lag") {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 6, "{line}");
        rows.push(OffsetRow {
            topic: cols[0].to_owned(),
            partition: cols[1].parse().expect("partition"),
            committed: cols[2].parse().ok(),
            log_end: cols[3].parse().expect("log end"),
            lag: cols[4].parse().ok(),
        });
    }
    (text, rows)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// `(key, value)` of every consumed JSON record, sorted.
fn key_values(records: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("utf-8 key").to_owned(),
                r["value"].as_str().expect("utf-8 value").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn consume_group(broker: &TestBroker, topic: &str, group: &str) -> Vec<Value> {
    let out = broker.rill(&[
        "consume",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
    ]);
    json_lines(&stdout(ok(&out)))
}

fn one_error_line(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn group_consume_commits_so_describe_shows_no_lag_and_reset_replays_everything() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "orders", "--partitions", "3"]));
    let input: String = (0..30)
        .map(|i| format!("user{}:order-{i}\n", i % 7))
        .collect();
    ok(&broker.rill_with_stdin(
        &["produce", "orders", "--key-separator", ":"],
        input.as_bytes(),
    ));
    let mut expected: Vec<(String, String)> = (0..30)
        .map(|i| (format!("user{}", i % 7), format!("order-{i}")))
        .collect();
    expected.sort();

    let first = consume_group(&broker, "orders", "billing");
    assert_eq!(key_values(&first), expected);

    let (text, rows) = describe(&broker, "billing");
    assert!(text.starts_with("group billing: state Empty"), "{text}");
    assert!(text.contains("total lag: 0\n"), "{text}");
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows.iter().map(|r| r.log_end).sum::<u64>(), 30);
    for r in &rows {
        assert_eq!(r.topic, "orders");
        assert_eq!(r.committed, Some(r.log_end), "{text}");
        assert_eq!(r.lag, Some(0), "{text}");
    }

    // Committed at the end: the same group has nothing left to read.
    assert!(consume_group(&broker, "orders", "billing").is_empty());

    let reset = broker.rill(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    let reset_text = stdout(ok(&reset));
    assert!(
        reset_text.contains("reset group billing on 3 partitions of orders"),
        "{reset_text}"
    );
    let (_, rows) = describe(&broker, "billing");
    assert!(rows.iter().all(|r| r.committed == Some(0)), "{rows:?}");
    assert_eq!(rows.iter().filter_map(|r| r.lag).sum::<u64>(), 30);

    let again = consume_group(&broker, "orders", "billing");
    assert_eq!(key_values(&again), expected);
}

#[test]
fn max_messages_commits_exactly_what_was_printed() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "one"]));
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    ok(&broker.rill_with_stdin(&["produce", "one"], input.as_bytes()));

    let out = broker.rill(&[
        "consume",
        "one",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "4",
    ]);
    assert_eq!(stdout(ok(&out)), "v0\nv1\nv2\nv3\n");
    assert_eq!(stderr(&out), "consumed 4 records from one (group g)\n");
    let (_, rows) = describe(&broker, "g");
    assert_eq!(
        rows,
        vec![OffsetRow {
            topic: "one".to_owned(),
            partition: 0,
            committed: Some(4),
            log_end: 10,
            lag: Some(6),
        }]
    );
    // The next member of g goes on at v4, even without --from-beginning.
    let rest = broker.rill(&["consume", "one", "--group", "g", "--exit-at-end"]);
    let expected: String = (4..10).map(|i| format!("v{i}\n")).collect();
    assert_eq!(stdout(ok(&rest)), expected);
}

#[test]
fn reset_dry_run_changes_nothing_and_targets_move_only_what_they_name() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "t", "--partitions", "2"]));
    ok(&broker.rill_with_stdin(&["produce", "t", "--partition", "0"], b"a\nb\nc\n"));
    ok(&broker.rill_with_stdin(&["produce", "t", "--partition", "1"], b"d\ne\n"));
    assert_eq!(consume_group(&broker, "t", "g").len(), 5);
    let (_, before) = describe(&broker, "g");
    assert_eq!(
        before.iter().map(|r| r.committed).collect::<Vec<_>>(),
        [Some(3), Some(2)]
    );

    let dry = broker.rill(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-earliest",
        "--dry-run",
    ]);
    let text = stdout(ok(&dry));
    assert!(
        text.contains("dry run: group g would move 2 partitions of t; nothing changed"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, [["0", "3", "0"], ["1", "2", "0"]]);
    assert_eq!(describe(&broker, "g").1, before);

    // One partition to an offset; the other keeps its commit.
    ok(&broker.rill(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-offset",
        "1",
        "--partition",
        "0",
    ]));
    let (_, after) = describe(&broker, "g");
    assert_eq!(
        after.iter().map(|r| r.committed).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    // A time before every record is the log start; one far ahead the end.
    ok(&broker.rill(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-timestamp",
        "0",
    ]));
    assert!(describe(&broker, "g")
        .1
        .iter()
        .all(|r| r.committed == Some(0)));
    ok(&broker.rill(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-datetime",
        "2200-01-01T00:00:00Z",
    ]));
    assert_eq!(
        describe(&broker, "g")
            .1
            .iter()
            .map(|r| r.committed)
            .collect::<Vec<_>>(),
        [Some(3), Some(2)]
    );
}

/// Starts `rill consume TOPIC --group G --from-beginning` in the background.
fn spawn_member(broker: &TestBroker, topic: &str, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args([
            "--broker",
            &broker.addr,
            "consume",
            topic,
            "--group",
            group,
            "--from-beginning",
        ])
        .env_remove("RILL_BROKER")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts")
}

fn interrupt(child: &Child) {
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
}

#[test]
fn a_group_with_members_refuses_reset_and_delete_until_ctrl_c_commits_and_leaves() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "live"]));
    ok(&broker.rill_with_stdin(&["produce", "live"], b"one\ntwo\nthree\n"));
    let mut child = spawn_member(&broker, "live", "watchers");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    for want in ["one", "two", "three"] {
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some(want));
    }
    // The member is in the group (it printed, so it was assigned).
    let deadline = Instant::now() + MEMBER_WAIT;
    loop {
        let (text, _) = describe(&broker, "watchers");
        if text.contains("state Stable, ") && text.contains("1 member\n") && text.contains("live:0")
        {
            break;
        }
        assert!(Instant::now() < deadline, "member never showed: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = stdout(ok(&broker.rill(&["group", "list"])));
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("watchers "))
        .expect("group listed")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["watchers", "Stable", "1"], "{list}");

    let reset = broker.rill(&[
        "group",
        "reset-offsets",
        "watchers",
        "--topic",
        "live",
        "--to-earliest",
    ]);
    let err = one_error_line(&reset, 1);
    assert!(
        err.contains("NonEmptyGroup") && err.contains("stop the group's consumers"),
        "{err}"
    );
    let delete = broker.rill(&["group", "delete", "watchers"]);
    let err = one_error_line(&delete, 1);
    assert!(err.contains("NonEmptyGroup"), "{err}");

    // Ctrl-C: exit 0, and what was printed is committed (the auto-commit
    // interval has not passed, so only the final commit can have done it).
    interrupt(&child);
    let out = child.wait_with_output().expect("rill exits");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "consumed 3 records from live (group watchers)\n"
    );
    let (text, rows) = describe(&broker, "watchers");
    assert!(text.contains("state Empty, "), "{text}");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].committed, rows[0].lag), (Some(3), Some(0)));

    ok(&broker.rill(&["group", "delete", "watchers"]));
    let list = stdout(ok(&broker.rill(&["group", "list"])));
    assert!(!list.contains("watchers"), "{list}");
    let gone = broker.rill(&["group", "describe", "watchers"]);
    let err = one_error_line(&gone, 1);
    assert!(
        err.contains("GroupIdNotFound") && err.contains("rill group list"),
        "{err}"
    );
}

#[test]
fn group_flag_mistakes_are_one_line_usage_errors() {
    for (args, needle) in [
        (
            vec!["group", "reset-offsets", "g", "--topic", "t"],
            "rill --help",
        ),
        (
            vec![
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest",
            ],
            "rill --help",
        ),
        (
            vec!["consume", "t", "--group", "g", "--partition", "1"],
            "rill --help",
        ),
        (
            vec![
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-datetime",
                "last tuesday",
            ],
            "--to-datetime",
        ),
    ] {
        let out = rill(&args, None);
        let err = one_error_line(&out, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn bench_group_balances_two_members_and_verifies_every_record() {
    let out = rill(
        &[
            "bench",
            "group",
            "--messages",
            "20000",
            "--message-size",
            "256",
            "--consumers",
            "2",
            "--json",
        ],
        None,
    );
    let report: Value = serde_json::from_str(stdout(ok(&out)).trim()).expect("one JSON object");
    let v = &report["verification"];
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records_expected"], 20000);
    assert_eq!(v["records_consumed"], 20000);
    assert_eq!(v["duplicates"], 0);
    assert_eq!(v["checksum_expected"], v["checksum_consumed"]);
    assert_eq!(
        v["summary"],
        "verified: 20000 records, checksum match, no duplicates"
    );

    let consume = &report["consume"];
    assert_eq!(consume["total"]["records"], 20000);
    assert_eq!(consume["actors"].as_array().map(Vec::len), Some(2));
    assert!(consume["total"]["records_per_sec"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    let group = &report["group"];
    let members = group["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    let mut all = BTreeSet::new();
    let mut records = 0;
    for m in members {
        let partitions: Vec<u64> = m["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        // Settled before polling: each member of 2 gets some of the 4.
        assert!(!partitions.is_empty(), "{group}");
        all.extend(partitions);
        records += m["records"].as_u64().expect("records");
    }
    assert_eq!(all, (0..4).collect::<BTreeSet<u64>>());
    assert_eq!(records, 20000);
    assert_eq!(group["duplicates"], 0);
}

#[test]
fn bench_group_on_a_running_broker_reads_existing_data_and_removes_its_group() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "existing", "--partitions", "3"]));
    let lines: String = (0..300).map(|i| format!("record {i:05}\n")).collect();
    ok(&broker.rill_with_stdin(&["produce", "existing"], lines.as_bytes()));
    let out = broker.rill(&[
        "bench",
        "group",
        "--topic",
        "existing",
        "--consumers",
        "2",
        "--quiet",
    ]);
    let text = stdout(ok(&out));
    assert!(
        text.contains("verified: 300 records (count only: the data was written before this run), no duplicates"),
        "{text}"
    );
    assert!(!text.contains("produce phase"), "{text}");
    let members: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  consumer ") && l.contains("partitions ["))
        .collect();
    assert_eq!(members.len(), 2, "{text}");
    let list = stdout(ok(&broker.rill(&["group", "list"])));
    assert_eq!(list.lines().count(), 1, "only the header is left: {list}");
}
