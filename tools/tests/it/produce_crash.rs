//! The user's case of the idempotent producer: one `rill produce` call,
//! default settings, streams 200,000 keyed lines while the `rill-broker`
//! process under it is `kill -9`'d and restarted (same address, same data
//! directory) three times. It exits 0, and the topic then holds every line
//! exactly once, with each key's lines in input order.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{ok, rill, stderr, stdout};

const LINES: u64 = 200_000;
const KILLS: u64 = 3;
const KEYS: u64 = 50;
/// Value filler: 200,000 lines of ~500 bytes is more than the producer's
/// 64 MiB buffer, so input is read as acknowledgements free room and the
/// kills fall while the producer is working, not after it buffered it all.
const FILLER_BYTES: usize = 480;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The `rill-broker` binary `cargo test --workspace` built beside `rill`.
fn broker_bin() -> PathBuf {
    let rill = PathBuf::from(env!("CARGO_BIN_EXE_rill"));
    let bin = rill.with_file_name("rill-broker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p rill-broker --bin rill-broker` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Starts `rill-broker` on `listen` and waits for its start line.
fn start_broker(dir: &Path, listen: SocketAddr) -> Child {
    let mut child = Command::new(broker_bin())
        .args([
            "--listen",
            &listen.to_string(),
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rill-broker");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    let line = rx
        .recv_timeout(START_TIMEOUT)
        .expect("broker started in time")
        .expect("start line");
    assert!(line.starts_with("rill-broker listening on"), "{line:?}");
    child
}

fn free_port() -> SocketAddr {
    let probe = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("its address")
}

fn line(id: u64) -> String {
    format!("key-{}:{id}:{}\n", id % KEYS, "x".repeat(FILLER_BYTES))
}

#[test]
fn produce_through_repeated_kill_9_writes_every_line_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let mut broker = start_broker(dir.path(), listen);
    let addr = listen.to_string();
    ok(&rill(
        &["--broker", &addr, "topic", "create", "orders", "-p", "3"],
        None,
    ));

    let mut produce = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args([
            "--broker",
            &addr,
            "produce",
            "orders",
            "--key-separator",
            ":",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill produce starts");
    let mut input = produce.stdin.take().expect("stdin piped");
    // The writer says when the input has got a quarter, half and three
    // quarters in (the pipe moves only as fast as the producer's buffer
    // frees up): the moments of the kills.
    let (reached, kill_points) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        for id in 0..LINES {
            if id > 0 && id % (LINES / (KILLS + 1)) == 0 {
                let _ = reached.send(id);
            }
            input
                .write_all(line(id).as_bytes())
                .expect("rill reads its input");
        }
        // Dropping stdin ends the input.
    });
    for _ in 0..KILLS {
        kill_points
            .recv_timeout(RUN_TIMEOUT)
            .expect("input keeps moving between kills");
        broker.kill().expect("SIGKILL");
        broker.wait().expect("reap");
        broker = start_broker(dir.path(), listen);
    }
    writer.join().expect("writer");
    let out = produce.wait_with_output().expect("rill produce finishes");
    let summary = stderr(&out);
    assert!(out.status.success(), "rill produce exits 0: {summary}");
    assert!(
        summary.contains(&format!("produced {LINES} of {LINES} records")),
        "{summary}"
    );

    let consumed = rill(
        &[
            "--broker",
            &addr,
            "consume",
            "orders",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "kv",
        ],
        None,
    );
    let text = stdout(ok(&consumed));
    let mut seen = vec![0u32; LINES as usize];
    let mut last_by_key: HashMap<String, u64> = HashMap::new();
    for l in text.lines() {
        let (key, value) = l.split_once('\t').expect("key TAB value");
        let id: u64 = value
            .split(':')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("an id");
        seen[id as usize] += 1;
        if let Some(previous) = last_by_key.insert(key.to_owned(), id) {
            assert!(previous < id, "{key}: {previous} before {id}");
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let doubled = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, doubled), (0, 0), "every line exactly once");
    let _ = broker.kill();
    let _ = broker.wait();
}
