//! The real `rill-broker` binary: it prints its bound address, exits 0 on
//! SIGTERM leaving clean-shutdown markers, recovers after `kill -9`, shows
//! every setting in `--help`, and layers flags > env > file > defaults.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rill_broker::topics::CLEAN_SHUTDOWN_MARKER;
use rill_protocol::wire::*;

use crate::common::{batch, sample, scrape, stamped, BrokerProcess, Client, BIN};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn spawn(data_dir: &Path) -> BrokerProcess {
    BrokerProcess::spawn(data_dir, &[])
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and waits for the broker to exit.
pub(crate) fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_exit(child)
}

/// How many times the broker behind `metrics` recovered `topic`'s logs at
/// start-up (`rill_log_recoveries_total`, from a real scrape).
async fn recoveries(metrics: SocketAddr, topic: &str) -> f64 {
    let text = scrape(metrics).await;
    sample(
        &text,
        &format!("rill_log_recoveries_total{{topic=\"{topic}\"}}"),
    )
}

async fn create_and_produce(addr: SocketAddr, topic: &str) -> Vec<u8> {
    let mut c = Client::connect(addr).await;
    assert_eq!(c.create_topic(topic, 1, &[]).await.error, ErrorCode::None);
    let sent = batch(3, topic, 1);
    let r = c.produce(topic, 0, Acks::All, sent.clone()).await;
    assert_eq!(r.error, ErrorCode::None);
    stamped(&sent, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_with_markers_and_the_restart_skips_recovery() {
    // Proves: SIGTERM -> graceful shutdown, exit 0, markers; the next
    // process opens cleanly (recoveries metric 0) with the data.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = spawn(dir.path());
    let stored = create_and_produce(broker.addr, "graceful").await;
    let exit = sigterm_and_wait(&mut broker.child);
    assert!(exit.success(), "exit status {exit:?}");
    assert!(dir
        .path()
        .join("graceful-0")
        .join(CLEAN_SHUTDOWN_MARKER)
        .exists());

    let again = spawn(dir.path());
    assert_eq!(recoveries(again.metrics, "graceful").await, 0.0);
    let mut c = Client::connect(again.addr).await;
    assert_eq!(
        &c.fetch("graceful", 0, 0, 0, 0).await.records[..],
        &stored[..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_no_marker_and_the_restart_recovers_acked_data() {
    // Proves: SIGKILL leaves no marker; the next process runs recovery
    // (recoveries metric 1) and keeps every acks=all batch.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = spawn(dir.path());
    let stored = create_and_produce(broker.addr, "crashy").await;
    broker.child.kill().expect("SIGKILL");
    broker.child.wait().expect("reap");
    assert!(!dir
        .path()
        .join("crashy-0")
        .join(CLEAN_SHUTDOWN_MARKER)
        .exists());

    let again = spawn(dir.path());
    assert_eq!(recoveries(again.metrics, "crashy").await, 1.0);
    let mut c = Client::connect(again.addr).await;
    let f = c.fetch("crashy", 0, 0, 0, 0).await;
    assert_eq!(
        &f.records[..],
        &stored[..],
        "acks=all data survives kill -9"
    );
    let r = c.produce("crashy", 0, Acks::All, batch(1, "next", 2)).await;
    assert_eq!((r.error, r.base_offset), (ErrorCode::None, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_io_keeps_acked_data_through_kill_9_and_leaves_exact_files_on_sigterm() {
    // Proves: with --io-direct the broker writes past the page cache
    // (room reserved past the data while it runs), keeps every acks=all
    // batch through kill -9, and a graceful exit leaves each segment file
    // exactly its batches, which the next run opens without a scan.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let segment = dir.path().join("direct-0").join("00000000000000000000.log");
    let mut broker = BrokerProcess::spawn(dir.path(), &["--io-direct"]);
    let mut c = Client::connect(broker.addr).await;
    assert_eq!(
        c.create_topic("direct", 1, &[]).await.error,
        ErrorCode::None
    );
    let mut stored = Vec::new();
    for i in 0..5 {
        let sent = batch(3 + i, "direct", 1);
        let r = c.produce("direct", 0, Acks::All, sent.clone()).await;
        assert_eq!(r.error, ErrorCode::None);
        stored.extend(stamped(&sent, r.base_offset));
    }
    let on_disk = std::fs::metadata(&segment).expect("segment file").len();
    assert!(
        on_disk > stored.len() as u64 && on_disk.is_multiple_of(4096),
        "a direct-I/O segment carries room past its {} bytes: {on_disk}",
        stored.len()
    );
    broker.child.kill().expect("SIGKILL");
    broker.child.wait().expect("reap");

    let mut broker = BrokerProcess::spawn(dir.path(), &["--io-direct"]);
    assert_eq!(recoveries(broker.metrics, "direct").await, 1.0);
    let mut c = Client::connect(broker.addr).await;
    let f = c.fetch("direct", 0, 0, 0, 0).await;
    assert_eq!(
        &f.records[..],
        &stored[..],
        "acks=all data survives kill -9"
    );
    let sent = batch(2, "after", 2);
    let r = c.produce("direct", 0, Acks::Leader, sent.clone()).await;
    assert_eq!(r.error, ErrorCode::None);
    stored.extend(stamped(&sent, r.base_offset));
    assert!(sigterm_and_wait(&mut broker.child).success());
    assert_eq!(
        std::fs::metadata(&segment).expect("segment file").len(),
        stored.len() as u64,
        "a clean exit leaves the file exactly its batches"
    );

    let again = BrokerProcess::spawn(dir.path(), &["--io-direct"]);
    assert_eq!(recoveries(again.metrics, "direct").await, 0.0);
    let mut c = Client::connect(again.addr).await;
    assert_eq!(
        &c.fetch("direct", 0, 0, 0, 0).await.records[..],
        &stored[..]
    );
}

#[test]
fn help_documents_every_setting_with_its_default() {
    // Proves: `--help` names every flag, its env variable and its default.
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, default) in [
        ("--listen", "127.0.0.1:9092"),
        ("--metrics-addr", "127.0.0.1:9644"),
        ("--data-dir", "./data"),
        ("--io-backend", "auto"),
        ("--io-direct", "false"),
        ("--frame-bytes-max", "104857600"),
        ("--connection-inflight-bytes-max", "67108864"),
        ("--broker-inflight-bytes-max", "536870912"),
        ("--connections-max", "10000"),
        ("--retention-check-interval-ms", "30000"),
        ("--num-partitions", "1"),
        ("--segment-bytes", "1073741824"),
        ("--segment-ms", "604800000"),
        ("--retention-ms", "604800000"),
        ("--retention-bytes", "-1"),
        ("--fsync", "never"),
        ("--max-message-bytes", "8388608"),
        ("--index-interval-bytes", "4096"),
        ("--group-session-timeout-ms", "45000"),
        ("--group-heartbeat-interval-ms", "5000"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(
            help.contains(&format!("[default: {default}]")),
            "--help lacks default {default} of {flag}"
        );
    }
    assert!(help.contains("RILL_LISTEN"));
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    // Proves: the documented precedence, via `--print-config` of the binary.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broker.toml");
    std::fs::write(
        &file,
        "num_partitions = 3\nsegment_bytes = 1048576\nretention_ms = 1000\nfsync = \"interval_ms:50\"\n",
    )
    .expect("write config");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(["--print-config", "--retention-ms", "2000"])
        .env("RILL_SEGMENT_BYTES", "2097152")
        .env("RILL_RETENTION_MS", "3000")
        .output()
        .expect("run --print-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing from {printed}"))
            .to_string()
    };
    assert_eq!(value("num_partitions"), "3", "file beats default");
    assert_eq!(value("segment_bytes"), "2097152", "env beats file");
    assert_eq!(value("retention_ms"), "2000", "flag beats env and file");
    assert_eq!(value("fsync"), "\"interval_ms:50\"");
    assert_eq!(value("connections_max"), "10000", "default");

    std::fs::write(&file, "no_such_setting = 1\n").expect("write config");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .expect("run");
    assert!(!out.status.success(), "an unknown file key is an error");
    std::fs::write(&file, "connections_max = 0\n").expect("write config");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "validate() runs on the merged config"
    );
}

/// The soft open-file limit of a running process, from `/proc`.
fn soft_nofile(pid: u32) -> (u64, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {limits}"))
        .to_owned();
    let soft = line
        .split_whitespace()
        .nth(3)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("soft limit in {line:?}"));
    let hard = line.split_whitespace().nth(4).unwrap_or("?").to_owned();
    (soft, hard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_raises_its_soft_open_file_limit_to_the_hard_limit() {
    // Started with a soft limit of 256 (below the common default of
    // 1,024 that many partitions pass), the broker runs with its hard
    // limit as the soft one.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wrapper = Command::new("sh");
    wrapper.args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", BIN]);
    let mut broker = BrokerProcess::spawn_with(wrapper, dir.path(), &[]);
    let (soft, hard) = soft_nofile(broker.child.id());
    assert!(soft > 256, "soft limit still {soft} (hard {hard})");
    assert_eq!(soft.to_string(), hard, "soft limit {soft}, hard {hard}");
    assert!(sigterm_and_wait(&mut broker.child).success());
}
