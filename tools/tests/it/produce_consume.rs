//! Lines produced with `rill produce` come back from `rill consume` with
//! their keys, headers, partitions and order intact.

use std::collections::HashMap;

use serde_json::Value;

use crate::common::{ok, stderr, stdout, TestBroker};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn keyed_lines_come_back_as_json_with_headers_in_key_order() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "events", "--partitions", "3"]));
    let input = "user1:login\nuser2:hello wörld\nuser1:click=1\nuser3:x\nuser1:logout\n";
    let produced = broker.rill_with_stdin(
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=test",
            "--header",
            "v=2",
        ],
        input.as_bytes(),
    );
    let summary = stderr(ok(&produced));
    assert!(summary.contains("produced 5 of 5 records"), "{summary}");
    assert!(summary.contains("offsets"), "{summary}");

    let consumed = broker.rill(&[
        "consume",
        "events",
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
    ]);
    let records = json_lines(&stdout(ok(&consumed)));
    assert_eq!(records.len(), 5);
    let mut by_key: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    for r in &records {
        assert_eq!(r["topic"], "events");
        assert!(r["timestamp"].as_i64().is_some_and(|t| t > 0));
        assert_eq!(
            r["headers"],
            serde_json::json!([{"name": "source", "value": "test"}, {"name": "v", "value": "2"}])
        );
        by_key
            .entry(r["key"].as_str().expect("utf-8 key").to_owned())
            .or_default()
            .push((
                r["partition"].as_u64().expect("partition"),
                r["offset"].as_u64().expect("offset"),
                r["value"].as_str().expect("utf-8 value").to_owned(),
            ));
    }
    // One key, one partition, offsets in produce order.
    let user1 = &by_key["user1"];
    assert!(user1.iter().all(|(p, _, _)| *p == user1[0].0));
    let mut sorted = user1.clone();
    sorted.sort_by_key(|(_, o, _)| *o);
    let values: Vec<&str> = sorted.iter().map(|(_, _, v)| v.as_str()).collect();
    assert_eq!(values, ["login", "click=1", "logout"]);
    assert_eq!(by_key["user2"][0].2, "hello wörld");
    assert_eq!(by_key["user3"][0].2, "x");
}

#[test]
fn file_input_pinned_partition_and_binary_values() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "raw", "--partitions", "2"]));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("input.txt");
    let mut bytes = b"first\r\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, b'z', b'\n']);
    bytes.extend_from_slice(b"last");
    std::fs::write(&file, &bytes).expect("write input");
    let file_arg = file.to_str().expect("utf-8 path");
    let produced = broker.rill(&[
        "produce",
        "raw",
        "--file",
        file_arg,
        "--partition",
        "1",
        "--compression",
        "zstd",
    ]);
    let summary = stderr(ok(&produced));
    assert!(
        summary.contains("partition 1: 3 records, offsets 0..=2"),
        "{summary}"
    );

    let consumed = broker.rill(&[
        "consume",
        "raw",
        "--partition",
        "1",
        "--offset",
        "1",
        "--exit-at-end",
        "--format",
        "json",
    ]);
    let records = json_lines(&stdout(ok(&consumed)));
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["offset"], 1);
    assert_eq!(records[0]["key"], Value::Null);
    assert_eq!(records[0]["value"], serde_json::json!({"base64": "//56"}));
    assert_eq!(records[1]["value"], "last");

    // Partition 0 got nothing; --exit-at-end returns at once.
    let empty = broker.rill(&[
        "consume",
        "raw",
        "--partition",
        "0",
        "--from-beginning",
        "-e",
    ]);
    assert_eq!(stdout(ok(&empty)), "");

    let values = broker.rill(&[
        "consume",
        "raw",
        "--from-beginning",
        "--exit-at-end",
        "--max-messages",
        "1",
    ]);
    assert_eq!(stdout(ok(&values)), "first\n");
}

#[test]
fn a_line_without_the_key_separator_is_refused_with_its_line_number() {
    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "kv"]));
    let out = broker.rill_with_stdin(
        &["produce", "kv", "--key-separator", "="],
        b"a=1\nno separator here\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: input line 2 has no key separator"),
        "{err}"
    );
}

#[test]
fn ctrl_c_stops_a_tailing_consumer_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let broker = TestBroker::start();
    ok(&broker.rill(&["topic", "create", "tail"]));
    ok(&broker.rill_with_stdin(&["produce", "tail"], b"one\ntwo\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args([
            "--broker",
            &broker.addr,
            "consume",
            "tail",
            "--from-beginning",
        ])
        .env_remove("RILL_BROKER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("one"));
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("two"));
    // Let the loop go round a few empty polls: it waits for more, as a tail does.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still tailing"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("rill exits");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "consumed 2 records from tail\n");
}
