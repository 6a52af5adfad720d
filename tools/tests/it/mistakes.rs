//! User mistakes give exactly one line on stderr and a non-zero exit, never
//! a panic or a usage dump.

use std::net::TcpListener;
use std::process::Output;

use crate::common::{rill, stderr, TestBroker};

fn one_error_line(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

#[test]
fn unknown_topic_names_the_topic_and_what_to_do() {
    let broker = TestBroker::start();
    let consume = broker.rill(&["consume", "nope", "--from-beginning", "--exit-at-end"]);
    let err = one_error_line(&consume, 1);
    assert!(err.contains("nope") && err.contains("rill topic"), "{err}");

    let produce = broker.rill_with_stdin(&["produce", "nope"], b"x\n");
    let err = one_error_line(&produce, 1);
    assert!(
        err.contains("nope") && err.contains("rill topic create"),
        "{err}"
    );

    crate::common::ok(&broker.rill(&["topic", "create", "one"]));
    let out = broker.rill(&["consume", "one", "--partition", "7", "-e"]);
    let err = one_error_line(&out, 2);
    assert!(err.contains("no partition 7"), "{err}");
    let out = broker.rill_with_stdin(&["produce", "one", "--partition", "7"], b"x\n");
    let err = one_error_line(&out, 1);
    assert!(
        err.contains("UnknownTopicOrPartition on one-7") && err.contains("rill topic describe"),
        "{err}"
    );
}

#[test]
fn broker_not_running_is_one_line_with_the_address() {
    // A port that was just free and is now closed.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("127.0.0.1:{port}");
    for args in [
        vec!["--broker", addr.as_str(), "topic", "list"],
        vec!["--broker", addr.as_str(), "consume", "t", "-e"],
    ] {
        let out = rill(&args, None);
        let err = one_error_line(&out, 1);
        assert!(
            err.contains(&addr) && err.contains("is a broker running"),
            "{err}"
        );
    }
    let out = rill(
        &["--broker", &addr, "bench", "--messages", "10", "--quiet"],
        None,
    );
    let err = one_error_line(&out, 1);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn bad_flags_and_values_are_usage_errors() {
    for args in [
        vec!["topic", "list", "--bogus"],
        vec!["produce"],
        vec!["consume", "t", "--format", "xml"],
        vec!["bench", "--acks", "some"],
        vec!["consume", "t", "--from-beginning", "--offset", "3"],
    ] {
        let out = rill(&args, None);
        let err = one_error_line(&out, 2);
        assert!(err.contains("rill --help"), "{args:?}: {err}");
    }
    let out = rill(&["bench", "--message-size", "8", "--quiet"], None);
    let err = one_error_line(&out, 2);
    assert!(err.contains("--message-size"), "{err}");
    // --io-direct configures the embedded broker, not a running one.
    let out = rill(
        &["--broker", "127.0.0.1:9", "bench", "--io-direct", "--quiet"],
        None,
    );
    let err = one_error_line(&out, 2);
    assert!(err.contains("rill-broker --io-direct"), "{err}");
}

#[test]
fn topic_alter_says_not_yet() {
    let out = rill(&["topic", "alter", "t", "--retention-ms", "5"], None);
    let err = one_error_line(&out, 2);
    assert!(err.contains("not yet supported"), "{err}");
}

#[test]
fn help_works_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["topic", "--help"],
        vec!["topic", "create", "--help"],
        vec!["produce", "--help"],
        vec!["consume", "--help"],
        vec!["bench", "--help"],
        vec!["group", "--help"],
        vec!["group", "reset-offsets", "--help"],
    ] {
        let out = rill(&args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: rill"),
            "{args:?}"
        );
    }
}
